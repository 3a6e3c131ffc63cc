import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { CompactSign, exportJWK, exportSPKI, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { ManualClock } from '../../src/core/clock.js';
import { OAuthError } from '../../src/core/errors.js';
import { trustSchema, type TrustConfig } from '../../src/core/config/schema.js';
import type { CredentialRecord } from '../../src/inventory/ports.js';
import { JwksFetcher } from '../../src/jose/jwks-fetcher.js';
import { OutboundGuard } from '../../src/core/outbound.js';
import { devOutbound } from '../helpers/outbound.js';
import { FederationVerifier, ShadowAgentError, matchFederatedNhis, nhiMatcher, runIdOf } from '../../src/broker/federation.js';
import { matchPattern, claimsMatch } from '../../src/broker/claims.js';
import { assertJwsShape, decodeUnverified, JwtGuardError, type JwtGuardReason } from '../../src/jose/jwt-guard.js';
import { startIssuer, startServer, type TestIssuer, type TestServer } from '../helpers/issuer.js';

const AUD = 'https://mandate.test';
const SUBJECT = 'repo:acme/deploy:ref:refs/heads/main';
const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

function cred(nhiId: string, trust: string, subject: string): CredentialRecord {
  return {
    id: `${nhiId}:${trust}:${subject}`, nhiId, type: 'federated', trust, subject, data: {}, exceptionTicket: null,
    exceptionExpiresAt: null, source: 'config', createdAt: 0, expiresAt: null, lastRotatedAt: null,
  };
}

/** Asserts an OAuth invalid_grant whose description matches, and that it does not echo the token. */
async function refused(p: Promise<unknown>, description: RegExp, token?: string): Promise<OAuthError> {
  let caught: unknown;
  await p.then(
    () => assert.fail(`expected invalid_grant matching ${description}`),
    (err: unknown) => {
      caught = err;
    },
  );
  assert.ok(caught instanceof OAuthError, `expected OAuthError, got ${String(caught)}`);
  assert.equal(caught.error, 'invalid_grant');
  assert.equal(caught.status, 400);
  assert.deepEqual(caught.extra, {});
  assert.match(caught.message, description);
  if (token) assert.ok(!caught.message.includes(token.split('.')[1]!), 'the description does not echo the token');
  return caught;
}

describe('workload federation', () => {
  let gh: TestIssuer; // GitHub-like, by jwks_uri
  let other: TestIssuer; // another trusted issuer (GitLab-like, by discovery)
  let attacker: TestServer;
  let attackerKey: { privateKey: CryptoKey; publicJwk: JWK };
  let clock: ManualClock;
  let nowS: number;
  let fetcher: JwksFetcher;
  let trust: TrustConfig[];
  let creds: CredentialRecord[];
  let v: FederationVerifier;

  const ghEntry = () =>
    trustSchema.parse({
      name: 'github-actions', kind: 'github_actions', issuer: gh.url, jwks_uri: gh.jwksUri, algorithms: ['RS256'], audience: AUD,
      claims: { repository_owner: 'acme', repository: 'acme/*' }, max_token_age: '10m',
    });
  const ghClaims = (extra: Record<string, unknown> = {}) => ({
    sub: SUBJECT, aud: AUD, repository_owner: 'acme', repository: 'acme/deploy', ref: 'refs/heads/main',
    run_id: '9876543210', run_attempt: '2', jti: 'jti-1', ...extra,
  });
  const ghToken = (extra: Record<string, unknown> = {}, opts: Parameters<TestIssuer['sign']>[1] = {}) => gh.sign(ghClaims(extra), { now: nowS, ...opts });

  const make = (t: TrustConfig[], c: CredentialRecord[], f: JwksFetcher = fetcher) =>
    new FederationVerifier({ trust: t, fetcher: f, clock, findNhis: nhiMatcher(c, clock) });

  before(async () => {
    gh = await startIssuer();
    other = await startIssuer();
    attacker = await startServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [attackerKey.publicJwk] }));
    });
    const kp = await generateKeyPair('RS256', { extractable: true });
    attackerKey = { privateKey: kp.privateKey, publicJwk: { ...(await exportJWK(kp.publicKey)), kid: 'attacker-1', alg: 'RS256', use: 'sig' } };
    clock = new ManualClock(Date.now());
    nowS = Math.floor(clock.now() / 1000);
    fetcher = new JwksFetcher({ outbound: devOutbound(), clock });
    trust = [
      ghEntry(),
      trustSchema.parse({
        name: 'gitlab', kind: 'gitlab', issuer: other.url, discovery: true, algorithms: ['RS256', 'ES256'], audience: AUD,
        claims: { namespace_path: 'acme' }, max_token_age: '10m',
      }),
    ];
    creds = [
      cred('deploy-agent', 'github-actions', SUBJECT),
      cred('release-bot', 'github-actions', 'repo:acme/release:*'),
      cred('shared-a', 'github-actions', 'repo:acme/shared:*'),
      cred('shared-b', 'github-actions', 'repo:acme/shared:ref:refs/heads/main'),
      cred('gitlab-runner', 'gitlab', 'project_path:acme/app:*'),
    ];
    v = make(trust, creds);
  });
  after(async () => {
    await gh.close();
    await other.close();
    await attacker.close();
  });

  it('a valid GitHub Actions token maps to its NHI', async () => {
    const jwt = await ghToken();
    const w = await v.verify(jwt);
    assert.equal(w.trust, 'github-actions');
    assert.equal(w.issuer, gh.url);
    assert.equal(w.subject, SUBJECT);
    assert.equal(w.nhiId, 'deploy-agent');
    assert.equal(w.issuedAt, nowS * 1000);
    assert.equal(w.expiresAt, (nowS + 300) * 1000);
    assert.equal(w.runId, '9876543210-2');
    assert.equal(w.jti, 'jti-1');
    assert.equal(w.claims.repository, 'acme/deploy');
  });

  it('a glob subject pattern maps (repo:acme/release:*)', async () => {
    const w = await v.verify(await ghToken({ sub: 'repo:acme/release:environment:prod', repository: 'acme/release' }));
    assert.equal(w.nhiId, 'release-bot');
  });

  it('RFC 7519 §4.1.4: an expired token is refused', async () => {
    const jwt = await ghToken({ iat: nowS - 400, exp: nowS - 60 });
    await refused(v.verify(jwt), /^token expired$/, jwt);
    // Within the skew (30 s) it is still accepted.
    await v.verify(await ghToken({ iat: nowS - 400, exp: nowS - 20 }));
  });

  it('RFC 7519 §4.1.6: iat in the future (beyond the skew) is refused', async () => {
    await refused(v.verify(await ghToken({ iat: nowS + 120, exp: nowS + 400 })), /issued in the future/);
    await v.verify(await ghToken({ iat: nowS + 20, exp: nowS + 320 }));
  });

  it('RFC 7519 §4.1.5: nbf in the future is refused', async () => {
    await refused(v.verify(await ghToken({ nbf: nowS + 120 })), /not yet valid/);
  });

  it('max_token_age (lifetime bound): a token with exp ten years out is refused', async () => {
    await refused(v.verify(await ghToken({ exp: nowS + 10 * 365 * 86400 })), /lifetime is longer than max_token_age/);
    await refused(v.verify(await ghToken({ iat: nowS - 500, exp: nowS + 200 })), /lifetime is longer than max_token_age/);
  });

  it('max_token_age: a token issued longer ago than max_token_age is refused', async () => {
    await refused(v.verify(await ghToken({ iat: nowS - 700, exp: nowS - 100 + 200 })), /older than max_token_age/);
  });

  it('RFC 7519 §4.1: exp and iat are required', async () => {
    await refused(v.verify(await ghToken({ exp: undefined })), /missing the exp claim/);
    await refused(v.verify(await ghToken({ iat: undefined })), /missing the iat claim/);
    await refused(v.verify(await ghToken({ sub: undefined })), /missing the sub claim/);
    await refused(v.verify(await ghToken({ exp: String(nowS + 60) })), /claim exp is not valid/);
  });

  it('RFC 7519 §4.1.3: wrong aud is refused (string and array forms); an array containing it is accepted', async () => {
    await refused(v.verify(await ghToken({ aud: 'https://github.com/acme' })), /^audience mismatch$/);
    await refused(v.verify(await ghToken({ aud: ['https://github.com/acme', 'https://other.test'] })), /^audience mismatch$/);
    await refused(v.verify(await ghToken({ aud: undefined })), /missing the aud claim/);
    const w = await v.verify(await ghToken({ aud: ['https://github.com/acme', AUD] }));
    assert.equal(w.nhiId, 'deploy-agent');
  });

  it('RFC 7519 §4.1.1: an untrusted or missing iss is refused', async () => {
    await refused(v.verify(await ghToken({ iss: 'https://token.actions.githubusercontent.com.evil.example' })), /^untrusted issuer$/);
    await refused(v.verify(await ghToken({ iss: `${gh.url}/` })), /^untrusted issuer$/);
    await refused(v.verify(await ghToken({ iss: undefined })), /^token has no issuer$/);
    await refused(v.verify(await ghToken({ iss: 42 })), /^token has no issuer$/);
  });

  for (const alg of ['none', 'NONE', 'nOnE', 'None']) {
    it(`RFC 8725 §3.1: alg ${alg} is refused in any case`, async () => {
      const before = gh.jwksFetches;
      const payload = b64({ iss: gh.url, ...ghClaims(), iat: nowS, exp: nowS + 300 });
      for (const sig of ['', 'c2lnbmF0dXJl']) {
        await refused(v.verify(`${b64({ alg, typ: 'JWT' })}.${payload}.${sig}`), /alg "none"/);
      }
      assert.equal(gh.jwksFetches, before, 'no key was fetched');
    });
  }

  it('RFC 8725 §2.1/§3.1: HS256 keyed with the RSA public key (PEM or JWK as the secret) is refused', async () => {
    const pub = gh.keys.RS256;
    const secrets = [
      new TextEncoder().encode(await exportSPKI(pub.publicKey)),
      new TextEncoder().encode(JSON.stringify(pub.publicJwk)),
      Buffer.from(pub.publicJwk.n!, 'base64url'),
    ];
    const payload = new TextEncoder().encode(JSON.stringify({ iss: gh.url, ...ghClaims(), iat: nowS, exp: nowS + 300 }));
    for (const secret of secrets) {
      const jwt = await new CompactSign(payload).setProtectedHeader({ alg: 'HS256', typ: 'JWT', kid: pub.kid }).sign(secret);
      await refused(v.verify(jwt), /algorithm is not one of the accepted algorithms/, jwt);
    }
  });

  it('RFC 8725 §3.1: an algorithm the trust entry does not pin is refused (ES256 for an RS256-only entry)', async () => {
    await refused(v.verify(await ghToken({}, { alg: 'ES256' })), /algorithm is not allowed for this issuer/);
  });

  it("RFC 8725 §3.8: a kid present only in ANOTHER trusted issuer's JWKS is refused", async () => {
    // Warm the other issuer's keys into the fetcher's cache first.
    await assert.rejects(v.verify(await other.sign({ sub: 'project_path:acme/app:ref_type:branch:ref:main', aud: AUD, namespace_path: 'x' }, { now: nowS })));
    const k = other.keys.RS256;
    const jwt = await gh.sign(ghClaims(), { now: nowS, kid: k.kid, key: k.privateKey });
    await refused(v.verify(jwt), /no key of this issuer has the token kid/, jwt);
  });

  it('RFC 8725 §3.10 / RFC 7515 §4.1.2, §4.1.5, §4.1.6: jku, x5u and x5c are never fetched nor used', async () => {
    const header = { jku: `${attacker.url}/jwks`, x5u: `${attacker.url}/cert.pem`, x5c: ['MIIB'] };
    // The attacker's kid, which the trusted JWKS lacks…
    const a = await ghToken({}, { kid: 'attacker-1', key: attackerKey.privateKey, header });
    await refused(v.verify(a), /no key of this issuer has the token kid/);
    // …and the trusted kid, with the attacker's signature.
    const b = await ghToken({}, { key: attackerKey.privateKey, header });
    await refused(v.verify(b), /^signature verification failed$/);
    assert.equal(attacker.hits.length, 0, 'the attacker server was never contacted');
  });

  it('RFC 7515 §4.1.3: an embedded jwk header with an attacker key is refused', async () => {
    const header = { jwk: attackerKey.publicJwk };
    await refused(v.verify(await ghToken({}, { kid: null, key: attackerKey.privateKey, header })), /^signature verification failed$/);
    await refused(v.verify(await ghToken({}, { key: attackerKey.privateKey, header })), /^signature verification failed$/);
    await refused(v.verify(await ghToken({}, { kid: 'attacker-1', key: attackerKey.privateKey, header })), /no key of this issuer has the token kid/);
  });

  it('a 64 KiB token is refused before any parsing', async () => {
    const before = gh.jwksFetches;
    // Not even base64url: parsing would fail differently.
    await refused(v.verify(`${'!'.repeat(64 * 1024)}.x.y`), /larger than 16384 bytes/);
    const padded = await ghToken({ pad: 'x'.repeat(64 * 1024) });
    await refused(v.verify(padded), /larger than 16384 bytes/);
    assert.equal(gh.jwksFetches, before);
  });

  it('RFC 7515 §4 / RFC 7519 §4: duplicate JSON member names are refused (payload and header)', async () => {
    const dupPayload = `{"iss":"${gh.url}","sub":"repo:acme/other:ref:refs/heads/main","sub":"${SUBJECT}","aud":"${AUD}","iat":${nowS},"exp":${nowS + 300},"repository_owner":"acme","repository":"acme/deploy"}`;
    await refused(v.verify(await gh.signRaw(dupPayload, { now: nowS })), /payload has duplicate member names/);
    const good = await ghToken();
    const [, p, s] = good.split('.');
    const dupHeader = `{"alg":"RS256","kid":"${gh.keys.RS256.kid}","alg":"RS256"}`;
    await refused(v.verify(`${b64(dupHeader)}.${p}.${s}`), /header has duplicate member names/);
  });

  it('claim conditions: exact and glob must match (repository_owner, repository)', async () => {
    await refused(v.verify(await ghToken({ repository_owner: 'acme-evil' })), /^claim repository_owner does not match$/);
    await refused(v.verify(await ghToken({ repository: 'acmecorp/deploy' })), /^claim repository does not match$/);
    await refused(v.verify(await ghToken({ repository: ['acme/deploy'] })), /^claim repository does not match$/);
    await refused(v.verify(await ghToken({ repository_owner: { name: 'acme' } })), /^claim repository_owner does not match$/);
    await refused(v.verify(await ghToken({ repository: undefined })), /^claim repository does not match$/);
  });

  it('claim conditions: `*` does not match a missing claim, but does match an empty one', async () => {
    const entry = { ...ghEntry(), claims: { repository_owner: 'acme', environment: '*' } };
    const ve = make([entry], creds);
    await refused(ve.verify(await ghToken()), /^claim environment does not match$/);
    assert.equal((await ve.verify(await ghToken({ environment: '' }))).nhiId, 'deploy-agent');
    assert.equal((await ve.verify(await ghToken({ environment: 'production' }))).nhiId, 'deploy-agent');
  });

  it('two trust entries for one issuer: the entry whose conditions hold is used', async () => {
    const a = { ...ghEntry(), name: 'gh-a', claims: { repository_owner: 'other-org' } };
    const b = { ...ghEntry(), name: 'gh-b', claims: { repository_owner: 'acme' } };
    const ve = make([a, b], [cred('deploy-b', 'gh-b', SUBJECT)]);
    const w = await ve.verify(await ghToken());
    assert.equal(w.trust, 'gh-b');
    assert.equal(w.nhiId, 'deploy-b');
    // When none holds, the furthest failure is reported.
    await refused(ve.verify(await ghToken({ repository_owner: 'nobody' })), /^claim repository_owner does not match$/);
  });

  it('shadow agent: a valid token with no NHI raises ShadowAgentError with the subject', async () => {
    const sub = 'repo:acme/unregistered:ref:refs/heads/main';
    const err = await refused(v.verify(await ghToken({ sub, repository: 'acme/unregistered' })), /no NHI is registered/);
    assert.ok(err instanceof ShadowAgentError);
    assert.equal(err.subject, sub);
    assert.equal(err.trust, 'github-actions');
    assert.equal(err.issuer, gh.url);
    assert.ok(!err.message.includes(sub), 'the wire description does not echo the subject');
  });

  it('a subject that maps to more than one NHI is refused (ambiguous)', async () => {
    const err = await refused(v.verify(await ghToken({ sub: 'repo:acme/shared:ref:refs/heads/main', repository: 'acme/shared' })), /ambiguous/);
    assert.ok(!(err instanceof ShadowAgentError));
  });

  it('a pinned jwks entry (Kubernetes) verifies with no network', async () => {
    const k8sIssuer = 'https://kubernetes.default.svc.cluster.local';
    const entry = trustSchema.parse({
      name: 'k8s', kind: 'kubernetes', issuer: k8sIssuer, jwks: gh.jwks(), algorithms: ['RS256', 'ES256'], audience: 'mandate',
      claims: { sub: 'system:serviceaccount:ci:*' }, max_token_age: '1h',
    });
    const offline = new JwksFetcher({ outbound: new OutboundGuard(), clock });
    const ve = make([entry], [cred('ci-builder', 'k8s', 'system:serviceaccount:ci:builder')], offline);
    const before = gh.jwksFetches;
    const claims = { iss: k8sIssuer, sub: 'system:serviceaccount:ci:builder', aud: ['mandate'], 'kubernetes.io': { namespace: 'ci' }, iat: nowS, exp: nowS + 3600 };
    const w = await ve.verify(await gh.sign(claims, { alg: 'ES256', now: nowS }));
    assert.equal(w.nhiId, 'ci-builder');
    assert.equal(w.runId, null);
    assert.equal(gh.jwksFetches, before, 'no network');
    // The SA pattern is anchored: another namespace does not match.
    await refused(ve.verify(await gh.sign({ ...claims, sub: 'system:serviceaccount:prod:builder' }, { now: nowS })), /^claim sub does not match$/);
    // A kid that is not in the pinned set is refused.
    const k = other.keys.RS256;
    await refused(ve.verify(await gh.sign(claims, { kid: k.kid, key: k.privateKey, now: nowS })), /no key of this issuer has the token kid/);
  });

  it('a pinned jwks drops symmetric keys; one with nothing else is refused at construction', () => {
    const base = { name: 'p', issuer: 'https://p.example', algorithms: ['RS256'], audience: AUD, claims: { sub: '*' } };
    assert.throws(() => make([trustSchema.parse({ ...base, jwks: { keys: [{ kty: 'oct', k: 'c2VjcmV0' }] } })], []), /no public signature keys/);
    assert.ok(make([trustSchema.parse({ ...base, jwks: { keys: [{ kty: 'oct', k: 'c2VjcmV0' }, gh.keys.RS256.publicJwk] } })], []));
  });

  it('a SPIFFE JWT-SVID (pinned bundle, aud required) verifies', async () => {
    const td = 'https://spire.example.org';
    const entry = trustSchema.parse({
      name: 'spire', kind: 'spiffe', issuer: td, jwks: { keys: [other.keys.ES256.publicJwk] }, algorithms: ['ES256'], audience: 'mandate',
      claims: { sub: 'spiffe://example.org/*' }, max_token_age: '5m',
    });
    const ve = make([entry], [cred('payments', 'spire', 'spiffe://example.org/ns/prod/sa/payments')]);
    const claims = { iss: td, sub: 'spiffe://example.org/ns/prod/sa/payments', aud: ['mandate'], iat: nowS, exp: nowS + 300 };
    assert.equal((await ve.verify(await other.sign(claims, { alg: 'ES256', now: nowS }))).nhiId, 'payments');
    await refused(ve.verify(await other.sign({ ...claims, aud: undefined }, { alg: 'ES256', now: nowS })), /missing the aud claim/);
    await refused(ve.verify(await other.sign({ ...claims, sub: 'spiffe://evil.org/ns/prod/sa/payments' }, { alg: 'ES256', now: nowS })), /^claim sub does not match$/);
  });

  it('OpenID Discovery: an entry with discovery: true (GitLab) verifies, and the run id is the pipeline', async () => {
    const before = other.discoveryFetches;
    const sub = 'project_path:acme/app:ref_type:branch:ref:main';
    const claims = { sub, aud: AUD, namespace_path: 'acme', project_path: 'acme/app', pipeline_id: '4242', job_id: '77' };
    const w = await v.verify(await other.sign(claims, { alg: 'ES256', now: nowS }));
    assert.equal(w.trust, 'gitlab');
    assert.equal(w.nhiId, 'gitlab-runner');
    assert.equal(w.runId, '4242');
    await v.verify(await other.sign(claims, { now: nowS }));
    assert.ok(other.discoveryFetches - before <= 1, 'the discovery document is cached');
  });

  it('OpenID Discovery §4.3: a discovery document naming another issuer makes its tokens fail', async () => {
    const o = await startIssuer();
    o.discoveryOverride = { issuer: 'https://evil.example' };
    try {
      const entry = trustSchema.parse({ name: 'o', issuer: o.url, discovery: true, algorithms: ['RS256'], audience: AUD, claims: { sub: '*' } });
      const ve = make([entry], [cred('x', 'o', '*')]);
      await refused(ve.verify(await o.sign({ sub: 'a', aud: AUD })), /discovery document names another issuer/);
      assert.equal(o.jwksFetches, 0);
    } finally {
      await o.close();
    }
  });
});

