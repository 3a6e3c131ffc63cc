import pg from 'pg';
import { Kysely, PostgresDialect, sql } from 'kysely';
import { MandateError, UnavailableError } from '../../core/errors.js';
import type { Clock } from '../../core/clock.js';
import type { Database } from '../database.js';
import type { Shared } from '../context.js';
import type { StoreOptions } from '../open.js';
import { KeyedMutex } from '../mutex.js';
import { translateError } from '../errors.js';
import { preparesHotStatements } from './statements.js';

const SCHEMA_RE = /^[a-z_][a-z0-9_]{0,62}$/;
const PG_INT8_OID = 20;

/**
 * int8 (BIGINT, and COUNT(*)) comes back from pg as a string by default, because it can
 * exceed 2^53. Every BIGINT here is an epoch-ms timestamp or a counter, far below 2^53, so
 * this pool parses it to a number. Scoped to the pool through the `types` option: the global
 * pg.types registry is left alone for any other pg user in the process.
 */
const pgTypes: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    if (oid === PG_INT8_OID && format !== 'binary') return (v: string) => Number(v);
    return (pg.types.getTypeParser as (oid: number, format?: 'text' | 'binary') => unknown)(oid, format);
  }) as pg.CustomTypesConfig['getTypeParser'],
};

/**
 * Every pooled connection starts with the schema as its only search_path entry (a startup
 * `options` parameter), so unqualified table names, migrations included, resolve there and never
 * fall back to public. pg lets an `options` parameter in the URL override the config field, so an
 * existing one is moved out of the URL and merged.
 */
function withSearchPath(url: string, schema: string): { connectionString: string; options: string } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { connectionString: url, options: `-c search_path=${schema}` };
  }
  const existing = u.searchParams.get('options');
  u.searchParams.delete('options');
  return { connectionString: u.toString(), options: [existing, `-c search_path=${schema}`].filter(Boolean).join(' ') };
}

/** A pool on the database (schema created when named), and the state a Store over it shares. Throws UnavailableError when the database cannot be reached. */
export async function openPostgres(opts: Extract<StoreOptions, { driver: 'postgres' }>, clock: Clock): Promise<Shared> {
  if (opts.schema !== undefined && !SCHEMA_RE.test(opts.schema)) {
    throw new MandateError('ERR_STORE_OPTIONS', `invalid PostgreSQL schema name "${opts.schema}": use [a-z_][a-z0-9_]*`);
  }
  const pool = new pg.Pool({
    connectionString: opts.url,
    // At least 2: withLock pins one connection for the lock while fn queries on another.
    max: Math.max(2, opts.poolSize ?? 10),
    types: pgTypes,
    // Fail fast (and closed) instead of waiting forever for an unreachable server or a free client.
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
    application_name: 'mandate',
    ...(opts.schema !== undefined ? withSearchPath(opts.url, opts.schema) : {}),
  });
  // A client that loses its connection emits 'error'. The pool listens (and re-emits on itself)
  // only while the client is idle; a client checked out (a transaction between statements, the
  // connection that holds a withLock advisory lock) has no listener of its own, so the event was
  // an uncaught exception that ended the process at a PostgreSQL restart. Every client gets one
  // for its whole life: its work fails on its own (the next statement says the client is not
  // queryable, which is UnavailableError, 503), the pool drops it at release (it is no longer
  // queryable), and the next checkout connects afresh.
  pool.on('error', () => {});
  pool.on('connect', (client) => {
    client.on('error', () => {});
  });
  if (opts.preparedStatements !== false) pool.on('connect', preparesHotStatements);
  const root = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  try {
    if (opts.schema !== undefined) {
      try {
        await sql`create schema if not exists ${sql.id(opts.schema)}`.execute(root);
      } catch (err) {
        // Two openers racing on CREATE SCHEMA IF NOT EXISTS can still hit the unique index.
        if ((err as { code?: string }).code !== '23505') throw err;
      }
    }
    const r = await sql<{ schema: string | null }>`select current_schema() as schema`.execute(root);
    const pgSchema = opts.schema ?? r.rows[0]?.schema ?? 'public';
    return { dialect: 'postgres', root, clock, pgSchema, locks: new KeyedMutex(), writer: undefined, release: () => root.destroy(), closed: false };
  } catch (err) {
    await root.destroy().catch(() => {});
    const mapped = translateError(err, { what: 'connect' });
    throw mapped instanceof UnavailableError ? mapped : new UnavailableError(`store unavailable (connect): ${String(err)}`, { cause: err });
  }
}

