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

/**
 * An audit sink that can also make records durable before the caller goes on: what must be in
 * the log before an action happens (a tool call the proxy is about to forward). `append`
 * resolves with the records' ids once the store has committed them, shared with whatever else
 * is being written (group commit); it rejects with UnavailableError, at once when the log is
 * full or its store is failing, else after its time limit. The caller must then not act.
 */
export interface DurableAuditSink extends AuditSink {
  append(events: readonly AuditInput[]): Promise<string[]>;
}
