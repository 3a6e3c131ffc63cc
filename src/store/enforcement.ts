import type { Kysely } from 'kysely';
import type { ApprovalRecord, ApprovalStatus, KillSwitchRecord, RestrictionRecord, RevocationRecord } from '../enforcement/ports.js';
import type { Database } from './database.js';
import { BATCH_ROWS, atomically, clampLimit, guard, type StoreContext } from './context.js';
import {
  approvalFromRow, approvalToRow, killSwitchFromRow, killSwitchToRow, restrictionFromRow, restrictionToRow, revocationFromRow, revocationToRow,
} from './rows.js';

/** What is enforced on calls and tokens: revocations, kill switches, approvals, restrictions. */

export async function addRevocation(c: StoreContext, r: RevocationRecord): Promise<void> {
  await guard(c, { what: `add revocation ${r.id}`, unique: `revocation ${r.id} already exists` }, async () => {
    await c.db.insertInto('revocations').values(revocationToRow(r)).execute();
  });
}

export async function addRevocations(c: StoreContext, records: readonly RevocationRecord[]): Promise<void> {
  if (records.length === 0) return;
  await guard(c, { what: `add ${records.length} revocations`, unique: 'a revocation already exists' }, async () => {
    for (let i = 0; i < records.length; i += BATCH_ROWS) {
      await c.db.insertInto('revocations').values(records.slice(i, i + BATCH_ROWS).map(revocationToRow)).execute();
    }
  });
}

/** Not expired at `now`: expires_at null or > now. Oldest first (created_at, then id). */
export async function listRevocations(c: StoreContext, now: number, opts: { createdSince?: number } = {}): Promise<RevocationRecord[]> {
  return guard(c, { what: 'list revocations' }, async () => {
    let q = c.db
      .selectFrom('revocations')
      .selectAll()
      .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]));
    if (opts.createdSince !== undefined) q = q.where('created_at', '>=', opts.createdSince);
    const rows = await q
      .orderBy('created_at', 'asc')
      .orderBy('id', 'asc')
      .execute();
    return rows.map(revocationFromRow);
  });
}

/** Deletes the revocations expired at `now` (expires_at <= now, the complement of listRevocations). */
export async function purgeRevocations(c: StoreContext, now: number): Promise<number> {
  return guard(c, { what: 'purge revocations' }, async () => {
    const r = await c.db.deleteFrom('revocations').where('expires_at', 'is not', null).where('expires_at', '<=', now).executeTakeFirst();
    return Number(r.numDeletedRows);
  });
}

export async function addKillSwitch(c: StoreContext, k: KillSwitchRecord): Promise<void> {
  await guard(c, { what: `add kill switch ${k.id}`, unique: `kill switch ${k.id} already exists` }, async () => {
    await c.db.insertInto('kill_switches').values(killSwitchToRow(k)).execute();
  });
}

/** One conditional UPDATE (… AND lifted_at IS NULL): of concurrent lifts, exactly one gets true. */
export async function liftKillSwitch(c: StoreContext, id: string, liftedBy: string, at: number): Promise<boolean> {
  return guard(c, { what: `lift kill switch ${id}` }, async () => {
    const r = await c.db
      .updateTable('kill_switches')
      .set({ lifted_at: at, lifted_by: liftedBy })
      .where('id', '=', id)
      .where('lifted_at', 'is', null)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  });
}

/** Oldest first (created_at, then id); lifted ones too unless `activeOnly`. */
export async function listKillSwitches(c: StoreContext, opts: { activeOnly?: boolean } = {}): Promise<KillSwitchRecord[]> {
  return guard(c, { what: 'list kill switches' }, async () => {
    let q = c.db.selectFrom('kill_switches').selectAll();
    if (opts.activeOnly) q = q.where('lifted_at', 'is', null);
    const rows = await q.orderBy('created_at', 'asc').orderBy('id', 'asc').execute();
    return rows.map(killSwitchFromRow);
  });
}

export async function createApproval(c: StoreContext, a: ApprovalRecord): Promise<void> {
  await guard(c, { what: `create approval ${a.id}`, unique: `approval ${a.id} already exists` }, async () => {
    await c.db.insertInto('approvals').values(approvalToRow(a)).execute();
  });
}

export async function getApproval(c: StoreContext, id: string): Promise<ApprovalRecord | undefined> {
  return guard(c, { what: `get approval ${id}` }, async () => {
    const row = await c.db.selectFrom('approvals').selectAll().where('id', '=', id).executeTakeFirst();
    return row && approvalFromRow(row);
  });
}

/**
 * Newest first (requested_at, then id, descending); `limit` defaults to 100 and is capped at
 * 10000. `status` matches the stored status: a pending request past its expiry is still
 * stored as pending (nothing rewrites it), so it is listed under `pending`.
 */
