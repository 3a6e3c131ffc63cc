import { CompiledQuery } from 'kysely';
import { MandateError } from '../core/errors.js';
import { chainHash } from '../core/audit-chain.js';
import type { AuditEvent, AuditFilter, AuditHead, AuditRecord } from '../audit/ports.js';
import type { AuditTable } from './database.js';
import { INSERT_CHUNK, guard, transaction, type StoreContext } from './context.js';
import { auditFromRow } from './rows.js';
import { AUDIT_APPEND_SQL } from './postgres/statements.js';
import type { WriterEvent } from './sqlite/writer.js';

/** The audit log (AuditStore): the hash-chained records and their head. */

const AUDIT_QUERY_DEFAULT_LIMIT = 100;
const AUDIT_QUERY_MAX_LIMIT = 10_000;

export async function appendChained(
  c: StoreContext,
  events: AuditEvent[],
  chain: (prevHash: string, rec: Omit<AuditRecord, 'hash' | 'prevHash'>) => string,
): Promise<AuditRecord[]> {
  if (events.length === 0) return [];
  const writer = c.shared.writer;
  if (writer && !c.inTx && chain === chainHash && events.every(threadWritable)) {
    return guard(c, { what: 'append audit', unique: 'append audit: an event id is already in the log' }, async () => {
      // On the writer thread (same transaction, same chain, same rows; see sqlite/writer.ts).
      const r = await writer.append(events.map(writerEvent));
      let prevHash = r.prevHash;
      return events.map((ev, i) => {
        const hash = r.hashes[i]!;
        const rec: AuditRecord = {
          seq: r.firstSeq + i, id: ev.id, ts: ev.ts, type: ev.type, actor: ev.actor ?? null, subject: ev.subject ?? null, tool: ev.tool ?? null,
          decision: ev.decision ?? null, traceId: ev.traceId ?? null, data: ev.data, prevHash, hash,
        };
        prevHash = hash;
        return rec;
      });
    });
  }
  return guard(c, { what: 'append audit', unique: 'append audit: an event id is already in the log' }, () =>
    transaction(c, async (tx) => {
      const trx = tx.db;
      // Take the chain lock before reading the head. PostgreSQL: a row lock on the single
      // head row, held to commit. SQLite: Kysely begins a DEFERRED transaction, so write
      // first: the no-op UPDATE takes the database's write lock (waiting up to
      // busy_timeout), and the head we then read cannot change under us. Reading first and
      // writing later could fail with SQLITE_BUSY instead of waiting.
      let head: { seq: number; hash: string } | undefined;
      if (c.shared.dialect === 'postgres') {
        head = await trx.selectFrom('audit_head').select(['seq', 'hash']).where('id', '=', 1).forUpdate().executeTakeFirst();
      } else {
        await trx.updateTable('audit_head').set((eb) => ({ seq: eb.ref('seq') })).where('id', '=', 1).execute();
        head = await trx.selectFrom('audit_head').select(['seq', 'hash']).where('id', '=', 1).executeTakeFirst();
      }
      if (!head) throw new MandateError('ERR_STORE_CORRUPT', 'audit_head row is missing: was the store migrated?');

      let prevHash = head.hash;
      let seq = Number(head.seq);
      const out: AuditRecord[] = [];
      const texts: string[] = [];
      for (const ev of events) {
        seq += 1;
        // Hash exactly what will be read back: the data after a JSON round trip (undefined
        // dropped, Dates as strings) and absent fields as null. Otherwise a verifier that
        // recomputes the chain from stored rows would disagree with the hash written here.
        // An event from the audit log carries its data's canonical JSON (dataJson, computed
        // once when it was recorded, from data that is already plain JSON): hashed and stored
        // as it is. Other callers' data gets the round trip here.
        const dataJson = typeof ev.dataJson === 'string' ? ev.dataJson : undefined;
        const rec: Omit<AuditRecord, 'hash' | 'prevHash'> = {
          seq,
          id: ev.id,
          ts: ev.ts,
          type: ev.type,
          actor: ev.actor ?? null,
          subject: ev.subject ?? null,
          tool: ev.tool ?? null,
          decision: ev.decision ?? null,
          traceId: ev.traceId ?? null,
          data: dataJson !== undefined ? ev.data : (JSON.parse(JSON.stringify(ev.data ?? {})) as Record<string, unknown>),
        };
        const hash = chain(prevHash, dataJson !== undefined ? { ...rec, dataJson } : rec);
        out.push({ ...rec, prevHash, hash });
        texts.push(dataJson ?? JSON.stringify(rec.data));
        prevHash = hash;
      }
      const rows: AuditTable[] = out.map((r, i) => ({
        seq: r.seq, id: r.id, ts: r.ts, type: r.type, actor: r.actor, subject: r.subject, tool: r.tool,
        decision: r.decision, trace_id: r.traceId, data: texts[i]!, prev_hash: r.prevHash, hash: r.hash,
      }));
      if (c.shared.dialect === 'postgres') {
        // ONE statement for the rows and the new head, the rows as one JSON parameter: no
        // query text per row count, no per-value query tree (the audit log writes two records
        // per accepted SET, a record per proxied call).
        await trx.executeQuery(CompiledQuery.raw(AUDIT_APPEND_SQL, [JSON.stringify(rows), seq, prevHash]));
        return out;
      }
      for (let i = 0; i < rows.length; i += INSERT_CHUNK) {
        await trx.insertInto('audit').values(rows.slice(i, i + INSERT_CHUNK)).execute();
      }
      await trx.updateTable('audit_head').set({ seq, hash: prevHash }).where('id', '=', 1).execute();
      return out;
    }),
  );
}

