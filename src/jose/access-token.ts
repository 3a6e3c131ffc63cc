import type { KeyObject } from 'node:crypto';
import { OAuthError, ReplicatedMap, type Clock, type SnapshotTicket } from '../core/index.js';
import type { AccessTokenClaims } from './tokens.js';
import { keyFitsAlg, keyUsableFor, publicJwkOf } from './dpop.js';
import { importPublicKey, verifyCompactAsync } from './jws.js';
import { decodeUnverified } from './jwt-guard.js';

/** Where the verification keys come from: the broker's own JWKS (in process) or a fetched one. */
export type JwksSource = () => { keys: Record<string, unknown>[] };

/**
 * A JWKS fetched over HTTP (`proxy.jwks_uri`, JwksFetcher.jwks): the cached document, the same
 * object while unchanged; `refresh` asks for a newer one (rate-limited by the fetcher), `'now'`
 * for one fetched after the call (a key was retired).
 */
export type RemoteJwksSource = (refresh: boolean | 'now') => Promise<{ keys: Record<string, unknown>[] }>;

/** The algorithms Mandate signs access tokens with (keys.algorithm). */
const ALGORITHMS: readonly string[] = ['ES256', 'EdDSA'];
const REQUIRED_CLAIMS = ['exp', 'iat', 'jti', 'sub', 'aud'] as const;

interface VerifyKey {
  kid: string | undefined;
  raw: Record<string, unknown>;
  jwk: ReturnType<typeof publicJwkOf>;
  /** Imported lazily, per algorithm. */
  imported: Map<string, KeyObject>;
}

interface Verified {
  payload: Record<string, unknown>;
  typ: unknown;
  /** The kid of the key in the key set that verified it (a key retired at once refuses it). */
  kid: string | undefined;
}

const invalidToken = (why = 'token is not a valid Mandate access token') => new OAuthError('invalid_token', why, 401);

/**
 * Verifies Mandate's own access tokens (RFC 9068 §4): signature against the broker's JWKS
 * only, `typ` = `at+jwt`, algorithms pinned to what Mandate signs with, `iss` exact, `exp`
 * with a small skew. The tool proxy calls this on every tool call, so:
 *
 * - signatures are checked with node:crypto KeyObjects imported once per JWKS version (see
 *   jws.ts), not through WebCrypto;
 * - a token whose signature verified is remembered (by its exact text, bounded) so that the
 *   next call with it skips the signature; the claims (`iss`, `typ`, `exp`, `nbf`, `aud`) are
 *   checked again on every call, and the memory is dropped whenever the JWKS changes (a key
 *   that left it verifies nothing any more).
 *
 * The checks and their errors are those of jose's `jwtVerify` with the same options (the
 * earlier implementation): `invalid_token` with "token expired", "token <claim> is not valid
 * here" or a generic description.
 *
 * Both memories follow the replicated-view rule (core/replicated-view.ts). The key set is a
 * snapshot of the JWKS (taken before the source is read) against which a key retired at once
 * (`retireKey`, from the bus or a reload of the revocations) is a tombstoned removal: a JWKS read
 * before the retirement does not bring the key back. The verified tokens are a cache whose
 * entries are verifications started before they are kept: a key-set change drops them all and
 * keeps none that was in flight across it. And a token whose kid was retired at once is refused
 * on every call, cached or not, whatever the JWKS says (`retiredKey`, the revocation state).
 */
export class AccessTokenVerifier {
  private keysFor: string | undefined;
  private keysObject: unknown;
  private readonly keys = new ReplicatedMap<string, VerifyKey>({ version: () => 0 });
  private readonly verified = new ReplicatedMap<string, Verified>({ version: () => 0, mode: 'cache' });
  private readonly cacheSize: number;

  constructor(
    private readonly opts: {
      issuer: () => string;
      /** The keys in process (the broker's KeyManager), or `remoteJwks`. */
      jwks?: JwksSource;
      /** The keys from a JWKS URL (a proxy-only instance without the KEK). */
      remoteJwks?: RemoteJwksSource;
      /** Whether a key was retired at once (RevocationState.keyRetired): its tokens are refused. */
      retiredKey?: (kid: string) => boolean;
      clock: Clock;
      skewS?: number;
      maxBytes?: number;
      cacheSize?: number;
    },
  ) {
    this.cacheSize = opts.cacheSize ?? 10_000;
    if ((opts.jwks === undefined) === (opts.remoteJwks === undefined)) throw new TypeError('AccessTokenVerifier: give exactly one of jwks and remoteJwks');
  }

