import { setTimeout as sleep } from 'node:timers/promises';
import type { CryptoKey, JWK } from 'jose';
import { DpopKey, type DpopAlg } from './dpop.js';
import {
  ApprovalTimeoutError, AuthorizationPendingError, BrokerError, MandateClientError, TokenRevokedError, oauthErrorFrom,
} from './errors.js';
import { argsDigest, httpCallDigest } from '../core/canonical.js';
import { GRANT, TOKEN_TYPE } from '../core/oauth-names.js';
import { canonicalJson, sha256b64u, systemClock, unverifiedTyp, type ClientClock } from './util.js';
import { CLIENT_ASSERTION_TYPE, privateKeyClient, type PrivateKeyClient, type WorkloadSource } from './workload.js';

/** The grant types and token types the SDK sends (the broker's own names, core/oauth-names.ts). */
export const GRANT_TYPE = GRANT;
export { TOKEN_TYPE };

/** How the client proves who it is to the broker. */
export type ClientAuth =
  /** `client_credentials` with a `private_key_jwt` client assertion (RFC 7523 §2.2); needs `clientId`. */
  | { type: 'private_key_jwt'; privateJwk: JWK; alg?: string; kid?: string }
  | { type: 'private_key_jwt'; privateKey: CryptoKey; alg?: string; kid?: string }
  | { type: 'private_key_jwt'; client: PrivateKeyClient }
  /**
   * A workload identity JWT (Kubernetes, SPIFFE, GitHub Actions, ...) exchanged for a Mandate
   * token: RFC 8693 token exchange by default, or the RFC 7523 JWT bearer grant. `client`
   * adds private_key_jwt client authentication to the request.
   */
  | { type: 'workload'; source: WorkloadSource; grant?: 'token_exchange' | 'jwt_bearer'; subjectTokenType?: string; client?: PrivateKeyClient }
  /**
   * A Mandate access token this process holds (bound to the same DPoP key), narrowed by token
   * exchange to fewer actions of the same tool.
   */
  | { type: 'access_token'; source: WorkloadSource };

export interface MandateClientOptions {
  /** The broker's issuer URL (RFC 8414), e.g. `https://mandate.example.com`. */
  issuer: string;
  /** The NHI id; required for private_key_jwt built from a key. */
  clientId?: string;
  auth: ClientAuth;
  /** The DPoP key tokens are bound to; one is generated (ES256, or `dpopAlg`) on first use when absent. */
  dpop?: DpopKey;
  dpopAlg?: DpopAlg;
  fetch?: typeof fetch;
  clock?: ClientClock;
  /** Skips discovery: the token endpoint to use. */
  tokenEndpoint?: string;
  /** Time limit of each request to the broker (default 30 s). */
  requestTimeoutMs?: number;
}

export interface GetTokenOptions {
  /** The agent run this token belongs to (recorded by the broker and in the token). */
  runId?: string;
  /**
   * base64url SHA-256 of the canonical call arguments, as the proxy digests the call: for an MCP
   * `tools/call`, `argsDigest(arguments)`; for an HTTP call, `httpCallDigest({ params, query,
   * body, contentType, contentEncoding })` (path template parameters, the query, and the body
   * with the headers that say how it is read). Approvals and elevation tokens are bound to it and pass only that call, so the broker
   * refuses a request for an action that needs approval without it (`invalid_request`), and
   * `approvalId` needs it (the same digest as when the approval was asked for).
   */
  argsDigest?: string;
  /** The approval to redeem, once a human approved it (after `ApprovalRequiredError`); needs `argsDigest`. */
  approvalId?: string;
  /** Delegation (RFC 8693 §2.1): the token of the party acting for the subject. Needs a token-exchange auth. */
  actorToken?: string;
  /** Its type; by default `access_token` for a Mandate token (typ at+jwt), `jwt` otherwise. */
  actorTokenType?: string;
}

