import { mkdirSync } from 'node:fs';
import { dirname, resolve as resolvePath } from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import { UnavailableError } from '../../core/errors.js';
import type { Clock } from '../../core/clock.js';
import type { Database } from '../database.js';
import type { Shared } from '../context.js';
import { KeyedMutex } from '../mutex.js';
import { ImmediateSqliteDialect, cachingStatements } from './dialect.js';
import { SqliteWriter } from './writer.js';

/**
 * One connection per SQLite file per process, shared (reference-counted) by every Store
 * opened on that file here. better-sqlite3 is synchronous: with two connections in one
 * process, one that waits for the write lock (busy_timeout) blocks the event loop, so the
 * other can never finish its transaction and release it. Sharing the connection lets Kysely's
 * connection mutex serialize them instead. The in-process withLock mutex is shared the same way.
 */
interface SqliteFile {
  root: Kysely<Database>;
  locks: KeyedMutex;
  refs: number;
  /** The file's writer thread (audit batches, replay records); none for ':memory:'. */
  writer: SqliteWriter | undefined;
}
const sqliteFiles = new Map<string, SqliteFile>();

/** The file's shared connection (opened with its pragmas on first use), and the state a Store over it shares. */
export function openSqlite(path: string, clock: Clock): Shared {
  const memory = path === ':memory:' || path === '';
  const file = memory ? undefined : resolvePath(path);
  let entry = file !== undefined ? sqliteFiles.get(file) : undefined;
  if (!entry) {
    let sqlite: SqliteDatabase.Database;
    try {
      if (file !== undefined) mkdirSync(dirname(file), { recursive: true });
      // timeout is better-sqlite3's busy_timeout: wait up to 5 s for another process's writer.
      sqlite = new SqliteDatabase(file ?? ':memory:', { timeout: 5000 });
      if (file !== undefined) sqlite.pragma('journal_mode = WAL');
      sqlite.pragma('foreign_keys = ON');
      sqlite.pragma('busy_timeout = 5000');
    } catch (err) {
      throw new UnavailableError(`store unavailable: cannot open SQLite database ${path}: ${String(err)}`, { cause: err });
    }
    entry = {
      // A file has a second connection, the writer thread's: transactions take the write lock when they begin.
      root: new Kysely<Database>({ dialect: file !== undefined ? new ImmediateSqliteDialect({ database: cachingStatements(sqlite) }) : new SqliteDialect({ database: cachingStatements(sqlite) }) }),
      locks: new KeyedMutex(),
      refs: 0,
      writer: file !== undefined ? new SqliteWriter(file) : undefined,
    };
    if (file !== undefined) sqliteFiles.set(file, entry);
  }
  const shared = entry;
  shared.refs += 1;
  const release = async () => {
    shared.refs -= 1;
    if (shared.refs > 0) return;
    if (file !== undefined && sqliteFiles.get(file) === shared) sqliteFiles.delete(file);
    await shared.writer?.close();
    await shared.root.destroy();
  };
  return { dialect: 'sqlite', root: shared.root, clock, pgSchema: undefined, locks: shared.locks, writer: shared.writer, release, closed: false };
}

