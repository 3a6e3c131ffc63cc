import { createHash } from 'node:crypto';
import { canonicalJson } from './canonical.js';

/**
 * The audit hash chain's arithmetic (documented in `audit/chain.ts`, which re-exports it). It
 * lives in core so that the store's SQLite writer thread (`store/sqlite/writer-worker.ts`) can
 * compute the chain inside its own transaction without importing the audit capability.
 */

export const GENESIS_HASH = '0'.repeat(64);

/** An audit record's own columns, as every writer of the log has them. */
export interface AuditColumns {
  id: string;
  /** Epoch ms. */
  ts: number;
  /** `noun.outcome`, e.g. `token.issued`, `tool.call_denied`, `nhi.updated`. */
  type: string;
  /** Who did it: an NHI id, `admin:<credential id>`, `system`. */
  actor: string | null;
  /** What it was done to: an NHI id, an approval id, a key id. */
  subject: string | null;
  tool: string | null;
  /** allow | deny | error | null. */
  decision: string | null;
  /** W3C trace id (from `traceparent`). */
  traceId: string | null;
}

/** The fields of an audit record that the chain hashes (an AuditRecord without hash and prevHash). */
export interface ChainedFields extends AuditColumns {
  seq: number;
  data: Record<string, unknown>;
  /** `canonicalJson(data)` when the writer has it already (see AuditEvent.dataJson). */
  dataJson?: string;
}

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
