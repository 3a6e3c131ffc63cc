import { CompiledQuery, sql } from 'kysely';
import type { SignalApplicationRecord, SignalRecord, SignalStatus } from '../signals/ports.js';
import { BATCH_ROWS, clampLimit, guard, type StoreContext } from './context.js';
import { signalFromRow, signalToRow } from './rows.js';
import { SIGNAL_TIMES_SQL } from './postgres/statements.js';

/** The signals received or raised, and the timeline of their application per instance (signal_applications). */

export async function insertSignal(c: StoreContext, sig: SignalRecord): Promise<void> {
  await guard(c, { what: `insert signal ${sig.id}`, unique: `signal ${sig.id} already exists` }, async () => {
    await c.db.insertInto('signals').values(signalToRow(sig)).execute();
  });
}

export async function insertSignals(c: StoreContext, sigs: readonly SignalRecord[]): Promise<void> {
  if (sigs.length === 0) return;
  await guard(c, { what: `insert ${sigs.length} signals`, unique: 'a signal already exists' }, async () => {
    for (let i = 0; i < sigs.length; i += BATCH_ROWS) {
      await c.db.insertInto('signals').values(sigs.slice(i, i + BATCH_ROWS).map(signalToRow)).execute();
    }
  });
}

export async function getSignals(c: StoreContext, ids: readonly string[]): Promise<SignalRecord[]> {
  if (ids.length === 0) return [];
  return guard(c, { what: `get ${ids.length} signals` }, async () => {
    const out: SignalRecord[] = [];
    const unique = [...new Set(ids)];
    for (let i = 0; i < unique.length; i += BATCH_ROWS) {
      const rows = await c.db.selectFrom('signals').selectAll().where('id', 'in', unique.slice(i, i + BATCH_ROWS)).execute();
      out.push(...rows.map(signalFromRow));
    }
    return out;
  });
}

export async function knownNhiIds(c: StoreContext, ids: readonly string[]): Promise<Set<string>> {
  const found = new Set<string>();
  if (ids.length === 0) return found;
  return guard(c, { what: `look up ${ids.length} nhis` }, async () => {
    const unique = [...new Set(ids)];
    for (let i = 0; i < unique.length; i += BATCH_ROWS) {
      const rows = await c.db.selectFrom('nhis').select('id').where('id', 'in', unique.slice(i, i + BATCH_ROWS)).execute();
      for (const r of rows) found.add(r.id);
    }
    return found;
  });
}

export async function getSignal(c: StoreContext, id: string): Promise<SignalRecord | undefined> {
  return guard(c, { what: `get signal ${id}` }, async () => {
    const row = await c.db.selectFrom('signals').selectAll().where('id', '=', id).executeTakeFirst();
    return row && signalFromRow(row);
  });
}

/** Newest first (received_at, then id, descending); `limit` defaults to 100 and is capped at 10000. */
export async function listSignals(c: StoreContext, filter: { nhiId?: string; since?: number; limit?: number } = {}): Promise<SignalRecord[]> {
  return guard(c, { what: 'list signals' }, async () => {
    const limit = clampLimit(filter.limit);
    if (limit === 0) return [];
    let q = c.db.selectFrom('signals').selectAll();
    if (filter.nhiId !== undefined) q = q.where('nhi_id', '=', filter.nhiId);
    if (filter.since !== undefined) q = q.where('received_at', '>=', filter.since);
    const rows = await q.orderBy('received_at', 'desc').orderBy('id', 'desc').limit(limit).execute();
    return rows.map(signalFromRow);
  });
}

export async function updateSignalOutcome(c: StoreContext, id: string, o: { status: SignalStatus; appliedAt: number | null; error: string | null }): Promise<void> {
  await guard(c, { what: `update signal ${id}` }, async () => {
    await c.db.updateTable('signals').set({ status: o.status, applied_at: o.appliedAt, error: o.error }).where('id', '=', id).execute();
  });
}

/** Upsert that keeps the first applied_at: redeliveries and reloads change nothing. */
export async function recordSignalApplied(c: StoreContext, a: { signalId: string; instanceId: string; role: string; at: number }): Promise<void> {
  await guard(c, { what: `record signal ${a.signalId} applied` }, async () => {
    await c.db.insertInto('signal_applications')
      .values({ signal_id: a.signalId, instance_id: a.instanceId, role: a.role, applied_at: a.at, first_denied_at: null })
      .onConflict((oc) => oc.columns(['signal_id', 'instance_id']).doUpdateSet({ applied_at: sql`coalesce(signal_applications.applied_at, excluded.applied_at)` }))
      .execute();
  });
}

