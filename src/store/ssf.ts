import type { Kysely } from 'kysely';
import type {
  SsfEventRecord, SsfEventStatus, SsfStreamCredentialRecord, SsfStreamDirection, SsfStreamRecord, SsfSubjectRecord,
} from '../signals/ports.js';
import type { Database } from './database.js';
import { INSERT_CHUNK, atomically, clampLimit, guard, type StoreContext } from './context.js';
import { ssfEventFromRow, ssfStreamFromRow, ssfStreamToRow, ssfSubjectFromRow } from './rows.js';

/** The SSF streams (both directions), their subjects, their credentials and the outbound events' queue. */

export async function createSsfStream(c: StoreContext, st: SsfStreamRecord): Promise<void> {
  await guard(c, { what: `create ssf stream ${st.id}`, unique: `ssf stream ${st.id} already exists` }, async () => {
    await c.db.insertInto('ssf_streams').values(ssfStreamToRow(st)).execute();
  });
}

export async function getSsfStream(c: StoreContext, id: string): Promise<SsfStreamRecord | undefined> {
  return guard(c, { what: `get ssf stream ${id}` }, async () => {
    const row = await c.db.selectFrom('ssf_streams').selectAll().where('id', '=', id).executeTakeFirst();
    return row && ssfStreamFromRow(row);
  });
}

export async function listSsfStreams(c: StoreContext, filter: { direction?: SsfStreamDirection; owner?: string } = {}): Promise<SsfStreamRecord[]> {
  return guard(c, { what: 'list ssf streams' }, async () => {
    let q = c.db.selectFrom('ssf_streams').selectAll();
    if (filter.direction !== undefined) q = q.where('direction', '=', filter.direction);
    if (filter.owner !== undefined) q = q.where('owner', '=', filter.owner);
    const rows = await q.orderBy('created_at', 'asc').orderBy('id', 'asc').execute();
    return rows.map(ssfStreamFromRow);
  });
}

export async function updateSsfStream(c: StoreContext, st: SsfStreamRecord): Promise<boolean> {
  return guard(c, { what: `update ssf stream ${st.id}` }, async () => {
    const r = await c.db.updateTable('ssf_streams')
      .set({ config: JSON.stringify(st.config ?? {}), status: st.status, status_reason: st.statusReason ?? null, updated_at: st.updatedAt })
      .where('id', '=', st.id).executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  });
}

/** Subjects and events go with it (ON DELETE CASCADE), deleted explicitly too so that no dialect relies on it. */
export async function deleteSsfStream(c: StoreContext, id: string): Promise<boolean> {
  return guard(c, { what: `delete ssf stream ${id}` }, async () => {
    const del = async (db: Kysely<Database>) => {
      await db.deleteFrom('ssf_subjects').where('stream_id', '=', id).execute();
      await db.deleteFrom('ssf_events').where('stream_id', '=', id).execute();
      await db.deleteFrom('ssf_stream_credentials').where('stream_id', '=', id).execute();
      const r = await db.deleteFrom('ssf_streams').where('id', '=', id).executeTakeFirst();
      return Number(r.numDeletedRows) > 0;
    };
    return atomically(c, del);
  });
}

export async function putSsfStreamCredential(c: StoreContext, cred: SsfStreamCredentialRecord): Promise<void> {
  await guard(c, { what: `set the credential of ssf stream ${cred.streamId}` }, async () => {
    await c.db.insertInto('ssf_stream_credentials')
      .values({ stream_id: cred.streamId, secret_hash: cred.secretHash, created_at: cred.createdAt })
      .onConflict((oc) => oc.column('stream_id').doUpdateSet({ secret_hash: cred.secretHash, created_at: cred.createdAt }))
      .execute();
  });
}

export async function getSsfStreamCredential(c: StoreContext, streamId: string): Promise<SsfStreamCredentialRecord | undefined> {
  return guard(c, { what: `get the credential of ssf stream ${streamId}` }, async () => {
    const row = await c.db.selectFrom('ssf_stream_credentials').selectAll().where('stream_id', '=', streamId).executeTakeFirst();
    return row && { streamId: row.stream_id, secretHash: row.secret_hash, createdAt: Number(row.created_at) };
  });
}

export async function addSsfSubject(c: StoreContext, sub: SsfSubjectRecord): Promise<void> {
  await guard(c, { what: `add subject to ssf stream ${sub.streamId}` }, async () => {
    await c.db.insertInto('ssf_subjects')
      .values({ stream_id: sub.streamId, subject_key: sub.key, subject: JSON.stringify(sub.subject), nhi_id: sub.nhiId ?? null, created_at: sub.createdAt })
      .onConflict((oc) => oc.columns(['stream_id', 'subject_key']).doNothing())
      .execute();
  });
}

export async function removeSsfSubject(c: StoreContext, streamId: string, key: string): Promise<boolean> {
  return guard(c, { what: `remove subject from ssf stream ${streamId}` }, async () => {
    const r = await c.db.deleteFrom('ssf_subjects').where('stream_id', '=', streamId).where('subject_key', '=', key).executeTakeFirst();
    return Number(r.numDeletedRows) > 0;
  });
}

