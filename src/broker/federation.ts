import { createLocalJWKSet, errors as joseErrors, jwtVerify, type JSONWebKeySet, type JWK, type LocalJWKSet } from 'jose';
import { ConfigError, MandateError, OAuthError, oauth } from '../core/errors.js';
import { systemClock, type Clock } from '../core/clock.js';
import type { TrustConfig } from '../core/config/schema.js';
import { credentialActiveAt, type CredentialRecord } from '../inventory/index.js';
import { firstClaimMismatch, matchPattern } from './claims.js';
import { DEFAULT_MAX_JWS_BYTES, JwksFetchError, JwtGuardError, assertJwsShape, type JwksFetcher, type VerificationKey } from '../jose/index.js';

/**
 * Workload identity federation: a machine presents a JWT from an issuer it already has an
 * identity with (its CI system, its cluster, its SPIFFE runtime) and Mandate maps it to one NHI.
 * All supported kinds are plain OIDC-style JWTs, so one code path serves them; what differs is
 * what an operator pins in the trust entry:
 *
 * - GitHub Actions (`kind: github_actions`): iss `https://token.actions.githubusercontent.com`
 *   (or `…/<enterprise>` with a customized issuer), discovery or its jwks_uri, RS256. Pin
 *   `repository_owner` (or better `repository_owner_id`, which survives renames) in `claims`;
 *   `sub` is `repo:<owner>/<repo>:ref:refs/heads/<branch>` / `:environment:<env>` /
 *   `:pull_request`. Set `audience` to Mandate's URL (the workflow asks for it with
 *   `core.getIDToken(aud)`); never accept the default `https://github.com/<owner>` audience.
 *   Tokens live 5 minutes (max_token_age ≥ 5m). run_id/run_attempt become the run id.
 * - GitLab (`kind: gitlab`): iss is the instance URL (`https://gitlab.com`), RS256. Pin
 *   `namespace_path` or `project_path` (or their `_id` forms), and perhaps `ref_protected: true`;
 *   `sub` is `project_path:<group>/<project>:ref_type:branch:ref:<branch>`. The job asks for
 *   Mandate's audience with `id_tokens: { MANDATE_TOKEN: { aud: … } }`. pipeline_id is the run id.
 * - Kubernetes projected service account tokens (`kind: kubernetes`): iss is the cluster's
 *   `--service-account-issuer`; keys from its discovery (or a pinned `jwks`, since many clusters
 *   do not publish them publicly), RS256 or ES256. `sub` is `system:serviceaccount:<ns>:<name>`.
 *   Use a dedicated projected volume with `audience:` Mandate and `expirationSeconds` ≤
 *   max_token_age; the default kube-api-access token has the API server's audience (refused)
 *   and may be extended to a year (refused by max_token_age). Pin e.g. `sub: system:serviceaccount:ci:*`.
 * - SPIFFE JWT-SVIDs (`kind: spiffe`): iss as the SPIRE server's OIDC discovery provider
 *   publishes it, keys from that provider (or the trust bundle as pinned `jwks`), ES256/RS256.
 *   `sub` is the SPIFFE ID `spiffe://<trust-domain>/<path>`; `aud` is required by the JWT-SVID
 *   spec and is always checked here. Pin `sub: spiffe://example.org/*` to the trust domain.
 * - Any other OIDC issuer (`kind: oidc`): same rules; pin at least one claim.
 *
 * The checks follow RFC 8725 (JWT BCP) and RFC 7523 §3: algorithm pinned per entry, `none`
 * refused, keys only from the entry's own key source (never from `jwk`/`jku`/`x5u`/`x5c`),
 * exact `iss`, `aud` containing the entry's audience, `exp` and `iat` required, bounded age
 * and lifetime, and the entry's claim conditions.
 */

export interface VerifiedWorkload {
  /** The trust entry's name. */
  trust: string;
  issuer: string;
  /** The value of the entry's `subject_claim`. */
  subject: string;
  nhiId: string;
  /** The verified claims set. */
  claims: Record<string, unknown>;
  /** `exp`, in ms. */
  expiresAt: number;
  /** `iat`, in ms. */
  issuedAt: number;
  /** A CI run identity when the token carries one (GitHub run_id[-run_attempt], GitLab pipeline_id or job_id). */
  runId: string | null;
  jti: string | null;
}

