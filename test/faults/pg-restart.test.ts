import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Load, auditVerify, callTool, crashedInstances, jtiOf, lostAcknowledged, startFaultCluster, tally, tokenRequest, until } from './harness.js';

/**
 * Issue 15, item 12: PostgreSQL stopped (`pg_ctl -m fast stop`) for 10 s under load, then
 * started again. No instance exits; during the outage nothing is allowed that should be refused
 * and a change the store cannot take is answered 503 (never acknowledged and lost); afterwards
 * every instance serves again, and every acknowledged change is in the store with its audit record.
 */
describe('faults: PostgreSQL restart under load', { timeout: 150_000 }, () => {
  it('no instance exits; 503 during, recovery after, nothing acknowledged lost', async (t) => {
    const c = await startFaultCluster({ proxies: 2, signals: true });
    t.after(() => c.close());
    const [alice, bob] = c.agents;
    const token = await c.issue(alice!);
    const refused = await c.issue(bob!);
    assert.equal((await c.admin('POST', '/revocations', { jti: jtiOf(refused), reason: 'refused throughout' })).status, 201);
    for (const p of c.proxies) {
      await until(async () => (await callTool(p, refused)).status === 401, 15_000, `the revocation at ${p.url}`);
      assert.equal((await callTool(p, token)).status, 200);
    }

    const load = new Load(c, { token, refused, callers: 3, operators: 2 }).start();
    await until(() => load.answers.filter((a) => a.kind === 'admin' && a.status === 201).length >= 4, 15_000, 'acknowledged changes before the outage');

    await c.pg.stop();
    const downAt = Date.now();
    // A change while the store is down is refused, 503, not acknowledged.
    const during = await c.admin('POST', '/revocations', { jti: 'made-during-the-outage', reason: 'store down' });
    assert.equal(during.status, 503, JSON.stringify(during.body));
    assert.equal(during.body.error, 'temporarily_unavailable');
    // A token cannot be issued (its record and the assertion's replay check need the store): 503, not a token nobody can revoke.
    assert.deepEqual(await tokenRequest(alice!, c.broker), { status: 503, error: 'temporarily_unavailable' });
    // The probes: live, not ready (the store check fails).
    for (const i of [c.broker, ...c.proxies]) {
      assert.equal((await fetch(`${i.url}/healthz`)).status, 200);
      const ready = await fetch(`${i.url}/readyz`);
      assert.equal(ready.status, 503);
      assert.equal(((await ready.json()) as { checks: { store: { ok: boolean } } }).checks.store.ok, false);
    }
    // The store stays down for 10 s, the load running.
    await until(() => Date.now() - downAt >= 10_000, 12_000, 'ten seconds of outage', 200);
    assert.deepEqual(crashedInstances(c.started), [], 'no instance exits while the store is down');
    await c.pg.start();

    // Recovery: every proxy serves the valid token, the broker issues and takes changes again.
    for (const p of c.proxies) await until(async () => (await callTool(p, token)).status === 200, 30_000, `${p.url} serving again`);
    await until(async () => (await c.admin('POST', '/revocations', { jti: 'after-the-outage', reason: 'store back' })).status === 201, 30_000, 'the admin API taking changes again');
    const fresh = await until(() => c.issue(alice!), 30_000, 'a token issued again');
    assert.equal((await callTool(c.proxies[0]!, fresh)).status, 200);
    await until(() => load.answers.filter((a) => a.doneAt > Date.now() - 2_000 && a.kind === 'call' && a.status === 200).length > 0, 10_000, 'the load served again');

    const answers = await load.stop();
    t.diagnostic(`all answers ${JSON.stringify(tally(answers))}; sent during the outage ${JSON.stringify(tally(answers.filter((a) => a.sentAt >= downAt && a.sentAt < downAt + 10_000)))}`);
    assert.deepEqual(crashedInstances(c.started), [], 'no instance exited');
    assert.deepEqual(load.unexpected('refused', [401, 503]), [], 'the revoked token was never allowed');
    assert.deepEqual(load.unexpected('call', [200, 503]), [], 'a call is served or refused 503, nothing else');
    assert.deepEqual(load.unexpected('admin', [201, 503]), [], 'a change is acknowledged or refused 503, nothing else');
    assert.deepEqual(await lostAcknowledged(c.pg, answers), [], 'every acknowledged change and its audit record are in the store');
    const verify = await auditVerify(c.broker.url, c.token);
    assert.equal(verify.code, 0, verify.out);
  });
});
