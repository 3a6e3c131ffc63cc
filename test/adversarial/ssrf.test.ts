import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { SignJWT, generateKeyPair } from 'jose';
import {
  ConfigError, OutboundError, OutboundGuard, addressVerdict, allowListOf, buildConfig,
  type AddressKind, type HostResolver, type MandateConfigInput, type OutboundFailure,
} from '../../src/core/index.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { generateTestPki, type TestPki } from '../helpers/certs.js';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { LOOPBACK_CIDRS, devOutbound } from '../helpers/outbound.js';
import { waitFor } from '../signals/helpers.js';

/**
 * Server-side request forgery (issue 15, item 5): every URL Mandate fetches goes through one
 * guard (src/core/outbound.ts). The requests below are the ones an attacker who controls such
 * a URL (an SSF receiver configuring its push endpoint, a DNS zone, an issuer's discovery
 * document) would try. Every server here listens on 127.0.0.1; an address outside loopback is
 * only ever resolved and refused, never connected to.
 */

async function refused(p: Promise<unknown>, reason: OutboundFailure, what = ''): Promise<OutboundError> {
  let caught: unknown;
  await p.then(() => assert.fail(`expected a refusal (${reason}) ${what}`), (err: unknown) => {
    caught = err;
  });
  assert.ok(caught instanceof OutboundError, `expected OutboundError ${what}, got ${String(caught)}`);
  assert.equal(caught.reason, reason, `${what}: ${caught.message}`);
  return caught;
}

function refusedSync(fn: () => unknown, reason: OutboundFailure, what = ''): OutboundError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof OutboundError, `expected OutboundError ${what}, got ${String(err)}`);
    assert.equal(err.reason, reason, `${what}: ${err.message}`);
    return err;
  }
  return assert.fail(`expected a refusal (${reason}) ${what}`);
}

/** A resolver that answers from a table (a list per call: the n-th lookup of a name gets the n-th answer, the last one after that) and counts lookups. */
function scriptedResolver(table: Record<string, string[] | string[][]>): HostResolver & { calls: string[] } {
  const calls: string[] = [];
  const fn = async (host: string) => {
    calls.push(host);
    const entry = table[host];
    if (entry === undefined) throw Object.assign(new Error(`${host} not found`), { code: 'ENOTFOUND' });
    const n = calls.filter((h) => h === host).length - 1;
    const answers = Array.isArray(entry[0]) ? (entry as string[][])[Math.min(n, entry.length - 1)]! : (entry as string[]);
    return answers.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };
  return Object.assign(fn, { calls });
}

/** A server on 127.0.0.1 (http, or https with the test PKI's certificate for 127.0.0.1 and localhost) counting connections. */
interface LocalServer {
  url: string;
  port: number;
  connections: number;
  requests: Array<{ method: string; url: string; host: string | undefined; authorization: string | undefined; servername: string | undefined }>;
  close(): Promise<void>;
}

async function localServer(handler: (req: IncomingMessage, res: ServerResponse) => void, tls?: { cert: string; key: string }): Promise<LocalServer> {
  const state = { connections: 0, requests: [] as LocalServer['requests'] };
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    state.requests.push({
      method: req.method!, url: req.url!, host: req.headers.host, authorization: req.headers.authorization,
      servername: (req.socket as TLSSocket).servername || undefined,
    });
    handler(req, res);
  };
  const server: Server | HttpsServer = tls ? createHttpsServer({ cert: tls.cert, key: tls.key }, onRequest) : createServer(onRequest);
  server.on('connection', () => state.connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(state, {
    url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  });
}

const ok = (_req: IncomingMessage, res: ServerResponse) => void res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');

/** One address of each forbidden kind (RFC 6890 and friends), and the kind the guard must name. */
const FORBIDDEN: ReadonlyArray<readonly [string, AddressKind]> = [
  ['0.0.0.0', 'unspecified'], ['0.1.2.3', 'unspecified'],
  ['127.0.0.1', 'loopback'], ['127.255.255.254', 'loopback'],
  ['10.0.0.1', 'private'], ['172.16.0.1', 'private'], ['172.31.255.255', 'private'], ['192.168.1.1', 'private'],
  ['100.64.0.1', 'shared'], ['100.127.255.254', 'shared'],
  ['169.254.1.1', 'link_local'],
  ['169.254.169.254', 'metadata'], ['169.254.170.2', 'metadata'], ['100.100.100.200', 'metadata'], ['192.0.0.192', 'metadata'],
  ['224.0.0.1', 'multicast'], ['239.255.255.250', 'multicast'], ['255.255.255.255', 'broadcast'], ['240.0.0.1', 'reserved'],
  ['192.0.0.8', 'reserved'], ['192.88.99.1', 'reserved'],
  ['192.0.2.1', 'documentation'], ['198.51.100.7', 'documentation'], ['203.0.113.9', 'documentation'], ['198.18.0.1', 'benchmarking'], ['198.19.255.255', 'benchmarking'],
  ['::', 'unspecified'], ['::1', 'loopback'], ['fc00::1', 'private'], ['fd12:3456::1', 'private'], ['fe80::1', 'link_local'],
  ['fec0::1', 'private'], ['ff02::1', 'multicast'], ['fd00:ec2::254', 'metadata'],
  // IPv4 inside IPv6: mapped, NAT64, 6to4; the deprecated IPv4-compatible form and Teredo outright.
  ['::ffff:127.0.0.1', 'loopback'], ['::ffff:10.0.0.1', 'private'], ['::ffff:169.254.169.254', 'metadata'],
  ['64:ff9b::7f00:1', 'loopback'], ['64:ff9b::a9fe:a9fe', 'metadata'], ['64:ff9b:1::1', 'private'],
  ['2002:7f00:1::1', 'loopback'], ['2002:a00:1::', 'private'], ['::7f00:1', 'reserved'], ['2001::1', 'reserved'],
  ['2001:db8::1', 'documentation'], ['3fff::1', 'documentation'], ['2001:2::1', 'benchmarking'], ['100::1', 'reserved'], ['5f00::1', 'reserved'],
];

