import { sql, type Kysely } from 'kysely';
import { MandateError, UnavailableError } from '../core/errors.js';
import type { Clock } from '../core/clock.js';
import type { Database } from './database.js';
import type { KeyedMutex } from './mutex.js';
import { translateError, type ErrorContext } from './errors.js';
import type { SqliteWriter } from './sqlite/writer.js';

/**
 * What every aggregate file of the store (inventory.ts, audit.ts, …) works with: the query
 * builder, the state shared by a Store and its transaction-bound Stores, and the one guard that
 * maps driver errors. Each aggregate is a set of functions over a StoreContext; the Store class
 * (store.ts) is the facade that holds one and hands it on.
 */

export type StoreDialect = 'sqlite' | 'postgres';

/** State shared by a Store and the transaction-bound Stores made from it. */
export interface Shared {
  readonly dialect: StoreDialect;
  readonly root: Kysely<Database>;
  readonly clock: Clock;
  /** PostgreSQL: the schema the tables live in (search_path); undefined on SQLite. */
  readonly pgSchema: string | undefined;
  readonly locks: KeyedMutex;
  /** SQLite files: the writer thread that appendChained and insertOnceMany use (sqlite/writer.ts). */
  readonly writer: SqliteWriter | undefined;
  /** Gives the connection(s) back: destroys the pool / closes the file when last. */
  readonly release: () => Promise<void>;
  closed: boolean;
}

export interface StoreContext {
  /** The root Kysely, or the Kysely Transaction of a transaction-bound Store. */
  readonly db: Kysely<Database>;
  readonly shared: Shared;
  /** True for a transaction-bound Store: writes join the running transaction. */
  readonly inTx: boolean;
}

/** Rows per INSERT: far below SQLite's (32766) and PostgreSQL's (65535) bound-parameter limits. */
export const INSERT_CHUNK = 500;
/** Rows per multi-row insert of the broker's batches (12 columns × 500 stays under both dialects' parameter limits). */
export const BATCH_ROWS = INSERT_CHUNK;
/** Default and maximum `limit` of the newest-first listings (issued tokens, approvals, signals, …). */
const LIST_DEFAULT_LIMIT = 100;
const LIST_MAX_LIMIT = 10_000;

export function assertOpen(c: StoreContext, what: string): void {
  if (c.shared.closed) throw new UnavailableError(`store unavailable (${what}): the store is closed`);
}

export function assertRoot(c: StoreContext, what: string): void {
  if (c.inTx) throw new MandateError('ERR_STORE_USAGE', `${what}() cannot be called inside a transaction`);
}

/** Runs fn, mapping driver errors: unique violations to ConflictError, foreign-key violations to NotFoundError, an unreachable or closed database to UnavailableError. */
export async function guard<T>(c: StoreContext, ctx: ErrorContext, fn: () => Promise<T>): Promise<T> {
  assertOpen(c, ctx.what);
  try {
    return await fn();
  } catch (err) {
    throw translateError(err, ctx);
  }
}

/**
 * Like guard, for bodies that call back into caller code (transaction, withLock): errors
 * thrown by the caller's callback, run through `own`, pass through untouched, so that an
 * error of theirs that merely looks like a connection error is not relabelled.
 */
export async function guardAround<T>(
  c: StoreContext,
  ctx: ErrorContext,
  body: (own: <U>(f: () => Promise<U>) => Promise<U>) => Promise<T>,
): Promise<T> {
  assertOpen(c, ctx.what);
  const ownErrors = new Set<unknown>();
  const own = async <U>(f: () => Promise<U>): Promise<U> => {
    try {
      return await f();
    } catch (err) {
      ownErrors.add(err);
      throw err;
    }
  };
  try {
    return await body(own);
  } catch (err) {
    throw ownErrors.has(err) ? err : translateError(err, ctx);
  }
}

/**
 * `Store.transaction`: runs fn in one database transaction with a context bound to it; joins
 * the running transaction when `c` is already bound to one. Errors of fn pass through as thrown.
 */
export async function transaction<T>(c: StoreContext, fn: (tx: StoreContext) => Promise<T>): Promise<T> {
  if (c.inTx) return fn(c);
  return guardAround(c, { what: 'transaction' }, (own) =>
    c.db.transaction().execute((trx) => own(() => fn({ db: trx, shared: c.shared, inTx: true }))),
  );
}

/** For a write of several statements inside one method's guard: joins the running transaction, else runs in a new one. */
export function atomically<T>(c: StoreContext, fn: (db: Kysely<Database>) => Promise<T>): Promise<T> {
  return c.inTx ? fn(c.db) : c.db.transaction().execute(fn);
}

/** `SET col = excluded.col` for every column of row except the key: "replace by id". */
export function excludedSet<R extends object>(row: R, key: readonly (keyof R & string)[]): Record<string, unknown> {
  const set: Record<string, unknown> = {};
  for (const col of Object.keys(row)) {
    if (!key.includes(col as keyof R & string)) set[col] = sql.ref(`excluded.${col}`);
  }
  return set;
}

/** A listing's `limit`: default when absent, truncated, within [0, LIST_MAX_LIMIT]. */
export function clampLimit(limit: number | undefined): number {
  if (limit === undefined || Number.isNaN(limit)) return LIST_DEFAULT_LIMIT;
  return Math.min(Math.max(Math.trunc(limit), 0), LIST_MAX_LIMIT);
}
