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
