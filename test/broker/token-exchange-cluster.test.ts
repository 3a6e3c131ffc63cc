/**
 * Issue 15, item 6, "at every instance": a broker and two proxies as separate processes on
 * PostgreSQL + NATS (`mandate serve --role broker|proxy`). Revoking a token at the broker
 * (admin API, RFC 7009) refuses what was exchanged from it at both proxies, whose only link to
 * the broker is the bus and the store. Bearer tokens (binding optional), as in
 * test/signals/many-instances.test.ts: every instance names the same issuer.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { freshPgSchemaUrl } from '../helpers/app.js';
import { agentNhi, testAgent, type TestAgent } from '../helpers/agent.js';
import { adminCall, clusterFixture, newKek, spawnInstance, writeConfig, type Instance } from '../helpers/cluster.js';
import { callTool, claimsOf, clientCredentials, exchange, introspect, revokeAtEndpoint } from '../helpers/oauth.js';
import { eventually } from '../helpers/wait.js';

const ISSUER = 'http://mandate.lineage.test';
const RESOURCE = `${ISSUER}/tools/rec`;

describe('revocation reaches derived tokens at every instance (broker + 2 proxies as processes, PostgreSQL + NATS)', { timeout: 240_000 }, () => {
  const fx = clusterFixture();

  it('exchange A → B → C; revoking A (admin API) and A2 (RFC 7009) refuses their descendants at both proxies and at introspection', async () => {
    const alice = await testAgent('alice');
    const suffix = randomBytes(4).toString('hex');
    const path = writeConfig({
      server: { host: '127.0.0.1', port: 0, public_url: ISSUER },
      store: { driver: 'postgres', postgres_url: await freshPgSchemaUrl(), pool_size: 3 },
      bus: { driver: 'nats', nats_servers: ['nats://127.0.0.1:4222'], stream: `L_${suffix}`, subject_prefix: `l${suffix}` },
      keys: { kek: 'env:CLUSTER_KEK' },
      log: { level: 'warn' },
      tokens: { profiles: [{ name: 'read', ttl: '10m', binding: 'optional' }] },
      nhis: [agentNhi(alice)],
      tools: [{ id: 'rec', kind: 'http', upstream: fx.rec.url, actions: [{ name: 'list_items', method: 'GET', path: '/items', tier: 'read' }] }],
      grants: [{ nhi: 'alice', tool: 'rec', actions: ['*'] }],
    });
    const env = { CLUSTER_KEK: newKek() };
    const broker = await spawnInstance('broker', path, env);
    fx.started.push(broker);
    const token = await eventually(async () => broker.bootstrapToken, 'the bootstrap credential', 10_000);
    const proxies: Instance[] = await Promise.all([spawnInstance('proxy', path, env), spawnInstance('proxy', path, env)]);
    fx.started.push(...proxies);

    const at = broker.url;
    const lineage = async (a: TestAgent) => {
      const first = await clientCredentials(ISSUER, a, { resource: RESOURCE, scope: 'list_items', at });
      assert.equal(first.status, 200, JSON.stringify(first.body));
      const b = await exchange(ISSUER, { subject: first.body.access_token, resource: RESOURCE, scope: 'list_items', at });
      assert.equal(b.status, 200, JSON.stringify(b.body));
      const c = await exchange(ISSUER, { subject: b.body.access_token, resource: RESOURCE, scope: 'list_items', at });
      assert.equal(c.status, 200, JSON.stringify(c.body));
      for (const p of proxies) {
        for (const tok of [first, b, c]) assert.equal((await callTool(ISSUER, 'rec', '/items', tok.body.access_token, { at: p.url })).status, 200, `passes at ${p.url}`);
      }
      return { a: first.body.access_token as string, b: b.body.access_token as string, c: c.body.access_token as string };
    };
    const refusedEverywhere = async (tokens: string[]) => {
      for (const p of proxies) {
        for (const tok of tokens) {
          const r = await eventually(async () => {
            // A call in flight when the revocation arrives is cut off mid-answer (a reset): not yet the refusal.
            const x = await callTool(ISSUER, 'rec', '/items', tok, { at: p.url }).catch(() => undefined);
            return x?.status === 401 ? x : undefined;
          }, `a refusal at ${p.url}`, 15_000);
          assert.equal(r.error, 'invalid_token');
          assert.match(r.description ?? '', /revoked \((token|ancestor)_revoked\)/);
        }
      }
      for (const tok of tokens) assert.deepEqual((await introspect(ISSUER, alice, tok, at)).body, { active: false });
    };

    const one = await lineage(alice);
    const two = await lineage(alice);
    assert.equal((await adminCall(broker.url, token, 'POST', '/revocations', { jti: claimsOf(one.a).jti, reason: 'lineage test' })).status, 201);
    await refusedEverywhere([one.a, one.b, one.c]);
    // Another lineage of the same NHI is untouched.
    for (const p of proxies) assert.equal((await callTool(ISSUER, 'rec', '/items', two.c, { at: p.url })).status, 200);

    assert.equal((await revokeAtEndpoint(ISSUER, alice, two.a, {}, at)).status, 200);
    await refusedEverywhere([two.b, two.c]);
  });
});