export async function listSsfSubjects(c: StoreContext, streamId: string): Promise<SsfSubjectRecord[]> {
  return guard(c, { what: `list subjects of ssf stream ${streamId}` }, async () => {
    const rows = await c.db.selectFrom('ssf_subjects').selectAll().where('stream_id', '=', streamId)
      .orderBy('created_at', 'asc').orderBy('subject_key', 'asc').execute();
    return rows.map(ssfSubjectFromRow);
  });
}

/** INSERT … ON CONFLICT (stream_id, jti) DO NOTHING RETURNING: true only for the one that inserted. */
export async function enqueueSsfEvent(c: StoreContext, e: SsfEventRecord): Promise<boolean> {
  return guard(c, { what: `enqueue ssf event ${e.jti}` }, async () => {
    const rows = await c.db.insertInto('ssf_events')
      .values({
        id: e.id, stream_id: e.streamId, jti: e.jti, set_jwt: e.setJwt, status: e.status, attempts: e.attempts,
        next_attempt_at: e.nextAttemptAt ?? null, last_error: e.lastError ?? null, created_at: e.createdAt,
      })
      .onConflict((oc) => oc.columns(['stream_id', 'jti']).doNothing())
      .returning('id')
      .execute();
    return rows.length === 1;
  });
}

export async function getSsfEvent(c: StoreContext, id: string): Promise<SsfEventRecord | undefined> {
  return guard(c, { what: `get ssf event ${id}` }, async () => {
    const row = await c.db.selectFrom('ssf_events').selectAll().where('id', '=', id).executeTakeFirst();
    return row && ssfEventFromRow(row);
  });
}

export async function dueSsfEvents(c: StoreContext, filter: { streamId?: string; now: number; limit: number }): Promise<SsfEventRecord[]> {
  return guard(c, { what: 'due ssf events' }, async () => {
    const limit = clampLimit(filter.limit);
    if (limit === 0) return [];
    let q = c.db.selectFrom('ssf_events').selectAll().where('status', '=', 'queued')
      .where((eb) => eb.or([eb('next_attempt_at', 'is', null), eb('next_attempt_at', '<=', filter.now)]));
    if (filter.streamId !== undefined) q = q.where('stream_id', '=', filter.streamId);
    const rows = await q.orderBy('created_at', 'asc').orderBy('id', 'asc').limit(limit).execute();
    return rows.map(ssfEventFromRow);
  });
}

/** Compare-and-set on next_attempt_at: concurrent claimers (instances) cannot both win. */
export async function claimSsfEvent(c: StoreContext, id: string, expectedNextAt: number | null, leaseUntil: number): Promise<boolean> {
  return guard(c, { what: `claim ssf event ${id}` }, async () => {
    const r = await c.db.updateTable('ssf_events').set({ next_attempt_at: leaseUntil })
      .where('id', '=', id).where('status', '=', 'queued')
      .where((eb) => (expectedNextAt === null ? eb('next_attempt_at', 'is', null) : eb('next_attempt_at', '=', expectedNextAt)))
      .executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  });
}

export async function updateSsfEvent(c: StoreContext, id: string, patch: { status: SsfEventStatus; attempts?: number; nextAttemptAt?: number | null; lastError?: string | null }): Promise<void> {
  await guard(c, { what: `update ssf event ${id}` }, async () => {
    await c.db.updateTable('ssf_events')
      .set({
        status: patch.status,
        ...(patch.attempts !== undefined ? { attempts: patch.attempts } : {}),
        ...(patch.nextAttemptAt !== undefined ? { next_attempt_at: patch.nextAttemptAt } : {}),
        ...(patch.lastError !== undefined ? { last_error: patch.lastError } : {}),
      })
      .where('id', '=', id).execute();
  });
}

export async function settleSsfEvents(c: StoreContext, streamId: string, jtis: string[], outcome: { status: 'acked' | 'error'; lastError?: string | null }): Promise<number> {
  if (jtis.length === 0) return 0;
  return guard(c, { what: `settle ssf events of ${streamId}` }, async () => {
    let n = 0;
    for (let i = 0; i < jtis.length; i += INSERT_CHUNK) {
      const r = await c.db.updateTable('ssf_events').set({ status: outcome.status, last_error: outcome.lastError ?? null })
        .where('stream_id', '=', streamId).where('status', '=', 'queued').where('jti', 'in', jtis.slice(i, i + INSERT_CHUNK)).executeTakeFirst();
      n += Number(r.numUpdatedRows);
    }
    return n;
  });
}

export async function listSsfEvents(c: StoreContext, filter: { streamId?: string; status?: SsfEventStatus; limit?: number }): Promise<SsfEventRecord[]> {
  return guard(c, { what: 'list ssf events' }, async () => {
    const limit = clampLimit(filter.limit);
    if (limit === 0) return [];
    let q = c.db.selectFrom('ssf_events').selectAll();
    if (filter.streamId !== undefined) q = q.where('stream_id', '=', filter.streamId);
    if (filter.status !== undefined) q = q.where('status', '=', filter.status);
    const rows = await q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(limit).execute();
    return rows.map(ssfEventFromRow);
  });
}
