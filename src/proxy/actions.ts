import type { IncomingHttpHeaders } from 'node:http';
import { ConfigError } from '../core/errors.js';
import type { ActionConfig } from '../core/config/index.js';

/**
 * Which declared action a request is. The answer decides the scope the token must carry and
 * the tier (TTL, approval) the broker applied, so matching is exact and never guesses:
 * - HTTP tools: the method exactly as declared (RFC 9110 §9.1: methods are case-sensitive; HEAD
 *   is not GET here, because an action allowing GET says nothing about other methods), and the
 *   already-normalized path (see path.ts) against the action's template.
 * - MCP tools: the tool name of `tools/call`, compared code unit by code unit.
 */

export interface HttpMatch {
  readonly action: ActionConfig;
  /** Template parameters (`/tickets/{id}` → `id`), percent-decoded. */
  readonly params: Record<string, string>;
}

interface Compiled {
  readonly action: ActionConfig;
  readonly method: string;
  /** One entry per path segment: a literal to compare, or `{ param }`. */
  readonly segments: ReadonlyArray<string | { readonly param: string }>;
  readonly literals: number;
  readonly order: number;
}

const PARAM_SEGMENT = /^\{([A-Za-z_][A-Za-z0-9_]{0,63})\}$/;
/** Literal segments as the config schema allows them: unreserved characters only (RFC 3986 §2.3). */
const LITERAL_SEGMENT = /^[A-Za-z0-9._~-]*$/;

export class ActionMatcher {
  private readonly http: readonly Compiled[];
  private readonly names: ReadonlyMap<string, ActionConfig>;

  /**
   * Compiles the tool's actions. Throws ConfigError for a template that could never match a
   * normalized path (an empty or dot segment in the middle, braces that are not a whole
   * segment, a repeated parameter name), so that a typo fails at start, not as silent 403s.
   */
  constructor(actions: readonly ActionConfig[]) {
    const compiled: Compiled[] = [];
    const names = new Map<string, ActionConfig>();
    actions.forEach((action, order) => {
      names.set(action.name, action);
      if (action.method === undefined || action.path === undefined) return;
      const segments = compileTemplate(action.name, action.path);
      const literals = segments.filter((s) => typeof s === 'string').length;
      compiled.push({ action, method: action.method, segments, literals, order });
    });
    compiled.sort(bySpecificity);
    this.http = compiled;
    this.names = names;
  }

  /**
   * The action for `method` and `normalizedPath` (the output of normalizePath), or undefined.
   * A template matches when it has the same number of segments, every literal segment is equal
   * (case-sensitive, RFC 3986 §6.2.2.1: only scheme and host are case-insensitive) and every
   * `{param}` segment is non-empty. No prefix matching: `/tickets/1/delete` is not `/tickets/{id}`,
   * and `/tickets/` (a trailing slash: an empty last segment) is neither. When several templates
   * match, the most specific wins: more literal segments, then a literal earlier in the path,
   * then the order of declaration.
   */
  matchHttp(method: string, normalizedPath: string): HttpMatch | undefined {
    if (typeof normalizedPath !== 'string' || normalizedPath.charCodeAt(0) !== 0x2f) return undefined;
    const parts = normalizedPath.slice(1).split('/');
    outer: for (const c of this.http) {
      if (c.method !== method || c.segments.length !== parts.length) continue;
      for (let i = 0; i < parts.length; i++) {
        const seg = c.segments[i]!;
        const part = parts[i]!;
        if (typeof seg === 'string') {
          if (seg !== part) continue outer;
        } else if (part === '') continue outer;
      }
      const params: Record<string, string> = {};
      for (let i = 0; i < parts.length; i++) {
        const seg = c.segments[i]!;
        if (typeof seg === 'string') continue;
        try {
          params[seg.param] = decodeURIComponent(parts[i]!);
        } catch {
          return undefined; // not valid UTF-8: normalizePath refuses it, so this is a caller bug; fail closed
        }
      }
      return { action: c.action, params };
    }
    return undefined;
  }

  /**
   * The MCP action named `name`, by exact string equality. Names that differ in case, or that
   * look the same but are other code points (Cyrillic `а`, fullwidth `ｃ`, a zero-width joiner,
   * an NFKC-equivalent ligature), are different names and find nothing: normalizing or folding
   * here would let the upstream receive a name the grant never listed (UTS #39 confusables).
   */
  byName(name: string): ActionConfig | undefined {
    if (typeof name !== 'string') return undefined;
    return this.names.get(name);
  }
}

