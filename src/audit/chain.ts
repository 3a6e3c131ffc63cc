import { createHash } from 'node:crypto';
import type { AuditRecord } from './ports.js';
import { canonicalJson } from '../core/canonical.js';

/**
 * The audit hash chain.
 *
 * Each record's hash covers its own content AND the previous record's hash:
 *
 *   hash(n) = sha256( hash(n-1) || canonical(record n) )      hash(0) = 64 zeros (genesis)
 *
 * so changing, removing, inserting or reordering any record changes every hash after it. An
 * attacker with write access to the table must rewrite the whole tail and the `audit_head` row
 * to hide an edit; anchoring the head elsewhere (logs, a SIEM) closes that gap too.
 *
 * The canonical form is JSON with object keys sorted at every depth, over an explicit list of
 * fields (seq, id, ts, type, actor, subject, tool, decision, traceId, data), so that the hash is
 * independent of how a driver returns columns or orders JSON keys. `seq` is inside the hash, so
 * a record moved to another position no longer matches.
 */

export const GENESIS_HASH = '0'.repeat(64);

export type ChainedFields = Omit<AuditRecord, 'hash' | 'prevHash'>;

/** Canonical serialization of the hashed fields of a record. */
export function canonicalRecord(rec: ChainedFields): string {
  // The common case, written directly: the same text as canonicalJson of the object below
  // (keys in sorted order: actor, data, decision, id, seq, subject, tool, traceId, ts, type),
  // with the data's canonical JSON taken from `dataJson` when the writer computed it already.
  if (typeof rec.id === 'string' && typeof rec.type === 'string' && Number.isFinite(rec.seq) && Number.isFinite(rec.ts)) {
    const data = typeof rec.dataJson === 'string' ? rec.dataJson : canonicalJson(rec.data ?? {});
    return `{"actor":${str(rec.actor)},"data":${data},"decision":${str(rec.decision)},"id":${JSON.stringify(rec.id)},"seq":${JSON.stringify(rec.seq)},"subject":${str(rec.subject)},"tool":${str(rec.tool)},"traceId":${str(rec.traceId)},"ts":${JSON.stringify(rec.ts)},"type":${JSON.stringify(rec.type)}}`;
  }
  return canonicalJson({
    seq: rec.seq,
    id: rec.id,
    ts: rec.ts,
    type: rec.type,
    actor: rec.actor ?? null,
    subject: rec.subject ?? null,
    tool: rec.tool ?? null,
    decision: rec.decision ?? null,
    traceId: rec.traceId ?? null,
    data: rec.data ?? {},
  });
}

function str(v: string | null | undefined): string {
  return typeof v === 'string' ? JSON.stringify(v) : canonicalJson(v ?? null);
}

/** sha256(prevHash || canonical(rec)), lowercase hex. Pass it as `chain` to `appendChained`. */
export function chainHash(prevHash: string, rec: ChainedFields): string {
  return createHash('sha256').update(prevHash, 'utf8').update(canonicalRecord(rec), 'utf8').digest('hex');
}

/** The canonical JSON the chain hashes is the one the whole codebase shares (core/canonical.ts). */
export { canonicalJson };
