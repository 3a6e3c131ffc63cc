import { BlockList, isIP } from 'node:net';
import { lookup } from 'node:dns/promises';
import type { IncomingHttpHeaders } from 'node:http';
import { Client, buildConnector } from 'undici';
import { MandateError } from './errors.js';

/**
 * The one guard for every request Mandate makes to a URL it was given (an SSF push endpoint, an
 * issuer's discovery document and JWKS, a client's `jwks_uri`, `proxy.jwks_uri`, an SSF
 * transmitter's poll endpoint): server-side request forgery stops here.
 *
 * - The URL: https only; plain http only to a loopback address and only in development
 *   (`allowLoopbackHttp`). No userinfo. WHATWG URL parsing normalizes odd literals
 *   (`2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`) to the address they name before any check;
 *   an IPv6 zone id does not parse and is refused.
 * - The address: a host name is resolved once and EVERY address it resolves to must be allowed
 *   (one forbidden answer refuses the request: an attacker's DNS cannot mix a public and a private
 *   answer and let connection order pick). Forbidden unless `allowPrivateCidrs` names them:
 *   loopback, private (RFC 1918, fc00::/7, local-use NAT64), shared (CGNAT 100.64.0.0/10),
 *   link-local, documentation, benchmarking and other special-purpose ranges (RFC 6890), every
 *   IPv6 address outside global unicast 2000::/3. Never allowed, whatever the configuration:
 *   unspecified (0.0.0.0/8, ::), multicast, broadcast, scoped (zone id) addresses, and the cloud
 *   metadata services. An IPv4 address inside IPv6 (IPv4-mapped ::ffff:0:0/96, NAT64
 *   64:ff9b::/96, 6to4 2002::/16) is judged as the IPv4 address it carries.
 * - The connection: made to the checked addresses themselves (no second DNS lookup, so a DNS
 *   answer that changes between the check and the connection cannot move it), in the resolver's
 *   order (the next only when one refuses the connection), with the original host name for TLS
 *   (SNI and certificate verification) and the `Host` header.
 * - The exchange: redirects are never followed (a 3xx is a failure), one deadline covers DNS,
 *   connect, TLS, headers and body, and the body is read up to `maxBytes` (the read stops as soon
 *   as it is over).
 *
 * Errors (`OutboundError`) say what failed in Mandate's words; they never carry a byte of the
 * remote answer. Callers must keep it that way (a status code, never a body or header echoed).
 */

/** Why an address is not public (none: it is). */
export type AddressKind =
  | 'unspecified' | 'loopback' | 'private' | 'shared' | 'link_local' | 'metadata' | 'multicast' | 'broadcast'
  | 'documentation' | 'benchmarking' | 'reserved' | 'scoped';

/** Kinds that no configuration opens: never a legitimate destination, or a cloud's credentials service. */
export const NEVER_ALLOWED: ReadonlySet<AddressKind> = new Set(['unspecified', 'multicast', 'broadcast', 'metadata', 'scoped']);

/**
 * Cloud instance-metadata services (instance credentials live there): AWS, GCP, Azure, OpenStack,
 * Oracle (169.254.169.254), AWS ECS task metadata (169.254.170.2), EKS Pod Identity
 * (169.254.170.23, fd00:ec2::23), Tencent (169.254.0.23), Alibaba (100.100.100.200), Oracle
 * Cloud Classic (192.0.0.192), AWS IMDS over IPv6 (fd00:ec2::254).
 */
export const METADATA_ADDRESSES: readonly string[] = [
  '169.254.169.254', '169.254.170.2', '169.254.170.23', '169.254.0.23', '100.100.100.200', '192.0.0.192',
  'fd00:ec2::254', 'fd00:ec2::23',
];