export interface FederationVerifierOptions {
  trust: readonly TrustConfig[];
  fetcher: JwksFetcher;
  clock?: Clock;
  /** Clock skew tolerated on exp, nbf and iat, in seconds (default 30). */
  skewS?: number;
  /** Largest accepted token, in bytes (default 16 KiB). */
  maxTokenBytes?: number;
  /** Ids of the NHIs whose federated credential (trust name + subject pattern) matches. */
  findNhis: (trust: string, subject: string) => Promise<string[]>;
}

/**
 * A valid token from a trusted issuer whose workload no NHI claims: the broker records a
 * `shadow_agent` event with these fields. The wire description does not echo the subject.
 */
export class ShadowAgentError extends OAuthError {
  readonly trust: string;
  readonly issuer: string;
  readonly subject: string;
  constructor(w: { trust: string; issuer: string; subject: string }) {
    super('invalid_grant', 'no NHI is registered for this workload');
    this.trust = w.trust;
    this.issuer = w.issuer;
    this.subject = w.subject;
  }
}

/** How far a candidate entry got; when every candidate fails, the furthest failure is reported. */
const Stage = { Alg: 1, Key: 2, Token: 3, Conditions: 4 } as const;
type Stage = (typeof Stage)[keyof typeof Stage];

class CandidateError extends MandateError {
  constructor(readonly stage: Stage, readonly oauthError: OAuthError) {
    super('ERR_FEDERATION_CANDIDATE', oauthError.message);
  }
}

interface Verified {
  entry: TrustConfig;
  payload: Record<string, unknown>;
  subject: string;
}

const PUBLIC_MEMBERS: Record<string, readonly string[]> = { RSA: ['n', 'e'], EC: ['crv', 'x', 'y'], OKP: ['crv', 'x'] };
const SELECTION_MEMBERS = ['kid', 'alg', 'use', 'key_ops'] as const;

export class FederationVerifier {
  private readonly trust: readonly TrustConfig[];
  private readonly fetcher: JwksFetcher;
  private readonly clock: Clock;
  private readonly skewS: number;
  private readonly maxTokenBytes: number;
  private readonly findNhis: (trust: string, subject: string) => Promise<string[]>;
  private readonly allAlgorithms: string[];
  /** Resolvers for entries with a pinned `jwks`, by entry name: keys never leave their entry. */
  private readonly pinned = new Map<string, LocalJWKSet>();

  constructor(opts: FederationVerifierOptions) {
    this.trust = opts.trust;
    this.fetcher = opts.fetcher;
    this.clock = opts.clock ?? systemClock;
    this.skewS = opts.skewS ?? 30;
    this.maxTokenBytes = opts.maxTokenBytes ?? DEFAULT_MAX_JWS_BYTES;
    this.findNhis = opts.findNhis;
    this.allAlgorithms = [...new Set(opts.trust.flatMap((t) => t.algorithms))];
    for (const t of opts.trust) {
      if (t.jwks) this.pinned.set(t.name, createLocalJWKSet(pinnedJwks(t)));
    }
  }

  /** Verifies a workload's JWT and maps it to exactly one NHI; every refusal is `invalid_grant`. */
  async verify(jwt: string): Promise<VerifiedWorkload> {
    let header: Record<string, unknown>;
    let unverified: Record<string, unknown>;
    try {
      ({ header, payload: unverified } = assertJwsShape(jwt, { maxBytes: this.maxTokenBytes, algorithms: this.allAlgorithms }));
    } catch (err) {
      if (err instanceof JwtGuardError) throw oauth.invalidGrant(err.message);
      throw err;
    }
    // Routing only: the unverified `iss` chooses the candidate entries, jwtVerify checks it again.
    const iss = unverified.iss;
    if (typeof iss !== 'string' || iss === '') throw oauth.invalidGrant('token has no issuer');
    const candidates = this.trust.filter((t) => t.issuer === iss);
    if (candidates.length === 0) throw oauth.invalidGrant('untrusted issuer');

    const verified: Verified[] = [];
    let furthest: CandidateError | undefined;
    for (const entry of candidates) {
      try {
        verified.push(await this.verifyWith(entry, jwt, header));
      } catch (err) {
        if (!(err instanceof CandidateError)) throw err;
        if (!furthest || err.stage > furthest.stage) furthest = err;
      }
    }
    if (verified.length === 0) throw furthest!.oauthError;

    const matches: Array<{ v: Verified; nhiId: string }> = [];
    for (const v of verified) {
      for (const nhiId of new Set(await this.findNhis(v.entry.name, v.subject))) matches.push({ v, nhiId });
    }
    if (matches.length === 0) {
      const first = verified[0]!;
      throw new ShadowAgentError({ trust: first.entry.name, issuer: iss, subject: first.subject });
    }
    if (matches.length > 1) throw oauth.invalidGrant('the workload maps to more than one NHI (ambiguous)');
    const { v, nhiId } = matches[0]!;
    const p = v.payload;
    return {
      trust: v.entry.name,
      issuer: iss,
      subject: v.subject,
      nhiId,
      claims: p,
      expiresAt: (p.exp as number) * 1000,
      issuedAt: (p.iat as number) * 1000,
      runId: runIdOf(p),
      jti: typeof p.jti === 'string' && p.jti !== '' ? p.jti : null,
    };
  }

