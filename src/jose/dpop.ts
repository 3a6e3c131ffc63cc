import { createHash, timingSafeEqual, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint, type JWK } from 'jose';
import { BoundedMap, OAuthError, oauth, type Clock, type ReplayStore } from '../core/index.js';
import { JwtGuardError, decodeUnverified } from './jwt-guard.js';
import type { DpopNonces } from './dpop-nonce.js';
import { normalizeHtu } from './htu.js';
import { importPublicKey, thumbprintSync, verifyCompactAsync } from './jws.js';

/**
 * DPoP proof verification, every check of RFC 9449 §4.3, plus replay detection (§11.1) and
 * server nonces (§8). Also the small JWS helpers the client assertion verifier shares
 * (`parseCompactJws`, `publicJwkOf`, `keyFitsAlg`): strict parsing before any cryptography.
 */

/** Asymmetric JWS algorithms a verifier may be configured with; `none` and HS* never. */
export const ASYMMETRIC_ALGS: ReadonlySet<string> = new Set([
  'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512',
]);

const DEFAULT_DPOP_ALGS = ['ES256', 'ES384', 'EdDSA', 'RS256', 'PS256'];
const MAX_JTI_LENGTH = 256;
const B64URL_PART = /^[A-Za-z0-9_-]+$/;
/** Members of a JWK that only a private or symmetric key has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2). */
const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'priv'];
/** RSA public keys: at most 8192-bit moduli and 32-bit exponents, so verification stays cheap. */
const MAX_RSA_N_CHARS = 1366;
const MAX_RSA_E_CHARS = 6;

export interface ParsedJws {
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
}

/**
 * Parses a compact JWS without verifying it, with the shared guard (`jwt-guard.ts`): a size
 * cap, three canonical base64url parts, a header and a payload that are UTF-8 JSON objects
 * without duplicate member names (RFC 7515 §5.2 item 4, RFC 8725 §3.1). `fail(description)`
 * builds the error to throw, so each caller keeps its own OAuth error code.
 */
export function parseCompactJws(jws: string, maxBytes: number, fail: (description: string) => Error): ParsedJws {
  if (typeof jws !== 'string' || jws.length === 0) throw fail('the JWT is empty');
  if (jws.endsWith('.')) throw fail('the JWT has no signature (unsecured JWTs are refused)');
  try {
    return decodeUnverified(jws, maxBytes);
  } catch (err) {
    if (err instanceof JwtGuardError) throw fail(err.message);
    throw err;
  }
}

/**
 * The public part of a JWK, with only the members RFC 7638 §3.2 hashes (`kty`, `crv`, `x`, `y`,
 * `n`, `e`). Throws an Error naming the problem when it is not an asymmetric public key Mandate
 * can use: private members present, `oct`, an unknown key type or curve, malformed members.
 */
export function publicJwkOf(raw: unknown): JWK {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error('the jwk must be a JSON object');
  const k = raw as Record<string, unknown>;
  if (PRIVATE_JWK_MEMBERS.some((m) => m in k)) throw new Error('the jwk must be a public key (it has private or symmetric key members)');
  const b64 = (name: string, max = 2048): string => {
    const v = k[name];
    if (typeof v !== 'string' || v.length === 0 || v.length > max || !B64URL_PART.test(v)) throw new Error(`the jwk "${name}" member is missing or malformed`);
    return v;
  };
  switch (k.kty) {
    case 'EC': {
      if (k.crv !== 'P-256' && k.crv !== 'P-384' && k.crv !== 'P-521') throw new Error('the jwk curve is not supported (P-256, P-384, P-521)');
      return { kty: 'EC', crv: k.crv, x: b64('x', 100), y: b64('y', 100) };
    }
    case 'OKP': {
      if (k.crv !== 'Ed25519') throw new Error('the jwk curve is not supported (Ed25519)');
      return { kty: 'OKP', crv: k.crv, x: b64('x', 100) };
    }
    case 'RSA':
      return { kty: 'RSA', n: b64('n', MAX_RSA_N_CHARS), e: b64('e', MAX_RSA_E_CHARS) };
    case 'oct':
      throw new Error('a symmetric (oct) jwk is not allowed');
    default:
      throw new Error('the jwk key type is not supported (EC, OKP, RSA)');
  }
}

