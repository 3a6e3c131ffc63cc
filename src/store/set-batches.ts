import { CompiledQuery } from 'kysely';
import { MandateError } from '../core/errors.js';
import type { SetBatchWrite } from '../signals/ports.js';
import { guard, type StoreContext } from './context.js';
import { revocationToRow, signalToRow } from './rows.js';
import { RECORD_SETS_SQL } from './postgres/statements.js';
import { insertOnceMany } from './replay.js';
import { insertSignals, knownNhiIds } from './signals.js';
import { addRevocations } from './enforcement.js';

/**
 * A batch of received SETs (SignalsBatchStore): their replay records, and the signals and
 * revocations of the SETs whose record was inserted, written atomically after the batch's checks.
 * The Store picks the form: one statement on PostgreSQL, statements in one transaction on SQLite.
 */

/**
 * A group of SETs in ONE statement (PostgreSQL only): when the checks pass (the NHIs exist, the
 * streams are enabled; else nothing is written and undefined returned), data-modifying CTEs insert the replay
 * records (the conditional upsert of `insertOnceMany`, so a record is decided atomically
 * across instances exactly as there), then the signals and revocations of the SETs whose
 * record was inserted (joined on the CTE's RETURNING), with every column passed as one array
 * parameter (`unnest`): one round trip, no BEGIN/COMMIT, no query text built per row count.
 * A statement is atomic: any failure (a duplicate id, a lost connection) writes nothing.
 */
export async function recordSetsOnce(c: StoreContext, w: SetBatchWrite): Promise<boolean[] | undefined> {
  if (w.replay.length === 0) return [];
  if (c.shared.dialect !== 'postgres') throw new MandateError('ERR_STORE_USAGE', 'recordSetsOnce() is for PostgreSQL; use a transaction on SQLite');
  return guard(c, { what: `record ${w.replay.length} SETs`, unique: 'a signal or revocation already exists' }, async () => {
    const col = <T, V>(rows: readonly T[], f: (r: T) => V): V[] => rows.map(f);
    const sigs = w.signals.map((x) => ({ of: x.of, row: signalToRow(x.rec) }));
    const revs = w.revocations.map((x) => ({ of: x.of, row: revocationToRow(x.rec) }));
    const params: unknown[] = [
      // $1–$4: replay
      col(w.replay, (r) => r.scope), col(w.replay, (r) => r.key), col(w.replay, (r) => r.expiresAt), c.shared.clock.now(),
      // $5–$20: signals (the SET's index, then the columns)
      col(sigs, (s) => s.of), col(sigs, (s) => s.row.id), col(sigs, (s) => s.row.nhi_id), col(sigs, (s) => s.row.jti), col(sigs, (s) => s.row.run_id),
      col(sigs, (s) => s.row.credential_id), col(sigs, (s) => s.row.reason), col(sigs, (s) => s.row.severity), col(sigs, (s) => s.row.action),
      col(sigs, (s) => s.row.source), col(sigs, (s) => s.row.txn), col(sigs, (s) => s.row.received_at), col(sigs, (s) => s.row.applied_at),
      col(sigs, (s) => s.row.status), col(sigs, (s) => s.row.error), col(sigs, (s) => s.row.data),
      // $21–$29: revocations
      col(revs, (r) => r.of), col(revs, (r) => r.row.id), col(revs, (r) => r.row.kind), col(revs, (r) => r.row.target), col(revs, (r) => r.row.not_before),
      col(revs, (r) => r.row.reason), col(revs, (r) => r.row.signal_id), col(revs, (r) => r.row.created_at), col(revs, (r) => r.row.expires_at),
      // $30, $31: the checks
      [...new Set(w.requireNhis ?? [])], [...new Set(w.requireStreamsEnabled ?? [])],
    ];
    const { rows } = await c.db.executeQuery<{ ok: boolean; won: Array<number | string> | null }>(CompiledQuery.raw(RECORD_SETS_SQL, params));
    const r = rows[0];
    if (!r?.ok) return undefined;
    const won = new Set((r.won ?? []).map(Number));
    return w.replay.map((_, i) => won.has(i));
  });
}

/**
 * The same write as recordSetsOnce, as statements in the transaction `c` is bound to (SQLite,
 * whose transactions take the write lock when they begin, so the checks still hold at commit):
 * the checks first (undefined, nothing written, when one fails), then the replay records as
 * insertOnceMany decides them, then the rows of the SETs that won theirs.
 */
export async function recordSetsInTransaction(c: StoreContext, w: SetBatchWrite): Promise<boolean[] | undefined> {
  if (!c.inTx) throw new MandateError('ERR_STORE_USAGE', 'recordSetsInTransaction() needs a transaction-bound context');
  if (w.replay.length === 0) return [];
  const nhis = [...new Set(w.requireNhis ?? [])];
  if (nhis.length > 0 && (await knownNhiIds(c, nhis)).size !== nhis.length) return undefined;
  const streams = [...new Set(w.requireStreamsEnabled ?? [])];
  if (streams.length > 0) {
    const notEnabled = await guard(c, { what: `check ${streams.length} ssf streams` }, () =>
      c.db.selectFrom('ssf_streams').select('id').where('id', 'in', streams).where('status', '<>', 'enabled').executeTakeFirst(),
    );
    if (notEnabled) return undefined;
  }
  const won = await insertOnceMany(c, w.replay);
  await insertSignals(c, w.signals.filter((s) => won[s.of]).map((s) => s.rec));
  await addRevocations(c, w.revocations.filter((r) => won[r.of]).map((r) => r.rec));
  return won;
}
