/**
 * Real SSF peers for the signals tests, on 127.0.0.1:0:
 * - a small SSF transmitter with its own jose keys: /jwks, and RFC 8936 poll at /poll;
 * - a push receiver (RFC 8935) whose answers a test scripts.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';

export const CAEP = 'https://schemas.openid.net/secevent/caep/event-type/';
export const RISC = 'https://schemas.openid.net/secevent/risc/event-type/';

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function readAll(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

export interface TestTransmitter {
  issuer: string;
  jwksUri: string;
  pollUrl: string;
  kid: string;
  publicJwk: JWK;
  /** Signs a SET: iss, iat and jti are added unless given; header typ secevent+jwt unless overridden. */
  sign(claims: Record<string, unknown>, opts?: { header?: Record<string, unknown>; key?: CryptoKey }): Promise<string>;
  /** Queues a SET for poll delivery. */
  queue(jti: string, set: string): void;
  /** What poll requests acknowledged, and reported as errors (RFC 8936 §2.4). */
  acked: string[];
  setErrs: Record<string, { err: string; description?: string }>;
  pollRequests: Array<{ authorization: string | undefined; body: Record<string, unknown> }>;
  close(): Promise<void>;
}

export async function startTestTransmitter(): Promise<TestTransmitter> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const kid = `tx-${randomUUID().slice(0, 8)}`;
  const publicJwk: JWK = { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' };
  const pending = new Map<string, string>();
  const t = {
    acked: [] as string[],
    setErrs: {} as Record<string, { err: string; description?: string }>,
    pollRequests: [] as Array<{ authorization: string | undefined; body: Record<string, unknown> }>,
  };
  const server = createServer((req, res) => {
    void (async () => {
      if (req.method === 'GET' && req.url === '/jwks') {
        res.writeHead(200, { 'content-type': 'application/jwk-set+json' }).end(JSON.stringify({ keys: [publicJwk] }));
        return;
      }
      if (req.method === 'POST' && req.url === '/poll') {
        const body = JSON.parse(await readAll(req)) as { ack?: string[]; setErrs?: Record<string, { err: string }>; maxEvents?: number };
        t.pollRequests.push({ authorization: req.headers.authorization, body });
        for (const j of body.ack ?? []) {
          t.acked.push(j);
          pending.delete(j);
        }
        for (const [j, e] of Object.entries(body.setErrs ?? {})) {
          t.setErrs[j] = e;
          pending.delete(j);
        }
        const sets = Object.fromEntries([...pending].slice(0, body.maxEvents ?? 100));
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ sets, moreAvailable: pending.size > Object.keys(sets).length }));
        return;
      }
      res.writeHead(404).end();
    })();
  });
  const url = await listen(server);
  return {
    issuer: url,
    jwksUri: `${url}/jwks`,
    pollUrl: `${url}/poll`,
    kid,
    publicJwk,
    get acked() {
      return t.acked;
    },
    get setErrs() {
      return t.setErrs;
    },
    get pollRequests() {
      return t.pollRequests;
    },
    async sign(claims, opts = {}) {
      const payload = { iss: url, iat: Math.floor(Date.now() / 1000), jti: randomUUID(), ...claims };
      for (const k of Object.keys(payload)) if ((payload as Record<string, unknown>)[k] === undefined) delete (payload as Record<string, unknown>)[k];
      return new SignJWT(payload).setProtectedHeader({ alg: 'ES256', kid, typ: 'secevent+jwt', ...(opts.header ?? {}) } as never).sign(opts.key ?? privateKey);
    },
    queue(jti, set) {
      pending.set(jti, set);
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  } as TestTransmitter;
}

export interface PushReceiver {
  url: string;
  /** Every request: headers and body. */
  received: Array<{ contentType: string | undefined; authorization: string | undefined; body: string }>;
  /** The status to answer for the n-th request (0-based); 202 by default. */
  answer: (n: number) => number;
  close(): Promise<void>;
}

export async function startPushReceiver(answer: (n: number) => number = () => 202): Promise<PushReceiver> {
  const r = { received: [] as PushReceiver['received'], answer };
  const server = createServer((req, res) => {
    void readAll(req).then((body) => {
      const n = r.received.length;
      r.received.push({ contentType: req.headers['content-type'], authorization: req.headers.authorization, body });
      const status = r.answer(n);
      if (status === 202) res.writeHead(202).end();
      else res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ err: 'invalid_request', description: 'scripted failure' }));
    });
  });
  const url = await listen(server);
  return Object.assign(r, { url: `${url}/events`, close: () => new Promise<void>((resolve) => server.close(() => resolve())) });
}

/** Decodes a compact JWS without verifying it (the tests verify separately where it matters). */
export function decode(jwt: string): { header: Record<string, unknown>; payload: Record<string, unknown> } {
  const [h, p] = jwt.split('.');
  return { header: JSON.parse(Buffer.from(h!, 'base64url').toString()), payload: JSON.parse(Buffer.from(p!, 'base64url').toString()) };
}

export async function waitFor<T>(fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 10_000, what = 'condition'): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
