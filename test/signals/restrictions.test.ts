import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { argsDigest, httpCallDigest } from '../../src/core/index.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { agentNhi, clientAssertion, ASSERTION_TYPE, testAgent, type TestAgent } from '../helpers/agent.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import { waitFor } from './helpers.js';

/**
 * Issue 5, enforcement of step_down / step_up through the real broker (issuance) and the real
 * proxy (every call): the restriction RestrictionState serves is consulted by both.
 */
describe('restrictions enforced at the broker and the proxy (issue 5: step_down, step_up)', () => {
  let t: TestApp;
  let rec: RecordingUpstream;
  let alice: TestAgent;
  let bob: TestAgent;
  let carol: TestAgent;
  let iss: string;

  before(async () => {
    rec = await startRecordingUpstream();
    alice = await testAgent('alice');
    bob = await testAgent('bob');
    carol = await testAgent('carol');
    t = await startTestApp(undefined, {
      tokens: {
        profiles: [
          { name: 'read', ttl: '10m', binding: 'optional' },
          { name: 'write', ttl: '5m', binding: 'optional' },
          { name: 'destructive', ttl: '2m', binding: 'optional', approval: true },
        ],
      },
      nhis: [agentNhi(alice), agentNhi(bob), agentNhi(carol)],
      tools: [{
        id: 'rec', kind: 'http', upstream: rec.url,
        actions: [
          { name: 'list_items', method: 'GET', path: '/items', tier: 'read' },
          { name: 'create_item', method: 'POST', path: '/items', tier: 'write' },
          { name: 'delete_item', method: 'DELETE', path: '/items/{id}', tier: 'destructive' },
        ],
      }],
      grants: [{ nhi: 'alice', tool: 'rec', actions: ['*'] }, { nhi: 'bob', tool: 'rec', actions: ['*'] }, { nhi: 'carol', tool: 'rec', actions: ['*'] }],
    });
    iss = t.app.issuer;
  });
  after(async () => {
    await t.app.close();
    await rec.close();
  });

  /** client_credentials at the broker; returns the HTTP status and the JSON answer. */
  const tokenRequest = async (who: TestAgent, scope: string, extra: Record<string, string> = {}) => {
    const res = await fetch(`${iss}/oauth/token`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: await clientAssertion(who, iss),
        resource: `${iss}/tools/rec`, scope, ...extra,
      }),
    });
    return { status: res.status, body: (await res.json()) as Record<string, any> };
  };
  const call = async (token: string, method: string, path: string) => {
    const res = await fetch(`${t.url}/tools/rec${path}`, {
      method, headers: { authorization: `Bearer ${token}`, ...(method === 'POST' ? { 'content-type': 'application/json' } : {}) },
      body: method === 'POST' ? '{"title":"x"}' : undefined,
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined, www: res.headers.get('www-authenticate') };
  };
  const signal = async (nhi: string, action: string, extra: Record<string, unknown> = {}) => {
    const r = await t.admin('POST', '/signals', { nhi, action, reason: 'risk-level-change HIGH', ...extra });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    assert.equal(r.body.status, 'applied');
    return r.body.id as string;
  };

  it('step_down: the proxy refuses actions above the fallback tier (tokens issued before too); the broker narrows the scope; restore undoes it', async () => {
    const before = await tokenRequest(alice, 'list_items create_item');
    assert.equal(before.status, 200, JSON.stringify(before.body));
    assert.equal((await call(before.body.access_token, 'POST', '/items')).status, 200);

    const sig = await signal('alice', 'step_down');
    // The token issued before the signal keeps its read-tier actions only.
    const refused = await call(before.body.access_token, 'POST', '/items');
    assert.equal(refused.status, 403);
    assert.equal(refused.body.error, 'insufficient_scope');
    assert.match(refused.body.error_description, new RegExp(`stepped down by signal ${sig}`));
    assert.match(refused.www ?? '', /^Bearer error="insufficient_scope"/);
    // The answer names the signal: its id, what it did and its reason code, in the body and the challenge.
    assert.equal(refused.body.signal_id, sig);
    assert.match(refused.body.error_description, new RegExp(`by signal ${sig} \\(step_down: risk-level-change HIGH\\)`));
    assert.match(refused.www ?? '', new RegExp(`error_description="[^"]*signal ${sig} \\(step_down: risk-level-change HIGH\\)`));
    assert.ok(!refused.body.error_description.includes(before.body.access_token), 'no token in the answer');
    assert.equal((await call(before.body.access_token, 'GET', '/items')).status, 200, 'read-tier actions still work');

    // Issuance: the granted scope is capped at the fallback tier and the answer says which scope was issued.
    const narrowed = await tokenRequest(alice, 'list_items create_item');
    assert.equal(narrowed.status, 200, JSON.stringify(narrowed.body));
    assert.equal(narrowed.body.scope, 'list_items');
    const none = await tokenRequest(alice, 'create_item');
    assert.equal(none.status, 400);
    assert.equal(none.body.error, 'invalid_scope');
    assert.match(none.body.error_description, new RegExp(`stepped down by signal ${sig}`));
    // Bob is not restricted.
    assert.equal((await tokenRequest(bob, 'create_item')).body.scope, 'create_item');

    await t.admin('POST', '/restrictions/alice/lift');
    await waitFor(() => t.app.signals.restrictions.restrictionOf('alice') === undefined || undefined, 2000, 'lifted');
    assert.equal((await call(before.body.access_token, 'POST', '/items')).status, 200, 'restored');
    assert.equal((await tokenRequest(alice, 'create_item')).body.scope, 'create_item');
  });

  it('step_up: actions above the fallback tier need a human, at the broker (elevation) and at the proxy (approval gate)', async () => {
    const pre = await tokenRequest(bob, 'list_items create_item');
    assert.equal(pre.status, 200);
    const sig = await signal('bob', 'step_up', { fallback_tier: 'read' });

    // Proxy: the write-tier call of a token issued before is held for approval; reads pass.
    const seen = rec.seen.length;
    const held = await call(pre.body.access_token, 'POST', '/items');
    assert.equal(held.status, 403);
    assert.equal(held.body.error, 'approval_required');
    assert.equal(held.body.signal_id, sig, 'the answer names the signal that stepped bob up');
    assert.match(held.body.error_description, new RegExp(`stepped up by signal ${sig} \\(step_up: risk-level-change HIGH\\)`));
    assert.equal(rec.seen.length, seen, 'a held call does not reach the tool');
    assert.equal((await call(pre.body.access_token, 'GET', '/items')).status, 200);
    assert.equal((await t.admin('POST', `/approvals/${held.body.approval_id}/approve`, { reason: 'checked' })).status, 200);
    assert.equal((await call(pre.body.access_token, 'POST', '/items')).status, 200, 'approved: passes once');
    assert.equal((await call(pre.body.access_token, 'POST', '/items')).body.error, 'approval_required', 'and only once');

    // Broker: a write-tier token needs an elevation, bound to the call's arguments (as the proxy
    // digests a held HTTP call: its path parameters, query and body); read-tier tokens do not.
    assert.equal((await tokenRequest(bob, 'list_items')).status, 200);
    const digest = httpCallDigest({ params: {}, query: {}, body: Buffer.from('{"title":"x"}'), contentType: 'application/json' });
    assert.equal((await tokenRequest(bob, 'create_item')).body.error, 'invalid_request', 'an elevation needs args_digest');
    const asked = await tokenRequest(bob, 'create_item', { args_digest: digest });
    assert.equal(asked.status, 400);
    assert.equal(asked.body.error, 'approval_required');
    assert.match(asked.body.error_description, new RegExp(`stepped up by signal ${sig}`));
    const pending = await tokenRequest(bob, 'create_item', { approval_id: asked.body.approval_id, args_digest: digest });
    assert.equal(pending.body.error, 'authorization_pending');
    assert.equal((await t.admin('POST', `/approvals/${asked.body.approval_id}/approve`, {})).status, 200);
    const elevated = await tokenRequest(bob, 'create_item', { approval_id: asked.body.approval_id, args_digest: digest });
    assert.equal(elevated.status, 200, JSON.stringify(elevated.body));
    // The elevation token passes the proxy's gate once.
    assert.equal((await call(elevated.body.access_token, 'POST', '/items')).status, 200);
    assert.equal((await call(elevated.body.access_token, 'POST', '/items')).status, 403);

    await t.admin('POST', '/restrictions/bob/lift');
    await waitFor(() => t.app.signals.restrictions.restrictionOf('bob') === undefined || undefined, 2000, 'lifted');
    assert.equal((await call(pre.body.access_token, 'POST', '/items')).status, 200, 'restored: no approval needed');
  });

  it('an approval tier that is not a step-up does not name a signal', async () => {
    const t1 = await tokenRequest(carol, 'delete_item', { args_digest: argsDigest({ params: {}, query: {} }) });
    assert.equal(t1.body.error, 'approval_required');
    assert.equal(t1.body.signal_id, undefined);
    assert.doesNotMatch(t1.body.error_description, /signal/);
  });

  it('revoke_tokens: the proxy\'s invalid_token answer names the signal that revoked the token', async () => {
    const tok = await tokenRequest(carol, 'list_items');
    assert.equal(tok.status, 200, JSON.stringify(tok.body));
    assert.equal((await call(tok.body.access_token, 'GET', '/items')).status, 200);
    const sig = await signal('carol', 'revoke_tokens');
    const refused = await call(tok.body.access_token, 'GET', '/items');
    assert.equal(refused.status, 401);
    assert.equal(refused.body.error, 'invalid_token');
    assert.equal(refused.body.error_description, `the access token was revoked (nhi_revoked by signal ${sig})`);
    assert.match(refused.www ?? '', new RegExp(`error="invalid_token", error_description="the access token was revoked \\(nhi_revoked by signal ${sig}\\)"`));
  });
});
