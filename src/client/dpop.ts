import { SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { MandateClientError } from './errors.js';
import { randomJti, sha256b64u, systemClock, type ClientClock } from './util.js';

/** The DPoP proof algorithms this client generates keys for. */
export type DpopAlg = 'ES256' | 'EdDSA';

export interface DpopProofOptions {
  /** The HTTP method of the request the proof goes with (upper-cased). */
  htm: string;
  /** The request URL; query and fragment are dropped (RFC 9449 §4.2). */
  htu: string | URL;
  /** With an access token the proof carries `ath` = base64url(SHA-256(token)) (RFC 9449 §4.2). */
  accessToken?: string;
  /** The server-provided nonce, when it asked for one (RFC 9449 §8). */
  nonce?: string;
}

/**
 * A DPoP key (RFC 9449): one key pair, generated in memory, whose private half cannot be
 * exported, and the proofs signed with it. Tokens issued against it are bound to its
 * thumbprint (`cnf.jkt`), so a leaked token is useless without this process.
 */
export class DpopKey {
  readonly alg: DpopAlg;
  /** The public key as a JWK (no private members); it goes in every proof's header. */
  readonly publicJwk: Readonly<JWK>;
  private readonly privateKey: CryptoKey;
  private readonly clock: ClientClock;
  private jkt: Promise<string> | undefined;

  private constructor(alg: DpopAlg, privateKey: CryptoKey, publicJwk: JWK, clock: ClientClock) {
    this.alg = alg;
    this.privateKey = privateKey;
    this.publicJwk = Object.freeze({ ...publicJwk });
    this.clock = clock;
  }

  /** A new key pair: ES256 (P-256) by default, or EdDSA (Ed25519). The private key is not extractable. */
  static async generate(opts: { alg?: DpopAlg; clock?: ClientClock } = {}): Promise<DpopKey> {
    const alg = opts.alg ?? 'ES256';
    if (alg !== 'ES256' && alg !== 'EdDSA') throw new MandateClientError('ERR_DPOP_ALG', `unsupported DPoP algorithm ${String(alg)}: use ES256 or EdDSA`);
    const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: false });
    return new DpopKey(alg, privateKey, publicOnly(await exportJWK(publicKey)), opts.clock ?? systemClock);
  }

  /** A key pair made elsewhere (e.g. kept in a platform keystore). */
  static async fromKeyPair(pair: { privateKey: CryptoKey; publicKey: CryptoKey }, opts: { alg?: DpopAlg; clock?: ClientClock } = {}): Promise<DpopKey> {
    const jwk = publicOnly(await exportJWK(pair.publicKey));
    const alg = opts.alg ?? (jwk.kty === 'OKP' ? 'EdDSA' : 'ES256');
    if (alg === 'ES256' && !(jwk.kty === 'EC' && jwk.crv === 'P-256')) throw new MandateClientError('ERR_DPOP_ALG', 'ES256 needs a P-256 key pair');
    if (alg === 'EdDSA' && !(jwk.kty === 'OKP' && jwk.crv === 'Ed25519')) throw new MandateClientError('ERR_DPOP_ALG', 'EdDSA needs an Ed25519 key pair');
    return new DpopKey(alg, pair.privateKey, jwk, opts.clock ?? systemClock);
  }

  /** The RFC 7638 JWK SHA-256 thumbprint, base64url: the `jkt` tokens are bound to. */
  thumbprint(): Promise<string> {
    this.jkt ??= calculateJwkThumbprint(this.publicJwk as JWK, 'sha256');
    return this.jkt;
  }

  /** A DPoP proof JWT (RFC 9449 §4.2) for one request. */
  async proof(opts: DpopProofOptions): Promise<string> {
    const claims: Record<string, unknown> = {
      jti: randomJti(),
      htm: opts.htm.toUpperCase(),
      htu: normalizeHtu(opts.htu),
      iat: Math.floor(this.clock.now() / 1000),
    };
    if (opts.accessToken !== undefined) claims.ath = sha256b64u(opts.accessToken);
    if (opts.nonce !== undefined) claims.nonce = opts.nonce;
    return new SignJWT(claims)
      .setProtectedHeader({ alg: this.alg, typ: 'dpop+jwt', jwk: { ...this.publicJwk } })
      .sign(this.privateKey);
  }
}

/** The `htu` of a URL: without query and fragment (RFC 9449 §4.2), scheme and host normalized by the URL parser. */
export function normalizeHtu(url: string | URL): string {
  let u: URL;
  try {
    u = new URL(url.toString());
  } catch {
    throw new MandateClientError('ERR_DPOP_HTU', 'htu must be an absolute URL');
  }
  u.search = '';
  u.hash = '';
  return u.href;
}

/** Keeps only the public members of a JWK (RFC 7517/7518), whatever the export gave. */
function publicOnly(jwk: JWK): JWK {
  const out: JWK = { kty: jwk.kty };
  if (jwk.crv !== undefined) out.crv = jwk.crv;
  if (jwk.x !== undefined) out.x = jwk.x;
  if (jwk.y !== undefined) out.y = jwk.y;
  if (jwk.n !== undefined) out.n = jwk.n;
  if (jwk.e !== undefined) out.e = jwk.e;
  return out;
}
