import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { CompactSign, SignJWT, compactVerify, exportJWK, generateKeyPair, importJWK, decodeJwt, type CryptoKey, type JWK } from 'jose';
import { MandateClient } from '../../src/client/index.js';
import { ManualClock } from '../../src/core/index.js';
import { ReplayBatcher } from '../../src/jose/replay-batcher.js';
import { IssuedTokenWriter } from '../../src/broker/issued-tokens.js';
import { importPublicKey, signCompactAsync, verifyCompactAsync } from '../../src/jose/jws.js';
import { keyFitsAlg, parseCompactJws, publicJwkOf } from '../../src/jose/dpop.js';
import { silentLogger } from '../../src/core/index.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { startApp, type App } from '../../src/app.js';
import { buildConfig } from '../../src/core/index.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, type TestServer } from '../helpers/issuer.js';
import { STORE_DIALECTS } from '../helpers/stores.js';
import { LOOPBACK_CIDRS } from '../helpers/outbound.js';

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

async function keyPair(alg: string, kid: string): Promise<{ privateKey: CryptoKey; privateJwk: JWK; publicJwk: JWK }> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return {
    privateKey,
    privateJwk: { ...(await exportJWK(privateKey)), kid, alg },
    publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' },
  };
}

async function form(url: string, params: Record<string, string>, headers: Record<string, string> = {}) {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body: new URLSearchParams(params) });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown> };
}

describe('private_key_jwt clients with a jwks_uri', () => {
  let app: App;
  let dataDir: string;
  let jwks: TestServer;
  let published: JWK[] = [];
  let k1: Awaited<ReturnType<typeof keyPair>>;
  let k2: Awaited<ReturnType<typeof keyPair>>;
  let dpop: { privateKey: CryptoKey; jwk: JWK };
  // The app's clock: the JWKS refetch cooldown (30 s) is crossed by advancing it.
  const clock = new ManualClock(Date.now());

  before(async () => {
    k1 = await keyPair('ES256', 'uri-k1');
    k2 = await keyPair('ES256', 'uri-k2');
    const d = await generateKeyPair('ES256');
    dpop = { privateKey: d.privateKey, jwk: await exportJWK(d.publicKey) };
    published = [k1.publicJwk];
    jwks = await startServer((_req, res) => {
      const text = JSON.stringify({ keys: published });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
    });
    dataDir = mkdtempSync(join(tmpdir(), 'mandate-test-'));
    const config = buildConfig({
      server: { port: 0 },
      store: { driver: 'sqlite', sqlite_path: join(dataDir, 'mandate.db') },
      log: { level: 'silent' },
      outbound: { allow_private_cidrs: [...LOOPBACK_CIDRS] },
      nhis: [{ id: 'uri-agent', class: 'agent', owner: 'o@example.com', system: 's', tier: 'read', credentials: [{ type: 'private_key_jwt', jwks_uri: `${jwks.url}/jwks.json` }] }],
      tools: [{ id: 'tickets', kind: 'http', upstream: 'http://127.0.0.1:9', actions: [{ name: 'list_tickets', method: 'GET', path: '/tickets', tier: 'read' }] }],
      grants: [{ nhi: 'uri-agent', tool: 'tickets', actions: ['list_tickets'] }],
    }, { env: {} });
    app = await startApp({ config, env: {}, dataDir, clock, logger: silentLogger(), onBootstrapCredential: () => {} });
  });
  after(async () => {
    await app?.close();
    await jwks?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  async function assertion(key: CryptoKey, kid: string): Promise<string> {
    const now = Math.floor(clock.now() / 1000);
    return new SignJWT({ iss: 'uri-agent', sub: 'uri-agent', aud: `${app.issuer}/oauth/token`, jti: randomUUID(), iat: now, exp: now + 60 })
      .setProtectedHeader({ alg: 'ES256', kid })
      .sign(key);
  }
  const request = async (a: string) => form(`${app.issuer}/oauth/token`, {
    grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: a, resource: `${app.issuer}/tools/tickets`, scope: 'list_tickets',
  }, {
    dpop: await new SignJWT({ jti: randomUUID(), htm: 'POST', htu: `${app.issuer}/oauth/token`, iat: Math.floor(clock.now() / 1000) })
      .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: dpop.jwk }).sign(dpop.privateKey),
  });

  it('RFC 7523 §3: an assertion signed with a key from the client\'s jwks_uri authenticates; the document is fetched once', async () => {
    const r = await request(await assertion(k1.privateKey, 'uri-k1'));
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(decodeJwt(r.body.access_token as string).sub, 'uri-agent');
    const r2 = await request(await assertion(k1.privateKey, 'uri-k1'));
    assert.equal(r2.status, 200);
    assert.equal(jwks.hits.length, 1, 'keys are cached per (jwks_uri, kid)');
  });

  it('a key the client does not publish is refused', async () => {
    const other = await keyPair('ES256', 'uri-k1');
    const bad = await request(await assertion(other.privateKey, 'uri-k1'));
    assert.equal(bad.status, 401);
    assert.equal(bad.body.error, 'invalid_client');
  });

  it('an unknown kid refetches the document at most once per cooldown (rotation)', async () => {
    published = [k1.publicJwk, k2.publicJwk];
    const before = jwks.hits.length;
    // Within the cooldown of the first fetch: no refetch, refused.
    const early = await request(await assertion(k2.privateKey, 'uri-k2'));
    assert.equal(early.status, 401);
    assert.equal(jwks.hits.length, before);
    clock.advance(31_000);
    const r = await request(await assertion(k2.privateKey, 'uri-k2'));
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(jwks.hits.length, before + 1, 'one refetch for the new kid');
    for (const kid of ['no-such-kid', 'no-such-kid-2']) {
      const unknown = await request(await assertion(k2.privateKey, kid));
      assert.equal(unknown.status, 401);
    }
    assert.equal(jwks.hits.length, before + 1, 'unknown kids within the cooldown do not refetch');
  });

  it('the assertion is single use (RFC 7523 §3 item 7)', async () => {
    const a = await assertion(k1.privateKey, 'uri-k1');
    assert.equal((await request(a)).status, 200);
    const replay = await request(a);
    assert.equal(replay.status, 401);
    assert.match(String(replay.body.error_description), /already used/);
  });
});