export async function readAudit(c: StoreContext, fromSeq: number, limit: number): Promise<AuditRecord[]> {
  return guard(c, { what: 'read audit' }, async () => {
    if (limit <= 0) return [];
    const rows = await c.db.selectFrom('audit').selectAll().where('seq', '>=', fromSeq).orderBy('seq', 'asc').limit(limit).execute();
    return rows.map(auditFromRow);
  });
}

export async function auditHead(c: StoreContext): Promise<AuditHead> {
  return guard(c, { what: 'audit head' }, async () => {
    const head = await c.db.selectFrom('audit_head').select(['seq', 'hash']).where('id', '=', 1).executeTakeFirst();
    if (!head) throw new MandateError('ERR_STORE_CORRUPT', 'audit_head row is missing: was the store migrated?');
    return { seq: Number(head.seq), hash: head.hash };
  });
}

/** Filters combine with AND; `limit` defaults to 100 and is capped at 10000. */
export async function queryAudit(c: StoreContext, filter: AuditFilter): Promise<AuditRecord[]> {
  return guard(c, { what: 'query audit' }, async () => {
    let q = c.db.selectFrom('audit').selectAll();
    if (filter.type !== undefined) q = q.where('type', '=', filter.type);
    if (filter.actor !== undefined) q = q.where('actor', '=', filter.actor);
    if (filter.subject !== undefined) q = q.where('subject', '=', filter.subject);
    if (filter.tool !== undefined) q = q.where('tool', '=', filter.tool);
    if (filter.decision !== undefined) q = q.where('decision', '=', filter.decision);
    if (filter.traceId !== undefined) q = q.where('trace_id', '=', filter.traceId);
    if (filter.since !== undefined) q = q.where('ts', '>=', filter.since);
    if (filter.until !== undefined) q = q.where('ts', '<=', filter.until);
    const limit = Math.min(Math.max(Math.trunc(filter.limit ?? AUDIT_QUERY_DEFAULT_LIMIT), 0), AUDIT_QUERY_MAX_LIMIT);
    if (limit === 0) return [];
    const rows = await q.orderBy('seq', filter.order === 'asc' ? 'asc' : 'desc').limit(limit).execute();
    return rows.map(auditFromRow);
  });
}

/** Whether the writer thread can write this event exactly as the main path would (it hashes and stores dataJson). */
function threadWritable(ev: AuditEvent): boolean {
  return typeof ev.dataJson === 'string' && typeof ev.id === 'string' && typeof ev.type === 'string' && Number.isFinite(ev.ts);
}

function writerEvent(ev: AuditEvent): WriterEvent {
  return {
    id: ev.id, ts: ev.ts, type: ev.type, actor: ev.actor ?? null, subject: ev.subject ?? null, tool: ev.tool ?? null,
    decision: ev.decision ?? null, traceId: ev.traceId ?? null, dataJson: ev.dataJson!,
  };
}
