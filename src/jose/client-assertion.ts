import type { KeyObject } from 'node:crypto';
import { compactVerify, type JWK } from 'jose';
import { BoundedMap, oauth, type Clock, type ReplayStore } from '../core/index.js';
import { checkAlgorithms, keyFitsAlg, keyUsableFor, parseCompactJws, publicJwkOf } from './dpop.js';
import { importPublicKey, verifyCompactAsync } from './jws.js';
import type { JwksFetcher } from './jwks-fetcher.js';

/**
 * Client authentication with `private_key_jwt`: a JWT the client signs with a key it
 * registered (RFC 7523 §2.2 and §3, RFC 7521 §4.2, OpenID Connect Core §9). Keys come only from
 * the client's registered JWKS; `jwk`, `jku`, `x5u`, `x5c` in the token header are ignored.
 * Every assertion is single use across all instances (RFC 7523 §3 item 7, via the replay store).
 */

export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

const DEFAULT_ALGS = ['ES256', 'EdDSA', 'RS256', 'PS256'];
const MAX_ID_LENGTH = 256;
/** `typ` values of other Mandate JWTs, refused here so that one kind of token is never taken for another (RFC 8725 §3.11). */
const FOREIGN_TYPS = new Set(['dpop+jwt', 'at+jwt', 'application/at+jwt', 'application/dpop+jwt']);

export interface ClientAssertionVerifierOptions {
  /** One-time `jti` records shared by every instance. */
  replay: ReplayStore;
  clock: Clock;
  /** Values identifying this server (the issuer and the token endpoint URL): `aud` must contain one of them. */
  audiences: string[];
  /** Accepted `alg` values (default ES256, EdDSA, RS256, PS256); asymmetric only. */
  algorithms?: string[];
  /** The furthest `exp` may be from now, seconds (default 300). */
  maxLifetimeS?: number;
  /** Allowed clock difference, seconds (default 30). */
  skewS?: number;
  /** Size cap of the assertion, bytes (default 8192). */
  maxBytes?: number;
  /** The client's registered public keys, or undefined for an unknown client. */
  getClientKeys: (clientId: string) => Promise<JWK[] | undefined>;
  /**
   * The `jwks_uri`s the client registered (RFC 7591 §2), fetched through `fetcher`; consulted
   * when none of the inline keys fits the assertion. Keys are cached per (jwks_uri, kid) by the
   * fetcher, and an unknown kid refetches at most once per cooldown.
   */
  getClientJwksUris?: (clientId: string) => Promise<readonly string[]>;
  /** The guarded fetcher for `getClientJwksUris` (required with it). */
  fetcher?: JwksFetcher;
}

export interface VerifiedClientAssertion {
  clientId: string;
  jti: string;
  /** `exp` in epoch milliseconds. */
  expiresAt: number;
}

const fail = (d: string) => oauth.invalidClient(d);

const KEY_CACHE_MAX = 10_000;

export class ClientAssertionVerifier {
  /**
   * Imported registered keys (node:crypto KeyObjects), by (alg, public JWK): importing costs
   * more than verifying, and a client's keys change only when its credential does (a changed
   * JWK is a new entry). Bounded: the oldest entries go beyond KEY_CACHE_MAX.
   */
  private readonly keyCache = new BoundedMap<string, KeyObject>(KEY_CACHE_MAX);

  private importKey(jwk: JWK, alg: string): KeyObject {
    const id = `${alg}:${JSON.stringify(jwk)}`;
    let key = this.keyCache.get(id);
    if (!key) {
      key = importPublicKey(jwk, alg);
      this.keyCache.set(id, key);
    }
    return key;
  }

  private readonly replay: ReplayStore;
  private readonly clock: Clock;
  private readonly audiences: string[];
  private readonly algorithms: string[];
  private readonly maxLifetimeS: number;
  private readonly skewS: number;
  private readonly maxBytes: number;
  private readonly getClientKeys: (clientId: string) => Promise<JWK[] | undefined>;
  private readonly getClientJwksUris: ((clientId: string) => Promise<readonly string[]>) | undefined;
  private readonly fetcher: JwksFetcher | undefined;

