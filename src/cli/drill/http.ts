/** The drill's HTTP: calls through a proxy as the agent or the attacker, metadata lookups, polling. */
import type { DpopKey } from '../../client/index.js';
import { CliError, EXIT } from '../errors.js';

/** One proxy instance, with the public resource URLs of the two drill tools behind it. */
export interface ProxyTarget {
  base: string;
  resource: string;
  otherResource: string;
  nonce?: string;
}

export interface CallResult {
  status: number;
  error: string | null;
  description: string | null;
}

/** The only method the drill calls a tool with: it never changes anything at the tool. */
export const SAFE_METHOD = 'GET';
const RESPONSE_CAP = 64 * 1024;

/**
 * One call through a proxy. The connection goes to the proxy instance; the DPoP `htu` is the
 * tool's public resource URL (what every instance compares against), so it works behind one
 * public name as well as instance by instance. Retries once on `use_dpop_nonce` (RFC 9449 §9).
 */
export async function toolCall(t: ProxyTarget, toolId: string, resource: string, path: string, token: string, scheme: 'DPoP' | 'Bearer', key: DpopKey | undefined, marker: string): Promise<CallResult> {
  const url = `${t.base}/tools/${encodeURIComponent(toolId)}${path}`;
  let nonce = t.nonce;
  for (let attempt = 0; ; attempt++) {
    const headers: Record<string, string> = { authorization: `${scheme} ${token}`, 'x-mandate-drill': marker, accept: 'application/json' };
    if (key) headers.dpop = await key.proof({ htm: SAFE_METHOD, htu: `${resource}${path}`, accessToken: token, ...(nonce !== undefined ? { nonce } : {}) });
    let res: Response;
    try {
      res = await fetch(url, { method: SAFE_METHOD, headers, signal: AbortSignal.timeout(10_000) });
    } catch (err) {
      return { status: 0, error: 'unreachable', description: (err as Error).message };
    }
    const text = (await res.text()).slice(0, RESPONSE_CAP);
    let body: { error?: unknown; error_description?: unknown } = {};
    try {
      const parsed = JSON.parse(text) as unknown;
      if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) body = parsed as typeof body;
    } catch {
      // not JSON: fine for a 2xx from the tool
    }
    const www = res.headers.get('www-authenticate') ?? '';
    const error = typeof body.error === 'string' ? body.error : /error="([^"]*)"/.exec(www)?.[1] ?? null;
    const description = ok2xx(res.status) ? null : typeof body.error_description === 'string' ? body.error_description.slice(0, 300) : null;
    const newNonce = res.headers.get('dpop-nonce') ?? undefined;
    if (newNonce) t.nonce = newNonce;
    if (res.status === 401 && error === 'use_dpop_nonce' && attempt === 0 && newNonce && key) {
      nonce = newNonce;
      continue;
    }
    return { status: res.status, error: ok2xx(res.status) ? null : error, description };
  }
}

export async function getJson(url: string): Promise<Record<string, unknown> | undefined> {
  let res: Response;
  try {
    res = await fetch(url, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(10_000) });
  } catch (err) {
    throw new CliError(`cannot reach ${url} (${(err as Error).message})`, EXIT.unreachable);
  }
  const text = (await res.text()).slice(0, RESPONSE_CAP);
  if (!res.ok) return undefined;
  try {
    const v = JSON.parse(text) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

export async function pollUntil<T>(deadline: number, everyMs: number, fn: () => Promise<T | undefined>): Promise<T | undefined> {
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() >= deadline) return undefined;
    await sleep(everyMs);
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
export const ok2xx = (s: number) => s >= 200 && s < 300;
export const stripSlash = (u: string) => u.replace(/\/+$/, '');
/** The token's `jti` (an identifier, printed; the token itself never is). */
export function jtiOf(token: string): string {
  try {
    const p = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { jti?: unknown };
    return typeof p.jti === 'string' ? p.jti : '?';
  } catch {
    return '?';
  }
}
