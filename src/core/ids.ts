import { randomBytes, randomUUID } from 'node:crypto';

/** A random, URL-safe identifier with a readable prefix, e.g. `apr_3k9…`. 128 bits of entropy. */
export function newId(prefix: string): string {
  return `${prefix}_${randomBytes(16).toString('base64url')}`;
}

export { randomUUID };
