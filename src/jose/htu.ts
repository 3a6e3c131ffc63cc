/**
 * The `htu` comparison of RFC 9449 §4.3 item 9: the proof's `htu` and the URL of the request
 * are compared without query and fragment, after syntax-based and scheme-based normalization
 * (RFC 3986 §6.2.2 and §6.2.3). Both sides go through `normalizeHtu`, so that `HTTPS://Host:443`
 * and `https://host/` are equal and `https://host/a?x=1` equals `https://host/a`.
 */
import { BoundedMap } from '../core/index.js';

const MAX_HTU_LENGTH = 4096;
const UNRESERVED = /^[A-Za-z0-9\-._~]$/;

/**
 * Normalizes an http(s) URL for the DPoP `htu` comparison:
 * - scheme and host in lower case (RFC 3986 §6.2.2.1), IDNs in their ASCII form;
 * - the default port dropped (`:443` for https, `:80` for http; §6.2.3);
 * - an empty path becomes `/` (§6.2.3); dot segments removed (§6.2.2.3);
 * - percent-encodings in upper case, those of unreserved characters decoded (§6.2.2.1–6.2.2.2);
 * - query and fragment dropped (RFC 9449 §4.3 item 9).
 *
 * Throws a TypeError when the value is not an absolute http or https URL.
 */
export function normalizeHtu(url: string): string {
  if (typeof url !== 'string' || url.length === 0 || url.length > MAX_HTU_LENGTH) throw new TypeError('htu must be an absolute http(s) URL');
  // A pure function of the string, asked twice per DPoP call (the proof's htu and the request's
  // URL) for the same few URLs: the answers are remembered (bounded; failures are not).
  const known = normalized.get(url);
  if (known !== undefined) return known;
  const out = normalizeUncached(url);
  if (url.length > MAX_REMEMBERED_LENGTH) return out;
  normalized.set(url, out);
  return out;
}

const MAX_REMEMBERED = 2048;
const normalized = new BoundedMap<string, string>(MAX_REMEMBERED);
/** Longer URLs are normalized every time, so that the memory held stays small (≤ 2048 × 512 characters, twice). */
const MAX_REMEMBERED_LENGTH = 512;

function normalizeUncached(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new TypeError('htu must be an absolute http(s) URL');
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new TypeError('htu must be an http or https URL');
  if (u.host === '') throw new TypeError('htu must name a host');
  const userinfo = u.username || u.password ? `${pct(u.username)}${u.password ? `:${pct(u.password)}` : ''}@` : '';
  // URL already lower-cases the scheme and host and drops the default port; `host` keeps any other port.
  const path = pct(u.pathname) || '/';
  return `${u.protocol}//${userinfo}${u.host.toLowerCase()}${path}`;
}

/** Percent-encoding normalization: `%7e` → `~`, `%2f` → `%2F`. */
function pct(s: string): string {
  return s.replace(/%([0-9A-Fa-f]{2})/g, (_m, hex: string) => {
    const ch = String.fromCharCode(parseInt(hex, 16));
    return UNRESERVED.test(ch) ? ch : `%${hex.toUpperCase()}`;
  });
}