/** Upsert that keeps the first first_denied_at. */
export async function recordSignalDenied(c: StoreContext, a: { signalId: string; instanceId: string; role: string; at: number }): Promise<void> {
  await guard(c, { what: `record signal ${a.signalId} denial` }, async () => {
    await c.db.insertInto('signal_applications')
      .values({ signal_id: a.signalId, instance_id: a.instanceId, role: a.role, applied_at: null, first_denied_at: a.at })
      .onConflict((oc) => oc.columns(['signal_id', 'instance_id']).doUpdateSet({ first_denied_at: sql`coalesce(signal_applications.first_denied_at, excluded.first_denied_at)` }))
      .execute();
  });
}

/**
 * Many applied / first-denial times in one multi-row upsert per chunk, each keeping the first
 * time (coalesce), as recordSignalApplied and recordSignalDenied do one at a time. Rows of
 * the same (signal, instance) are merged first (PostgreSQL refuses to update a row twice in
 * one statement); the earliest time of each kind wins.
 */
export async function recordSignalTimes(c: StoreContext, rows: readonly { signalId: string; instanceId: string; role: string; appliedAt: number | null; firstDeniedAt: number | null }[]): Promise<Map<string, number>> {
  const received = new Map<string, number>();
  if (rows.length === 0) return received;
  const min = (a: number | null, b: number | null) => (a === null ? b : b === null ? a : Math.min(a, b));
  const merged = new Map<string, { signal_id: string; instance_id: string; role: string; applied_at: number | null; first_denied_at: number | null }>();
  for (const r of rows) {
    const k = `${r.signalId}\u0000${r.instanceId}`;
    const m = merged.get(k);
    if (m) {
      m.applied_at = min(m.applied_at, r.appliedAt);
      m.first_denied_at = min(m.first_denied_at, r.firstDeniedAt);
    } else merged.set(k, { signal_id: r.signalId, instance_id: r.instanceId, role: r.role, applied_at: r.appliedAt, first_denied_at: r.firstDeniedAt });
  }
  const all = [...merged.values()];
  await guard(c, { what: `record ${all.length} signal times` }, async () => {
    if (c.shared.dialect === 'postgres') {
      // One statement, every column one array parameter: the upsert and the signals' arrival times.
      const { rows: back } = await c.db.executeQuery<{ id: string; received_at: string | number }>(CompiledQuery.raw(SIGNAL_TIMES_SQL, [
        all.map((a) => a.signal_id), all.map((a) => a.instance_id), all.map((a) => a.role), all.map((a) => a.applied_at), all.map((a) => a.first_denied_at),
      ]));
      for (const b of back) received.set(b.id, Number(b.received_at));
      return;
    }
    for (let i = 0; i < all.length; i += BATCH_ROWS) {
      await c.db.insertInto('signal_applications').values(all.slice(i, i + BATCH_ROWS))
        .onConflict((oc) => oc.columns(['signal_id', 'instance_id']).doUpdateSet({
          applied_at: sql`coalesce(signal_applications.applied_at, excluded.applied_at)`,
          first_denied_at: sql`coalesce(signal_applications.first_denied_at, excluded.first_denied_at)`,
        }))
        .execute();
    }
    const ids = [...new Set(all.map((a) => a.signal_id))];
    for (let i = 0; i < ids.length; i += BATCH_ROWS) {
      const found = await c.db.selectFrom('signals').select(['id', 'received_at']).where('id', 'in', ids.slice(i, i + BATCH_ROWS)).execute();
      for (const f of found) received.set(f.id, Number(f.received_at));
    }
  });
  return received;
}

export async function listSignalApplications(c: StoreContext, signalIds: readonly string[]): Promise<SignalApplicationRecord[]> {
  if (signalIds.length === 0) return [];
  return guard(c, { what: 'list signal applications' }, async () => {
    const rows = await c.db.selectFrom('signal_applications').selectAll().where('signal_id', 'in', [...signalIds])
      .orderBy('signal_id').orderBy('instance_id').execute();
    return rows.map((r) => ({
      signalId: r.signal_id, instanceId: r.instance_id, role: r.role,
      appliedAt: r.applied_at === null ? null : Number(r.applied_at), firstDeniedAt: r.first_denied_at === null ? null : Number(r.first_denied_at),
    }));
  });
}
