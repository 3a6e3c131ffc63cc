import type { ServerResponse } from 'node:http';
import { z } from 'zod';
import {
  NotFoundError, OAuthError, ValidationError, readJson, sendError, sendJson,
  type AuditSink, type Bus, type Clock, type Logger, type RequestContext, type Router,
} from '../core/index.js';
import type { AdminAuth } from '../admin/index.js';
import { ConsoleEvents } from './events.js';
import { ConsoleSessions, type ConsoleSession } from './sessions.js';
import { SECURITY_HEADERS, defaultAssetsDir, loadAssets, type Asset } from './static.js';

export interface ConsoleOptions {
  router: Router;
  adminAuth: AdminAuth;
  bus: Bus;
  audit: AuditSink;
  clock: Clock;
  logger: Logger;
  idleTimeoutS: number;
  maxSessionS: number;
  secureCookie: boolean;
  publicOrigin?: string;
  maxBodyBytes: number;
  /** Built assets; dist/src/web/assets by default. */
  assetsDir?: string;
}

export interface Console {
  sessions: ConsoleSessions;
  events: ConsoleEvents;
  stop(): Promise<void>;
}

const signIn = z.strictObject({ credential: z.string().min(1).max(200) });

/**
 * The operator's console at /ui/: static assets, sign-in and sign-out, and the live event
 * stream. Everything else the console shows comes from the admin API, which accepts the
 * session cookie (see AdminApi.useSessions).
 */
export async function mountConsole(o: ConsoleOptions): Promise<Console> {
  const sessions = new ConsoleSessions({
    clock: o.clock, idleTimeoutS: o.idleTimeoutS, maxSessionS: o.maxSessionS, secureCookie: o.secureCookie, publicOrigin: o.publicOrigin,
  });
  const events = new ConsoleEvents({
    bus: o.bus, logger: o.logger,
    onCredentialChange: (subject, data) => {
      const d = data as { id?: unknown; expires_at?: unknown } | null;
      if (typeof d?.id !== 'string') return;
      if (subject.endsWith('.revoked')) sessions.credentialChanged(d.id, { revoked: true });
      else sessions.credentialChanged(d.id, { revoked: false, expiresAt: typeof d.expires_at === 'number' ? d.expires_at : null });
    },
  });
  await events.start();
  const assets = loadAssets(o.assetsDir ?? defaultAssetsDir());
  if (!assets.has('index.html')) o.logger.warn('console assets are not built (npm run build): /ui/ answers 503');

  /** Every /ui handler runs through this, so errors get the security headers too. */
  const ui = (h: (ctx: RequestContext) => Promise<void> | void) => async (ctx: RequestContext) => {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) ctx.res.setHeader(k, v);
    try {
      await h(ctx);
    } catch (err) {
      sendError(ctx, err);
    }
  };
  const sessionJson = (s: ConsoleSession) => ({
    id: s.credentialId, name: s.name, role: s.role, csrf_token: s.csrf, idle_timeout: o.idleTimeoutS,
  });

  // The router splits on '/', so /ui and /ui/ reach the same route: the first is sent to the
  // second, which relative asset paths in index.html need.
  o.router.get('/ui', ui((ctx) => {
    if (ctx.path !== '/ui/') {
      ctx.res.writeHead(308, { location: '/ui/' });
      ctx.res.end();
      return;
    }
    serveAsset(ctx, assets.get('index.html'));
  }));
  o.router.get('/ui/assets/*', ui((ctx) => serveAsset(ctx, assets.get(ctx.params['*'] ?? ''))));

  o.router.post('/ui/session', ui(async (ctx) => {
    // Login CSRF: a cross-site page must not sign the operator into someone else's session.
    const site = ctx.req.headers['sec-fetch-site'];
    if (site !== undefined && site !== 'same-origin' && site !== 'none') throw new OAuthError('access_denied', 'cross-site request refused', 403);
    const body = signIn.safeParse(await readJson(ctx.req, o.maxBodyBytes));
    if (!body.success) throw new ValidationError('send { "credential": "mdt.…" }');
    const principal = await o.adminAuth.authenticate(`Bearer ${body.data.credential}`);
    const { id, session } = sessions.create(principal);
    o.audit.record({ type: 'console.signed_in', actor: `admin:${principal.id}`, data: { role: principal.role } });
    sendJson(ctx.res, 201, sessionJson(session), { 'set-cookie': sessions.cookie(id) });
  }));
  /** The request's session, its credential read again from the store (revoked or expired: signed out). */
  const liveSession = async (ctx: RequestContext, touch = true): Promise<ConsoleSession> => {
    const s = sessions.lookup(ctx.req, touch);
    if (!s) throw new OAuthError('invalid_token', 'not signed in', 401);
    try {
      await o.adminAuth.principalOf(s.credentialId);
    } catch (err) {
      if (err instanceof OAuthError && err.status === 401) sessions.end(ctx.req);
      throw err;
    }
    return s;
  };
  o.router.get('/ui/session', ui(async (ctx) => {
    sendJson(ctx.res, 200, sessionJson(await liveSession(ctx)));
  }));
  o.router.add('DELETE', '/ui/session', ui((ctx) => {
    const s = sessions.lookup(ctx.req, false);
    if (s) {
      sessions.checkChange(ctx.req, s);
      sessions.end(ctx.req);
      o.audit.record({ type: 'console.signed_out', actor: `admin:${s.credentialId}`, data: {} });
    }
    sendJson(ctx.res, 200, { signed_out: s !== undefined }, { 'set-cookie': sessions.clearCookie() });
  }));
  o.router.get('/ui/events', ui(async (ctx) => {
    const s = await liveSession(ctx);
    const recheck = () => o.adminAuth.principalOf(s.credentialId).then(() => true, (err: unknown) => {
      if (err instanceof OAuthError && err.status === 401) return false;
      throw err;
    });
    await events.attach(ctx.res, () => sessions.isLive(s), {}, recheck);
  }));
  o.router.get('/ui/*', ui(() => {
    throw new NotFoundError('no such page');
  }));

  return { sessions, events, stop: () => events.stop() };
}

function serveAsset(ctx: RequestContext, asset: Asset | undefined): void {
  const res: ServerResponse = ctx.res;
  if (!asset) {
    if (ctx.params['*'] === undefined) return sendJson(res, 503, { error: 'unavailable', error_description: 'the console is not built: run npm run build' });
    return sendJson(res, 404, { error: 'not_found', error_description: 'no such asset' });
  }
  // Names are not content-hashed, so browsers revalidate every time; the ETag makes that a 304.
  const headers = { 'content-type': asset.type, 'cache-control': 'no-cache', etag: asset.etag };
  if (ctx.req.headers['if-none-match'] === asset.etag) {
    res.writeHead(304, headers);
    res.end();
    return;
  }
  res.writeHead(200, { ...headers, 'content-length': asset.body.length });
  res.end(asset.body);
}
