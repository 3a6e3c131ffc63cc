import { sql, type Kysely } from 'kysely';
import type {
  FindingFilter, FindingInput, FindingRecord, FindingStatus, FindingUpsertResult, MuteRecord, PlaybookActionRecord,
  ProgrammeSnapshotRecord, RiskScoreRecord, Severity,
} from '../governance/ports.js';
import type { Database } from './database.js';
import { atomically, clampLimit, excludedSet, guard, type StoreContext } from './context.js';
import { findingFromRow, muteFromRow, muteToRow, playbookActionFromRow, playbookActionToRow, snapshotFromRow } from './rows.js';

/** Governance (GovernanceStore): findings and their mutes, playbook actions, programme snapshots, risk scores, and the issuance and denial counts detections read. */

const SEVERITY_RANK: Readonly<Record<Severity, number>> = { low: 0, medium: 1, high: 2, critical: 3 };

/**
 * One transaction: the unresolved finding of (nhi, detection, key) counts the repeat (last
 * seen, count, the higher severity, the newest evidence), unless `lastEvent` shows this event
 * was counted already (an at-least-once redelivery); with none, a new finding is inserted.
 * The count update is conditional on last_event, so two instances counting one event count it once.
 */
export async function upsertFinding(c: StoreContext, f: FindingInput, id: string): Promise<FindingUpsertResult> {
  return guard(c, { what: `upsert finding ${f.detection} of ${f.nhiId}` }, async () => {
    const run = async (db: Kysely<Database>): Promise<FindingUpsertResult> => {
      const row = await db.selectFrom('detections').selectAll()
        .where('nhi_id', '=', f.nhiId).where('detection', '=', f.detection).where('key', '=', f.key).where('status', '<>', 'resolved')
        .orderBy('first_seen', 'desc').limit(1).executeTakeFirst();
      if (!row) {
        await db.insertInto('detections').values({
          id, nhi_id: f.nhiId, detection: f.detection, key: f.key, severity: f.severity, title: f.title, evidence: JSON.stringify(f.evidence),
          first_seen: f.at, last_seen: f.at, count: 1, status: 'open', status_by: null, status_at: null, status_note: null, last_event: f.eventId,
        }).execute();
        const created = await db.selectFrom('detections').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
        return { finding: findingFromRow(created), outcome: 'created' };
      }
      if (row.last_event === f.eventId) return { finding: findingFromRow(row), outcome: 'duplicate' };
      const severity = SEVERITY_RANK[f.severity] > SEVERITY_RANK[row.severity as Severity] ? f.severity : row.severity;
      const r = await db.updateTable('detections')
        .set((eb) => ({
          count: eb('count', '+', 1), last_seen: Math.max(f.at, Number(row.last_seen)), severity, evidence: JSON.stringify(f.evidence),
          title: f.title, last_event: f.eventId,
        }))
        .where('id', '=', row.id)
        .where((eb) => eb.or([eb('last_event', 'is', null), eb('last_event', '<>', f.eventId)]))
        .executeTakeFirst();
      const after = await db.selectFrom('detections').selectAll().where('id', '=', row.id).executeTakeFirstOrThrow();
      return { finding: findingFromRow(after), outcome: Number(r.numUpdatedRows) > 0 ? 'updated' : 'duplicate' };
    };
    return atomically(c, run);
  });
}

export async function getFinding(c: StoreContext, id: string): Promise<FindingRecord | undefined> {
  return guard(c, { what: `get finding ${id}` }, async () => {
    const row = await c.db.selectFrom('detections').selectAll().where('id', '=', id).executeTakeFirst();
    return row && findingFromRow(row);
  });
}

