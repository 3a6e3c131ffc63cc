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
 * any spelling a server might decode to it (parameterNameReadings): percent-encoded
 * (`%5Fmethod`), `+`-decoded, in any case, and as PHP registers names (so Laravel and Symfony
 * read them: `.method`, `+_method`, `_method%00x`, `_method[]`). `search` is the query string
 * with or without its leading `?`. Returns the parameter name as written in the request, or
 * undefined. Form bodies can carry `_method` too: see bodyMethodOverride.
 */
export function hasMethodOverrideParam(search: string): string | undefined {
  if (typeof search !== 'string' || search === '' || search === '?') return undefined;
  const q = search.charCodeAt(0) === 0x3f ? search.slice(1) : search;
  for (const part of q.split(/[&;]/)) {
    const eq = part.indexOf('=');
    const rawName = eq === -1 ? part : part.slice(0, eq);
    if (readsAs(lenientDecode(rawName), '_method')) return rawName;
  }
  return undefined;
}

/**
 * A decoded parameter name as PHP registers it in `$_GET`/`$_POST` (main/php_variables.c,
 * php_register_variable_ex): leading spaces skipped, the name ends at a NUL (it is a C string
 * there), and ` ` and `.` become `_` (so does a `[` that opens no array). `name[…]` stays as
 * written: see phpBase.
 */
function phpVariableName(decoded: string): string {
  let name = decoded.replace(/^ +/, '');
  const nul = name.indexOf('\0');
  if (nul !== -1) name = name.slice(0, nul);
  const open = name.indexOf('[');
  if (open !== -1 && name.indexOf(']', open) === -1) return name.replace(/[ .[]/g, '_');
  return open === -1 ? name.replace(/[ .]/g, '_') : name.slice(0, open).replace(/[ .]/g, '_') + name.slice(open);
}

/** The variable a PHP name fills: `a[x][y]` fills `a` (an array), `a` fills `a`. */
function phpBase(phpName: string): string {
  const open = phpName.indexOf('[');
  return open > 0 ? phpName.slice(0, open) : phpName;
}

/**
 * The names a server may read a decoded parameter name as, case-folded: lower-case (ASP.NET,
 * nginx `$arg_`, case-insensitive frameworks), upper-case folding (Java `equalsIgnoreCase`, .NET
 * `OrdinalIgnoreCase`: `ı` is `I`, `ſ` is `S`, `K` is `K`), and PHP's registration
 * (phpVariableName). Two names sharing a reading can be read as one parameter by some server.
 */
export function parameterNameReadings(decoded: string): string[] {
  const lower = decoded.toLowerCase();
  const upperFolded = decoded.toUpperCase().toLowerCase();
  const php = phpVariableName(decoded).toLowerCase();
  if (lower === upperFolded && lower === php) return [lower];
  return [...new Set([lower, upperFolded, php])];
}

/** Whether some server reads the decoded parameter name as `target` (lower-case), also as the variable a PHP array fills. */
export function readsAs(decoded: string, target: string): boolean {
  for (const r of parameterNameReadings(decoded)) if (r === target || phpBase(r) === target) return true;
  return false;
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
 * rather than guessed at (policy and upstream must see the same value):
 * - a `;` anywhere: some servers split parameters on it (`?a=1;b=2` is `a=1;b=2` to the proxy,
 *   `a` and `b` to them), so it could carry a parameter the policy never saw;
 * - two names some server reads as one (parameterNameReadings): the same name twice, in another
 *   case or encoding (`id`, `ID`, `%69d`, `ıd`), or as PHP registers it (`id`, ` id`, `id%00x`,
 *   `a.b` and `a_b`), or a name and a PHP array of that name (`id` and `id[]`, which PHP lets
 *   replace each other): servers take the first, the last, or all of them. Array members with
 *   distinct keys (`filter[a]`, `filter[b]`) are distinct parameters;
 * - an `access_token` (the agent's token must not travel on to the tool).
 * `search` is the raw query with or without its leading `?`.
 */
export function ambiguousQuery(search: string): string | undefined {
  if (typeof search !== 'string' || search === '' || search === '?') return undefined;
  const q = search.charCodeAt(0) === 0x3f ? search.slice(1) : search;
  if (q.includes(';')) return 'a ";" in the query (some servers split parameters on it)';
  const seen = new Set<string>();
  const scalars = new Set<string>();
  const arrays = new Set<string>();
  for (const part of q.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const decoded = lenientDecode(eq === -1 ? part : part.slice(0, eq));
    const readings = parameterNameReadings(decoded);
    const shown = JSON.stringify(decoded.slice(0, 64));
    // RFC 6750 §2.3: the access token in the query. The proxy reads it only from Authorization,
    // and would otherwise pass the agent's token on to the tool, which could replay it.
    if (readsAs(decoded, 'access_token')) return 'an access_token in the query (send it in the Authorization header, RFC 6750 §2.1)';
    for (const r of readings) {
      if (seen.has(r)) return `the query parameter ${shown} is given more than once (in some server's reading of its name)`;
      const base = phpBase(r);
      if ((base === r ? arrays : scalars).has(base)) return `the query parameter ${shown} is both a value and an array in PHP's reading`;
    }
    for (const r of readings) {
      seen.add(r);
      const base = phpBase(r);
      (base === r ? scalars : arrays).add(base);
    }
  }
  return undefined;
}

const MULTIPART = 'multipart/';
/** The field names of a multipart body (RFC 7578 §4.2 `Content-Disposition: form-data; name=…`, quoted or not, any case). */
const MULTIPART_NAME = /content-disposition:[^\r\n]*?;\s*name\s*=\s*(?:"([^"\r\n]*)"|([^;\s]*))/gi;
/** A body that could hold a `_method` member or parameter: the name, or escapes that could spell it. */
const MAYBE_METHOD = /method|\\u|%/i;
/**
 * Media types the proxy streams without looking into them: binary formats no framework reads a
 * form or JSON input from. Every other body (any text, any unknown or missing type) is read
 * whole and checked: a server may parse it as a form or JSON whatever it is labelled.
 */
const OPAQUE = /^(?:application\/(?:octet-stream|pdf|zip|gzip|x-gzip|x-tar|x-7z-compressed|grpc(?:\+proto)?|x-protobuf|protobuf|cbor|msgpack|x-msgpack|wasm)|image\/|audio\/|video\/|font\/)/;

/**
 * The media type of a request, lower-cased, cut where servers cut it: at the first `;`, `,` or
 * whitespace (PHP's SAPI and Rack both stop at `,`, so `application/x-www-form-urlencoded,x` is
 * a form to them). '' when absent.
 */
export function mediaTypeOf(contentType: string | string[] | undefined): string {
  const v = Array.isArray(contentType) ? contentType[0] : contentType;
  if (typeof v !== 'string') return '';
  const t = v.trimStart();
  const m = /[;,\s]/.exec(t);
  return (m ? t.slice(0, m.index) : t).toLowerCase();
}

/**
 * Whether the proxy must read a request body of this media type before forwarding it, to look
 * for a method override in it: every type but the binary ones in OPAQUE (fail closed: an unknown
 * or odd label is read, since a server may parse it as a form or JSON anyway).
 */
export function bodyMayOverrideMethod(mediaType: string): boolean {
  return !OPAQUE.test(mediaType);
}

/**
 * Why a body the proxy must read cannot be read the way the tool will read it, or undefined: a
 * `Content-Encoding` (the proxy does not inflate; body parsers do) or a charset other than UTF-8
 * or an ASCII-compatible one (a UTF-16 form or JSON hides `_method` from a byte scan).
 */
export function unreadableBody(headers: IncomingHttpHeaders): string | undefined {
  const enc = headers['content-encoding'];
  if (enc !== undefined && String(enc).trim().toLowerCase() !== 'identity' && String(enc).trim() !== '') {
    return 'a Content-Encoding on a body the proxy must read (send it uncompressed)';
  }
  const type = headers['content-type'];
  const charset = /;\s*charset\s*=\s*"?([^";,\s]+)/i.exec(String(Array.isArray(type) ? type[0] : type ?? ''))?.[1]?.toLowerCase();
  if (charset !== undefined && !/^(?:utf-?8|us-ascii|ascii|iso-8859-\d+|latin-?1|windows-125\d)$/.test(charset)) {
    return `the charset ${JSON.stringify(charset.slice(0, 32))} on a body the proxy must read (send it as UTF-8)`;
  }
  return undefined;
}

