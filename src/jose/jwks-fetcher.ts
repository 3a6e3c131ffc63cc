import { importJWK, type CryptoKey, type JWK, type KeyObject } from 'jose';
import { MandateError } from '../core/errors.js';
import { hasDuplicateKeys } from '../core/http.js';
import { OutboundError, type OutboundGuard } from '../core/outbound.js';
import { systemClock, type Clock } from '../core/clock.js';
import { silentLogger, stripQuery, type Logger } from '../core/logger.js';

/**
 * Fetches and caches the signing keys of trusted issuers (JWKS, RFC 7517 §5) and their
 * OpenID discovery documents (OpenID Connect Discovery 1.0 §4).
 *
 * Every request goes through the outbound guard (src/core/outbound.ts): https only (plain http
 * only to a loopback address in development), the resolved address checked and the connection
 * pinned to it, no redirects followed, a timeout over the whole exchange, the body capped while
 * it streams. On top of it: `application/json` (or `+json`) only, and no duplicate JSON members.
 *
 * Keys are cached per (jwks_uri, kid). An unknown `kid` causes at most one refetch per
 * `refetchCooldownMs` for that jwks_uri (concurrent callers share one in-flight request), so a
 * flood of tokens with random `kid`s cannot make Mandate hammer an issuer. Symmetric keys
 * (`kty: oct`) are never used; a key's `alg` (when present) must equal the token's `alg` and its
 * `use` (when present) must be `sig`. Only the public members of a JWK are imported.
 *
 * Failures fail closed: a refresh that fails is remembered for the cooldown and rethrown, and
 * keys are never served from a document older than `cacheTtlMs` unless its refresh is pending.
 */

export type JwksFetchReason =
  | 'insecure_url' // not https (nor http to loopback in development), or credentials in the URL
  | 'forbidden_address' // the host is, or resolves to, an address the outbound guard refuses
  | 'timeout'
  | 'network'
  | 'redirect' // a 3xx answer: redirects are never followed
  | 'http_status'
  | 'content_type'
  | 'too_large'
  | 'invalid_json' // not JSON, not an object, or duplicate member names
  | 'invalid_document' // JSON, but not a JWKS / discovery document
  | 'issuer_mismatch' // discovery document's `issuer` differs from the configured issuer
  | 'key_not_found'
  | 'ambiguous_key' // more than one key fits and the token names no kid that tells them apart
  | 'symmetric_key'
  | 'alg_mismatch'
  | 'key_use'
  | 'unsupported_key';

export class JwksFetchError extends MandateError {
  readonly reason: JwksFetchReason;
  /** The URL involved (no query string), for logs. */
  readonly url: string | undefined;
  constructor(reason: JwksFetchReason, message: string, url?: string, options?: { cause?: unknown }) {
    super('ERR_JWKS', message, options);
    this.reason = reason;
    this.url = url === undefined ? undefined : stripQuery(url);
  }
}

export interface JwksFetcherOptions {
  /** The one guard for outbound requests (schemes, addresses, pinning, redirects). */
  outbound: OutboundGuard;
  /** Largest JWKS or discovery document, in bytes (default 256 KiB). */
  maxBytes?: number;
  /** Whole-request timeout (default 5 s). */
  timeoutMs?: number;
  /** Least time between two fetches of one URL caused by unknown kids or failures (default 30 s). */
  refetchCooldownMs?: number;
  /** How long a fetched document is used before it is fetched again (default 10 min). */
  cacheTtlMs?: number;
  clock?: Clock;
  logger?: Logger;
}

export interface KeySelector {
  /** The token's `kid`, when it has one. */
  kid?: string | undefined;
  /** The token's (already pinned) `alg`. */
  alg: string;
}

export type VerificationKey = CryptoKey | KeyObject;

interface JwksDoc {
  keys: JWK[];
  /** Imported keys for this version of the document, by kid + alg. */
  imported: Map<string, Promise<VerificationKey>>;
}

interface CacheEntry<T> {
  value?: T;
  fetchedAt: number;
  attemptAt: number;
  error?: JwksFetchError;
  inflight?: Promise<T>;
}

