import { readFile } from 'node:fs/promises';
import { SignJWT, importJWK, type CryptoKey, type JWK } from 'jose';
import { MandateClientError } from './errors.js';
import { randomJti, systemClock, unverifiedExp, type ClientClock } from './util.js';

/**
 * Where the agent's workload identity comes from: a JWT issued by its platform (Kubernetes,
 * SPIFFE, GitHub Actions, a cloud) that the broker trusts through federation. The client
 * exchanges it for a Mandate token (RFC 8693 token exchange / RFC 7523 JWT bearer).
 */
export interface WorkloadSource {
  getToken(): Promise<string>;
}

/**
 * A token file that the platform keeps fresh: a Kubernetes projected service account token,
 * a SPIFFE JWT-SVID written by a helper, and the like. The file is read on every call (it is
 * small, and the kubelet replaces it by swapping a symlink), so a rotated token is picked up
 * at once.
 */
export function projectedTokenFile(path: string): WorkloadSource {
  return {
    async getToken() {
      let text: string;
      try {
        text = await readFile(path, 'utf8');
      } catch (err) {
        throw new MandateClientError('ERR_WORKLOAD_TOKEN', `cannot read the workload token file ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { cause: err });
      }
      const token = text.trim();
      if (!token) throw new MandateClientError('ERR_WORKLOAD_TOKEN', `the workload token file ${path} is empty`);
      return token;
    },
  };
}

export interface GithubActionsOidcOptions {
  /** The audience the broker's trust entry expects (often the broker's issuer URL). */
  audience: string;
  /** Where ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN are read (default process.env). */
  env?: NodeJS.ProcessEnv;
  fetch?: typeof fetch;
  clock?: ClientClock;
}

/**
 * The GitHub Actions OIDC token of the running job (its `id-token: write` permission must be
 * granted). The token is kept and reused until one minute before it expires.
 */
export function githubActionsOidc(opts: GithubActionsOidcOptions): WorkloadSource {
  const env = opts.env ?? process.env;
  const doFetch = opts.fetch ?? globalThis.fetch;
  const clock = opts.clock ?? systemClock;
  let cached: { token: string; exp: number } | undefined;
  let inflight: Promise<string> | undefined;

  const request = async (): Promise<string> => {
    const url = env.ACTIONS_ID_TOKEN_REQUEST_URL;
    const bearer = env.ACTIONS_ID_TOKEN_REQUEST_TOKEN;
    if (!url || !bearer) {
      throw new MandateClientError(
        'ERR_WORKLOAD_TOKEN',
        'ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set: give the job the "id-token: write" permission ' +
          '(permissions:\n  id-token: write) and run inside GitHub Actions',
      );
    }
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new MandateClientError('ERR_WORKLOAD_TOKEN', 'ACTIONS_ID_TOKEN_REQUEST_URL is not a URL');
    }
    u.searchParams.set('audience', opts.audience);
    let res: Response;
    try {
      res = await doFetch(u, { headers: { authorization: `Bearer ${bearer}`, accept: 'application/json' } });
    } catch (err) {
      throw new MandateClientError('ERR_WORKLOAD_TOKEN', 'the GitHub Actions OIDC token request failed', { cause: err });
    }
    if (!res.ok) {
      await res.body?.cancel().catch(() => {});
      throw new MandateClientError('ERR_WORKLOAD_TOKEN', `the GitHub Actions OIDC token request answered HTTP ${res.status}`);
    }
    const body = (await res.json().catch(() => undefined)) as { value?: unknown } | undefined;
    if (typeof body?.value !== 'string' || !body.value) {
      throw new MandateClientError('ERR_WORKLOAD_TOKEN', 'the GitHub Actions OIDC answer has no "value"');
    }
    const exp = unverifiedExp(body.value);
    if (exp !== undefined) cached = { token: body.value, exp: exp * 1000 };
    return body.value;
  };

  return {
    async getToken() {
      if (cached && cached.exp - clock.now() > 60_000) return cached.token;
      inflight ??= request().finally(() => {
        inflight = undefined;
      });
      return inflight;
    },
  };
}

/** A JWT handed over as it is (tests, or a token obtained some other way). */
export function staticJwt(jwt: string): WorkloadSource {
  if (!jwt || jwt.split('.').length !== 3) throw new MandateClientError('ERR_WORKLOAD_TOKEN', 'staticJwt needs a compact JWT');
  return { getToken: async () => jwt };
}

// ---------------------------------------------------------------------------- private_key_jwt

export type PrivateKeyClientOptions =
  | { clientId: string; privateJwk: JWK; alg?: string; kid?: string; lifetimeSeconds?: number; clock?: ClientClock }
  | { clientId: string; privateKey: CryptoKey; alg?: string; kid?: string; lifetimeSeconds?: number; clock?: ClientClock };

/** Client authentication with `private_key_jwt` (RFC 7523 §2.2, §3): makes client assertions. */
export interface PrivateKeyClient {
  readonly clientId: string;
  /** A fresh client assertion (unique `jti`, short `exp`) for the authorization server `audience`. */
  assertion(audience: string): Promise<string>;
}

export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const MAX_ASSERTION_LIFETIME_S = 300;

/**
 * A `private_key_jwt` client: iss = sub = client_id, aud = the broker, exp at most 5 minutes
 * ahead (60 s by default), a unique jti, signed with the agent's private key (ES256 unless the
 * key says otherwise). The key's `kid` goes in the header so the broker can pick the key.
 */
export function privateKeyClient(opts: PrivateKeyClientOptions): PrivateKeyClient {
  if (!opts.clientId) throw new MandateClientError('ERR_CLIENT_CONFIG', 'privateKeyClient needs a clientId');
  const lifetime = Math.min(Math.max(Math.floor(opts.lifetimeSeconds ?? 60), 1), MAX_ASSERTION_LIFETIME_S);
  const clock = opts.clock ?? systemClock;
  const kid = opts.kid ?? ('privateJwk' in opts ? opts.privateJwk.kid : undefined);
  let key: Promise<{ key: CryptoKey; alg: string }> | undefined;

  const load = async (): Promise<{ key: CryptoKey; alg: string }> => {
    if ('privateJwk' in opts) {
      const jwk = opts.privateJwk;
      if (jwk.d === undefined) throw new MandateClientError('ERR_CLIENT_CONFIG', 'privateJwk has no private part ("d")');
      const alg = opts.alg ?? jwk.alg ?? algForJwk(jwk);
      const k = await importJWK(jwk, alg, { extractable: false });
      if (k instanceof Uint8Array) throw new MandateClientError('ERR_CLIENT_CONFIG', 'privateJwk must be an asymmetric key');
      return { key: k, alg };
    }
    return { key: opts.privateKey, alg: opts.alg ?? algForCryptoKey(opts.privateKey) };
  };

  return {
    clientId: opts.clientId,
    async assertion(audience: string) {
      key ??= load();
      let k: { key: CryptoKey; alg: string };
      try {
        k = await key;
      } catch (err) {
        key = undefined;
        if (err instanceof MandateClientError) throw err;
        throw new MandateClientError('ERR_CLIENT_CONFIG', 'the private key cannot be used for private_key_jwt', { cause: err });
      }
      const iat = Math.floor(clock.now() / 1000);
      return new SignJWT({ jti: randomJti() })
        .setProtectedHeader({ alg: k.alg, ...(kid ? { kid } : {}) })
        .setIssuer(opts.clientId)
        .setSubject(opts.clientId)
        .setAudience(audience)
        .setIssuedAt(iat)
        .setExpirationTime(iat + lifetime)
        .sign(k.key);
    },
  };
}

function algForJwk(jwk: JWK): string {
  if (jwk.kty === 'EC') {
    if (jwk.crv === 'P-256') return 'ES256';
    if (jwk.crv === 'P-384') return 'ES384';
    if (jwk.crv === 'P-521') return 'ES512';
  }
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') return 'EdDSA';
  if (jwk.kty === 'RSA') return 'RS256';
  throw new MandateClientError('ERR_CLIENT_CONFIG', 'cannot tell the signing algorithm of privateJwk: set "alg"');
}

function algForCryptoKey(key: CryptoKey): string {
  const a = key.algorithm as { name: string; namedCurve?: string; hash?: { name?: string } };
  if (a.name === 'ECDSA') {
    if (a.namedCurve === 'P-256') return 'ES256';
    if (a.namedCurve === 'P-384') return 'ES384';
    if (a.namedCurve === 'P-521') return 'ES512';
  }
  if (a.name === 'Ed25519') return 'EdDSA';
  if (a.name === 'RSASSA-PKCS1-v1_5') return `RS${a.hash?.name?.replace('SHA-', '') ?? '256'}`;
  if (a.name === 'RSA-PSS') return `PS${a.hash?.name?.replace('SHA-', '') ?? '256'}`;
  throw new MandateClientError('ERR_CLIENT_CONFIG', 'cannot tell the signing algorithm of privateKey: set "alg"');
}