describe('claim patterns (claims.ts)', () => {
  it('exact values compare exactly', () => {
    assert.ok(matchPattern('acme', 'acme'));
    assert.ok(!matchPattern('acme', 'acme '));
    assert.ok(!matchPattern('acme', 'xacme'));
    assert.ok(!matchPattern('acme', 'ACME'));
  });

  it('`*` matches any run (including none), anchored at both ends', () => {
    assert.ok(matchPattern('repo:acme/*', 'repo:acme/deploy:ref:refs/heads/main'));
    assert.ok(matchPattern('repo:acme/*', 'repo:acme/'));
    assert.ok(!matchPattern('repo:acme/*', 'xrepo:acme/deploy'));
    assert.ok(matchPattern('repo:acme/*:ref:refs/heads/main', 'repo:acme/x:ref:refs/heads/main'));
    assert.ok(!matchPattern('repo:acme/*:ref:refs/heads/main', 'repo:acme/x:ref:refs/heads/main2'));
    assert.ok(matchPattern('*', ''));
    assert.ok(matchPattern('a*b*c', 'abc'));
    assert.ok(matchPattern('a*b*c', 'aXXbYYbc'));
    assert.ok(!matchPattern('a*b*c', 'aXXbYYbcd'));
    assert.ok(matchPattern('**', 'anything'));
  });

  it('regex special characters are literal', () => {
    assert.ok(matchPattern('refs/heads/release.*', 'refs/heads/release.1'));
    assert.ok(!matchPattern('refs/heads/release.*', 'refs/heads/releaseX1'));
    assert.ok(!matchPattern('a+b', 'aab'));
    assert.ok(matchPattern('a+b', 'a+b'));
    assert.ok(!matchPattern('(x|y)*', 'x'));
    assert.ok(matchPattern('[abc]?^$\\*', '[abc]?^$\\ anything'));
    assert.ok(!matchPattern('.*', 'anything'));
  });

  it('no catastrophic backtracking on many stars', () => {
    const t0 = Date.now();
    assert.ok(!matchPattern('*a*a*a*a*a*a*a*a*a*a*b', 'a'.repeat(16 * 1024)));
    assert.ok(Date.now() - t0 < 2000);
  });

  it('claimsMatch: strings, numbers and booleans stringified; arrays, objects, null and missing never match', () => {
    assert.ok(claimsMatch({ run_attempt: '2', ref_protected: 'true', owner: 'acme' }, { run_attempt: 2, ref_protected: true, owner: 'acme' }));
    assert.ok(!claimsMatch({ owner: 'acme' }, { owner: ['acme'] }));
    assert.ok(!claimsMatch({ owner: '*' }, { owner: { a: 1 } }));
    assert.ok(!claimsMatch({ owner: '*' }, { owner: null }));
    assert.ok(!claimsMatch({ owner: '*' }, {}));
    assert.ok(!claimsMatch({ constructor: '*' }, {}), 'inherited properties are not claims');
    assert.ok(claimsMatch({}, {}));
  });
});