const JSON_TYPE = /^application\/(?:[a-z0-9!#$&^_.+-]+\+)?json$/;
const MAX_KEYS = 100;

/** Which key type (and curve) each signature algorithm needs (RFC 7518 §3.1, RFC 8037 §3.1). */
const ALG_KEYS: Record<string, { kty: string; crv?: readonly string[] }> = {
  RS256: { kty: 'RSA' }, RS384: { kty: 'RSA' }, RS512: { kty: 'RSA' },
  PS256: { kty: 'RSA' }, PS384: { kty: 'RSA' }, PS512: { kty: 'RSA' },
  ES256: { kty: 'EC', crv: ['P-256'] }, ES384: { kty: 'EC', crv: ['P-384'] }, ES512: { kty: 'EC', crv: ['P-521'] },
  EdDSA: { kty: 'OKP', crv: ['Ed25519', 'Ed448'] }, Ed25519: { kty: 'OKP', crv: ['Ed25519'] },
};

/** The public members of each key type; everything else (private parts, `ext`, `key_ops`, `x5c`) is dropped. */
const PUBLIC_MEMBERS: Record<string, readonly string[]> = { RSA: ['n', 'e'], EC: ['crv', 'x', 'y'], OKP: ['crv', 'x'] };

type Selection = { key: JWK } | { none: true } | { error: JwksFetchError };

export class JwksFetcher {
  private readonly outbound: OutboundGuard;
  private readonly maxBytes: number;
  private readonly timeoutMs: number;
  private readonly cooldownMs: number;
  private readonly ttlMs: number;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly jwksCache = new Map<string, CacheEntry<JwksDoc>>();
  private readonly discoveryCache = new Map<string, CacheEntry<string>>();

  constructor(opts: JwksFetcherOptions) {
    this.outbound = opts.outbound;
    this.maxBytes = opts.maxBytes ?? 256 * 1024;
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.cooldownMs = opts.refetchCooldownMs ?? 30_000;
    this.ttlMs = opts.cacheTtlMs ?? 10 * 60_000;
    this.clock = opts.clock ?? systemClock;
    this.log = opts.logger ?? silentLogger();
  }

  /**
   * The verification key for a token from the JWKS at `jwksUri`. With a `kid`, only keys with
   * that kid are considered; without one, the only key that fits `alg` (refused when several do).
   */
  async getKey(jwksUri: string, sel: KeySelector): Promise<VerificationKey> {
    this.checkUrl(jwksUri);
    if (!ALG_KEYS[sel.alg]) throw new JwksFetchError('unsupported_key', `algorithm ${sel.alg} is not supported for JWKS keys`, jwksUri);
    let doc = await this.load(this.jwksCache, jwksUri, jwksUri, parseJwks, false);
    let picked = select(doc, sel, jwksUri);
    if ('none' in picked) {
      // Perhaps the issuer rotated: look again, at most once per cooldown.
      const again = await this.load(this.jwksCache, jwksUri, jwksUri, parseJwks, true);
      if (again !== doc) {
        doc = again;
        picked = select(doc, sel, jwksUri);
      }
    }
    if ('error' in picked) throw picked.error;
    if ('none' in picked) {
      throw new JwksFetchError('key_not_found', sel.kid === undefined ? 'no key in the JWKS fits the token algorithm' : 'no key in the JWKS has the token kid', jwksUri);
    }
    const cacheKey = `${sel.kid ?? ''}\u0000${sel.alg}`;
    let key = doc.imported.get(cacheKey);
    if (!key) {
      key = importPublic(picked.key, sel.alg, jwksUri);
      doc.imported.set(cacheKey, key);
      key.catch(() => doc.imported.delete(cacheKey));
    }
    return key;
  }

  /**
   * The whole JWKS at `jwksUri` (the keys that are JSON objects with a `kty`), from the cache
   * while it is fresh; the same object until it is fetched again. `refresh` asks for a newer
   * one (an unknown `kid`), at most once per cooldown. For a verifier that selects keys itself.
   * `'now'`: a document whose fetch starts after this call, whatever the cooldown (a signing key
   * was retired: the bus said so, never a token, so no caller can make it hammer the issuer).
   */
  async jwks(jwksUri: string, refresh: boolean | 'now' = false): Promise<{ keys: Record<string, unknown>[] }> {
    this.checkUrl(jwksUri);
    const doc = await this.load(this.jwksCache, jwksUri, jwksUri, parseJwks, refresh);
    return doc as unknown as { keys: Record<string, unknown>[] };
  }

  /**
   * The `jwks_uri` from `${issuer}/.well-known/openid-configuration`. The document's `issuer`
   * must equal the configured issuer exactly (OpenID Connect Discovery 1.0 §4.3), and its
   * `jwks_uri` passes the same URL guard as everything else.
   */
  async discover(issuer: string): Promise<string> {
    const url = `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
    this.checkUrl(url);
    return this.load(this.discoveryCache, issuer, url, (doc) => {
      if (doc.issuer !== issuer) throw new JwksFetchError('issuer_mismatch', 'the discovery document names another issuer', url);
      if (typeof doc.jwks_uri !== 'string') throw new JwksFetchError('invalid_document', 'the discovery document has no jwks_uri', url);
      this.checkUrl(doc.jwks_uri);
      return doc.jwks_uri;
    }, false);
  }

  /** Forgets every cached document and key (e.g. after the trust configuration changed). */
  clear(): void {
    this.jwksCache.clear();
    this.discoveryCache.clear();
  }

  /**
   * A cached document, fetched when missing or older than the TTL, or when `refresh` asks for a
   * newer one. Never more than one fetch per cooldown for a key after a refresh or a failure;
   * concurrent callers share the one in flight.
   */
  private async load<T>(cache: Map<string, CacheEntry<T>>, key: string, url: string, parse: (doc: Record<string, unknown>) => T, refresh: boolean | 'now'): Promise<T> {
    const e = cache.get(key);
    if (e?.inflight) {
      if (refresh !== 'now') return e.inflight;
      // A fetch that started before this call may have read what the caller knows is stale.
      const before = e.inflight;
      await before.catch(() => undefined);
      if (e.inflight && e.inflight !== before) return e.inflight;
    }
    const now = this.clock.now();
    if (e && refresh !== 'now') {
      const fresh = e.value !== undefined && now - e.fetchedAt < this.ttlMs;
      if (fresh && !refresh) return e.value as T;
      if (now - e.attemptAt < this.cooldownMs) {
        if (e.error) throw e.error;
        if (e.value !== undefined) return e.value;
      }
    }
    const entry: CacheEntry<T> = e ?? { fetchedAt: 0, attemptAt: now };
    entry.attemptAt = now;
    const p = this.fetchJson(url)
      .then(parse)
      .then(
        (value) => {
          entry.value = value;
          entry.fetchedAt = now;
          entry.error = undefined;
          return value;
        },
        (err: unknown) => {
          const wrapped = err instanceof JwksFetchError ? err : new JwksFetchError('invalid_document', 'the document could not be used', url, { cause: err });
          entry.error = wrapped;
          this.log.warn({ url: stripQuery(url), reason: wrapped.reason }, 'issuer key document fetch failed');
          throw wrapped;
        },
      )
      .finally(() => {
        entry.inflight = undefined;
      });
    entry.inflight = p;
    cache.set(key, entry);
    return p;
  }

  /** Refuses, before any fetch, a URL Mandate must not fetch keys from (its host is checked again when resolved). */
  private checkUrl(url: string): URL {
    try {
      return this.outbound.parse(url);
    } catch (err) {
      throw fetchError(err, url);
    }
  }

  /** GET through the outbound guard; returns the parsed JSON object. */
  private async fetchJson(url: string): Promise<Record<string, unknown>> {
    let res;
    try {
      res = await this.outbound.request(url, {
        method: 'GET',
        headers: { accept: 'application/json, application/jwk-set+json' },
        maxBytes: this.maxBytes,
        timeoutMs: this.timeoutMs,
      });
    } catch (err) {
      throw fetchError(err, url);
    }
    if (res.status !== 200) throw new JwksFetchError('http_status', `answered HTTP ${res.status}`, url);
    const type = String(firstHeader(res.headers['content-type']) ?? '').split(';')[0]!.trim().toLowerCase();
    if (!JSON_TYPE.test(type)) throw new JwksFetchError('content_type', 'the answer is not JSON', url);
    return parseObject(res.body, url);
  }
}

/** An outbound guard's refusal as a JwksFetchError (its message is Mandate's own words). */
function fetchError(err: unknown, url: string): JwksFetchError {
  if (!(err instanceof OutboundError)) return new JwksFetchError('network', 'the request failed', url, { cause: err });
  const reason: JwksFetchReason = (() => {
    switch (err.reason) {
      case 'invalid_url':
      case 'scheme':
      case 'userinfo':
        return 'insecure_url';
      case 'forbidden_address':
        return 'forbidden_address';
      case 'timeout':
        return 'timeout';
      case 'redirect':
        return 'redirect';
      case 'too_large':
        return 'too_large';
      default:
        return 'network';
    }
  })();
  return new JwksFetchError(reason, err.message, url, { cause: err });
}

function firstHeader(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function parseObject(buf: Buffer, url: string): Record<string, unknown> {
  let text: string;
  let value: unknown;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(buf);
    value = JSON.parse(text);
  } catch {
    throw new JwksFetchError('invalid_json', 'the answer is not valid JSON', url);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new JwksFetchError('invalid_json', 'the answer is not a JSON object', url);
  if (hasDuplicateKeys(text)) throw new JwksFetchError('invalid_json', 'the answer has duplicate member names', url);
  return value as Record<string, unknown>;
}

function parseJwks(doc: Record<string, unknown>): JwksDoc {
  if (!Array.isArray(doc.keys)) throw new JwksFetchError('invalid_document', 'the JWKS has no "keys" array');
  if (doc.keys.length > MAX_KEYS) throw new JwksFetchError('invalid_document', `the JWKS has more than ${MAX_KEYS} keys`);
  const keys = doc.keys.filter((k): k is JWK => k !== null && typeof k === 'object' && !Array.isArray(k) && typeof (k as JWK).kty === 'string');
  return { keys, imported: new Map() };
}

/** Why `jwk` cannot verify a token with `alg`, or undefined when it can. */
function unfit(jwk: JWK, alg: string, url: string): JwksFetchError | undefined {
  if (jwk.kty === 'oct') return new JwksFetchError('symmetric_key', 'the JWKS key is symmetric (kty oct): refused', url);
  if (jwk.use !== undefined && jwk.use !== 'sig') return new JwksFetchError('key_use', 'the JWKS key is not for signatures (use)', url);
  if (jwk.key_ops !== undefined && !(Array.isArray(jwk.key_ops) && jwk.key_ops.includes('verify'))) {
    return new JwksFetchError('key_use', 'the JWKS key is not for verification (key_ops)', url);
  }
  if (jwk.alg !== undefined && jwk.alg !== alg) return new JwksFetchError('alg_mismatch', 'the JWKS key is for another algorithm', url);
  const need = ALG_KEYS[alg];
  if (!need || jwk.kty !== need.kty || (need.crv && !need.crv.includes(String(jwk.crv)))) {
    return new JwksFetchError('alg_mismatch', 'the JWKS key type does not fit the token algorithm', url);
  }
  return undefined;
}

function select(doc: JwksDoc, sel: KeySelector, url: string): Selection {
  if (sel.kid !== undefined) {
    const same = doc.keys.filter((k) => k.kid === sel.kid);
    if (same.length === 0) return { none: true };
    const fit = same.filter((k) => unfit(k, sel.alg, url) === undefined);
    if (fit.length === 1) return { key: fit[0]! };
    if (fit.length > 1) return { error: new JwksFetchError('ambiguous_key', 'more than one JWKS key has the token kid', url) };
    return { error: unfit(same[0]!, sel.alg, url)! };
  }
  const fit = doc.keys.filter((k) => unfit(k, sel.alg, url) === undefined);
  if (fit.length === 1) return { key: fit[0]! };
  if (fit.length > 1) return { error: new JwksFetchError('ambiguous_key', 'the token has no kid and more than one JWKS key fits', url) };
  return { none: true };
}

async function importPublic(jwk: JWK, alg: string, url: string): Promise<VerificationKey> {
  const pub: JWK = { kty: jwk.kty };
  for (const m of PUBLIC_MEMBERS[jwk.kty!] ?? []) {
    const v = (jwk as Record<string, unknown>)[m];
    if (typeof v !== 'string') throw new JwksFetchError('unsupported_key', `the JWKS key lacks "${m}"`, url);
    (pub as Record<string, unknown>)[m] = v;
  }
  try {
    const key = await importJWK(pub, alg);
    if (key instanceof Uint8Array) throw new Error('symmetric');
    return key;
  } catch (err) {
    throw new JwksFetchError('unsupported_key', 'the JWKS key could not be imported', url, { cause: err });
  }
}