/**
 * The method override a body carries, or undefined, as frameworks read bodies whatever their
 * label: `_method` as a multipart field name (any `multipart/*`), else as a form parameter (any
 * spelling hasMethodOverrideParam knows, also after `;` or on its own line as `text/plain` forms
 * send it) or as a top-level JSON member in any case (Laravel merges JSON into its input;
 * body-parser skips a BOM). A body labelled JSON that mentions `_method` and does not parse is
 * refused too: a lenient parser may read what JSON.parse does not. A body read whole (capped) by
 * the caller; `mediaType` from mediaTypeOf. Refusing is the safe side: a false alarm refuses a
 * call, a miss lets a POST run as DELETE.
 */
export function bodyMethodOverride(body: Buffer, mediaType: string): string | undefined {
  if (body.length === 0) return undefined;
  const text = body.toString('latin1');
  if (!MAYBE_METHOD.test(text)) return undefined;
  if (mediaType.startsWith(MULTIPART)) {
    for (const m of text.matchAll(MULTIPART_NAME)) if (readsAs(m[1] ?? m[2] ?? '', '_method')) return 'multipart field _method';
    return undefined;
  }
  const name = hasMethodOverrideParam(text.replace(/[\r\n]+/g, '&'));
  if (name !== undefined) return `form parameter ${name.slice(0, 32)}`;
  let json = body.toString('utf8');
  if (json.charCodeAt(0) === 0xfeff) json = json.slice(1);
  const start = json.trimStart().charCodeAt(0);
  if (start !== 0x7b /* { */) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return mediaType.includes('json') && /_method|\\u/i.test(text) ? 'a JSON body that does not parse and mentions _method' : undefined;
  }
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && Object.keys(value).some((k) => readsAs(k, '_method'))) {
    return 'JSON member _method';
  }
  return undefined;
}
