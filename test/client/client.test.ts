import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile, rename } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  EmbeddedJWK, calculateJwkThumbprint, decodeProtectedHeader, exportJWK, generateKeyPair, jwtVerify, type CryptoKey, type JWK,
} from 'jose';
import {
  AccessDeniedError, ApprovalRequiredError, ApprovalTimeoutError, BrokerError, DpopKey, MandateClient, MandateClientError, TokenRevokedError,
  argsDigest, githubActionsOidc, privateKeyClient, projectedTokenFile, staticJwt, waitForApproval,
} from '../../src/client/index.js';

const b64uSha256 = (s: string) => createHash('sha256').update(s).digest('base64url');

async function verifyProof(proof: string) {
  const header = decodeProtectedHeader(proof);
  const { payload } = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt' });
  return { header, payload: payload as Record<string, unknown> };
}

// ---------------------------------------------------------------------------- a small HTTP harness

interface Recorded {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

async function listen(handler: (req: Recorded, res: ServerResponse) => void | Promise<void>): Promise<{ server: Server; url: string; requests: Recorded[] }> {
  const requests: Recorded[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const rec = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      requests.push(rec);
      Promise.resolve(handler(rec, res)).catch((err: unknown) => {
        res.statusCode = 500;
        res.end(String(err));
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return { server, url: `http://127.0.0.1:${port}`, requests };
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

async function close(server: Server) {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
}

// ---------------------------------------------------------------------------- DPoP

describe('DpopKey', () => {
  it('signs proofs that verify with the embedded public JWK, with htm/htu/ath/iat/jti/nonce', async () => {
    const key = await DpopKey.generate();
    const before = Math.floor(Date.now() / 1000);
    const proof = await key.proof({ htm: 'post', htu: 'https://Broker.Example:443/tools/files/x?y=1#frag', accessToken: 'tok-123', nonce: 'n-1' });
    const { header, payload } = await verifyProof(proof);
    assert.equal(header.typ, 'dpop+jwt');
    assert.equal(header.alg, 'ES256');
    assert.ok(header.jwk);
    assert.equal(header.jwk.kty, 'EC');
    assert.equal(header.jwk.crv, 'P-256');
    assert.equal((header.jwk as Record<string, unknown>).d, undefined, 'no private member in the header');
    assert.equal(payload.htm, 'POST');
    assert.equal(payload.htu, 'https://broker.example/tools/files/x');
    assert.equal(payload.ath, b64uSha256('tok-123'));
    assert.equal(payload.nonce, 'n-1');
    assert.equal(typeof payload.jti, 'string');
    assert.ok((payload.jti as string).length >= 16);
    assert.ok(typeof payload.iat === 'number' && payload.iat >= before - 1 && payload.iat <= Math.floor(Date.now() / 1000) + 1);

    const second = await verifyProof(await key.proof({ htm: 'GET', htu: 'https://broker.example/a' }));
    assert.notEqual(second.payload.jti, payload.jti, 'a fresh jti per proof');
    assert.equal(second.payload.ath, undefined);
    assert.equal(second.payload.nonce, undefined);
  });

  it('thumbprint() is the RFC 7638 thumbprint of the header key', async () => {
    const key = await DpopKey.generate();
    const { header } = await verifyProof(await key.proof({ htm: 'GET', htu: 'https://x.example/' }));
    assert.equal(await key.thumbprint(), await calculateJwkThumbprint(header.jwk!, 'sha256'));
    assert.equal(await key.thumbprint(), await calculateJwkThumbprint(key.publicJwk as JWK));
    assert.equal(Object.keys(key.publicJwk).includes('d'), false);
  });

  it('supports EdDSA keys', async () => {
    const key = await DpopKey.generate({ alg: 'EdDSA' });
    const { header, payload } = await verifyProof(await key.proof({ htm: 'GET', htu: 'https://x.example/p' }));
    assert.equal(header.alg, 'EdDSA');
    assert.equal(header.jwk?.crv, 'Ed25519');
    assert.equal(payload.htu, 'https://x.example/p');
    assert.equal(await key.thumbprint(), await calculateJwkThumbprint(header.jwk!));
  });

  it('accepts an existing key pair', async () => {
    const pair = await generateKeyPair('ES256');
    const key = await DpopKey.fromKeyPair(pair);
    const { header } = await verifyProof(await key.proof({ htm: 'GET', htu: 'https://x.example/' }));
    assert.equal(await calculateJwkThumbprint(header.jwk!), await calculateJwkThumbprint(await exportJWK(pair.publicKey)));
  });
});

// ---------------------------------------------------------------------------- private_key_jwt

describe('privateKeyClient', () => {
  it('makes RFC 7523 client assertions: iss = sub = client_id, aud, exp ≤ 5 min, unique jti, verifiable', async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    const privateJwk = { ...(await exportJWK(privateKey)), kid: 'agent-1-key' };
    const client = privateKeyClient({ clientId: 'agent-1', privateJwk });
    assert.equal(client.clientId, 'agent-1');
    const aud = 'https://mandate.example';
    const a1 = await client.assertion(aud);
    const a2 = await client.assertion(aud);
    const v1 = await jwtVerify(a1, publicKey, { issuer: 'agent-1', subject: 'agent-1', audience: aud });
    const v2 = await jwtVerify(a2, publicKey, { issuer: 'agent-1', subject: 'agent-1', audience: aud });
    assert.equal(v1.protectedHeader.alg, 'ES256');
    assert.equal(v1.protectedHeader.kid, 'agent-1-key');
    for (const { payload } of [v1, v2]) {
      assert.ok(payload.exp! > payload.iat!);
      assert.ok(payload.exp! - payload.iat! <= 300);
      assert.ok(payload.exp! - Math.floor(Date.now() / 1000) <= 300);
    }
    assert.equal(typeof v1.payload.jti, 'string');
    assert.notEqual(v1.payload.jti, v2.payload.jti);
  });

  it('works from a CryptoKey and caps the lifetime at 5 minutes', async () => {
    const { privateKey, publicKey } = await generateKeyPair('EdDSA');
    const client = privateKeyClient({ clientId: 'agent-2', privateKey, lifetimeSeconds: 3600 });
    const { payload, protectedHeader } = await jwtVerify(await client.assertion('https://m.example/oauth/token'), publicKey, { audience: 'https://m.example/oauth/token' });
    assert.equal(protectedHeader.alg, 'EdDSA');
    assert.equal(payload.iss, 'agent-2');
    assert.equal(payload.sub, 'agent-2');
    assert.equal(payload.exp! - payload.iat!, 300);
  });

  it('refuses a public JWK', async () => {
    const { publicKey } = await generateKeyPair('ES256');
    const client = privateKeyClient({ clientId: 'x', privateJwk: await exportJWK(publicKey) });
    await assert.rejects(client.assertion('https://m.example'), (e: unknown) => e instanceof MandateClientError && e.code === 'ERR_CLIENT_CONFIG');
  });
});

// ---------------------------------------------------------------------------- argsDigest

describe('argsDigest', () => {
  it('is stable across key order at every depth and is base64url SHA-256 of the sorted JSON', () => {
    const a = argsDigest({ b: 1, a: { y: [1, { d: 2, c: 3 }], x: 'v' } });
    const b = argsDigest({ a: { x: 'v', y: [1, { c: 3, d: 2 }] }, b: 1 });
    assert.equal(a, b);
    assert.match(a, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(a, b64uSha256('{"a":{"x":"v","y":[1,{"c":3,"d":2}]},"b":1}'));
    assert.notEqual(a, argsDigest({ b: 2, a: { y: [1, { d: 2, c: 3 }], x: 'v' } }));
    assert.notEqual(argsDigest([1, 2]), argsDigest([2, 1]), 'array order matters');
    assert.equal(argsDigest({ a: 1, u: undefined }), argsDigest({ a: 1 }));
  });
});

// ---------------------------------------------------------------------------- workload sources

describe('workload sources', () => {
  it('githubActionsOidc requests the token with the bearer and the audience', async () => {
    const { server, url, requests } = await listen((req, res) => {
      const u = new URL(req.url, 'http://x');
      if (req.headers.authorization !== 'Bearer gh-request-token') return json(res, 401, { message: 'bad credentials' });
      if (u.searchParams.get('audience') !== 'https://mandate.example') return json(res, 400, { message: 'audience' });
      if (u.searchParams.get('api-version') !== '2.0') return json(res, 400, { message: 'api-version' });
      json(res, 200, { value: `header.${Buffer.from(JSON.stringify({ exp: Math.floor(Date.now() / 1000) + 600 })).toString('base64url')}.sig` });
    });
    try {
      const env = { ACTIONS_ID_TOKEN_REQUEST_URL: `${url}/token?api-version=2.0`, ACTIONS_ID_TOKEN_REQUEST_TOKEN: 'gh-request-token' };
      const src = githubActionsOidc({ audience: 'https://mandate.example', env });
      const t1 = await src.getToken();
      assert.match(t1, /^header\./);
      assert.equal(await src.getToken(), t1, 'reused while fresh');
      assert.equal(requests.length, 1);

      const wrong = githubActionsOidc({ audience: 'https://mandate.example', env: { ...env, ACTIONS_ID_TOKEN_REQUEST_TOKEN: 'nope' } });
      await assert.rejects(wrong.getToken(), (e: unknown) => e instanceof MandateClientError && e.code === 'ERR_WORKLOAD_TOKEN' && /401/.test(e.message));
    } finally {
      await close(server);
    }
  });

  it('githubActionsOidc says what to do when the env vars are missing', async () => {
    const src = githubActionsOidc({ audience: 'x', env: {} });
    await assert.rejects(src.getToken(), (e: unknown) => e instanceof MandateClientError && /id-token: write/.test(e.message));
  });

  it('projectedTokenFile re-reads the file after it changes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mandate-client-'));
    try {
      const path = join(dir, 'token');
      await writeFile(path, 'jwt-one\n');
      const src = projectedTokenFile(path);
      assert.equal(await src.getToken(), 'jwt-one');
      // The kubelet swaps the file atomically.
      await writeFile(join(dir, 'token.new'), 'jwt-two');
      await rename(join(dir, 'token.new'), path);
      assert.equal(await src.getToken(), 'jwt-two');
      await writeFile(path, 'jwt-three');
      assert.equal(await src.getToken(), 'jwt-three');
      await assert.rejects(projectedTokenFile(join(dir, 'missing')).getToken(), (e: unknown) => e instanceof MandateClientError && e.code === 'ERR_WORKLOAD_TOKEN');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('staticJwt hands the JWT back and refuses non-JWTs', async () => {
    assert.equal(await staticJwt('a.b.c').getToken(), 'a.b.c');
    assert.throws(() => staticJwt('nope'), MandateClientError);
  });
});

// ---------------------------------------------------------------------------- MandateClient against a local OAuth server

/**
 * A tiny broker + proxy stand-in: RFC 8414 metadata, a token endpoint that demands a DPoP
 * nonce first and checks the proof and the client assertion, and `/tools/files/...` that checks
 * the DPoP-bound token and demands its own nonce first.
 */
class FakeBroker {
  server!: Server;
  issuer!: string;
  requests: Recorded[] = [];
  tokenRequests: URLSearchParams[] = [];
  tokenNonce = 'broker-nonce-1';
  proxyNonce = 'proxy-nonce-1';
  expiresIn = 300;
  /** access token → { jkt, tool } */
  issued = new Map<string, { jkt: string; tool: string }>();
  refused = new Set<string>();
  revoked = new Set<string>();
  approvals = new Map<string, 'pending' | 'approved' | 'denied'>();
  upstreamCalls: { method: string; url: string; body: string }[] = [];
  clientPublicKey!: CryptoKey;

  async start(clientPublicKey: CryptoKey) {
    this.clientPublicKey = clientPublicKey;
    const { server, url, requests } = await listen((req, res) => this.handle(req, res));
    this.server = server;
    this.issuer = url;
    this.requests = requests;
  }

  private async handle(req: Recorded, res: ServerResponse) {
    const u = new URL(req.url, this.issuer);
    if (req.method === 'GET' && u.pathname === '/.well-known/oauth-authorization-server') {
      return json(res, 200, { issuer: this.issuer, token_endpoint: `${this.issuer}/oauth/token`, jwks_uri: `${this.issuer}/oauth/jwks` });
    }
    if (req.method === 'POST' && u.pathname === '/oauth/token') return this.token(req, res);
    if (u.pathname.startsWith('/tools/files/') || u.pathname === '/tools/files') return this.tool(req, res, u);
    json(res, 404, { error: 'not_found' });
  }

  private async token(req: Recorded, res: ServerResponse) {
    assert.equal(req.headers['content-type'], 'application/x-www-form-urlencoded');
    const form = new URLSearchParams(req.body);
    this.tokenRequests.push(form);
    const proofHeader = req.headers.dpop;
    if (typeof proofHeader !== 'string') return json(res, 400, { error: 'invalid_dpop_proof', error_description: 'missing' });
    const { header, payload } = await verifyProof(proofHeader);
    if (payload.htm !== 'POST' || payload.htu !== `${this.issuer}/oauth/token`) return json(res, 400, { error: 'invalid_dpop_proof', error_description: 'htm/htu' });
    if (payload.nonce !== this.tokenNonce) {
      return json(res, 400, { error: 'use_dpop_nonce', error_description: 'nonce required' }, { 'dpop-nonce': this.tokenNonce });
    }
    const grant = form.get('grant_type');
    if (grant === 'client_credentials') {
      if (form.get('client_assertion_type') !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer') return json(res, 401, { error: 'invalid_client' });
      try {
        await jwtVerify(form.get('client_assertion')!, this.clientPublicKey, { issuer: 'agent-1', subject: 'agent-1', audience: this.issuer });
      } catch {
        return json(res, 401, { error: 'invalid_client', error_description: 'bad assertion' });
      }
    } else if (grant === 'urn:ietf:params:oauth:grant-type:token-exchange') {
      if (form.get('subject_token') !== 'wl.jwt.token' || form.get('subject_token_type') !== 'urn:ietf:params:oauth:token-type:jwt') {
        return json(res, 400, { error: 'invalid_grant' });
      }
    } else {
      return json(res, 400, { error: 'unsupported_grant_type' });
    }
    const resource = form.get('resource') ?? '';
    const tool = resource.startsWith(`${this.issuer}/tools/`) ? resource.slice(`${this.issuer}/tools/`.length) : '';
    if (!tool) return json(res, 400, { error: 'invalid_target' });
    const scope = form.get('scope') ?? '';
    if (tool === 'deploy') {
      const id = form.get('approval_id');
      if (!id) {
        const newId = `apr_${this.approvals.size + 1}`;
        this.approvals.set(newId, 'pending');
        return json(res, 400, {
          error: 'approval_required', error_description: 'a human must approve', approval_id: newId,
          approval_uri: `${this.issuer}/admin/v1/approvals/${newId}`, expires_in: 900,
        });
      }
      const st = this.approvals.get(id);
      if (st === 'pending') return json(res, 400, { error: 'authorization_pending', error_description: 'pending' });
      if (st === 'denied') return json(res, 403, { error: 'access_denied', error_description: 'the approval was denied' });
      if (st !== 'approved') return json(res, 400, { error: 'invalid_grant' });
    }
    const token = `at-${randomUUID()}`;
    this.issued.set(token, { jkt: await calculateJwkThumbprint(header.jwk!), tool });
    json(res, 200, { access_token: token, token_type: 'DPoP', expires_in: this.expiresIn, scope });
  }

  private async tool(req: Recorded, res: ServerResponse, u: URL) {
    const auth = req.headers.authorization ?? '';
    const m = /^DPoP (.+)$/.exec(auth);
    if (!m) return json(res, 401, { error: 'invalid_token' }, { 'www-authenticate': 'DPoP error="invalid_token", error_description="no DPoP token"' });
    const token = m[1]!;
    const { header, payload } = await verifyProof(req.headers.dpop as string);
    const rec = this.issued.get(token);
    if (!rec || this.refused.has(token)) {
      return json(res, 401, { error: 'invalid_token' }, { 'www-authenticate': 'DPoP error="invalid_token", error_description="token expired"' });
    }
    if (this.revoked.has(token)) {
      return json(res, 401, { error: 'invalid_token' }, { 'www-authenticate': 'DPoP error="invalid_token", error_description="the token was revoked"' });
    }
    assert.equal(await calculateJwkThumbprint(header.jwk!), rec.jkt, 'proof signed by the bound key');
    assert.equal(payload.ath, b64uSha256(token));
    assert.equal(payload.htm, req.method);
    assert.equal(payload.htu, `${this.issuer}${u.pathname}`);
    if (payload.nonce !== this.proxyNonce) {
      return json(res, 401, { error: 'use_dpop_nonce' }, { 'dpop-nonce': this.proxyNonce, 'www-authenticate': 'DPoP error="use_dpop_nonce", error_description="nonce"' });
    }
    this.upstreamCalls.push({ method: req.method, url: req.url, body: req.body });
    json(res, 200, { ok: true, path: u.pathname, query: u.search });
  }
}

describe('MandateClient', () => {
  const fake = new FakeBroker();
  let privateJwk: JWK;

  before(async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    privateJwk = { ...(await exportJWK(privateKey)), kid: 'agent-1-k1' };
    await fake.start(publicKey);
  });
  after(async () => {
    await close(fake.server);
  });

  const tokenPosts = () => fake.requests.filter((r) => r.url === '/oauth/token').length;
  const metadataGets = () => fake.requests.filter((r) => r.url === '/.well-known/oauth-authorization-server').length;

  it('getToken discovers the endpoint, retries with the DPoP nonce, binds to the key and caches', async () => {
    const dpop = await DpopKey.generate();
    const client = new MandateClient({ issuer: `${fake.issuer}/`, clientId: 'agent-1', auth: { type: 'private_key_jwt', privateJwk }, dpop });
    const posts0 = tokenPosts();
    const t = await client.getToken('files', ['write', 'read', 'read']);
    assert.equal(tokenPosts() - posts0, 2, 'one use_dpop_nonce answer, one retry');
    const [first, retry] = fake.tokenRequests.slice(-2);
    assert.equal(first!.get('grant_type'), 'client_credentials');
    assert.equal(retry!.get('resource'), `${fake.issuer}/tools/files`);
    assert.equal(retry!.get('scope'), 'read write');
    assert.equal(retry!.get('client_id'), 'agent-1');
    assert.notEqual(first!.get('client_assertion'), retry!.get('client_assertion'), 'a fresh assertion (jti) for the retry');
    assert.equal(t.tokenType, 'DPoP');
    assert.equal(t.scope, 'read write');
    assert.ok(t.expiresAt > Date.now() + 290_000 && t.expiresAt <= Date.now() + 300_000);
    assert.equal(fake.issued.get(t.accessToken)?.jkt, await dpop.thumbprint());

    const again = await client.getToken('files', ['read', 'write']);
    assert.equal(again.accessToken, t.accessToken);
    assert.equal(tokenPosts() - posts0, 2, 'served from the cache');
    assert.equal(metadataGets(), 1, 'metadata fetched once');

    const other = await client.getToken('files', ['read']);
    assert.notEqual(other.accessToken, t.accessToken, 'another scope is another token');
    assert.equal(tokenPosts() - posts0, 3, 'the remembered nonce is used straight away');
    const digest = argsDigest({ path: '/x' });
    await client.getToken('files', ['read'], { argsDigest: digest, runId: 'run-7' });
    assert.equal(tokenPosts() - posts0, 4, 'other arguments are another token');
    assert.equal(fake.tokenRequests.at(-1)!.get('args_digest'), digest);
    assert.equal(fake.tokenRequests.at(-1)!.get('run_id'), 'run-7');
  });

  it('refreshes a token when it nears expiry', async () => {
    let now = Date.now();
    const clock = { now: () => now };
    fake.expiresIn = 10;
    try {
      const client = new MandateClient({ issuer: fake.issuer, clientId: 'agent-1', auth: { type: 'private_key_jwt', privateJwk }, clock });
      const t1 = await client.getToken('files', ['read']);
      const posts = tokenPosts();
      now += 4000; // 6 s of 10 left: still fresh
      assert.equal((await client.getToken('files', ['read'])).accessToken, t1.accessToken);
      assert.equal(tokenPosts(), posts);
      now += 2000; // 4 s left (< half of its life): refresh
      const t2 = await client.getToken('files', ['read']);
      assert.notEqual(t2.accessToken, t1.accessToken);
      assert.equal(tokenPosts(), posts + 1);
      assert.ok(t2.expiresAt > t1.expiresAt);
    } finally {
      fake.expiresIn = 300;
    }
  });

  it('concurrent calls for the same token share one request', async () => {
    const client = new MandateClient({ issuer: fake.issuer, clientId: 'agent-1', auth: { type: 'private_key_jwt', privateJwk } });
    const [a, b, c] = await Promise.all([client.getToken('files', ['read']), client.getToken('files', ['read']), client.getToken('files', ['read'])]);
    assert.equal(a.accessToken, b.accessToken);
    assert.equal(b.accessToken, c.accessToken);
  });

  it('exchanges a workload token (RFC 8693)', async () => {
    const client = new MandateClient({ issuer: fake.issuer, auth: { type: 'workload', source: staticJwt('wl.jwt.token') } });
    const t = await client.getToken('files', ['read'], { actorToken: 'h.e.s' });
    assert.ok(t.accessToken.startsWith('at-'));
    const form = fake.tokenRequests.at(-1)!;
    assert.equal(form.get('grant_type'), 'urn:ietf:params:oauth:grant-type:token-exchange');
    assert.equal(form.get('subject_token'), 'wl.jwt.token');
    assert.equal(form.get('client_assertion'), null);
    assert.equal(form.get('actor_token'), 'h.e.s');
    assert.equal(form.get('actor_token_type'), 'urn:ietf:params:oauth:token-type:jwt');
  });

  it('approval_required → ApprovalRequiredError; pending, then approved with waitForApproval; denied → AccessDeniedError', async () => {
    const client = new MandateClient({ issuer: fake.issuer, clientId: 'agent-1', auth: { type: 'private_key_jwt', privateJwk } });
    const argsDigest = client.argsDigest({ target: 'prod' });
    const err = await client.getToken('deploy', ['apply'], { argsDigest }).then(() => assert.fail('should need approval'), (e: unknown) => e);
    assert.ok(err instanceof ApprovalRequiredError);
    assert.ok(err instanceof BrokerError);
    assert.equal(err.code, 'ERR_OAUTH_APPROVAL_REQUIRED');
    assert.match(err.approvalId, /^apr_/);
    assert.equal(err.approvalUri, `${fake.issuer}/admin/v1/approvals/${err.approvalId}`);
    assert.equal(err.expiresIn, 900);
    assert.equal(err.status, 400);

    setTimeout(() => fake.approvals.set(err.approvalId, 'approved'), 120);
    const t = await waitForApproval(client, 'deploy', ['apply'], { approvalId: err.approvalId, argsDigest, intervalMs: 25, timeoutMs: 5000 });
    assert.ok(t.accessToken.startsWith('at-'));
    assert.equal(fake.tokenRequests.at(-1)!.get('approval_id'), err.approvalId);
    assert.ok(fake.tokenRequests.filter((f) => f.get('approval_id') === err.approvalId).length >= 2, 'polled while pending');

    const e2 = (await client.getToken('deploy', ['apply'], { argsDigest }).catch((e: unknown) => e)) as ApprovalRequiredError;
    fake.approvals.set(e2.approvalId, 'denied');
    await assert.rejects(client.waitForApproval('deploy', ['apply'], { approvalId: e2.approvalId, argsDigest, intervalMs: 10 }), AccessDeniedError);

    const e3 = (await client.getToken('deploy', ['apply'], { argsDigest }).catch((e: unknown) => e)) as ApprovalRequiredError;
    await assert.rejects(waitForApproval(client, 'deploy', ['apply'], { approvalId: e3.approvalId, argsDigest, intervalMs: 10, timeoutMs: 60 }), ApprovalTimeoutError);
  });

  it('issue 15: an approval is redeemed with the argument digest it was asked for; a malformed digest is refused before any request', async () => {
    const client = new MandateClient({ issuer: fake.issuer, clientId: 'agent-1', auth: { type: 'private_key_jwt', privateJwk } });
    const before = fake.tokenRequests.length;
    await assert.rejects(client.getToken('deploy', ['apply'], { approvalId: 'apr_x' }), (e: unknown) => e instanceof MandateClientError && e.code === 'ERR_CLIENT_ARGS' && /argsDigest/.test(e.message));
    await assert.rejects(waitForApproval(client, 'deploy', ['apply'], { approvalId: 'apr_x', intervalMs: 10 }), (e: unknown) => e instanceof MandateClientError && e.code === 'ERR_CLIENT_ARGS');
    await assert.rejects(client.getToken('deploy', ['apply'], { argsDigest: 'not-a-digest' }), (e: unknown) => e instanceof MandateClientError && e.code === 'ERR_CLIENT_ARGS');
    assert.equal(fake.tokenRequests.length, before, 'nothing was sent');
  });

  it('other OAuth errors are BrokerErrors with the wire error and status', async () => {
    const client = new MandateClient({ issuer: fake.issuer, auth: { type: 'workload', source: staticJwt('other.jwt.token') } });
    await assert.rejects(client.getToken('files', ['read']), (e: unknown) => e instanceof BrokerError && e.error === 'invalid_grant' && e.status === 400 && e.code === 'ERR_OAUTH_INVALID_GRANT');
  });

  it('fetch sends Authorization: DPoP and a proof with ath, and retries once on use_dpop_nonce', async () => {
    const dpop = await DpopKey.generate();
    const client = new MandateClient({ issuer: fake.issuer, clientId: 'agent-1', auth: { type: 'private_key_jwt', privateJwk }, dpop });
    const before = fake.requests.length;
    const res = await client.fetch('files', ['write'], '/docs/a.txt?version=2', { method: 'put', body: JSON.stringify({ text: 'hi' }), headers: { 'content-type': 'application/json' } });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { ok: true, path: '/tools/files/docs/a.txt', query: '?version=2' });
    const calls = fake.requests.slice(before).filter((r) => r.url.startsWith('/tools/'));
    assert.equal(calls.length, 2, 'one use_dpop_nonce answer, one retry');
    const token = (await client.getToken('files', ['write'])).accessToken;
    for (const c of calls) {
      assert.equal(c.headers.authorization, `DPoP ${token}`);
      assert.equal(c.body, '{"text":"hi"}', 'the body is sent again on the retry');
      assert.equal(c.headers['content-type'], 'application/json');
      const { payload, header } = await verifyProof(c.headers.dpop as string);
      assert.equal(payload.ath, b64uSha256(token));
      assert.equal(payload.htm, 'PUT');
      assert.equal(payload.htu, `${fake.issuer}/tools/files/docs/a.txt`);
      assert.equal(await calculateJwkThumbprint(header.jwk!), await dpop.thumbprint());
    }
    assert.equal((await verifyProof(calls[1]!.headers.dpop as string)).payload.nonce, fake.proxyNonce);

    // The nonce is remembered; absolute URLs under the tool work too.
    const n = fake.requests.length;
    const r2 = await client.fetch('files', ['write'], `${fake.issuer}/tools/files/b`);
    assert.equal(r2.status, 200);
    await r2.arrayBuffer();
    assert.equal(fake.requests.length - n, 1);
  });

  it('fetch retries once with a fresh token on invalid_token, and throws TokenRevokedError when revoked', async () => {
    const client = new MandateClient({ issuer: fake.issuer, clientId: 'agent-1', auth: { type: 'private_key_jwt', privateJwk } });
    const t1 = await client.getToken('files', ['read']);
    fake.refused.add(t1.accessToken);
    const res = await client.fetch('files', ['read'], 'x');
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    const t2 = await client.getToken('files', ['read']);
    assert.notEqual(t2.accessToken, t1.accessToken, 'the refused token left the cache');

    fake.revoked.add(t2.accessToken);
    await assert.rejects(client.fetch('files', ['read'], '/x'), (e: unknown) => e instanceof TokenRevokedError && e.status === 401 && /revoked/.test(e.message));
    const t3 = await client.getToken('files', ['read']);
    assert.notEqual(t3.accessToken, t2.accessToken, 'the revoked token left the cache');
  });

  it('fetch refuses to send a token outside the tool', async () => {
    const client = new MandateClient({ issuer: fake.issuer, clientId: 'agent-1', auth: { type: 'private_key_jwt', privateJwk } });
    const n = fake.requests.length;
    for (const input of ['/../other/x', '%2e%2e/other', 'https://evil.example/tools/files/x', `${fake.issuer}/tools/filesystem/x`, `${fake.issuer}/oauth/token`]) {
      await assert.rejects(client.fetch('files', ['read'], input), (e: unknown) => e instanceof MandateClientError && e.code === 'ERR_CLIENT_URL', input);
    }
    assert.equal(fake.requests.length, n, 'nothing was sent');
  });

  it('never puts tokens or keys in error messages', async () => {
    const client = new MandateClient({ issuer: fake.issuer, auth: { type: 'workload', source: staticJwt('secret.jwt.value') } });
    const e = (await client.getToken('files', ['read']).catch((x: unknown) => x)) as Error;
    assert.ok(e instanceof BrokerError);
    assert.ok(!JSON.stringify({ m: e.message, s: e.stack }).includes('secret.jwt.value'));
  });

  it('surfaces discovery problems as MandateClientError', async () => {
    const client = new MandateClient({ issuer: `${fake.issuer}/nowhere`, clientId: 'agent-1', auth: { type: 'private_key_jwt', privateJwk } });
    await assert.rejects(client.getToken('files', ['read']), (e: unknown) => e instanceof MandateClientError && e.code === 'ERR_DISCOVERY');
    assert.throws(() => new MandateClient({ issuer: fake.issuer, auth: { type: 'private_key_jwt', privateJwk } }), /clientId/);
  });
});
