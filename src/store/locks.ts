import { sql } from 'kysely';
import { assertOpen, guardAround, type StoreContext } from './context.js';

/** First key of the two-key advisory lock form, so that our locks do not collide with other users of the database. */
const PG_LOCK_NAMESPACE = 'mandate';

/**
 * Runs fn while holding the lock `name`.
 *
 * PostgreSQL: a session advisory lock on a dedicated pooled connection, held while fn runs
 * (fn uses the store's normal methods, i.e. other pooled connections, so a transaction-scoped
 * lock would not cover them), released in finally. If that connection dies, PostgreSQL
 * drops the lock with it. An in-process mutex is taken first so that concurrent callers in
 * this process wait in memory instead of each pinning a pool connection. The key includes
 * the schema, so isolated test schemas never contend. On a transaction-bound Store, the
 * transaction-scoped lock (`pg_advisory_xact_lock`) is used and is held until commit.
 *
 * SQLite: an in-process mutex, shared by every Store on the same file in this process; one
 * process owns a SQLite file (another process would not see it). Not re-entrant.
 */
export async function withLock<T>(c: StoreContext, name: string, fn: () => Promise<T>): Promise<T> {
  const ctx = { what: `lock ${name}` };
  assertOpen(c, ctx.what);
  return c.shared.locks.run(name, () => {
    if (c.shared.dialect === 'sqlite') return fn();
    const key = `${c.shared.pgSchema ?? ''}:${name}`;
    return guardAround(c, ctx, async (own) => {
      if (c.inTx) {
        await sql`select pg_advisory_xact_lock(hashtext(${PG_LOCK_NAMESPACE}), hashtext(${key}))`.execute(c.db);
        return own(fn);
      }
      return c.db.connection().execute(async (conn) => {
        await sql`select pg_advisory_lock(hashtext(${PG_LOCK_NAMESPACE}), hashtext(${key}))`.execute(conn);
        try {
          return await own(fn);
        } finally {
          // If this fails the connection is gone, and PostgreSQL has already dropped the lock
          // (possibly while fn ran): the error (UnavailableError) is then the right outcome.
          await sql`select pg_advisory_unlock(hashtext(${PG_LOCK_NAMESPACE}), hashtext(${key}))`.execute(conn);
        }
      });
    });
  });
}
