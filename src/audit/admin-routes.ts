import { z } from 'zod';
import type { AdminApi } from '../admin/index.js';
import type { AuditLog } from './audit-log.js';
import type { AuditStore } from './ports.js';
import { verifyAuditChain } from './verify.js';

/** Search and verify the audit log in the admin API; both read the operator's own writes (the log is flushed first). */
export function mountAuditRoutes(api: AdminApi, d: { audit: Pick<AuditLog, 'flush'>; store: AuditStore }): void {
  api.route({
    method: 'GET', path: '/audit', summary: 'Search the audit log.', tag: 'audit', role: 'viewer',
    query: z.strictObject({
      type: z.string().optional(), actor: z.string().optional(), subject: z.string().optional(), tool: z.string().optional(),
      decision: z.string().optional(), trace_id: z.string().optional(),
      since: z.coerce.number().int().optional(), until: z.coerce.number().int().optional(),
      limit: z.coerce.number().int().min(1).max(1000).default(100),
    }),
    handler: async ({ query }) => {
      await d.audit.flush();
      const { trace_id, ...rest } = query;
      return { records: await d.store.queryAudit({ ...rest, traceId: trace_id }) };
    },
  });
  api.route({
    method: 'POST', path: '/audit/verify', summary: 'Verify the audit hash chain; lists every altered, inserted or removed record.', tag: 'audit', role: 'viewer',
    handler: async () => {
      await d.audit.flush();
      return verifyAuditChain(d.store);
    },
  });
}