describe('JWS guard (jwt-guard.ts)', () => {
  const tok = (header: unknown, payload: unknown = { iss: 'x' }, sig = 'c2ln') => `${b64(header)}.${b64(payload)}.${sig}`;
  const reason = (fn: () => unknown, r: JwtGuardReason) =>
    assert.throws(fn, (err: unknown) => err instanceof JwtGuardError && err.reason === r);
  const opts = { algorithms: ['RS256', 'ES256'] };

  it('RFC 7515 §7.1: exactly three base64url parts, no padding, JSON objects', () => {
    reason(() => assertJwsShape('a.b', opts), 'malformed');
    reason(() => assertJwsShape('a.b.c.d', opts), 'malformed');
    reason(() => assertJwsShape(`${b64({ alg: 'RS256' })}=.${b64({})}.c2ln`, opts), 'malformed');
    reason(() => assertJwsShape(`${b64('[1]')}.${b64({})}.c2ln`, opts), 'malformed');
    reason(() => assertJwsShape(`${b64({ alg: 'RS256' })}.${b64('"str"')}.c2ln`, opts), 'malformed');
    reason(() => assertJwsShape(`${b64({ alg: 'RS256' })}.${b64('not json')}.c2ln`, opts), 'malformed');
    reason(() => assertJwsShape(tok({ alg: 'RS256' }, {}, ''), opts), 'malformed');
    reason(() => assertJwsShape(42, opts), 'malformed');
    assert.deepEqual(assertJwsShape(tok({ alg: 'RS256', kid: 'k' }), opts), { header: { alg: 'RS256', kid: 'k' }, payload: { iss: 'x' } });
  });

  it('RFC 8725 §3.1: alg is required, none refused, and it must be pinned', () => {
    reason(() => assertJwsShape(tok({ typ: 'JWT' }), opts), 'malformed');
    reason(() => assertJwsShape(tok({ alg: 'nOnE' }), { algorithms: ['none'] }), 'alg_none');
    reason(() => assertJwsShape(tok({ alg: 'HS256' }), opts), 'alg_not_allowed');
    reason(() => assertJwsShape(tok({ alg: 'rs256' }), opts), 'alg_not_allowed');
  });

  it('RFC 7515 §4.1.11: crit naming extensions is refused', () => {
    reason(() => assertJwsShape(tok({ alg: 'RS256', crit: ['b64'], b64: false }), opts), 'crit');
    reason(() => assertJwsShape(tok({ alg: 'RS256', crit: 'exp' }), opts), 'malformed');
  });

  it('size cap applies before decoding; duplicates are refused', () => {
    reason(() => decodeUnverified('x'.repeat(20_000)), 'too_large');
    reason(() => assertJwsShape(tok({ alg: 'RS256' }), { ...opts, maxBytes: 10 }), 'too_large');
    reason(() => assertJwsShape(`${b64({ alg: 'RS256' })}.${b64('{"a":1,"a":2}')}.c2ln`, opts), 'duplicate_members');
    reason(() => assertJwsShape(`${b64({ alg: 'RS256' })}.${b64('{"a":{"b":1,"b":2}}')}.c2ln`, opts), 'duplicate_members');
  });
});

