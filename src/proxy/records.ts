import { OAuthError, UnavailableError, type Bus, type Clock, type DurableAuditSink, type Logger } from '../core/index.js';
import type { Call } from './call.js';

export type CallRecordType = 'tool.called' | 'tool.call_denied';

/**
 * What the audit log and the bus learn of calls: `tool.call_started`, committed before a call is
 * forwarded, then its outcome (`tool.called`) or its refusal (`tool.call_denied`).
 */
export class CallRecords {
  /** Outcomes and refusals the full audit log could not take (see record). */
  private lostRecords = 0;
  private lostLoggedAt = 0;

  constructor(private readonly d: { audit: DurableAuditSink; bus: Bus; clock: Clock; logger: Logger }) {}

  /**
   * The fact of the call, durable before anything of it reaches the tool (Vault's rule: no
   * audit, no request). Appended with the calls being forwarded at the same moment (one commit
   * for them all); when the log cannot take it, the call is refused with 503 and not forwarded.
   * A crash after this loses at most the call's outcome (`tool.called`), never that it was made.
   */
  async started(request: Call, calls: readonly Call[]): Promise<void> {
    try {
      await this.d.audit.append(calls.map((f) => ({ type: 'tool.call_started', actor: f.nhiId, subject: f.nhiId, tool: f.rt.tool.id, decision: 'allow', traceId: f.trace.traceId, data: callData(f) })));
    } catch (err) {
      if (!(err instanceof UnavailableError)) throw err;
      throw new OAuthError('temporarily_unavailable', 'the audit log cannot record this call now, so it was not forwarded; retry later', 503);
    }
    request.forwarded = calls;
  }

  /**
   * A call's outcome (`tool.called`) or refusal (`tool.call_denied`): queued in the audit log and
   * published on the bus. A full log does not make it throw: the outcome of a call already
   * recorded as started, or a refusal (nothing reached the tool), is then lost, and said so in the
   * process log.
   */
  record(type: CallRecordType, decision: 'allow' | 'deny', reason: string, f: Call, extra: Record<string, unknown> = {}): void {
    const now = this.d.clock.now();
    const traceId = f.trace.traceId;
    const tool = f.rt.tool.id;
    const data = callData(f);
    data.reason = reason;
    data.latency_ms = now - f.started;
    for (const k in extra) data[k] = extra[k];
    // The audit log copies (scrubs and serializes) the data now; the same object then becomes the
    // bus event, with the fields the audit record keeps in its own columns (one object per call;
    // both buses serialize it when publish is called).
    try {
      this.d.audit.record({ type, actor: f.nhiId, subject: f.nhiId, tool, decision, traceId, data });
    } catch (err) {
      if (!(err instanceof UnavailableError)) throw err;
      this.lostRecords++;
      const t = this.d.clock.now();
      if (t - this.lostLoggedAt > 5_000) {
        this.lostLoggedAt = t;
        this.d.logger.error({ type, lost: this.lostRecords }, 'audit log full: call outcomes and refusals are not being recorded (forwarded calls are refused)');
      }
    }
    data.nhi = f.nhiId;
    data.tool = tool;
    data.decision = decision;
    data.trace_id = traceId;
    data.at = now;
    void this.d.bus.publish(type, data).catch(() => {});
  }

  /** A forwarded call's outcome: `tool.called` with what the tool answered. */
  called(f: Call, up: { status: number; sent: number; cut?: string | undefined }): void {
    this.record('tool.called', 'allow', 'allowed', f, outcome(up));
  }
}

/** The outcome fields of a forwarded call's `tool.called` record. */
function outcome(up: { status: number; sent: number; cut?: string | undefined }): Record<string, unknown> {
  return up.cut === undefined
    ? { upstream_status: up.status, response_bytes: up.sent }
    : { upstream_status: up.status, response_bytes: up.sent, cut_off: `access revoked (${up.cut})` };
}

/** What the audit log and the bus learn about a call (no token, no secret, no query string). */
function callData(f: Call): Record<string, unknown> {
  return {
    method: f.method, path: f.path, action: f.action, args_digest: f.argsDigest, jti: f.jti, on_behalf_of: f.onBehalfOf,
    run_id: f.runId, binding: f.binding, approval: f.approval, policies: f.policies, client_ip: f.clientIp, proof_jkt: f.proofJkt,
    cnf_jkt: f.cnfJkt,
  };
}
