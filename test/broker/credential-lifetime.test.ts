import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { SignJWT, type JWK } from 'jose';
import { ManualClock } from '../../src/core/index.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { testAgent, ASSERTION_TYPE, type TestAgent } from '../helpers/agent.js';
import { startIssuer, startServer, type TestIssuer, type TestServer } from '../helpers/issuer.js';

const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';

/** Real time plus an offset the test moves: the app's "now" can be put just before or just after a credential's end. */
class ShiftedClock extends ManualClock {
  offset = 0;
  override now(): number {
    return Date.now() + this.offset;
  }
  /** Makes `now()` equal `at` (epoch ms), from here on moving with real time. */
  at(ms: number): void {
    this.offset = ms - Date.now();
  }
}

/** Today's date, UTC: a config `expires` of today ends at END. */
const DAY = new Date().toISOString().slice(0, 10);
const END = Date.parse(`${DAY}T23:59:59.999Z`);

/**
 * No credential authenticates after its end (issue 15 item 4): private_key_jwt with inline keys
 * and with a jwks_uri, a static secret's exception, a federated credential, an admin credential.
 * Every one ends at END here; the app's clock is put just before, then just after it.
 */
describe('credentials end when they say: every type refused after its end', () => {
  let t: TestApp;
  let iss: TestIssuer;
  let jwks: TestServer;
  let keyAgent: TestAgent;
  let uriAgent: TestAgent;
  let apiAgent: TestAgent;
  let adminToken = '';
  const clock = new ShiftedClock();
  const secret = 'a-long-random-legacy-secret-value';

  before(async () => {
    keyAgent = await testAgent('key-agent');
    uriAgent = await testAgent('uri-agent');
    apiAgent = await testAgent('api-agent');
    iss = await startIssuer();
    jwks = await startServer((_req, res) => {
      const text = JSON.stringify({ keys: [uriAgent.publicJwk] });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
    });
    clock.at(END - 60_000);
    const nhi = (id: string, credentials: unknown[]) => ({ id, class: 'agent' as const, owner: 'o@example.com', system: 's', tier: 'read' as const, credentials: credentials as never[] });
    t = await startTestApp(undefined, {
      tokens: { profiles: [{ name: 'read', ttl: '5m', binding: 'optional' }] },
      trust: [{ name: 'ci', kind: 'oidc', issuer: iss.url, jwks_uri: iss.jwksUri, algorithms: ['ES256'], audience: 'mandate', claims: { repository_owner: 'acme' } }],
      nhis: [
        nhi('key-agent', [{ type: 'private_key_jwt', jwks: { keys: [keyAgent.publicJwk as Record<string, unknown>] }, expires: DAY }]),
        nhi('uri-agent', [{ type: 'private_key_jwt', jwks_uri: `${jwks.url}/jwks.json`, expires: DAY }]),
        nhi('legacy', [{ type: 'static_secret', secret: 'env:LEGACY_SECRET', exception: { ticket: 'SEC-9', expires: DAY } }]),
        nhi('workflow', [{ type: 'federated', trust: 'ci', subject: 'repo:acme/deploy', expires: DAY }]),
        nhi('api-agent', []),
      ],
      tools: [{ id: 'wiki', kind: 'http', upstream: 'http://127.0.0.1:9', actions: [{ name: 'read_page', method: 'GET', path: '/pages', tier: 'read' }] }],
      grants: ['key-agent', 'uri-agent', 'legacy', 'workflow', 'api-agent'].map((n) => ({ nhi: n, tool: 'wiki', actions: ['read_page'] })),
    }, { LEGACY_SECRET: secret }, { clock });
    // An admin credential and a private_key_jwt credential recorded through the admin API, both ending at END too.
    const created = await t.admin('POST', '/admin-credentials', { name: 'ops', role: 'viewer', expires: new Date(END).toISOString() });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    adminToken = created.body.token;
    const cred = await t.admin('POST', '/nhis/api-agent/credentials', { type: 'private_key_jwt', jwks: { keys: [apiAgent.publicJwk] }, expires: new Date(END).toISOString() });
    assert.equal(cred.status, 201, JSON.stringify(cred.body));
    assert.equal(cred.body.expires_at, END);
  });
  after(async () => {
    await t?.app.close();
    await iss?.close();
    await jwks?.close();
  });

  /** RFC 7523 §3 client assertion, its times from the app's clock. */
  const assertionOf = (a: TestAgent) => {
    const now = Math.floor(clock.now() / 1000);
    return new SignJWT({ iss: a.id, sub: a.id, aud: `${t.app.issuer}/oauth/token`, jti: randomUUID(), iat: now, exp: now + 60 })
      .setProtectedHeader({ alg: 'ES256', kid: (a.publicJwk as JWK).kid! }).sign(a.privateKey);
  };
  const token = async (form: Record<string, string>, headers: Record<string, string> = {}) => {
    const res = await fetch(`${t.url}/oauth/token`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
      body: new URLSearchParams({ scope: 'read_page', resource: `${t.app.issuer}/tools/wiki`, ...form }),
    });
    return { status: res.status, body: (await res.json()) as Record<string, string> };
  };
  const privateKeyJwt = async (a: TestAgent) => token({ grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: await assertionOf(a) });
  const clientSecret = () => token({ grant_type: 'client_credentials' }, { authorization: `Basic ${Buffer.from(`legacy:${secret}`).toString('base64')}` });
  const federated = async () => {
    const now = Math.floor(clock.now() / 1000);
    const jwt = await iss.sign({ iss: iss.url, aud: 'mandate', sub: 'repo:acme/deploy', repository_owner: 'acme', iat: now, exp: now + 300, jti: randomUUID() }, { alg: 'ES256' });
    return token({ grant_type: JWT_BEARER, assertion: jwt });
  };
  const admin = async () => (await fetch(`${t.url}/admin/v1/whoami`, { headers: { authorization: `Bearer ${adminToken}` } })).status;

  it('before its end each credential authenticates; one millisecond after it, each is refused (inventory view cached or not)', async () => {
    clock.at(END - 2000);
    for (const a of [keyAgent, uriAgent, apiAgent]) assert.equal((await privateKeyJwt(a)).status, 200, `${a.id} before its end`);
    assert.equal((await clientSecret()).status, 200, 'static secret before the exception ends');
    assert.equal((await federated()).status, 200, 'federated before its end');
    assert.equal(await admin(), 200, 'admin credential before its end');

    // Two seconds later on the app's clock: well inside the inventory view's 5 s cache, so the
    // credentials above are still cached as loaded; the end is checked against the clock.
    clock.at(END + 1);
    for (const a of [keyAgent, uriAgent, apiAgent]) {
      const r = await privateKeyJwt(a);
      assert.equal(r.status, 401, `${a.id} after its end: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error, 'invalid_client');
    }
    const s = await clientSecret();
    assert.equal(s.status, 401);
    assert.equal(s.body.error, 'invalid_client');
    const f = await federated();
    assert.equal(f.body.error, 'invalid_grant', 'a workload token no longer names the NHI once its federated credential ended');
    assert.equal(await admin(), 401, 'admin credential after its end');
  });

  it('the API refuses to record a credential that has already ended, and says when the others end', async () => {
    clock.at(END + 1000);
    const ended = await t.admin('POST', '/nhis/api-agent/credentials', { type: 'federated', trust: 'ci', subject: 'x', expires: DAY });
    assert.equal(ended.status, 400);
    assert.match(ended.body.error_description, /already have ended/);
    const detail = await t.admin('GET', '/nhis/key-agent');
    assert.equal(detail.body.credentials[0].expires_at, END);
  });
});
