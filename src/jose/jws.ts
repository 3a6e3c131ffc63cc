import { KeyObject, constants, createHash, createPublicKey, sign as cryptoSign, verify as cryptoVerify } from 'node:crypto';
import type { JWK } from 'jose';

/**
 * JWS signature verification and signing with node:crypto KeyObjects, for the broker's hot
 * path (DPoP proofs, client assertions, its own access tokens). WebCrypto (jose's path) pays
 * for algorithm normalization and WebIDL conversion on every call; `crypto.verify` on a cached
 * KeyObject is several times cheaper per request. Both run in the callback form, on libuv's
 * thread pool, so that the event loop parses and answers the next request meanwhile and a
 * server uses more than one core.
 *
 * Only the signature: the callers parse the token first with the RFC 8725 guard
 * (`jwt-guard.ts`: size cap, canonical base64url, JSON objects without duplicate members, no
 * `crit`) and pin the algorithm (never the token's choice, RFC 8725 §3.1). Anything else
 * (federated workload tokens from other issuers) stays on jose.
 */

interface AlgSpec {
  /** Digest for crypto.verify (null for EdDSA). */
  hash: 'sha256' | 'sha384' | 'sha512' | null;
  family: 'EC' | 'OKP' | 'RSA' | 'RSA-PSS';
  /** RFC 7518 §3.4: the exact length of an ECDSA signature (R || S), bytes. */
  sigLength?: number;
  /** RFC 7518 §3.5: PSS salt length = the hash output length. */
  saltLength?: number;
  curve?: string;
}

const ALGS: ReadonlyMap<string, AlgSpec> = new Map<string, AlgSpec>([
  ['ES256', { hash: 'sha256', family: 'EC', sigLength: 64, curve: 'prime256v1' }],
  ['ES384', { hash: 'sha384', family: 'EC', sigLength: 96, curve: 'secp384r1' }],
  ['ES512', { hash: 'sha512', family: 'EC', sigLength: 132, curve: 'secp521r1' }],
  ['EdDSA', { hash: null, family: 'OKP' }],
  ['Ed25519', { hash: null, family: 'OKP' }],
  ['RS256', { hash: 'sha256', family: 'RSA' }],
  ['RS384', { hash: 'sha384', family: 'RSA' }],
  ['RS512', { hash: 'sha512', family: 'RSA' }],
  ['PS256', { hash: 'sha256', family: 'RSA-PSS', saltLength: 32 }],
  ['PS384', { hash: 'sha384', family: 'RSA-PSS', saltLength: 48 }],
  ['PS512', { hash: 'sha512', family: 'RSA-PSS', saltLength: 64 }],
]);

/** RFC 7518 §3.3 / §3.5: RSA keys of at least 2048 bits (as jose and WebCrypto users require). */
const MIN_RSA_BITS = 2048;

/** Whether `alg` is one this module verifies. */
export function nodeVerifiable(alg: string): boolean {
  return ALGS.has(alg);
}

/**
 * Imports a public JWK (already reduced by `publicJwkOf` and checked with `keyFitsAlg`) as a
 * KeyObject for `alg`. Throws when it is not a valid public key of the right type: OpenSSL
 * checks that an EC point lies on its curve; RSA moduli below 2048 bits are refused.
 */
export function importPublicKey(jwk: JWK, alg: string): KeyObject {
  const spec = ALGS.get(alg);
  if (!spec) throw new TypeError(`unsupported algorithm ${alg}`);
  const key = createPublicKey({ key: jwk as never, format: 'jwk' });
  if (key.type !== 'public') throw new TypeError('not a public key');
  const type = key.asymmetricKeyType;
  const details = key.asymmetricKeyDetails ?? {};
  switch (spec.family) {
    case 'EC':
      if (type !== 'ec' || details.namedCurve !== spec.curve) throw new TypeError('the key does not fit the algorithm');
      break;
    case 'OKP':
      if (type !== 'ed25519') throw new TypeError('the key does not fit the algorithm');
      break;
    case 'RSA':
    case 'RSA-PSS':
      if (type !== 'rsa' || (details.modulusLength ?? 0) < MIN_RSA_BITS) throw new TypeError(`RSA keys must be at least ${MIN_RSA_BITS} bits`);
      break;
  }
  return key;
}

const fromCryptoKey = new WeakMap<object, KeyObject>();

/**
 * A public KeyObject for `key` when it is one, or a WebCrypto CryptoKey (what jose's importJWK
 * gives; converted once per key and cached), so that a key obtained through jose can be used
 * with `verifyCompactAsync`. Undefined for anything else (the caller then stays on jose).
 */
export function publicKeyObject(key: unknown): KeyObject | undefined {
  if (key instanceof KeyObject) return key.type === 'public' ? key : undefined;
  if (typeof key !== 'object' || key === null || (key as { type?: unknown }).type !== 'public') return undefined;
  let ko = fromCryptoKey.get(key);
  if (!ko) {
    try {
      ko = KeyObject.from(key as Parameters<typeof KeyObject.from>[0]);
    } catch {
      return undefined;
    }
    fromCryptoKey.set(key, ko);
  }
  return ko;
}

