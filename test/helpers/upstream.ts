import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** What a recording upstream saw of one request. */
export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  /** The header lines as received (names as sent, repeats kept), name and value alternating. */
  rawHeaders: string[];
  body: string;
}

export interface RecordingUpstream {
  url: string;
  /** Requests received whole. */
  seen: SeenRequest[];
  /** Body bytes received so far, whole requests or not (a body cut off in the middle counts too). */
  bodyBytes(): number;
  /** Resolves when the client of the n-th (from 1) `/forever` stream has gone away. */
  foreverClosed(n: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * A real upstream tool for the proxy tests: records every request it receives (so a test can
 * assert that a refused request never reached it) and answers by path:
 * `/big` a body of `bigBytes` bytes, `/events` three server-sent events, `/echo-credential`
 * a response that repeats the credential header it got (which the proxy must not pass on),
 * `/forever` server-sent events every 20 ms until the client goes away, `/hang` nothing at all
 * (until the client goes away), anything else `{ ok: true, method, path }`.
 */
export async function startRecordingUpstream(opts: { bigBytes?: number; credentialHeader?: string } = {}): Promise<RecordingUpstream> {
  const seen: SeenRequest[] = [];
  const forever: Array<{ closed: Promise<void>; resolve: () => void }> = [];
  const foreverSlot = (n: number) => {
    while (forever.length < n) {
      let resolve!: () => void;
      const closed = new Promise<void>((r) => (resolve = r));
      forever.push({ closed, resolve });
    }
    return forever[n - 1]!;
  };
  let foreverCount = 0;
  let bodyBytes = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      bodyBytes += c.length;
      chunks.push(c);
    });
    req.on('end', () => {
      const url = req.url ?? '/';
      seen.push({ method: req.method ?? '', url, headers: req.headers, rawHeaders: req.rawHeaders, body: Buffer.concat(chunks).toString('utf8') });
      const path = url.split('?')[0]!;
      if (path.endsWith('/big')) {
        const body = Buffer.alloc(opts.bigBytes ?? 1024 * 1024, 'x');
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
        res.end(body);
        return;
      }
      if (path.endsWith('/big-chunked')) {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        const chunk = Buffer.alloc(1024, 'y');
        for (let i = 0; i < (opts.bigBytes ?? 1024 * 1024) / 1024; i++) res.write(chunk);
        res.end();
        return;
      }
      if (path.endsWith('/events')) {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
        let n = 0;
        const t = setInterval(() => {
          res.write(`id: ${++n}\ndata: {"n":${n}}\n\n`);
          if (n === 3) {
            clearInterval(t);
            res.end();
          }
        }, 20);
        return;
      }
      if (path.endsWith('/forever')) {
        const slot = foreverSlot(++foreverCount);
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
        let n = 0;
        const t = setInterval(() => res.write(`id: ${++n}\ndata: {"n":${n}}\n\n`), 20);
        res.on('close', () => {
          clearInterval(t);
          slot.resolve();
        });
        return;
      }
      if (path.endsWith('/hang')) return;
      if (path.endsWith('/echo-credential') && opts.credentialHeader) {
        const v = String(req.headers[opts.credentialHeader] ?? '');
        res.writeHead(200, { 'content-type': 'application/json', [opts.credentialHeader]: v, connection: 'keep-alive, x-secret-hop', 'x-secret-hop': 'hop' });
        res.end(JSON.stringify({ ok: true }));
        return;
      }
      const body = JSON.stringify({ ok: true, method: req.method, path });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    bodyBytes: () => bodyBytes,
    foreverClosed: (n) => foreverSlot(n).closed,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
