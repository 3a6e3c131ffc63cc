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
