/**
 * How a capability writes to the audit log without knowing how it is stored. `record` is
 * synchronous and cheap (it only queues), so it may be called on hot paths. Data must hold
 * no secret or token: pass digests and ids.
 */
export interface AuditInput {
  /** `noun.outcome`, e.g. `nhi.created`, `token.issued`, `tool.call_denied`. */
  type: string;
  actor?: string | null;
  subject?: string | null;
  tool?: string | null;
  decision?: string | null;
  traceId?: string | null;
  data?: Record<string, unknown>;
}

export interface AuditSink {
  /** Queues the event; returns its id. */
  record(event: AuditInput): string;
}
