// The tool behind both proxies in bench/proxy: node:http answering GET /items/{id} with a small
// JSON body (about 100 bytes), anything else 404. Prints one JSON line when it listens.
// It checks nothing, so that its cost is the same whichever proxy is in front of it.
import { createServer } from 'node:http';

const server = createServer((req, res) => {
  const m = /^\/items\/([^/?]+)/.exec(req.url ?? '');
  if (req.method !== 'GET' || !m) {
    res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not_found"}');
    return;
  }
  const body = JSON.stringify({ id: m[1], name: `item ${m[1]}`, price_cents: 1299, in_stock: true });
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ server: 'upstream', url: `http://127.0.0.1:${server.address().port}` })}\n`);
});
const stop = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
