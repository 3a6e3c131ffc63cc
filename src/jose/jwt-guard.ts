import { MandateError } from '../core/errors.js';
import { hasDuplicateKeys } from '../core/http.js';

/**
 * Checks for any compact JWS received from outside, run before a signature is verified
 * (RFC 8725, JSON Web Token Best Current Practices). Pure: no I/O, no keys.
 *
 * - §3.1 / §2.1: `alg` is required, `none` is refused in any letter case, and the algorithm
 *   must be one the caller pinned for this use (never what the token asks for).
 * - RFC 7515 §4 and RFC 7519 §4: header and payload are JSON objects without duplicate member
 *   names (refusing them is one of the two allowed choices), so no two parsers can disagree
 *   about what the token says.
 * - RFC 7515 §4.1.11: a `crit` header naming extensions is refused (we implement none).
 * - A size cap is applied before anything is decoded.
 *
 * Keys never come from the token: `jwk`, `jku`, `x5u` and `x5c` (RFC 7515 §4.1.2–4.1.6) are
 * ignored here and by every caller: never fetched, never used (RFC 8725 §3.10 on SSRF, and the
 * "embedded key" attacks). Only the pinned `alg` and the `kid` are used to select a key.
 */

export const DEFAULT_MAX_JWS_BYTES = 16 * 1024;

export type JwtGuardReason = 'too_large' | 'malformed' | 'duplicate_members' | 'alg_none' | 'alg_not_allowed' | 'crit';

/** A token refused before verification; `reason` is stable, the message never echoes the token. */
export class JwtGuardError extends MandateError {
  readonly reason: JwtGuardReason;
  constructor(reason: JwtGuardReason, message: string) {
    super('ERR_JWT_GUARD', message);
    this.reason = reason;
  }
}

export interface JwsParts {
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
}

export interface JwsShapeOptions {
  /** Largest accepted token, in bytes; default 16 KiB. */
  maxBytes?: number;
  /** The algorithms the caller accepts for this use (`none` is refused even if listed). */
  algorithms: readonly string[];
}

const B64URL = /^[A-Za-z0-9_-]*$/;
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Splits and decodes a compact JWS without verifying it: for routing only (reading `iss`
 * to choose a trust entry, `kid` to choose a key). Applies the size cap and the structural
 * checks; the result must never be trusted.
 */
export function decodeUnverified(jwt: unknown, maxBytes: number = DEFAULT_MAX_JWS_BYTES): JwsParts {
  if (typeof jwt !== 'string') throw new JwtGuardError('malformed', 'token is not a string');
  // `length` counts UTF-16 units, never more than the UTF-8 bytes: a cheap first cut, then the exact one.
  if (jwt.length > maxBytes || Buffer.byteLength(jwt, 'utf8') > maxBytes) {
    throw new JwtGuardError('too_large', `token is larger than ${maxBytes} bytes`);
  }
  const parts = jwt.split('.');
  if (parts.length !== 3) throw new JwtGuardError('malformed', 'token is not a compact JWS (three base64url parts)');
  const [h, p] = parts as [string, string, string];
  if (h === '' || p === '') throw new JwtGuardError('malformed', 'token has an empty header or payload');
  // Each part decoded once: checked canonical from its bytes, which are then the JSON's.
  const bytes = parts.map((part) => {
    const b = B64URL.test(part) ? canonicalB64url(part) : undefined;
    if (!b) throw new JwtGuardError('malformed', 'token is not base64url (RFC 7515 §2, no padding)');
    return b;
  });
  return { header: decodeObject(bytes[0]!, 'header'), payload: decodeObject(bytes[1]!, 'payload') };
}

/**
 * The full pre-verification check. Returns the (unverified) header and payload; throws a
 * `JwtGuardError` whose `reason` says which rule refused the token.
 */
export function assertJwsShape(jwt: unknown, opts: JwsShapeOptions): JwsParts {
  const { header, payload } = decodeUnverified(jwt, opts.maxBytes ?? DEFAULT_MAX_JWS_BYTES);
  const alg = header.alg;
  if (typeof alg !== 'string' || alg === '') throw new JwtGuardError('malformed', 'token header has no "alg"');
  if (alg.trim().toLowerCase() === 'none') throw new JwtGuardError('alg_none', 'unsecured tokens (alg "none") are refused');
  if (!opts.algorithms.includes(alg)) throw new JwtGuardError('alg_not_allowed', 'token algorithm is not one of the accepted algorithms');
  if (header.kid !== undefined && typeof header.kid !== 'string') throw new JwtGuardError('malformed', 'token header "kid" is not a string');
  if (header.crit !== undefined) {
    if (!Array.isArray(header.crit)) throw new JwtGuardError('malformed', 'token header "crit" is not an array');
    if (header.crit.length > 0) throw new JwtGuardError('crit', 'token header "crit" names extensions that are not supported');
  }
  if ((jwt as string).endsWith('.')) throw new JwtGuardError('malformed', 'token has no signature');
  return { header, payload };
}

/** The bytes of base64url without padding and with zero trailing bits (one encoding per value), or undefined. */
function canonicalB64url(s: string): Buffer | undefined {
  if (s.length % 4 === 1) return undefined;
  const b = Buffer.from(s, 'base64url');
  return b.toString('base64url') === s ? b : undefined;
}

function decodeObject(bytes: Buffer, what: 'header' | 'payload'): Record<string, unknown> {
  let text: string;
  let value: unknown;
  try {
    text = utf8.decode(bytes);
    value = JSON.parse(text);
  } catch {
    throw new JwtGuardError('malformed', `token ${what} is not JSON`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new JwtGuardError('malformed', `token ${what} is not a JSON object`);
  }
  if (hasDuplicateKeys(text)) throw new JwtGuardError('duplicate_members', `token ${what} has duplicate member names`);
  return value as Record<string, unknown>;
}