/** Whether a public JWK (from `publicJwkOf`) is the key type and curve that `alg` needs (RFC 7518 §3.1, RFC 8037 §3.1). */
export function keyFitsAlg(jwk: JWK, alg: string): boolean {
  switch (alg) {
    case 'ES256': return jwk.kty === 'EC' && jwk.crv === 'P-256';
    case 'ES384': return jwk.kty === 'EC' && jwk.crv === 'P-384';
    case 'ES512': return jwk.kty === 'EC' && jwk.crv === 'P-521';
    case 'EdDSA':
    case 'Ed25519': return jwk.kty === 'OKP' && jwk.crv === 'Ed25519';
    case 'RS256': case 'RS384': case 'RS512':
    case 'PS256': case 'PS384': case 'PS512': return jwk.kty === 'RSA';
    default: return false;
  }
}

/** Whether a JWK's optional `alg`, `use` and `key_ops` (RFC 7517 §4.2–4.4) allow verifying with `alg`. */
export function keyUsableFor(raw: Record<string, unknown>, alg: string): boolean {
  if (raw.alg !== undefined && raw.alg !== alg) return false;
  if (raw.use !== undefined && raw.use !== 'sig') return false;
  if (raw.key_ops !== undefined && !(Array.isArray(raw.key_ops) && raw.key_ops.includes('verify'))) return false;
  return true;
}

/** Checks a configured algorithm list: non-empty, asymmetric only. */
export function checkAlgorithms(algs: readonly string[], who: string): string[] {
  if (!Array.isArray(algs) || algs.length === 0) throw new TypeError(`${who}: algorithms must be a non-empty list`);
  for (const a of algs) {
    if (!ASYMMETRIC_ALGS.has(a)) throw new TypeError(`${who}: algorithm "${String(a)}" is not an asymmetric JWS algorithm Mandate supports`);
  }
  return [...algs];
}

/** The JWK SHA-256 thumbprint (RFC 7638), base64url: the `jkt` of RFC 9449 §6.1. */
export function jwkThumbprint(jwk: JWK): Promise<string> {
  return calculateJwkThumbprint(jwk, 'sha256');
}

/**
 * Compares two base64url SHA-256 digests (`ath`, a `jkt`) in constant time. Neither is a secret
 * and their length is public (43 characters), so unlike `secretEquals` they are not hashed
 * again first: two SHA-256 computations fewer per comparison, twice per DPoP call.
 */
function digestEquals(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  const ba = Buffer.from(a, 'utf8');
  const bb = Buffer.from(b, 'utf8');
  return ba.length === bb.length && timingSafeEqual(ba, bb);
}

/** The `ath` claim for an access token: base64url(SHA-256(ASCII(token))) (RFC 9449 §4.2). */
export function athFor(accessToken: string): string {
  return createHash('sha256').update(accessToken, 'utf8').digest('base64url');
}

export interface DpopVerifierOptions {
  /** One-time `jti` records shared by every instance (§11.1). */
  replay: ReplayStore;
  clock: Clock;
  /** How long after `iat` a proof is accepted, seconds (default 60). */
  maxAgeS?: number;
  /** Allowed clock difference, seconds (default 5). */
  skewS?: number;
  /** Accepted `alg` values (default ES256, ES384, EdDSA, RS256, PS256); asymmetric only. */
  algorithms?: string[];
  /** Server nonces (§8); a proof that carries a `nonce` is checked against them. */
  nonces?: DpopNonces;
  /** Every proof must carry a valid nonce (needs `nonces`). */
  requireNonce?: boolean;
  /** Size cap of the proof, bytes (default 8192). */
  maxBytes?: number;
  /** Imported proof keys remembered by thumbprint (default 10 000). */
  keyCacheSize?: number;
}

export interface DpopCheck {
  /** The HTTP method of the request, e.g. `POST` (compared exactly with `htm`). */
  method: string;
  /** The URL of the request as the server knows it (its public URL), compared with `htu` after `normalizeHtu`. */
  url: string;
  /** At a resource: the access token presented with the proof; `ath` must be its hash (§4.3 item 12). */
  accessToken?: string;
  /** At a resource: the `cnf.jkt` of the access token; the proof's key must have this thumbprint (§7.1). */
  expectedJkt?: string;
}

