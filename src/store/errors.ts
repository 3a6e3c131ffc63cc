import { ConflictError, MandateError, NotFoundError, UnavailableError } from '../core/errors.js';

/**
 * Turns driver errors into Mandate's errors, so that callers never see a driver type:
 * a unique violation becomes ConflictError, a foreign-key violation NotFoundError, and
 * anything meaning "the database cannot be reached or used right now" UnavailableError
 * (callers fail closed on it). Anything else is rethrown unchanged (a bug, not a state).
 */
export interface ErrorContext {
  /** What was being done, for messages: "upsert grant g1". */
  what: string;
  /** Message for a unique violation (default: "<what>: already exists"). */
  unique?: string;
  /** Message for a foreign-key violation. */
  foreignKey?: string;
}

const PG_UNAVAILABLE_CODES = new Set([
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now
  '53300', // too_many_connections
  '53400', // configuration_limit_exceeded
  '3D000', // invalid_catalog_name: the database does not exist
  '28000', // invalid_authorization_specification
  '28P01', // invalid_password
]);
const NET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH']);
const PG_UNAVAILABLE_MESSAGES = [
  /Connection terminated/i,
  /Cannot use a pool after calling end/i,
  /timeout exceeded when trying to connect/i,
  /Client has encountered a connection error/i,
  /Client was closed and is not queryable/i,
  /The database connection is not open/i, // better-sqlite3 after close()
  /driver has already been destroyed/i, // Kysely after destroy()
];

function codeOf(err: unknown): string | undefined {
  const c = (err as { code?: unknown } | null)?.code;
  return typeof c === 'string' ? c : undefined;
}

export function isUnavailable(err: unknown, depth = 0): boolean {
  if (!(err instanceof Error) || depth > 3) return false;
  const code = codeOf(err);
  if (code) {
    if (NET_CODES.has(code) || PG_UNAVAILABLE_CODES.has(code)) return true;
    if (/^08/.test(code)) return true; // SQLSTATE class 08: connection exception
    if (/^SQLITE_(BUSY|CANTOPEN|IOERR|FULL|NOTADB|CORRUPT)/.test(code)) return true;
  }
  if (PG_UNAVAILABLE_MESSAGES.some((re) => re.test(err.message))) return true;
  // Node reports a refused dual-stack connect as an AggregateError of per-address errors.
  if (err instanceof AggregateError) return err.errors.some((e) => isUnavailable(e, depth + 1));
  return err.cause !== undefined && isUnavailable(err.cause, depth + 1);
}

export function isUniqueViolation(err: unknown): boolean {
  const code = codeOf(err);
  return code === '23505' || code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}

export function isForeignKeyViolation(err: unknown): boolean {
  const code = codeOf(err);
  return code === '23503' || code === 'SQLITE_CONSTRAINT_FOREIGNKEY';
}

export function translateError(err: unknown, ctx: ErrorContext): unknown {
  if (err instanceof MandateError) return err; // already ours (nested calls, transactions)
  if (isUniqueViolation(err)) return new ConflictError(ctx.unique ?? `${ctx.what}: already exists`);
  if (isForeignKeyViolation(err)) return new NotFoundError(ctx.foreignKey ?? `${ctx.what}: a referenced record does not exist`);
  if (isUnavailable(err)) {
    const detail = err instanceof Error ? err.message : String(err);
    return new UnavailableError(`store unavailable (${ctx.what}): ${detail}`, { cause: err });
  }
  return err;
}
