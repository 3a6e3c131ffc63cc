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
 *
 * The arithmetic is in core/audit-chain.ts, so that the store's SQLite writer thread can run it.
 */

export { GENESIS_HASH, canonicalRecord, chainHash, type ChainedFields } from '../core/audit-chain.js';

/** The canonical JSON the chain hashes is the one the whole codebase shares (core/canonical.ts). */
export { canonicalJson };