export interface VerifiedDpopProof {
  /** The JWK SHA-256 thumbprint of the proof's key (RFC 7638). */
  jkt: string;
  jti: string;
  /** `iat`, seconds since the epoch. */
  iat: number;
  /** The public key from the header, reduced to its required members. */
  jwk: JWK;
}

const invalid = (d: string): OAuthError => oauth.invalidDpopProof(d);

/**
 * Verifies DPoP proofs (RFC 9449 §4.3). Every failure is an OAuthError `invalid_dpop_proof`
 * (or `use_dpop_nonce`, §8: the caller then sends `DPoP-Nonce: currentNonce()`); descriptions
 * never repeat the proof or its claims.
 */
export class DpopVerifier {
  private readonly replay: ReplayStore;
  private readonly clock: Clock;
  private readonly maxAgeS: number;
  private readonly skewS: number;
  private readonly algorithms: string[];
  private readonly nonces: DpopNonces | undefined;
  private readonly requireNonce: boolean;
  private readonly maxBytes: number;
  /**
   * Imported proof keys by JWK thumbprint (RFC 7638): an agent proves with the same key on every
   * request, and importing costs more than verifying. The thumbprint covers every member that
   * defines the public key, so one thumbprint is one key.
   */
  private readonly keys: BoundedMap<string, KeyObject>;

  constructor(opts: DpopVerifierOptions) {
    this.replay = opts.replay;
    this.clock = opts.clock;
    this.maxAgeS = opts.maxAgeS ?? 60;
    this.skewS = opts.skewS ?? 5;
    this.algorithms = checkAlgorithms(opts.algorithms ?? DEFAULT_DPOP_ALGS, 'DpopVerifier');
    this.nonces = opts.nonces;
    this.requireNonce = opts.requireNonce ?? false;
    this.maxBytes = opts.maxBytes ?? 8192;
    this.keys = new BoundedMap(opts.keyCacheSize ?? 10_000);
    if (!(this.maxAgeS > 0) || !(this.skewS >= 0) || !(this.maxBytes > 0)) throw new TypeError('DpopVerifier: maxAgeS, skewS and maxBytes must be positive');
    if (this.requireNonce && !this.nonces) throw new TypeError('DpopVerifier: requireNonce needs nonces');
  }

  /** The nonce to send in `DPoP-Nonce` (RFC 9449 §8.1). */
  currentNonce(): string {
    if (!this.nonces) throw new TypeError('DpopVerifier: no nonces configured');
    return this.nonces.current();
  }

  /** The algorithms accepted, for `dpop_signing_alg_values_supported` and `WWW-Authenticate: DPoP algs=…`. */
  get supportedAlgorithms(): readonly string[] {
    return this.algorithms;
  }