  constructor(opts: ClientAssertionVerifierOptions) {
    this.replay = opts.replay;
    this.clock = opts.clock;
    this.audiences = [...opts.audiences];
    this.algorithms = checkAlgorithms(opts.algorithms ?? DEFAULT_ALGS, 'ClientAssertionVerifier');
    this.maxLifetimeS = opts.maxLifetimeS ?? 300;
    this.skewS = opts.skewS ?? 30;
    this.maxBytes = opts.maxBytes ?? 8192;
    this.getClientKeys = opts.getClientKeys;
    this.getClientJwksUris = opts.getClientJwksUris;
    this.fetcher = opts.fetcher;
    if (this.getClientJwksUris && !this.fetcher) throw new TypeError('ClientAssertionVerifier: getClientJwksUris needs a fetcher');
    if (this.audiences.length === 0 || this.audiences.some((a) => typeof a !== 'string' || a === '')) {
      throw new TypeError('ClientAssertionVerifier: audiences must be a non-empty list of non-empty strings');
    }
    if (!(this.maxLifetimeS > 0) || !(this.skewS >= 0) || !(this.maxBytes > 0)) {
      throw new TypeError('ClientAssertionVerifier: maxLifetimeS, skewS and maxBytes must be positive');
    }
  }

  async verify(assertion: string, opts: { clientIdParam?: string; assertionType: string | undefined }): Promise<VerifiedClientAssertion> {
    // RFC 7521 §4.2: the assertion type.
    if (opts.assertionType !== CLIENT_ASSERTION_TYPE) throw fail(`client_assertion_type must be ${CLIENT_ASSERTION_TYPE}`);

    // RFC 7523 §3 items 8–9 (a well-formed JWT), RFC 8725 §3.1 (a pinned asymmetric alg).
    const { header, payload } = parseCompactJws(assertion, this.maxBytes, (d) => fail(`client_assertion is malformed: ${d}`));
    const alg = header.alg;
    if (typeof alg !== 'string' || !this.algorithms.includes(alg)) {
      throw fail(`client_assertion "alg" must be one of ${this.algorithms.join(', ')}`);
    }
    if (header.crit !== undefined) throw fail('client_assertion must not have "crit" header parameters');
    if (typeof header.typ === 'string' && FOREIGN_TYPS.has(header.typ.toLowerCase())) throw fail('client_assertion "typ" names another kind of token');
    if (header.kid !== undefined && (typeof header.kid !== 'string' || header.kid.length > MAX_ID_LENGTH)) throw fail('client_assertion "kid" must be a string');

    // RFC 7523 §3 items 1–2 and §2.2: iss = sub = client_id.
    const { iss, sub } = payload;
    if (typeof iss !== 'string' || iss === '' || iss.length > MAX_ID_LENGTH) throw fail('client_assertion "iss" must be the client_id');
    if (typeof sub !== 'string' || sub !== iss) throw fail('client_assertion "sub" must equal "iss" (the client_id)');
    if (opts.clientIdParam !== undefined && opts.clientIdParam !== iss) throw fail('client_assertion "iss" and "sub" must equal the client_id parameter');
    const clientId = iss;

    // The key: only from the client's registration, chosen by kid (or the only one that fits
    // alg): inline keys first, then the client's registered jwks_uri.
    const registered = (await this.getClientKeys(clientId)) ?? [];
    const uris = this.getClientJwksUris ? await this.getClientJwksUris(clientId) : [];
    if (registered.length === 0 && uris.length === 0) throw fail('unknown client or no registered keys');
    const usable: Array<{ raw: Record<string, unknown>; jwk: JWK }> = [];
    for (const raw of registered as unknown as Array<Record<string, unknown>>) {
      let jwk: JWK;
      try {
        jwk = publicJwkOf(raw);
      } catch {
        continue;
      }
      if (keyFitsAlg(jwk, alg) && keyUsableFor(raw, alg)) usable.push({ raw, jwk });
    }
    const kid = typeof header.kid === 'string' ? header.kid : undefined;
    const inline = kid !== undefined ? usable.filter((k) => k.raw.kid === kid) : usable;
    if (inline.length > 1) {
      throw fail(kid !== undefined ? `no registered key of the client matches "kid" for ${alg}` : 'client_assertion needs a "kid": the client has several keys');
    }
    if (inline.length === 1) {
      let key: KeyObject;
      try {
        key = this.importKey(inline[0]!.jwk, alg);
      } catch {
        throw fail('client_assertion signature does not verify with the client\'s registered key');
      }
      if (!(await verifyCompactAsync(assertion, alg, key))) throw fail('client_assertion signature does not verify with the client\'s registered key');
    } else if (uris.length > 0) {
      await this.verifyWithJwksUri(assertion, uris, kid, alg);
    } else {
      throw fail(kid !== undefined ? `no registered key of the client matches "kid" for ${alg}` : `the client has no registered key for ${alg}`);
    }

    // RFC 7523 §3 item 3: aud names this server.
    const aud = payload.aud;
    const auds = typeof aud === 'string' ? [aud] : Array.isArray(aud) && aud.every((a) => typeof a === 'string') ? (aud as string[]) : undefined;
    if (!auds || auds.length === 0) throw fail('client_assertion "aud" is required');
    if (!auds.some((a) => this.audiences.includes(a))) throw fail('client_assertion "aud" does not name this server (issuer or token endpoint)');

    // RFC 7523 §3 items 4–6: exp (required, short), nbf, iat.
    const now = this.clock.now() / 1000;
    const { exp, nbf, iat, jti } = payload;
    if (typeof exp !== 'number' || !Number.isFinite(exp)) throw fail('client_assertion "exp" is required');
    if (now >= exp + this.skewS) throw fail('client_assertion has expired');
    if (exp - now > this.maxLifetimeS + this.skewS) throw fail(`client_assertion "exp" is too far in the future (at most ${this.maxLifetimeS}s)`);
    if (nbf !== undefined) {
      if (typeof nbf !== 'number' || !Number.isFinite(nbf)) throw fail('client_assertion "nbf" must be a number');
      if (nbf > now + this.skewS) throw fail('client_assertion is not valid yet ("nbf")');
    }
    if (iat !== undefined) {
      if (typeof iat !== 'number' || !Number.isFinite(iat)) throw fail('client_assertion "iat" must be a number');
      if (iat > now + this.skewS) throw fail('client_assertion "iat" is in the future');
    }
    // RFC 7523 §3 item 7: jti, and single use.
    if (typeof jti !== 'string' || jti === '') throw fail('client_assertion "jti" is required');
    if (jti.length > MAX_ID_LENGTH) throw fail(`client_assertion "jti" is longer than ${MAX_ID_LENGTH} characters`);
    const expiresAt = Math.ceil((exp + this.skewS) * 1000);
    if (!(await this.replay.insertOnce('client_assertion', `${clientId}:${jti}`, expiresAt))) {
      throw fail('client_assertion was already used (replayed)');
    }
    return { clientId, jti, expiresAt: Math.ceil(exp * 1000) };
  }

  /**
   * Verifies against the client's `jwks_uri` (fetched through the guarded JwksFetcher: https,
   * size cap, timeout, no redirects; a key the client does not publish never verifies). With
   * several URIs, the first that has a fitting key decides.
   */
  private async verifyWithJwksUri(assertion: string, uris: readonly string[], kid: string | undefined, alg: string): Promise<void> {
    let lastReason = 'no key of the client\'s jwks_uri fits the assertion';
    for (const uri of uris) {
      let key;
      try {
        key = await this.fetcher!.getKey(uri, { kid, alg });
      } catch (err) {
        const reason = (err as { reason?: string }).reason;
        lastReason = reason === 'key_not_found' || reason === 'ambiguous_key' || reason === 'alg_mismatch' || reason === 'key_use'
          ? `no key of the client's jwks_uri matches "kid" for ${alg}`
          : 'the client\'s jwks_uri could not be fetched';
        continue;
      }
      try {
        await compactVerify(assertion, key, { algorithms: [alg] });
        return;
      } catch {
        throw fail('client_assertion signature does not verify with the client\'s registered key');
      }
    }
    throw fail(lastReason);
  }
}
