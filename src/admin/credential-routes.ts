import { z } from 'zod';
import type { AdminApi } from './api.js';
import type { AdminCredentials } from './credentials.js';

/**
 * An end: a date (the end of that day, UTC, as elsewhere in the API) or an RFC 3339 date-time
 * with an offset (that instant).
 */
const when = z.union([z.iso.date(), z.iso.datetime({ offset: true })]);
const endOf = (v: string): number => (v.length === 10 ? Date.parse(`${v}T23:59:59.999Z`) : Date.parse(v));

/** Admin, approver and viewer credentials in the admin API: list, create (shown once), give an end, revoke. */
export function mountAdminCredentialRoutes(api: AdminApi, creds: AdminCredentials): void {
  api.route({
    method: 'GET', path: '/admin-credentials', summary: 'List admin credentials with their status (never their secrets).', tag: 'admin', role: 'admin',
    handler: async () => ({ credentials: await creds.list() }),
  });
  api.route({
    method: 'GET', path: '/admin-credentials/:id', summary: 'One admin credential and its status.', tag: 'admin', role: 'admin',
    handler: async ({ params }) => creds.get(params.id!),
  });
  api.route({
    method: 'POST', path: '/admin-credentials', summary: 'Create an admin credential (its token is shown once, in this answer).', tag: 'admin', role: 'admin', status: 201,
    body: z.strictObject({ name: z.string().min(1).max(100), role: z.enum(['admin', 'approver', 'viewer']), expires: when.optional() }),
    handler: async ({ body, actor }) => creds.create({ name: body.name, role: body.role, expiresAt: body.expires ? endOf(body.expires) : null }, actor),
  });
  api.route({
    method: 'POST', path: '/admin-credentials/:id/expire',
    summary: 'Give an active admin credential an end (refused for the last active admin credential unless force).', tag: 'admin', role: 'admin',
    body: z.strictObject({ expires: when, force: z.boolean().default(false) }),
    handler: async ({ params, body, actor }) => creds.setExpiry(params.id!, endOf(body.expires), { force: body.force }, actor),
  });
  api.route({
    method: 'POST', path: '/admin-credentials/:id/revoke',
    summary: 'Revoke an admin credential at once on every instance (refused for the last active admin credential unless force).', tag: 'admin', role: 'admin',
    body: z.strictObject({ reason: z.string().min(1).max(500).optional(), force: z.boolean().default(false) }),
    handler: async ({ params, body, actor }) => creds.revoke(params.id!, { force: body.force, reason: body.reason ?? null }, actor),
  });
}