  async verify(token: string, expectedAudience?: string): Promise<AccessTokenClaims> {
    if (typeof token !== 'string' || token.length > (this.opts.maxBytes ?? 8192)) throw new OAuthError('invalid_token', 'token too large', 401);
    if (this.opts.jwks) {
      this.useKeys(this.opts.jwks());
    } else {
      const ticket = this.keys.begin();
      this.useKeys(await this.remote(false, ticket), ticket);
    }
    let v = this.verified.get(token);
    if (!v) {
      const ticket = this.verified.begin();
      try {
        v = await this.verifySignature(token);
      } catch (err) {
        this.verified.abandon(ticket);
        throw err;
      }
      // Not kept when the key set changed while it verified.
      if (this.verified.installOne(ticket, token, v) && this.verified.size > this.cacheSize) this.verified.forget(this.verified.keys().next().value!);
    }
    if (v.kid !== undefined && this.isRetired(v.kid)) throw invalidToken('the key that signed the token was retired');
    return this.checkClaims(v, expectedAudience);
  }

  /**
   * A signing key was retired at once: its tokens are refused from now on, every verified token
   * is verified again, and a fetched JWKS is fetched again (after this call, not joined to a fetch
   * already under way). Resolves when that fetch has been used (or failed: the kid stays refused).
   */
  async retireKey(kid: string): Promise<void> {
    this.keys.remove(kid);
    this.verified.removeAll();
    if (!this.opts.remoteJwks) return;
    const ticket = this.keys.begin();
    try {
      this.useKeys(await this.remote('now', ticket), ticket);
    } catch {
      // Unavailable now: the next call fetches again; the kid stays refused meanwhile.
    }
  }

  private isRetired(kid: string): boolean {
    return this.keys.removed(kid) || (this.opts.retiredKey?.(kid) ?? false);
  }

  /** The fetched JWKS; a fetch that fails (and no fresh copy) refuses the call as unavailable, never as verified. */
  private async remote(refresh: boolean | 'now', ticket?: SnapshotTicket): Promise<{ keys: Record<string, unknown>[] }> {
    try {
      return await this.opts.remoteJwks!(refresh);
    } catch {
      if (ticket) this.keys.abandon(ticket);
      throw new OAuthError('temporarily_unavailable', 'the issuer\'s signing keys cannot be fetched: the token cannot be verified now', 503);
    }
  }

  /**
   * Installs a JWKS as the key set: a complete snapshot read after `ticket` was taken (for the
   * in-process source, read just now, in this same synchronous step). The first caller to see a
   * fetched document installs it with the ticket it took before asking for it: the fetch that
   * produced it started after that (the fetcher shares one fetch in flight, in call order).
   */
  private useKeys(jwks: { keys: Record<string, unknown>[] }, ticket?: SnapshotTicket): void {
    // A source that returns the same object for an unchanged set (KeyManager.jwks(), the
    // fetcher's cache) costs one comparison per call.
    if (jwks === this.keysObject) {
      if (ticket) this.keys.abandon(ticket);
      return;
    }
    const t = ticket ?? this.keys.begin();
    this.keysObject = jwks;
    const fingerprint = jwks.keys.map((k) => `${String(k.kid)}:${String(k.x)}`).join(',');
    if (fingerprint === this.keysFor) {
      this.keys.abandon(t);
      return;
    }
    const entries: Array<[string, VerifyKey]> = [];
    jwks.keys.forEach((raw, i) => {
      try {
        const kid = typeof raw.kid === 'string' ? raw.kid : undefined;
        entries.push([kid ?? `\u0000${i}`, { kid, raw, jwk: publicJwkOf(raw), imported: new Map() }]);
      } catch {
        // Not a public key Mandate signs with: it verifies nothing.
      }
    });
    if (!this.keys.install(t, entries)) return;
    this.keysFor = fingerprint;
    // Tokens verified with the previous key set must be verified again.
    this.verified.removeAll();
  }