describe('tokens.dpop_nonce: required (RFC 9449 §8)', () => {
  let t: TestApp;
  let privateJwk: JWK;

  before(async () => {
    const k = await keyPair('ES256', 'n1');
    privateJwk = k.privateJwk;
    t = await startTestApp(undefined, {
      tokens: { dpop_nonce: 'required' },
      nhis: [{ id: 'nonce-agent', class: 'agent', owner: 'o@example.com', system: 's', tier: 'read', credentials: [{ type: 'private_key_jwt', jwks: { keys: [k.publicJwk] } }] }],
      tools: [{ id: 'tickets', kind: 'http', upstream: 'http://127.0.0.1:9', actions: [{ name: 'list_tickets', method: 'GET', path: '/tickets', tier: 'read' }] }],
      grants: [{ nhi: 'nonce-agent', tool: 'tickets', actions: ['list_tickets'] }],
    });
  });
  after(() => t?.app.close());

  it('a proof without a nonce gets use_dpop_nonce with a DPoP-Nonce header; nothing new is advertised', async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    const jwk = await exportJWK(publicKey);
    const now = Math.floor(Date.now() / 1000);
    const proof = await new SignJWT({ jti: randomUUID(), htm: 'POST', htu: `${t.app.issuer}/oauth/token`, iat: now })
      .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk }).sign(privateKey);
    const r = await form(`${t.app.issuer}/oauth/token`, { grant_type: 'client_credentials' }, { dpop: proof });
    assert.equal(r.status, 400);
    assert.equal(r.body.error, 'use_dpop_nonce');
    assert.match(r.headers.get('dpop-nonce') ?? '', /^\d+\.[A-Za-z0-9_-]{43}$/);
    assert.match(r.headers.get('www-authenticate') ?? '', /use_dpop_nonce/);
    const meta = await (await fetch(`${t.app.issuer}/.well-known/oauth-authorization-server`)).json() as Record<string, unknown>;
    assert.equal(Object.keys(meta).some((k) => k.includes('nonce')), false);
  });

  it('the SDK retries with the nonce and gets a DPoP-bound token', async () => {
    const client = new MandateClient({ issuer: t.app.issuer, clientId: 'nonce-agent', auth: { type: 'private_key_jwt', privateJwk } });
    const tok = await client.getToken('tickets', ['list_tickets']);
    assert.equal(tok.tokenType, 'DPoP');
    assert.deepEqual(decodeJwt(tok.accessToken).cnf, { jkt: await (await client.dpopKey()).thumbprint() });
  });
});

