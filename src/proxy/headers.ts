import type { IncomingHttpHeaders } from 'node:http';
import { MandateError } from '../core/errors.js';
import { traceIdFrom } from '../core/http.js';
import { newTraceId } from '../core/ids.js';
import { lenientDecode, parameterNameReadings, readsAs } from './actions.js';

/**
 * The headers the proxy sends upstream and back. The agent's credentials (its Mandate token and
 * DPoP proof) never reach the upstream, the upstream's credential never reaches the agent, and
 * what the upstream learns about the client comes from the proxy, not from the agent's claims.
 */

/** The upstream credential, its secret already resolved (config `tools[].credential`). */
export interface InjectedCredential {
  readonly type: 'bearer' | 'header' | 'basic' | 'query';
  readonly value: string;
  /** Header name (type header) or query parameter name (type query). */
  readonly name?: string;
  /** User name (type basic); `value` is the password. */
  readonly username?: string;
}

export interface UpstreamHeaderOptions {
  /** The client's address as the proxy saw it (the socket, or the trusted front proxy's word). */
  readonly clientIp: string;
  readonly proto: 'http' | 'https';
  /** The Host the client addressed (the proxy's), for `x-forwarded-host`. */
  readonly host: string;
  /** The W3C `traceparent` to send (see traceparentFor). */
  readonly traceparent: string;
  readonly credential?: InjectedCredential;
  /** The proxy re-encodes the body (so its length changes): `content-length` is dropped. */
  readonly bodyRewritten?: boolean;
}

/**
 * Hop-by-hop fields (RFC 9110 §7.6.1): meaningful for one connection only, never forwarded.
 * `proxy-connection` and `keep-alive` are the pre-RFC 7230 forms; `te` and `trailer` are listed
 * by RFC 9110 as connection-specific too; `http2-settings` (RFC 7540 §3.2.1) only with upgrade.
 */
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer',
  'transfer-encoding', 'upgrade', 'http2-settings',
]);

/**
 * Request fields that ask a server (or a gateway in front of it) to route by another URL, host
 * or method than the request line's: IIS/ASP.NET and Symfony (`X-Original-URL`, `X-Rewrite-URL`),
 * Envoy, Zend and others. The proxy authorized the request line; a tool that routed by one of
 * these would run what was not authorized, so they never reach it.
 */
export const ROUTING_OVERRIDES: readonly string[] = [
  'x-original-url', 'x-rewrite-url', 'x-original-uri', 'x-original-path', 'x-override-url', 'x-http-destinationurl', 'x-proxy-url',
  'x-host', 'x-original-host', 'x-envoy-original-path', 'x-envoy-original-url', 'x-original-method', 'x-http-method-override-url',
  'x-forwarded-url', 'x-rewrite-uri', 'x-request-uri', 'request-uri', 'x-scheme', 'x-url-scheme', 'front-end-https',
];

/**
 * Request fields the proxy never forwards, besides the hop-by-hop ones:
 * - `authorization`, `dpop`: the agent's Mandate access token and proof (RFC 9449 §7.1) are for
 *   the proxy; forwarding them would let the upstream replay them (it is not their audience).
 * - `cookie`: ambient browser-style credentials have no place between an agent and a tool.
 * - `forwarded`, `x-real-ip`, `x-client-ip`, `true-client-ip`, `x-forwarded-*`: client claims
 *   about its own address; the proxy states the facts itself (RFC 7239 §8.2 on spoofing).
 * - `host`: the HTTP client sets the upstream's own (RFC 9110 §7.2).
 * - `expect`: the proxy has already read or is streaming the body; undici refuses it anyway.
 * - `traceparent`: replaced by the proxy's own (W3C Trace Context §3.2: a new parent id).
 * - ROUTING_OVERRIDES: another URL, host or method than the one the proxy authorized.
 */
const NEVER_FORWARDED = new Set([
  'authorization', 'dpop', 'cookie', 'forwarded', 'x-real-ip', 'x-client-ip', 'true-client-ip', 'host', 'expect', 'traceparent',
  ...ROUTING_OVERRIDES,
]);

