import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import * as oidc from 'openid-client';
import { SignJWT, exportJWK, generateKeyPair, decodeJwt, decodeProtectedHeader, calculateJwkThumbprint, type CryptoKey, type JWK } from 'jose';
import { startTestApp, type TestApp } from '../helpers/app.js';

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const AT_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

interface Agent {
  id: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

async function agent(id: string): Promise<Agent> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  return { id, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid: `${id}-1`, alg: 'ES256', use: 'sig' } };
}

/** A client assertion per RFC 7523 §3, signed by the agent. */
async function assertion(a: Agent, aud: string, claims: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT({ jti: randomUUID(), ...claims })
    .setProtectedHeader({ alg: 'ES256', kid: a.publicJwk.kid! })
    .setIssuer(a.id).setSubject(a.id).setAudience(aud).setIssuedAt().setExpirationTime('60s')
    .sign(a.privateKey);
}

/** A DPoP proof per RFC 9449 §4.2. */
async function dpopProof(key: { privateKey: CryptoKey; publicJwk: JWK }, htm: string, htu: string, extra: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT({ jti: randomUUID(), htm, htu, iat: Math.floor(Date.now() / 1000), ...extra })
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: key.publicJwk })
    .sign(key.privateKey);
}

async function dpopKey() {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const publicJwk = await exportJWK(publicKey);
  return { privateKey, publicJwk, jkt: await calculateJwkThumbprint(publicJwk) };
}

