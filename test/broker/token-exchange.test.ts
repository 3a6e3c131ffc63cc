/**
 * Issue 15, item 6: revocation reaches what was derived, and with an actor token the caller is
 * the actor. Through the real broker and proxy on 127.0.0.1, on SQLite + memory bus and on
 * PostgreSQL + NATS; the same across separate processes is in token-exchange-cluster.test.ts.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../src/core/index.js';
import { BACKENDS, startTestApp, type TestApp } from '../helpers/app.js';
import { agentNhi, testAgent, testDpopKey, type TestAgent, type TestDpopKey } from '../helpers/agent.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import { callTool, claimsOf, clientCredentials, exchange, introspect, revokeAtEndpoint } from '../helpers/oauth.js';
import { eventually } from '../helpers/wait.js';

const TOOLS = (upstream: string) => [{
  id: 'rec', kind: 'http' as const, upstream, actions: [
    { name: 'list_items', method: 'GET' as const, path: '/items', tier: 'read' },
    { name: 'create_item', method: 'POST' as const, path: '/items', tier: 'write' },
  ],
}];

for (const backend of BACKENDS) {
  describe(`revocation reaches tokens obtained by exchange (${backend.store} + ${backend.bus})`, () => {
    let t: TestApp;
    let rec: RecordingUpstream;
    let alice: TestAgent;
    let key: TestDpopKey;
    let iss: string;
    let resource: string;

    before(async () => {
      rec = await startRecordingUpstream();
      alice = await testAgent('alice');
      key = await testDpopKey();
      t = await startTestApp(backend, { nhis: [agentNhi(alice)], tools: TOOLS(rec.url), grants: [{ nhi: 'alice', tool: 'rec', actions: ['*'] }] });
      iss = t.app.issuer;
      resource = `${iss}/tools/rec`;
    });
    after(async () => {
      await t.app.close();
      await rec.close();
    });

    /** A (client_credentials) → B (exchange of A) → C (exchange of B), all DPoP-bound to `key`. */
    async function lineage(): Promise<{ a: string; b: string; c: string }> {
      const a = await clientCredentials(iss, alice, { resource, scope: 'list_items create_item', dpop: key });
      assert.equal(a.status, 200, JSON.stringify(a.body));
      const b = await exchange(iss, { subject: a.body.access_token, resource, scope: 'list_items', dpop: key });
      assert.equal(b.status, 200, JSON.stringify(b.body));
      const c = await exchange(iss, { subject: b.body.access_token, resource, scope: 'list_items', dpop: key });
      assert.equal(c.status, 200, JSON.stringify(c.body));
      for (const tok of [a, b, c]) assert.equal((await callTool(iss, 'rec', '/items', tok.body.access_token, { dpop: key })).status, 200);
      return { a: a.body.access_token, b: b.body.access_token, c: c.body.access_token };
    }

    const refusedAtProxy = (token: string) => eventually(async () => {
      const r = await callTool(iss, 'rec', '/items', token, { dpop: key });
      return r.status === 401 ? r : undefined;
    }, 'a refusal at the proxy');

    it('each issued token records its parent: the jti names it, the issued-token record and introspection say it', async () => {
      const { a, b, c } = await lineage();
      const [ja, jb, jc] = [a, b, c].map((x) => claimsOf(x).jti as string);
      assert.ok(jb!.endsWith(`.${ja}`) && jc!.endsWith(`.${jb}`), 'a derived jti names its parent');
      const listed = (await t.admin('GET', '/tokens?nhi=alice&limit=1000')).body.tokens as Array<{ jti: string; parent_jti: string | null }>;
      assert.equal(listed.find((x) => x.jti === ja)?.parent_jti, null);
      assert.equal(listed.find((x) => x.jti === jb)?.parent_jti, ja);
      assert.equal(listed.find((x) => x.jti === jc)?.parent_jti, jb);
      const intro = await introspect(iss, alice, c);
      assert.equal(intro.body.active, true);
      assert.equal(intro.body.mandate_parent_jti, jb);
    });

    it('revoking A by jti (admin API) refuses B and C at the proxy, at introspection and at exchange; A\'s siblings are untouched', async () => {
      const { a, b, c } = await lineage();
      const sibling = await lineage();
      assert.equal((await t.admin('POST', '/revocations', { jti: claimsOf(a).jti, reason: 'test' })).status, 201);
      for (const tok of [b, c]) {
        const r = await refusedAtProxy(tok);
        assert.equal(r.error, 'invalid_token');
        assert.match(r.description ?? '', /revoked \(ancestor_revoked\)/);
        assert.deepEqual((await introspect(iss, alice, tok)).body, { active: false });
      }
      const again = await exchange(iss, { subject: c, resource, scope: 'list_items', dpop: key });
      assert.equal(again.body.error, 'invalid_request');
      assert.match(again.body.error_description, /ancestor_revoked/);
      for (const tok of [sibling.a, sibling.b, sibling.c]) assert.equal((await callTool(iss, 'rec', '/items', tok, { dpop: key })).status, 200);
    });

    it('revoking A with RFC 7009 (its client, at the revocation endpoint) refuses B at the proxy and at introspection', async () => {
      const { a, b } = await lineage();
      const r = await revokeAtEndpoint(iss, alice, a);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal((await refusedAtProxy(b)).error, 'invalid_token');
      assert.deepEqual((await introspect(iss, alice, b)).body, { active: false });
    });

    it('a signal naming A\'s jti (revoke_tokens) refuses B, and the refusal names the signal', async () => {
      const { a, b } = await lineage();
      const s = await t.admin('POST', '/signals', { jti: claimsOf(a).jti, action: 'revoke_tokens', reason: 'stolen' });
      assert.equal(s.status, 201, JSON.stringify(s.body));
      const r = await refusedAtProxy(b);
      assert.match(r.description ?? '', new RegExp(`ancestor_revoked by signal ${s.body.id}`));
    });

    it('revoking B refuses C but not A: revocation goes down the lineage, never up', async () => {
      const { a, b, c } = await lineage();
      assert.equal((await t.admin('POST', '/revocations', { jti: claimsOf(b).jti, reason: 'test' })).status, 201);
      assert.equal((await refusedAtProxy(c)).error, 'invalid_token');
      assert.equal((await callTool(iss, 'rec', '/items', a, { dpop: key })).status, 200);
      assert.equal((await introspect(iss, alice, a)).body.active, true);
    });
  });
}

