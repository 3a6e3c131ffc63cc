/**
 * Adversarial: RFC 8693 token exchange. What an agent (or whoever copied its tokens) tries in
 * order to get more than it was given, or to keep what was taken back: chains past the depth
 * cap, lineage races with revocation, actor/subject swaps, may_act bypasses, narrowing that
 * widens (scope, tool, lifetime, binding), cross-tool subject tokens, and subject tokens whose
 * ancestor is revoked. Through the real broker and proxy on 127.0.0.1.
 *
 * Also covered elsewhere: a copied DPoP- or certificate-bound actor token (test/broker/
 * token-exchange.test.ts, test/broker/mtls.test.ts), RFC 8693 §2.2.2 codes
 * (test/broker/standards.test.ts), revocation at every instance (token-exchange-cluster.test.ts).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { agentNhi, testAgent, testDpopKey, type TestAgent, type TestDpopKey } from '../helpers/agent.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import { JWT_TYPE, callTool, claimsOf, clientCredentials, exchange, introspect, type OAuthAnswer } from '../helpers/oauth.js';
import { MAX_EXCHANGE_DEPTH } from '../../src/jose/tokens.js';

describe('adversarial: token exchange (RFC 8693)', () => {
  let t: TestApp;
  let rec: RecordingUpstream;
  let deployer: TestAgent;
  let orchestrator: TestAgent;
  let mallory: TestAgent;
  let iss: string;
  const res = (tool: string) => `${iss}/tools/${tool}`;
  const keys: Record<string, TestDpopKey> = {};

  before(async () => {
    rec = await startRecordingUpstream();
    [deployer, orchestrator, mallory] = await Promise.all([testAgent('deployer'), testAgent('orchestrator'), testAgent('mallory')]);
    for (const n of ['deployer', 'orchestrator', 'mallory']) keys[n] = await testDpopKey();
    const actions = [
      { name: 'list_items', method: 'GET' as const, path: '/items', tier: 'read' },
      { name: 'create_item', method: 'POST' as const, path: '/items', tier: 'write' },
      { name: 'delete_item', method: 'DELETE' as const, path: '/items/{id}', tier: 'destructive' },
    ];
    t = await startTestApp(undefined, {
      nhis: [agentNhi(deployer, { may_act: ['orchestrator'] }), agentNhi(orchestrator), agentNhi(mallory)],
      tools: [{ id: 'rec', kind: 'http', upstream: rec.url, actions }, { id: 'other', kind: 'http', upstream: rec.url, actions }],
      grants: ['deployer', 'orchestrator', 'mallory'].flatMap((nhi) => [{ nhi, tool: 'rec', actions: ['*'] }, { nhi, tool: 'other', actions: ['*'] }]),
    });
    iss = t.app.issuer;
  });
  after(async () => {
    await t.app.close();
    await rec.close();
  });

  const own = async (a: TestAgent, scope = 'list_items', tool = 'rec') => {
    const r = await clientCredentials(iss, a, { resource: res(tool), scope, dpop: keys[a.id] });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.access_token as string;
  };
  const refused = (r: OAuthAnswer, error: string, re?: RegExp) => {
    assert.equal(r.body.error, error, JSON.stringify(r.body));
    assert.equal(r.body.access_token, undefined);
    if (re) assert.match(r.body.error_description, re);
  };

  describe('depth and lineage', () => {
    it(`a chain of ${MAX_EXCHANGE_DEPTH} exchanges is allowed, the next is refused (invalid_request), and every jti stays within the admin API's limit`, async () => {
      let tok = await own(deployer);
      for (let i = 0; i < MAX_EXCHANGE_DEPTH; i++) {
        const r = await exchange(iss, { subject: tok, resource: res('rec'), scope: 'list_items', dpop: keys.deployer });
        assert.equal(r.status, 200, `exchange ${i + 1}: ${JSON.stringify(r.body)}`);
        tok = r.body.access_token;
      }
      assert.ok(String(claimsOf(tok).jti).length <= 200, 'the deepest jti can still be named to POST /admin/v1/revocations');
      refused(await exchange(iss, { subject: tok, resource: res('rec'), scope: 'list_items', dpop: keys.deployer }), 'invalid_request', /exchanged 5 times/);
      // The deepest token is revoked through any ancestor.
      const first = String(claimsOf(tok).jti).split('.').at(-1)!;
      assert.equal((await t.admin('POST', '/revocations', { jti: first, reason: 'chain' })).status, 201);
      assert.equal((await callTool(iss, 'rec', '/items', tok, { dpop: keys.deployer })).status, 401);
    });

    it('no race with the issued-token records: exchanges in flight while their subject is revoked yield only tokens that are refused', async () => {
      const a = await own(deployer);
      // Twenty exchanges of A and its revocation, all at once; nothing is flushed in between.
      const exchanges = Array.from({ length: 20 }, () => exchange(iss, { subject: a, resource: res('rec'), scope: 'list_items', dpop: keys.deployer }));
      const revoked = t.admin('POST', '/revocations', { jti: claimsOf(a).jti, reason: 'race' });
      const results = await Promise.all(exchanges);
      assert.equal((await revoked).status, 201);
      const issued = results.filter((r) => r.status === 200).map((r) => r.body.access_token as string);
      for (const r of results) if (r.status !== 200) refused(r, 'invalid_request', /revoked/);
      for (const tok of issued) {
        const call = await callTool(iss, 'rec', '/items', tok, { dpop: keys.deployer });
        assert.equal(call.status, 401, 'every token obtained from A is refused once A is revoked');
        assert.deepEqual((await introspect(iss, deployer, tok)).body, { active: false });
      }
    });

    it('a subject token whose ancestor is revoked cannot be exchanged (nor delegated), even after the revocation record is reloaded', async () => {
      const a = await own(deployer);
      const b = await exchange(iss, { subject: a, resource: res('rec'), scope: 'list_items', dpop: keys.deployer });
      assert.equal(b.status, 200);
      await t.admin('POST', '/revocations', { jti: claimsOf(a).jti, reason: 'stolen' });
      await t.app.enforcement.revocations.reload({ full: true });
      refused(await exchange(iss, { subject: b.body.access_token, resource: res('rec'), scope: 'list_items', dpop: keys.deployer }), 'invalid_request', /ancestor_revoked/);
      refused(await exchange(iss, { subject: b.body.access_token, actor: await own(orchestrator), resource: res('rec'), scope: 'list_items', dpop: keys.orchestrator }), 'invalid_request', /subject_token.*ancestor_revoked/);
    });

    it('a forged lineage (a jti edited to drop its revoked parent) fails the signature', async () => {
      const a = await own(deployer);
      const b = (await exchange(iss, { subject: a, resource: res('rec'), scope: 'list_items', dpop: keys.deployer })).body.access_token as string;
      await t.admin('POST', '/revocations', { jti: claimsOf(a).jti, reason: 'stolen' });
      const [h, , s] = b.split('.');
      const c = claimsOf(b);
      const forged = `${h}.${Buffer.from(JSON.stringify({ ...c, jti: String(c.jti).split('.')[0] })).toString('base64url')}.${s}`;
      assert.equal((await callTool(iss, 'rec', '/items', forged, { dpop: keys.deployer })).status, 401);
      assert.deepEqual((await introspect(iss, deployer, forged)).body, { active: false });
    });
  });

  describe('actor / subject swaps and may_act', () => {
    it('swapping subject and actor (the subject\'s may_act does not name the new actor) is refused', async () => {
      refused(await exchange(iss, { subject: await own(orchestrator), actor: await own(deployer), resource: res('rec'), scope: 'list_items', dpop: keys.deployer }), 'invalid_request', /may_act/);
    });

    it('an NHI not in may_act cannot act, whatever key it proves', async () => {
      refused(await exchange(iss, { subject: await own(deployer), actor: await own(mallory), resource: res('rec'), scope: 'list_items', dpop: keys.mallory }), 'invalid_request', /may_act/);
    });

    it('may_act bypass: the actor narrows the subject token without an actor token (it does not hold the subject\'s key)', async () => {
      const subject = await own(deployer);
      refused(await exchange(iss, { subject, resource: res('rec'), scope: 'list_items', dpop: keys.orchestrator }), 'invalid_request', /DPoP-bound/);
    });

    it('may_act bypass: a delegated token used as the actor token (an actor hiding behind another\'s identity) is refused', async () => {
      const delegated = await exchange(iss, { subject: await own(deployer), actor: await own(orchestrator), resource: res('rec'), scope: 'list_items', dpop: keys.orchestrator });
      assert.equal(delegated.status, 200, JSON.stringify(delegated.body));
      refused(await exchange(iss, { subject: await own(deployer), actor: delegated.body.access_token, resource: res('rec'), scope: 'list_items', dpop: keys.orchestrator }), 'invalid_request', /itself a delegated token/);
    });

    it('may_act bypass: authenticating as one client while presenting another NHI\'s actor token is refused', async () => {
      refused(await exchange(iss, { subject: await own(deployer), actor: await own(orchestrator), auth: mallory, resource: res('rec'), scope: 'list_items', dpop: keys.orchestrator }), 'invalid_request', /not the actor/);
    });

    it('type confusion: a Mandate access token presented as a workload JWT (subject or actor) is refused', async () => {
      refused(await exchange(iss, { subject: await own(deployer), subjectType: JWT_TYPE, resource: res('rec'), scope: 'list_items', dpop: keys.deployer }), 'invalid_request', /subject_token/);
      refused(await exchange(iss, { subject: await own(deployer), actor: await own(orchestrator), actorType: JWT_TYPE, resource: res('rec'), scope: 'list_items', dpop: keys.orchestrator }), 'invalid_request', /actor_token/);
    });

    describe('taking access back from an actor reaches what it was delegated', () => {
      // A fresh delegation per case: the subject deployer, the actor orchestrator (its key binds the result).
      const delegate = async () => {
        const actor = await own(orchestrator);
        const d = await exchange(iss, { subject: await own(deployer), actor, resource: res('rec'), scope: 'list_items', dpop: keys.orchestrator });
        assert.equal(d.status, 200, JSON.stringify(d.body));
        const tok = d.body.access_token as string;
        assert.equal((await callTool(iss, 'rec', '/items', tok, { dpop: keys.orchestrator })).status, 200);
        return { actor, tok };
      };
      const refusedAtProxy = async (tok: string, re: RegExp) => {
        const r = await callTool(iss, 'rec', '/items', tok, { dpop: keys.orchestrator });
        assert.equal(r.status, 401, JSON.stringify(r));
        assert.match(r.description ?? '', re);
        assert.equal((await introspect(iss, deployer, tok)).body.active, false, 'inactive at introspection too');
      };

      it("the actor's own token revoked: the delegated token is refused", async () => {
        const { actor, tok } = await delegate();
        assert.equal(claimsOf(tok).act.mandate_jti, claimsOf(actor).jti, 'the delegated token names the token its actor presented');
        assert.equal((await t.admin('POST', '/revocations', { jti: claimsOf(actor).jti, reason: 'stolen' })).status, 201);
        await refusedAtProxy(tok, /actor_revoked/);
      });

      it('the actor revoked NHI-wide, or killed: the delegated token is refused', async () => {
        const first = await delegate();
        await new Promise((r) => setTimeout(r, 1100)); // an NHI-wide revocation is for tokens issued before it (iat has seconds)
        assert.equal((await t.admin('POST', '/revocations', { nhi: 'orchestrator', reason: 'compromised' })).status, 201);
        await refusedAtProxy(first.tok, /actor_revoked/);
        await new Promise((r) => setTimeout(r, 1100));
        const second = await delegate();
        const kill = await t.admin('POST', '/kill', { scope: 'nhi', target: 'orchestrator', reason: 'drill' });
        assert.equal(kill.status, 201, JSON.stringify(kill.body));
        try {
          await refusedAtProxy(second.tok, /actor_revoked/);
        } finally {
          await t.admin('DELETE', `/kill/${kill.body.id}`);
        }
      });

      it('the actor disabled: the delegated token is refused at the proxy', async () => {
        await new Promise((r) => setTimeout(r, 1100));
        const { tok } = await delegate();
        assert.equal((await t.admin('POST', '/nhis/orchestrator/disable', { reason: 'offboarded' })).status, 200);
        try {
          const r = await callTool(iss, 'rec', '/items', tok, { dpop: keys.orchestrator });
          assert.equal(r.status, 401, JSON.stringify(r));
          assert.match(r.description ?? '', /its actor orchestrator is disabled/);
        } finally {
          assert.equal((await t.admin('POST', '/nhis/orchestrator/enable', {})).status, 200);
        }
      });
    });

    it('a revoked actor token cannot act', async () => {
      const actor = await own(orchestrator);
      await t.admin('POST', '/revocations', { jti: claimsOf(actor).jti, reason: 'stolen' });
      refused(await exchange(iss, { subject: await own(deployer), actor, resource: res('rec'), scope: 'list_items', dpop: keys.orchestrator }), 'invalid_request', /actor_token.*revoked/);
    });
  });

  describe('narrowing never widens', () => {
    it('scope: actions outside the subject token are not granted (RFC 6749 §3.3), nothing left is invalid_scope', async () => {
      const subject = await own(deployer, 'list_items');
      const wider = await exchange(iss, { subject, resource: res('rec'), scope: 'list_items create_item', dpop: keys.deployer });
      assert.equal(wider.status, 200);
      assert.equal(wider.body.scope, 'list_items');
      assert.equal(claimsOf(wider.body.access_token).scope, 'list_items');
      refused(await exchange(iss, { subject, resource: res('rec'), scope: 'create_item', dpop: keys.deployer }), 'invalid_scope');
      refused(await exchange(iss, { subject, resource: res('rec'), scope: 'delete_item', dpop: keys.deployer }), 'invalid_scope');
    });

    it('an approval tier is not reached through exchange: exchanging an elevation token needs a human and an argument digest again', async () => {
      const digest = 'M7hzyDgX1ZjsSjX9Gq1mVSIwWbXJg2uH0xi5X_Vx2gE';
      const ask = (extra: Record<string, string>) => clientCredentials(iss, deployer, { resource: res('rec'), scope: 'delete_item', dpop: keys.deployer, extra: { args_digest: digest, ...extra } });
      const asked = await ask({});
      assert.equal(asked.body.error, 'approval_required');
      assert.equal((await t.admin('POST', `/approvals/${asked.body.approval_id}/approve`, {})).status, 200);
      const elevated = await ask({ approval_id: asked.body.approval_id });
      assert.equal(elevated.status, 200, JSON.stringify(elevated.body));
      assert.equal(claimsOf(elevated.body.access_token).mandate_args_digest, digest);
      // Copies of the one-call elevation token, by exchange: refused without a digest, held for a new approval with one.
      refused(await exchange(iss, { subject: elevated.body.access_token, resource: res('rec'), scope: 'delete_item', dpop: keys.deployer }), 'invalid_request', /args_digest/);
      refused(await exchange(iss, { subject: elevated.body.access_token, resource: res('rec'), scope: 'delete_item', dpop: keys.deployer, extra: { args_digest: digest } }), 'approval_required');
      refused(await exchange(iss, { subject: elevated.body.access_token, resource: res('rec'), scope: 'delete_item', dpop: keys.deployer, extra: { args_digest: digest, approval_id: asked.body.approval_id } }), 'invalid_grant', /already used/);
      // And a subject token without delete_item has nothing to narrow to.
      refused(await exchange(iss, { subject: await own(deployer, 'list_items create_item'), resource: res('rec'), scope: 'delete_item', dpop: keys.deployer }), 'invalid_scope');
    });

    it('lifetime: a derived token never outlives the token it came from', async () => {
      const subject = await own(deployer, 'create_item');
      const r = await exchange(iss, { subject, resource: res('rec'), scope: 'create_item', dpop: keys.deployer });
      assert.equal(r.status, 200);
      assert.ok(claimsOf(r.body.access_token).exp <= claimsOf(subject).exp);
    });

    it('binding: a DPoP-bound subject token cannot be narrowed into a bearer token or onto another key', async () => {
      const subject = await own(deployer);
      refused(await exchange(iss, { subject, resource: res('rec'), scope: 'list_items' }), 'invalid_request', /DPoP-bound/);
      refused(await exchange(iss, { subject, resource: res('rec'), scope: 'list_items', dpop: keys.mallory }), 'invalid_request', /DPoP-bound/);
      const ok = await exchange(iss, { subject, resource: res('rec'), scope: 'list_items', dpop: keys.deployer });
      assert.deepEqual(claimsOf(ok.body.access_token).cnf, { jkt: keys.deployer!.jkt });
    });

    it('cross-tool: a subject token for one tool is not exchanged for another (invalid_target), with or without an actor', async () => {
      const forOther = await own(deployer, 'list_items', 'other');
      refused(await exchange(iss, { subject: forOther, resource: res('rec'), scope: 'list_items', dpop: keys.deployer }), 'invalid_target');
      refused(await exchange(iss, { subject: forOther, actor: await own(orchestrator), resource: res('rec'), scope: 'list_items', dpop: keys.orchestrator }), 'invalid_target');
      // An actor token for another tool identifies the actor; the delegated token is for the subject's tool only.
      const d = await exchange(iss, { subject: await own(deployer), actor: await own(orchestrator, 'list_items', 'other'), resource: res('rec'), scope: 'list_items', dpop: keys.orchestrator });
      assert.equal(d.status, 200, JSON.stringify(d.body));
      assert.equal(claimsOf(d.body.access_token).aud, res('rec'));
      assert.equal((await callTool(iss, 'other', '/items', d.body.access_token, { dpop: keys.orchestrator })).status, 401);
    });

    it('a subject token with a scope the NHI no longer holds: the grant is re-checked (revoked grants are not carried over)', async () => {
      const subject = await own(mallory, 'list_items create_item');
      const grants = (await t.admin('GET', '/nhis/mallory')).body.grants as Array<{ id: string; tool: string }>;
      const g = grants.find((x) => x.tool === 'rec');
      assert.ok(g, JSON.stringify(grants));
      const patched = await t.admin('DELETE', `/grants/${g.id}`);
      assert.ok(patched.status === 200 || patched.status === 204, JSON.stringify(patched.body));
      refused(await exchange(iss, { subject, resource: res('rec'), scope: 'list_items', dpop: keys.mallory }), 'invalid_scope');
    });
  });
});
