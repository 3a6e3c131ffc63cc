import { z } from 'zod';
import { NotFoundError, ValidationError, parseEnd } from '../core/index.js';
import type { AdminApi } from '../admin/index.js';
import { findingJson, muteJson } from './findings.js';
import { playbookActionJson } from './playbooks.js';
import { DETECTIONS, FINDING_STATUSES, SEVERITIES } from './ports.js';
import type { Governance } from './governance.js';

const enumOf = <T extends string>(xs: readonly T[]) => z.enum(xs as unknown as [T, ...T[]]);

/** An end date: YYYY-MM-DD (the end of that day, UTC), an ISO instant, or epoch ms. */
function parseUntil(v: string | number): number {
  if (typeof v === 'number') return v;
  const t = /^\d+$/.test(v) ? Number(v) : parseEnd(v);
  if (!Number.isFinite(t)) throw new ValidationError('until: expected YYYY-MM-DD, an ISO time or epoch ms');
  return t;
}

/** Findings, mutes, risk, programme metrics and playbook actions in the admin API. */
export function mountGovernanceRoutes(api: AdminApi, g: Governance): void {
  api.route({
    method: 'GET', path: '/findings', summary: 'Findings of the detections, newest first; filter by NHI, detection, status, minimum severity.', tag: 'governance', role: 'viewer',
    query: z.strictObject({
      nhi: z.string().optional(), detection: enumOf(DETECTIONS).optional(), status: enumOf(FINDING_STATUSES).optional(),
      min_severity: enumOf(SEVERITIES).optional(), limit: z.coerce.number().int().min(1).max(1000).default(100),
    }),
    handler: async ({ query }) => ({
      findings: (await g.findings.list({ nhiId: query.nhi, detection: query.detection, status: query.status, minSeverity: query.min_severity, limit: query.limit })).map(findingJson),
    }),
  });
  api.route({
    method: 'GET', path: '/findings/summary', summary: 'Unresolved findings counted by status (open, acknowledged) and severity.', tag: 'governance', role: 'viewer',
    handler: async () => g.findings.summary(),
  });
  api.route({
    method: 'GET', path: '/findings/:id', summary: 'One finding with its evidence.', tag: 'governance', role: 'viewer',
    handler: async ({ params }) => findingJson(await g.findings.get(params.id!)),
  });
  for (const [verb, status] of [['ack', 'acknowledged'], ['resolve', 'resolved']] as const) {
    api.route({
      method: 'POST', path: `/findings/:id/${verb}`, summary: verb === 'ack' ? 'Acknowledge a finding (it stays counted).' : 'Resolve a finding (a repeat opens a new one).', tag: 'governance', role: 'approver',
      body: z.strictObject({ note: z.string().max(1000).optional() }),
      handler: async ({ params, body, actor }) => findingJson(await g.findings.setStatus(params.id!, status, actor, body.note ?? null)),
    });
  }
  api.route({
    method: 'POST', path: '/mutes', summary: 'Mute a detection for one NHI until an end date.', tag: 'governance', role: 'admin', status: 201,
    body: z.strictObject({
      nhi: z.string().min(1).max(200), detection: enumOf(DETECTIONS), until: z.union([z.string().min(1).max(40), z.number().int()]), reason: z.string().min(1).max(500),
    }),
    handler: async ({ body, actor }) => muteJson(await g.findings.mute({ nhiId: body.nhi, detection: body.detection, until: parseUntil(body.until), reason: body.reason }, actor)),
  });
  api.route({
    method: 'GET', path: '/mutes', summary: 'Mutes in force (all=true: also ended ones).', tag: 'governance', role: 'viewer',
    query: z.strictObject({ all: z.enum(['true', 'false']).optional() }),
    handler: async ({ query }) => ({ mutes: (await g.findings.listMutes(query.all !== 'true')).map(muteJson) }),
  });
  api.route({
    method: 'DELETE', path: '/mutes/:id', summary: 'End a mute.', tag: 'governance', role: 'admin',
    handler: async ({ params, actor }) => {
      await g.findings.unmute(params.id!, actor);
      return { deleted: params.id };
    },
  });
  api.route({
    method: 'GET', path: '/risk', summary: 'Risk scores of every NHI, riskiest first, with the contribution of each factor.', tag: 'governance', role: 'viewer',
    query: z.strictObject({ limit: z.coerce.number().int().min(1).max(10_000).default(20) }),
    handler: async ({ query }) => ({ scores: (await g.risk.all()).slice(0, query.limit) }),
  });
  api.route({
    method: 'GET', path: '/nhis/:id/risk', summary: "One NHI's risk score and its contributions.", tag: 'governance', role: 'viewer',
    handler: async ({ params }) => {
      const s = await g.risk.one(params.id!);
      if (!s) throw new NotFoundError(`no NHI with id "${params.id}"`);
      return s;
    },
  });
  api.route({
    method: 'GET', path: '/metrics/programme', summary: 'Programme metrics now, and the weekly trend from the daily snapshots.', tag: 'governance', role: 'viewer',
    query: z.strictObject({ weeks: z.coerce.number().int().min(1).max(104).default(8) }),
    handler: async ({ query }) => ({
      current: await g.programmeNow(),
      trend: (await g.programme.trend(query.weeks)).map((s) => ({ day: s.day, taken_at: s.takenAt, metrics: s.metrics })),
    }),
  });
  api.route({
    method: 'GET', path: '/metrics/minting', summary: 'Tokens per NHI per UTC hour over the last hours, with the minting baseline threshold and the anomalous hours marked.', tag: 'governance', role: 'viewer',
    query: z.strictObject({
      hours: z.coerce.number().int().min(1).max(24 * 14).default(48), limit: z.coerce.number().int().min(1).max(50).default(5), nhi: z.string().min(1).max(200).optional(),
    }),
    handler: async ({ query }) => {
      const r = await g.mintingRate({ hours: query.hours, limit: query.limit, nhi: query.nhi });
      return { hours: r.hours, series: r.series };
    },
  });
  api.route({
    method: 'GET', path: '/metrics/credential-ages', summary: 'Age distribution of the stored credentials (static secrets, keys) of active NHIs.', tag: 'governance', role: 'viewer',
    handler: async () => g.programme.credentialAges(),
  });
  api.route({
    method: 'GET', path: '/playbooks', summary: 'The playbooks the config declares (governance.playbooks), and whether governance and dry-run are on.', tag: 'governance', role: 'viewer',
    handler: async () => g.playbooks.configured(),
  });
  api.route({
    method: 'GET', path: '/playbook-actions', summary: 'Automatic actions taken (or dry-run) by playbooks, newest first.', tag: 'governance', role: 'viewer',
    query: z.strictObject({ nhi: z.string().optional(), limit: z.coerce.number().int().min(1).max(1000).default(100) }),
    handler: async ({ query }) => ({ actions: (await g.playbooks.list({ nhiId: query.nhi, limit: query.limit })).map(playbookActionJson) }),
  });
  api.route({
    method: 'POST', path: '/playbook-actions/:id/undo', summary: "Undo a playbook's step-down / step-up (lift the restriction) or disable (lift the kill switch).", tag: 'governance', role: 'admin',
    handler: async ({ params, actor }) => playbookActionJson(await g.playbooks.undo(params.id!, actor)),
  });
  api.route({
    method: 'POST', path: '/governance/sweep', summary: 'Run the periodic sweep now: stale credentials, the programme snapshot, score playbooks.', tag: 'governance', role: 'admin',
    handler: async () => {
      const r = await g.sweep();
      return { findings: r.findings, programme: r.programme };
    },
  });
}