export interface TokenResult {
  accessToken: string;
  /** `DPoP` (sender-constrained) or `Bearer`. */
  tokenType: string;
  /** Milliseconds since the epoch. */
  expiresAt: number;
  /** The granted actions, space-separated as on the wire (may be fewer than requested). */
  scope: string;
}

interface CacheEntry {
  token: TokenResult;
  /** When to ask for a new one (ms). */
  refreshAt: number;
}

const DEFAULT_TIMEOUT_MS = 30_000;
const MAX_CACHE_ENTRIES = 1000;

/**
 * The agent side of Mandate: asks the broker for short-lived, DPoP-bound tokens for exactly
 * one tool and the actions a task needs, caches them until shortly before they expire, and
 * calls tools through the proxy with a per-request DPoP proof.
 *
 * It never logs: tokens, assertions and keys stay in memory and out of error messages.
 */
export class MandateClient {
  readonly issuer: string;
  private readonly opts: MandateClientOptions;
  private readonly doFetch: typeof fetch;
  private readonly clock: ClientClock;
  private readonly assertions: PrivateKeyClient | undefined;
  private dpopKeyP: Promise<DpopKey> | undefined;
  private endpointP: Promise<string> | undefined;
  /** The last nonce the token endpoint gave (RFC 9449 §8.2: use it until a new one comes). */
  private tokenNonce: string | undefined;
  /** The last nonce of each resource server origin (RFC 9449 §9). */
  private readonly resourceNonces = new Map<string, string>();
  private readonly cache = new Map<string, CacheEntry>();
  private readonly inflight = new Map<string, Promise<TokenResult>>();

  constructor(opts: MandateClientOptions) {
    let iss: URL;
    try {
      iss = new URL(opts.issuer);
    } catch {
      throw new MandateClientError('ERR_CLIENT_CONFIG', 'issuer must be an absolute URL');
    }
    if (iss.protocol !== 'https:' && iss.protocol !== 'http:') throw new MandateClientError('ERR_CLIENT_CONFIG', 'issuer must be an http(s) URL');
    if (iss.search || iss.hash) throw new MandateClientError('ERR_CLIENT_CONFIG', 'issuer must not have a query or fragment (RFC 8414 §2)');
    this.issuer = stripSlash(iss.href);
    this.opts = opts;
    this.doFetch = opts.fetch ?? globalThis.fetch;
    this.clock = opts.clock ?? systemClock;
    if (opts.dpop) this.dpopKeyP = Promise.resolve(opts.dpop);
    const auth = opts.auth;
    if (auth.type === 'private_key_jwt') {
      if ('client' in auth) {
        this.assertions = auth.client;
      } else {
        if (!opts.clientId) throw new MandateClientError('ERR_CLIENT_CONFIG', 'private_key_jwt needs clientId (the NHI id)');
        this.assertions = 'privateJwk' in auth
          ? privateKeyClient({ clientId: opts.clientId, privateJwk: auth.privateJwk, alg: auth.alg, kid: auth.kid, clock: this.clock })
          : privateKeyClient({ clientId: opts.clientId, privateKey: auth.privateKey, alg: auth.alg, kid: auth.kid, clock: this.clock });
      }
    } else if (auth.type === 'workload') {
      this.assertions = auth.client;
    } else if (auth.type !== 'access_token') {
      throw new MandateClientError('ERR_CLIENT_CONFIG', `unknown auth type ${String((auth as { type?: unknown }).type)}`);
    }
  }

  /** The DPoP key this client binds its tokens to. */
  dpopKey(): Promise<DpopKey> {
    this.dpopKeyP ??= DpopKey.generate({ alg: this.opts.dpopAlg ?? 'ES256', clock: this.clock }).catch((err: unknown) => {
      this.dpopKeyP = undefined;
      throw err;
    });
    return this.dpopKeyP;
  }