async function tokenRequest(url: string, form: Record<string, string | string[]>, headers: Record<string, string> = {}) {
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(form)) for (const x of [v].flat()) body.append(k, x);
  const res = await fetch(`${url}/oauth/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, any> };
}

describe('token broker', () => {
  let t: TestApp;
  let deployer: Agent;
  let orchestrator: Agent;
  let resource: (tool: string) => string;

  before(async () => {
    deployer = await agent('deployer');
    orchestrator = await agent('orchestrator');
    t = await startTestApp(undefined, {
      nhis: [
        { id: 'deployer', class: 'agent', owner: 'o@example.com', system: 's', tier: 'write', may_act: ['orchestrator'], credentials: [{ type: 'private_key_jwt', jwks: { keys: [deployer.publicJwk as Record<string, unknown>] } }] },
        { id: 'orchestrator', class: 'agent', owner: 'o@example.com', system: 's', tier: 'write', credentials: [{ type: 'private_key_jwt', jwks: { keys: [orchestrator.publicJwk as Record<string, unknown>] } }] },
      ],
      tools: [
        { id: 'tickets', kind: 'http', upstream: 'http://127.0.0.1:9', actions: [
          { name: 'list_tickets', method: 'GET', path: '/tickets', tier: 'read' },
          { name: 'create_ticket', method: 'POST', path: '/tickets', tier: 'write' },
          { name: 'delete_ticket', method: 'DELETE', path: '/tickets/{id}', tier: 'destructive' },
        ] },
        { id: 'wiki', kind: 'http', upstream: 'http://127.0.0.1:9', actions: [{ name: 'read_page', method: 'GET', path: '/pages', tier: 'read' }] },
      ],
      grants: [
        { nhi: 'deployer', tool: 'tickets', actions: ['list_tickets', 'create_ticket', 'delete_ticket'] },
        { nhi: 'orchestrator', tool: 'tickets', actions: ['list_tickets'] },
      ],
    });
    resource = (tool) => `${t.app.issuer}/tools/${tool}`;
  });
  after(() => t.app.close());

  describe('with openid-client v6 (a real OAuth client)', () => {
    let config: oidc.Configuration;
    let keyPair: oidc.CryptoKeyPair;
    before(async () => {
      config = await oidc.discovery(new URL(t.app.issuer), 'deployer', { token_endpoint_auth_method: 'private_key_jwt' }, oidc.PrivateKeyJwt(deployer.privateKey), {
        algorithm: 'oauth2', execute: [oidc.allowInsecureRequests],
      });
      keyPair = await oidc.randomDPoPKeyPair('ES256');
    });

    it('RFC 8414 §3: discovers the metadata', () => {
      const m = config.serverMetadata();
      assert.equal(m.issuer, t.app.issuer);
      assert.equal(m.token_endpoint, `${t.app.issuer}/oauth/token`);
      assert.ok(m.grant_types_supported?.includes(EXCHANGE));
      assert.ok(m.dpop_signing_alg_values_supported?.includes('ES256'));
      assert.ok(m.token_endpoint_auth_methods_supported?.includes('private_key_jwt'));
    });

    it('client_credentials with private_key_jwt + DPoP issues an RFC 9068 at+jwt bound to the key', async () => {
      const dpop = oidc.getDPoPHandle(config, keyPair);
      const tokens = await oidc.clientCredentialsGrant(config, { scope: 'list_tickets create_ticket', resource: resource('tickets') }, { DPoP: dpop });
      assert.equal(tokens.token_type.toLowerCase(), 'dpop');
      assert.equal(tokens.scope, 'list_tickets create_ticket');
      assert.equal(decodeProtectedHeader(tokens.access_token).typ, 'at+jwt');
      const c = decodeJwt(tokens.access_token);
      assert.equal(c.iss, t.app.issuer);
      assert.equal(c.sub, 'deployer');
      assert.equal(c.aud, resource('tickets'));
      assert.equal(c.client_id, 'deployer');
      assert.equal(c.mandate_tier, 'write');
      assert.equal(c.exp! - c.iat!, 300, 'TTL from the write profile (5m)');
      const { publicKey } = keyPair;
      const jkt = await calculateJwkThumbprint(await exportJWK(publicKey));
      assert.deepEqual(c.cnf, { jkt });
      const issued = await t.admin('GET', '/tokens?nhi=deployer');
      assert.ok(issued.body.tokens.some((x: { jti: string }) => x.jti === c.jti));
    });

    it('RFC 7662 §2: introspection reports the token active, then inactive after RFC 7009 §2 revocation', async () => {
      const dpop = oidc.getDPoPHandle(config, keyPair);
      const tokens = await oidc.clientCredentialsGrant(config, { scope: 'list_tickets', resource: resource('tickets') }, { DPoP: dpop });
      const active = await oidc.tokenIntrospection(config, tokens.access_token);
      assert.equal(active.active, true);
      assert.equal(active.sub, 'deployer');
      assert.equal(active.scope, 'list_tickets');
      await oidc.tokenRevocation(config, tokens.access_token);
      const after = await oidc.tokenIntrospection(config, tokens.access_token);
      assert.deepEqual(after, { active: false });
    });

    it('RFC 8693 §2.1: token exchange narrows a Mandate token (same DPoP key)', async () => {
      const dpop = oidc.getDPoPHandle(config, keyPair);
      const wide = await oidc.clientCredentialsGrant(config, { scope: 'list_tickets create_ticket', resource: resource('tickets') }, { DPoP: dpop });
      const narrow = await oidc.genericGrantRequest(config, EXCHANGE, {
        subject_token: wide.access_token, subject_token_type: AT_TYPE, scope: 'list_tickets', resource: resource('tickets'),
      }, { DPoP: dpop });
      assert.equal(narrow.scope, 'list_tickets');
      assert.equal(narrow.issued_token_type, AT_TYPE);
      assert.ok(decodeJwt(narrow.access_token).exp! <= decodeJwt(wide.access_token).exp!);
    });
  });

  it('RFC 8693 §2.2.2: invalid_target for two tools, an unknown tool or none', async () => {
    const key = await dpopKey();
    const base = { grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, scope: 'list_tickets' };
    const ep = `${t.app.issuer}/oauth/token`;
    const two = await tokenRequest(t.url, { ...base, client_assertion: await assertion(deployer, ep), resource: [resource('tickets'), resource('wiki')] }, { dpop: await dpopProof(key, 'POST', ep) });
    assert.equal(two.body.error, 'invalid_target');
    const unknown = await tokenRequest(t.url, { ...base, client_assertion: await assertion(deployer, ep), resource: `${t.app.issuer}/tools/nope` }, { dpop: await dpopProof(key, 'POST', ep) });
    assert.equal(unknown.body.error, 'invalid_target');
    const none = await tokenRequest(t.url, { ...base, client_assertion: await assertion(deployer, ep) }, { dpop: await dpopProof(key, 'POST', ep) });
    assert.equal(none.body.error, 'invalid_target');
  });

  it('scope is requested ∩ granted; nothing granted is invalid_scope', async () => {
    const key = await dpopKey();
    const ep = `${t.app.issuer}/oauth/token`;
    const r = await tokenRequest(t.url, { grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: await assertion(orchestrator, ep), scope: 'list_tickets create_ticket', resource: resource('tickets') }, { dpop: await dpopProof(key, 'POST', ep) });
    assert.equal(r.status, 200);
    assert.equal(r.body.scope, 'list_tickets');
    const none = await tokenRequest(t.url, { grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: await assertion(orchestrator, ep), scope: 'create_ticket', resource: resource('tickets') }, { dpop: await dpopProof(key, 'POST', ep) });
    assert.equal(none.status, 400);
    assert.equal(none.body.error, 'invalid_scope');
    const denied = await t.admin('GET', '/audit?type=token.denied&subject=orchestrator');
    assert.ok(denied.body.records.some((x: { data: { error: string } }) => x.data.error === 'invalid_scope'), 'refusals are audited as token.denied');
  });

  it('a profile that requires binding refuses an unbound request', async () => {
    const ep = `${t.app.issuer}/oauth/token`;
    const r = await tokenRequest(t.url, { grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: await assertion(deployer, ep), scope: 'list_tickets', resource: resource('tickets') });
    assert.equal(r.status, 400);
    assert.equal(r.body.error, 'invalid_request');
    assert.match(r.body.error_description, /DPoP/);
  });

  it('no refresh tokens for machines', async () => {
    const r = await tokenRequest(t.url, { grant_type: 'refresh_token', refresh_token: 'x' });
    assert.equal(r.body.error, 'unsupported_grant_type');
  });

  it('RFC 8693 §4.1/§4.4: delegation carries act and needs may_act', async () => {
    const ep = `${t.app.issuer}/oauth/token`;
    const dk = await dpopKey();
    const ok = await tokenRequest(t.url, { grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: await assertion(deployer, ep), scope: 'list_tickets', resource: resource('tickets') }, { dpop: await dpopProof(dk, 'POST', ep) });
    const ok2 = await tokenRequest(t.url, { grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: await assertion(orchestrator, ep), scope: 'list_tickets', resource: resource('tickets') }, { dpop: await dpopProof(dk, 'POST', ep) });
    const delegated = await tokenRequest(t.url, {
      grant_type: EXCHANGE, subject_token: ok.body.access_token, subject_token_type: AT_TYPE,
      actor_token: ok2.body.access_token, actor_token_type: AT_TYPE, scope: 'list_tickets', resource: resource('tickets'),
    }, { dpop: await dpopProof(dk, 'POST', ep) });
    assert.equal(delegated.status, 200, JSON.stringify(delegated.body));
    assert.deepEqual(decodeJwt(delegated.body.access_token).act, { sub: 'orchestrator', mandate_jti: decodeJwt(ok2.body.access_token).jti });
    // The reverse is not allowed: deployer is not in orchestrator's may_act.
    const reverse = await tokenRequest(t.url, {
      grant_type: EXCHANGE, subject_token: ok2.body.access_token, subject_token_type: AT_TYPE,
      actor_token: ok.body.access_token, actor_token_type: AT_TYPE, scope: 'list_tickets', resource: resource('tickets'),
    }, { dpop: await dpopProof(dk, 'POST', ep) });
    // RFC 8693 §2.2.2: an actor the subject's may_act does not name makes the actor token unacceptable.
    assert.equal(reverse.body.error, 'invalid_request');
  });

  it('elevation: approval_required, approval by another, single-use token; denial yields nothing', async () => {
    const ep = `${t.app.issuer}/oauth/token`;
    const DIGEST = 'M7hzyDgX1ZjsSjX9Gq1mVSIwWbXJg2uH0xi5X_Vx2gE';
    const dk = await dpopKey();
    const ask = async (extra: Record<string, string> = {}) => tokenRequest(t.url, {
      grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: await assertion(deployer, ep),
      scope: 'delete_ticket', resource: resource('tickets'), args_digest: DIGEST, ...extra,
    }, { dpop: await dpopProof(dk, 'POST', ep) });
    const first = await ask();
    assert.equal(first.status, 400);
    assert.equal(first.body.error, 'approval_required');
    const id = first.body.approval_id as string;
    assert.match(id, /^apr_/);
    assert.equal((await ask({ approval_id: id })).body.error, 'authorization_pending');
    const approver = await t.admin('POST', '/admin-credentials', { name: 'alice', role: 'approver' });
    const approve = await fetch(`${t.url}/admin/v1/approvals/${id}/approve`, { method: 'POST', headers: { authorization: `Bearer ${approver.body.token}`, 'content-type': 'application/json' }, body: '{}' });
    assert.equal(approve.status, 200);
    const granted = await ask({ approval_id: id });
    assert.equal(granted.status, 200, JSON.stringify(granted.body));
    const c = decodeJwt(granted.body.access_token);
    assert.equal(c.scope, 'delete_ticket');
    assert.equal(c.mandate_approval, id);
    assert.equal(c.mandate_args_digest, DIGEST);
    assert.equal(c.exp! - c.iat!, 120);
    assert.equal((await ask({ approval_id: id })).body.error, 'invalid_grant', 'an approval is redeemed once');

    const second = await ask();
    const deny = await t.admin('POST', `/approvals/${second.body.approval_id}/deny`, { reason: 'no' });
    assert.equal(deny.body.status, 'denied');
    assert.equal((await ask({ approval_id: second.body.approval_id })).body.error, 'access_denied');
  });

  it('kill switch refuses issuance at once; lifting restores it', async () => {
    const ep = `${t.app.issuer}/oauth/token`;
    const dk = await dpopKey();
    const ask = async () => tokenRequest(t.url, { grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: await assertion(orchestrator, ep), scope: 'list_tickets', resource: resource('tickets') }, { dpop: await dpopProof(dk, 'POST', ep) });
    const kill = await t.admin('POST', '/kill', { scope: 'nhi', target: 'orchestrator', reason: 'drill' });
    assert.equal(kill.status, 201);
    const refused = await ask();
    assert.equal(refused.body.error, 'access_denied');
    assert.match(refused.body.error_description, /kill switch/);
    assert.equal((await t.admin('DELETE', `/kill/${kill.body.id}`)).status, 200);
    assert.equal((await ask()).status, 200);
  });

  it('revoking every token of an NHI makes its older tokens unusable for exchange', async () => {
    const ep = `${t.app.issuer}/oauth/token`;
    const dk = await dpopKey();
    const tok = await tokenRequest(t.url, { grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: await assertion(deployer, ep), scope: 'list_tickets', resource: resource('tickets') }, { dpop: await dpopProof(dk, 'POST', ep) });
    assert.equal((await t.admin('POST', '/revocations', { nhi: 'deployer', reason: 'test' })).status, 201);
    const ex = await tokenRequest(t.url, { grant_type: EXCHANGE, subject_token: tok.body.access_token, subject_token_type: AT_TYPE, scope: 'list_tickets', resource: resource('tickets') }, { dpop: await dpopProof(dk, 'POST', ep) });
    assert.equal(ex.body.error, 'invalid_request');
    assert.match(ex.body.error_description, /revoked/);
  });

  it('RFC 7523 §3 / RFC 9449 §11.1: 50 parallel requests reusing one client assertion, and 50 reusing one DPoP proof: exactly one of each succeeds', async () => {
    const ep = `${t.app.issuer}/oauth/token`;
    const dk = await dpopKey();
    const a = await assertion(deployer, ep);
    const sameAssertion = await Promise.all(Array.from({ length: 50 }, async () => tokenRequest(t.url, {
      grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: a, scope: 'list_tickets', resource: resource('tickets'),
    }, { dpop: await dpopProof(dk, 'POST', ep) })));
    assert.equal(sameAssertion.filter((r) => r.status === 200).length, 1);
    assert.ok(sameAssertion.filter((r) => r.status !== 200).every((r) => r.body.error === 'invalid_client'));
    const proof = await dpopProof(dk, 'POST', ep);
    const sameProof = await Promise.all(Array.from({ length: 50 }, async () => tokenRequest(t.url, {
      grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: await assertion(deployer, ep), scope: 'list_tickets', resource: resource('tickets'),
    }, { dpop: proof })));
    assert.equal(sameProof.filter((r) => r.status === 200).length, 1);
    assert.ok(sameProof.filter((r) => r.status !== 200).every((r) => r.body.error === 'invalid_dpop_proof'));
  });
});
