import { isUtf8 } from 'node:buffer';
import { OAuthError } from '../core/errors.js';

/**
 * Normalization of the path of a request target before the proxy matches it against a tool's
 * action templates and forwards it upstream.
 *
 * The proxy decides *which action* a request is from its path, and the upstream then decides
 * *what to do* from the same path. If the two read the path differently (one decodes `%2F`, one
 * decodes twice, one treats `\` as `/`, one resolves `..` after the proxy looked), an agent
 * granted `GET /tickets/{id}` reaches `/admin`. So the path is brought to one normal form
 * (RFC 3986 §6.2.2: syntax-based normalization), the form the upstream receives, and every
 * input for which no unambiguous normal form exists is refused rather than "fixed".
 */

/** Longer paths are refused: no tool needs more, and the cap bounds the work per request. */
export const MAX_PATH_LENGTH = 2048;

/**
 * A path the proxy will not forward. An OAuthError `invalid_request` (400) on the wire
 * (RFC 6750 §3.1: a malformed request), with the stable local code `path_refused`; the message
 * says what was refused (it repeats nothing secret: only the offending character or sequence).
 */
export class PathRefusedError extends OAuthError {
  override readonly code = 'path_refused';
  constructor(reason: string) {
    super('invalid_request', `path refused: ${reason}`, 400);
  }
}

/** The value of one hex digit (RFC 3986 §2.1 HEXDIG, either case), or -1 (also for NaN past the end). */
function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/**
 * Characters allowed raw in a path segment (RFC 3986 §3.3): `pchar = unreserved / pct-encoded /
 * sub-delims / ":" / "@"`, plus `/` between segments. `%` starts a percent-encoding, checked apart.
 * Everything else (space, `"`, `<`, `>`, `\`, `^`, `` ` ``, `{`, `|`, `}`, `[`, `]`, `?`, `#`)
 * is not part of a valid origin-form path (RFC 9112 §3.2.1) and is refused, not re-encoded:
 * servers disagree on what such bytes mean, which is the very ambiguity being removed.
 */
