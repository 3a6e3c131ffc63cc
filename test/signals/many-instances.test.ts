import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { freshPgSchemaUrl } from '../helpers/app.js';
import { agentNhi, clientCredentialsToken, testAgent, type TestAgent } from '../helpers/agent.js';
import { adminCall, clusterFixture, freePort, newKek, PrivateNats, spawnInstance, writeConfig, type Instance } from '../helpers/cluster.js';
import { main } from '../../src/cli/main.js';
import { CAEP, startTestTransmitter, waitFor, type TestTransmitter } from './helpers.js';
import { LOOPBACK_CIDRS } from '../helpers/outbound.js';

/**
 * Issue 5, "Many instances" and "Time to revoke", as separate processes on PostgreSQL + NATS
 * JetStream: `mandate serve --role broker|signals|proxy`. Every instance names the same issuer
 * (`server.public_url`), so the tests use bearer tokens (profile binding optional) and reach each
 * instance at its own port; tokens name the shared issuer.
 */
const ISSUER = 'http://mandate.cluster.test';
const AUD = 'https://mandate.example.com/ssf';
const PUSH_AUTH = 'Bearer cluster-push-credential-0123456789';

interface Cluster {
  broker: Instance;
  signals: Instance | undefined;
  proxies: Instance[];
  token: string;
  all: Instance[];
}

function clusterConfig(o: { pgUrl: string; natsUrl?: string; stalenessS?: number; upstream: string; agents: TestAgent[]; tx?: TestTransmitter }) {
  const suffix = randomBytes(4).toString('hex');
  return {
    server: { host: '127.0.0.1', port: 0, public_url: ISSUER },
    store: { driver: 'postgres', postgres_url: o.pgUrl, pool_size: 3 },
    bus: {
      driver: 'nats', nats_servers: [o.natsUrl ?? 'nats://127.0.0.1:4222'], stream: `C_${suffix}`, subject_prefix: `c${suffix}`,
      ...(o.stalenessS !== undefined ? { staleness_bound: o.stalenessS } : {}),
    },
    keys: { kek: 'env:CLUSTER_KEK' },
    log: { level: 'warn' },
    // The test transmitter listens on 127.0.0.1: the documented allowance (docs/security.md, "Outbound requests").
    outbound: { allow_private_cidrs: [...LOOPBACK_CIDRS] },
    tokens: { profiles: [{ name: 'read', ttl: '10m', binding: 'optional' }, { name: 'write', ttl: '5m', binding: 'optional' }] },
    nhis: o.agents.map((a) => agentNhi(a)),
    tools: [{ id: 'rec', kind: 'http', upstream: o.upstream, actions: [{ name: 'list_items', method: 'GET', path: '/items', tier: 'read' }] }],
    grants: o.agents.map((a) => ({ nhi: a.id, tool: 'rec', actions: ['*'] })),
    ...(o.tx ? {
      signals: {
        receivers: [{ name: 'itdr', issuer: o.tx.issuer, jwks_uri: o.tx.jwksUri, audience: AUD, delivery: 'push', authorization: 'env:SSF_PUSH_AUTH', algorithms: ['ES256'] }],
      },
    } : {}),
  };
}

/** The broker first (it migrates, makes the first signing key and prints the bootstrap credential), then the others. */
async function startCluster(configPath: string, env: NodeJS.ProcessEnv, proxies: number, withSignals: boolean, started: Instance[]): Promise<Cluster> {
  const broker = await spawnInstance('broker', configPath, env);
  started.push(broker);
  const token = await waitFor(() => broker.bootstrapToken, 10_000, 'the bootstrap credential');
  const rest = await Promise.all([
    ...(withSignals ? [spawnInstance('signals', configPath, env)] : []),
    ...Array.from({ length: proxies }, () => spawnInstance('proxy', configPath, env)),
  ]);
  started.push(...rest);
  const signals = withSignals ? rest[0] : undefined;
  return { broker, signals, proxies: rest.slice(withSignals ? 1 : 0), token, all: [broker, ...rest] };
}

/** client_credentials at the broker's port, with the client assertion for the shared issuer. */
async function issue(brokerUrl: string, agent: TestAgent): Promise<string> {
  return (await clientCredentialsToken(ISSUER, agent, `${ISSUER}/tools/rec`, 'list_items', undefined, {}, brokerUrl)).access_token;
}

