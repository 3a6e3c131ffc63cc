// A reference point for bench/proxy: the passthrough (passthrough.mjs, the same code) plus the
// one thing every Mandate call must leave behind, its audit record, written by Mandate's own
// AuditLog into Mandate's own SQLite store (the same schema, hash chain, batching and writer
// thread as mandate-proxy.mjs), with the fields the proxy records. No token check, no policy,
// no bus, no metrics. What (b) and (c) could reach if every check cost nothing; the gap between
// this and (a) is the price of a durable, indexed, chained audit row per call on this machine.
// UPSTREAM is the upstream's origin. Prints one JSON line when it listens.
import { createServer } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import { backHeaders, forwardHeaders } from './forward.mjs';
import { openStore } from '../../dist/src/store/index.js';
import { AuditLog } from '../../dist/src/audit/audit-log.js';
import { newTraceId } from '../../dist/src/core/ids.js';

const upstream = process.env.UPSTREAM;
if (!upstream) throw new Error('UPSTREAM is required');
const pool = new Pool(upstream, { connections: 128, keepAliveTimeout: 30_000, pipelining: 1 });
const dataDir = mkdtempSync(join(tmpdir(), 'mandate-bench-floor-'));
const store = await openStore({ driver: 'sqlite', sqlitePath: join(dataDir, 'mandate.db') });
await store.migrate();
const audit = new AuditLog({ store });

const server = createServer((req, res) => {
  const started = performance.now();
  const m = /^\/tools\/([^/]+)(\/[^?]*)?(\?.*)?$/.exec(req.url ?? '');
  if (!m) {
    res.writeHead(404).end();
    return;
  }
  const traceId = newTraceId(Date.now());
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
  let status = 0;
  pool.stream(
    { method: req.method, path: `${m[2] || '/'}${m[3] ?? ''}`, headers: forwardHeaders(req.rawHeaders), body: hasBody ? req : undefined },
    ({ statusCode, headers }) => {
      status = statusCode;
      res.writeHead(statusCode, backHeaders(headers));
      return res;
    },
  ).then(() => {
    // The shape of the proxy's tool.called record (proxy.ts, record()): the same columns and data keys.
    audit.record({
      type: 'tool.called', actor: 'bench-agent', subject: 'bench-agent', tool: m[1], decision: 'allow', traceId,
      data: {
        method: req.method, path: m[2], action: 'get_item', args_digest: 'sha-256=:x3Xnt1ft5jDNCqERO9ECZhqziCnKUqZCKreChi8mhkY=:', reason: 'allowed',
        jti: 'Q2l3cGx4cW1yZ2ZpZ3Zt', on_behalf_of: null, run_id: null, binding: 'bearer', approval: null, policies: ['mandate.base'],
        client_ip: req.socket.remoteAddress, proof_jkt: null, cnf_jkt: null, latency_ms: performance.now() - started, upstream_status: status, response_bytes: 88,
      },
    });
  }, () => {
    if (!res.headersSent) res.writeHead(502).end();
    else res.destroy();
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ server: 'audit-floor', url: `http://127.0.0.1:${server.address().port}` })}\n`);
});
let closing = false;
const stop = () => {
  if (closing) return;
  closing = true;
  server.close(async () => {
    try {
      await pool.close();
      await audit.close();
      await store.close();
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
      process.exit(0);
    }
  });
  server.closeAllConnections();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