describe('NHI mapping helpers', () => {
  it('matchFederatedNhis / nhiMatcher match trust name and subject pattern, skipping expired credentials', async () => {
    const creds = [
      cred('a', 'gh', 'repo:acme/*'),
      cred('a', 'gh', 'repo:acme/deploy:*'),
      cred('b', 'gitlab', 'repo:acme/*'),
      { ...cred('c', 'gh', 'repo:acme/deploy:ref:refs/heads/main'), expiresAt: 1000 },
      { ...cred('d', 'gh', '*'), type: 'private_key_jwt' as const },
    ];
    assert.deepEqual(matchFederatedNhis(creds, 'gh', 'repo:acme/deploy:ref:refs/heads/main', 500), ['a', 'c']);
    assert.deepEqual(matchFederatedNhis(creds, 'gh', 'repo:acme/deploy:ref:refs/heads/main', 2000), ['a']);
    assert.deepEqual(await nhiMatcher(async () => creds, new ManualClock(2000))('gitlab', 'repo:acme/x'), ['b']);
    assert.deepEqual(await nhiMatcher(creds)('gh', 'repo:other/x'), []);
  });

  it('runIdOf reads GitHub run_id/run_attempt and GitLab pipeline_id/job_id', () => {
    assert.equal(runIdOf({ run_id: '1', run_attempt: '3' }), '1-3');
    assert.equal(runIdOf({ run_id: 17 }), '17');
    assert.equal(runIdOf({ pipeline_id: '5', job_id: '6' }), '5');
    assert.equal(runIdOf({ job_id: 6 }), '6');
    assert.equal(runIdOf({ run_id: 'has space' }), null);
    assert.equal(runIdOf({}), null);
  });
});