const PATH_CHARS = /^[A-Za-z0-9\-._~!$&'()*+,;=:@\/%]*$/;

/** Unreserved characters (RFC 3986 §2.3): their percent-encodings are decoded (§6.2.2.2). */
const UNRESERVED = new Uint8Array(128);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~') UNRESERVED[c.charCodeAt(0)] = 1;

/**
 * Returns the normal form of `raw` (the path of a request target, without `?query`):
 * - percent-encoded unreserved characters decoded, in any hex case (RFC 3986 §2.3, §6.2.2.2);
 * - every other percent-encoding in upper-case hex (§6.2.2.1);
 * - repeated slashes collapsed (`//a` → `/a`): most servers do, so the proxy must match what they serve;
 * - dot segments removed (§5.2.4, §6.2.2.3), including those that are dots only after decoding
 *   (`%2e%2e`); a trailing slash is kept as given, and a final `.`/`..` leaves one (`/a/b/..` → `/a/`).
 *
 * Throws PathRefusedError for: a path over MAX_PATH_LENGTH or not starting with `/`; non-ASCII or
 * control characters (raw, or encoded `%00`–`%1F`, `%7F`); a raw `\` or encoded `%5C` (Windows
 * and some frameworks treat it as `/`); an encoded `/` (`%2F`: one server splits on it, another
 * does not); `%25` (an encoded `%`: double encoding, refused because some upstream decodes
 * twice and would see `%2F` or `%2e` as a separator or a dot); malformed percent-encoding;
 * percent-encoded bytes that are not valid UTF-8 (RFC 3629 §10: overlong forms such as `%C0%AE`
 * for `.` have been used to smuggle dots and slashes past checks); a dot segment climbing above
 * the root (RFC 3986 §5.2.4 would silently clamp it: the request is hostile or broken); a dot
 * segment carrying a path parameter (`..;x`, `..%3B`: servlet containers strip `;…` and then
 * resolve the `..`); any character outside RFC 3986 §3.3 `pchar` and `/` (also `?` and `#`).
 */
export function normalizePath(raw: string): string {
  if (typeof raw !== 'string') throw new PathRefusedError('not a string');
  if (raw.length > MAX_PATH_LENGTH) throw new PathRefusedError(`longer than ${MAX_PATH_LENGTH} characters`);
  if (raw.charCodeAt(0) !== 0x2f) throw new PathRefusedError('does not start with "/"');

  // Pass 1: every character must be a pchar, "/" or "%" (one native regex test on the fast path);
  // the slow loop runs only to say which character was refused.
  if (!PATH_CHARS.test(raw)) throw refuseCharacter(raw);
  // Percent-encodings: validate each, decode the unreserved ones, upper-case the rest.
  let out = raw;
  let highBytes = false;
  let pct = raw.indexOf('%');
  if (pct !== -1) {
    out = raw.slice(0, pct);
    while (pct !== -1) {
      const hi = hexValue(raw.charCodeAt(pct + 1));
      const lo = hexValue(raw.charCodeAt(pct + 2));
      if (hi < 0 || lo < 0) throw new PathRefusedError(`malformed percent-encoding at offset ${pct}`);
      const b = hi * 16 + lo;
      const hex = raw.slice(pct + 1, pct + 3);
      if (b < 0x20 || b === 0x7f) throw new PathRefusedError(`encoded control character %${hex.toUpperCase()}`);
      if (b === 0x2f) throw new PathRefusedError('encoded "/" (%2F)');
      if (b === 0x5c) throw new PathRefusedError('encoded "\\" (%5C)');
      if (b === 0x25) throw new PathRefusedError('encoded "%" (%25, double encoding)');
      if (b < 0x80 && UNRESERVED[b] === 1) out += String.fromCharCode(b);
      else {
        if (b >= 0x80) highBytes = true;
        out += `%${hex.toUpperCase()}`;
      }
      const next = raw.indexOf('%', pct + 3);
      out += raw.slice(pct + 3, next === -1 ? raw.length : next);
      pct = next;
    }
  }
  if (highBytes) {
    const bytes = percentBytes(out);
    if (!isUtf8(bytes)) throw new PathRefusedError('percent-encoded bytes are not valid UTF-8');
    if (foldsIntoSyntax(bytes.toString('utf8'))) {
      throw new PathRefusedError('an encoded character that Unicode compatibility normalization or "best fit" mapping turns into path syntax (. / \\ % ; ? #)');
    }
  }

  // Pass 2: segments. `out` starts with "/", so segs[0] is "" and is skipped.
  const segs = out.split('/');
  const last = segs.length - 1;
  const stack: string[] = [];
  let trailingSlash = false;
  for (let i = 1; i <= last; i++) {
    const seg = segs[i]!;
    if (seg === '') {
      // An empty segment is a repeated slash, or the final one of a trailing slash.
      if (i === last) trailingSlash = true;
      continue;
    }
    if (seg === '.' || seg === '..') {
      // RFC 3986 §5.2.4 step 2B/2C: `..` removes the previous output segment; none left is
      // an attempt to climb above the root, refused instead of clamped.
      if (seg === '..') {
        if (stack.length === 0) throw new PathRefusedError('".." climbs above the root');
        stack.pop();
      }
      // §5.2.4 step 2B/2C on a final "/." or "/..": the output keeps the slash before it.
      if (i === last) trailingSlash = true;
      continue;
    }
    if (isDotWithParameter(seg)) throw new PathRefusedError('a dot segment with a path parameter (";")');
    trailingSlash = false;
    stack.push(seg);
  }
  if (stack.length === 0) return '/';
  return `/${stack.join('/')}${trailingSlash ? '/' : ''}`;
}

/**
 * Characters that Windows "best fit" code-page mapping turns into path syntax although NFKC
 * leaves them alone (WideCharToMultiByte: DIVISION SLASH and FRACTION SLASH to "/", SET MINUS to
 * "\\"); NFKC covers the fullwidth and small forms (U+FF0E, U+FF0F, U+FF3C, U+FE68, U+2024, …).
 */
const BEST_FIT_SYNTAX = /[\u2215\u2044\u2216]/g;

/**
 * Whether a decoded path gains ".", "/", "\\", "%", ";", "?" or "#" when a tool applies Unicode compatibility
 * normalization (NFKC, as some frameworks and file systems do) or best-fit mapping: `%EF%BC%8E`
 * twice (FULLWIDTH FULL STOP) would read as `..` there. Such a path means one thing to the proxy
 * and another to the tool, so it is refused. Only non-ASCII paths get here.
 */
function foldsIntoSyntax(decoded: string): boolean {
  const folded = decoded.normalize('NFKC').replace(BEST_FIT_SYNTAX, (c) => (c === '\u2216' ? '\\' : '/'));
  const count = (t: string) => {
    let n = 0;
    for (let i = 0; i < t.length; i++) {
      const c = t.charCodeAt(i);
      // . / \ % ; ? #: dot segments, separators, escapes, path parameters, query and fragment.
      if (c === 0x2e || c === 0x2f || c === 0x5c || c === 0x25 || c === 0x3b || c === 0x3f || c === 0x23) n++;
    }
    return n;
  };
  return count(folded) !== count(decoded);
}

/** `.;x`, `..;x`, `..%3Bx`: a dot segment once a server strips the `;` path parameter (RFC 2396 §3.3). */
function isDotWithParameter(seg: string): boolean {
  if (seg.charCodeAt(0) !== 0x2e) return false;
  const semi = seg.indexOf(';');
  const enc = seg.indexOf('%3B');
  const cut = semi === -1 ? enc : enc === -1 ? semi : Math.min(semi, enc);
  if (cut === -1) return false;
  const head = seg.slice(0, cut);
  return head === '.' || head === '..';
}

/** The error for the first character PATH_CHARS refused (the slow path: only for refused input). */
function refuseCharacter(raw: string): PathRefusedError {
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return new PathRefusedError(`control character 0x${c.toString(16).padStart(2, '0')}`);
    if (c > 0x7f) return new PathRefusedError('non-ASCII character (percent-encode it as UTF-8)');
    if (c === 0x5c) return new PathRefusedError('"\\"');
    if (!PATH_CHARS.test(raw[i]!)) return new PathRefusedError(`character "${raw[i]}" is not allowed in a path (RFC 3986 §3.3)`);
  }
  return new PathRefusedError('invalid character');
}

/** The bytes a path denotes once percent-decoded (the input is ASCII, encodings validated). */
function percentBytes(s: string): Buffer {
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) === 0x25) {
      bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(s.charCodeAt(i));
  }
  return Buffer.from(bytes);
}