export async function listApprovals(c: StoreContext, filter: { status?: ApprovalStatus; nhiId?: string; limit?: number } = {}): Promise<ApprovalRecord[]> {
  return guard(c, { what: 'list approvals' }, async () => {
    const limit = clampLimit(filter.limit);
    if (limit === 0) return [];
    let q = c.db.selectFrom('approvals').selectAll();
    if (filter.status !== undefined) q = q.where('status', '=', filter.status);
    if (filter.nhiId !== undefined) q = q.where('nhi_id', '=', filter.nhiId);
    const rows = await q.orderBy('requested_at', 'desc').orderBy('id', 'desc').limit(limit).execute();
    return rows.map(approvalFromRow);
  });
}

export async function findApprovals(c: StoreContext, key: { nhiId: string; toolId: string; action: string; argsDigest: string }, at: number): Promise<ApprovalRecord[]> {
  return guard(c, { what: 'find approvals' }, async () => {
    const rows = await c.db.selectFrom('approvals').selectAll()
      .where('nhi_id', '=', key.nhiId)
      .where('tool_id', '=', key.toolId)
      .where('action', '=', key.action)
      .where('args_digest', '=', key.argsDigest)
      .where('status', 'in', ['pending', 'approved', 'denied'])
      .where('expires_at', '>', at)
      .orderBy('requested_at', 'desc').orderBy('id', 'desc')
      // A call has one pending request at a time (the gate reuses it), so live rows per key are few.
      .limit(100)
      .execute();
    return rows.map(approvalFromRow);
  });
}

/**
 * One conditional UPDATE … WHERE id = ? AND status = 'pending' AND expires_at > decidedAt,
 * RETURNING the row: atomic on both dialects (PostgreSQL re-checks the WHERE against the
 * winner's row under READ COMMITTED; SQLite has a single writer), so of concurrent deciders
 * exactly one gets the record. "Unexpired" is judged at `decidedAt`, the caller's clock.
 */
export async function decideApproval(
  c: StoreContext,
  id: string,
  d: { status: 'approved' | 'denied'; decidedBy: string; decidedAt: number; reason: string | null },
): Promise<ApprovalRecord | undefined> {
  return guard(c, { what: `decide approval ${id}` }, async () => {
    const row = await c.db
      .updateTable('approvals')
      .set({ status: d.status, decided_by: d.decidedBy, decided_at: d.decidedAt, reason: d.reason ?? null })
      .where('id', '=', id)
      .where('status', '=', 'pending')
      .where('expires_at', '>', d.decidedAt)
      .returningAll()
      .executeTakeFirst();
    return row && approvalFromRow(row);
  });
}

/**
 * One conditional UPDATE … WHERE id = ? AND status = 'approved' AND redeemed_at IS NULL AND
 * expires_at > at; true when it changed the row, so exactly one of concurrent callers wins
 * (same reasoning as decideApproval).
 */
export async function redeemApproval(c: StoreContext, id: string, at: number): Promise<boolean> {
  return guard(c, { what: `redeem approval ${id}` }, async () => {
    const rows = await c.db
      .updateTable('approvals')
      .set({ status: 'redeemed', redeemed_at: at })
      .where('id', '=', id)
      .where('status', '=', 'approved')
      .where('redeemed_at', 'is', null)
      .where('expires_at', '>', at)
      .returning('id')
      .execute();
    return rows.length === 1;
  });
}

/** One transaction: the NHI's active restrictions are lifted (by the new signal), then the new one is inserted. */
export async function addRestriction(c: StoreContext, r: RestrictionRecord): Promise<void> {
  await guard(c, { what: `add restriction ${r.id}`, unique: `restriction ${r.id} already exists` }, async () => {
    const write = async (db: Kysely<Database>) => {
      await db.updateTable('restrictions').set({ lifted_at: r.createdAt, lifted_by: `signal:${r.signalId}` })
        .where('nhi_id', '=', r.nhiId).where('lifted_at', 'is', null).execute();
      await db.insertInto('restrictions').values(restrictionToRow(r)).execute();
    };
    await atomically(c, write);
  });
}

/** One conditional UPDATE … RETURNING: of concurrent lifts, each active row is lifted once. */
export async function liftRestrictions(c: StoreContext, nhiId: string, liftedBy: string, at: number): Promise<RestrictionRecord[]> {
  return guard(c, { what: `lift restrictions of ${nhiId}` }, async () => {
    const rows = await c.db.updateTable('restrictions').set({ lifted_at: at, lifted_by: liftedBy })
      .where('nhi_id', '=', nhiId).where('lifted_at', 'is', null).returningAll().execute();
    return rows.map(restrictionFromRow);
  });
}

/** Oldest first (created_at, then id). */
export async function listRestrictions(c: StoreContext, opts: { activeOnly?: boolean; nhiId?: string } = {}): Promise<RestrictionRecord[]> {
  return guard(c, { what: 'list restrictions' }, async () => {
    let q = c.db.selectFrom('restrictions').selectAll();
    if (opts.activeOnly) q = q.where('lifted_at', 'is', null);
    if (opts.nhiId !== undefined) q = q.where('nhi_id', '=', opts.nhiId);
    const rows = await q.orderBy('created_at', 'asc').orderBy('id', 'asc').execute();
    return rows.map(restrictionFromRow);
  });
}