/** Special-purpose IPv4 ranges (RFC 6890 and its updates), first match names the kind. */
const V4_RANGES: ReadonlyArray<readonly [string, AddressKind]> = [
  ['0.0.0.0/8', 'unspecified'], // "this network" (RFC 1122 §3.2.1.3); 0.0.0.0 reaches the local host on Linux
  ['10.0.0.0/8', 'private'], // RFC 1918
  ['100.64.0.0/10', 'shared'], // RFC 6598 carrier-grade NAT
  ['127.0.0.0/8', 'loopback'],
  ['169.254.0.0/16', 'link_local'], // RFC 3927
  ['172.16.0.0/12', 'private'],
  ['192.0.0.0/24', 'reserved'], // IETF protocol assignments (RFC 6890)
  ['192.0.2.0/24', 'documentation'], // TEST-NET-1 (RFC 5737)
  ['192.88.99.0/24', 'reserved'], // 6to4 relay anycast (RFC 7526)
  ['192.168.0.0/16', 'private'],
  ['198.18.0.0/15', 'benchmarking'], // RFC 2544
  ['198.51.100.0/24', 'documentation'], // TEST-NET-2
  ['203.0.113.0/24', 'documentation'], // TEST-NET-3
  ['224.0.0.0/4', 'multicast'],
  ['255.255.255.255/32', 'broadcast'],
  ['240.0.0.0/4', 'reserved'], // RFC 1112 §4
];

/** Special-purpose IPv6 ranges; anything outside 2000::/3 that none names is `reserved`. */
const V6_RANGES: ReadonlyArray<readonly [string, AddressKind]> = [
  ['::/128', 'unspecified'],
  ['::1/128', 'loopback'],
  ['::/96', 'reserved'], // IPv4-compatible, deprecated (RFC 4291 §2.5.5.1)
  ['64:ff9b:1::/48', 'private'], // local-use NAT64 (RFC 8215)
  ['100::/64', 'reserved'], // discard-only (RFC 6666)
  ['2001:2::/48', 'benchmarking'], // RFC 5180
  ['2001::/23', 'reserved'], // IETF protocol assignments: Teredo 2001::/32 (a tunnel to any IPv4), ORCHID, …
  ['2001:db8::/32', 'documentation'], // RFC 3849
  ['3fff::/20', 'documentation'], // RFC 9637
  ['fc00::/7', 'private'], // unique local (RFC 4193)
  ['fe80::/10', 'link_local'],
  ['fec0::/10', 'private'], // site-local, deprecated (RFC 3879)
  ['ff00::/8', 'multicast'],
];

function blockListOf(entries: ReadonlyArray<readonly [string, AddressKind]>, type: 'ipv4' | 'ipv6'): Array<[BlockList, AddressKind]> {
  return entries.map(([cidr, kind]) => {
    const [net, prefix] = cidr.split('/') as [string, string];
    const b = new BlockList();
    b.addSubnet(net, Number(prefix), type);
    return [b, kind];
  });
}

const V4_LISTS = blockListOf(V4_RANGES, 'ipv4');
const V6_LISTS = blockListOf(V6_RANGES, 'ipv6');
// One list per family: node:net's BlockList matches an IPv4-mapped IPv6 address against IPv4
// rules (and IPv4 addresses against IPv6 rules that cover their mapped form); kept apart, each
// family is judged by its own rules and embedded IPv4 addresses explicitly (`embeddedIpv4`).
const METADATA_V4 = new BlockList();
const METADATA_V6 = new BlockList();
for (const a of METADATA_ADDRESSES) {
  if (isIP(a) === 6) METADATA_V6.addAddress(a, 'ipv6');
  else METADATA_V4.addAddress(a, 'ipv4');
}
const GLOBAL_UNICAST = new BlockList();
GLOBAL_UNICAST.addSubnet('2000::', 3, 'ipv6');