  private async verifyWith(entry: TrustConfig, jwt: string, header: Record<string, unknown>): Promise<Verified> {
    const fail = (stage: Stage, description: string) => new CandidateError(stage, oauth.invalidGrant(description));
    const alg = header.alg as string;
    if (!entry.algorithms.includes(alg as never)) throw fail(Stage.Alg, 'token algorithm is not allowed for this issuer');

    // Only `alg` and `kid` select a key, and only from this entry's own key source.
    const kid = typeof header.kid === 'string' ? header.kid : undefined;
    let key: VerificationKey;
    try {
      key = await this.keyFor(entry, alg, kid);
    } catch (err) {
      throw fail(Stage.Key, keyFailure(err, kid !== undefined));
    }

    const now = this.clock.now();
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(jwt, key, {
        algorithms: [...entry.algorithms],
        issuer: entry.issuer,
        audience: entry.audience,
        clockTolerance: this.skewS,
        currentDate: new Date(now),
        maxTokenAge: entry.max_token_age,
        requiredClaims: ['exp', 'iat', entry.subject_claim],
      }));
    } catch (err) {
      throw fail(Stage.Token, joseFailure(err));
    }

    // jose checked: signature, iss, aud, exp, nbf, iat not older than max_token_age. Also bound
    // the lifetime, so that a token minted with exp ten years out is refused even while fresh.
    const nowS = now / 1000;
    const iat = payload.iat as number;
    const exp = payload.exp as number;
    const maxAge = entry.max_token_age;
    if (iat > nowS + this.skewS) throw fail(Stage.Token, 'token issued in the future');
    if (exp - iat > maxAge) throw fail(Stage.Token, 'token lifetime is longer than max_token_age');
    if (exp - nowS > maxAge + this.skewS) throw fail(Stage.Token, 'token expires further out than max_token_age allows');
    const subject = payload[entry.subject_claim];
    if (typeof subject !== 'string' || subject === '') throw fail(Stage.Token, `token claim ${entry.subject_claim} is not a string`);

    const mismatch = firstClaimMismatch(entry.claims, payload);
    if (mismatch !== undefined) throw fail(Stage.Conditions, `claim ${mismatch} does not match`);
    return { entry, payload, subject };
  }

  private async keyFor(entry: TrustConfig, alg: string, kid: string | undefined): Promise<VerificationKey> {
    const pinned = this.pinned.get(entry.name);
    // A header built from nothing but alg and kid: embedded or referenced keys never reach a resolver.
    if (pinned) return pinned({ alg, ...(kid !== undefined ? { kid } : {}) });
    const jwksUri = entry.jwks_uri ?? (entry.discovery ? await this.fetcher.discover(entry.issuer) : undefined);
    if (jwksUri === undefined) throw new JwksFetchError('key_not_found', 'the trust entry has no key source');
    return this.fetcher.getKey(jwksUri, { kid, alg });
  }
}

/**
 * The NHI ids whose federated credential names `trust` and whose subject pattern (exact or
 * anchored glob, see claims.ts) matches `subject`. Credentials whose end has passed are skipped
 * (credentialActiveAt, the one test of a credential's end).
 */
export function matchFederatedNhis(creds: readonly CredentialRecord[], trust: string, subject: string, now: number = Date.now()): string[] {
  const ids = new Set<string>();
  for (const c of creds) {
    if (c.type !== 'federated' || c.trust !== trust || !c.subject) continue;
    if (!credentialActiveAt(c, now)) continue;
    if (matchPattern(c.subject, subject)) ids.add(c.nhiId);
  }
  return [...ids].sort();
}

