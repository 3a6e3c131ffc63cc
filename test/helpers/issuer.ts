import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { CompactSign, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';

/**
 * A real OIDC issuer for tests: node:http on 127.0.0.1:0 with its own RS256 and ES256 keys,
 * serving `/.well-known/openid-configuration` and `/jwks`, counting what it serves.
 */

export type IssuerAlg = 'RS256' | 'ES256';

export interface IssuerKey {
  alg: IssuerAlg;
  kid: string;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  /** The public JWK as published (kid, alg, use: sig). */
  publicJwk: JWK;
}

export interface SignOptions {
  alg?: IssuerAlg;
  /** The `kid` to put in the header; `null` leaves it out. Default: the signing key's kid. */
  kid?: string | null;
  /** Extra protected header members (they override the defaults). */
  header?: Record<string, unknown>;
  /** Sign with this key instead of the issuer's current one. */
  key?: CryptoKey;
  /** "Now" in epoch seconds for the default iat/exp; default Date.now(). */
  now?: number;
}

export interface TestIssuer {
  /** The issuer identifier (`iss`), e.g. http://127.0.0.1:41234 */
  readonly url: string;
  readonly jwksUri: string;
  readonly discoveryUri: string;
  /** Current keys, by algorithm. */
  readonly keys: Record<IssuerAlg, IssuerKey>;
  /** Number of requests served for /jwks and for the discovery document. */
  readonly jwksFetches: number;
  readonly discoveryFetches: number;
  /** Members merged over the discovery document (e.g. `{ issuer: 'https://evil' }`). */
  discoveryOverride: Record<string, unknown>;
  /** Extra JWKs published after the issuer's own (e.g. a `kty: oct` key). */
  extraKeys: Record<string, unknown>[];
  /** The published JWKS. */
  jwks(): { keys: Record<string, unknown>[] };
  /**
   * Signs a JWT. The payload gets `iss`, `iat` and `exp` (iat + 300 s) unless it sets them;
   * a member set to `undefined` is left out.
   */
  sign(payload: Record<string, unknown>, opts?: SignOptions): Promise<string>;
  /** Signs the given bytes as the payload, verbatim (for malformed or ambiguous JSON). */
  signRaw(payloadText: string, opts?: SignOptions): Promise<string>;
  /** New keys with new kids; the old ones are unpublished unless `keepOld`. */
  rotate(opts?: { keepOld?: boolean }): Promise<void>;
  close(): Promise<void>;
}

async function newKey(alg: IssuerAlg): Promise<IssuerKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const kid = `${alg.toLowerCase()}-${randomUUID().slice(0, 8)}`;
  return { alg, kid, privateKey, publicKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

export async function startIssuer(): Promise<TestIssuer> {
  let keys: Record<IssuerAlg, IssuerKey> = { RS256: await newKey('RS256'), ES256: await newKey('ES256') };
  let retired: IssuerKey[] = [];
  let jwksFetches = 0;
  let discoveryFetches = 0;
  const state = { discoveryOverride: {} as Record<string, unknown>, extraKeys: [] as Record<string, unknown>[] };
  const jwks = () => ({ keys: [...Object.values(keys), ...retired].map((k) => k.publicJwk as Record<string, unknown>).concat(state.extraKeys) });

  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/jwks') {
      jwksFetches++;
      return json(res, jwks(), 'application/jwk-set+json');
    }
    if (req.method === 'GET' && path === '/.well-known/openid-configuration') {
      discoveryFetches++;
      return json(res, { issuer: url, jwks_uri: `${url}/jwks`, id_token_signing_alg_values_supported: ['RS256', 'ES256'], ...state.discoveryOverride });
    }
    res.writeHead(404).end();
  });
  const { url: base, close } = await listen(server);
  const url = base;

  const signRaw = async (payloadText: string, opts: SignOptions = {}): Promise<string> => {
    const alg = opts.alg ?? 'RS256';
    const k = keys[alg];
    const kid = opts.kid === undefined ? k.kid : opts.kid;
    const header = { alg, typ: 'JWT', ...(kid === null ? {} : { kid }), ...opts.header } as { alg: string };
    return new CompactSign(new TextEncoder().encode(payloadText)).setProtectedHeader(header).sign(opts.key ?? k.privateKey);
  };

  return {
    url,
    jwksUri: `${url}/jwks`,
    discoveryUri: `${url}/.well-known/openid-configuration`,
    get keys() {
      return keys;
    },
    get jwksFetches() {
      return jwksFetches;
    },
    get discoveryFetches() {
      return discoveryFetches;
    },
    get discoveryOverride() {
      return state.discoveryOverride;
    },
    set discoveryOverride(v) {
      state.discoveryOverride = v;
    },
    get extraKeys() {
      return state.extraKeys;
    },
    set extraKeys(v) {
      state.extraKeys = v;
    },
    jwks,
    signRaw,
    async sign(payload, opts = {}) {
      const now = opts.now ?? Math.floor(Date.now() / 1000);
      const full: Record<string, unknown> = { iss: url, iat: now, exp: now + 300, ...payload };
      for (const [k, v] of Object.entries(full)) if (v === undefined) delete full[k];
      return signRaw(JSON.stringify(full), opts);
    },
    async rotate(opts = {}) {
      retired = opts.keepOld ? [...retired, ...Object.values(keys)] : [];
      keys = { RS256: await newKey('RS256'), ES256: await newKey('ES256') };
    },
    close,
  };
}

export interface TestServer {
  readonly url: string;
  /** Requests received, in order (method and path). */
  readonly hits: string[];
  close(): Promise<void>;
}

/** A plain HTTP server on 127.0.0.1:0 (an attacker's, a slow one, a redirecting one) that records every request. */
export async function startServer(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<TestServer> {
  const hits: string[] = [];
  const server = createServer((req, res) => {
    hits.push(`${req.method} ${req.url}`);
    handler(req, res);
  });
  const { url, close } = await listen(server);
  return { url, hits, close };
}

function json(res: ServerResponse, body: unknown, type = 'application/json'): void {
  const text = JSON.stringify(body);
  res.writeHead(200, { 'content-type': type, 'content-length': Buffer.byteLength(text) }).end(text);
}

async function listen(server: Server): Promise<{ url: string; close: () => Promise<void> }> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
