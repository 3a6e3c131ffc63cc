// The baseline of bench/proxy: what a competent engineer writes when asked for "a reverse proxy
// in Node, no checks": node:http in front of an undici Pool (keep-alive, as many connections as
// Mandate's), `/tools/<tool>/rest` forwarded to the upstream as `/rest`, method, headers (minus
// hop-by-hop ones and Host) and body streamed through, the response streamed back with
// undici's `stream` (no intermediate Readable). No token check, no policy, no audit.
// UPSTREAM is the upstream's origin. Prints one JSON line when it listens.
import { createServer } from 'node:http';
import { Pool } from 'undici';
import { backHeaders, forwardHeaders } from './forward.mjs';

const upstream = process.env.UPSTREAM;
if (!upstream) throw new Error('UPSTREAM is required');
const pool = new Pool(upstream, { connections: 128, keepAliveTimeout: 30_000, pipelining: 1 });

const server = createServer((req, res) => {
  const m = /^\/tools\/[^/]+(\/[^?]*)?(\?.*)?$/.exec(req.url ?? '');
  if (!m) {
    res.writeHead(404).end();
    return;
  }
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
  pool.stream(
    { method: req.method, path: `${m[1] || '/'}${m[2] ?? ''}`, headers: forwardHeaders(req.rawHeaders), body: hasBody ? req : undefined },
    ({ statusCode, headers }) => {
      res.writeHead(statusCode, backHeaders(headers));
      return res;
    },
  ).catch(() => {
    if (!res.headersSent) res.writeHead(502).end();
    else res.destroy();
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ server: 'passthrough', url: `http://127.0.0.1:${server.address().port}` })}\n`);
});
const stop = () => {
  server.close(() => pool.close().finally(() => process.exit(0)));
  server.closeAllConnections();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
