import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { SignJWT, generateKeyPair } from 'jose';
import { freshPgSchemaUrl } from '../helpers/app.js';
import { agentNhi, clientCredentialsToken, testAgent, type TestAgent } from '../helpers/agent.js';
import { clusterFixture, freePort, newKek, spawnInstance, writeConfig } from '../helpers/cluster.js';
import { LOOPBACK_CIDRS } from '../helpers/outbound.js';

/**
 * `proxy.jwks_uri`: a proxy-only instance (`serve --role proxy`, its own process) that holds no
 * key-encryption key verifies the broker's access tokens against the broker's JWKS fetched over
 * HTTP. The broker (another process, with the KEK) signs; both share PostgreSQL and NATS.
 */
const ISSUER = 'http://mandate.jwks-uri.test';

function config(o: { pgUrl: string; upstream: string; agents: TestAgent[]; kek: boolean; jwksUri?: string }) {
  const suffix = randomBytes(4).toString('hex');
  return {
    server: { host: '127.0.0.1', port: 0, public_url: ISSUER },
    store: { driver: 'postgres', postgres_url: o.pgUrl, pool_size: 3 },
    bus: { driver: 'nats', nats_servers: ['nats://127.0.0.1:4222'], stream: `J_${suffix}`, subject_prefix: `j${suffix}` },
    ...(o.kek ? { keys: { kek: 'env:CLUSTER_KEK' } } : {}),
    ...(o.jwksUri ? { proxy: { jwks_uri: o.jwksUri } } : {}),
    // The broker listens on 127.0.0.1: the documented allowance (docs/security.md, "Outbound requests").
    outbound: { allow_private_cidrs: [...LOOPBACK_CIDRS] },
    log: { level: 'warn' },
    tokens: { profiles: [{ name: 'read', ttl: '10m', binding: 'optional' }] },
    nhis: o.agents.map((a) => agentNhi(a)),
    tools: [{ id: 'rec', kind: 'http', upstream: o.upstream, actions: [{ name: 'list_items', method: 'GET', path: '/items', tier: 'read' }] }],
    grants: o.agents.map((a) => ({ nhi: a.id, tool: 'rec', actions: ['*'] })),
  };
}

/** client_credentials at the broker's port, with the client assertion for the shared issuer. */
async function issue(brokerUrl: string, agent: TestAgent): Promise<string> {
  return (await clientCredentialsToken(ISSUER, agent, `${ISSUER}/tools/rec`, 'list_items', undefined, {}, brokerUrl)).access_token;
}

describe('proxy.jwks_uri: a proxy without the KEK verifies the broker\'s tokens (separate processes)', { timeout: 180_000 }, () => {
  const fx = clusterFixture();
  const { started } = fx;

  it('serves calls with the broker\'s tokens, refuses tokens its JWKS did not sign, and never reads a KEK', async () => {
    const alice = await testAgent('alice');
    const pgUrl = await freshPgSchemaUrl();
    const brokerConfig = writeConfig(config({ pgUrl, upstream: fx.rec.url, agents: [alice], kek: true }));
    const broker = await spawnInstance('broker', brokerConfig, { CLUSTER_KEK: newKek() });
    started.push(broker);

    // The proxy's own config has no keys.kek and its environment no KEK; outside production a
    // missing keys.kek would otherwise make (and announce) a development KEK in its directory.
    const proxyConfig = writeConfig(config({ pgUrl, upstream: fx.rec.url, agents: [alice], kek: false, jwksUri: `${broker.url}/oauth/jwks` }));
    const proxy = await spawnInstance('proxy', proxyConfig, {});
    started.push(proxy);
    assert.equal(existsSync(join(dirname(proxyConfig), '.mandate', 'dev-kek')), false, 'no development KEK was made');
    assert.doesNotMatch(proxy.stderr(), /INSECURE|key-encryption key/);

    const token = await issue(broker.url, alice);
    const ok = await fetch(`${proxy.url}/tools/rec/items`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(ok.status, 200, await ok.clone().text());
    assert.deepEqual(await ok.json(), { ok: true, method: 'GET', path: '/items' });
    // The signature cache does not make the second call different.
    assert.equal((await fetch(`${proxy.url}/tools/rec/items`, { headers: { authorization: `Bearer ${token}` } })).status, 200);

    // A token with the right claims signed by a key that is not in the broker's JWKS (with the
    // broker's kid, and with one the JWKS does not have: that one makes the proxy look again).
    const [h, p] = token.split('.') as [string, string];
    const header = JSON.parse(Buffer.from(h, 'base64url').toString()) as { kid: string; typ: string };
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
    const { privateKey } = await generateKeyPair('ES256');
    for (const kid of [header.kid, 'not-a-broker-kid']) {
      const forged = await new SignJWT(claims).setProtectedHeader({ alg: 'ES256', typ: header.typ, kid }).sign(privateKey);
      const r = await fetch(`${proxy.url}/tools/rec/items`, { headers: { authorization: `Bearer ${forged}` } });
      assert.equal(r.status, 401, `kid ${kid}`);
      assert.equal(((await r.json()) as { error: string }).error, 'invalid_token');
    }
    // The proxy signs nothing and publishes no keys of its own; its token endpoint is the broker's.
    assert.equal((await fetch(`${proxy.url}/oauth/jwks`)).status, 404);
    assert.equal(fx.rec.seen.filter((s) => s.url === '/items').length, 2, 'only the two genuine calls reached the tool');
  });

  it('answers 503 temporarily_unavailable (fail closed, never "verified") when its jwks_uri cannot be fetched', async () => {
    const alice = await testAgent('alice');
    const pgUrl = await freshPgSchemaUrl();
    const broker = await spawnInstance('broker', writeConfig(config({ pgUrl, upstream: fx.rec.url, agents: [alice], kek: true })), { CLUSTER_KEK: newKek() });
    started.push(broker);
    // Two proxies whose JWKS cannot be had: nothing listens at one; the other answers 500.
    const down = `http://127.0.0.1:${await freePort()}/oauth/jwks`;
    const failing = createServer((_req, res) => res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"down"}'));
    await new Promise<void>((r) => failing.listen(0, '127.0.0.1', () => r()));
    try {
      const failingUrl = `http://127.0.0.1:${(failing.address() as AddressInfo).port}/oauth/jwks`;
      const token = await issue(broker.url, alice);
      const before = fx.rec.seen.length;
      for (const jwksUri of [down, failingUrl]) {
        const proxy = await spawnInstance('proxy', writeConfig(config({ pgUrl, upstream: fx.rec.url, agents: [alice], kek: false, jwksUri })), {});
        started.push(proxy);
        for (let i = 0; i < 2; i++) {
          const r = await fetch(`${proxy.url}/tools/rec/items`, { headers: { authorization: `Bearer ${token}` } });
          assert.equal(r.status, 503, `${jwksUri}, call ${i + 1}`);
          const body = (await r.json()) as { error: string; error_description: string };
          assert.equal(body.error, 'temporarily_unavailable');
          assert.match(body.error_description, /signing keys cannot be fetched/);
          assert.doesNotMatch(JSON.stringify(body), new RegExp(token.slice(-20)), 'the answer does not repeat the token');
        }
      }
      assert.equal(fx.rec.seen.length, before, 'no call reached the tool');
    } finally {
      await new Promise<void>((r) => failing.close(() => r()));
    }
  });
});
