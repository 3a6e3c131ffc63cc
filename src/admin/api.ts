import { z } from 'zod';
import { OAuthError, Router, ValidationError, readJson, sendJson, type RequestContext } from '../core/index.js';
import { AdminAuth, ROLE_RANK, type AdminPrincipal } from './auth.js';
import type { AdminRole, AdminSessionResolver } from './ports.js';

export const ADMIN_PREFIX = '/admin/v1';

export interface AdminRequest<B, Q> {
  ctx: RequestContext;
  principal: AdminPrincipal;
  /** `admin:<credential id>`, for audit records. */
  actor: string;
  params: Record<string, string>;
  body: B;
  query: Q;
}

export interface AdminRoute<B extends z.ZodType | undefined, Q extends z.ZodType | undefined> {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Below /admin/v1, with `:param` segments. */
  path: string;
  summary: string;
  tag: string;
  /** The least role that may call it. */
  role: AdminRole;
  body?: B;
  query?: Q;
  /** HTTP status of a success (200 by default). */
  status?: number;
  handler: (r: AdminRequest<B extends z.ZodType ? z.output<B> : undefined, Q extends z.ZodType ? z.output<Q> : undefined>) => Promise<unknown>;
}

type AnyRoute = AdminRoute<z.ZodType | undefined, z.ZodType | undefined>;

/**
 * The admin API: JSON over HTTP, authenticated with admin credentials, every route declared
 * with zod schemas so that input is validated at the boundary and the OpenAPI document at
 * /admin/v1/openapi.json is generated from the same declarations.
 */
export class AdminApi {
  private readonly routes: AnyRoute[] = [];
  private sessions: AdminSessionResolver | undefined;
  private durable: (() => Promise<void>) | undefined;

  constructor(
    private readonly router: Router,
    private readonly auth: AdminAuth,
    private readonly maxBodyBytes: number,
    private readonly info: { version: string },
  ) {
    router.get(`${ADMIN_PREFIX}/openapi.json`, (ctx) => sendJson(ctx.res, 200, this.openapi()));
    this.route({
      method: 'GET',
      path: '/whoami',
      summary: 'The admin credential making the call and its role.',
      tag: 'admin',
      role: 'viewer',
      handler: async ({ principal }) => ({ id: principal.id, name: principal.name, role: principal.role, expires_at: principal.expiresAt }),
    });
  }

  /**
   * Lets console sessions (cookie + CSRF token) call the API as the credential they were opened
   * with. The bearer path is unchanged: a request with an `Authorization` header never looks
   * at cookies, so a session cannot widen what a bearer caller can do.
   */
  useSessions(resolver: AdminSessionResolver): this {
    this.sessions = resolver;
    return this;
  }

  /**
   * Every change (a route whose method is not GET) is answered only once `fn` resolves: the
   * composition root passes the audit log's flush, so that an acknowledged change and its audit
   * record are both durable before the answer (no change acknowledged and then lost, see
   * docs/security.md, Faults and durability). When `fn` throws (the store
   * went away after the change was written) the answer is that error, 503: the change may be in
   * force, its record still queued in this process, and the caller was told nothing was promised.
   */
  answerWhenDurable(fn: () => Promise<void>): this {
    this.durable = fn;
    return this;
  }

  private async principal(ctx: RequestContext, method: string): Promise<AdminPrincipal> {
    const header = ctx.req.headers.authorization;
    if (header === undefined && this.sessions) {
      const id = this.sessions.credentialOf(ctx.req, method !== 'GET');
      if (id !== undefined) return this.auth.principalOf(id);
    }
    return this.auth.authenticate(header);
  }

  route<B extends z.ZodType | undefined = undefined, Q extends z.ZodType | undefined = undefined>(spec: AdminRoute<B, Q>): this {
    this.routes.push(spec as unknown as AnyRoute);
    this.router.add(spec.method, ADMIN_PREFIX + spec.path, async (ctx) => {
      const principal = await this.principal(ctx, spec.method);
      if (ROLE_RANK[principal.role] < ROLE_RANK[spec.role]) {
        throw new OAuthError('insufficient_scope', `this call needs the ${spec.role} role; this credential is ${principal.role}`, 403);
      }
      const body = spec.body ? parse(spec.body, await readJson(ctx.req, this.maxBodyBytes), 'body') : undefined;
      const query = spec.query ? parse(spec.query, Object.fromEntries(ctx.query), 'query') : undefined;
      ctx.principal = { id: principal.id, role: principal.role, kind: 'admin' };
      const result = await spec.handler({ ctx, principal, actor: `admin:${principal.id}`, params: ctx.params, body, query } as never);
      if (spec.method !== 'GET' && this.durable && !ctx.res.headersSent) await this.durable();
      if (!ctx.res.headersSent) sendJson(ctx.res, spec.status ?? 200, result ?? {});
    });
    return this;
  }

  /** OpenAPI 3.1 (its schema dialect is JSON Schema 2020-12, which zod generates). */
  openapi(): Record<string, unknown> {
    const paths: Record<string, Record<string, unknown>> = {};
    for (const r of this.routes) {
      const p = ADMIN_PREFIX + r.path.replace(/:([A-Za-z_]+)/g, '{$1}');
      const params = [...r.path.matchAll(/:([A-Za-z_]+)/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } }));
      if (r.query) {
        const js = z.toJSONSchema(r.query, { io: 'input', unrepresentable: 'any' }) as { properties?: Record<string, unknown>; required?: string[] };
        for (const [name, schema] of Object.entries(js.properties ?? {})) {
          params.push({ name, in: 'query', required: (js.required ?? []).includes(name), schema } as never);
        }
      }
      (paths[p] ??= {})[r.method.toLowerCase()] = {
        summary: r.summary,
        tags: [r.tag],
        'x-mandate-role': r.role,
        security: [{ adminCredential: [] }, { consoleSession: [] }],
        parameters: params,
        ...(r.body
          ? { requestBody: { required: true, content: { 'application/json': { schema: z.toJSONSchema(r.body, { io: 'input', unrepresentable: 'any' }) } } } }
          : {}),
        responses: {
          [String(r.status ?? 200)]: { description: 'success', content: { 'application/json': { schema: {} } } },
          '400': { description: 'invalid input', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } },
          '401': { description: 'missing or invalid admin credential' },
          '403': { description: 'the credential lacks the role' },
        },
      };
    }
    return {
      openapi: '3.1.0',
      info: { title: 'Mandate admin API', version: this.info.version },
      paths,
      components: {
        securitySchemes: {
          adminCredential: { type: 'http', scheme: 'bearer', description: 'An admin credential, mdt.<id>.<secret>' },
          consoleSession: { type: 'apiKey', in: 'cookie', name: 'mandate_session', description: 'A console session (POST /ui/session); changes also need X-CSRF-Token and a same-origin Origin' },
        },
        schemas: {
          Error: { type: 'object', properties: { error: { type: 'string' }, error_description: { type: 'string' } }, required: ['error'] },
        },
      },
    };
  }
}

function parse<S extends z.ZodType>(schema: S, value: unknown, where: string): z.output<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const details = r.error.issues.map((i) => `${where}${i.path.length ? '.' + i.path.join('.') : ''}: ${i.message}`);
  throw new ValidationError(`invalid ${where}: ${details.join('; ')}`, details);
}