/** RFC 9110 §5.6.2 token: a valid field name. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** RFC 9110 §5.5: a field value has no CR, LF, NUL or other control characters but HTAB. */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** A credential that cannot be sent (a config or secret problem, never the agent's doing). */
export class CredentialError extends MandateError {
  constructor(message: string) {
    super('ERR_CREDENTIAL_INVALID', message);
  }
}

/** The names listed in `Connection` (RFC 9110 §7.6.1: those fields are hop-by-hop too), lower-cased. */
function connectionListed(headers: Record<string, string | string[] | undefined>): ReadonlySet<string> | undefined {
  // node:http and undici give lower-case names; a hand-built record may not.
  let value = headers.connection;
  if (value === undefined) {
    const key = Object.keys(headers).find((k) => k.toLowerCase() === 'connection');
    value = key === undefined ? undefined : headers[key];
  }
  if (value === undefined) return undefined;
  if (typeof value === 'string') {
    // Almost every message says the same (`keep-alive`, `close`): parsed once per distinct value.
    const known = listedByValue.get(value);
    if (known !== undefined) return known;
    const set = parseConnection([value]);
    if (value.length <= 256) {
      if (listedByValue.size >= MAX_LISTED_VALUES) listedByValue.clear();
      listedByValue.set(value, set);
    }
    return set;
  }
  return parseConnection(value);
}

function parseConnection(values: readonly string[]): ReadonlySet<string> {
  const set = new Set<string>();
  for (const v of values) {
    for (const part of v.split(',')) {
      const name = part.trim().toLowerCase();
      if (name !== '') set.add(name);
    }
  }
  return set;
}

/** `Connection` value (short ones) → the names it lists (read-only sets, shared); bounded, cleared when full. */
const listedByValue = new Map<string, ReadonlySet<string>>();
const MAX_LISTED_VALUES = 256;

/**
 * Sets a header in a plain object: a field named `__proto__` becomes an own member (as JSON.parse
 * would make it), never the object's prototype.
 */
function put(out: Record<string, string | string[]>, name: string, value: string | string[]): void {
  if (name === '__proto__') Object.defineProperty(out, name, { value, enumerable: true, writable: true, configurable: true });
  else out[name] = value;
}

/**
 * The headers to send upstream. Drops hop-by-hop fields and those named in `Connection`,
 * HTTP/2 pseudo-headers, the agent's `authorization`/`dpop`, `cookie`, every client claim about
 * addresses (`forwarded`, `x-forwarded-*`, `x-real-ip`, …), `host`, `expect`, the incoming
 * `traceparent`, and `content-length` when `bodyRewritten`. Sets fresh `x-forwarded-for` (the
 * client ip alone: the agent's claimed chain is not trusted), `x-forwarded-proto`,
 * `x-forwarded-host` and `traceparent`, then the credential (bearer, header or basic; a query
 * credential goes through applyQueryCredential instead). Names come out lower-cased; an agent
 * header with the credential's name is replaced, never merged. Throws CredentialError for a
 * credential that is malformed (no name, a name that is not a token, a value with CR/LF/NUL).
 */
export function upstreamHeaders(incoming: IncomingHttpHeaders, opts: UpstreamHeaderOptions): Record<string, string | string[]> {
  const listed = connectionListed(incoming);
  const cred = opts.credential;
  const credName = cred?.type === 'header' && cred.name ? credentialNamesOf(cred) : undefined;
  const out: Record<string, string | string[]> = {};
  for (const rawName in incoming) {
    if (!Object.prototype.hasOwnProperty.call(incoming, rawName)) continue;
    const value = incoming[rawName];
    if (value === undefined) continue;
    const name = rawName.toLowerCase();
    // CGI (RFC 3875 §4.1.18), PHP-FPM, WSGI (PEP 3333) and Rack read `_` in a field name as `-`
    // (both become HTTP_X_FORWARDED_FOR): a name is judged as such a tool will read it, so
    // `X_Forwarded_For` is an address claim and `x_api_key` a second credential header.
    const read = name.includes('_') ? name.replace(/_/g, '-') : name;
    if (HOP_BY_HOP.has(read) || NEVER_FORWARDED.has(read) || read.startsWith('x-forwarded-') || name.charCodeAt(0) === 0x3a /* : */) continue;
    if (listed !== undefined && (listed.has(name) || listed.has(read))) continue;
    // The agent's look-alike of the credential header (the header itself is replaced below).
    if (credName !== undefined && read === credName.read && name !== credName.lower) continue;
    if (name === 'content-length' && opts.bodyRewritten) continue;
    put(out, name, value);
  }
  out['x-forwarded-for'] = opts.clientIp;
  out['x-forwarded-proto'] = opts.proto;
  out['x-forwarded-host'] = opts.host;
  out.traceparent = opts.traceparent;
  if (cred !== undefined) {
    const header = credentialHeaderOf(cred);
    if (header !== undefined) out[header[0]] = header[1];
  }
  return out;
}

/**
 * What is derived from a credential (its header, the forms of its secret), remembered per
 * credential object (the proxy resolves each tool's once, at start) and computed on first use.
 * Checked against the fields it comes from: a record changed since gets its own. A computation
 * that throws (a credential that fails the header's checks) is not remembered, so it throws on
 * every call.
 */
interface CredentialMemo {
  of: InjectedCredential;
  /** Present once computed (undefined: a query credential, no header). */
  header?: [string, string] | undefined;
  forms?: readonly string[];
  /** A header credential's name, lower-cased, and as a CGI-style tool reads it (`_` as `-`). */
  names?: { lower: string; read: string };
}
const credentialMemos = new WeakMap<InjectedCredential, CredentialMemo>();

function memoOf(cred: InjectedCredential): CredentialMemo {
  const known = credentialMemos.get(cred);
  if (known !== undefined && sameCredential(known.of, cred)) return known;
  const memo: CredentialMemo = { of: { ...cred } };
  credentialMemos.set(cred, memo);
  return memo;
}

function sameCredential(a: InjectedCredential, b: InjectedCredential): boolean {
  return a.type === b.type && a.value === b.value && a.name === b.name && a.username === b.username;
}

/** A header credential's name, lower-cased and as CGI, WSGI and Rack read it, remembered (see CredentialMemo). */
function credentialNamesOf(cred: InjectedCredential): { lower: string; read: string } {
  const memo = memoOf(cred);
  if (memo.names === undefined) {
    const lower = (cred.name ?? '').toLowerCase();
    memo.names = { lower, read: lower.replace(/_/g, '-') };
  }
  return memo.names;
}

/** credentialHeader, remembered (see CredentialMemo). */
function credentialHeaderOf(cred: InjectedCredential): [string, string] | undefined {
  const memo = memoOf(cred);
  if (!('header' in memo)) memo.header = credentialHeader(cred);
  return memo.header;
}

/** The header a credential becomes, or undefined for a query credential. */
function credentialHeader(cred: InjectedCredential): [string, string] | undefined {
  if (typeof cred.value !== 'string' || cred.value === '') throw new CredentialError(`the ${cred.type} credential has no value`);
  if (!FIELD_VALUE.test(cred.value)) throw new CredentialError(`the ${cred.type} credential contains characters not allowed in a header`);
  switch (cred.type) {
    case 'bearer':
      // RFC 6750 §2.1.
      return ['authorization', `Bearer ${cred.value}`];
    case 'header': {
      const name = cred.name;
      if (name === undefined || !TOKEN.test(name)) throw new CredentialError('a header credential needs a valid header name');
      const lower = name.toLowerCase();
      // A credential can never be smuggled as a field the proxy itself controls.
      if (HOP_BY_HOP.has(lower) || lower === 'host' || lower === 'content-length' || lower === 'traceparent' || lower.startsWith('x-forwarded-')) {
        throw new CredentialError(`a header credential cannot be sent as "${name}"`);
      }
      return [lower, cred.value];
    }
    case 'basic': {
      // RFC 7617 §2: user-id MUST NOT contain ":"; §2.1: UTF-8 is the charset to use.
      const user = cred.username ?? '';
      if (user.includes(':') || !FIELD_VALUE.test(user)) throw new CredentialError('a basic credential user name cannot contain ":" or control characters');
      return ['authorization', `Basic ${Buffer.from(`${user}:${cred.value}`, 'utf8').toString('base64')}`];
    }
    case 'query':
      return undefined;
    default:
      throw new CredentialError(`unknown credential type "${String((cred as { type: unknown }).type)}"`);
  }
}

/**
 * Puts a query credential into the query string `search` (with or without its leading `?`;
 * the result has one when not empty). Every client parameter that a server could read as the
 * credential's name is removed first: equal after form-decoding (`api%5Fkey`, `api+key`) and
 * case-folding (lower or upper), or as PHP registers names (`api.key`, ` api_key`, `api_key[]`;
 * parameterNameReadings), also when hidden behind a `;` (some servers split parameters on it). The other
 * parameters are kept byte for byte. Non-query credentials return `search` unchanged.
 * The result carries a secret: never log it (the logger strips query strings).
 */
export function applyQueryCredential(search: string, cred: InjectedCredential): string {
  if (cred.type !== 'query') return search;
  const name = cred.name;
  if (name === undefined || name === '') throw new CredentialError('a query credential needs a parameter name');
  if (typeof cred.value !== 'string' || cred.value === '') throw new CredentialError('the query credential has no value');
  const targets = parameterNameReadings(name);
  const q = search.charCodeAt(0) === 0x3f ? search.slice(1) : search;
  const kept: string[] = [];
  if (q !== '') {
    for (const part of q.split('&')) {
      if (part === '') continue;
      const readsAsCredential = part.split(';').some((p) => {
        const eq = p.indexOf('=');
        const decoded = lenientDecode(eq === -1 ? p : p.slice(0, eq));
        return targets.some((t) => readsAs(decoded, t));
      });
      if (!readsAsCredential) kept.push(part);
    }
  }
  kept.push(`${encodeURIComponent(name)}=${encodeURIComponent(cred.value)}`);
  return `?${kept.join('&')}`;
}

export interface ResponseHeaderOptions {
  /** The credential the proxy injected: a response echoing it is stripped. */
  readonly credential?: InjectedCredential;
  /** The proxy re-encodes the response body (tools/list filtering): `content-length` is dropped. */
  readonly bodyRewritten?: boolean;
}

/**
 * The upstream's response headers as the agent gets them. Drops hop-by-hop fields and those
 * named in `Connection` (RFC 9110 §7.6.1), HTTP/2 pseudo-headers, `set-cookie` (an upstream
 * session is a credential for the upstream that would bypass the proxy), and anything echoing
 * the injected credential: the header of a header-type credential, `authorization`, and any
 * field whose value contains the secret (some upstreams reflect request headers back).
 */
export function responseHeaders(
  upstream: Record<string, string | string[] | undefined>,
  opts: ResponseHeaderOptions = {},
): Record<string, string | string[]> {
  const listed = connectionListed(upstream);
  const cred = opts.credential;
  const credName = cred?.type === 'header' && cred.name ? cred.name.toLowerCase() : undefined;
  const secrets = cred && typeof cred.value === 'string' && cred.value !== '' ? secretFormsOf(cred) : NO_SECRETS;
  const out: Record<string, string | string[]> = {};
  for (const rawName in upstream) {
    if (!Object.prototype.hasOwnProperty.call(upstream, rawName)) continue;
    const value = upstream[rawName];
    if (value === undefined) continue;
    const name = rawName.toLowerCase();
    if (HOP_BY_HOP.has(name) || name.charCodeAt(0) === 0x3a || listed?.has(name)) continue;
    if (name === 'set-cookie' || name === 'authorization' || name === credName) continue;
    if (name === 'content-length' && opts.bodyRewritten) continue;
    if (secrets.length > 0 && echoes(value, secrets)) continue;
    put(out, name, value);
  }
  return out;
}

const NO_SECRETS: readonly string[] = [];

/**
 * secretForms, remembered (see CredentialMemo): computed once per credential, not per response.
 * The response headers and the response-body scrubber (scrub.ts) both use it.
 */
export function secretFormsOf(cred: InjectedCredential): readonly string[] {
  const memo = memoOf(cred);
  return (memo.forms ??= secretForms(cred));
}

/**
 * The forms in which a credential's secret can come back from the tool, in a header or a body:
 * the one place that knows them. What travels is the secret itself (bearer, header, query) or
 * `user:password` in base64 (basic, RFC 7617 §2; without its `=` padding, which a form that
 * stops short of it would escape); each of those as it is, percent-encoded (RFC 3986 §2.1, both
 * hex cases, and the `+`-for-space form of application/x-www-form-urlencoded) as a tool echoing
 * its request URL shows it, JSON-escaped (RFC 8259 §7) the ways serializers do it (`\"` and
 * `\\` always; `\/`, `\u003c` for `<>&`, `\u00e9` for non-ASCII as some choose) and
 * HTML/XML-escaped (`&amp;`, `&quot;`/`&#34;`, `&#39;`/`&#x27;`/`&apos;`). Distinct and non-empty,
 * longest first; for the usual secret (letters, digits, `-_.`) that is the secret alone (and,
 * for basic, its base64). A tool that transforms the secret otherwise is not covered.
 */
export function secretForms(cred: InjectedCredential): string[] {
  const sent = [cred.value];
  if (cred.type === 'basic') sent.push(Buffer.from(`${cred.username ?? ''}:${cred.value}`, 'utf8').toString('base64').replace(/=+$/, ''));
  const forms = new Set<string>();
  for (const s of sent) {
    const percent = encodeURIComponent(s);
    for (const p of [s, percent, percent.replace(/%[0-9A-F]{2}/g, (e) => e.toLowerCase()), new URLSearchParams([['', s]]).toString().slice(1)]) {
      for (const j of jsonEscapes(p)) forms.add(j);
      for (const h of htmlEscapes(p)) forms.add(h);
    }
  }
  forms.delete('');
  return [...forms].sort((a, b) => b.length - a.length);
}

/** RFC 8259 §7 escapes of `s` as JSON serializers write them (JSON.stringify's, PHP's `\/`, Go's `\u003c`, Python's ASCII-only). */
function jsonEscapes(s: string): string[] {
  // Only the characters a serializer may escape make variants; the common secret has none.
  if (!/["\\/<>&\t\u0080-\uffff]/.test(s)) return [s];
  const out = new Set<string>();
  const u = (c: string, upper: boolean) => {
    const hex = c.charCodeAt(0).toString(16).padStart(4, '0');
    return `\\u${upper ? hex.toUpperCase() : hex}`;
  };
  for (const slash of [false, true]) {
    for (const html of [false, true]) {
      for (const ascii of [false, true]) {
        for (const upper of [false, true]) {
          let e = JSON.stringify(s).slice(1, -1);
          if (slash) e = e.replace(/\//g, '\\/');
          if (html) e = e.replace(/[<>&]/g, (c) => u(c, upper));
          if (ascii) e = e.replace(/[\u0080-\uffff]/g, (c) => u(c, upper));
          out.add(e);
        }
      }
    }
  }
  return [...out];
}

/** HTML/XML escapes of `s` (an error page quoting the request): the character references libraries choose. */
function htmlEscapes(s: string): string[] {
  if (!/[&<>"']/.test(s)) return [];
  const out = new Set<string>();
  for (const quot of ['&quot;', '&#34;']) {
    for (const apos of ['&#39;', '&#x27;', '&apos;']) {
      out.add(s.replace(/[&<>"']/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : c === '"' ? quot : apos)));
    }
  }
  return [...out];
}

function echoes(value: string | string[], secrets: readonly string[]): boolean {
  if (typeof value === 'string') return secrets.some((s) => value.includes(s));
  return value.some((v) => secrets.some((s) => v.includes(s)));
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const SPAN_ID = /^(?!0{16})[0-9a-f]{16}$/;

/**
 * The `traceparent` to send upstream (W3C Trace Context Level 1 §3.2). A well-formed incoming
 * header (core's traceIdFrom, plus: version not `ff` (§3.2.2.1), parent id not all zeros
 * (§3.2.2.4)) keeps its trace id and flags with a new parent id from `newSpanId`: the proxy is a
 * hop of the same trace. Otherwise a new trace starts (§4.3), not sampled. The output is always
 * version 00. Throws if `newSpanId` returns something that is not 16 lower-case hex digits.
 */
export function traceparentFor(
  incoming: string | undefined,
  newSpanId: () => string,
  newTrace: () => string = () => newTraceId(Date.now()),
): { traceparent: string; traceId: string } {
  const spanId = newSpanId();
  if (!SPAN_ID.test(spanId)) throw new MandateError('ERR_VALIDATION', 'a span id is 16 lower-case hex digits, not all zero');
  const traceId = traceIdFrom(incoming);
  const m = traceId !== undefined ? TRACEPARENT.exec(incoming!.trim()) : null;
  if (traceId !== undefined && m && m[1] !== 'ff' && !/^0+$/.test(m[3]!)) {
    // §3.2.2.5: of the flags only "sampled" (bit 0) is defined in version 00; keep it, clear the rest.
    const flags = (parseInt(m[4]!, 16) & 0x01).toString(16).padStart(2, '0');
    return { traceparent: `00-${traceId}-${spanId}-${flags}`, traceId };
  }
  const fresh = newTrace();
  if (!/^(?!0{32})[0-9a-f]{32}$/.test(fresh)) throw new MandateError('ERR_VALIDATION', 'a trace id is 32 lower-case hex digits, not all zero');
  return { traceparent: `00-${fresh}-${spanId}-00`, traceId: fresh };
}