for (const d of STORE_DIALECTS) {
  describe(`ReplayBatcher and IssuedTokenWriter on ${d.name}`, () => {
    it('RFC 9449 §11.1 across instances: 50 parallel reuses over two batchers on two Store instances, exactly one succeeds', async () => {
      const clock = new ManualClock(Date.now());
      const store = await d.open({ clock });
      const peer = await d.openPeer(store, { clock });
      try {
        const a = new ReplayBatcher({ store, clock });
        const b = new ReplayBatcher({ store: peer, clock });
        const key = randomUUID();
        const results = await Promise.all(Array.from({ length: 50 }, (_, i) => (i % 2 ? b : a).insertOnce('dpop', key, clock.now() + 60_000)));
        assert.equal(results.filter(Boolean).length, 1);
        // Many distinct keys in one batch: each is new once.
        const keys = Array.from({ length: 30 }, () => randomUUID());
        const first = await Promise.all(keys.map((k) => a.insertOnce('dpop', k, clock.now() + 60_000)));
        assert.ok(first.every(Boolean));
        const second = await Promise.all(keys.map((k) => b.insertOnce('dpop', k, clock.now() + 60_000)));
        assert.ok(second.every((x) => !x), 'the other instance sees them in the store');
        // Expired records may be taken over (the same rule as Store.insertOnce).
        clock.advance(61_000);
        assert.equal(await b.insertOnce('dpop', keys[0]!, clock.now() + 60_000), true);
      } finally {
        await peer.close();
        await store.close();
      }
    });

    it('issued-token records reach the store in batches; a retried batch is harmless', async () => {
      const store = await d.open();
      try {
        await store.upsertNhi({ id: 'n1', class: 'agent', owner: 'o', system: 's', environment: 'production', tier: 'read', status: 'active', description: null, mayAct: [], source: 'api', createdAt: 1, updatedAt: 1 } as never);
        const w = new IssuedTokenWriter({ store, logger: silentLogger(), flushIntervalMs: 10 });
        const rec = (jti: string) => ({ jti, nhiId: 'n1', audience: 'tickets', scope: ['list'], tier: 'read', clientId: 'n1', issuedAt: 1000, expiresAt: Date.now() + 60_000, cnfJkt: null, cnfX5t: null, act: null, runId: null, parentJti: null });
        for (let i = 0; i < 20; i++) w.record(rec(`at_${i}`));
        assert.equal(w.pending('at_3')?.jti, 'at_3');
        await w.flush();
        assert.equal(w.pending('at_3'), undefined);
        assert.equal((await store.listIssuedTokens({ nhiId: 'n1', limit: 100 })).length, 20);
        await store.recordIssuedTokens([rec('at_1'), rec('at_99')]);
        assert.equal((await store.listIssuedTokens({ nhiId: 'n1', limit: 100 })).length, 21);
        await w.close();
      } finally {
        await store.close();
      }
    });
  });
}

/**
 * The node:crypto verifier (jws.ts) against jose on the same tokens: every token jose refuses
 * (the RFC 8725 cases of federation.test.ts and signature tampering), the guard plus
 * verifyCompactAsync refuses too; what jose accepts, it accepts.
 */
