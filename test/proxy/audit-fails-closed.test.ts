import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import pg from 'pg';
import { startTestApp, PG_URL, type TestApp } from '../helpers/app.js';
import { agentNhi, clientCredentialsToken, testAgent, type TestAgent } from '../helpers/agent.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import { newKek, spawnInstance, writeConfig, type Instance } from '../helpers/cluster.js';
import { openStore } from '../../src/store/index.js';
import { verifyAuditChain } from '../../src/audit/index.js';
import { eventually } from '../helpers/wait.js';

/**
 * No audit, no request (issue 15, item 3): the fact of a call is durable before the call is
 * forwarded; when the log cannot take it the call is refused with 503 and nothing reaches the
 * tool; a caller that hangs up still leaves the outcome; `kill -9` under load never loses the
 * record of a call the tool executed.
 */
const PROFILES = { profiles: [{ name: 'read', ttl: '10m', binding: 'optional' as const }, { name: 'write', ttl: '5m', binding: 'optional' as const }] };

describe('the proxy audits a call durably before it forwards it', () => {
  let rec: RecordingUpstream;
  let alice: TestAgent;
  before(async () => {
    rec = await startRecordingUpstream();
    alice = await testAgent('alice');
  });
  after(async () => rec.close());

  const config = (extra: Record<string, unknown> = {}) => ({
    nhis: [agentNhi(alice)],
    tools: [{ id: 'rec', kind: 'http' as const, upstream: rec.url, actions: [{ name: 'list_items', method: 'GET' as const, path: '/items', tier: 'read' }] }],
    grants: [{ nhi: 'alice', tool: 'rec', actions: ['*'] }],
    tokens: PROFILES,
    ...extra,
  });

  it('a forwarded call has its tool.call_started record before its outcome, with the same facts and trace', async () => {
    const t = await startTestApp(undefined, config());
    try {
      const iss = t.app.issuer;
      const tok = (await clientCredentialsToken(iss, alice, `${iss}/tools/rec`, 'list_items')).access_token;
      const traceId = 'a'.repeat(31) + '1';
      const r = await fetch(`${iss}/tools/rec/items`, { headers: { authorization: `Bearer ${tok}`, traceparent: `00-${traceId}-${'b'.repeat(16)}-01` } });
      assert.equal(r.status, 200);
      await t.app.audit.flush();
      const rows = await t.app.store.queryAudit({ traceId, order: 'asc' });
      assert.deepEqual(rows.map((x) => x.type), ['tool.call_started', 'tool.called']);
      const [started, outcome] = rows as [typeof rows[0], typeof rows[0]];
      assert.ok(started.seq < outcome.seq);
      for (const k of ['action', 'args_digest', 'jti', 'method', 'path']) assert.deepEqual(started.data[k], outcome.data[k], k);
      assert.equal(started.actor, 'alice');
      assert.equal(started.data.action, 'list_items');
    } finally {
      await t.app.close();
    }
  });

  it('when the audit log cannot commit, the call is refused with 503 and never reaches the tool; it recovers after', async () => {
    // A stuck audit store: another session holds the chain head's row lock, so no batch can commit.
    const t = await startTestApp({ store: 'postgres', bus: 'memory' }, config({ proxy: { audit_timeout: 1 } }));
    const schema = decodeURIComponent(String(t.app.config.store.postgres_url)).match(/search_path=(\w+)/)![1]!;
    const locker = new pg.Client({ connectionString: PG_URL });
    await locker.connect();
    try {
      const iss = t.app.issuer;
      const tok = (await clientCredentialsToken(iss, alice, `${iss}/tools/rec`, 'list_items')).access_token;
      const get = () => fetch(`${iss}/tools/rec/items?n=${Math.random()}`, { headers: { authorization: `Bearer ${tok}` } });
      assert.equal((await get()).status, 200);
      await t.app.audit.flush();
      rec.seen.length = 0;

      await locker.query('BEGIN');
      await locker.query(`SELECT * FROM ${schema}.audit_head FOR UPDATE`);
      const refused = await Promise.all([get(), get(), get()]);
      for (const r of refused) {
        assert.equal(r.status, 503);
        const body = (await r.json()) as { error: string; error_description: string };
        assert.equal(body.error, 'temporarily_unavailable');
        assert.match(body.error_description, /audit log cannot record this call/);
        assert.ok(r.headers.get('retry-after'));
      }
      assert.equal(rec.seen.length, 0, 'nothing reached the tool while its record could not be committed');

      await locker.query('ROLLBACK');
      const ok = await eventually(async () => {
        const r = await get();
        return r.status === 200 ? r : undefined;
      }, 'the proxy to forward again', 10_000);
      assert.equal(ok.status, 200);
      await t.app.audit.flush();
      // The refused calls' records say so: started, then refused because the log could not take it.
      const denied = await t.app.store.queryAudit({ type: 'tool.call_denied', limit: 10 });
      assert.equal(denied.filter((d) => /audit log cannot record/.test(String(d.data.reason))).length, 3);
      assert.equal((await verifyAuditChain(t.app.store)).ok, true);
    } finally {
      await locker.end().catch(() => undefined);
      await t.app.close();
    }
  });

  it('an MCP call whose caller hangs up before the tool answers leaves its start and its outcome', async () => {
    // An MCP server that answers after a pause with an event stream that never ends.
    let closedUpstream = 0;
    const slow: Server = createServer((req, res) => {
      req.resume();
      req.on('end', () => setTimeout(() => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const tick = setInterval(() => res.write('event: message\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{}}\n\n'), 50);
        res.on('close', () => {
          clearInterval(tick);
          closedUpstream++;
        });
      }, 300));
    });
    await new Promise<void>((r) => slow.listen(0, '127.0.0.1', r));
    const t = await startTestApp(undefined, {
      ...config(),
      tools: [{ id: 'docs', kind: 'mcp', upstream: `http://127.0.0.1:${(slow.address() as AddressInfo).port}/mcp`, actions: [{ name: 'search_docs', tier: 'read' }] }],
      grants: [{ nhi: 'alice', tool: 'docs', actions: ['*'] }],
    });
    try {
      const iss = t.app.issuer;
      const tok = (await clientCredentialsToken(iss, alice, `${iss}/tools/docs`, 'search_docs')).access_token;
      const traceId = 'c'.repeat(31) + '2';
      const ac = new AbortController();
      const pending = fetch(`${iss}/tools/docs`, {
        method: 'POST', signal: ac.signal,
        headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', traceparent: `00-${traceId}-${'d'.repeat(16)}-01` },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'search_docs', arguments: { query: 'x' } } }),
      }).catch((e: unknown) => e);
      // The start is committed before the tool has the call, so it is there while the caller waits.
      await eventually(async () => ((await t.app.store.queryAudit({ traceId, type: 'tool.call_started' })).length > 0 ? true : undefined), 'tool.call_started', 5_000);
      ac.abort();
      await pending;
      const outcome = await eventually(async () => {
        await t.app.audit.flush();
        const rows = await t.app.store.queryAudit({ traceId, type: 'tool.called' });
        return rows[0];
      }, 'the outcome record', 5_000);
      assert.equal(outcome.data.action, 'search_docs');
      await eventually(() => (closedUpstream > 0 ? true : undefined), 'the upstream stream to be closed (no leak)', 5_000);
    } finally {
      await t.app.close();
      slow.closeAllConnections();
      await new Promise<void>((r) => slow.close(() => r()));
    }
  });

  it('kill -9 under load loses no record of a call the tool executed', async () => {
    const executed = new Set<string>();
    const upstream: Server = createServer((req, res) => {
      const trace = /^00-([0-9a-f]{32})-/.exec(String(req.headers.traceparent ?? ''))?.[1];
      if (trace) executed.add(trace);
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const path = writeConfig({
      server: { host: '127.0.0.1', port: 0 },
      store: { driver: 'sqlite', sqlite_path: 'mandate.db' },
      bus: { driver: 'memory' },
      keys: { kek: 'env:KILL_KEK' },
      log: { level: 'warn' },
      tokens: PROFILES,
      nhis: [agentNhi(alice)],
      tools: [{ id: 'rec', kind: 'http', upstream: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`, actions: [{ name: 'list_items', method: 'GET', path: '/items', tier: 'read' }] }],
      grants: [{ nhi: 'alice', tool: 'rec', actions: ['*'] }],
    });
    let instance: Instance | undefined;
    try {
      instance = await spawnInstance('all', path, { KILL_KEK: newKek() });
      const iss = instance.url;
      const tok = (await clientCredentialsToken(iss, alice, `${iss}/tools/rec`, 'list_items')).access_token;
      let stop = false;
      let answered = 0;
      const worker = async (w: number) => {
        for (let i = 0; !stop; i++) {
          const trace = `${w.toString(16).padStart(8, '0')}${i.toString(16).padStart(24, '0')}`;
          try {
            const r = await fetch(`${iss}/tools/rec/items`, { headers: { authorization: `Bearer ${tok}`, traceparent: `00-${trace}-${'e'.repeat(16)}-01` } });
            await r.arrayBuffer();
            if (r.status === 200) answered++;
          } catch {
            return; // the process is gone
          }
        }
      };
      const load = Array.from({ length: 12 }, (_, w) => worker(w + 1));
      await eventually(() => (answered >= 300 ? true : undefined), '300 answered calls', 30_000);
      process.kill(instance.pid, 'SIGKILL');
      stop = true;
      await Promise.all(load);
      await instance.stop();
      assert.ok(executed.size >= 300, `the tool executed ${executed.size} calls`);

      const store = await openStore({ driver: 'sqlite', sqlitePath: join(path, '..', 'mandate.db') });
      try {
        const started = new Set<string>();
        for (let from = 1; ; ) {
          const page = await store.readAudit(from, 1000);
          if (page.length === 0) break;
          for (const r of page) if (r.type === 'tool.call_started' && r.traceId) started.add(r.traceId);
          from = page[page.length - 1]!.seq + 1;
        }
        const missing = [...executed].filter((id) => !started.has(id));
        assert.deepEqual(missing, [], `${missing.length} of ${executed.size} executed calls have no record`);
        assert.equal((await verifyAuditChain(store)).ok, true, 'the chain is intact after kill -9');
      } finally {
        await store.close();
      }
    } finally {
      await instance?.stop();
      upstream.closeAllConnections();
      await new Promise<void>((r) => upstream.close(() => r()));
    }
  });
});
