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

/**
 * What an HTTP call's body contributes to its arguments when the call can be held for a human
 * (`args.body`): the digest of the body's bytes together with the two headers that say how the
 * tool reads them (`Content-Type`, `Content-Encoding`, as sent, or null), so that an approval of
 * `{"amount":1}` as JSON does not pass the same bytes sent as a form, or compressed.
 */
export function bodyDigest(body: Uint8Array, contentType: string | null | undefined, contentEncoding: string | null | undefined): string {
  return argsDigest({ bytes: Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('base64'), content_type: contentType ?? null, content_encoding: contentEncoding ?? null });
}

/**
 * The digest the proxy binds an HTTP call to when it can be held for a human: `{ params, query,
 * body }` with `params` the path template's parameters, `query` the query as an object (each
 * name once), and `body` its bodyDigest when the call has one. Agents pass it as `args_digest`.
 */
export function httpCallDigest(call: {
  params: Record<string, string>; query: Record<string, string>; body?: Uint8Array; contentType?: string; contentEncoding?: string;
}): string {
  const args: Record<string, unknown> = { params: call.params, query: call.query };
  if (call.body !== undefined && call.body.byteLength > 0) args.body = bodyDigest(call.body, call.contentType, call.contentEncoding);
  return argsDigest(args);
}