  private async verifySignature(token: string): Promise<Verified> {
    // RFC 7515 §7.1 through the RFC 8725 guard (jwt-guard.ts), as every other JWS Mandate reads:
    // three canonical base64url parts, a header and a payload that are strict UTF-8 JSON objects
    // without duplicate member names (RFC 7515 §5.2), so there is one reading of what was signed.
    let header: Record<string, unknown>;
    let payload: Record<string, unknown>;
    try {
      ({ header, payload } = decodeUnverified(token, this.opts.maxBytes ?? 8192));
    } catch {
      throw invalidToken();
    }
    if (token.endsWith('.')) throw invalidToken();
    const alg = header.alg;
    // RFC 8725 §3.1: only the algorithms Mandate signs with; RFC 7515 §4.1.11: no extensions.
    if (typeof alg !== 'string' || !ALGORITHMS.includes(alg)) throw invalidToken();
    if (header.crit !== undefined) throw invalidToken();
    const kid = header.kid;
    if (kid !== undefined && typeof kid !== 'string') throw invalidToken();
    // The key from our JWKS only (never from the token): by kid, fitting alg, `use`/`alg` honoured.
    const fits = () => [...this.keys.values()].filter((k) => (kid === undefined || k.kid === kid) && keyFitsAlg(k.jwk, alg) && keyUsableFor(k.raw, alg));
    let fit = fits();
    if (fit.length === 0 && this.opts.remoteJwks) {
      // A fetched JWKS may predate a new key: fetch again (at most once per the fetcher's cooldown).
      const ticket = this.keys.begin();
      this.useKeys(await this.remote(true, ticket), ticket);
      fit = fits();
    }
    if (fit.length !== 1) throw invalidToken();
    const k = fit[0]!;
    let key = k.imported.get(alg);
    if (!key) {
      try {
        key = importPublicKey(k.jwk, alg);
      } catch {
        throw invalidToken();
      }
      k.imported.set(alg, key);
    }
    if (!(await verifyCompactAsync(token, alg, key))) throw invalidToken();
    // The kid of the key that verified it, not the header's: a token signed without a kid by a
    // retired key is refused as that key's.
    return { payload, typ: header.typ, kid: k.kid };
  }

  /** RFC 7519 §7.2 item 10 and RFC 9068 §4, as jose's validateClaimsSet with the earlier options. */
  private checkClaims(v: Verified, expectedAudience: string | undefined): AccessTokenClaims {
    const p = v.payload;
    // RFC 9068 §4: typ at+jwt (media type comparison: case-insensitive, application/ optional).
    if (typeof v.typ !== 'string' || normalizeTyp(v.typ) !== 'at+jwt') throw claim('typ');
    for (const c of REQUIRED_CLAIMS) if (p[c] === undefined) throw claim(c);
    if (p.iss === undefined) throw claim('iss');
    if (p.iss !== this.opts.issuer()) throw claim('iss');
    if (expectedAudience !== undefined && !audienceIncludes(p.aud, expectedAudience)) throw claim('aud');
    const skew = this.opts.skewS ?? 5;
    const now = Math.floor(this.opts.clock.now() / 1000);
    if (typeof p.iat !== 'number') throw claim('iat');
    if (p.nbf !== undefined) {
      if (typeof p.nbf !== 'number' || p.nbf > now + skew) throw claim('nbf');
    }
    if (typeof p.exp !== 'number') throw claim('exp');
    if (p.exp <= now - skew) throw new OAuthError('invalid_token', 'token expired', 401);
    // A fresh object each time: callers may keep or change what they get.
    return { ...p } as unknown as AccessTokenClaims;
  }
}

const claim = (name: string) => new OAuthError('invalid_token', `token ${name} is not valid here`, 401);

function normalizeTyp(typ: string): string {
  const t = typ.toLowerCase();
  return t.startsWith('application/') ? t.slice('application/'.length) : t;
}

function audienceIncludes(aud: unknown, expected: string): boolean {
  if (typeof aud === 'string') return aud === expected;
  return Array.isArray(aud) && aud.includes(expected);
}