/** Public addresses, and their IPv4-in-IPv6 forms: allowed. `check` only (nothing connects to them). */
const PUBLIC = ['8.8.8.8', '1.1.1.1', '100.128.0.1', '172.32.0.1', '2606:4700:4700::1111', '::ffff:8.8.8.8', '64:ff9b::808:808', '2002:808:808::1'];

const bracket = (a: string) => (a.includes(':') ? `[${a}]` : a);

describe('SSRF: the outbound guard', () => {
  let pki: TestPki;
  before(() => {
    pki = generateTestPki();
  });
  after(() => pki.cleanup());

  it('every forbidden range is refused, as a literal and as the answer for a host name, and named', async () => {
    for (const [address, kind] of FORBIDDEN) {
      const resolver = scriptedResolver({ 'internal.example': [address] });
      const guard = new OutboundGuard({ resolve: resolver });
      const literal = await refused(guard.check(`https://${bracket(address)}/x`), 'forbidden_address', address);
      assert.equal(literal.kind, kind, address);
      assert.equal(resolver.calls.length, 0, 'a literal address is not resolved');
      const named = await refused(guard.check('https://internal.example/x'), 'forbidden_address', `internal.example → ${address}`);
      assert.equal(named.kind, kind, address);
      assert.doesNotMatch(named.message, new RegExp(address.replace(/[.:]/g, '\\$&')), 'the resolved address is not told to the caller');
    }
    for (const address of PUBLIC) {
      const guard = new OutboundGuard({ resolve: scriptedResolver({ 'public.example': [address] }) });
      assert.ok(await guard.check(`https://${bracket(address)}/x`), address);
      assert.deepEqual((await guard.check('https://public.example/x')).addresses, [address]);
    }
  });

  it('loopback is refused before any connection (a real https server on 127.0.0.1 sees none)', async () => {
    const server = await localServer(ok, pki.server);
    try {
      const guard = new OutboundGuard({ ca: pki.ca.cert });
      await refused(guard.request(`${server.url}/`, { maxBytes: 1024, timeoutMs: 2000 }), 'forbidden_address');
      await refused(guard.request(`https://localhost:${server.port}/`, { maxBytes: 1024, timeoutMs: 2000 }), 'forbidden_address');
      assert.equal(server.connections, 0);
      // The documented allowance opens it (and the certificate is verified for 127.0.0.1).
      const allowed = new OutboundGuard({ ca: pki.ca.cert, allowPrivateCidrs: ['127.0.0.1/32'] });
      assert.equal((await allowed.request(`${server.url}/`, { maxBytes: 1024, timeoutMs: 2000 })).status, 200);
    } finally {
      await server.close();
    }
  });

  it('encoded literal forms are normalized by WHATWG URL parsing, then refused; a zone id does not parse', async () => {
    const resolver = scriptedResolver({});
    const guard = new OutboundGuard({ resolve: resolver });
    for (const host of [
      '2130706433', '0177.0.0.1', '0x7f.1', '0x7f000001', '127.1', '127.0.1', '017700000001', '127.000.000.001', '0x7F.0.0.0x1',
      '%31%32%37.0.0.1', '127.0.0.1.', '①②⑦.0.0.1', '[::ffff:7f00:1]', '[0:0:0:0:0:ffff:127.0.0.1]', '[::ffff:127.0.0.1]',
      '[0000:0000:0000:0000:0000:0000:0000:0001]', '[::1]', '0', '0x0', '[64:ff9b::127.0.0.1]', '2852039166', '0xa9.0xfe.0xa9.0xfe', '169.254.43518',
    ]) {
      const err = refusedSync(() => guard.parse(`https://${host}:8443/x`), 'forbidden_address', host);
      assert.ok(err.kind !== undefined);
    }
    refusedSync(() => guard.parse('https://[::1%25eth0]/x'), 'invalid_url', 'zone id');
    refusedSync(() => guard.parse('https://[fe80::1%eth0]/x'), 'invalid_url', 'zone id');
    refusedSync(() => guard.parse('https://127.0.0.1 /x'), 'invalid_url', 'space');
    assert.equal(resolver.calls.length, 0, 'nothing was resolved');
  });

  it('a host name resolving to a private address is refused; one forbidden answer among public ones refuses it all', async () => {
    const resolver = scriptedResolver({
      'private.example': ['10.1.2.3'],
      'mixed.example': ['8.8.8.8', '10.0.0.1'],
      'mixed6.example': ['2606:4700:4700::1111', '::ffff:127.0.0.1'],
      'metadata.example': ['169.254.169.254'],
      'empty.example': [],
    });
    const guard = new OutboundGuard({ resolve: resolver });
    await refused(guard.check('https://private.example/'), 'forbidden_address');
    await refused(guard.check('https://mixed.example/'), 'forbidden_address');
    await refused(guard.check('https://mixed6.example/'), 'forbidden_address');
    await refused(guard.check('https://metadata.example/latest/meta-data/'), 'forbidden_address');
    await refused(guard.check('https://empty.example/'), 'unresolvable');
    await refused(guard.check('https://nowhere.example/'), 'unresolvable');
    // The system resolver: localhost is loopback, refused without the allowance.
    await refused(new OutboundGuard().check('https://localhost/'), 'forbidden_address');
  });

  it('DNS rebinding: the connection goes to the address that was checked; the resolver is asked once per request', async () => {
    const server = await localServer(ok, pki.server);
    try {
      // First answer allowed (127.0.0.1 is on the allow list), every later one private.
      const resolver = scriptedResolver({ localhost: [['127.0.0.1'], ['10.0.0.1']] });
      const guard = new OutboundGuard({ resolve: resolver, ca: pki.ca.cert, allowPrivateCidrs: ['127.0.0.1/32'] });
      const res = await guard.request(`https://localhost:${server.port}/rebind?q=1`, { maxBytes: 1024, timeoutMs: 5000 });
      assert.equal(res.status, 200);
      assert.equal(resolver.calls.length, 1, 'one lookup: undici connected to the checked address, never resolving again');
      assert.deepEqual(server.requests.at(-1), { method: 'GET', url: '/rebind?q=1', host: `localhost:${server.port}`, authorization: undefined, servername: 'localhost' });
      // The next request sees the rebound answer and is refused before connecting.
      const connections = server.connections;
      await refused(guard.request(`https://localhost:${server.port}/rebind`, { maxBytes: 1024, timeoutMs: 5000 }), 'forbidden_address');
      assert.equal(resolver.calls.length, 2);
      assert.equal(server.connections, connections, 'no connection after the rebinding');
    } finally {
      await server.close();
    }
  });

  it('several checked addresses: the next is tried only when one refuses the connection, and DNS is not asked again', async () => {
    const server = await localServer(ok);
    try {
      // Nothing listens on 127.0.0.3 at that port: refused, then 127.0.0.1 (both checked, both allowed).
      const resolver = scriptedResolver({ 'two.localhost': [['127.0.0.3', '127.0.0.1'], ['10.0.0.1']] });
      const guard = devOutbound({ resolve: resolver });
      assert.equal((await guard.request(`http://two.localhost:${server.port}/`, { maxBytes: 1024, timeoutMs: 5000 })).status, 200);
      assert.equal(resolver.calls.length, 1);
      assert.equal(server.requests[0]!.host, `two.localhost:${server.port}`);
    } finally {
      await server.close();
    }
  });

  it('TLS is verified for the host name of the URL, not for the pinned address', async () => {
    const server = await localServer(ok, pki.server);
    try {
      const resolver = scriptedResolver({ 'evil.example': ['127.0.0.1'] });
      const guard = new OutboundGuard({ resolve: resolver, ca: pki.ca.cert, allowPrivateCidrs: ['127.0.0.1/32'] });
      // The certificate names 127.0.0.1 and localhost, not evil.example.
      await refused(guard.request(`https://evil.example:${server.port}/`, { maxBytes: 1024, timeoutMs: 5000 }), 'tls');
      assert.equal(server.requests.length, 0, 'no request went out over the refused connection');
      // And a certificate the trust anchors do not know is refused (the system's anchors).
      await refused(new OutboundGuard({ allowPrivateCidrs: ['127.0.0.1/32'] }).request(`${server.url}/`, { maxBytes: 1024, timeoutMs: 5000 }), 'tls');
    } finally {
      await server.close();
    }
  });

  it('redirects are never followed: a 302 (or 301, 303, 307, 308) to loopback reaches nothing', async () => {
    const secret = await localServer((_req, res) => void res.writeHead(200).end('internal secret'));
    let status = 302;
    const redirector = await localServer((_req, res) => void res.writeHead(status, { location: `${secret.url}/admin` }).end('see other'));
    try {
      const guard = devOutbound();
      for (status of [301, 302, 303, 307, 308]) {
        const err = await refused(guard.request(`${redirector.url}/start`, { method: 'POST', body: '{}', maxBytes: 1024, timeoutMs: 2000 }), 'redirect', String(status));
        assert.equal(err.status, status);
        assert.doesNotMatch(err.message, /127\.0\.0\.1:\d+\/admin|see other/, 'nothing of the answer is in the error');
      }
      assert.equal(secret.connections, 0, 'the redirect target was never contacted');
    } finally {
      await Promise.all([secret.close(), redirector.close()]);
    }
  });

  it('size cap: an oversized answer is refused, declared or streamed, and the read stops', async () => {
    let streamed = 0;
    const declared = await localServer((_req, res) => void res.writeHead(200, { 'content-length': 1_000_000 }).end(Buffer.alloc(1_000_000)));
    const chunked = await localServer((_req, res) => {
      res.writeHead(200);
      res.on('error', () => {});
      const pump = () => {
        while (streamed < 64 * 1024 * 1024 && !res.destroyed) {
          streamed += 16 * 1024;
          if (!res.write(Buffer.alloc(16 * 1024))) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    });
    try {
      const guard = devOutbound();
      await refused(guard.request(`${declared.url}/`, { maxBytes: 64 * 1024, timeoutMs: 5000 }), 'too_large');
      await refused(guard.request(`${chunked.url}/`, { maxBytes: 64 * 1024, timeoutMs: 10_000 }), 'too_large');
      assert.ok(streamed < 64 * 1024 * 1024, 'the read stopped long before the server was done');
      assert.equal((await guard.request(`${declared.url}/`, { maxBytes: 1_000_000, timeoutMs: 5000 })).body.length, 1_000_000, 'at the cap it is read');
    } finally {
      await Promise.all([declared.close(), chunked.close()]);
    }
  });

  it('time cap: no headers, a body that never ends, and a resolver that never answers all end in timeout', async () => {
    const silent = await localServer(() => {
      /* never answers */
    });
    const dripping = await localServer((_req, res) => {
      res.writeHead(200);
      const t = setInterval(() => res.write('.'), 20);
      res.on('close', () => clearInterval(t));
    });
    try {
      const guard = devOutbound();
      await refused(guard.request(`${silent.url}/`, { maxBytes: 1024 * 1024, timeoutMs: 300 }), 'timeout');
      await refused(guard.request(`${dripping.url}/`, { maxBytes: 1024 * 1024, timeoutMs: 300 }), 'timeout', 'the deadline covers the body');
      const hanging = new OutboundGuard({ resolve: () => new Promise(() => {}) });
      await refused(hanging.request('https://slow-dns.example/', { maxBytes: 1024, timeoutMs: 200 }), 'timeout', 'the deadline covers DNS');
    } finally {
      await Promise.all([silent.close(), dripping.close()]);
    }
  });

  it('userinfo in a URL is refused before anything else', async () => {
    const resolver = scriptedResolver({ 'example.com': ['8.8.8.8'] });
    const guard = new OutboundGuard({ resolve: resolver });
    for (const url of ['https://user:pw@example.com/', 'https://user@example.com/', 'https://:pw@example.com/', 'https://%40:x@example.com/', 'https://a@127.0.0.1/']) {
      await refused(guard.check(url), 'userinfo', url);
    }
    assert.equal(resolver.calls.length, 0);
  });

  it('schemes: https only; file:, gopher:, ftp:, ws:, data: never; http only to loopback and only in development', async () => {
    const resolver = scriptedResolver({ 'example.com': ['8.8.8.8'], 'internal.localhost': ['127.0.0.1'], 'rebind.localhost': ['10.0.0.1'] });
    const prod = new OutboundGuard({ resolve: resolver, allowPrivateCidrs: LOOPBACK_CIDRS });
    const dev = new OutboundGuard({ resolve: resolver, allowPrivateCidrs: LOOPBACK_CIDRS, allowLoopbackHttp: true });
    for (const url of ['file:///etc/passwd', 'gopher://127.0.0.1:6379/_INFO', 'ftp://example.com/', 'ws://127.0.0.1/', 'wss://example.com/', 'data:text/plain,x', 'javascript:alert(1)', 'dict://127.0.0.1:11211/']) {
      await refused(dev.check(url), 'scheme', url);
      await refused(prod.check(url), 'scheme', url);
    }
    await refused(prod.check('http://127.0.0.1/'), 'scheme', 'production: no plain http at all');
    await refused(prod.check('http://localhost/'), 'scheme');
    await refused(dev.check('http://example.com/'), 'scheme', 'development: http to a public name');
    await refused(dev.check('http://8.8.8.8/'), 'scheme');
    await refused(dev.check('http://[::ffff:10.0.0.1]/'), 'scheme');
    await refused(dev.check('http://rebind.localhost/'), 'scheme', 'a .localhost name must resolve to loopback for http');
    assert.ok(await dev.check('http://127.0.0.1:8080/'));
    assert.ok(await dev.check('http://internal.localhost/'));
    assert.deepEqual(resolver.calls.filter((h) => h === 'example.com'), [], 'http to a public name is refused before DNS');
    // Development relaxes the scheme only: loopback itself still needs the allowance.
    await refused(new OutboundGuard({ allowLoopbackHttp: true }).check('http://127.0.0.1:8080/'), 'forbidden_address');
  });

  it('an allow-listed private CIDR passes, and only it; metadata, unspecified and multicast never do', async () => {
    const resolver = scriptedResolver({ 'idp.corp.example': ['10.20.1.1'], 'other.corp.example': ['10.21.0.1'] });
    const guard = new OutboundGuard({ resolve: resolver, allowPrivateCidrs: ['10.20.0.0/16', 'fd12:3456::/48', '169.254.0.0/16', '0.0.0.0/0', '::/0'] });
    assert.deepEqual((await guard.check('https://idp.corp.example/jwks')).addresses, ['10.20.1.1']);
    assert.ok(await guard.check('https://10.20.3.4/'));
    assert.ok(await guard.check('https://[fd12:3456::1]/'));
    assert.ok(await guard.check('https://169.254.1.1/'));
    const narrow = new OutboundGuard({ resolve: resolver, allowPrivateCidrs: ['10.20.0.0/16'] });
    await refused(narrow.check('https://other.corp.example/'), 'forbidden_address');
    await refused(narrow.check('https://10.21.0.1/'), 'forbidden_address');
    await refused(narrow.check('https://[::ffff:10.21.0.1]/'), 'forbidden_address');
    assert.ok(await narrow.check('https://[::ffff:10.20.0.1]/'), 'an IPv4 entry allows the IPv4-mapped form');
    for (const never of ['169.254.169.254', '100.100.100.200', '0.0.0.0', '224.0.0.1', '255.255.255.255', 'fd00:ec2::254', '::', 'ff02::1', '::ffff:169.254.169.254', '64:ff9b::a9fe:a9fe']) {
      await refused(guard.check(`https://${bracket(never)}/`), 'forbidden_address', never);
    }
    // An IPv6 entry never opens IPv4 (node:net's BlockList alone would let ::/0 cover every IPv4 address).
    await refused(new OutboundGuard({ allowPrivateCidrs: ['::/0'] }).check('https://10.0.0.1/'), 'forbidden_address');
    // And a real request through the allowance.
    const server = await localServer(ok);
    try {
      assert.equal((await devOutbound().request(`${server.url}/`, { maxBytes: 1024, timeoutMs: 2000 })).status, 200);
    } finally {
      await server.close();
    }
  });

  it('property: the verdict on any IPv4/IPv6 address equals an independent oracle (BigInt ranges), for any allow list', () => {
    fc.assert(
      fc.property(addressArb, allowArb, (address, allow) => {
        const got = addressVerdict(address, allowListOf(allow));
        const want = oracleVerdict(address, allow);
        assert.deepEqual({ kind: got.kind, allowed: got.allowed }, want, `${address} with allow ${JSON.stringify(allow)}`);
      }),
      { numRuns: 5000 },
    );
  });

  it('property: any odd IPv4 literal in a URL is judged as the address inet_aton reads (differential)', () => {
    const guard = new OutboundGuard({ resolve: () => Promise.reject(new Error('no DNS')) });
    fc.assert(
      fc.property(fc.oneof(fc.ipV4Extended(), specialV4Arb.map(formatV4)), (host) => {
        const value = inetAton(host);
        const want = oracleVerdict(formatV4(value), []);
        let refusedKind: AddressKind | undefined;
        try {
          guard.parse(`https://${host}/`);
        } catch (err) {
          assert.ok(err instanceof OutboundError && err.reason === 'forbidden_address', `${host}: ${String(err)}`);
          refusedKind = err.kind;
        }
        assert.equal(refusedKind, want.allowed ? undefined : want.kind, host);
      }),
      { numRuns: 3000 },
    );
  });
});

// ----------------------------------------------------------------- the oracle
// Written from the RFCs with BigInt arithmetic, sharing nothing with src/core/outbound.ts (which
// uses node:net's BlockList and WHATWG URL): a difference between the two is a bug in one.

type Range = { base: bigint; bits: number; width: 32 | 128; kind: AddressKind };
const never = new Set<AddressKind>(['unspecified', 'multicast', 'broadcast', 'metadata', 'scoped']);

function parseV4(s: string): bigint {
  const parts = s.split('.').map(Number);
  assert.equal(parts.length, 4, s);
  return parts.reduce((acc, p) => (acc << 8n) | BigInt(p), 0n);
}

function parseV6(s: string): bigint {
  let text = s;
  if (text.includes('.')) {
    // A trailing dotted quad is the last two groups (RFC 4291 §2.2 item 3).
    const cut = text.lastIndexOf(':') + 1;
    const v = parseV4(text.slice(cut));
    text = `${text.slice(0, cut)}${(v >> 16n).toString(16)}:${(v & 0xffffn).toString(16)}`;
  }
  const halves = text.split('::');
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves.length > 1 && halves[1] ? halves[1].split(':') : [];
  const groups = halves.length > 1 ? [...head, ...Array<string>(8 - head.length - tail.length).fill('0'), ...tail] : head;
  assert.equal(groups.length, 8, s);
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

function cidr(text: string, kind: AddressKind): Range {
  const [a, b] = text.split('/') as [string, string];
  const v6 = a.includes(':');
  return { base: v6 ? parseV6(a) : parseV4(a), bits: Number(b), width: v6 ? 128 : 32, kind };
}

const inRange = (n: bigint, r: { base: bigint; bits: number; width: number }) => (n >> BigInt(r.width - r.bits)) === (r.base >> BigInt(r.width - r.bits));

const ORACLE_V4: Range[] = [
  cidr('255.255.255.255/32', 'broadcast'), cidr('0.0.0.0/8', 'unspecified'), cidr('127.0.0.0/8', 'loopback'),
  cidr('10.0.0.0/8', 'private'), cidr('172.16.0.0/12', 'private'), cidr('192.168.0.0/16', 'private'), cidr('100.64.0.0/10', 'shared'),
  cidr('169.254.0.0/16', 'link_local'), cidr('224.0.0.0/4', 'multicast'), cidr('240.0.0.0/4', 'reserved'),
  cidr('192.0.0.0/24', 'reserved'), cidr('192.88.99.0/24', 'reserved'), cidr('192.0.2.0/24', 'documentation'),
  cidr('198.51.100.0/24', 'documentation'), cidr('203.0.113.0/24', 'documentation'), cidr('198.18.0.0/15', 'benchmarking'),
];
const ORACLE_METADATA_V4 = ['169.254.169.254', '169.254.170.2', '169.254.170.23', '169.254.0.23', '100.100.100.200', '192.0.0.192'].map(parseV4);
const ORACLE_METADATA_V6 = ['fd00:ec2::254', 'fd00:ec2::23'].map(parseV6);
const ORACLE_V6: Range[] = [
  cidr('::/128', 'unspecified'), cidr('::1/128', 'loopback'), cidr('::/96', 'reserved'), cidr('64:ff9b:1::/48', 'private'),
  cidr('100::/64', 'reserved'), cidr('2001:2::/48', 'benchmarking'), cidr('2001:db8::/32', 'documentation'), cidr('2001::/23', 'reserved'),
  cidr('3fff::/20', 'documentation'), cidr('fc00::/7', 'private'), cidr('fe80::/10', 'link_local'), cidr('fec0::/10', 'private'),
  cidr('ff00::/8', 'multicast'),
];
const GLOBAL_UNICAST = cidr('2000::/3', 'reserved');
const MAPPED = cidr('::ffff:0:0/96', 'reserved');
const NAT64 = cidr('64:ff9b::/96', 'reserved');
const SIX_TO_FOUR = cidr('2002::/16', 'reserved');

function kindV4(n: bigint): AddressKind | undefined {
  if (ORACLE_METADATA_V4.includes(n)) return 'metadata';
  return ORACLE_V4.find((r) => inRange(n, r))?.kind;
}

function oracleVerdict(address: string, allow: readonly string[]): { kind: AddressKind | undefined; allowed: boolean } {
  const v6 = address.includes(':');
  const n = v6 ? parseV6(address) : parseV4(address);
  const entries = allow.map((a) => (a.includes('/') ? a : `${a}/${a.includes(':') ? 128 : 32}`)).map((a) => cidr(a, 'reserved'));
  const allowedBy = (x: bigint, width: 32 | 128) => entries.some((r) => r.width === width && inRange(x, r));
  if (!v6) {
    const kind = kindV4(n);
    return { kind, allowed: kind === undefined || (!never.has(kind) && allowedBy(n, 32)) };
  }
  let kind: AddressKind | undefined;
  let reaches: bigint | undefined;
  if (ORACLE_METADATA_V6.includes(n)) kind = 'metadata';
  else if (inRange(n, MAPPED) || inRange(n, NAT64)) {
    reaches = n & 0xffffffffn;
    kind = kindV4(reaches);
    if (kind === undefined) return { kind, allowed: true };
  } else {
    const sixToFour = inRange(n, SIX_TO_FOUR) ? kindV4((n >> 80n) & 0xffffffffn) : undefined;
    kind = sixToFour ?? ORACLE_V6.find((r) => inRange(n, r))?.kind ?? (inRange(n, GLOBAL_UNICAST) ? undefined : 'reserved');
  }
  if (kind === undefined) return { kind, allowed: true };
  return { kind, allowed: !never.has(kind) && (allowedBy(n, 128) || (reaches !== undefined && allowedBy(reaches, 32))) };
}

/** inet_aton / WHATWG IPv4 parsing: 1 to 4 parts, hex (0x), octal (leading 0) or decimal; the last fills the rest. */
function inetAton(host: string): bigint {
  const parts = host.replace(/\.$/, '').split('.').map((p) => {
    if (/^0x/i.test(p)) return p.length === 2 ? 0n : BigInt(`0x${p.slice(2)}`);
    if (/^0\d/.test(p)) return BigInt(`0o${p.slice(1)}`);
    return BigInt(p);
  });
  const last = parts.pop()!;
  return parts.reduce((acc, p, i) => acc | (p << BigInt(8 * (3 - i))), 0n) | last;
}

function formatV4(n: bigint): string {
  return [24n, 16n, 8n, 0n].map((s) => ((n >> s) & 0xffn).toString()).join('.');
}

function formatV6(n: bigint): string {
  return Array.from({ length: 8 }, (_, i) => ((n >> BigInt(16 * (7 - i))) & 0xffffn).toString(16)).join(':');
}

/** Addresses near every special range (a random host part inside it), besides uniformly random ones. */
const specialV4Arb = fc.oneof(
  fc.constantFrom(...ORACLE_V4, cidr('8.8.8.0/24', 'reserved')).chain((r) => fc.bigInt(0n, (1n << BigInt(32 - r.bits)) - 1n).map((h) => ((r.base >> BigInt(32 - r.bits)) << BigInt(32 - r.bits)) | h)),
  fc.constantFrom(...ORACLE_METADATA_V4),
  fc.bigInt(0n, 0xffffffffn),
);
const specialV6Arb = fc.oneof(
  fc.constantFrom(...ORACLE_V6, GLOBAL_UNICAST, MAPPED, NAT64, SIX_TO_FOUR, cidr('4000::/2', 'reserved'))
    .chain((r) => fc.bigInt(0n, (1n << BigInt(128 - r.bits)) - 1n).map((h) => ((r.base >> BigInt(128 - r.bits)) << BigInt(128 - r.bits)) | h)),
  fc.constantFrom(...ORACLE_METADATA_V6),
  // An IPv4 address (special or not) inside IPv4-mapped, NAT64 and 6to4.
  fc.tuple(specialV4Arb, fc.constantFrom('mapped', 'nat64', '6to4'), fc.bigInt(0n, (1n << 80n) - 1n)).map(([v4, form, rest]) =>
    form === 'mapped' ? MAPPED.base | v4 : form === 'nat64' ? NAT64.base | v4 : SIX_TO_FOUR.base | (v4 << 80n) | (rest & ((1n << 80n) - 1n))),
);
const addressArb = fc.oneof(fc.ipV4(), fc.ipV6(), specialV4Arb.map(formatV4), specialV6Arb.map(formatV6));
const allowArb = fc.oneof(
  fc.subarray(['10.0.0.0/8', '127.0.0.0/8', '127.0.0.1', '169.254.0.0/16', '100.64.0.0/10', '172.16.0.0/12', '0.0.0.0/0', '::/0', 'fc00::/7',
    '::1/128', 'fe80::/10', '::ffff:0:0/96', '64:ff9b:1::/48', '2001:db8::/32', '192.0.0.0/24', '240.0.0.0/4', '::/96']),
  fc.array(fc.oneof(
    fc.tuple(specialV4Arb, fc.integer({ min: 0, max: 32 })).map(([n, p]) => `${formatV4(n)}/${p}`),
    fc.tuple(specialV6Arb, fc.integer({ min: 0, max: 128 })).map(([n, p]) => `${formatV6(n)}/${p}`),
  ), { maxLength: 4 }),
);

// ----------------------------------------------------------------- configuration

describe('SSRF: configuration (outbound.allow_private_cidrs and the URLs Mandate fetches)', () => {
  const build = (input: MandateConfigInput) => buildConfig(input, { env: {} });
  const problems = (input: MandateConfigInput): string => {
    try {
      build(input);
    } catch (err) {
      assert.ok(err instanceof ConfigError, String(err));
      return err.issues.join('\n');
    }
    return assert.fail('expected a configuration error');
  };
  const trust = (jwks_uri: string) => ({ name: 'idp', issuer: 'https://idp.example.com', jwks_uri, algorithms: ['RS256' as const], audience: 'mandate', claims: { sub: 'x' } });

  it('allow_private_cidrs must be CIDRs or addresses; the error names the key and shows one', () => {
    assert.match(problems({ outbound: { allow_private_cidrs: ['10.0.0.0/33'] } }), /outbound\.allow_private_cidrs\[0\].*prefix length must be 0 to 32/);
    assert.match(problems({ outbound: { allow_private_cidrs: ['internal.example'] } }), /outbound\.allow_private_cidrs\[0\].*10\.20\.0\.0\/16/);
    assert.match(problems({ outbound: { allow_private_cidrs: ['fe80::1%eth0/64'] } }), /not an IPv4 or IPv6 address/);
    assert.deepEqual(build({ outbound: { allow_private_cidrs: ['10.20.0.0/16', 'fd12:3456::/48', '192.168.1.10'] } }).outbound.allow_private_cidrs, ['10.20.0.0/16', 'fd12:3456::/48', '192.168.1.10']);
    assert.deepEqual(build({}).outbound.allow_private_cidrs, [], 'nothing private is reachable by default');
  });

  it('a fetched URL whose host is a forbidden literal fails at start, naming its key', () => {
    assert.match(problems({ trust: [trust('https://169.254.169.254/jwks')] }), /trust\[0\]\.jwks_uri.*cloud metadata/);
    assert.match(problems({ trust: [trust('https://169.254.169.254/jwks')], outbound: { allow_private_cidrs: ['169.254.0.0/16'] } }), /cloud metadata/, 'never allowed');
    assert.match(problems({ trust: [trust('https://2130706433/jwks')] }), /trust\[0\]\.jwks_uri.*loopback/);
    assert.match(problems({ trust: [{ ...trust('x'), jwks_uri: undefined, discovery: true, issuer: 'https://10.1.1.1' }] }), /trust\[0\]\.issuer.*private/);
    assert.match(problems({ proxy: { jwks_uri: 'https://user:pw@broker.example/oauth/jwks' } }), /proxy\.jwks_uri.*userinfo/);
    assert.match(problems({
      signals: { receivers: [{ name: 'tx', issuer: 'https://tx.example', jwks_uri: 'https://tx.example/jwks', audience: 'a', delivery: 'poll', poll_url: 'https://[fd00::1]/poll' }] },
    }), /signals\.receivers\[0\]\.poll_url.*private/);
    assert.match(problems({
      nhis: [{ id: 'a', class: 'agent', owner: 'o', system: 's', tier: 'read', credentials: [{ type: 'private_key_jwt', jwks_uri: 'https://[::ffff:192.168.0.1]/jwks' }] }],
    }), /nhis\[0\]\.credentials\[0\]\.jwks_uri.*private/);
    // Allowed by the operator: accepted.
    assert.ok(build({ trust: [trust('https://10.1.1.1/jwks')], outbound: { allow_private_cidrs: ['10.1.0.0/16'] } }));
    assert.ok(build({ trust: [trust('https://idp.example.com/jwks')] }), 'a host name is checked when resolved, not at start');
  });
});

// ----------------------------------------------------------------- the attack, through the real app

describe('SSRF through an SSF push stream (issue 15 item 5: a loopback HTTPS service, a header of its choice)', () => {
  let pki: TestPki;
  let internal: LocalServer;
  before(async () => {
    pki = generateTestPki();
    // An internal HTTPS service on loopback that answers whoever asks, echoing what it was sent.
    internal = await localServer((req, res) => {
      res.writeHead(400, { 'content-type': 'application/json', 'x-internal': 'secret-header' })
        .end(JSON.stringify({ err: 'invalid_request', description: `INTERNAL-SECRET for ${req.headers.authorization ?? 'nobody'}` }));
    }, pki.server);
  });
  after(async () => {
    await internal.close();
    pki.cleanup();
  });

  async function ssf(t: TestApp, token: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
    const res = await fetch(`${t.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  }

  it('no credential can create or repoint a push stream at a loopback service (a viewer 403, an admin 400 at once); the service sees no connection', async () => {
    // Production-like: nothing private is reachable (outbound as it is by default).
    const t = await startTestApp(undefined, { outbound: {} });
    try {
      const reader = (await t.admin('POST', '/admin-credentials', { name: 'siem-reader', role: 'viewer' })).body.token as string;
      const byViewer = await ssf(t, reader, 'POST', '/ssf/streams', { delivery: { method: 'urn:ietf:rfc:8935', endpoint_url: `${internal.url}/events` } });
      assert.equal(byViewer.status, 403, 'a viewer manages no stream');
      // The guard holds for every role: an admin credential (stolen, or well-meaning) is refused too.
      const viewer = (await t.admin('POST', '/admin-credentials', { name: 'siem', role: 'admin' })).body.token as string;
      for (const endpoint_url of [
        `${internal.url}/events`, `https://localhost:${internal.port}/events`, `https://2130706433:${internal.port}/`, `https://0x7f.1:${internal.port}/`,
        `https://[::ffff:127.0.0.1]:${internal.port}/`, `https://[::1]:${internal.port}/`, 'https://169.254.169.254/latest/meta-data/', 'https://[fd00:ec2::254]/',
      ]) {
        const r = await ssf(t, viewer, 'POST', '/ssf/streams', { delivery: { method: 'urn:ietf:rfc:8935', endpoint_url, authorization_header: 'Bearer attacker-chosen' } });
        assert.equal(r.status, 400, `${endpoint_url}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.error, 'invalid_request');
        assert.match(r.body.error_description, /^delivery\.endpoint_url is refused: .*(loopback|metadata)/);
      }
      // Repointing an existing stream is refused the same way (PATCH and PUT).
      const poll = await ssf(t, viewer, 'POST', '/ssf/streams', { delivery: { method: 'urn:ietf:rfc:8936' } });
      assert.equal(poll.status, 201);
      for (const method of ['PATCH', 'PUT']) {
        const r = await ssf(t, viewer, method, '/ssf/streams', { stream_id: poll.body.stream_id, delivery: { method: 'urn:ietf:rfc:8935', endpoint_url: `${internal.url}/events` } });
        assert.equal(r.status, 400, method);
      }
      await ssf(t, viewer, 'POST', '/ssf/verify', { stream_id: poll.body.stream_id });
      assert.equal(internal.connections, 0, 'the loopback service was never contacted');
      const stored = await t.app.store.listSsfStreams({ direction: 'out' });
      assert.ok(stored.every((s) => (s.config as { delivery: { method: string } }).delivery.method !== 'urn:ietf:rfc:8935'), 'no push stream was stored');
    } finally {
      await t.app.close();
    }
  });

  it('where the operator allows loopback, no text of the answer comes back through the admin API', async () => {
    // The test helpers' allowance (outbound.allow_private_cidrs: loopback); a plain-http service in development.
    const echo = await localServer((req, res) => {
      res.writeHead(400, { 'content-type': 'application/json' })
        .end(JSON.stringify({ err: 'invalid_request', description: `INTERNAL-SECRET for ${req.headers.authorization ?? 'nobody'}` }));
    });
    const t = await startTestApp(undefined, { signals: { transmitter: { push_initial_backoff: '20ms', push_max_attempts: 1 } } });
    try {
      const viewer = (await t.admin('POST', '/admin-credentials', { name: 'siem', role: 'admin' })).body.token as string;
      const reader = (await t.admin('POST', '/admin-credentials', { name: 'siem-reader', role: 'viewer' })).body.token as string;
      const c = await ssf(t, viewer, 'POST', '/ssf/streams', { delivery: { method: 'urn:ietf:rfc:8935', endpoint_url: `${echo.url}/events`, authorization_header: 'Bearer attacker-chosen' } });
      assert.equal(c.status, 201);
      assert.equal((await ssf(t, viewer, 'POST', '/ssf/verify', { stream_id: c.body.stream_id })).status, 204);
      const dead = await waitFor(async () => {
        const r = await t.admin('GET', `/ssf/events?stream_id=${c.body.stream_id}&status=dead`);
        return r.body.events.length === 1 && r.body.events[0];
      }, 10_000, 'dead letter');
      assert.equal(echo.requests.length, 1);
      assert.equal(dead.last_error, 'the push endpoint answered HTTP 400 (err invalid_request)');
      // Nowhere in what an admin or a viewer can read.
      for (const path of [`/ssf/events?stream_id=${c.body.stream_id}`, '/ssf/events?status=dead', '/ssf/streams']) {
        const r = await t.admin('GET', path);
        assert.doesNotMatch(JSON.stringify(r.body ?? ''), /INTERNAL-SECRET|attacker-chosen/, path);
        const v = await fetch(`${t.url}/admin/v1${path}`, { headers: { authorization: `Bearer ${reader}` } });
        assert.doesNotMatch(await v.text(), /INTERNAL-SECRET|attacker-chosen/, `${path} (viewer)`);
      }
      const own = await ssf(t, viewer, 'GET', `/ssf/streams?stream_id=${c.body.stream_id}`);
      assert.doesNotMatch(JSON.stringify(own.body), /INTERNAL-SECRET|attacker-chosen/);
    } finally {
      await t.app.close();
      await echo.close();
    }
  });

  it('delivery checks the address again: a push host that now resolves to a private address is never contacted', async () => {
    let answer = '127.0.0.1';
    const resolveHost: HostResolver = async (host) => (host === 'receiver.example' ? [{ address: answer, family: 4 }] : Promise.reject(new Error('not found')));
    const t = await startTestApp(undefined, {
      outbound: { allow_private_cidrs: ['127.0.0.1/32'] },
      signals: { transmitter: { push_initial_backoff: '20ms', push_max_attempts: 1 } },
    }, {}, { resolveHost });
    try {
      const viewer = (await t.admin('POST', '/admin-credentials', { name: 'siem', role: 'admin' })).body.token as string;
      const before = internal.connections;
      const c = await ssf(t, viewer, 'POST', '/ssf/streams', { delivery: { method: 'urn:ietf:rfc:8935', endpoint_url: `https://receiver.example:${internal.port}/events` } });
      assert.equal(c.status, 201, 'allowed when it was configured');
      answer = '192.168.10.20';
      await ssf(t, viewer, 'POST', '/ssf/verify', { stream_id: c.body.stream_id });
      const dead = await waitFor(async () => {
        const r = await t.admin('GET', `/ssf/events?stream_id=${c.body.stream_id}&status=dead`);
        return r.body.events.length === 1 && r.body.events[0];
      }, 10_000, 'dead letter');
      assert.match(dead.last_error, /^the push failed: receiver\.example resolves to a private address/);
      assert.equal(internal.connections, before, 'nothing was contacted');
    } finally {
      await t.app.close();
    }
  });
});

// ----------------------------------------------------------------- the broker's key fetches, through the real app

describe("SSRF through the broker's key fetches (issuer discovery and JWKS, a client's jwks_uri)", () => {
  const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
  const issuers: TestIssuer[] = [];
  let secret: LocalServer;
  let redirector: LocalServer;
  let t: TestApp;
  let port = 0;

  const exchange = async (iss: TestIssuer) => {
    const now = Math.floor(Date.now() / 1000);
    const subject = await iss.sign({ iss: iss.url, aud: 'mandate', sub: 'repo:acme/x', iat: now, exp: now + 300, jti: randomUUID() }, { alg: 'RS256' });
    const res = await fetch(`${t.url}/oauth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: EXCHANGE, subject_token: subject, subject_token_type: 'urn:ietf:params:oauth:token-type:jwt', scope: 'list_tickets', resource: `${t.app.issuer}/tools/tickets` }),
    });
    return { status: res.status, body: (await res.json()) as Record<string, string> };
  };

  before(async () => {
    for (let i = 0; i < 3; i++) issuers.push(await startIssuer());
    // What the attacker wants read: an internal service that would even serve a valid JWKS.
    secret = await localServer((_req, res) => void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(issuers[2]!.jwks())));
    redirector = await localServer((_req, res) => void res.writeHead(302, { location: `${secret.url}/jwks` }).end('moved: INTERNAL-TEXT'));
    port = secret.port;
    // Each issuer's discovery document names a jwks_uri the attacker chose.
    issuers[0]!.discoveryOverride = { jwks_uri: 'https://169.254.169.254/latest/meta-data/iam/security-credentials/' };
    issuers[1]!.discoveryOverride = { jwks_uri: `https://keys.internal.example:${port}/jwks` };
    issuers[2]!.discoveryOverride = { jwks_uri: `${redirector.url}/jwks` };
    const resolveHost: HostResolver = async (host) => {
      if (host === 'keys.internal.example') return [{ address: '10.9.8.7', family: 4 }];
      if (host === 'client-keys.example') return [{ address: '192.168.7.7', family: 4 }];
      throw new Error('not found');
    };
    t = await startTestApp(undefined, {
      trust: issuers.map((iss, i) => ({ name: `idp${i}`, issuer: iss.url, discovery: true, algorithms: ['RS256' as const], audience: 'mandate', claims: { sub: 'repo:acme/*' } })),
      nhis: [
        { id: 'wl', class: 'runner', owner: 'o', system: 'ci', tier: 'read', credentials: issuers.map((_, i) => ({ type: 'federated' as const, trust: `idp${i}`, subject: 'repo:acme/*' })) },
        { id: 'client', class: 'agent', owner: 'o', system: 's', tier: 'read', credentials: [{ type: 'private_key_jwt', jwks_uri: 'https://client-keys.example/jwks' }] },
      ],
      tools: [{ id: 'tickets', kind: 'http', upstream: 'http://127.0.0.1:9', actions: [{ name: 'list_tickets', method: 'GET', path: '/tickets', tier: 'read' }] }],
      grants: [{ nhi: 'wl', tool: 'tickets', actions: ['list_tickets'] }, { nhi: 'client', tool: 'tickets', actions: ['list_tickets'] }],
    }, {}, { resolveHost });
  });
  after(async () => {
    await t.app.close();
    await Promise.all([...issuers.map((i) => i.close()), secret.close(), redirector.close()]);
  });

  it('a discovery document pointing jwks_uri at cloud metadata, at a name resolving to a private address, or at a redirect to loopback: refused, nothing reached', async () => {
    for (const [i, reason] of [[0, 'forbidden_address'], [1, 'forbidden_address'], [2, 'redirect']] as const) {
      const r = await exchange(issuers[i]!);
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.equal(r.body.error, 'invalid_request', 'RFC 8693 §2.2.2: an unacceptable subject token');
      assert.match(r.body.error_description!, new RegExp(`could not obtain the issuer's keys \\((${reason})\\)`), `issuer ${i}`);
      assert.doesNotMatch(JSON.stringify(r.body), /INTERNAL-TEXT|169\.254|10\.9\.8\.7/);
    }
    assert.equal(secret.connections, 0, 'the internal service was never contacted');
    assert.equal(redirector.requests.length, 1, 'the redirect was fetched once and not followed');
  });

  it("a client's jwks_uri whose host resolves to a private address is never fetched: invalid_client", async () => {
    const { privateKey } = await generateKeyPair('ES256');
    const now = Math.floor(Date.now() / 1000);
    const assertion = await new SignJWT({ jti: randomUUID() }).setProtectedHeader({ alg: 'ES256', kid: 'k1' })
      .setIssuer('client').setSubject('client').setAudience(`${t.app.issuer}/oauth/token`).setIssuedAt(now).setExpirationTime(now + 60).sign(privateKey);
    const res = await fetch(`${t.url}/oauth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'client_credentials', client_id: 'client', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: assertion, scope: 'list_tickets', resource: `${t.app.issuer}/tools/tickets`,
      }),
    });
    const body = (await res.json()) as Record<string, string>;
    assert.equal(res.status, 401, JSON.stringify(body));
    assert.equal(body.error, 'invalid_client');
    assert.match(body.error_description!, /jwks_uri could not be fetched/);
    assert.doesNotMatch(JSON.stringify(body), /192\.168/);
  });
});