function compileTemplate(actionName: string, path: string): Array<string | { param: string }> {
  const bad = (why: string) => new ConfigError([`action "${actionName}": path template "${path}" ${why}`]);
  if (!path.startsWith('/')) throw bad('must start with "/"');
  const raw = path.slice(1).split('/');
  const seen = new Set<string>();
  return raw.map((seg, i) => {
    const m = PARAM_SEGMENT.exec(seg);
    if (m) {
      const param = m[1]!;
      if (param === '__proto__') throw bad('uses a reserved parameter name');
      if (seen.has(param)) throw bad(`repeats the parameter {${param}}`);
      seen.add(param);
      return { param };
    }
    if (!LITERAL_SEGMENT.test(seg)) throw bad('has braces that are not a whole {param} segment');
    // The normal form has no empty segment but a final one (trailing slash) and no dot segments.
    if (seg === '' && i !== raw.length - 1) throw bad('has an empty segment ("//")');
    if (seg === '.' || seg === '..') throw bad('has a dot segment');
    return seg;
  });
}

function bySpecificity(a: Compiled, b: Compiled): number {
  if (a.literals !== b.literals) return b.literals - a.literals;
  const n = Math.min(a.segments.length, b.segments.length);
  for (let i = 0; i < n; i++) {
    const la = typeof a.segments[i] === 'string';
    const lb = typeof b.segments[i] === 'string';
    if (la !== lb) return la ? -1 : 1;
  }
  return a.order - b.order;
}

/**
 * Header names that ask a server to treat a request as another method. Frameworks honour them
 * (Express method-override, Symfony, ASP.NET, Google APIs), so a `POST` the proxy allowed could
 * run as `DELETE` upstream; the proxy refuses requests that carry them.
 */
export const METHOD_OVERRIDE_HEADERS: readonly string[] = ['x-http-method-override', 'x-http-method', 'x-method-override'];
const OVERRIDE_HEADER_SET = new Set(METHOD_OVERRIDE_HEADERS);

/**
 * The name of a method-override header present in `headers` (any value, even empty), or
 * undefined. `_` counts as `-`: CGI (RFC 3875 §4.1.18), PHP-FPM, WSGI (PEP 3333) and Rack turn
 * both into `_` in `HTTP_X_HTTP_METHOD_OVERRIDE`, so `X_HTTP_Method_Override` is read as the
 * override by an upstream behind them.
 */
export function hasMethodOverride(headers: IncomingHttpHeaders): string | undefined {
  for (const name of Object.keys(headers)) {
    const lower = name.toLowerCase();
    const canonical = lower.includes('_') ? lower.replace(/_/g, '-') : lower;
    if (OVERRIDE_HEADER_SET.has(canonical) && headers[name] !== undefined) return canonical;
  }
  return undefined;
}

/**
 * The `_method` query parameter (Rails, Laravel, Express method-override with a getter) under
 * any spelling a server might decode to it: percent-encoded (`%5Fmethod`), `+`-decoded, in any
 * case, and as PHP registers names (so Laravel and Symfony read them): leading spaces dropped,
 * the name cut at a NUL, `.` and ` ` turned into `_` (`.method`, `+_method`, `_method%00x`).
 * `search` is the query string with or without its leading `?`. Returns the parameter name as
 * written in the request, or undefined. Form bodies can carry `_method` too; checking them is
 * the caller's job when it reads a form body.
 */
export function hasMethodOverrideParam(search: string): string | undefined {
  if (typeof search !== 'string' || search === '' || search === '?') return undefined;
  const q = search.charCodeAt(0) === 0x3f ? search.slice(1) : search;
  for (const part of q.split(/[&;]/)) {
    const eq = part.indexOf('=');
    const rawName = eq === -1 ? part : part.slice(0, eq);
    const name = lenientDecode(rawName).toLowerCase();
    if (name === '_method' || phpVariableName(name) === '_method') return rawName;
  }
  return undefined;
}

/**
 * A decoded parameter name as PHP registers it in `$_GET`/`$_POST` (main/php_variables.c,
 * php_register_variable_ex): leading spaces skipped, the name ends at a NUL (it is a C string
 * there), and ` ` and `.` become `_`.
 */
function phpVariableName(decoded: string): string {
  let name = decoded.replace(/^ +/, '');
  const nul = name.indexOf('\0');
  if (nul !== -1) name = name.slice(0, nul);
  return name.replace(/[ .]/g, '_');
}

/** application/x-www-form-urlencoded name decoding (WHATWG URL §5.1): `+` is a space; bad escapes stay as they are. */
export function lenientDecode(s: string): string {
  const plus = s.includes('+') ? s.replace(/\+/g, ' ') : s;
  if (!plus.includes('%')) return plus;
  try {
    return decodeURIComponent(plus);
  } catch {
    return plus.replace(/%([0-9A-Fa-f]{2})/g, (m, h: string) => {
      const b = parseInt(h, 16);
      return b < 0x80 ? String.fromCharCode(b) : m;
    });
  }
}

