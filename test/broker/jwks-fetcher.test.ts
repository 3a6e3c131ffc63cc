import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../src/core/clock.js';
import { JwksFetcher, JwksFetchError, type JwksFetchReason } from '../../src/jose/jwks-fetcher.js';
import { OutboundGuard } from '../../src/core/outbound.js';
import { startIssuer, startServer, type TestIssuer, type TestServer } from '../helpers/issuer.js';
import { devOutbound } from '../helpers/outbound.js';

async function refused(p: Promise<unknown>, reason: JwksFetchReason): Promise<JwksFetchError> {
  let caught: unknown;
  await p.then(
    () => assert.fail(`expected a JwksFetchError (${reason})`),
    (err: unknown) => {
      caught = err;
    },
  );
  assert.ok(caught instanceof JwksFetchError, `expected JwksFetchError, got ${String(caught)}`);
  assert.equal(caught.reason, reason, caught.message);
  return caught;
}

describe('JWKS fetcher', () => {
  let issuer: TestIssuer;
  const servers: TestServer[] = [];
  const serve = async (h: Parameters<typeof startServer>[0]) => {
    const s = await startServer(h);
    servers.push(s);
    return s;
  };

  before(async () => {
    issuer = await startIssuer();
  });
  after(async () => {
    await issuer.close();
    for (const s of servers) await s.close();
  });

  it('fetches and caches a key per (jwks_uri, kid) (RFC 7517 §5)', async () => {
    const f = new JwksFetcher({ outbound: devOutbound(), clock: new ManualClock() });
    const before = issuer.jwksFetches;
    const k1 = await f.getKey(issuer.jwksUri, { kid: issuer.keys.RS256.kid, alg: 'RS256' });
    const k2 = await f.getKey(issuer.jwksUri, { kid: issuer.keys.RS256.kid, alg: 'RS256' });
    const k3 = await f.getKey(issuer.jwksUri, { kid: issuer.keys.ES256.kid, alg: 'ES256' });
    assert.equal(k1, k2);
    assert.notEqual(k1, k3);
    assert.equal(issuer.jwksFetches - before, 1);
  });

  it('https only: http to a non-loopback host is refused, even in development', async () => {
    const f = new JwksFetcher({ outbound: devOutbound() });
    await refused(f.getKey('http://example.com/jwks', { kid: 'a', alg: 'RS256' }), 'insecure_url');
    await refused(f.getKey('http://10.0.0.1/jwks', { kid: 'a', alg: 'RS256' }), 'insecure_url');
    await refused(f.getKey('http://[::ffff:10.0.0.1]/jwks', { kid: 'a', alg: 'RS256' }), 'insecure_url');
    await refused(f.getKey('https://10.0.0.1/jwks', { kid: 'a', alg: 'RS256' }), 'forbidden_address');
    await refused(f.getKey('ftp://127.0.0.1/jwks', { kid: 'a', alg: 'RS256' }), 'insecure_url');
    await refused(f.getKey('https://user:pw@example.com/jwks', { kid: 'a', alg: 'RS256' }), 'insecure_url');
    await refused(f.discover('http://example.com'), 'insecure_url');
  });

  it('loopback http is allowed only in development, and loopback only through outbound.allow_private_cidrs', async () => {
    const before = issuer.jwksFetches;
    const strict = new JwksFetcher({ outbound: new OutboundGuard() });
    await refused(strict.getKey(issuer.jwksUri, { kid: issuer.keys.RS256.kid, alg: 'RS256' }), 'insecure_url');
    await refused(strict.discover(issuer.url), 'insecure_url');
    assert.equal(issuer.jwksFetches, before, 'nothing was fetched');
    const devWithoutAllowance = new JwksFetcher({ outbound: new OutboundGuard({ allowLoopbackHttp: true }) });
    await refused(devWithoutAllowance.getKey(issuer.jwksUri, { kid: issuer.keys.RS256.kid, alg: 'RS256' }), 'forbidden_address');
    assert.equal(issuer.jwksFetches, before, 'nothing was fetched');
    const dev = new JwksFetcher({ outbound: devOutbound() });
    assert.ok(await dev.getKey(issuer.jwksUri, { kid: issuer.keys.RS256.kid, alg: 'RS256' }));
    const port = new URL(issuer.url).port;
    assert.ok(await dev.getKey(`http://localhost:${port}/jwks`, { kid: issuer.keys.ES256.kid, alg: 'ES256' }));
  });

  it('size cap: a 1 MiB JWKS is refused (declared length and streamed without one)', async () => {
    const big = JSON.stringify({ keys: [{ kty: 'RSA', kid: 'x', n: 'A'.repeat(1024 * 1024), e: 'AQAB' }] });
    let streamedBytes = 0;
    const declared = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(big) }).end(big);
    });
    const streamed = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }); // chunked, no length
      const chunk = big.slice(0, 16 * 1024);
      const pump = () => {
        while (streamedBytes < 4 * 1024 * 1024) {
          streamedBytes += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      res.on('error', () => {});
      pump();
    });
    const f = new JwksFetcher({ outbound: devOutbound() });
    await refused(f.getKey(`${declared.url}/jwks`, { kid: 'x', alg: 'RS256' }), 'too_large');
    await refused(f.getKey(`${streamed.url}/jwks`, { kid: 'x', alg: 'RS256' }), 'too_large');
    assert.ok(streamedBytes < 4 * 1024 * 1024, 'the read stopped before the server finished');
  });

  it('timeout: a server that never answers is given up on', async () => {
    const silent = await serve(() => {
      /* never answers */
    });
    const f = new JwksFetcher({ outbound: devOutbound(), timeoutMs: 200 });
    const t0 = Date.now();
    await refused(f.getKey(`${silent.url}/jwks`, { kid: 'x', alg: 'RS256' }), 'timeout');
    assert.ok(Date.now() - t0 < 3000);
    assert.equal(silent.hits.length, 1);
  });

  it('redirects are never followed', async () => {
    const before = issuer.jwksFetches;
    const redirect = await serve((_req, res) => {
      res.writeHead(302, { location: issuer.jwksUri }).end();
    });
    const f = new JwksFetcher({ outbound: devOutbound() });
    await refused(f.getKey(`${redirect.url}/jwks`, { kid: issuer.keys.RS256.kid, alg: 'RS256' }), 'redirect');
    assert.equal(issuer.jwksFetches, before, 'the redirect target was not fetched');
  });

  it('the answer must be 200 application/json without duplicate members', async () => {
    const html = await serve((_req, res) => void res.writeHead(200, { 'content-type': 'text/html' }).end('{"keys":[]}'));
    const err500 = await serve((_req, res) => void res.writeHead(500, { 'content-type': 'application/json' }).end('{}'));
    const dup = await serve((_req, res) => void res.writeHead(200, { 'content-type': 'application/json' }).end('{"keys":[],"keys":[]}'));
    const f = new JwksFetcher({ outbound: devOutbound() });
    await refused(f.getKey(`${html.url}/jwks`, { kid: 'x', alg: 'RS256' }), 'content_type');
    await refused(f.getKey(`${err500.url}/jwks`, { kid: 'x', alg: 'RS256' }), 'http_status');
    await refused(f.getKey(`${dup.url}/jwks`, { kid: 'x', alg: 'RS256' }), 'invalid_json');
  });

  it('cooldown: 100 concurrent unknown kids on a cold cache cause one fetch', async () => {
    const f = new JwksFetcher({ outbound: devOutbound(), clock: new ManualClock() });
    const before = issuer.jwksFetches;
    const results = await Promise.allSettled(Array.from({ length: 100 }, (_, i) => f.getKey(issuer.jwksUri, { kid: `cold-${i}`, alg: 'RS256' })));
    assert.ok(results.every((r) => r.status === 'rejected' && (r.reason as JwksFetchError).reason === 'key_not_found'));
    assert.equal(issuer.jwksFetches - before, 1);
  });

  it('cooldown: 100 unknown kids cause at most one refetch; after the cooldown one more', async () => {
    const clock = new ManualClock();
    const f = new JwksFetcher({ outbound: devOutbound(), clock, refetchCooldownMs: 30_000 });
    await f.getKey(issuer.jwksUri, { kid: issuer.keys.RS256.kid, alg: 'RS256' });
    const before = issuer.jwksFetches;
    // Concurrently…
    const results = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => f.getKey(issuer.jwksUri, { kid: `random-${i}`, alg: 'RS256' })));
    // …and one after another.
    for (let i = 50; i < 100; i++) await refused(f.getKey(issuer.jwksUri, { kid: `random-${i}`, alg: 'RS256' }), 'key_not_found');
    assert.ok(results.every((r) => r.status === 'rejected' && (r.reason as JwksFetchError).reason === 'key_not_found'));
    assert.ok(issuer.jwksFetches - before <= 1, `fetched ${issuer.jwksFetches - before} times`);
    // Known kids are still served from the cache meanwhile.
    await f.getKey(issuer.jwksUri, { kid: issuer.keys.ES256.kid, alg: 'ES256' });
    assert.ok(issuer.jwksFetches - before <= 1);

    // The issuer rotates: the new kid is found by the first refetch after the cooldown.
    await issuer.rotate();
    await refused(f.getKey(issuer.jwksUri, { kid: issuer.keys.RS256.kid, alg: 'RS256' }), 'key_not_found');
    clock.advance(30_000);
    assert.ok(await f.getKey(issuer.jwksUri, { kid: issuer.keys.RS256.kid, alg: 'RS256' }));
    assert.ok(issuer.jwksFetches - before <= 2, `fetched ${issuer.jwksFetches - before} times`);
  });

  it('a document older than the TTL is fetched again; a removed key then stops working', async () => {
    const clock = new ManualClock();
    const f = new JwksFetcher({ outbound: devOutbound(), clock, cacheTtlMs: 60_000 });
    const old = issuer.keys.RS256;
    await f.getKey(issuer.jwksUri, { kid: old.kid, alg: 'RS256' });
    await issuer.rotate();
    assert.ok(await f.getKey(issuer.jwksUri, { kid: old.kid, alg: 'RS256' }), 'cached within the TTL');
    clock.advance(60_000);
    await refused(f.getKey(issuer.jwksUri, { kid: old.kid, alg: 'RS256' }), 'key_not_found');
  });

  it('RFC 8725 §3.1: symmetric (kty oct) keys in a JWKS are refused', async () => {
    issuer.extraKeys = [{ kty: 'oct', kid: 'hmac', k: Buffer.from('secret-secret-secret-secret-1234').toString('base64url') }];
    try {
      const f = new JwksFetcher({ outbound: devOutbound() });
      await refused(f.getKey(issuer.jwksUri, { kid: 'hmac', alg: 'RS256' }), 'symmetric_key');
      await refused(f.getKey(issuer.jwksUri, { kid: 'hmac', alg: 'HS256' }), 'unsupported_key');
    } finally {
      issuer.extraKeys = [];
    }
  });

  it("RFC 7517 §4.2/§4.4: a key's use must be sig and its alg the token's alg", async () => {
    const rsa = issuer.keys.RS256.publicJwk;
    issuer.extraKeys = [
      { ...rsa, kid: 'enc', use: 'enc' },
      { ...rsa, kid: 'ps', alg: 'PS256' },
      { ...rsa, kid: 'ops', key_ops: ['encrypt'] },
    ];
    try {
      const f = new JwksFetcher({ outbound: devOutbound() });
      await refused(f.getKey(issuer.jwksUri, { kid: 'enc', alg: 'RS256' }), 'key_use');
      await refused(f.getKey(issuer.jwksUri, { kid: 'ps', alg: 'RS256' }), 'alg_mismatch');
      await refused(f.getKey(issuer.jwksUri, { kid: 'ops', alg: 'RS256' }), 'key_use');
      // An RSA kid used with an EC algorithm.
      await refused(f.getKey(issuer.jwksUri, { kid: issuer.keys.RS256.kid, alg: 'ES256' }), 'alg_mismatch');
    } finally {
      issuer.extraKeys = [];
    }
  });

  it('without a kid: the only key that fits the alg, refused when several fit', async () => {
    const f = new JwksFetcher({ outbound: devOutbound() });
    assert.ok(await f.getKey(issuer.jwksUri, { alg: 'ES256' }));
    issuer.extraKeys = [{ ...issuer.keys.ES256.publicJwk, kid: 'second' }];
    try {
      const g = new JwksFetcher({ outbound: devOutbound() });
      await refused(g.getKey(issuer.jwksUri, { alg: 'ES256' }), 'ambiguous_key');
    } finally {
      issuer.extraKeys = [];
    }
  });

  it('OpenID Discovery §4: discover() returns jwks_uri and caches the document', async () => {
    const f = new JwksFetcher({ outbound: devOutbound(), clock: new ManualClock() });
    const before = issuer.discoveryFetches;
    assert.equal(await f.discover(issuer.url), issuer.jwksUri);
    assert.equal(await f.discover(issuer.url), issuer.jwksUri);
    assert.equal(issuer.discoveryFetches - before, 1);
  });

  it('OpenID Discovery §4.3: a discovery document naming another issuer is refused', async () => {
    issuer.discoveryOverride = { issuer: 'https://evil.example' };
    try {
      const f = new JwksFetcher({ outbound: devOutbound() });
      await refused(f.discover(issuer.url), 'issuer_mismatch');
      // A trailing-slash variant is another issuer too: comparison is exact.
      issuer.discoveryOverride = { issuer: `${issuer.url}/` };
      await refused(new JwksFetcher({ outbound: devOutbound() }).discover(issuer.url), 'issuer_mismatch');
      // jwks_uri from discovery passes the same URL guard.
      issuer.discoveryOverride = { jwks_uri: 'http://example.com/jwks' };
      await refused(new JwksFetcher({ outbound: devOutbound() }).discover(issuer.url), 'insecure_url');
    } finally {
      issuer.discoveryOverride = {};
    }
  });

  it('a failed fetch is remembered for the cooldown (no hammering a broken issuer)', async () => {
    let n = 0;
    const broken = await serve((_req, res) => {
      n++;
      res.writeHead(503).end();
    });
    const clock = new ManualClock();
    const f = new JwksFetcher({ outbound: devOutbound(), clock });
    for (let i = 0; i < 20; i++) await refused(f.getKey(`${broken.url}/jwks`, { kid: `k${i}`, alg: 'RS256' }), 'http_status');
    assert.equal(n, 1);
    clock.advance(30_000);
    await refused(f.getKey(`${broken.url}/jwks`, { kid: 'k', alg: 'RS256' }), 'http_status');
    assert.equal(n, 2);
  });
});
