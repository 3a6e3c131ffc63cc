import { createHash } from 'node:crypto';

/**
 * The canonical JSON of a tool call's arguments and its digest. The agent SDK, the broker
 * (elevation tokens) and the proxy (approval gate, audit) must compute the same digest, so
 * there is one implementation; it depends on nothing but node:crypto, which lets the agent
 * SDK import it too.
 */

/**
 * JSON with object keys sorted (by UTF-16 code units) at every depth; otherwise exactly
 * JSON.stringify (undefined members dropped, non-finite numbers as null, toJSON honoured), so
 * the canonical form of a value equals that of its JSON round trip. The audit chain hashes it too.
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value)) ?? 'null';
}

function sortKeys(value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value;
  const v = value as { toJSON?: () => unknown };
  if (typeof v.toJSON === 'function') return sortKeys(v.toJSON());
  if (Array.isArray(value)) return value.map(sortKeys);
  // Null prototype: a "__proto__" key (JSON.parse makes it an own property) stays a plain key.
  const out = Object.create(null) as Record<string, unknown>;
  for (const k of Object.keys(value).sort()) out[k] = sortKeys((value as Record<string, unknown>)[k]);
  return out;
}

/** base64url SHA-256 of the canonical JSON of a tool call's arguments: what approvals are bound to. */
export function argsDigest(args: unknown): string {
  return createHash('sha256').update(canonicalJson(args), 'utf8').digest('base64url');
}
