import { GENESIS_HASH, chainHash } from './chain.js';
import type { AuditHead, AuditRecord, AuditStore } from './ports.js';

export type AuditProblemKind = 'altered' | 'missing' | 'inserted' | 'head_mismatch';

export interface AuditProblem {
  /** The record the problem is at (for `missing`: the first missing seq; for `head_mismatch`: the head's seq). */
  seq: number;
  kind: AuditProblemKind;
  detail: string;
}

export interface AuditVerifyResult {
  ok: boolean;
  /** Records read and checked. */
  checked: number;
  /** The chain head's seq (from the audit_head row) at the end of the check. */
  headSeq: number;
  problems: AuditProblem[];
}

export interface VerifyAuditOptions {
  /** Records per read. Default 1000. */
  pageSize?: number;
}

/**
 * Recomputes the audit hash chain (see chain.ts) from the stored records, oldest first, and
 * reports every problem found, not just the first:
 *
 * - `altered`: a record's hash does not match its content (a column was edited in place);
 * - `missing`: a gap in seq (records removed), reported once per gap at its first seq;
 * - `inserted`: consecutive seqs whose link is broken: the record at seq n+1 was chained to a
 *   different record than the one now at seq n (n was replaced or inserted, or rows reordered),
 *   or the first record does not start from the genesis hash;
 * - `head_mismatch`: the last record is not the one the `audit_head` row names (a removed tail,
 *   or records appended behind the writer's back).
 *
 * It reads in pages and holds only the previous record, so it runs on logs of any size. Records
 * appended while it runs are checked too: the head is read after the scan and the scan catches
 * up to it, so concurrent writers do not cause false reports.
 */
export async function verifyAuditChain(store: AuditStore, opts: VerifyAuditOptions = {}): Promise<AuditVerifyResult> {
  const pageSize = Math.max(1, opts.pageSize ?? 1000);
  const problems: AuditProblem[] = [];
  let prev: AuditRecord | undefined;
  let prevIntact = true;
  let checked = 0;

  const visit = (r: AuditRecord): void => {
    checked++;
    const intact = chainHash(r.prevHash, r) === r.hash;
    if (!intact) problems.push({ seq: r.seq, kind: 'altered', detail: `record ${r.seq} (${r.id}): its content does not match its hash` });

    if (!prev) {
      if (r.seq > 1) {
        problems.push({ seq: 1, kind: 'missing', detail: gap(1, r.seq - 1) });
      } else if (r.prevHash !== GENESIS_HASH) {
        problems.push({ seq: r.seq, kind: 'inserted', detail: `record ${r.seq}: the first record does not start from the genesis hash` });
      }
    } else if (r.seq <= prev.seq) {
      problems.push({ seq: r.seq, kind: 'inserted', detail: `record ${r.seq} read after ${prev.seq}: records out of order` });
    } else if (r.seq !== prev.seq + 1) {
      // The link across a gap cannot be checked: the record it pointed to is gone.
      problems.push({ seq: prev.seq + 1, kind: 'missing', detail: gap(prev.seq + 1, r.seq - 1) });
    } else if (r.prevHash !== prev.hash) {
      // Chain rule: hash(n+1) covers hash(n). If n+1 is itself intact, it was computed after a
      // different record n than the one stored now, so the suspect is n (replaced by a forged
      // record with a self-consistent hash, or inserted). If n+1 is not intact, its own
      // prev_hash may be what was edited.
      if (intact && prevIntact) {
        problems.push({
          seq: prev.seq,
          kind: 'inserted',
          detail: `record ${prev.seq} (${prev.id}) is not the record that ${r.seq} was chained to: it was replaced or inserted`,
        });
      } else {
        problems.push({ seq: r.seq, kind: 'inserted', detail: `record ${r.seq}: prev_hash does not match the hash of record ${prev.seq}` });
      }
    }
    prev = r;
    prevIntact = intact;
  };

  /** Reads from `from` until a short page; returns how many records it read. */
  const scan = async (from: number): Promise<number> => {
    let n = 0;
    for (;;) {
      const page = await store.readAudit(from, pageSize);
      for (const r of page) visit(r);
      n += page.length;
      const last = page[page.length - 1];
      if (!last || page.length < pageSize) return n;
      from = last.seq + 1;
    }
  };

  await scan(1);
  // Read the head only after the scan: every record we read was committed with a head at least
  // as far, so "last record beyond the head" is tampering, never a race. Records appended since
  // the scan ended are caught up with (a few rounds; a log that grows faster than we read is
  // compared at the point we stopped).
  let head: AuditHead = await store.auditHead();
  for (let round = 0; round < 5 && (prev?.seq ?? 0) < head.seq; round++) {
    if ((await scan((prev?.seq ?? 0) + 1)) === 0) break; // nothing more: the tail is gone
    head = await store.auditHead();
  }

  const lastSeq = prev?.seq ?? 0;
  const lastHash = prev?.hash ?? GENESIS_HASH;
  if (lastSeq < head.seq) {
    problems.push({
      seq: head.seq,
      kind: 'head_mismatch',
      detail: `the head names record ${head.seq} but the log ends at ${lastSeq}: ${gap(lastSeq + 1, head.seq)} (tail removed)`,
    });
  } else if (lastSeq > head.seq) {
    problems.push({
      seq: head.seq,
      kind: 'head_mismatch',
      detail: `the log continues past the head (${head.seq}) to ${lastSeq}: records appended outside the audit writer`,
    });
  } else if (lastHash !== head.hash) {
    problems.push({ seq: head.seq, kind: 'head_mismatch', detail: `record ${head.seq}'s hash differs from the one the head holds` });
  }

  return { ok: problems.length === 0, checked, headSeq: head.seq, problems };
}

function gap(from: number, to: number): string {
  return from === to ? `record ${from} is missing (removed)` : `records ${from}..${to} are missing (${to - from + 1} removed)`;
}