/** Newest last_seen first (then id); `limit` defaults to 100 and is capped at 10000. */
export async function listFindings(c: StoreContext, filter: FindingFilter = {}): Promise<FindingRecord[]> {
  return guard(c, { what: 'list findings' }, async () => {
    const limit = clampLimit(filter.limit);
    if (limit === 0) return [];
    let q = c.db.selectFrom('detections').selectAll();
    if (filter.nhiId !== undefined) q = q.where('nhi_id', '=', filter.nhiId);
    if (filter.detection !== undefined) q = q.where('detection', '=', filter.detection);
    if (filter.status !== undefined) q = q.where('status', '=', filter.status);
    if (filter.minSeverity !== undefined) {
      const at = (Object.keys(SEVERITY_RANK) as Severity[]).filter((k) => SEVERITY_RANK[k] >= SEVERITY_RANK[filter.minSeverity!]);
      q = q.where('severity', 'in', at);
    }
    const rows = await q.orderBy('last_seen', 'desc').orderBy('id', 'desc').limit(limit).execute();
    return rows.map(findingFromRow);
  });
}

export async function setFindingStatus(c: StoreContext, id: string, status: FindingStatus, by: string, at: number, note: string | null): Promise<FindingRecord | undefined> {
  return guard(c, { what: `set finding ${id} ${status}` }, async () => {
    const r = await c.db.updateTable('detections').set({ status, status_by: by, status_at: at, status_note: note }).where('id', '=', id).executeTakeFirst();
    if (Number(r.numUpdatedRows) === 0) return undefined;
    const row = await c.db.selectFrom('detections').selectAll().where('id', '=', id).executeTakeFirst();
    return row && findingFromRow(row);
  });
}

export async function addMute(c: StoreContext, m: MuteRecord): Promise<void> {
  await guard(c, { what: `add mute ${m.id}`, unique: `mute ${m.id} already exists` }, async () => {
    await c.db.insertInto('detection_mutes').values(muteToRow(m)).execute();
  });
}

export async function listMutes(c: StoreContext, filter: { nhiId?: string; activeAt?: number } = {}): Promise<MuteRecord[]> {
  return guard(c, { what: 'list mutes' }, async () => {
    let q = c.db.selectFrom('detection_mutes').selectAll();
    if (filter.nhiId !== undefined) q = q.where('nhi_id', '=', filter.nhiId);
    if (filter.activeAt !== undefined) q = q.where('until', '>', filter.activeAt);
    const rows = await q.orderBy('created_at', 'asc').orderBy('id', 'asc').execute();
    return rows.map(muteFromRow);
  });
}

export async function deleteMute(c: StoreContext, id: string): Promise<boolean> {
  return guard(c, { what: `delete mute ${id}` }, async () => {
    const r = await c.db.deleteFrom('detection_mutes').where('id', '=', id).executeTakeFirst();
    return Number(r.numDeletedRows) > 0;
  });
}

/** INSERT … ON CONFLICT (trigger, playbook) DO NOTHING RETURNING: true only for the one that inserted. */
export async function claimPlaybookAction(c: StoreContext, a: PlaybookActionRecord): Promise<boolean> {
  return guard(c, { what: `claim playbook action ${a.playbook}` }, async () => {
    const rows = await c.db.insertInto('playbook_actions').values(playbookActionToRow(a))
      .onConflict((oc) => oc.columns(['trigger', 'playbook']).doNothing()).returning('id').execute();
    return rows.length === 1;
  });
}

export async function setPlaybookActionSignal(c: StoreContext, id: string, signalId: string | null): Promise<void> {
  await guard(c, { what: `update playbook action ${id}` }, async () => {
    await c.db.updateTable('playbook_actions').set({ signal_id: signalId }).where('id', '=', id).execute();
  });
}

export async function getPlaybookAction(c: StoreContext, id: string): Promise<PlaybookActionRecord | undefined> {
  return guard(c, { what: `get playbook action ${id}` }, async () => {
    const row = await c.db.selectFrom('playbook_actions').selectAll().where('id', '=', id).executeTakeFirst();
    return row && playbookActionFromRow(row);
  });
}

export async function listPlaybookActions(c: StoreContext, filter: { nhiId?: string; limit?: number } = {}): Promise<PlaybookActionRecord[]> {
  return guard(c, { what: 'list playbook actions' }, async () => {
    const limit = clampLimit(filter.limit);
    if (limit === 0) return [];
    let q = c.db.selectFrom('playbook_actions').selectAll();
    if (filter.nhiId !== undefined) q = q.where('nhi_id', '=', filter.nhiId);
    const rows = await q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(limit).execute();
    return rows.map(playbookActionFromRow);
  });
}