  /** The resource indicator (RFC 8707) of a tool: `{issuer}/tools/{toolId}`. */
  resourceOf(toolId: string): string {
    if (!toolId || /[/?#\s]/.test(toolId) || toolId === '.' || toolId === '..') {
      throw new MandateClientError('ERR_CLIENT_ARGS', 'toolId must be a non-empty tool id without "/", "?", "#" or spaces');
    }
    return `${this.issuer}/tools/${encodeURIComponent(toolId)}`;
  }

  /** base64url SHA-256 of the canonical JSON of `args` (the same as the standalone `argsDigest`). */
  argsDigest(args: unknown): string {
    return argsDigest(args);
  }

  /**
   * A token for `actions` on one tool. Served from the cache while it has more than 20 % of
   * its life (and at least 30 s, or half its life for very short tokens) left; concurrent calls
   * for the same token share one request.
   *
   * Throws `ApprovalRequiredError` when a human must approve first, `AuthorizationPendingError`,
   * `AccessDeniedError`, `ApprovalExpiredError` on the approval's way, `BrokerError` otherwise.
   */
  async getToken(toolId: string, actions: readonly string[], opts: GetTokenOptions = {}): Promise<TokenResult> {
    const resource = this.resourceOf(toolId);
    const scope = normalizeActions(actions);
    checkElevationArgs(opts);
    const key = cacheKey(resource, scope, opts);
    const now = this.clock.now();
    const hit = this.cache.get(key);
    if (hit && hit.refreshAt > now) return { ...hit.token };
    let p = this.inflight.get(key);
    if (!p) {
      p = this.requestToken(resource, scope, opts)
        .then((token) => {
          this.remember(key, token, opts.approvalId !== undefined);
          return token;
        })
        .finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return { ...(await p) };
  }

  /** Forgets every cached token (they stay valid at the broker until they expire). */
  clearCache(): void {
    this.cache.clear();
  }

  /**
   * `fetch` for a tool behind the proxy. `input` is a path below `/tools/{toolId}` or an
   * absolute URL under it (anything else is refused: the token must not go elsewhere). The
   * request carries `Authorization: DPoP <token>` and a DPoP proof for this method and URL
   * with `ath`. A `use_dpop_nonce` answer is retried once with the nonce; an `invalid_token`
   * answer once with a fresh token; a revoked token throws `TokenRevokedError`. Every other
   * answer (including 403 `approval_required` for a held action) is returned as it is.
   */
  async fetch(toolId: string, actions: readonly string[], input: string | URL, init: RequestInit = {}, tokenOpts: GetTokenOptions = {}): Promise<Response> {
    const url = this.toolUrl(toolId, input);
    const method = (init.method ?? 'GET').toUpperCase();
    const replayable = isReplayable(init.body);
    const dpop = await this.dpopKey();
    let token = await this.getToken(toolId, actions, tokenOpts);
    let nonceRetried = false;
    let tokenRetried = false;
    for (;;) {
      const nonce = this.resourceNonces.get(url.origin);
      const proof = await dpop.proof({ htm: method, htu: url, accessToken: token.accessToken, ...(nonce !== undefined ? { nonce } : {}) });
      const headers = new Headers(init.headers);
      headers.set('authorization', `${authScheme(token.tokenType)} ${token.accessToken}`);
      headers.set('dpop', proof);
      const res = await this.doFetch(url, { ...init, method, headers });
      const newNonce = res.headers.get('dpop-nonce') ?? undefined;
      if (newNonce) this.resourceNonces.set(url.origin, newNonce);
      if (res.status !== 401) return res;

      const challenge = await challengeOf(res);
      if (challenge.error === 'use_dpop_nonce') {
        if (!nonceRetried && replayable && newNonce && newNonce !== nonce) {
          nonceRetried = true;
          await discard(res);
          continue;
        }
        return res;
      }
      if (challenge.error === 'invalid_token') {
        this.forget(toolId, actions, tokenOpts);
        if (/revoked/i.test(challenge.description)) {
          await discard(res);
          throw new TokenRevokedError(challenge.description, 401, challenge.body);
        }
        if (tokenRetried) {
          await discard(res);
          throw new TokenRevokedError(challenge.description || 'a freshly issued token was refused too', 401, challenge.body);
        }
        if (!replayable) return res;
        tokenRetried = true;
        await discard(res);
        token = await this.getToken(toolId, actions, tokenOpts);
        continue;
      }
      return res;
    }
  }

  /** Retries `getToken` with `approvalId` until the approval is decided (see `waitForApproval`). */
  waitForApproval(toolId: string, actions: readonly string[], opts: WaitForApprovalOptions): Promise<TokenResult> {
    return waitForApproval(this, toolId, actions, opts);
  }

  // ------------------------------------------------------------------ internals

  private forget(toolId: string, actions: readonly string[], opts: GetTokenOptions): void {
    this.cache.delete(cacheKey(this.resourceOf(toolId), normalizeActions(actions), opts));
  }

  private remember(key: string, token: TokenResult, approval: boolean): void {
    const now = this.clock.now();
    const life = Math.max(0, token.expiresAt - now);
    // A redeemed approval cannot be redeemed again: keep its token until (just before) it expires.
    const margin = approval ? Math.min(1000, life / 2) : Math.max(life * 0.2, Math.min(30_000, life / 2));
    if (this.cache.size >= MAX_CACHE_ENTRIES) {
      for (const [k, e] of this.cache) if (e.refreshAt <= now) this.cache.delete(k);
      if (this.cache.size >= MAX_CACHE_ENTRIES) this.cache.delete(this.cache.keys().next().value!);
    }
    this.cache.set(key, { token: { ...token }, refreshAt: token.expiresAt - margin });
  }

  private toolUrl(toolId: string, input: string | URL): URL {
    const base = new URL(this.resourceOf(toolId));
    let url: URL;
    try {
      if (input instanceof URL || /^[a-z][a-z0-9+.-]*:/i.test(input)) {
        url = new URL(input.toString());
      } else {
        url = new URL(`${base.href}${input === '' || input.startsWith('/') || input.startsWith('?') ? '' : '/'}${input}`);
      }
    } catch {
      throw new MandateClientError('ERR_CLIENT_URL', 'not a valid URL or path');
    }
    // The path is normalized by the parser ("..", "%2e%2e"), so this also stops escapes to other tools.
    if (url.origin !== base.origin || (url.pathname !== base.pathname && !url.pathname.startsWith(`${base.pathname}/`))) {
      throw new MandateClientError('ERR_CLIENT_URL', `refusing to send a token for ${toolId} outside ${base.href}`);
    }
    return url;
  }

  private tokenEndpoint(): Promise<string> {
    if (this.opts.tokenEndpoint) return Promise.resolve(this.opts.tokenEndpoint);
    this.endpointP ??= this.discover().catch((err: unknown) => {
      this.endpointP = undefined;
      throw err;
    });
    return this.endpointP;
  }

  /** RFC 8414 §3: the metadata document, from the well-known URL (path-inserted first when the issuer has a path). */
  private async discover(): Promise<string> {
    const iss = new URL(this.issuer);
    const path = iss.pathname === '/' ? '' : iss.pathname;
    const candidates = [`${iss.origin}/.well-known/oauth-authorization-server${path}`];
    if (path) candidates.push(`${this.issuer}/.well-known/oauth-authorization-server`);
    let lastStatus = 0;
    for (const u of candidates) {
      let res: Response;
      try {
        res = await this.doFetch(u, { headers: { accept: 'application/json' }, signal: this.timeout() });
      } catch (err) {
        throw new MandateClientError('ERR_DISCOVERY', `cannot reach ${u}`, { cause: err });
      }
      if (!res.ok) {
        lastStatus = res.status;
        await discard(res);
        continue;
      }
      const md = (await res.json().catch(() => undefined)) as Record<string, unknown> | undefined;
      if (!md || typeof md !== 'object') throw new MandateClientError('ERR_DISCOVERY', `${u} is not a JSON metadata document`);
      if (typeof md.issuer !== 'string' || stripSlash(md.issuer) !== this.issuer) {
        throw new MandateClientError('ERR_DISCOVERY', `the metadata at ${u} names another issuer (RFC 8414 §3.3)`);
      }
      if (typeof md.token_endpoint !== 'string') throw new MandateClientError('ERR_DISCOVERY', 'the metadata has no token_endpoint');
      let te: URL;
      try {
        te = new URL(md.token_endpoint);
      } catch {
        throw new MandateClientError('ERR_DISCOVERY', 'token_endpoint is not an absolute URL');
      }
      if (te.protocol !== 'https:' && !(te.protocol === 'http:' && iss.protocol === 'http:')) {
        throw new MandateClientError('ERR_DISCOVERY', 'token_endpoint must be https');
      }
      return te.href;
    }
    throw new MandateClientError('ERR_DISCOVERY', `no authorization server metadata for ${this.issuer} (HTTP ${lastStatus})`);
  }

  private timeout(): AbortSignal {
    return AbortSignal.timeout(this.opts.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS);
  }

  /** One token request, retried once when the broker asks for a DPoP nonce (RFC 9449 §8). */
  private async requestToken(resource: string, scope: string[], opts: GetTokenOptions): Promise<TokenResult> {
    const endpoint = await this.tokenEndpoint();
    const dpop = await this.dpopKey();
    let nonce = this.tokenNonce;
    for (let attempt = 0; ; attempt++) {
      // Built anew each time: a client assertion is single-use (its jti).
      const form = await this.form(resource, scope, opts);
      const proof = await dpop.proof({ htm: 'POST', htu: endpoint, ...(nonce !== undefined ? { nonce } : {}) });
      const sentAt = this.clock.now();
      let res: Response;
      try {
        res = await this.doFetch(endpoint, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', dpop: proof },
          body: form.toString(),
          signal: this.timeout(),
        });
      } catch (err) {
        throw new MandateClientError('ERR_NETWORK', `the token request to ${endpoint} failed`, { cause: err });
      }
      const newNonce = res.headers.get('dpop-nonce') ?? undefined;
      if (newNonce) this.tokenNonce = newNonce;
      const body = (await res.json().catch(() => undefined)) as Record<string, unknown> | undefined;
      if (!body || typeof body !== 'object' || Array.isArray(body)) {
        throw new BrokerError('invalid_response', `the token endpoint answered HTTP ${res.status} without a JSON object`, res.status);
      }
      if (res.ok) return parseTokenResponse(body, scope, sentAt);
      const err = oauthErrorFrom(res.status, body);
      if (err.error === 'use_dpop_nonce' && attempt === 0 && newNonce && newNonce !== nonce) {
        nonce = newNonce;
        continue;
      }
      throw err;
    }
  }

  private async form(resource: string, scope: string[], opts: GetTokenOptions): Promise<URLSearchParams> {
    const f = new URLSearchParams();
    const auth = this.opts.auth;
    let exchange = false;
    if (auth.type === 'private_key_jwt') {
      f.set('grant_type', GRANT_TYPE.clientCredentials);
    } else if (auth.type === 'workload') {
      const jwt = await auth.source.getToken();
      if ((auth.grant ?? 'token_exchange') === 'jwt_bearer') {
        f.set('grant_type', GRANT_TYPE.jwtBearer);
        f.set('assertion', jwt);
      } else {
        exchange = true;
        f.set('grant_type', GRANT_TYPE.tokenExchange);
        f.set('subject_token', jwt);
        f.set('subject_token_type', auth.subjectTokenType ?? TOKEN_TYPE.jwt);
        f.set('requested_token_type', TOKEN_TYPE.accessToken);
      }
    } else {
      exchange = true;
      f.set('grant_type', GRANT_TYPE.tokenExchange);
      f.set('subject_token', await auth.source.getToken());
      f.set('subject_token_type', TOKEN_TYPE.accessToken);
      f.set('requested_token_type', TOKEN_TYPE.accessToken);
    }
    if (this.assertions) {
      f.set('client_id', this.assertions.clientId);
      f.set('client_assertion_type', CLIENT_ASSERTION_TYPE);
      f.set('client_assertion', await this.assertions.assertion(this.issuer));
    }
    f.set('resource', resource);
    f.set('scope', scope.join(' '));
    if (opts.actorToken !== undefined) {
      if (!exchange) throw new MandateClientError('ERR_CLIENT_ARGS', 'actorToken needs token exchange (auth type "workload" or "access_token")');
      f.set('actor_token', opts.actorToken);
      f.set('actor_token_type', opts.actorTokenType ?? (unverifiedTyp(opts.actorToken)?.toLowerCase() === 'at+jwt' ? TOKEN_TYPE.accessToken : TOKEN_TYPE.jwt));
    }
    if (opts.runId !== undefined) f.set('run_id', opts.runId);
    if (opts.argsDigest !== undefined) f.set('args_digest', opts.argsDigest);
    if (opts.approvalId !== undefined) f.set('approval_id', opts.approvalId);
    return f;
  }
}

// ---------------------------------------------------------------------------- approvals

export interface WaitForApprovalOptions extends GetTokenOptions {
  approvalId: string;
  /** Time between attempts (default 2 s; grows by 5 s on `slow_down`, RFC 8628 §3.5). */
  intervalMs?: number;
  /** Give up after this long (default 15 min, the broker's approval lifetime). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/**
 * Asks for the token with `approvalId` every `intervalMs` until a human decides: resolves
 * with the token once approved; throws `AccessDeniedError` when denied,
 * `ApprovalExpiredError` when the request expired, `ApprovalTimeoutError` after `timeoutMs`.
 */
export async function waitForApproval(
  client: Pick<MandateClient, 'getToken'>,
  toolId: string,
  actions: readonly string[],
  opts: WaitForApprovalOptions,
): Promise<TokenResult> {
  if (!opts.approvalId) throw new MandateClientError('ERR_CLIENT_ARGS', 'waitForApproval needs approvalId');
  const { intervalMs = 2000, timeoutMs = 15 * 60 * 1000, signal, ...tokenOpts } = opts;
  let interval = Math.max(intervalMs, 10);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    signal?.throwIfAborted();
    try {
      return await client.getToken(toolId, actions, tokenOpts);
    } catch (err) {
      if (err instanceof BrokerError && err.error === 'slow_down') interval += 5000;
      else if (!(err instanceof AuthorizationPendingError)) throw err;
    }
    const left = deadline - Date.now();
    if (left <= 0) throw new ApprovalTimeoutError(opts.approvalId, timeoutMs);
    await sleep(Math.min(interval, left), undefined, signal ? { signal } : undefined);
  }
}

// ---------------------------------------------------------------------------- helpers


/**
 * An approval is bound to one call's arguments, and so is the elevation token that redeems it:
 * a digest is always sent with an approval id (the broker would refuse the request without it),
 * and it must be one (base64url SHA-256, 43 characters).
 */
function checkElevationArgs(opts: GetTokenOptions): void {
  if (opts.argsDigest !== undefined && (typeof opts.argsDigest !== 'string' || !/^[A-Za-z0-9_-]{43}$/.test(opts.argsDigest))) {
    throw new MandateClientError('ERR_CLIENT_ARGS', 'argsDigest must be base64url SHA-256 (43 characters): use argsDigest(args)');
  }
  if (opts.approvalId !== undefined && opts.argsDigest === undefined) {
    throw new MandateClientError('ERR_CLIENT_ARGS', 'an approval is bound to the call\'s arguments: pass the argsDigest the approval was asked for with approvalId');
  }
}

function normalizeActions(actions: readonly string[]): string[] {
  if (!Array.isArray(actions)) throw new MandateClientError('ERR_CLIENT_ARGS', 'actions must be an array of action names');
  const out = [...new Set(actions)].sort();
  if (out.length === 0) throw new MandateClientError('ERR_CLIENT_ARGS', 'name at least one action');
  for (const a of out) {
    if (typeof a !== 'string' || !/^[\x21\x23-\x5B\x5D-\x7E]+$/.test(a)) {
      throw new MandateClientError('ERR_CLIENT_ARGS', 'action names are non-empty scope tokens (RFC 6749 §3.3)');
    }
  }
  return out;
}

function cacheKey(resource: string, scope: string[], opts: GetTokenOptions): string {
  return JSON.stringify([
    resource, scope.join(' '), opts.argsDigest ?? null, opts.runId ?? null, opts.approvalId ?? null,
    opts.actorToken !== undefined ? sha256b64u(opts.actorToken) : null, opts.actorTokenType ?? null,
  ]);
}

function parseTokenResponse(body: Record<string, unknown>, scope: string[], sentAt: number): TokenResult {
  if (typeof body.access_token !== 'string' || !body.access_token) throw new BrokerError('invalid_response', 'the token response has no access_token', 200);
  if (typeof body.token_type !== 'string') throw new BrokerError('invalid_response', 'the token response has no token_type', 200);
  const expiresIn = typeof body.expires_in === 'number' && Number.isFinite(body.expires_in) && body.expires_in > 0 ? body.expires_in : 60;
  return {
    accessToken: body.access_token,
    tokenType: body.token_type,
    // From when the request was sent, so the expiry is never later than the broker's.
    expiresAt: sentAt + expiresIn * 1000,
    scope: typeof body.scope === 'string' ? body.scope : scope.join(' '),
  };
}

function authScheme(tokenType: string): string {
  return tokenType.toLowerCase() === 'dpop' ? 'DPoP' : 'Bearer';
}

function stripSlash(s: string): string {
  return s.endsWith('/') ? s.slice(0, -1) : s;
}

/** Whether a request body can be sent twice (a stream cannot). */
function isReplayable(body: RequestInit['body']): boolean {
  if (body === undefined || body === null) return true;
  if (typeof body === 'string' || body instanceof URLSearchParams || body instanceof ArrayBuffer || ArrayBuffer.isView(body)) return true;
  if (body instanceof Blob || body instanceof FormData) return true;
  return false;
}

/** The OAuth error of a 401: from `WWW-Authenticate` (RFC 6750 §3, RFC 9449 §7.1), else the JSON body. */
async function challengeOf(res: Response): Promise<{ error: string; description: string; body: Record<string, unknown> }> {
  const header = res.headers.get('www-authenticate') ?? '';
  const error = /(?:^|[\s,])error="([^"]*)"/i.exec(header)?.[1];
  const description = /(?:^|[\s,])error_description="((?:[^"\\]|\\.)*)"/i.exec(header)?.[1]?.replace(/\\(.)/g, '$1');
  let body: Record<string, unknown> = {};
  const parsed = (await res.clone().json().catch(() => undefined)) as unknown;
  if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) body = parsed as Record<string, unknown>;
  return {
    error: error ?? (typeof body.error === 'string' ? body.error : ''),
    description: (description ?? (typeof body.error_description === 'string' ? body.error_description : '')).slice(0, 1000),
    body,
  };
}

async function discard(res: Response): Promise<void> {
  await res.body?.cancel().catch(() => {});
}

export { argsDigest, httpCallDigest };
