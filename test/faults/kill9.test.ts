import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { adminCall } from '../helpers/cluster.js';
import {
  Load, auditVerify, callTool, crashedInstances, jtiOf, lostAcknowledged, startFaultCluster, tally, unrecordedCalls, until, type FaultCluster, type Instance,
  type LoadAnswer,
} from './harness.js';

/**
 * Issue 15, item 12: `kill -9` of an instance under load. Nothing it acknowledged is lost: an
 * operator's change is answered only once it and its audit record are durable (the admin API
 * awaits the audit log's flush), so every change answered 201 is in the store with its
 * `token.revoked` record after the kill, and the audit chain verifies. The other instances serve
 * on, and a replacement serves as soon as it is ready.
 */

/** `loops` operators revoking fresh jtis back to back at `at` until it stops answering; every answer kept. */
function changesUntilDead(c: FaultCluster, at: Instance, loops: number): { answers: LoadAnswer[]; acknowledged: () => number; done: Promise<void> } {
  const answers: LoadAnswer[] = [];
  const done = Promise.all(Array.from({ length: loops }, async () => {
    for (;;) {
      const jti = `burst-${randomBytes(6).toString('hex')}`;
      const sentAt = Date.now();
      const r = await adminCall(at.url, c.token, 'POST', '/revocations', { jti, reason: 'before kill -9' }).catch(() => ({ status: 0, body: undefined }));
      answers.push({ kind: 'admin', at: at.url, status: r.status, sentAt, doneAt: Date.now(), ...(r.status === 201 ? { change: { kind: 'revocation' as const, jti } } : {}) });
      if (r.status === 0) return;
    }
  })).then(() => undefined);
  return { answers, acknowledged: () => answers.filter((a) => a.status === 201).length, done };
}

describe('faults: kill -9 under load', { timeout: 200_000 }, () => {
  // One cluster for both kills (a proxy, then the broker), each replaced: starting processes is most of the cost.
  let state: { c: FaultCluster; token: string; refused: string } | undefined;
  const fx = () => {
    if (!state) throw new Error('the cluster starts in before()');
    return state;
  };
  before(async () => {
    const c = await startFaultCluster({ proxies: 2 });
    state = { c, token: '', refused: '' };
    const [alice, bob] = c.agents;
    state.token = await c.issue(alice!);
    state.refused = await c.issue(bob!);
    assert.equal((await c.admin('POST', '/revocations', { jti: jtiOf(state.refused), reason: 'refused throughout' })).status, 201);
    for (const p of c.proxies) await until(async () => (await callTool(p, state!.refused)).status === 401, 15_000, `the revocation at ${p.url}`);
  });
  after(() => state?.c.close());

  it('of a proxy: what it acknowledged survives; the other proxy serves on; a replacement serves once ready', async (t) => {
    const { c, token, refused } = fx();

    const load = new Load(c, { token, refused, callers: 3, operators: 0 }).start();
    const [victim, survivor] = c.proxies as [Instance, Instance];
    // Proxies serve the admin API too: changes are made there until it dies.
    const burst = changesUntilDead(c, victim, 3);
    await until(() => burst.acknowledged() >= 15 && load.answers.filter((a) => a.at === victim.url && a.status === 200).length >= 20, 30_000, 'calls served and changes acknowledged by the proxy');
    await c.kill9(victim);
    await burst.done;
    assert.equal(victim.exited(), 'SIGKILL');

    assert.equal((await callTool(survivor, token)).status, 200);
    const replacement = await c.spawn('proxy');
    c.proxies = [survivor, replacement];
    assert.equal((await callTool(replacement, token)).status, 200);
    assert.equal((await callTool(replacement, refused)).status, 401);
    await until(() => load.answers.some((a) => a.at === replacement.url && a.status === 200), 10_000, 'the load served by the replacement');

    const answers = await load.stop();
    t.diagnostic(`load ${JSON.stringify(tally(answers))}; changes at the proxy ${JSON.stringify(tally(burst.answers))}`);
    assert.deepEqual(crashedInstances(c.started, c.killed), [], 'no other instance exited');
    assert.deepEqual(load.unexpected('refused', [401]).filter((a) => !(a.at === victim.url && a.status === 0)), [], 'the revoked token was never allowed');
    assert.deepEqual(load.unexpected('call', [200]).filter((a) => !(a.at === victim.url && a.status === 0)), [], 'only calls in flight at the killed proxy failed');
    assert.deepEqual(await lostAcknowledged(c.pg, burst.answers), [], 'every acknowledged change and its audit record survive kill -9');
    const verify = await auditVerify(c.broker.url, c.token);
    assert.equal(verify.code, 0, verify.out);
    // No audit, no request: the record of a call (tool.call_started) is durable before the call is
    // forwarded, so a killed proxy leaves every call the tool executed on record.
    assert.deepEqual(await unrecordedCalls(c.pg, c.upstream), [], 'every call the tool executed is on record');
  });
  it('of the broker: every acknowledged change and its audit record survive; the proxies serve on; a new broker takes over', async (t) => {
    const { c, token, refused } = fx();
    const alice = c.agents[0];

    const load = new Load(c, { token, refused, callers: 3, operators: 0 }).start();
    const victim = c.broker;
    const burst = changesUntilDead(c, victim, 4);
    await until(() => burst.acknowledged() >= 20, 30_000, 'changes acknowledged by the broker');
    await c.kill9(victim);
    await burst.done;
    assert.equal(victim.exited(), 'SIGKILL');

    // The proxies do not need the broker to serve (their keys and revocations come from the store and the bus).
    for (const p of c.proxies) assert.equal((await callTool(p, token)).status, 200);
    c.broker = await c.spawn('broker');
    const fresh = await c.issue(alice!);
    assert.equal((await callTool(c.proxies[0]!, fresh)).status, 200);
    assert.equal((await c.admin('POST', '/revocations', { jti: 'after-the-kill', reason: 'new broker' })).status, 201);

    const answers = await load.stop();
    t.diagnostic(`load ${JSON.stringify(tally(answers))}; changes at the broker ${JSON.stringify(tally(burst.answers))}`);
    assert.deepEqual(crashedInstances(c.started, c.killed), [], 'no other instance exited');
    assert.deepEqual(load.unexpected('refused', [401]), [], 'the revoked token was never allowed');
    assert.deepEqual(load.unexpected('call', [200]), [], 'the proxies served throughout');
    assert.deepEqual(await lostAcknowledged(c.pg, burst.answers), [], 'every acknowledged change and its audit record survive kill -9');
    const verify = await auditVerify(c.broker.url, c.token);
    assert.equal(verify.code, 0, verify.out);
  });

});
