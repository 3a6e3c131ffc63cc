import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Load, auditVerify, busConnected, callTool, crashedInstances, jtiOf, lostAcknowledged, startFaultCluster, tally, until, withinOrHung } from './harness.js';

/**
 * Issue 15, item 12: NATS stopped under load. An operator's change is answered as soon as it is
 * durable, while NATS is still down (it used to wait for the publish, up to 30 s); the
 * instances that did not hear it apply it from the store at their next reload, so a revocation
 * made during the outage is enforced at every proxy before NATS returns; afterwards everything
 * serves again and nothing acknowledged is lost. The staleness bound is long here (60 s), so
 * that the proxies keep serving through the outage and the reload, not the 503 of a stale
 * proxy, is what refuses the token (the staleness bound has its own test in
 * test/signals/many-instances.test.ts).
 */
describe('faults: NATS outage under load', { timeout: 150_000 }, () => {
  it('changes are answered while NATS is down; a revocation made then is enforced at every proxy; recovery after', async (t) => {
    const c = await startFaultCluster({ proxies: 2, stalenessS: 60, signals: true });
    t.after(() => c.close());
    const [alice, bob, carol] = c.agents;
    const token = await c.issue(alice!);
    const refused = await c.issue(bob!);
    const revokedDuring = await c.issue(carol!);
    assert.equal((await c.admin('POST', '/revocations', { jti: jtiOf(refused), reason: 'refused throughout' })).status, 201);
    for (const p of c.proxies) {
      await until(async () => (await callTool(p, refused)).status === 401, 15_000, `the first revocation at ${p.url}`);
      assert.equal((await callTool(p, revokedDuring)).status, 200);
    }

    const load = new Load(c, { token, refused, callers: 3, operators: 2 }).start();
    await until(() => load.answers.filter((a) => a.kind === 'admin' && a.status === 201).length >= 4, 15_000, 'acknowledged changes before the outage');

    await c.nats.stop();
    await until(async () => !(await busConnected(c.broker)) && !(await busConnected(c.proxies[0]!)), 10_000, 'the instances to notice the outage');
    const downAt = Date.now();

    // Every kind of operator change that publishes, answered while NATS is down (12 s: the
    // publish it used to wait for gives up after 30 s).
    const proxyAdmin = c.proxies[0]!;
    const revoke = await withinOrHung(c.admin('POST', '/revocations', { jti: jtiOf(revokedDuring), reason: 'during the NATS outage' }), 12_000);
    assert.equal(revoke.status, 201, JSON.stringify(revoke.body));
    const kill = await withinOrHung(c.admin('POST', '/kill', { scope: 'nhi', target: bob!.id, reason: 'during the NATS outage' }, proxyAdmin), 12_000);
    assert.equal(kill.status, 201, JSON.stringify(kill.body));
    const lift = await withinOrHung(c.admin('DELETE', `/kill/${kill.body.id}`, undefined, proxyAdmin), 12_000);
    assert.equal(lift.status, 200, JSON.stringify(lift.body));
    const disable = await withinOrHung(c.admin('POST', `/nhis/${bob!.id}/disable`, { reason: 'during the NATS outage' }, proxyAdmin), 12_000);
    assert.equal(disable.status, 200, JSON.stringify(disable.body));
    const enable = await withinOrHung(c.admin('POST', `/nhis/${bob!.id}/enable`, { reason: 'during the NATS outage' }, proxyAdmin), 12_000);
    assert.equal(enable.status, 200, JSON.stringify(enable.body));
    const stepDown = await withinOrHung(c.admin('POST', '/signals', { nhi: bob!.id, action: 'step_down', reason: 'during the NATS outage', fallback_tier: 'read' }, proxyAdmin), 12_000);
    assert.equal(stepDown.status, 201, JSON.stringify(stepDown.body));
    const liftRestriction = await withinOrHung(c.admin('POST', `/restrictions/${bob!.id}/lift`, undefined, proxyAdmin), 12_000);
    assert.equal(liftRestriction.status, 200, JSON.stringify(liftRestriction.body));

    // The revocation made during the outage is enforced at every proxy while NATS is still down
    // (each reloads from the store every 5 s), and from then on never passes again.
    const enforcedAt = await Promise.all(c.proxies.map(async (p) => {
      await until(async () => (await callTool(p, revokedDuring)).status === 401, 15_000, `the revocation made during the outage at ${p.url}`);
      return Date.now();
    }));
    assert.ok(!(await busConnected(c.broker)), 'NATS was still down when every proxy enforced it');
    const watch = c.proxies.map(async (p) => (await callTool(p, revokedDuring)).status);
    assert.deepEqual(await Promise.all(watch), c.proxies.map(() => 401));

    await c.nats.start();
    const upAt = Date.now();
    for (const i of [c.broker, ...c.proxies]) await until(() => busConnected(i), 20_000, `${i.role} ${i.url} back on the bus`);
    for (const p of c.proxies) {
      assert.equal((await callTool(p, token)).status, 200);
      assert.equal((await callTool(p, revokedDuring)).status, 401);
      assert.equal((await callTool(p, refused)).status, 401);
    }
    assert.equal((await c.admin('POST', '/revocations', { jti: 'after-the-outage', reason: 'NATS back' })).status, 201);

    const answers = await load.stop();
    t.diagnostic(`all answers ${JSON.stringify(tally(answers))}; sent during the outage ${JSON.stringify(tally(answers.filter((a) => a.sentAt >= downAt && a.sentAt < upAt)))}; enforced ${enforcedAt.map((x) => x - downAt).join(', ')} ms into the outage`);
    assert.deepEqual(crashedInstances(c.started), [], 'no instance exited');
    assert.deepEqual(load.unexpected('refused', [401]), [], 'the revoked token was never allowed');
    assert.deepEqual(load.unexpected('call', [200]), [], 'calls were served throughout (the staleness bound is not reached)');
    assert.deepEqual(load.unexpected('admin', [201]), [], 'every change was acknowledged, outage or not');
    assert.ok(answers.some((a) => a.kind === 'admin' && a.sentAt >= downAt && a.doneAt < upAt), 'changes were acknowledged during the outage');
    assert.deepEqual(await lostAcknowledged(c.pg, answers), [], 'every acknowledged change and its audit record are in the store');
    const audited = await c.pg.query<{ type: string }>(`select type from audit where type in ('kill.engaged', 'kill.lifted', 'nhi.disabled', 'nhi.enabled', 'restriction.added', 'restriction.lifted')`);
    assert.deepEqual([...new Set(audited.map((r) => r.type))].sort(), ['kill.engaged', 'kill.lifted', 'nhi.disabled', 'nhi.enabled', 'restriction.added', 'restriction.lifted']);
    const verify = await auditVerify(c.broker.url, c.token);
    assert.equal(verify.code, 0, verify.out);
  });
});