describe('jws.ts verifies exactly what jose verifies', () => {
  const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

  async function ours(token: string, alg: string, jwk: JWK): Promise<boolean> {
    try {
      const { header } = parseCompactJws(token, 16 * 1024, (m) => new Error(m));
      if (header.alg !== alg || header.crit !== undefined) return false;
      const pub = publicJwkOf(jwk);
      if (!keyFitsAlg(pub, alg)) return false;
      return await verifyCompactAsync(token, alg, importPublicKey(pub, alg));
    } catch {
      return false;
    }
  }
  async function theirs(token: string, alg: string, jwk: JWK): Promise<boolean> {
    try {
      await compactVerify(token, await importJWK(jwk, alg), { algorithms: [alg] });
      return true;
    } catch {
      return false;
    }
  }

  for (const alg of ['ES256', 'ES384', 'EdDSA', 'RS256', 'PS256']) {
    it(`${alg}: the RFC 8725 cases and tampered signatures`, async () => {
      const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
      const jwk = await exportJWK(publicKey);
      const attacker = await generateKeyPair(alg, { extractable: true });
      const payload = { iss: 'https://issuer.example', sub: 'x', aud: 'mandate', exp: 9_999_999_999, jti: randomUUID() };
      const sign = (header: Record<string, unknown>, key: CryptoKey = privateKey, body: unknown = payload) =>
        new CompactSign(Buffer.from(JSON.stringify(body))).setProtectedHeader({ alg, ...header } as never).sign(key);
      const good = await sign({ kid: 'k' });
      const [h, p, s] = good.split('.') as [string, string, string];
      const sig = Buffer.from(s, 'base64url');
      const hmacWithPublicKey = async () => {
        const secret = Buffer.from(JSON.stringify(jwk));
        return new CompactSign(Buffer.from(JSON.stringify(payload))).setProtectedHeader({ alg: 'HS256' }).sign(secret);
      };
      const cases: Record<string, string> = {
        good,
        'alg none': `${b64({ alg: 'none' })}.${p}.`,
        'alg NoNe with the signature': `${b64({ alg: 'NoNe' })}.${p}.${s}`,
        'HS256 keyed with the public key (RFC 8725 §2.1)': await hmacWithPublicKey(),
        'another algorithm in the header': `${b64({ alg: alg === 'ES256' ? 'ES384' : 'ES256', kid: 'k' })}.${p}.${s}`,
        'embedded attacker jwk (RFC 7515 §4.1.3)': await sign({ jwk: await exportJWK(attacker.publicKey) }, attacker.privateKey),
        'jku / x5u with the attacker key (RFC 8725 §3.10)': await sign({ jku: 'https://evil.example/jwks', x5u: 'https://evil.example/c' }, attacker.privateKey),
        'crit naming an extension': await new CompactSign(Buffer.from(JSON.stringify(payload)))
          .setProtectedHeader({ alg, crit: ['x-ext'], 'x-ext': 1 } as never).sign(privateKey, { crit: { 'x-ext': true } }),
        'payload changed': `${h}.${b64({ ...payload, sub: 'admin' })}.${s}`,
        'header changed': `${b64({ alg, kid: 'other' })}.${p}.${s}`,
        'signature flipped bit': `${h}.${p}.${Buffer.from(sig.map((x, i) => (i === 5 ? x ^ 1 : x))).toString('base64url')}`,
        'signature truncated': `${h}.${p}.${sig.subarray(0, sig.length - 1).toString('base64url')}`,
        'signature extended': `${h}.${p}.${Buffer.concat([sig, Buffer.from([0])]).toString('base64url')}`,
        'signature empty': `${h}.${p}.`,
        'signature of zeros': `${h}.${p}.${Buffer.alloc(sig.length).toString('base64url')}`,
        'two parts': `${h}.${p}`,
        'four parts': `${good}.${s}`,
        'padded base64': `${h}=.${p}.${s}`,
        'duplicate header members': `${b64(`{"alg":"${alg}","alg":"${alg}"}`)}.${p}.${s}`,
        'wrong key': await sign({ kid: 'k' }, attacker.privateKey),
      };
      if (alg.startsWith('ES')) {
        // DER instead of R || S (RFC 7518 §3.4 requires the fixed-length form).
        const n = sig.length / 2;
        const int = (b: Buffer) => {
          let x = b;
          while (x.length > 1 && x[0] === 0 && !(x[1]! & 0x80)) x = x.subarray(1);
          if (x[0]! & 0x80) x = Buffer.concat([Buffer.from([0]), x]);
          return Buffer.concat([Buffer.from([2, x.length]), x]);
        };
        const body = Buffer.concat([int(sig.subarray(0, n)), int(sig.subarray(n))]);
        cases['DER-encoded ECDSA signature'] = `${h}.${p}.${Buffer.concat([Buffer.from([0x30, body.length]), body]).toString('base64url')}`;
      }
      for (const [name, token] of Object.entries(cases)) {
        const j = await theirs(token, alg, jwk);
        const o = await ours(token, alg, jwk);
        if (!j) assert.equal(o, false, `${alg} ${name}: jose refuses, so must we`);
        if (name === 'good') assert.equal(o, true, `${alg}: a good token verifies`);
        if (name === 'duplicate header members') assert.equal(o, false);
        else assert.equal(o, j, `${alg} ${name}: same answer as jose`);
      }
    });
  }

  for (const alg of ['ES256', 'ES384', 'EdDSA']) {
    it(`${alg}: signCompactAsync makes tokens jose verifies`, async () => {
      const { privateKey, publicKey } = alg === 'EdDSA'
        ? generateKeyPairSync('ed25519')
        : generateKeyPairSync('ec', { namedCurve: alg === 'ES256' ? 'prime256v1' : 'secp384r1' });
      const header = { typ: 'at+jwt', alg, kid: 'k1' };
      const payload = { sub: 'nhi', jti: randomUUID() };
      const token = await signCompactAsync(header, payload, alg, privateKey);
      const { payload: got, protectedHeader } = await compactVerify(token, publicKey, { algorithms: [alg] });
      assert.deepEqual(JSON.parse(Buffer.from(got).toString()), payload);
      assert.equal(protectedHeader.kid, 'k1');
      await assert.rejects(signCompactAsync(header, payload, 'HS256', privateKey), /not supported/);
    });
  }

  it('RSA keys below 2048 bits are refused (as jose refuses them)', async () => {
    const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const jwk = publicJwkOf(publicKey.export({ format: 'jwk' }));
    assert.throws(() => importPublicKey(jwk, 'RS256'), /2048/);
  });

  it('an EC point off the curve is refused at import', () => {
    const jwk = { kty: 'EC', crv: 'P-256', x: Buffer.alloc(32, 1).toString('base64url'), y: Buffer.alloc(32, 2).toString('base64url') } as JWK;
    assert.throws(() => importPublicKey(jwk, 'ES256'));
  });
});