/**
 * A `findNhis` for FederationVerifier over inventory credential records: either a fixed list or
 * a function that lists them (e.g. `() => store.listCredentials()`), read on every call.
 */
export function nhiMatcher(
  source: readonly CredentialRecord[] | (() => Promise<readonly CredentialRecord[]>),
  clock: Clock = systemClock,
): (trust: string, subject: string) => Promise<string[]> {
  return async (trust, subject) => {
    const creds = typeof source === 'function' ? await source() : source;
    return matchFederatedNhis(creds, trust, subject, clock.now());
  };
}

/** The run identity from well-known CI claims, when well formed. */
export function runIdOf(p: Readonly<Record<string, unknown>>): string | null {
  const id = (v: unknown): string | undefined => {
    if (typeof v !== 'string' && !(typeof v === 'number' && Number.isSafeInteger(v) && v >= 0)) return undefined;
    const s = String(v);
    return /^[A-Za-z0-9._:-]{1,128}$/.test(s) ? s : undefined;
  };
  // GitHub Actions: run_id names the workflow run, run_attempt its re-runs.
  const run = id(p.run_id);
  if (run !== undefined) {
    const attempt = id(p.run_attempt);
    return attempt !== undefined ? `${run}-${attempt}` : run;
  }
  // GitLab CI: the pipeline is the run; a job id alone when there is no pipeline id.
  return id(p.pipeline_id) ?? id(p.job_id) ?? null;
}

/** A pinned JWKS reduced to public signature keys: symmetric keys and private members are dropped. */
function pinnedJwks(t: TrustConfig): JSONWebKeySet {
  const keys: JWK[] = [];
  for (const raw of t.jwks?.keys ?? []) {
    const kty = raw.kty;
    if (typeof kty !== 'string' || !PUBLIC_MEMBERS[kty]) continue; // oct and unknown types never verify
    const k: Record<string, unknown> = { kty };
    for (const m of [...PUBLIC_MEMBERS[kty]!, ...SELECTION_MEMBERS]) if (raw[m] !== undefined) k[m] = raw[m];
    keys.push(k as JWK);
  }
  if (keys.length === 0) throw new ConfigError([`trust "${t.name}": jwks has no public signature keys (symmetric keys are refused)`]);
  return { keys };
}

function keyFailure(err: unknown, hasKid: boolean): string {
  if (err instanceof JwksFetchError) {
    switch (err.reason) {
      case 'key_not_found':
        return hasKid ? 'no key of this issuer has the token kid' : 'no key of this issuer fits the token algorithm';
      case 'ambiguous_key':
        return 'the token has no kid and more than one key of this issuer fits';
      case 'symmetric_key':
        return 'the key for the token kid is symmetric (refused)';
      case 'alg_mismatch':
        return 'the key for the token kid does not fit the token algorithm';
      case 'key_use':
        return 'the key for the token kid is not a signature key';
      case 'unsupported_key':
        return 'the key for the token kid is not supported';
      case 'issuer_mismatch':
        return "the issuer's discovery document names another issuer";
      default:
        return `could not obtain the issuer's keys (${err.reason})`;
    }
  }
  if (err instanceof joseErrors.JWKSNoMatchingKey) return hasKid ? 'no key of this issuer has the token kid' : 'no key of this issuer fits the token algorithm';
  if (err instanceof joseErrors.JWKSMultipleMatchingKeys) return 'more than one key of this issuer fits the token';
  return 'no usable key of this issuer for the token';
}

function joseFailure(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return err.claim === 'iat' ? 'token is older than max_token_age' : 'token expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.reason === 'missing') return `token is missing the ${err.claim} claim`;
    if (err.reason === 'invalid') return `token claim ${err.claim} is not valid`;
    switch (err.claim) {
      case 'aud':
        return 'audience mismatch';
      case 'iss':
        return 'issuer mismatch';
      case 'nbf':
        return 'token is not yet valid (nbf)';
      case 'iat':
        return 'token issued in the future';
      default:
        return `token claim ${err.claim} is not valid`;
    }
  }
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'signature verification failed';
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'token algorithm is not allowed for this issuer';
  if (err instanceof joseErrors.JWTInvalid) return 'token claims are not a valid JWT claims set';
  return 'token could not be verified';
}