async function callAt(proxy: Instance, token: string): Promise<{ status: number; error: string | undefined; description: string | undefined }> {
  const res = await fetch(`${proxy.url}/tools/rec/items`, { headers: { authorization: `Bearer ${token}` } });
  const body = (await res.json().catch(() => ({}))) as { error?: string; error_description?: string };
  return { status: res.status, error: body.error, description: body.error_description };
}

const jtiOf = (token: string) => (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { jti: string }).jti;

describe('many instances as separate processes on PostgreSQL + NATS (issue 5)', { timeout: 240_000 }, () => {
  const fx = clusterFixture();
  const { started } = fx;

  it('a CAEP session-revoked SET from an outside transmitter: the agent is denied at all three proxies; time to revoke is on record', async (t) => {
    const tx = await startTestTransmitter();
    t.after(() => tx.close());
    const alice = await testAgent('alice');
    const bob = await testAgent('bob');
    const path = writeConfig(clusterConfig({ pgUrl: await freshPgSchemaUrl(), upstream: fx.rec.url, agents: [alice, bob], tx }));
    const env = { CLUSTER_KEK: newKek(), SSF_PUSH_AUTH: PUSH_AUTH };
    const c = await startCluster(path, env, 3, true, started);
    assert.equal(new Set(c.all.map((i) => i.instance)).size, 5, 'five distinct instances');

    const aliceToken = await issue(c.broker.url, alice);
    const bobToken = await issue(c.broker.url, bob);
    for (const p of c.proxies) {
      assert.equal((await callAt(p, aliceToken)).status, 200, `alice at ${p.url}`);
      assert.equal((await callAt(p, bobToken)).status, 200);
    }
    // Roles: the token endpoint is the broker's, the receiver the signals instance's, tools the proxies'.
    assert.equal((await fetch(`${c.proxies[0]!.url}/oauth/token`, { method: 'POST' })).status, 404);
    assert.equal((await fetch(`${c.broker.url}/tools/rec/items`)).status, 404);
    assert.equal((await fetch(`${c.broker.url}/ssf/receivers/itdr/events`, { method: 'POST' })).status, 404);

    const set = await tx.sign({ aud: AUD, sub_id: { format: 'opaque', id: 'alice' }, events: { [`${CAEP}session-revoked`]: { event_timestamp: Math.floor(Date.now() / 1000) } } });
    const t0 = performance.now();
    const pushed = await fetch(`${c.signals!.url}/ssf/receivers/itdr/events`, {
      method: 'POST', headers: { 'content-type': 'application/secevent+jwt', authorization: PUSH_AUTH }, body: set,
    });
    const accepted = performance.now() - t0;
    assert.equal(pushed.status, 202, await pushed.text());
    // Each proxy is asked until it refuses; the time of its first refusal is measured from the push.
    const deniedAfter = await Promise.all(c.proxies.map(async (p) => {
      const r = await waitFor(async () => {
        const x = await callAt(p, aliceToken);
        return x.status === 401 ? x : undefined;
      }, 15_000, `a refusal at ${p.url}`);
      assert.equal(r.error, 'invalid_token');
      assert.match(r.description ?? '', /revoked \(nhi_revoked by signal sig_[A-Za-z0-9_-]+\)/);
      return performance.now() - t0;
    }));
    t.diagnostic(`SET accepted (202) after ${accepted.toFixed(1)} ms; first refusal at the three proxies after ${deniedAfter.map((x) => x.toFixed(1)).join(', ')} ms (polling, this 2-core machine shared)`);

    for (const p of c.proxies) {
      assert.equal((await callAt(p, bobToken)).status, 200, 'another agent is untouched');
    }
    // Tokens issued after the signal work again (revoke_tokens, not a kill switch). `iat` has
    // second resolution and a token of the revocation's own second counts as revoked (fail
    // closed), so the new token is asked for in the next second.
    await new Promise((r) => setTimeout(r, 1_000 - (Date.now() % 1_000) + 20));
    const fresh = await issue(c.broker.url, alice);
    for (const p of c.proxies) assert.equal((await callAt(p, fresh)).status, 200);

    // Time to revoke: every instance recorded applying it; the proxies recorded their first refusal.
    const report = await waitFor(async () => {
      const r = await adminCall(c.broker.url, c.token, 'GET', '/reports/mttr?per_signal=true');
      const s = r.body.per_signal?.[0];
      return s && s.instances === 5 && r.body.first_denial.count === 1 ? r.body : undefined;
    }, 15_000, 'five instances and a first denial in the report');
    assert.equal(report.signals, 1);
    assert.equal(report.instances, 5);
    assert.ok(report.applied_everywhere.p99_ms >= 0 && report.first_denial.p50_ms >= 0);
    const metrics = await (await fetch(`${c.proxies[0]!.url}/metrics`)).text();
    assert.match(metrics, /mandate_signal_propagation_seconds_count\{stage="applied"\} 1/);
    assert.match(metrics, /mandate_signal_propagation_seconds_count\{stage="first_denial"\} 1/);
    const out: string[] = [];
    assert.equal(await main(['report', 'mttr'], { log: (s) => out.push(s), err: (s) => out.push(s) }, { MANDATE_URL: c.signals!.url, MANDATE_TOKEN: c.token }), 0);
    assert.match(out.join('\n'), /signal → applied at every instance\s+1\s/);
    for (const line of ['mandate report mttr:', ...out.join('\n').split('\n')]) t.diagnostic(line);
    await Promise.all(c.all.map((i) => i.stop()));
  });

  it('NATS stopped for 5 s during a burst of revocations: proxies past the staleness bound deny; afterwards every proxy holds every revocation', async (t) => {
    const port = await freePort();
    const storeDir = mkdtempSync(join(tmpdir(), 'mandate-nats-'));
    const nats = new PrivateNats(port, storeDir);
    t.after(() => {
      nats.kill();
      rmSync(storeDir, { recursive: true, force: true });
    });
    await nats.start();
    const carol = await testAgent('carol');
    const dave = await testAgent('dave');
    const path = writeConfig(clusterConfig({ pgUrl: await freshPgSchemaUrl(), natsUrl: nats.url, stalenessS: 2, upstream: fx.rec.url, agents: [carol, dave] }));
    const c = await startCluster(path, { CLUSTER_KEK: newKek() }, 3, false, started);

    const N = 20;
    const tokens = await Promise.all(Array.from({ length: N }, () => issue(c.broker.url, carol)));
    const control = await issue(c.broker.url, dave);
    for (const p of c.proxies) assert.equal((await callAt(p, control)).status, 200);

    // The burst: one revoke_tokens signal per token (its jti), half before NATS stops, half during the outage.
    const revoke = (tok: string) => adminCall(c.broker.url, c.token, 'POST', '/signals', { jti: jtiOf(tok), action: 'revoke_tokens', reason: 'burst' });
    const burst: Array<Promise<{ status: number; body: any }>> = tokens.slice(0, N / 2).map(revoke);
    const t0 = Date.now();
    await nats.stop();
    const stoppedAt = Date.now() - t0;
    burst.push(...tokens.slice(N / 2).map(revoke));
    // During the outage: once past the staleness bound (2 s) a proxy refuses every call, 503.
    const stale = await Promise.all(c.proxies.map((p) => waitFor(async () => {
      const r = await callAt(p, control);
      return r.status === 503 ? r : undefined;
    }, 4_500, `503 at ${p.url} while NATS is down`)));
    for (const r of stale) assert.equal(r.error, 'temporarily_unavailable');
    const staleAt = Date.now() - t0;
    await new Promise((r) => setTimeout(r, Math.max(0, 5_000 - (Date.now() - t0))));
    await nats.start();
    const restartedAt = Date.now() - t0;

    const results = await Promise.all(burst);
    for (const r of results) assert.equal(r.status, 201, JSON.stringify(r.body));
    // After NATS returns: every proxy serves the control token again and refuses all N revoked tokens.
    for (const p of c.proxies) {
      await waitFor(async () => (await callAt(p, control)).status === 200 || undefined, 20_000, `${p.url} back in contact`);
      const statuses = await Promise.all(tokens.map((tok) => callAt(p, tok)));
      assert.deepEqual(statuses.map((s) => s.status), tokens.map(() => 401), `every revocation at ${p.url}`);
      for (const s of statuses) assert.match(s.description ?? '', /revoked \(token_revoked by signal sig_[A-Za-z0-9_-]+\)/);
    }
    const doneAt = Date.now() - t0;
    t.diagnostic(`NATS stopped at ${stoppedAt} ms; all 3 proxies answered 503 by ${staleAt} ms; NATS back at ${restartedAt} ms; every proxy held all ${N} revocations by ${doneAt} ms`);
    await Promise.all(c.all.map((i) => i.stop()));
  });
});