describe('RFC 8693 delegation: with an actor_token, the caller is the actor', () => {
  let t: TestApp;
  let rec: RecordingUpstream;
  let deployer: TestAgent;
  let orchestrator: TestAgent;
  let supervisor: TestAgent;
  let iss: string;
  let resource: string;
  /** Each agent's own DPoP key. */
  const keys: Record<string, TestDpopKey> = {};

  before(async () => {
    rec = await startRecordingUpstream();
    [deployer, orchestrator, supervisor] = await Promise.all([testAgent('deployer'), testAgent('orchestrator'), testAgent('supervisor')]);
    for (const n of ['deployer', 'orchestrator', 'supervisor', 'thief']) keys[n] = await testDpopKey();
    t = await startTestApp(undefined, {
      nhis: [agentNhi(deployer, { may_act: ['orchestrator', 'supervisor'] }), agentNhi(orchestrator), agentNhi(supervisor)],
      tools: TOOLS(rec.url),
      grants: ['deployer', 'orchestrator', 'supervisor'].map((nhi) => ({ nhi, tool: 'rec', actions: ['list_items'] })),
    });
    iss = t.app.issuer;
    resource = `${iss}/tools/rec`;
  });
  after(async () => {
    await t.app.close();
    await rec.close();
  });

  const own = async (a: TestAgent) => {
    const r = await clientCredentials(iss, a, { resource, scope: 'list_items', dpop: keys[a.id] });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.access_token as string;
  };

  it('a copied DPoP-bound actor token used with another key\'s proof is refused (invalid_request): its actor is not put into act', async () => {
    const subject = await own(deployer);
    const actor = await own(orchestrator);
    // Whoever holds the subject token and its key, and a copy of the orchestrator's token.
    for (const k of [keys.deployer!, keys.thief!]) {
      const r = await exchange(iss, { subject, actor, resource, scope: 'list_items', dpop: k });
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.equal(r.body.error, 'invalid_request');
      assert.match(r.body.error_description, /actor_token .*DPoP-bound/);
    }
    const none = await exchange(iss, { subject, actor, resource, scope: 'list_items' });
    assert.equal(none.body.error, 'invalid_request');
  });

  it('with the actor\'s own key: accepted, the new token is bound to that key and act names the actor', async () => {
    const subject = await own(deployer);
    const actor = await own(orchestrator);
    const r = await exchange(iss, { subject, actor, resource, scope: 'list_items', dpop: keys.orchestrator });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const c = claimsOf(r.body.access_token);
    assert.equal(c.sub, 'deployer');
    assert.deepEqual(c.act, { sub: 'orchestrator', mandate_jti: claimsOf(actor).jti }, 'the actor, and the token it presented');
    assert.deepEqual(c.cnf, { jkt: keys.orchestrator!.jkt });
    assert.equal(c.client_id, 'orchestrator', 'the client that asked is the actor');
    assert.ok(c.exp <= claimsOf(subject).exp && c.exp <= claimsOf(actor).exp, 'it outlives neither token');
    assert.ok(String(c.jti).endsWith(`.${claimsOf(subject).jti}`), 'its parent is the subject token');
    // The delegated token is the actor's to use: with its key at the proxy, not the subject's.
    assert.equal((await callTool(iss, 'rec', '/items', r.body.access_token, { dpop: keys.orchestrator })).status, 200);
    assert.equal((await callTool(iss, 'rec', '/items', r.body.access_token, { dpop: keys.deployer })).status, 401);
  });

  it('RFC 8693 §4.1: a second delegation nests the prior actor inside act', async () => {
    const subject = await own(deployer);
    const firstActor = await own(orchestrator);
    const secondActor = await own(supervisor);
    const first = await exchange(iss, { subject, actor: firstActor, resource, scope: 'list_items', dpop: keys.orchestrator });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    const second = await exchange(iss, { subject: first.body.access_token, actor: secondActor, resource, scope: 'list_items', dpop: keys.supervisor });
    assert.equal(second.status, 200, JSON.stringify(second.body));
    const c = claimsOf(second.body.access_token);
    assert.equal(c.sub, 'deployer');
    const act = { sub: 'supervisor', mandate_jti: claimsOf(secondActor).jti, act: { sub: 'orchestrator', mandate_jti: claimsOf(firstActor).jti } };
    assert.deepEqual(c.act, act);
    assert.deepEqual(c.cnf, { jkt: keys.supervisor!.jkt });
    const intro = await introspect(iss, deployer, second.body.access_token);
    assert.deepEqual(intro.body.act, act);
  });

  it('without an actor token, the proof must be made with the subject token\'s key (as before)', async () => {
    const subject = await own(deployer);
    assert.equal((await exchange(iss, { subject, resource, scope: 'list_items', dpop: keys.thief })).body.error, 'invalid_request');
    const ok = await exchange(iss, { subject, resource, scope: 'list_items', dpop: keys.deployer });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.deepEqual(claimsOf(ok.body.access_token).cnf, { jkt: keys.deployer!.jkt });
  });
});

