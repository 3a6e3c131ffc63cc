/**
 * RFC 8705 certificate-bound access tokens: Mandate listening with TLS client authentication.
 * The PKI is generated at test time (test/helpers/certs.ts); requests go through undici with a
 * per-client-certificate Agent.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createHash, randomUUID } from 'node:crypto';
import { Agent, fetch } from 'undici';
import { SignJWT, exportJWK, generateKeyPair, decodeJwt, calculateJwkThumbprint, type CryptoKey, type JWK } from 'jose';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { generateTestPki, type TestPki } from '../helpers/certs.js';

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const AT_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

interface Client {
  id: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

async function client(id: string): Promise<Client> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  return { id, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid: `${id}-1`, alg: 'ES256', use: 'sig' } };
}

/** RFC 7523 §3 client assertion. */
async function assertion(c: Client, aud: string): Promise<string> {
  return new SignJWT({ jti: randomUUID() })
    .setProtectedHeader({ alg: 'ES256', kid: c.publicJwk.kid! })
    .setIssuer(c.id).setSubject(c.id).setAudience(aud).setIssuedAt().setExpirationTime('60s')
    .sign(c.privateKey);
}

async function dpopKey() {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const publicJwk = await exportJWK(publicKey);
  return { privateKey, publicJwk, jkt: await calculateJwkThumbprint(publicJwk) };
}

/** RFC 9449 §4.2 DPoP proof. */
async function dpopProof(key: { privateKey: CryptoKey; publicJwk: JWK }, htm: string, htu: string): Promise<string> {
  return new SignJWT({ jti: randomUUID(), htm, htu, iat: Math.floor(Date.now() / 1000) })
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: key.publicJwk })
    .sign(key.privateKey);
}

/** RFC 8705 §3.1: base64url(SHA-256(DER)). */
function x5tS256(pem: string): string {
  return createHash('sha256').update(new X509Certificate(pem).raw).digest('base64url');
}

