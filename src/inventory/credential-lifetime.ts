import type { CredentialRecord } from './ports.js';

/**
 * When a credential stops authenticating, epoch ms, or null when it has no end. A static secret
 * ends with its exception (and at its own `expiresAt` if that comes first); a static secret
 * recorded without an exception end has already ended (it exists only as a bounded exception),
 * so it never authenticates, whatever else the record says.
 */
export function credentialEndsAt(c: Pick<CredentialRecord, 'type' | 'expiresAt' | 'exceptionExpiresAt'>): number | null {
  if (c.type === 'static_secret') {
    if (c.exceptionExpiresAt === null) return Number.NEGATIVE_INFINITY;
    return c.expiresAt === null ? c.exceptionExpiresAt : Math.min(c.expiresAt, c.exceptionExpiresAt);
  }
  return c.expiresAt;
}

/** Whether the credential may authenticate at `now`: its end, when it has one, is still ahead. */
export function credentialActiveAt(c: Pick<CredentialRecord, 'type' | 'expiresAt' | 'exceptionExpiresAt'>, now: number): boolean {
  const end = credentialEndsAt(c);
  return end === null || now < end;
}

/** The earliest end among `creds` (Infinity when none ends): until then, all of them are as active as they were. */
export function firstCredentialEnd(creds: readonly Pick<CredentialRecord, 'type' | 'expiresAt' | 'exceptionExpiresAt'>[]): number {
  let first = Number.POSITIVE_INFINITY;
  for (const c of creds) {
    const end = credentialEndsAt(c);
    if (end !== null && end < first) first = end;
  }
  return first;
}