describe('a revocation outlives the clock-skew window of what it revokes', () => {
  it('a revoked token and the token exchanged from it stay refused after their exp, while the verifier\'s leeway still accepts them', async () => {
    const clock = new ManualClock(Date.now());
    const alice = await testAgent('alice');
    const t = await startTestApp(undefined, {
      tokens: { profiles: [{ name: 'read', ttl: '10m', binding: 'optional' }, { name: 'write', ttl: '5m', binding: 'optional' }] },
      nhis: [agentNhi(alice)], tools: TOOLS('http://127.0.0.1:9'), grants: [{ nhi: 'alice', tool: 'rec', actions: ['list_items'] }],
    }, {}, { clock });
    try {
      const iss = t.app.issuer;
      const a = await clientCredentials(iss, alice, { resource: `${iss}/tools/rec`, scope: 'list_items' });
      assert.equal(a.status, 200, JSON.stringify(a.body));
      const b = await exchange(iss, { subject: a.body.access_token, resource: `${iss}/tools/rec`, scope: 'list_items' });
      assert.equal(b.status, 200, JSON.stringify(b.body));
      assert.equal((await revokeAtEndpoint(iss, alice, a.body.access_token)).status, 200);
      const facts = (tok: string) => {
        const c = claimsOf(tok);
        return { jti: c.jti as string, nhiId: 'alice', toolId: 'rec', issuedAt: (c.iat as number) * 1000 };
      };
      // Two seconds past exp: within proxy.clock_skew (5 s), so the signature and claims still pass.
      clock.set((claimsOf(a.body.access_token).exp as number) * 1000 + 2000);
      await t.app.enforcement.revocations.reload({ full: true });
      for (const tok of [a.body.access_token, b.body.access_token]) {
        await t.app.broker!.accessTokens.verify(tok);
        assert.ok(t.app.enforcement.revocations.check(facts(tok)), 'still revoked');
      }
    } finally {
      await t.app.close();
    }
  });
});
