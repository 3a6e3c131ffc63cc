import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BACKENDS, startTestApp, type TestApp } from './helpers/app.js';
import { openStore } from '../src/store/index.js';
import { buildConfig, silentLogger } from '../src/core/index.js';
import { startApp } from '../src/app.js';
import type { BusMessage } from '../src/core/index.js';

/** The tools' credentials: the proxy resolves them at start (a missing one fails start-up). */
const ENV = { TICKETS_TOKEN: 'test-tickets-credential' };
const CONFIG = {
  nhis: [
    { id: 'ci-runner', class: 'runner' as const, owner: 'platform@example.com', system: 'ci', tier: 'write' as const,
      credentials: [{ type: 'static_secret' as const, secret: 'env:LEGACY', exception: { ticket: 'SEC-1', expires: '2099-01-01' } }] },
  ],
  tools: [
    { id: 'tickets', kind: 'http' as const, upstream: 'http://127.0.0.1:9', credential: { type: 'bearer' as const, value: 'env:TICKETS_TOKEN' },
      actions: [
        { name: 'list_tickets', method: 'GET' as const, path: '/tickets', tier: 'read' },
        { name: 'delete_ticket', method: 'DELETE' as const, path: '/tickets/{id}', tier: 'destructive' },
      ] },
  ],
  grants: [{ nhi: 'ci-runner', tool: 'tickets', actions: ['list_tickets'], change_ref: 'PR-1' }],
};

