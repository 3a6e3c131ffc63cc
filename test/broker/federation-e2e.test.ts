import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair, decodeJwt, type CryptoKey, type JWK } from 'jose';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startTestApp, type TestApp } from '../helpers/app.js';

const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';

/**
 * Workload federation end to end: a real OIDC issuer (its own keys, JWKS and discovery on
 * 127.0.0.1:0) signs GitHub-Actions-like tokens; the broker exchanges them for tool tokens.
 */
describe('workload federation through the token endpoint', () => {
  let iss: TestIssuer;
  let t: TestApp;
  let dk: { privateKey: CryptoKey; publicJwk: JWK };

  const workloadToken = (over: Record<string, unknown> = {}) => {
    const now = Math.floor(Date.now() / 1000);
    return iss.sign({
      iss: iss.url, aud: 'mandate', sub: 'repo:acme/deploy:ref:refs/heads/main', repository_owner: 'acme',
      run_id: '1234', run_attempt: '1', iat: now, exp: now + 300, jti: randomUUID(), ...over,
    }, { alg: 'RS256' });
  };
  const proof = async () => new SignJWT({ jti: randomUUID(), htm: 'POST', htu: `${t.app.issuer}/oauth/token`, iat: Math.floor(Date.now() / 1000) })
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: dk.publicJwk }).sign(dk.privateKey);
  const post = async (form: Record<string, string>) => {
    const res = await fetch(`${t.url}/oauth/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: await proof() }, body: new URLSearchParams(form) });
    return { status: res.status, body: (await res.json()) as Record<string, any> };
  };

  before(async () => {
    iss = await startIssuer();
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    dk = { privateKey, publicJwk: await exportJWK(publicKey) };
    t = await startTestApp(undefined, {
      trust: [{ name: 'github', kind: 'github_actions', issuer: iss.url, discovery: true, algorithms: ['RS256'], audience: 'mandate', claims: { repository_owner: 'acme' } }],
      nhis: [{ id: 'deploy-workflow', class: 'runner', owner: 'o', system: 'ci', tier: 'write', credentials: [{ type: 'federated', trust: 'github', subject: 'repo:acme/deploy:ref:refs/heads/*' }] }],
      tools: [{ id: 'tickets', kind: 'http', upstream: 'http://127.0.0.1:9', actions: [{ name: 'list_tickets', method: 'GET', path: '/tickets', tier: 'read' }] }],
      grants: [{ nhi: 'deploy-workflow', tool: 'tickets', actions: ['list_tickets'] }],
    });
  });
  after(async () => {
    await t.app.close();
    await iss.close();
  });

  it('RFC 8693 §2.1: exchanges a workload JWT for a tool token carrying the run id', async () => {
    const r = await post({ grant_type: EXCHANGE, subject_token: await workloadToken(), subject_token_type: JWT_TYPE, scope: 'list_tickets', resource: `${t.app.issuer}/tools/tickets` });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const c = decodeJwt(r.body.access_token);
    assert.equal(c.sub, 'deploy-workflow');
    assert.equal(c.mandate_run_id, '1234-1');
    assert.ok(c.exp! <= Math.floor(Date.now() / 1000) + 300, 'never outlives the subject token');
  });

  it('RFC 7523 §2.1: the JWT bearer grant works the same way', async () => {
    const r = await post({ grant_type: JWT_BEARER, assertion: await workloadToken(), scope: 'list_tickets', resource: `${t.app.issuer}/tools/tickets` });
    assert.equal(r.status, 200, JSON.stringify(r.body));
  });

  it('RFC 8693 §2.2.2 / RFC 7523 §3.1: refuses a claim outside the trust conditions and an untrusted issuer (invalid_request in exchange, invalid_grant as a JWT bearer assertion)', async () => {
    const other = await post({ grant_type: EXCHANGE, subject_token: await workloadToken({ repository_owner: 'evil' }), subject_token_type: JWT_TYPE, scope: 'list_tickets', resource: `${t.app.issuer}/tools/tickets` });
    assert.equal(other.body.error, 'invalid_request');
    const forged = await post({ grant_type: EXCHANGE, subject_token: await workloadToken({ iss: 'https://evil.example.com' }), subject_token_type: JWT_TYPE, scope: 'list_tickets', resource: `${t.app.issuer}/tools/tickets` });
    assert.equal(forged.body.error, 'invalid_request');
    const bearer = await post({ grant_type: JWT_BEARER, assertion: await workloadToken({ iss: 'https://evil.example.com' }), scope: 'list_tickets', resource: `${t.app.issuer}/tools/tickets` });
    assert.equal(bearer.body.error, 'invalid_grant');
  });

  it('a valid token that maps to no NHI is refused and raises shadow_agent', async () => {
    const seen: unknown[] = [];
    const sub = await t.app.bus.subscribe('shadow_agent', (m) => void seen.push(m.data));
    try {
      const r = await post({ grant_type: EXCHANGE, subject_token: await workloadToken({ sub: 'repo:acme/unknown:ref:refs/heads/main' }), subject_token_type: JWT_TYPE, scope: 'list_tickets', resource: `${t.app.issuer}/tools/tickets` });
      assert.equal(r.body.error, 'invalid_request');
      assert.equal(JSON.stringify(r.body).includes('acme/unknown'), false, 'the subject is not echoed to the caller');
      const deadline = Date.now() + 3000;
      while (seen.length === 0 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
      assert.equal((seen[0] as { workload_subject: string }).workload_subject, 'repo:acme/unknown:ref:refs/heads/main');
      await t.app.audit.flush();
      const audited = await t.admin('GET', '/audit?type=shadow_agent');
      assert.equal(audited.body.records.length, 1);
    } finally {
      await sub.close();
    }
  });
});