async function tokenRequest(url: string, dispatcher: Agent, form: Record<string, string>, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}/oauth/token`, {
    method: 'POST', dispatcher, body: new URLSearchParams(form),
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
  });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

describe('RFC 8705 mutual-TLS certificate-bound access tokens', () => {
  let pki: TestPki;
  let t: TestApp;
  let deployer: Client;
  /** Presents the client certificate issued by the trusted CA. */
  let withCert: Agent;
  /** Presents a client certificate from a CA the server does not trust. */
  let withRogueCert: Agent;
  /** Presents no client certificate. */
  let noCert: Agent;
  let ep: string;
  let resource: string;

  const clientCredentials = async (dispatcher: Agent, headers: Record<string, string> = {}) =>
    tokenRequest(t.url, dispatcher, {
      grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: await assertion(deployer, ep),
      scope: 'list_tickets', resource,
    }, headers);

  const admin = async (path: string) => {
    const res = await fetch(`${t.url}/admin/v1${path}`, { dispatcher: noCert, headers: { authorization: `Bearer ${t.token}` } });
    return { status: res.status, body: (await res.json()) as any };
  };

  before(async () => {
    pki = generateTestPki();
    deployer = await client('deployer');
    t = await startTestApp(undefined, {
      server: {
        host: '127.0.0.1',
        tls: { cert: pki.server.certPath, key: `file:${pki.server.keyPath}`, client_ca: pki.ca.certPath, client_auth: 'optional' },
      },
      nhis: [
        { id: 'deployer', class: 'agent', owner: 'o@example.com', system: 's', tier: 'write', credentials: [{ type: 'private_key_jwt', jwks: { keys: [deployer.publicJwk as Record<string, unknown>] } }] },
      ],
      tools: [
        { id: 'tickets', kind: 'http', upstream: 'http://127.0.0.1:9', actions: [{ name: 'list_tickets', method: 'GET', path: '/tickets', tier: 'read' }] },
      ],
      grants: [{ nhi: 'deployer', tool: 'tickets', actions: ['list_tickets'] }],
    });
    withCert = new Agent({ connect: { ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key } });
    withRogueCert = new Agent({ connect: { ca: pki.ca.cert, cert: pki.rogueClient.cert, key: pki.rogueClient.key } });
    noCert = new Agent({ connect: { ca: pki.ca.cert } });
    ep = `${t.app.issuer}/oauth/token`;
    resource = `${t.app.issuer}/tools/tickets`;
  });

  after(async () => {
    await Promise.all([withCert?.close(), withRogueCert?.close(), noCert?.close()]);
    await t?.app.close();
    pki?.cleanup();
  });

  it('listens on https with the generated server certificate', () => {
    assert.match(t.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(t.app.issuer, t.url);
  });

  it('RFC 8705 §3.1: client_credentials over mTLS without DPoP binds the token to the certificate (cnf x5t#S256)', async () => {
    const r = await clientCredentials(withCert);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.token_type, 'Bearer', 'RFC 8705 tokens stay Bearer; the cnf claim carries the binding');
    const c = decodeJwt(r.body.access_token);
    assert.deepEqual(c.cnf, { 'x5t#S256': x5tS256(pki.client.cert) });
    assert.equal(c.sub, 'deployer');
    assert.equal(c.aud, resource);
    const issued = await admin('/tokens?nhi=deployer');
    assert.equal(issued.status, 200);
    const row = issued.body.tokens.find((x: { jti: string }) => x.jti === c.jti);
    assert.ok(row, 'the issued token is recorded');
    assert.equal(row.bound, 'mtls');
  });

  it('RFC 9449 + RFC 8705: with both a DPoP proof and a client certificate, DPoP wins (cnf.jkt only, token_type DPoP)', async () => {
    const key = await dpopKey();
    const r = await clientCredentials(withCert, { dpop: await dpopProof(key, 'POST', ep) });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.token_type, 'DPoP');
    const c = decodeJwt(r.body.access_token);
    assert.deepEqual(c.cnf, { jkt: key.jkt }, 'the certificate thumbprint is not added alongside jkt');
    const issued = await admin('/tokens?nhi=deployer');
    assert.equal(issued.body.tokens.find((x: { jti: string }) => x.jti === c.jti)?.bound, 'dpop');
  });

  it('RFC 8705 §3: a certificate from an untrusted CA binds nothing (handshake succeeds, authorized=false); a binding-required profile refuses', async () => {
    const r = await clientCredentials(withRogueCert);
    assert.equal(r.status, 400, 'the TLS handshake succeeded (client_auth optional) and the broker answered');
    assert.equal(r.body.error, 'invalid_request');
    assert.match(r.body.error_description, /sender-constrained|DPoP|mTLS/);
    // The same request with a DPoP proof succeeds, bound to the DPoP key only.
    const key = await dpopKey();
    const ok = await clientCredentials(withRogueCert, { dpop: await dpopProof(key, 'POST', ep) });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.deepEqual(decodeJwt(ok.body.access_token).cnf, { jkt: key.jkt });
  });

  it('RFC 8705 §3: no client certificate and no DPoP proof → a binding-required profile refuses', async () => {
    const r = await clientCredentials(noCert);
    assert.equal(r.status, 400);
    assert.equal(r.body.error, 'invalid_request');
  });

  it('RFC 8705 §3.3 / §5: metadata advertises certificate-bound tokens and the mTLS endpoint aliases', async () => {
    const res = await fetch(`${t.url}/.well-known/oauth-authorization-server`, { dispatcher: noCert });
    assert.equal(res.status, 200);
    const m = (await res.json()) as Record<string, any>;
    assert.equal(m.issuer, t.app.issuer);
    assert.equal(m.tls_client_certificate_bound_access_tokens, true);
    assert.ok(!(m.token_endpoint_auth_methods_supported as string[]).includes('tls_client_auth'), 'RFC 8705 §2 client auth is not implemented, so not advertised');
    assert.deepEqual(m.mtls_endpoint_aliases, {
      token_endpoint: `${t.app.issuer}/oauth/token`,
      revocation_endpoint: `${t.app.issuer}/oauth/revoke`,
      introspection_endpoint: `${t.app.issuer}/oauth/introspect`,
    });
  });

  it(
    'RFC 8705 §3 / RFC 8693: a certificate-bound token cannot be exchanged without presenting that certificate',
    async () => {
      const bound = await clientCredentials(withCert);
      assert.equal(bound.status, 200, JSON.stringify(bound.body));
      // Someone holding the token but not the certificate's key: no client cert, their own DPoP key.
      const thief = await dpopKey();
      const r = await tokenRequest(t.url, noCert, {
        grant_type: EXCHANGE, subject_token: bound.body.access_token, subject_token_type: AT_TYPE, scope: 'list_tickets', resource,
      }, { dpop: await dpopProof(thief, 'POST', ep) });
      assert.equal(r.status, 400, `exchange without the bound certificate was accepted: ${JSON.stringify(r.body)}`);
      // RFC 8693 §2.2.2: an unacceptable subject token is invalid_request.
      assert.equal(r.body.error, 'invalid_request');
    },
  );
});

describe('RFC 8705 + RFC 8693: a certificate-bound actor token', () => {
  let pki: TestPki;
  let t: TestApp;
  let deployer: Client;
  let orchestrator: Client;
  let withCert: Agent;
  let noCert: Agent;
  let ep: string;
  let resource: string;

  before(async () => {
    pki = generateTestPki();
    deployer = await client('deployer');
    orchestrator = await client('orchestrator');
    t = await startTestApp(undefined, {
      server: { host: '127.0.0.1', tls: { cert: pki.server.certPath, key: `file:${pki.server.keyPath}`, client_ca: pki.ca.certPath, client_auth: 'optional' } },
      nhis: [
        { id: 'deployer', class: 'agent', owner: 'o@example.com', system: 's', tier: 'write', may_act: ['orchestrator'], credentials: [{ type: 'private_key_jwt', jwks: { keys: [deployer.publicJwk as Record<string, unknown>] } }] },
        { id: 'orchestrator', class: 'agent', owner: 'o@example.com', system: 's', tier: 'write', credentials: [{ type: 'private_key_jwt', jwks: { keys: [orchestrator.publicJwk as Record<string, unknown>] } }] },
      ],
      tools: [{ id: 'tickets', kind: 'http', upstream: 'http://127.0.0.1:9', actions: [{ name: 'list_tickets', method: 'GET', path: '/tickets', tier: 'read' }] }],
      grants: [{ nhi: 'deployer', tool: 'tickets', actions: ['list_tickets'] }, { nhi: 'orchestrator', tool: 'tickets', actions: ['list_tickets'] }],
    });
    withCert = new Agent({ connect: { ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key } });
    noCert = new Agent({ connect: { ca: pki.ca.cert } });
    ep = `${t.app.issuer}/oauth/token`;
    resource = `${t.app.issuer}/tools/tickets`;
  });
  after(async () => {
    await Promise.all([withCert?.close(), noCert?.close()]);
    await t?.app.close();
    pki?.cleanup();
  });

  it('issue 15: accepted only over the actor\'s certificate, and the delegated token is bound to it; a copy presented without it is refused', async () => {
    const subjectKey = await dpopKey();
    const subject = await tokenRequest(t.url, noCert, {
      grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: await assertion(deployer, ep), scope: 'list_tickets', resource,
    }, { dpop: await dpopProof(subjectKey, 'POST', ep) });
    assert.equal(subject.status, 200, JSON.stringify(subject.body));
    const actor = await tokenRequest(t.url, withCert, {
      grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: await assertion(orchestrator, ep), scope: 'list_tickets', resource,
    });
    assert.equal(actor.status, 200, JSON.stringify(actor.body));
    assert.deepEqual(decodeJwt(actor.body.access_token).cnf, { 'x5t#S256': x5tS256(pki.client.cert) });
    const form = { grant_type: EXCHANGE, subject_token: subject.body.access_token, subject_token_type: AT_TYPE, actor_token: actor.body.access_token, actor_token_type: AT_TYPE, scope: 'list_tickets', resource };
    // The copy, without the certificate: with the subject's own DPoP key, or none.
    const copied = await tokenRequest(t.url, noCert, form, { dpop: await dpopProof(subjectKey, 'POST', ep) });
    assert.equal(copied.status, 400, JSON.stringify(copied.body));
    assert.equal(copied.body.error, 'invalid_request');
    assert.match(copied.body.error_description, /actor_token .*certificate-bound/);
    const ok = await tokenRequest(t.url, withCert, form);
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    const c = decodeJwt(ok.body.access_token);
    assert.deepEqual(c.act, { sub: 'orchestrator', mandate_jti: decodeJwt(actor.body.access_token).jti });
    assert.deepEqual(c.cnf, { 'x5t#S256': x5tS256(pki.client.cert) });
  });
});

describe('RFC 8705 metadata without TLS', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t?.app.close());

  it('a plain-HTTP instance does not advertise certificate-bound tokens', async () => {
    const res = await fetch(`${t.url}/.well-known/oauth-authorization-server`);
    assert.equal(res.status, 200);
    const m = (await res.json()) as Record<string, unknown>;
    assert.ok(t.url.startsWith('http://'));
    assert.equal('tls_client_certificate_bound_access_tokens' in m, false);
    assert.equal('mtls_endpoint_aliases' in m, false);
    assert.ok(!(m.token_endpoint_auth_methods_supported as string[]).includes('tls_client_auth'));
  });
});