/** The eight 16-bit words of an IPv6 address (any textual form WHATWG URL accepts). */
function ipv6Words(address: string): number[] {
  // WHATWG URL serializes IPv6 canonically (lowercase, one `::`, no dotted quad).
  const canonical = new URL(`http://[${address}]/`).hostname.slice(1, -1);
  const [head, tail] = canonical.includes('::') ? canonical.split('::') as [string, string] : [canonical, undefined];
  const h = head === '' ? [] : head.split(':').map((w) => parseInt(w, 16));
  if (tail === undefined) return h;
  const t = tail === '' ? [] : tail.split(':').map((w) => parseInt(w, 16));
  return [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
}

const v4FromWords = (hi: number, lo: number): string => `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;

/**
 * The IPv4 address an IPv6 address stands for, and whether a connection to it reaches that
 * IPv4 address as such: IPv4-mapped (::ffff:0:0/96, RFC 4291 §2.5.5.2) and well-known NAT64
 * (64:ff9b::/96, RFC 6052) do; 6to4 (2002::/16, RFC 3056) goes through a relay, so its embedded
 * address decides a refusal but an allow-list entry for it does not open it.
 */
function embeddedIpv4(address: string): { v4: string; translated: boolean } | undefined {
  const w = ipv6Words(address);
  if (w[0] === 0 && w[1] === 0 && w[2] === 0 && w[3] === 0 && w[4] === 0 && w[5] === 0xffff) return { v4: v4FromWords(w[6]!, w[7]!), translated: true };
  if (w[0] === 0x64 && w[1] === 0xff9b && w[2] === 0 && w[3] === 0 && w[4] === 0 && w[5] === 0) return { v4: v4FromWords(w[6]!, w[7]!), translated: true };
  if (w[0] === 0x2002) return { v4: v4FromWords(w[1]!, w[2]!), translated: false };
  return undefined;
}

function classifyV4(address: string): AddressKind | undefined {
  if (METADATA_V4.check(address, 'ipv4')) return 'metadata';
  for (const [list, kind] of V4_LISTS) if (list.check(address, 'ipv4')) return kind;
  return undefined;
}

/**
 * Why `address` (a literal IPv4 or IPv6 address) is not a public address, or undefined when it
 * is one. Throws on a string that is not an IP address.
 */
export function classifyAddress(address: string): AddressKind | undefined {
  const family = isIP(address);
  if (family === 4) return classifyV4(address);
  if (family !== 6) throw new TypeError('not an IP address');
  if (address.includes('%')) return 'scoped';
  if (METADATA_V6.check(address, 'ipv6')) return 'metadata';
  const embedded = embeddedIpv4(address);
  if (embedded) {
    const kind = classifyV4(embedded.v4);
    if (kind !== undefined || embedded.translated) return kind;
  }
  for (const [list, kind] of V6_LISTS) if (list.check(address, 'ipv6')) return kind;
  return GLOBAL_UNICAST.check(address, 'ipv6') ? undefined : 'reserved';
}

/** A CIDR (`10.0.0.0/8`, `fd12:3456::/48`) or a single address; what is wrong with it, or undefined. */
export function cidrProblem(entry: string): string | undefined {
  const slash = entry.indexOf('/');
  const address = slash < 0 ? entry : entry.slice(0, slash);
  const family = isIP(address);
  if (family === 0 || address.includes('%')) return `"${entry}" is not an IPv4 or IPv6 address or CIDR`;
  if (slash < 0) return undefined;
  const prefix = entry.slice(slash + 1);
  const max = family === 4 ? 32 : 128;
  if (!/^\d{1,3}$/.test(prefix) || Number(prefix) > max) return `"${entry}": the prefix length must be 0 to ${max}`;
  return undefined;
}

/**
 * The addresses an allow list names, for `addressVerdict`, one list per family: an IPv4 entry
 * allows IPv4 addresses (and their IPv4-mapped and NAT64 forms, see `addressVerdict`), an IPv6
 * entry IPv6 addresses only. (One node:net BlockList for both would let `::/0` or
 * `::ffff:0:0/96` open every IPv4 address too.)
 */
export interface AllowList {
  readonly v4: BlockList;
  readonly v6: BlockList;
}

export function allowListOf(cidrs: readonly string[]): AllowList {
  const v4 = new BlockList();
  const v6 = new BlockList();
  for (const entry of cidrs) {
    const problem = cidrProblem(entry);
    if (problem) throw new TypeError(problem);
    const [address, prefix] = entry.split('/') as [string, string | undefined];
    const [list, type] = isIP(address) === 4 ? [v4, 'ipv4' as const] : [v6, 'ipv6' as const];
    if (prefix === undefined) list.addAddress(address, type);
    else list.addSubnet(address, Number(prefix), type);
  }
  return { v4, v6 };
}

export interface AddressVerdict {
  /** Why the address is not public; undefined for a public address. */
  kind: AddressKind | undefined;
  /** A public address, or a non-public one that the allow list names and that is not NEVER_ALLOWED. */
  allowed: boolean;
}

/**
 * Whether a connection to `address` is allowed, given the operator's allow list: a public
 * address is; a NEVER_ALLOWED one is not; any other only when an entry of its family names it,
 * or, for an IPv4-mapped or NAT64 address, when an IPv4 entry names the IPv4 address it reaches.
 */
export function addressVerdict(address: string, allow: AllowList): AddressVerdict {
  const kind = classifyAddress(address);
  if (kind === undefined) return { kind, allowed: true };
  if (NEVER_ALLOWED.has(kind)) return { kind, allowed: false };
  if (isIP(address) === 4) return { kind, allowed: allow.v4.check(address, 'ipv4') };
  if (allow.v6.check(address, 'ipv6')) return { kind, allowed: true };
  const embedded = embeddedIpv4(address);
  return { kind, allowed: embedded?.translated === true && allow.v4.check(embedded.v4, 'ipv4') };
}

export type OutboundFailure =
  | 'invalid_url' // not a URL
  | 'scheme' // not https (nor plain http to loopback in development)
  | 'userinfo' // credentials in the URL
  | 'forbidden_address' // the host is, or resolves to, an address that is not allowed
  | 'unresolvable' // the host name has no address
  | 'timeout' // the deadline passed (DNS, connect, TLS, headers or body)
  | 'tls' // the server's certificate was not accepted for the host name
  | 'network' // the connection failed or broke
  | 'redirect' // a 3xx answer: never followed
  | 'too_large'; // the answer body is larger than allowed

/** A refused or failed outbound request, in Mandate's words (never the remote answer's). */
export class OutboundError extends MandateError {
  readonly reason: OutboundFailure;
  /** The host the request was for (no path or query), for logs. */
  readonly host: string | undefined;
  /** The status of a 3xx answer (`redirect`). */
  readonly status: number | undefined;
  /** For `forbidden_address`: the address refused and why (for logs, not for callers). */
  readonly address: string | undefined;
  readonly kind: AddressKind | undefined;
  constructor(reason: OutboundFailure, message: string, o: { host?: string; status?: number; address?: string; kind?: AddressKind; cause?: unknown } = {}) {
    super('ERR_OUTBOUND', message, o.cause === undefined ? undefined : { cause: o.cause });
    this.reason = reason;
    this.host = o.host;
    this.status = o.status;
    this.address = o.address;
    this.kind = o.kind;
  }
}

/** Resolves a host name to its addresses (`dns.lookup` with `all: true` by default). */
export type HostResolver = (hostname: string) => Promise<ReadonlyArray<{ address: string; family: number }>>;

export interface OutboundOptions {
  /**
   * Non-public addresses that may be reached (`outbound.allow_private_cidrs`), e.g. an issuer
   * on the internal network. Never opens the NEVER_ALLOWED kinds.
   */
  allowPrivateCidrs?: readonly string[];
  /** Development only (NODE_ENV is not `production`): plain http to an (allowed) loopback address. */
  allowLoopbackHttp?: boolean;
  /** Host name resolution; tests inject one. Default: the system resolver (`dns.lookup`). */
  resolve?: HostResolver;
  /** Trust anchors used instead of the system's for https (tests, a private PKI). */
  ca?: string | readonly string[];
}

export interface OutboundRequest {
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** The largest answer body read, in bytes: a larger one is `too_large` and its read stops. */
  maxBytes: number;
  /** One deadline for the whole exchange: DNS, connect, TLS, headers and body. */
  timeoutMs: number;
}

export interface OutboundResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** A URL that passed every check, and the addresses (all checked) a connection to it may use, in the resolver's order. */
export interface OutboundTarget {
  url: URL;
  addresses: readonly string[];
}

const systemResolver: HostResolver = (hostname) => lookup(hostname, { all: true, verbatim: true });

/** Connection errors after which the next checked address is tried (nothing was exchanged). */
const REFUSED = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'EAFNOSUPPORT']);
const TLS_ERROR = /^(ERR_TLS_|ERR_SSL_|UNABLE_TO_|CERT_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|ERR_OSSL)/;

export class OutboundGuard {
  private readonly allow: AllowList;
  private readonly allowLoopbackHttp: boolean;
  private readonly resolveHost: HostResolver;
  private readonly ca: string | readonly string[] | undefined;

  constructor(opts: OutboundOptions = {}) {
    this.allow = allowListOf(opts.allowPrivateCidrs ?? []);
    this.allowLoopbackHttp = opts.allowLoopbackHttp ?? false;
    this.resolveHost = opts.resolve ?? systemResolver;
    this.ca = opts.ca;
  }

  /**
   * The checks that need no DNS: a URL, https (or http in development), no userinfo, and a
   * literal address that is allowed. A host name is checked when it is resolved (`check`).
   */
  parse(url: string): URL {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new OutboundError('invalid_url', 'not a valid URL');
    }
    const host = u.hostname;
    if (u.username !== '' || u.password !== '') throw new OutboundError('userinfo', 'a URL must not carry credentials (userinfo)', { host });
    const literal = literalAddress(host);
    // Plain http: development only, and only to a host that is loopback by its very name (a
    // literal, or `localhost` per RFC 6761 §6.3); its addresses must then all be loopback.
    const loopbackName = literal !== undefined || host === 'localhost' || host.endsWith('.localhost');
    if (u.protocol !== 'https:' && !(u.protocol === 'http:' && this.allowLoopbackHttp && loopbackName)) {
      throw new OutboundError('scheme', this.allowLoopbackHttp ? 'only https (or plain http to a loopback address in development) is used' : 'only https is used', { host });
    }
    if (literal !== undefined) this.checkAddresses(u, [literal]);
    return u;
  }

  /**
   * Every check, including the host name's resolution: the target a request would connect to.
   * For validating a URL when it is configured (it is checked again on every request, since DNS
   * answers change).
   */
  async check(url: string, signal?: AbortSignal): Promise<OutboundTarget> {
    const u = this.parse(url);
    const literal = literalAddress(u.hostname);
    if (literal !== undefined) return { url: u, addresses: [literal] };
    let answers: ReadonlyArray<{ address: string }>;
    try {
      answers = await withSignal(this.resolveHost(u.hostname), signal);
    } catch (err) {
      if (signal?.aborted) throw new OutboundError('timeout', `${u.hostname} was not resolved in time`, { host: u.hostname, cause: err });
      throw new OutboundError('unresolvable', `${u.hostname} does not resolve`, { host: u.hostname, cause: err });
    }
    const addresses = answers.map((a) => a.address);
    if (addresses.length === 0 || addresses.some((a) => isIP(a) === 0)) throw new OutboundError('unresolvable', `${u.hostname} does not resolve to an address`, { host: u.hostname });
    this.checkAddresses(u, addresses);
    return { url: u, addresses };
  }

  /**
   * One request under every guard. Any status but a 3xx is returned with the body (at most
   * `maxBytes`); the caller judges it, and must not show the body or headers to its own callers.
   */
  async request(url: string, req: OutboundRequest): Promise<OutboundResponse> {
    const deadline = AbortSignal.timeout(req.timeoutMs);
    const target = await this.check(url, deadline);
    const host = target.url.hostname;
    const timeout = () => new OutboundError('timeout', `${host} did not answer within ${req.timeoutMs} ms`, { host });
    const connector = buildConnector({ timeout: req.timeoutMs, ...(this.ca !== undefined ? { ca: this.ca as string | string[] } : {}) });
    const client = new Client(target.url.origin, {
      // The checked addresses, never a new lookup: the first that accepts a connection (as a
      // resolver-order fallback, e.g. localhost as ::1 then 127.0.0.1). undici takes SNI and the
      // certificate's expected name from the URL's host (tls.connect's `servername`), and the
      // Host header from the origin.
      connect: (opts, callback) => {
        let i = 0;
        const attempt = (): void => connector({ ...opts, hostname: target.addresses[i]! }, (err, socket) => {
          if (err && ++i < target.addresses.length && REFUSED.has(String((err as { code?: unknown }).code))) return attempt();
          (callback as (e: Error | null, s: typeof socket) => void)(err, socket);
        });
        attempt();
      },
      headersTimeout: req.timeoutMs,
      bodyTimeout: req.timeoutMs,
    });
    try {
      let res: Awaited<ReturnType<Client['request']>>;
      try {
        res = await client.request({
          origin: target.url.origin,
          path: `${target.url.pathname}${target.url.search}`,
          method: req.method ?? 'GET',
          headers: req.headers ?? {},
          ...(req.body !== undefined ? { body: req.body } : {}),
          signal: deadline,
        });
      } catch (err) {
        if (deadline.aborted) throw timeout();
        throw connectFailure(err, host);
      }
      const { statusCode, headers, body } = res;
      // Destroying an unread body emits an abort error; it is expected and must not go unhandled.
      body.on('error', () => {});
      try {
        if (statusCode >= 300 && statusCode < 400) {
          throw new OutboundError('redirect', `${host} answered HTTP ${statusCode} (a redirect): redirects are not followed`, { host, status: statusCode });
        }
        const declared = Number(firstHeader(headers['content-length']) ?? NaN);
        const tooLarge = () => new OutboundError('too_large', `the answer of ${host} is larger than ${req.maxBytes} bytes`, { host });
        if (Number.isFinite(declared) && declared > req.maxBytes) throw tooLarge();
        const chunks: Buffer[] = [];
        let size = 0;
        try {
          for await (const chunk of body as AsyncIterable<Buffer>) {
            size += chunk.length;
            if (size > req.maxBytes) throw tooLarge();
            chunks.push(chunk);
          }
        } catch (err) {
          if (err instanceof OutboundError) throw err;
          if (deadline.aborted) throw timeout();
          throw new OutboundError('network', `the answer of ${host} could not be read`, { host, cause: err });
        }
        return { status: statusCode, headers, body: Buffer.concat(chunks, size) };
      } finally {
        // Stops reading at once when refused; a no-op once the body was fully read.
        if (!body.destroyed) body.destroy();
      }
    } finally {
      client.destroy().catch(() => undefined);
    }
  }

  /** Every address must be allowed; plain http additionally needs every one to be loopback. */
  private checkAddresses(u: URL, addresses: readonly string[]): void {
    const host = u.hostname;
    const literal = literalAddress(host) !== undefined;
    for (const address of addresses) {
      const v = addressVerdict(address, this.allow);
      if (u.protocol === 'http:' && v.kind !== 'loopback') {
        throw new OutboundError('scheme', 'plain http is used only to a loopback address in development: use https', { host });
      }
      if (!v.allowed) {
        const what = `${KIND_WORDS[v.kind!]} address`;
        const message = literal
          ? `${host} is ${what}, which Mandate does not connect to${NEVER_ALLOWED.has(v.kind!) ? '' : ' unless outbound.allow_private_cidrs names it'}`
          : `${host} resolves to ${what}, which Mandate does not connect to${NEVER_ALLOWED.has(v.kind!) ? '' : ' unless outbound.allow_private_cidrs names it'}`;
        throw new OutboundError('forbidden_address', message, { host, address, kind: v.kind! });
      }
    }
  }
}

const KIND_WORDS: Record<AddressKind, string> = {
  unspecified: 'an unspecified', loopback: 'a loopback', private: 'a private', shared: 'a shared (carrier-grade NAT)',
  link_local: 'a link-local', metadata: 'a cloud metadata', multicast: 'a multicast', broadcast: 'the broadcast',
  documentation: 'a documentation', benchmarking: 'a benchmarking', reserved: 'a reserved (special-purpose)', scoped: 'a scoped (zone id)',
};

/** The address a URL's (WHATWG-normalized) hostname is, when it is a literal address. */
function literalAddress(hostname: string): string | undefined {
  const bare = hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
  return isIP(bare) !== 0 ? bare : undefined;
}

function firstHeader(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function connectFailure(err: unknown, host: string): OutboundError {
  const code = String((err as { code?: unknown })?.code ?? '');
  if (TLS_ERROR.test(code)) return new OutboundError('tls', `the TLS certificate of ${host} was not accepted`, { host, cause: err });
  return new OutboundError('network', `the connection to ${host} failed`, { host, cause: err });
}

function withSignal<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
