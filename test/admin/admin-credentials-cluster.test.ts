import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { freshPgSchemaUrl } from '../helpers/app.js';
import { adminCall, clusterFixture, newKek, spawnInstance, writeConfig } from '../helpers/cluster.js';
import { waitFor } from '../signals/helpers.js';

/**
 * Issue 15 item 4, "taking effect at once on every instance": two Mandate processes on one
 * PostgreSQL and one NATS; an admin credential revoked (or given an end) through one is refused
 * by the other on its next request, bearer and console session alike.
 */
describe('admin credentials across instances (PostgreSQL + NATS, separate processes)', { timeout: 180_000 }, () => {
  const fx = clusterFixture();

  it('revoked on one instance: the other refuses its next request (API and console session); an end set on one is kept by the other', async () => {
    const suffix = randomBytes(4).toString('hex');
    const path = writeConfig({
      server: { host: '127.0.0.1', port: 0 },
      store: { driver: 'postgres', postgres_url: await freshPgSchemaUrl(), pool_size: 3 },
      bus: { driver: 'nats', nats_servers: ['nats://127.0.0.1:4222'], stream: `A_${suffix}`, subject_prefix: `a${suffix}` },
      keys: { kek: 'env:CLUSTER_KEK' },
      log: { level: 'warn' },
      tools: [{ id: 'rec', kind: 'http', upstream: fx.rec.url, actions: [{ name: 'list_items', method: 'GET', path: '/items', tier: 'read' }] }],
    });
    const env = { CLUSTER_KEK: newKek() };
    const a = await spawnInstance('broker', path, env);
    fx.started.push(a);
    const root = await waitFor(() => a.bootstrapToken, 10_000, 'the bootstrap credential');
    const b = await spawnInstance('proxy', path, env);
    fx.started.push(b);
    assert.equal(b.bootstrapToken, undefined, 'one bootstrap credential for the deployment');

    const created = await adminCall(a.url, root, 'POST', '/admin-credentials', { name: 'auditor', role: 'viewer' });
    assert.equal(created.status, 201);
    const { id, token } = created.body as { id: string; token: string };
    assert.equal((await adminCall(b.url, token, 'GET', '/nhis')).status, 200, 'the credential works on the other instance');

    // A console session on instance B, opened with the credential.
    const signIn = await fetch(`${b.url}/ui/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ credential: token }) });
    assert.equal(signIn.status, 201);
    const cookie = signIn.headers.get('set-cookie')!.split(';')[0]!;
    assert.equal((await fetch(`${b.url}/admin/v1/whoami`, { headers: { cookie } })).status, 200);

    // An end set on A is what B enforces (read from the store, not from B's memory).
    const end = Date.now() + 3_600_000;
    assert.equal((await adminCall(a.url, root, 'POST', `/admin-credentials/${id}/expire`, { expires: new Date(end).toISOString() })).status, 200);
    assert.equal((await adminCall(b.url, root, 'GET', `/admin-credentials/${id}`)).body.expires_at, end);

    const revoked = await adminCall(a.url, root, 'POST', `/admin-credentials/${id}/revoke`, { reason: 'left' });
    assert.equal(revoked.status, 200);
    // The very next request at B: no waiting for the bus or a cache.
    assert.equal((await adminCall(b.url, token, 'GET', '/nhis')).status, 401);
    assert.equal((await fetch(`${b.url}/admin/v1/whoami`, { headers: { cookie } })).status, 401, 'its console session is refused too');
    assert.equal((await fetch(`${b.url}/ui/session`, { headers: { cookie } })).status, 401);
    const signInAgain = await fetch(`${b.url}/ui/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ credential: token }) });
    assert.equal(signInAgain.status, 401);
    assert.equal((await adminCall(a.url, token, 'GET', '/nhis')).status, 401);
  });

  it('instances starting together print one bootstrap credential between them, on the first start and on a recovery', async () => {
    const suffix = randomBytes(4).toString('hex');
    const path = writeConfig({
      server: { host: '127.0.0.1', port: 0 },
      store: { driver: 'postgres', postgres_url: await freshPgSchemaUrl(), pool_size: 3 },
      bus: { driver: 'nats', nats_servers: ['nats://127.0.0.1:4222'], stream: `C_${suffix}`, subject_prefix: `c${suffix}` },
      keys: { kek: 'env:CLUSTER_KEK' },
      log: { level: 'warn' },
    });
    const env = { CLUSTER_KEK: newKek() };
    const startTogether = async () => {
      const pair = await Promise.all([spawnInstance('all', path, env), spawnInstance('all', path, env)]);
      fx.started.push(...pair);
      return pair;
    };
    const bootstrapRecords = async (url: string, token: string) =>
      (await adminCall(url, token, 'GET', '/audit?type=admin.bootstrap_credential_created')).body.records.map((r: { data: { reason: string } }) => r.data.reason);

    const first = await startTogether();
    const root = await waitFor(() => first.find((i) => i.bootstrapToken)?.bootstrapToken, 10_000, 'the bootstrap credential');
    let creds = (await adminCall(first[0]!.url, root, 'GET', '/admin-credentials')).body.credentials as Array<{ id: string; role: string; status: string }>;
    assert.equal(creds.length, 1, 'one credential minted between them');
    assert.equal(first.filter((i) => i.bootstrapToken !== undefined).length, 1, 'one printed');

    // Recovery: the only admin credential revoked (force), then both restart together.
    assert.equal((await adminCall(first[1]!.url, root, 'POST', `/admin-credentials/${creds[0]!.id}/revoke`, { force: true })).status, 200);
    await Promise.all(first.map((i) => i.stop()));
    const second = await startTogether();
    const recovered = await waitFor(() => second.find((i) => i.bootstrapToken)?.bootstrapToken, 10_000, 'the recovery credential');
    creds = (await adminCall(second[0]!.url, recovered, 'GET', '/admin-credentials')).body.credentials;
    assert.deepEqual(creds.map((c) => c.status), ['revoked', 'active'], 'one credential minted between them on the recovery');
    assert.equal(second.filter((i) => i.bootstrapToken !== undefined).length, 1, 'one printed');
    assert.deepEqual(await bootstrapRecords(second[1]!.url, recovered), ['no_active_admin', 'first_start']);
  });

  it('a credential whose end passes is refused by every instance', async () => {
    const suffix = randomBytes(4).toString('hex');
    const path = writeConfig({
      server: { host: '127.0.0.1', port: 0 },
      store: { driver: 'postgres', postgres_url: await freshPgSchemaUrl(), pool_size: 3 },
      bus: { driver: 'nats', nats_servers: ['nats://127.0.0.1:4222'], stream: `B_${suffix}`, subject_prefix: `b${suffix}` },
      keys: { kek: 'env:CLUSTER_KEK' },
      log: { level: 'warn' },
    });
    const env = { CLUSTER_KEK: newKek() };
    const a = await spawnInstance('broker', path, env);
    fx.started.push(a);
    const root = await waitFor(() => a.bootstrapToken, 10_000, 'the bootstrap credential');
    const b = await spawnInstance('proxy', path, env);
    fx.started.push(b);
    // Ends two seconds from now: used on both before, refused on both after (bounded polling, no fixed sleep).
    const end = Date.now() + 2000;
    const c = (await adminCall(a.url, root, 'POST', '/admin-credentials', { name: 'temp', role: 'approver', expires: new Date(end).toISOString() })).body as { token: string };
    assert.equal((await adminCall(b.url, c.token, 'GET', '/whoami')).status, 200);
    await waitFor(async () => (await adminCall(b.url, c.token, 'GET', '/whoami')).status === 401 || undefined, 10_000, 'refused at B after its end');
    assert.ok(Date.now() >= end, 'not refused before its end');
    assert.equal((await adminCall(a.url, c.token, 'GET', '/whoami')).status, 401);
  });
});
