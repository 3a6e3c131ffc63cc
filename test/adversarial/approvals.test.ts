import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { argsDigest } from '../../src/core/index.js';
import { call, json, startTarget, type RawResponse, type Target } from './harness.js';

/**
 * Approvals, as an agent that wants more than a human approved would try them: approve a small
 * call and send a big one, reuse an approval or an elevation token, present an elevation token
 * that names no arguments, and bury a denial under newer requests so the gate forgets it.
 */
describe('adversarial: approvals bind exactly one call', () => {
  let x: Target;
  before(async () => {
    x = await startTarget();
  });
  after(async () => x.close());
  beforeEach(() => {
    x.rec.seen.length = 0;
    x.mrec.seen.length = 0;
  });

  const refund = async (token: string, body: string, headers: Record<string, string> = {}) => call(x.iss, '/tools/rec/refunds', {
    method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...headers }, body,
  });
  const approve = async (r: RawResponse) => {
    const id = json(r)?.approval_id ?? json(r)?.error?.data?.approval_id;
    assert.ok(id, `an approval id in ${r.body}`);
    const ok = await x.t.admin('POST', `/approvals/${id}/approve`, { reason: 'looked fine' });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    return id as string;
  };

  it('an HTTP call held by an @approval policy is bound to its body: approve {"amount":1}, {"amount":1000000} is held again', async () => {
    const tok = await x.token(x.alice, 'rec', 'refund');
    const held = await refund(tok, '{"amount":1}');
    assert.equal(held.status, 403, held.body);
    assert.equal(json(held).error, 'approval_required');
    const approvalId = await approve(held);

    const big = await refund(tok, '{"amount":1000000}');
    assert.equal(big.status, 403, big.body);
    assert.equal(json(big).error, 'approval_required');
    assert.notEqual(json(big).approval_id, approvalId, 'a new request, for the other body');
    assert.equal(x.rec.seen.length, 0, 'nothing reached the tool');

    // The same bytes pass, once.
    const small = await refund(tok, '{"amount":1}');
    assert.equal(small.status, 200, small.body);
    assert.deepEqual(x.rec.seen.map((s) => s.body), ['{"amount":1}']);
    const again = await refund(tok, '{"amount":1}');
    assert.equal(again.status, 403);
    assert.equal(json(again).error, 'approval_required');
    assert.equal(x.rec.seen.length, 1);
  });

  it('the body is bound in any framing: the approved bytes sent chunked pass, other bytes sent chunked do not', async () => {
    const tok = await x.token(x.alice, 'rec', 'refund');
    const held = await refund(tok, '{"amount":2}');
    await approve(held);
    const chunkedOther = await refund(tok, '{"amount":2000000}', { 'transfer-encoding': 'chunked' });
    assert.equal(chunkedOther.status, 403, chunkedOther.body);
    const chunkedSame = await refund(tok, '{"amount":2}', { 'transfer-encoding': 'chunked' });
    assert.equal(chunkedSame.status, 200, chunkedSame.body);
    assert.deepEqual(x.rec.seen.map((s) => s.body), ['{"amount":2}']);
  });

  it('the body is bound with how it is read: the approved bytes as another media type are another call', async () => {
    const tok = await x.token(x.alice, 'rec', 'refund');
    const held = await refund(tok, '{"amount":5}');
    await approve(held);
    const asForm = await refund(tok, '{"amount":5}', { 'content-type': 'application/x-www-form-urlencoded' });
    assert.equal(asForm.status, 403, asForm.body);
    assert.equal(json(asForm).error, 'approval_required');
    assert.equal(x.rec.seen.length, 0);
    const same = await refund(tok, '{"amount":5}');
    assert.equal(same.status, 200, same.body);
  });

  it('an MCP tools/call held by policy is bound to its arguments', async () => {
    const tok = await x.token(x.alice, 'mrec', 'create_page');
    const send = (args: Record<string, unknown>) => call(x.iss, '/tools/mrec', {
      method: 'POST', headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'create_page', arguments: args } }),
    });
    const held = await send({ space: 'eng', title: 'ok' });
    assert.equal(json(held).error.code, -32002, held.body);
    await approve(held);
    const other = await send({ space: 'eng', title: 'ok', body: '<script>' });
    assert.equal(json(other).error.code, -32002, other.body);
    assert.deepEqual(x.mrec.seen, []);
    const same = await send({ title: 'ok', space: 'eng' }); // the same arguments in another member order: one canonical digest
    assert.equal(same.status, 200, same.body);
    assert.equal(x.mrec.seen.length, 1);
  });

  it("another NHI cannot use an approval granted for the first one's call", async () => {
    const y = await startTarget({ policy: [] });
    try {
      // bob may refund in this target too.
      const tokA = await y.token(y.alice, 'rec', 'refund');
      const held = await call(y.iss, '/tools/rec/refunds', { method: 'POST', headers: { authorization: `Bearer ${tokA}`, 'content-type': 'application/json' }, body: '{"amount":3}' });
      const id = json(held).approval_id as string;
      assert.equal((await y.t.admin('POST', `/approvals/${id}/approve`, {})).status, 200);
      const grant = await y.t.admin('POST', '/grants', { nhi: 'bob', tool: 'rec', actions: ['refund'] });
      assert.ok(grant.status < 300, JSON.stringify(grant.body));
      const tokB = await y.token(y.bob, 'rec', 'refund');
      const bob = await call(y.iss, '/tools/rec/refunds', { method: 'POST', headers: { authorization: `Bearer ${tokB}`, 'content-type': 'application/json' }, body: '{"amount":3}' });
      assert.equal(bob.status, 403, bob.body);
      assert.notEqual(json(bob).approval_id, id);
      assert.deepEqual(y.rec.seen, []);
    } finally {
      await y.close();
    }
  });

  it('of concurrent identical calls after one approval, exactly one passes', async () => {
    const tok = await x.token(x.alice, 'rec', 'refund');
    await approve(await refund(tok, '{"amount":4}'));
    const answers = await Promise.all(Array.from({ length: 12 }, () => refund(tok, '{"amount":4}')));
    assert.equal(answers.filter((a) => a.status === 200).length, 1, answers.map((a) => a.status).join(','));
    assert.equal(x.rec.seen.length, 1);
  });

  describe('elevation tokens', () => {
    /** An elevation token as the broker signs one (typ at+jwt, its key), with `extra` claims. */
    const elevation = async (extra: Record<string, unknown>) => {
      const now = Math.floor(Date.now() / 1000);
      return x.t.app.keys.sign({
        iss: x.iss, sub: 'alice', aud: `${x.iss}/tools/rec`, exp: now + 60, iat: now, jti: `elev-${Math.random().toString(36).slice(2)}`, client_id: 'alice',
        scope: 'delete_item', mandate_tier: 'destructive', mandate_approval: 'apr_test', ...extra,
      }, { typ: 'at+jwt' });
    };
    const del = (token: string, id: string) => call(x.iss, `/tools/rec/items/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
    const digestOf = (id: string) => argsDigest({ params: { id }, query: {} });

    it('one that names no arguments passes no held call', async () => {
      const r = await del(await elevation({}), '7');
      assert.equal(r.status, 403, r.body);
      assert.equal(json(r).error, 'access_denied');
      assert.match(json(r).error_description, /names no arguments/);
      assert.deepEqual(x.rec.seen, []);
    });

    it('one for other arguments does not pass; one for these passes once', async () => {
      const other = await del(await elevation({ mandate_args_digest: digestOf('8') }), '7');
      assert.equal(other.status, 403, other.body);
      assert.match(json(other).error_description, /other arguments/);
      const tok = await elevation({ mandate_args_digest: digestOf('7') });
      const ok = await del(tok, '7');
      assert.equal(ok.status, 200, ok.body);
      const again = await del(tok, '7');
      assert.equal(again.status, 403, again.body);
      assert.match(json(again).error_description, /already used/);
      assert.deepEqual(x.rec.seen.map((s) => `${s.method} ${s.url}`), ['DELETE /api/items/7']);
    });
  });

  describe('a request cannot be pushed out of the gate\'s view', () => {
    // Calls that differ in their query (part of the arguments whether or not the body is bound).
    const refundOf = (token: string, item: string) => call(x.iss, `/tools/rec/refunds?item=${item}`, {
      method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: '{}',
    });

    it('a denial still stands after 250 newer requests for other calls', async () => {
      const tok = await x.token(x.alice, 'rec', 'refund');
      const first = await refundOf(tok, 'victim');
      assert.equal(json(first).error, 'approval_required');
      const denied = await x.t.admin('POST', `/approvals/${json(first).approval_id}/deny`, { reason: 'no' });
      assert.equal(denied.status, 200, JSON.stringify(denied.body));
      for (let i = 0; i < 250; i += 25) {
        await Promise.all(Array.from({ length: 25 }, (_, j) => refundOf(tok, `noise-${i + j}`)));
      }
      const again = await refundOf(tok, 'victim');
      assert.equal(again.status, 403, again.body);
      assert.equal(json(again).error, 'access_denied', 'still denied, not a fresh request a tired human might approve');
      assert.equal(json(again).approval_id, json(first).approval_id);
      assert.deepEqual(x.rec.seen, []);
    });

    it('a pending request is found again after 250 newer ones, not duplicated', async () => {
      const tok = await x.token(x.alice, 'rec', 'refund');
      const first = await refundOf(tok, 'pending-victim');
      for (let i = 0; i < 250; i += 25) {
        await Promise.all(Array.from({ length: 25 }, (_, j) => refundOf(tok, `more-noise-${i + j}`)));
      }
      const again = await refundOf(tok, 'pending-victim');
      assert.equal(json(again).error, 'approval_required');
      assert.equal(json(again).approval_id, json(first).approval_id);
    });
  });
});
