import { createHash, randomBytes } from 'node:crypto';

/** base64url(SHA-256(input)), no padding. */
export function sha256b64u(input: string | Uint8Array): string {
  return createHash('sha256').update(input).digest('base64url');
}

/** A random identifier for `jti` claims: 128 bits, base64url. */
export function randomJti(): string {
  return randomBytes(16).toString('base64url');
}

export { canonicalJson } from '../core/canonical.js';

/** The `exp` claim (seconds) of a compact JWT, without verifying it; undefined when unreadable. */
export function unverifiedExp(jwt: string): number | undefined {
  try {
    const payload = jwt.split('.')[1];
    if (!payload) return undefined;
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { exp?: unknown };
    return typeof claims.exp === 'number' ? claims.exp : undefined;
  } catch {
    return undefined;
  }
}

/** The `typ` header of a compact JWS, without verifying it. */
export function unverifiedTyp(jwt: string): string | undefined {
  try {
    const header = jwt.split('.')[0];
    if (!header) return undefined;
    const h = JSON.parse(Buffer.from(header, 'base64url').toString('utf8')) as { typ?: unknown };
    return typeof h.typ === 'string' ? h.typ : undefined;
  } catch {
    return undefined;
  }
}

export interface ClientClock {
  /** Milliseconds since the epoch. */
  now(): number;
}

export const systemClock: ClientClock = { now: () => Date.now() };