/**
 * Why a query would be read two ways, or undefined when it has one reading. Policies see the
 * query as an object (one value per name); servers disagree on everything else, so it is refused
 * rather than guessed at (issue 15: policy and upstream must see the same value):
 * - a `;` anywhere: some servers split parameters on it (`?a=1;b=2` is `a=1;b=2` to the proxy,
 *   `a` and `b` to them), so it could carry a parameter the policy never saw;
 * - a name given twice, also in another case or encoding (`id`, `ID`, `%69d`, `i+d`…): servers
 *   take the first, the last, or all of them, and case-insensitive ones merge `id` and `ID`;
 * - an `access_token` (the agent's token must not travel on to the tool).
 * `search` is the raw query with or without its leading `?`.
 */
export function ambiguousQuery(search: string): string | undefined {
  if (typeof search !== 'string' || search === '' || search === '?') return undefined;
  const q = search.charCodeAt(0) === 0x3f ? search.slice(1) : search;
  if (q.includes(';')) return 'a ";" in the query (some servers split parameters on it)';
  const seen = new Set<string>();
  for (const part of q.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const name = lenientDecode(eq === -1 ? part : part.slice(0, eq)).toLowerCase();
    // RFC 6750 §2.3: the access token in the query. The proxy reads it only from Authorization,
    // and would otherwise pass the agent's token on to the tool, which could replay it.
    if (name === 'access_token') return 'an access_token in the query (send it in the Authorization header, RFC 6750 §2.1)';
    if (seen.has(name)) return `the query parameter ${JSON.stringify(name.slice(0, 64))} is given more than once (in any case or encoding)`;
    seen.add(name);
  }
  return undefined;
}

/** Media types whose bodies frameworks read `_method` from (Rails, Laravel, Express method-override, Symfony). */
const FORM = 'application/x-www-form-urlencoded';
const MULTIPART = 'multipart/form-data';
/** `Content-Disposition: form-data; name="_method"` in any case, quoted or not (RFC 7578 §4.2). */
const MULTIPART_METHOD = /content-disposition:[^\r\n]*;\s*name\s*=\s*"?_method"?\s*(?:;|\r?\n|$)/i;
/** A JSON text that could hold a `_method` member: the name itself, or escapes that could spell it. */
const JSON_MAYBE_METHOD = /_method|\\u/i;

/**
 * The media type of a request (lower-cased, without parameters), '' when absent.
 */
export function mediaTypeOf(contentType: string | string[] | undefined): string {
  const v = Array.isArray(contentType) ? contentType[0] : contentType;
  if (typeof v !== 'string') return '';
  const semi = v.indexOf(';');
  return (semi === -1 ? v : v.slice(0, semi)).trim().toLowerCase();
}

/**
 * Whether the proxy must read a request body of this media type before forwarding it, to look
 * for a method override in it: the forms and JSON that frameworks read `_method` from, and a body
 * that names no type (a server may sniff it as a form).
 */
export function bodyMayOverrideMethod(mediaType: string): boolean {
  return mediaType === '' || mediaType === FORM || mediaType === MULTIPART || mediaType === 'application/json' || mediaType.endsWith('+json')
    || mediaType === 'text/plain';
}

/**
 * The method override a body carries, or undefined: `_method` as a form parameter (any case,
 * any encoding a server might decode to it, also after `;`), as a multipart field name, or as a
 * top-level JSON member (Laravel merges JSON into its input). A body read whole (capped) by the
 * caller; `mediaType` from mediaTypeOf. A body that names no type is checked as a form and as
 * JSON. Refusing is the safe side: a false alarm refuses a call, a miss lets a POST run as DELETE.
 */
export function bodyMethodOverride(body: Buffer, mediaType: string): string | undefined {
  if (body.length === 0) return undefined;
  const text = body.toString('latin1');
  if (mediaType === MULTIPART) return MULTIPART_METHOD.test(text) ? 'multipart field _method' : undefined;
  if (mediaType === FORM || mediaType === '' || mediaType === 'text/plain') {
    const name = hasMethodOverrideParam(text.replace(/[\r\n]+/g, '&'));
    if (name !== undefined) return `form parameter ${name.slice(0, 32)}`;
  }
  if ((mediaType === 'application/json' || mediaType.endsWith('+json') || mediaType === '') && JSON_MAYBE_METHOD.test(text)) {
    let value: unknown;
    try {
      value = JSON.parse(body.toString('utf8'));
    } catch {
      return undefined;
    }
    if (value !== null && typeof value === 'object' && !Array.isArray(value) && Object.keys(value).some((k) => k.toLowerCase() === '_method')) {
      return 'JSON member _method';
    }
  }
  return undefined;
}
