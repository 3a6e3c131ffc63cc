// The header handling of the bench's plain reverse proxies (passthrough.mjs, audit-floor.mjs): one
// copy, so that the two do exactly the same work besides what audit-floor adds.

/** Hop-by-hop headers (RFC 9110 §7.6.1) and Host: not passed on, either way. */
export const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host']);

/** The request's headers for the upstream hop, from node:http's rawHeaders. */
export function forwardHeaders(raw) {
  const out = {};
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i].toLowerCase();
    if (!HOP.has(k)) out[k] = raw[i + 1];
  }
  return out;
}

/** The upstream's response headers for the client. */
export function backHeaders(headers) {
  const h = {};
  for (const [k, v] of Object.entries(headers)) if (!HOP.has(k)) h[k] = v;
  return h;
}
