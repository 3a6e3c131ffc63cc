import { z } from 'zod';
import { endInput, parseEnd } from '../core/index.js';
import type { AdminApi } from './api.js';
import type { AdminCredentials } from './credentials.js';

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
    body: z.strictObject({ name: z.string().min(1).max(100), role: z.enum(['admin', 'approver', 'viewer']), expires: endInput.optional() }),
    handler: async ({ body, actor }) => creds.create({ name: body.name, role: body.role, expiresAt: body.expires ? parseEnd(body.expires) : null }, actor),
  });
  api.route({
    method: 'POST', path: '/admin-credentials/:id/expire',
    summary: 'Give an active admin credential an end (refused for the last active admin credential unless force).', tag: 'admin', role: 'admin',
    body: z.strictObject({ expires: endInput, force: z.boolean().default(false) }),
    handler: async ({ params, body, actor }) => creds.setExpiry(params.id!, parseEnd(body.expires), { force: body.force }, actor),
  });
  api.route({
    method: 'POST', path: '/admin-credentials/:id/revoke',
    summary: 'Revoke an admin credential at once on every instance (refused for the last active admin credential unless force).', tag: 'admin', role: 'admin',
    body: z.strictObject({ reason: z.string().min(1).max(500).optional(), force: z.boolean().default(false) }),
    handler: async ({ params, body, actor }) => creds.revoke(params.id!, { force: body.force, reason: body.reason ?? null }, actor),
  });
}
