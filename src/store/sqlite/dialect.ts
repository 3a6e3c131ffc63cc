import type SqliteDatabase from 'better-sqlite3';
import { CompiledQuery, SqliteDialect, SqliteDriver, type DatabaseConnection, type Driver, type SqliteDialectConfig } from 'kysely';

/**
 * better-sqlite3 behind Kysely, with its prepared statements kept by SQL text. Kysely's SQLite
 * driver prepares every query anew; compiling the same few statements again on every request
 * was a visible part of the token endpoint's CPU (bench/broker). Statements are reusable
 * (better-sqlite3 binds parameters per call); the cache is bounded, oldest out first, because
 * multi-row inserts make one SQL text per row count. Nothing in the store streams rows
 * (`stream()`), so a cached statement is never busy when it is taken again.
 */
export function cachingStatements(db: SqliteDatabase.Database, max = 256): { close(): void; prepare(sql: string): SqliteDatabase.Statement } {
  const cache = new Map<string, SqliteDatabase.Statement>();
  return {
    close: () => {
      cache.clear();
      db.close();
    },
    prepare: (sql: string) => {
      let stmt = cache.get(sql);
      if (stmt === undefined) {
        stmt = db.prepare(sql);
        cache.set(sql, stmt);
        if (cache.size > max) cache.delete(cache.keys().next().value!);
      }
      return stmt;
    },
  };
}

/**
 * Kysely's SQLite dialect with BEGIN IMMEDIATE instead of BEGIN (deferred). A file has two
 * connections in this process, the main one and the writer thread's (writer.ts): a
 * deferred transaction that read before the thread committed could not write afterwards
 * (SQLITE_BUSY_SNAPSHOT, without waiting). Taking the write lock first makes it wait for the
 * thread's commit (busy_timeout) instead, as appendChained always did.
 */
export class ImmediateSqliteDialect extends SqliteDialect {
  readonly #config: SqliteDialectConfig;
  constructor(config: SqliteDialectConfig) {
    super(config);
    this.#config = config;
  }
  override createDriver(): Driver {
    return new ImmediateSqliteDriver(this.#config);
  }
}

class ImmediateSqliteDriver extends SqliteDriver {
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin immediate'));
  }
}

