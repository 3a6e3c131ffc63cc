import type { AuditColumns } from '../core/audit-chain.js';

/** What the audit log needs from storage. Implemented by store/. */
export interface AuditEvent extends AuditColumns {
  data: Record<string, unknown>;
  /**
   * The canonical JSON of `data` (`core/canonical.ts`), when the writer already has it (the
   * audit log computes it once, at record time): the store hashes and stores this text instead
   * of serializing `data` again. It must be exactly `canonicalJson(data)`. Never read back.
   */
  dataJson?: string;
}

export interface AuditRecord extends AuditEvent {
  seq: number;
  prevHash: string;
  hash: string;
}

export interface AuditHead {
  seq: number;
  hash: string;
}

export interface AuditFilter {
  type?: string;
  actor?: string;
  subject?: string;
  tool?: string;
  decision?: string;
  traceId?: string;
  /** Epoch ms, inclusive. */
  since?: number;
  until?: number;
  limit?: number;
  /** Newest first (default) or oldest first. */
  order?: 'desc' | 'asc';
}

export interface AuditStore {
  /**
   * Appends events as one transaction, serialized across instances: reads the chain head
   * under a lock, gives each event the next seq, computes `hash = chain(prevHash, record)`,
   * inserts the rows and moves the head. Returns the stored records.
   */
  appendChained(events: AuditEvent[], chain: (prevHash: string, rec: Omit<AuditRecord, 'hash' | 'prevHash'>) => string): Promise<AuditRecord[]>;
  /** Records with seq >= fromSeq, oldest first. */
  readAudit(fromSeq: number, limit: number): Promise<AuditRecord[]>;
  auditHead(): Promise<AuditHead>;
  queryAudit(filter: AuditFilter): Promise<AuditRecord[]>;
}
