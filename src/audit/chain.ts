import { createHash } from 'node:crypto';
import type { AuditRecord } from './ports.js';

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

/** sha256(prevHash || canonical(rec)), lowercase hex. Pass it as `chain` to `appendChained`. */
export function chainHash(prevHash: string, rec: ChainedFields): string {
  return createHash('sha256').update(prevHash, 'utf8').update(canonicalRecord(rec), 'utf8').digest('hex');
}

/**
 * JSON with keys sorted (by UTF-16 code units, as Array.prototype.sort does) at every depth.
 * Values behave as in JSON.stringify (undefined members dropped, non-finite numbers as null,
 * toJSON honoured), so the canonical form of a value equals that of its JSON round trip.
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value;
  const v = value as { toJSON?: () => unknown };
  if (typeof v.toJSON === 'function') return sortKeys(v.toJSON());
  if (Array.isArray(value)) return value.map(sortKeys);
  // Null prototype: a "__proto__" key (JSON.parse makes it an own property) stays a plain key.
  const out = Object.create(null) as Record<string, unknown>;
  for (const k of Object.keys(value).sort()) out[k] = sortKeys((value as Record<string, unknown>)[k]);
  return out;
}
