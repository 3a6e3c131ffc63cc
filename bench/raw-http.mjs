// A minimal HTTP/1.1 keep-alive client for load generation on the machine under test.
//
// The benches run the load generator on the same 2 cores as the servers it measures, so what
// the generator spends is taken from them. undici's Pool spends about 0.07 ms of CPU per
// request (bench/revocation, SET ingest); this client writes a request prepared up to its
// body and parses only what a response needs (status line, Content-Length or chunked body,
// Connection), for about two thirds of that (0.074 -> 0.048 ms per SET pushed). It is strict rather than general: one request in
// flight per connection (no pipelining), responses framed by Content-Length or chunked only,
// anything else rejected. Not for production use: no TLS, no redirects, no timeouts beyond the
// caller's.
import net from 'node:net';

const CRLF2 = Buffer.from('\r\n\r\n');

/**
 * One connection. `send()` resolves with the response: its status, its headers (lower-case
 * names; the last value of a repeated one) and its body as text.
 */
class Conn {
  constructor(host, port) {
    this.host = host;
    this.port = port;
    this.socket = undefined;
    this.buf = Buffer.alloc(0);
    this.pending = undefined;
    this.head = undefined;
  }

  connect() {
    return new Promise((resolve, reject) => {
      const s = net.connect(this.port, this.host);
      s.setNoDelay(true);
      s.once('connect', () => resolve());
      s.once('error', reject);
      s.on('data', (d) => this.onData(d));
      s.on('close', () => this.fail(new Error('connection closed')));
      s.on('error', (err) => this.fail(err));
      this.socket = s;
    });
  }

  fail(err) {
    this.socket = undefined;
    const p = this.pending;
    this.pending = undefined;
    this.head = undefined;
    this.buf = Buffer.alloc(0);
    p?.reject(err);
  }

  async send(bytes) {
    if (!this.socket) await this.connect();
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      this.socket.write(bytes);
    });
  }

  onData(d) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    for (;;) {
      if (!this.pending) return;
      if (!this.head) {
        const end = this.buf.indexOf(CRLF2);
        if (end < 0) return;
        const lines = this.buf.subarray(0, end).toString('latin1').split('\r\n');
        this.buf = this.buf.subarray(end + 4);
        const m = /^HTTP\/1\.1 (\d{3}) /.exec(lines[0] + ' ');
        if (!m) return this.socket.destroy(new Error(`bad status line: ${lines[0]}`));
        const headers = {};
        for (const l of lines.slice(1)) {
          const c = l.indexOf(':');
          if (c > 0) headers[l.slice(0, c).trim().toLowerCase()] = l.slice(c + 1).trim();
        }
        const status = Number(m[1]);
        const chunked = /\bchunked\b/i.test(headers['transfer-encoding'] ?? '');
        const length = headers['content-length'] !== undefined ? Number(headers['content-length']) : undefined;
        if (!chunked && length === undefined && status !== 204 && status !== 304) return this.socket.destroy(new Error('response without Content-Length or chunked framing'));
        this.head = { status, headers, chunked, length: length ?? 0, chunks: [] };
      }
      const h = this.head;
      if (!h.chunked) {
        if (this.buf.length < h.length) return;
        const body = this.buf.subarray(0, h.length).toString('utf8');
        this.buf = this.buf.subarray(h.length);
        this.done(h, body);
        continue;
      }
      // Chunked: size line, data, CRLF; a zero size ends it (no trailers expected, but skipped to the empty line).
      const nl = this.buf.indexOf('\r\n');
      if (nl < 0) return;
      const size = parseInt(this.buf.subarray(0, nl).toString('latin1'), 16);
      if (!Number.isFinite(size)) return this.socket.destroy(new Error('bad chunk size'));
      if (size === 0) {
        const end = this.buf.indexOf(CRLF2, nl - 2 >= 0 ? nl - 2 : 0);
        if (end < 0) return;
        this.buf = this.buf.subarray(end + 4);
        this.done(h, Buffer.concat(h.chunks).toString('utf8'));
        continue;
      }
      if (this.buf.length < nl + 2 + size + 2) return;
      h.chunks.push(this.buf.subarray(nl + 2, nl + 2 + size));
      this.buf = this.buf.subarray(nl + 2 + size + 2);
    }
  }

  done(h, body) {
    const p = this.pending;
    this.pending = undefined;
    this.head = undefined;
    if (/\bclose\b/i.test(h.headers.connection ?? '')) {
      const s = this.socket;
      this.socket = undefined;
      s?.removeAllListeners('close');
      s?.destroy();
    }
    p.resolve({ status: h.status, headers: h.headers, body });
  }

  close() {
    const s = this.socket;
    this.socket = undefined;
    s?.removeAllListeners('close');
    s?.destroy();
  }
}

/**
 * `connections` keep-alive connections to `origin` (http only); `request()` waits for a free
 * one. `prepare(method, path, headers)` builds the request head once, for requests that differ
 * only by their body.
 */
export function rawHttpClient(origin, { connections = 16 } = {}) {
  const u = new URL(origin);
  if (u.protocol !== 'http:') throw new Error('rawHttpClient: http only');
  const host = u.hostname;
  const port = Number(u.port || 80);
  const idle = Array.from({ length: connections }, () => new Conn(host, port));
  const waiting = [];
  const take = () => (idle.length ? Promise.resolve(idle.pop()) : new Promise((r) => waiting.push(r)));
  const give = (c) => {
    const w = waiting.shift();
    if (w) w(c);
    else idle.push(c);
  };
  const all = [...idle];
  return {
    prepare(method, path, headers = {}) {
      const lines = [`${method} ${path} HTTP/1.1`, `host: ${u.host}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
      const head = lines.join('\r\n');
      return async (body = '') => {
        const b = Buffer.from(body);
        const bytes = Buffer.concat([Buffer.from(`${head}\r\ncontent-length: ${b.length}\r\n\r\n`, 'latin1'), b]);
        const c = await take();
        try {
          return await c.send(bytes);
        } finally {
          give(c);
        }
      };
    },
    close() {
      for (const c of all) c.close();
    },
  };
}
