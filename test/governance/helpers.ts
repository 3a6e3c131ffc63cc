import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomUUID } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { SignJWT } from 'jose';
import { buildConfig, silentLogger, ManualClock, type MandateConfigInput } from '../../src/core/index.js';
import { startApp, type App } from '../../src/app.js';
import { ASSERTION_TYPE, type TestAgent, type TestDpopKey } from '../helpers/agent.js';
import { LOOPBACK_CIDRS } from '../helpers/outbound.js';

/** A Mandate on 127.0.0.1:0 (SQLite, in-process bus) whose clock the test moves. */
export interface GovApp {
  app: App;
  url: string;
  clock: ManualClock;
  admin(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }>;
  token: string;
}

export async function startGovApp(extra: MandateConfigInput, env: NodeJS.ProcessEnv = {}, start = Date.now()): Promise<GovApp> {
  const dataDir = mkdtempSync(join(tmpdir(), 'mandate-gov-'));
  const clock = new ManualClock(start);
  const config = buildConfig({
    // Issuers of these tests listen on 127.0.0.1: the documented allowance, unless the test sets outbound.
    outbound: { allow_private_cidrs: [...LOOPBACK_CIDRS] },
    ...extra,
    server: { port: 0 },
    store: { driver: 'sqlite', sqlite_path: join(dataDir, 'mandate.db') },
    bus: { driver: 'memory' },
    log: { level: 'silent' },
  }, { env: {} });
  let token = '';
  const app = await startApp({ config, env, dataDir, clock, logger: silentLogger(), onBootstrapCredential: (t) => (token = t) });
  return {
    app, url: app.url, clock, token,
    async admin(method, path, body) {
      const res = await fetch(`${app.url}/admin/v1${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        body: body !== undefined ? JSON.stringify(body) : undefined,
      });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : undefined };
    },
  };
}

/** A DPoP proof whose `iat` is the app's (manual) time. */
export async function proofAt(clock: ManualClock, key: TestDpopKey, htm: string, htu: string, extra: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT({ jti: randomUUID(), htm, htu, iat: Math.floor(clock.now() / 1000), ...extra })
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: key.publicJwk })
    .sign(key.privateKey);
}

/** client_credentials with private_key_jwt and a DPoP proof, at the app's time. Returns status and body. */
export async function tokenAt(
  g: GovApp, a: TestAgent, tool: string, scope: string, key: TestDpopKey,
): Promise<{ status: number; body: Record<string, any> }> {
  const iss = g.app.issuer;
  const now = Math.floor(g.clock.now() / 1000);
  const assertion = await new SignJWT({ jti: randomUUID() })
    .setProtectedHeader({ alg: 'ES256', kid: a.publicJwk.kid! })
    .setIssuer(a.id).setSubject(a.id).setAudience(iss).setIssuedAt(now).setExpirationTime(now + 60)
    .sign(a.privateKey);
  const endpoint = `${iss}/oauth/token`;
  const res = await fetch(endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: await proofAt(g.clock, key, 'POST', endpoint) },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: assertion, resource: `${iss}/tools/${tool}`, scope }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

/** A call through the proxy over a raw socket, so that the client address can be chosen (127.0.0.2 is loopback too). */
export function call(
  g: GovApp, path: string, opts: { method?: string; token: string; key?: TestDpopKey; proofKey?: TestDpopKey; scheme?: 'DPoP' | 'Bearer'; localAddress?: string },
): Promise<{ status: number; body: string }> {
  const method = opts.method ?? 'GET';
  const url = `${g.app.issuer}${path}`;
  return (async () => {
    const headers: Record<string, string> = { authorization: `${opts.scheme ?? (opts.key ? 'DPoP' : 'Bearer')} ${opts.token}` };
    const k = opts.proofKey ?? opts.key;
    if (k) headers.dpop = await proofAt(g.clock, k, method, url, { ath: ath(opts.token) });
    const u = new URL(g.url);
    return new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest({ host: u.hostname, port: u.port, method, path, headers, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
  })();
}

function ath(token: string): string {
  return createHash('sha256').update(token).digest('base64url');
}

/** Polls until `fn` returns something truthy (a bus consumer is asynchronous), up to 10 s. */
export async function waitFor<T>(fn: () => Promise<T | undefined | false | null> | T | undefined | false | null, what = 'condition'): Promise<T> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Waits until governance's consumer of `subject` has handled everything published so far:
 * a no-op event is published on that subject (the detections ignore events without an NHI),
 * and the consumer's completed sequence must reach it. After this, "no finding" is a fact,
 * not a race.
 */
export async function settled(g: GovApp, subject: 'token.issued' | 'token.denied' | 'tool.called' | 'tool.call_denied' | 'inventory.>' | 'shadow_agent'): Promise<void> {
  const seq = await g.app.bus.publish(subject === 'inventory.>' ? 'inventory.barrier' : subject, { barrier: true });
  await waitFor(() => g.app.governance.detections.lastSeq(subject) >= seq, `governance consumer of ${subject} to reach ${seq}`);
}

/** Waits for the playbooks to handle every detection.raised published so far. */
export async function playbooksSettled(g: GovApp): Promise<void> {
  const seq = await g.app.bus.publish('detection.raised', { barrier: true });
  await waitFor(() => g.app.governance.playbooks.lastSeq() >= seq, 'playbooks to catch up');
}

export async function findings(g: GovApp, query: string): Promise<any[]> {
  const r = await g.admin('GET', `/findings?${query}`);
  if (r.status !== 200) throw new Error(`findings: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.findings;
}
