import { readFileSync } from 'node:fs';
import { timingSafeEqual, createHash } from 'node:crypto';
import { MandateError } from './errors.js';

/**
 * Secrets are written in config only by reference: `env:NAME` or `file:PATH`.
 * An inline secret is refused by the config schema; this module resolves references.
 */
export const SECRET_REF_RE = /^(env|file):(.+)$/;

export function isSecretRef(value: string): boolean {
  return SECRET_REF_RE.test(value);
}

/** Resolves `env:NAME` or `file:PATH` to its value (a file's trailing newline is dropped). */
export function resolveSecret(ref: string, env: NodeJS.ProcessEnv = process.env): string {
  const m = SECRET_REF_RE.exec(ref);
  if (!m) throw new MandateError('ERR_SECRET_REF', 'a secret must be a reference: env:NAME or file:PATH');
  const [, kind, target] = m as unknown as [string, 'env' | 'file', string];
  if (kind === 'env') {
    const v = env[target];
    if (v === undefined || v === '') throw new MandateError('ERR_SECRET_MISSING', `secret env:${target} is not set`);
    return v;
  }
  try {
    return readFileSync(target, 'utf8').replace(/\r?\n$/, '');
  } catch (err) {
    throw new MandateError('ERR_SECRET_MISSING', `secret file:${target} cannot be read`, { cause: err });
  }
}

/** Constant-time comparison of two secrets of any length (both are hashed first). */
export function secretEquals(a: string | Uint8Array, b: string | Uint8Array): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

/**
 * sha256 of a credential's secret part, hex: all that is stored of an admin or stream
 * credential (the secret itself has 256 random bits, so no slow hash is needed).
 */
export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** Compared against when no hash is stored for the id presented (see secretMatchesHash). */
const NO_HASH = '0'.repeat(64);

/**
 * Whether `secret` hashes to `storedHash`, in constant time. With no stored hash (an unknown id)
 * the same work is done against a hash no secret has, so timing does not tell which ids exist.
 */
export function secretMatchesHash(secret: string, storedHash: string | undefined): boolean {
  return secretEquals(hashSecret(secret), storedHash ?? NO_HASH) && storedHash !== undefined;
}

/**
 * The credential of an `Authorization: Bearer <credential>` header (RFC 6750 §2.1; the scheme
 * name is case-insensitive, RFC 9110 §11.1), or undefined when the header is anything else
 * (absent, repeated, another scheme, or a credential with white space in it).
 */
export function bearerCredential(header: string | string[] | undefined): string | undefined {
  if (typeof header !== 'string') return undefined;
  return /^Bearer ([^\s]+)$/i.exec(header.trim())?.[1];
}