for (const backend of BACKENDS) {
  describe(`app on ${backend.store} + ${backend.bus}`, () => {
    let t: TestApp;
    before(async () => {
      t = await startTestApp(backend, CONFIG, ENV);
    });
    after(async () => {
      await t.app.close();
    });

    it('answers /healthz, /readyz and /metrics', async () => {
      const h = await fetch(`${t.url}/healthz`);
      assert.equal(h.status, 200);
      assert.deepEqual(await h.json(), { status: 'ok' });
      const r = await fetch(`${t.url}/readyz`);
      assert.equal(r.status, 200);
      const rb = (await r.json()) as { checks: Record<string, { ok: boolean }> };
      assert.equal(rb.checks.store!.ok, true);
      assert.equal(rb.checks.bus!.ok, true);
      const m = await fetch(`${t.url}/metrics`);
      assert.equal(m.status, 200);
      const text = await m.text();
      assert.match(text, /^# TYPE mandate_http_requests_total counter$/m);
      assert.match(text, /mandate_http_requests_total\{route="\/healthz",method="GET",status="200"\} 1/);
      assert.match(text, /^mandate_bus_connected 1$/m);
    });

    it('counts every answer once in mandate_http_requests_total, across scrapes', async () => {
      const count = async (route: string, status: number) => {
        const text = await (await fetch(`${t.url}/metrics`)).text();
        const m = new RegExp(`^mandate_http_requests_total\\{route="${route}",method="GET",status="${status}"\\} (\\d+)$`, 'm').exec(text);
        return m ? Number(m[1]) : 0;
      };
      const before = await count('/readyz', 200);
      const missing = await count('/nope', 404);
      for (let i = 0; i < 3; i++) assert.equal((await fetch(`${t.url}/readyz`)).status, 200);
      assert.equal((await fetch(`${t.url}/nope`)).status, 404);
      assert.equal(await count('/readyz', 200), before + 3);
      assert.equal(await count('/readyz', 200), before + 3, 'a scrape adds nothing');
      await fetch(`${t.url}/readyz`);
      assert.equal(await count('/readyz', 200), before + 4);
      assert.equal(await count('/nope', 404), 0, 'unmatched paths are one label');
      assert.equal(missing, 0);
      assert.ok((await count('unmatched', 404)) >= 1);
    });

    it('publishes the JWKS', async () => {
      const r = await fetch(`${t.url}/oauth/jwks`);
      assert.equal(r.status, 200);
      const jwks = (await r.json()) as { keys: Record<string, unknown>[] };
      assert.equal(jwks.keys.length, 1);
      assert.equal(jwks.keys[0]!.alg, 'ES256');
      assert.equal(jwks.keys[0]!.d, undefined, 'no private part');
    });

    it('describes the admin API in OpenAPI', async () => {
      const r = await fetch(`${t.url}/admin/v1/openapi.json`);
      const doc = (await r.json()) as { openapi: string; paths: Record<string, Record<string, unknown>> };
      assert.equal(doc.openapi, '3.1.0');
      assert.ok(doc.paths['/admin/v1/nhis']!.get);
      assert.ok(doc.paths['/admin/v1/nhis']!.post);
      assert.ok(doc.paths['/admin/v1/nhis/{id}/disable']!.post);
      assert.ok(doc.paths['/admin/v1/grants']!.post);
    });

    it('refuses the admin API without a valid credential (RFC 6750 §3)', async () => {
      const none = await fetch(`${t.url}/admin/v1/nhis`);
      assert.equal(none.status, 401);
      assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer error="invalid_token"/);
      const forged = t.token.slice(0, -4) + 'AAAA';
      const wrong = await fetch(`${t.url}/admin/v1/nhis`, { headers: { authorization: `Bearer ${forged}` } });
      assert.equal(wrong.status, 401);
    });

    it('loads NHIs, tools and grants from config', async () => {
      const r = await t.admin('GET', '/nhis/ci-runner');
      assert.equal(r.status, 200);
      assert.equal(r.body.source, 'config');
      assert.equal(r.body.credentials[0].type, 'static_secret');
      assert.equal(r.body.credentials[0].exception_ticket, 'SEC-1');
      assert.equal(JSON.stringify(r.body).includes('env:LEGACY'), false, 'the secret reference is not shown');
      assert.deepEqual(r.body.grants.map((g: { tool: string }) => g.tool), ['tickets']);
      const tools = await t.admin('GET', '/tools');
      assert.equal(tools.body.tools[0].id, 'tickets');
      assert.equal(JSON.stringify(tools.body).includes('TICKETS_TOKEN'), true, 'a reference, not a value');
    });

    it('adds, changes and disables NHIs; every change is audited and published', async () => {
      const seen: BusMessage[] = [];
      const sub = await t.app.bus.subscribe('inventory.>', (m) => void seen.push(m));
      try {
        const add = await t.admin('POST', '/nhis', { id: 'triage-agent', class: 'agent', owner: 'sec@example.com', system: 'soc', tier: 'read' });
        assert.equal(add.status, 201);
        assert.equal(add.body.source, 'api');
        assert.equal((await t.admin('POST', '/nhis', { id: 'triage-agent', class: 'agent', owner: 'x', system: 'y', tier: 'read' })).status, 409);
        const bad = await t.admin('POST', '/nhis', { id: 'Bad Id', class: 'robot', owner: 'x', system: 'y', tier: 'read' });
        assert.equal(bad.status, 400);
        assert.match(bad.body.error_description, /body\.id/);
        assert.match(bad.body.error_description, /body\.class/);
        const unknownField = await t.admin('POST', '/nhis', { id: 'x1', class: 'agent', owner: 'x', system: 'y', tier: 'read', admin: true });
        assert.equal(unknownField.status, 400);
        const patch = await t.admin('PATCH', '/nhis/triage-agent', { tier: 'write' });
        assert.equal(patch.body.tier, 'write');
        const dis = await t.admin('POST', '/nhis/triage-agent/disable', { reason: 'suspicious' });
        assert.equal(dis.body.status, 'disabled');
        const grant = await t.admin('POST', '/grants', { nhi: 'triage-agent', tool: 'tickets', actions: ['list_tickets'] });
        assert.equal(grant.status, 201);
        const unknownAction = await t.admin('POST', '/grants', { nhi: 'triage-agent', tool: 'tickets', actions: ['drop_database'] });
        assert.equal(unknownAction.status, 400);
        assert.match(unknownAction.body.error_description, /drop_database/);

        const audit = await t.admin('GET', '/audit?subject=triage-agent&order=asc');
        assert.equal(audit.status, 400, 'unknown query parameter refused');
        const a = await t.admin('GET', '/audit?subject=triage-agent');
        // Governance files a finding about the API grant without a change reference (asynchronously); it is not an inventory change.
        const changes = a.body.records.filter((r: { type: string }) => !r.type.startsWith('detection.'));
        const types = changes.map((r: { type: string }) => r.type).sort();
        assert.deepEqual(types, ['grant.added', 'nhi.created', 'nhi.disabled', 'nhi.updated']);
        assert.ok(changes.every((r: { actor: string }) => r.actor.startsWith('admin:')));

        const deadline = Date.now() + 5000;
        while (seen.filter((m) => m.data && (m.data as { nhi?: string }).nhi === 'triage-agent').length < 4 && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 20));
        }
        const subjects = seen.filter((m) => (m.data as { nhi?: string }).nhi === 'triage-agent').map((m) => m.subject).sort();
        assert.deepEqual(subjects, ['inventory.grant.added', 'inventory.nhi.created', 'inventory.nhi.disabled', 'inventory.nhi.updated']);
      } finally {
        await sub.close();
      }
    });

    it('records a static secret only as a current exception', async () => {
      const expired = await t.admin('POST', '/nhis/ci-runner/credentials', { type: 'static_secret', secret_ref: 'env:OLD', exception_ticket: 'SEC-2', exception_expires: '2001-01-01' });
      assert.equal(expired.status, 400);
      assert.match(expired.body.error_description, /already ended/);
      const inline = await t.admin('POST', '/nhis/ci-runner/credentials', { type: 'static_secret', secret_ref: 'hunter2', exception_ticket: 'SEC-2', exception_expires: '2099-01-01' });
      assert.equal(inline.status, 400);
      const ok = await t.admin('POST', '/nhis/ci-runner/credentials', { type: 'static_secret', secret_ref: 'env:NEW', exception_ticket: 'SEC-3', exception_expires: '2099-01-01' });
      assert.equal(ok.status, 201);
      assert.equal(ok.body.exception_ticket, 'SEC-3');
    });

    it('enforces roles: a viewer reads but cannot change', async () => {
      const created = await t.admin('POST', '/admin-credentials', { name: 'auditor', role: 'viewer' });
      assert.equal(created.status, 201);
      const viewer = created.body.token as string;
      const read = await fetch(`${t.url}/admin/v1/nhis`, { headers: { authorization: `Bearer ${viewer}` } });
      assert.equal(read.status, 200);
      const write = await fetch(`${t.url}/admin/v1/nhis/ci-runner/disable`, {
        method: 'POST', headers: { authorization: `Bearer ${viewer}`, 'content-type': 'application/json' }, body: '{}',
      });
      assert.equal(write.status, 403);
      const list = await t.admin('GET', '/admin-credentials');
      assert.equal(JSON.stringify(list.body).includes(viewer.split('.')[2]!), false, 'secrets never listed');
    });

    it('refuses oversized and duplicate-key bodies', async () => {
      const big = await fetch(`${t.url}/admin/v1/nhis`, {
        method: 'POST', headers: { authorization: `Bearer ${t.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ id: 'x', description: 'a'.repeat(70 * 1024) }),
      });
      assert.equal(big.status, 413);
      const dup = await fetch(`${t.url}/admin/v1/nhis/ci-runner/disable`, {
        method: 'POST', headers: { authorization: `Bearer ${t.token}`, 'content-type': 'application/json' },
        body: '{"reason":"a","reason":"b"}',
      });
      assert.equal(dup.status, 400);
      assert.match(((await dup.json()) as { error_description: string }).error_description, /duplicate/);
    });

    it('keeps the audit chain verifiable', async () => {
      const r = await t.admin('POST', '/audit/verify');
      assert.equal(r.status, 200);
      assert.equal(r.body.ok, true);
      assert.ok(r.body.checked > 5);
    });
  });
}

describe('app lifecycle', () => {
  it('flushes every audit record on graceful shutdown', async () => {
    const t = await startTestApp(BACKENDS[0]!, CONFIG, ENV);
    for (let i = 0; i < 300; i++) t.app.audit.record({ type: 'test.event', actor: 'test', subject: `s${i}`, tool: null, decision: null, traceId: null, data: { i } });
    const path = t.app.config.store.sqlite_path;
    await t.app.close();
    const store = await openStore({ driver: 'sqlite', sqlitePath: path });
    try {
      const rows = await store.queryAudit({ type: 'test.event', limit: 1000 });
      assert.equal(rows.length, 300);
    } finally {
      await store.close();
    }
  });

  it('keeps an operator’s disable across a restart with the same config', async () => {
    const t = await startTestApp(BACKENDS[0]!, CONFIG, ENV);
    assert.equal((await t.admin('POST', '/nhis/ci-runner/disable', { reason: 'kill' })).body.status, 'disabled');
    await t.app.close();
    const app2 = await startApp({
      config: buildConfig({ ...CONFIG, server: { port: 0 }, store: { driver: 'sqlite', sqlite_path: t.app.config.store.sqlite_path }, log: { level: 'silent' } }, { env: {} }),
      env: ENV, dataDir: t.dataDir, logger: silentLogger(), onBootstrapCredential: () => assert.fail('no second bootstrap credential'),
    });
    try {
      const nhi = await app2.store.getNhi('ci-runner');
      assert.equal(nhi?.status, 'disabled');
    } finally {
      await app2.close();
    }
  });

  it('a proxy-only instance builds no authorization server: no broker, no /oauth/*, yet it enforces revocations and kill switches', async () => {
    const t = await startTestApp(BACKENDS[0]!, CONFIG, ENV);
    await t.app.close();
    const app2 = await startApp({
      config: buildConfig({ ...CONFIG, server: { port: 0 }, store: { driver: 'sqlite', sqlite_path: t.app.config.store.sqlite_path }, log: { level: 'silent' } }, { env: {} }),
      role: 'proxy', env: ENV, dataDir: t.dataDir, logger: silentLogger(),
    });
    try {
      assert.equal(app2.broker, undefined);
      assert.ok(app2.proxy, 'the proxy runs');
      const token = await fetch(`${app2.url}/oauth/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=client_credentials' });
      assert.equal(token.status, 404);
      assert.equal((await fetch(`${app2.url}/.well-known/oauth-authorization-server`)).status, 404);
      // Enforcement is its own capability: the proxy-only instance holds the revocation state.
      await app2.enforcement.kill('nhi', 'ci-runner', 'test', 'admin:test');
      assert.equal(app2.enforcement.revocations.killed('ci-runner', 'tickets'), 'nhi_killed');
    } finally {
      await app2.close();
    }
  });

  it('disables an NHI removed from config and removes its config grants', async () => {
    const t = await startTestApp(BACKENDS[0]!, CONFIG, ENV);
    await t.app.close();
    const app2 = await startApp({
      config: buildConfig({ tools: CONFIG.tools, server: { port: 0 }, store: { driver: 'sqlite', sqlite_path: t.app.config.store.sqlite_path }, log: { level: 'silent' } }, { env: {} }),
      env: ENV, dataDir: t.dataDir, logger: silentLogger(),
    });
    try {
      assert.equal((await app2.store.getNhi('ci-runner'))?.status, 'disabled');
      assert.deepEqual(await app2.store.listGrants({ nhiId: 'ci-runner' }), []);
    } finally {
      await app2.close();
    }
  });

  it('reports not ready (503) when the store is unreachable, while /healthz still answers', async () => {
    const t = await startTestApp(BACKENDS[0]!, CONFIG, ENV);
    try {
      await t.app.store.close();
      const r = await fetch(`${t.url}/readyz`);
      assert.equal(r.status, 503);
      const body = (await r.json()) as { status: string; checks: { store: { ok: boolean } } };
      assert.equal(body.status, 'not_ready');
      assert.equal(body.checks.store.ok, false);
      assert.equal((await fetch(`${t.url}/healthz`)).status, 200);
    } finally {
      await t.app.close();
    }
  });

  it('refuses to start in production without a key-encryption key', async () => {
    await assert.rejects(
      startTestApp(BACKENDS[0]!, {}, { NODE_ENV: 'production' }),
      (err: Error & { code?: string }) => err.code === 'ERR_KEK_REQUIRED',
    );
  });
});