type VerifyArgs = [hash: string | null, data: Buffer, key: KeyObject | { key: KeyObject; dsaEncoding?: 'ieee-p1363'; padding?: number; saltLength?: number }, signature: Buffer];

/**
 * The arguments of `crypto.verify` for a compact JWS (RFC 7515 §5.2 items 8 and 9) with `alg`
 * (pinned by the caller) and `key`, or undefined when the signature cannot verify (wrong
 * length or encoding, unknown algorithm).
 */
function verifyArgs(jws: string, alg: string, key: KeyObject): VerifyArgs | undefined {
  const spec = ALGS.get(alg);
  if (!spec) return undefined;
  const dot = jws.lastIndexOf('.');
  if (dot <= 0) return undefined;
  const signature = Buffer.from(jws.slice(dot + 1), 'base64url');
  // RFC 7515 §5.2 item 8: the JWS Signing Input is the ASCII header.payload exactly as received.
  const data = Buffer.from(jws.slice(0, dot), 'ascii');
  switch (spec.family) {
    case 'EC':
      // RFC 7518 §3.4: R || S, each exactly the curve's size; DER or any other length is refused.
      if (signature.length !== spec.sigLength) return undefined;
      return [spec.hash, data, { key, dsaEncoding: 'ieee-p1363' }, signature];
    case 'OKP':
      if (signature.length !== 64) return undefined;
      return [null, data, key, signature];
    case 'RSA':
      return [spec.hash, data, { key, padding: constants.RSA_PKCS1_PADDING }, signature];
    case 'RSA-PSS':
      return [spec.hash, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: spec.saltLength! }, signature];
  }
}

/**
 * Verifies the signature of a compact JWS with `alg` (pinned by the caller) and `key` (from
 * `importPublicKey`, or a KeyObject of the right type). Resolves false for any signature that does
 * not verify, including a wrong length or encoding. The arithmetic, the largest cost of a token
 * request, runs on libuv's thread pool (`crypto.verify` with a callback), beside the event loop,
 * so that a server uses a second core.
 */
export function verifyCompactAsync(jws: string, alg: string, key: KeyObject): Promise<boolean> {
  const args = verifyArgs(jws, alg, key);
  if (!args) return Promise.resolve(false);
  return new Promise<boolean>((resolve) => {
    try {
      cryptoVerify(...args, (err, ok) => resolve(err === null && ok === true));
    } catch {
      resolve(false);
    }
  });
}

function signArgs(header: Record<string, unknown>, payload: Record<string, unknown>, alg: string, key: KeyObject): [input: string, hash: string | null, data: Buffer, key: KeyObject | { key: KeyObject; dsaEncoding: 'ieee-p1363' }] {
  const input = `${b64json(header)}.${b64json(payload)}`;
  const data = Buffer.from(input, 'ascii');
  switch (alg) {
    case 'ES256': return [input, 'sha256', data, { key, dsaEncoding: 'ieee-p1363' }];
    case 'ES384': return [input, 'sha384', data, { key, dsaEncoding: 'ieee-p1363' }];
    case 'EdDSA':
    case 'Ed25519': return [input, null, data, key];
    default: throw new TypeError(`signing with ${alg} is not supported here`);
  }
}

/** Signs `header.payload` (JSON objects) as a compact JWS with a private KeyObject (ES256, ES384 or EdDSA), on libuv's thread pool (see `verifyCompactAsync`). */
export function signCompactAsync(header: Record<string, unknown>, payload: Record<string, unknown>, alg: string, key: KeyObject): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const [input, hash, data, k] = signArgs(header, payload, alg, key);
    cryptoSign(hash, data, k, (err, sig) => (err ? reject(err) : resolve(`${input}.${sig.toString('base64url')}`)));
  });
}

function b64json(v: Record<string, unknown>): string {
  return Buffer.from(JSON.stringify(v), 'utf8').toString('base64url');
}

/**
 * RFC 7638 §3 JWK SHA-256 thumbprint, synchronously: the required members of the key type in
 * lexicographic order, no whitespace. `jwk` must be a public JWK from `publicJwkOf`.
 */
export function thumbprintSync(jwk: JWK): string {
  let canonical: string;
  switch (jwk.kty) {
    case 'EC': canonical = JSON.stringify({ crv: jwk.crv, kty: 'EC', x: jwk.x, y: jwk.y }); break;
    case 'OKP': canonical = JSON.stringify({ crv: jwk.crv, kty: 'OKP', x: jwk.x }); break;
    case 'RSA': canonical = JSON.stringify({ e: jwk.e, kty: 'RSA', n: jwk.n }); break;
    default: throw new TypeError('unsupported key type for a thumbprint');
  }
  return createHash('sha256').update(canonical, 'utf8').digest('base64url');
}
