import { CompiledQuery } from 'kysely';
import type { ReplayInsert } from '../core/ports/replay.js';
import { BATCH_ROWS, guard, type StoreContext } from './context.js';
import { replayUpsertSql } from './replay-sql.js';

/** One-time records (ReplayStore, insertOnceMany): a (scope, key) is taken once until it expires. */

/**
 * One statement, atomic on both dialects: insert, or, when (scope, key) exists but has
 * expired, take it over. A live record makes the conditional DO UPDATE do nothing, so no row
 * comes back. Under concurrency PostgreSQL serializes the conflicting rows (the losers
 * re-check the WHERE against the winner's row); SQLite has a single writer. RETURNING
 * (rather than the affected-row count) tells whether this call won.
 */
export async function insertOnce(c: StoreContext, scope: string, key: string, expiresAt: number): Promise<boolean> {
  return guard(c, { what: `replay insert ${scope}` }, async () => {
    const now = c.shared.clock.now();
    const rows = await c.db
      .insertInto('replay')
      .values({ scope, key, expires_at: expiresAt })
      .onConflict((oc) =>
        oc
          .columns(['scope', 'key'])
          .doUpdateSet((eb) => ({ expires_at: eb.ref('excluded.expires_at') }))
          .where('replay.expires_at', '<=', now),
      )
      .returning('scope')
      .execute();
    return rows.length === 1;
  });
}

/**
 * insertOnce for many distinct (scope, key) pairs: one multi-row statement with the same
 * conditional ON CONFLICT … DO UPDATE … WHERE expired, so each row is decided atomically
 * exactly as insertOnce decides it (PostgreSQL serializes conflicting rows across
 * instances; SQLite has one writer). RETURNING names the rows this call won. The keys must
 * be distinct: PostgreSQL refuses to update one row twice in a statement.
 */
export async function insertOnceMany(c: StoreContext, records: readonly ReplayInsert[]): Promise<boolean[]> {
  if (records.length === 0) return [];
  const writer = c.shared.writer;
  if (writer && !c.inTx) {
    return guard(c, { what: `replay insert ${records.length}` }, async () => {
      // The same statement on the writer thread (its commit no longer stops the event loop).
      const flat: unknown[] = [];
      for (const r of records) flat.push(r.scope, r.key, r.expiresAt);
      const won = new Set(await writer.replay(flat, records.length, c.shared.clock.now()));
      return records.map((r) => won.has(`${r.scope}\u0000${r.key}`));
    });
  }
  return guard(c, { what: `replay insert ${records.length}` }, async () => {
    const now = c.shared.clock.now();
    const won = new Set<string>();
    for (let i = 0; i < records.length; i += BATCH_ROWS) {
      const chunk = records.slice(i, i + BATCH_ROWS);
      // The statement Kysely builds for insertOnce, with its text kept per row count (this runs
      // on every DPoP call: building it anew each time was most of the statement's cost).
      const params: unknown[] = [];
      for (const r of chunk) params.push(r.scope, r.key, r.expiresAt);
      params.push(now);
      const { rows: back } = await c.db.executeQuery<{ scope: string; key: string }>(
        CompiledQuery.raw(replayUpsertSql(c.shared.dialect, chunk.length), params),
      );
      for (const b of back) won.add(`${b.scope}\u0000${b.key}`);
    }
    return records.map((r) => won.has(`${r.scope}\u0000${r.key}`));
  });
}

/** A record is expired when expires_at <= now (the same rule insertOnce uses). */
export async function purgeExpired(c: StoreContext, now: number): Promise<number> {
  return guard(c, { what: 'replay purge' }, async () => {
    const r = await c.db.deleteFrom('replay').where('expires_at', '<=', now).executeTakeFirst();
    return Number(r.numDeletedRows);
  });
}
