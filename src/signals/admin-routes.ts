import { z } from 'zod';
import { NotFoundError, ValidationError, type AuditSink, type Clock } from '../core/index.js';
import type { AdminApi } from '../admin/index.js';
import type { EnforcementStore, RestrictionRecord } from '../enforcement/index.js';
import type { SignalRecord, SignalsStore, SsfEventRecord, SsfStreamRecord } from './ports.js';
import { SIGNAL_ACTIONS, SIGNAL_SEVERITIES } from './ports.js';
import type { Signals } from './signals.js';
import type { SsfTransmitter } from './transmitter.js';
import type { SsfReceiver } from './receiver.js';
import { inboundStreamId } from './set.js';
import { mttrReport } from './timeline.js';

export function signalJson(s: SignalRecord) {
  return {
    id: s.id, nhi: s.nhiId, jti: s.jti, run_id: s.runId, credential: s.credentialId, reason: s.reason, severity: s.severity,
    action: s.action, source: s.source, txn: s.txn, received_at: s.receivedAt, applied_at: s.appliedAt, status: s.status,
    error: s.error, data: s.data,
  };
}

export function restrictionJson(r: RestrictionRecord) {
  return {
    id: r.id, nhi: r.nhiId, kind: r.kind, fallback_tier: r.fallbackTier, signal_id: r.signalId, reason: r.reason,
    created_at: r.createdAt, lifted_at: r.liftedAt, lifted_by: r.liftedBy,
  };
}

/** Metadata of a queued SET (never the SET itself). */
function eventJson(e: SsfEventRecord) {
  return { id: e.id, stream_id: e.streamId, jti: e.jti, status: e.status, attempts: e.attempts, next_attempt_at: e.nextAttemptAt, last_error: e.lastError, created_at: e.createdAt };
}

function streamJson(s: SsfStreamRecord) {
  const c = s.config as { aud?: unknown; events_requested?: unknown; delivery?: { method?: string; endpoint_url?: string } };
  return {
    stream_id: s.id, owner: s.owner, status: s.status, reason: s.statusReason, aud: c.aud, events_requested: c.events_requested,
    delivery: { method: c.delivery?.method, endpoint_url: c.delivery?.endpoint_url }, created_at: s.createdAt, updated_at: s.updatedAt,
  };
}