/** Conditional on undone_at being null: of concurrent undos, one wins. */
export async function markPlaybookActionUndone(c: StoreContext, id: string, by: string, at: number): Promise<PlaybookActionRecord | undefined> {
  return guard(c, { what: `undo playbook action ${id}` }, async () => {
    const rows = await c.db.updateTable('playbook_actions').set({ undone_at: at, undone_by: by })
      .where('id', '=', id).where('undone_at', 'is', null).returningAll().execute();
    return rows[0] && playbookActionFromRow(rows[0]);
  });
}

export async function putProgrammeSnapshot(c: StoreContext, snap: ProgrammeSnapshotRecord): Promise<void> {
  await guard(c, { what: `put programme snapshot ${snap.day}` }, async () => {
    const row = { day: snap.day, taken_at: snap.takenAt, metrics: JSON.stringify(snap.metrics) };
    await c.db.insertInto('programme_snapshots').values(row).onConflict((oc) => oc.column('day').doUpdateSet(excludedSet(row, ['day']))).execute();
  });
}

export async function listProgrammeSnapshots(c: StoreContext, sinceDay?: string): Promise<ProgrammeSnapshotRecord[]> {
  return guard(c, { what: 'list programme snapshots' }, async () => {
    let q = c.db.selectFrom('programme_snapshots').selectAll();
    if (sinceDay !== undefined) q = q.where('day', '>=', sinceDay);
    return (await q.orderBy('day', 'asc').execute()).map(snapshotFromRow);
  });
}

/** One statement per row; a row computed earlier than the stored one does not replace it (instances may race). */
export async function putRiskScores(c: StoreContext, rows: readonly RiskScoreRecord[]): Promise<void> {
  if (rows.length === 0) return;
  await guard(c, { what: `put ${rows.length} risk score(s)` }, async () => {
    const values = rows.map((r) => ({ nhi_id: r.nhiId, score: r.score, computed_at: r.computedAt }));
    await c.db.insertInto('risk_scores').values(values)
      .onConflict((oc) => oc.column('nhi_id')
        .doUpdateSet({ score: sql.ref('excluded.score'), computed_at: sql.ref('excluded.computed_at') })
        .where('risk_scores.computed_at', '<=', sql.ref<number>('excluded.computed_at')))
      .execute();
  });
}

export async function listRiskScores(c: StoreContext): Promise<RiskScoreRecord[]> {
  return guard(c, { what: 'list risk scores' }, async () => {
    const rows = await c.db.selectFrom('risk_scores').selectAll().orderBy('nhi_id', 'asc').execute();
    return rows.map((r) => ({ nhiId: r.nhi_id, score: Number(r.score), computedAt: Number(r.computed_at) }));
  });
}

/** Integer division of epoch ms on both dialects (bigint / integer stays an integer). */
export async function issuanceByHour(c: StoreContext, since: number): Promise<Array<{ nhiId: string; hour: number; count: number }>> {
  return guard(c, { what: 'issuance by hour' }, async () => {
    const hour = sql<number>`issued_at / 3600000`;
    const rows = await c.db.selectFrom('issued_tokens')
      .select(['nhi_id', hour.as('hour'), (eb) => eb.fn.countAll<number>().as('n')])
      .where('issued_at', '>=', since)
      .groupBy(['nhi_id', hour])
      .execute();
    return rows.map((r) => ({ nhiId: r.nhi_id, hour: Number(r.hour), count: Number(r.n) }));
  });
}

export async function denialsByNhi(c: StoreContext, since: number): Promise<Map<string, number>> {
  return guard(c, { what: 'denials by nhi' }, async () => {
    const rows = await c.db.selectFrom('audit')
      .select(['subject', (eb) => eb.fn.countAll<number>().as('n')])
      .where('type', 'in', ['token.denied', 'tool.call_denied']).where('ts', '>=', since).where('subject', 'is not', null)
      .groupBy('subject')
      .execute();
    return new Map(rows.map((r) => [r.subject!, Number(r.n)]));
  });
}