  async verify(proofHeader: string | string[] | undefined, check: DpopCheck): Promise<VerifiedDpopProof> {
    // §4.3 item 1: exactly one DPoP header. Node joins repeated unknown headers with ", ";
    // a compact JWS has neither commas nor spaces.
    if (proofHeader === undefined || proofHeader === '') throw invalid('a DPoP proof is required (DPoP header missing)');
    if (typeof proofHeader !== 'string') throw invalid('exactly one DPoP header is allowed (RFC 9449 §4.3)');
    if (proofHeader.includes(',')) throw invalid('exactly one DPoP header is allowed (RFC 9449 §4.3)');

    // §4.3 items 2–3: a well-formed JWT.
    const { header, payload } = parseCompactJws(proofHeader, this.maxBytes, (d) => invalid(`the DPoP proof is malformed: ${d}`));

    // §4.3 item 4: typ.
    if (header.typ !== 'dpop+jwt') throw invalid('the DPoP proof "typ" must be "dpop+jwt"');
    // §4.3 item 5: an asymmetric algorithm the server supports.
    const alg = header.alg;
    if (typeof alg !== 'string' || !this.algorithms.includes(alg)) {
      throw invalid(`the DPoP proof "alg" must be one of ${this.algorithms.join(', ')}`);
    }
    if (header.crit !== undefined) throw invalid('the DPoP proof must not have "crit" header parameters');
    // §4.3 item 7: the jwk header parameter is a public key.
    let jwk: JWK;
    try {
      jwk = publicJwkOf(header.jwk);
    } catch (err) {
      throw invalid(header.jwk === undefined ? 'the DPoP proof has no "jwk" header parameter' : `the DPoP proof ${(err as Error).message}`);
    }
    if (!keyFitsAlg(jwk, alg) || !keyUsableFor(header.jwk as Record<string, unknown>, alg)) {
      throw invalid('the DPoP proof "jwk" does not fit its "alg"');
    }

    // §4.3 item 6: the signature verifies with the key in the header (node:crypto, see jws.ts).
    const jkt = thumbprintSync(jwk);
    let key = this.keys.get(jkt);
    if (!key) {
      try {
        key = importPublicKey(jwk, alg);
      } catch {
        throw invalid('the DPoP proof "jwk" is not a valid public key');
      }
      this.keys.set(jkt, key);
    }
    if (!(await verifyCompactAsync(proofHeader, alg, key))) throw invalid('the DPoP proof signature does not verify');

    // §4.3 item 8: required claims, then items 9–11.
    const { jti, htm, htu, iat } = payload;
    if (typeof jti !== 'string' || jti.length === 0) throw invalid('the DPoP proof has no "jti"');
    if (jti.length > MAX_JTI_LENGTH) throw invalid(`the DPoP proof "jti" is longer than ${MAX_JTI_LENGTH} characters`);
    if (typeof htm !== 'string') throw invalid('the DPoP proof has no "htm"');
    if (htm !== check.method) throw invalid('the DPoP proof "htm" does not match the request method');
    if (typeof htu !== 'string') throw invalid('the DPoP proof has no "htu"');
    let proofUrl: string;
    try {
      proofUrl = normalizeHtu(htu);
    } catch {
      throw invalid('the DPoP proof "htu" is not an http(s) URL');
    }
    if (proofUrl !== normalizeHtu(check.url)) throw invalid('the DPoP proof "htu" does not match the request URL');
    if (typeof iat !== 'number' || !Number.isFinite(iat)) throw invalid('the DPoP proof has no numeric "iat"');
    const now = this.clock.now() / 1000;
    if (iat > now + this.skewS) throw invalid('the DPoP proof "iat" is in the future');
    if (iat < now - this.maxAgeS - this.skewS) throw invalid(`the DPoP proof is older than ${this.maxAgeS}s`);

    // §4.3 item 10 and §8: server nonces.
    if (payload.nonce !== undefined || this.requireNonce) {
      if (payload.nonce === undefined) throw oauth.useDpopNonce('a DPoP nonce is required: use the DPoP-Nonce response header');
      if (typeof payload.nonce !== 'string') throw invalid('the DPoP proof "nonce" must be a string');
      if (this.nonces && !this.nonces.isValid(payload.nonce)) throw oauth.useDpopNonce('the DPoP nonce is not valid or has expired: use the DPoP-Nonce response header');
    }

    // §4.3 item 12: at a resource, the access token hash and the key binding.
    if (check.accessToken !== undefined) {
      if (typeof payload.ath !== 'string') throw invalid('the DPoP proof has no "ath" for the access token');
      if (!digestEquals(payload.ath, athFor(check.accessToken))) throw invalid('the DPoP proof "ath" does not match the access token');
    }
    if (check.expectedJkt !== undefined && !digestEquals(jkt, check.expectedJkt)) {
      throw invalid('the DPoP proof key is not the key the access token is bound to');
    }

    // §11.1: a proof is used once, across every instance. The record lives as long as the proof
    // can pass the `iat` window above (plus one second for the inclusive bound).
    const replayKey = createHash('sha256').update(`${jkt}:${jti}`).digest('base64url');
    const expiresAt = Math.ceil((iat + this.maxAgeS + this.skewS + 1) * 1000);
    if (!(await this.replay.insertOnce('dpop', replayKey, expiresAt))) throw invalid('the DPoP proof was already used (replayed)');

    return { jkt, jti, iat, jwk };
  }
}