/** Signals, restrictions, SSF streams, dead letters and receivers in the admin API. */
export function mountSignalsRoutes(
  api: AdminApi,
  d: { signals: Signals; store: SignalsStore & Pick<EnforcementStore, 'listRestrictions'>; transmitter: SsfTransmitter; receiver: SsfReceiver; audit: AuditSink; clock: Clock },
): void {
  api.route({
    method: 'GET', path: '/reports/mttr', tag: 'signals', role: 'viewer',
    summary: 'Time to revoke: mean, p50, p99 from a signal arriving to every instance applying it and to the first refused call.',
    query: z.strictObject({
      since: z.coerce.number().int().optional(),
      limit: z.coerce.number().int().min(1).max(10_000).default(1000),
      per_signal: z.enum(['true', 'false']).default('false'),
    }),
    handler: async ({ query }) => {
      const signals = await d.store.listSignals({ ...(query.since !== undefined ? { since: query.since } : {}), limit: query.limit });
      const apps = await d.store.listSignalApplications(signals.map((s) => s.id));
      const r = mttrReport(signals, apps);
      return query.per_signal === 'true' ? r : { ...r, per_signal: undefined };
    },
  });
  api.route({
    method: 'POST', path: '/signals', summary: 'Raise a signal: stored, audited, published (signal.raised) and enforced at once.', tag: 'signals', role: 'admin', status: 201,
    body: z.strictObject({
      nhi: z.string().min(1).max(200).optional(),
      jti: z.string().min(1).max(200).optional(),
      run_id: z.string().min(1).max(200).optional(),
      credential: z.string().min(1).max(200).optional(),
      reason: z.string().min(1).max(500),
      severity: z.enum(SIGNAL_SEVERITIES as [string, ...string[]]).default('high'),
      action: z.enum(SIGNAL_ACTIONS as [string, ...string[]]),
      fallback_tier: z.string().min(1).max(63).optional(),
    }),
    handler: async ({ body, actor }) => {
      if (!body.nhi && !body.jti) throw new ValidationError('name the subject: nhi or jti');
      const s = await d.signals.raise({
        nhiId: body.nhi ?? null, jti: body.jti ?? null, runId: body.run_id ?? null, credentialId: body.credential ?? null,
        reason: body.reason, severity: body.severity as SignalRecord['severity'], action: body.action as SignalRecord['action'],
        source: actor, ...(body.fallback_tier ? { fallbackTier: body.fallback_tier } : {}),
      });
      return signalJson(s);
    },
  });
  api.route({
    method: 'GET', path: '/signals', summary: 'Signals, newest first, with when each arrived and when it was applied.', tag: 'signals', role: 'viewer',
    query: z.strictObject({ nhi: z.string().optional(), since: z.coerce.number().int().optional(), limit: z.coerce.number().int().min(1).max(1000).default(100) }),
    handler: async ({ query }) => ({ signals: (await d.store.listSignals({ nhiId: query.nhi, since: query.since, limit: query.limit })).map(signalJson) }),
  });
  api.route({
    method: 'GET', path: '/signals/:id', summary: 'One signal.', tag: 'signals', role: 'viewer',
    handler: async ({ params }) => {
      const s = await d.store.getSignal(params.id!);
      if (!s) throw new NotFoundError(`no signal "${params.id}"`);
      return signalJson(s);
    },
  });
  api.route({
    method: 'GET', path: '/restrictions', summary: 'Step-down / step-up restrictions (active by default).', tag: 'signals', role: 'viewer',
    query: z.strictObject({ all: z.enum(['true', 'false']).optional(), nhi: z.string().optional() }),
    handler: async ({ query }) => ({ restrictions: (await d.store.listRestrictions({ activeOnly: query.all !== 'true', nhiId: query.nhi })).map(restrictionJson) }),
  });
  api.route({
    method: 'POST', path: '/restrictions/:nhi/lift', summary: "Lift an NHI's step-down or step-up.", tag: 'signals', role: 'admin',
    handler: async ({ params, actor }) => {
      const lifted = await d.signals.lift(params.nhi!, actor);
      if (lifted.length === 0) throw new NotFoundError(`no active restriction for "${params.nhi}"`);
      return { lifted: lifted.map(restrictionJson) };
    },
  });
  api.route({
    method: 'GET', path: '/ssf/streams', summary: 'Every outbound SSF stream (all receivers).', tag: 'ssf', role: 'viewer',
    handler: async () => ({ streams: (await d.store.listSsfStreams({ direction: 'out' })).map(streamJson) }),
  });
  api.route({
    method: 'POST', path: '/ssf/streams/:id/credential', tag: 'ssf', role: 'admin', status: 201,
    summary: "Replace an outbound stream's own credential (the previous one is refused at once on every instance); the new one is shown once, in this answer.",
    handler: async ({ params, actor }) => {
      const credential = await d.transmitter.rotateCredential(params.id!);
      d.audit.record({ type: 'ssf.stream_credential_replaced', actor, subject: params.id, data: {} });
      return { stream_id: params.id, stream_credential: credential };
    },
  });
  api.route({
    method: 'GET', path: '/ssf/events', summary: 'Queued, delivered and dead-letter SETs (metadata only); status=dead lists the dead letters.', tag: 'ssf', role: 'viewer',
    query: z.strictObject({
      stream_id: z.string().optional(), status: z.enum(['queued', 'delivered', 'acked', 'error', 'dead']).optional(),
      limit: z.coerce.number().int().min(1).max(1000).default(100),
    }),
    handler: async ({ query }) => ({ events: (await d.store.listSsfEvents({ streamId: query.stream_id, status: query.status, limit: query.limit })).map(eventJson) }),
  });
  api.route({
    method: 'POST', path: '/ssf/events/:id/retry', summary: 'Queue a dead-letter SET for another round of push attempts.', tag: 'ssf', role: 'admin',
    handler: async ({ params, actor }) => {
      if (!(await d.transmitter.retry(params.id!))) throw new NotFoundError(`no dead letter "${params.id}"`);
      d.audit.record({ type: 'ssf.dead_letter_retried', actor, subject: params.id, data: {} });
      return { queued: params.id };
    },
  });
  api.route({
    method: 'GET', path: '/ssf/receivers', summary: 'Configured SSF receivers (transmitters Mandate listens to) and their status.', tag: 'ssf', role: 'viewer',
    handler: async () => ({
      receivers: await Promise.all(d.receiver.list().map(async (r) => {
        const s = await d.store.getSsfStream(inboundStreamId(r.name));
        return { ...r, status: s?.status ?? 'enabled', reason: s?.statusReason ?? null };
      })),
    }),
  });
  api.route({
    method: 'POST', path: '/ssf/receivers/:name/status', summary: "Pause, disable or enable a receiver: SETs are refused (access_denied) unless enabled.", tag: 'ssf', role: 'admin',
    body: z.strictObject({ status: z.enum(['enabled', 'paused', 'disabled']), reason: z.string().max(500).optional() }),
    handler: async ({ params, body, actor }) => {
      const s = await d.receiver.setStatus(params.name!, body.status, body.reason ?? null);
      d.audit.record({ type: 'ssf.receiver_status', actor, subject: params.name, data: { status: body.status, reason: body.reason ?? null } });
      return { name: params.name, status: s.status, reason: s.statusReason };
    },
  });
}
