/**
 * Issue 15, item 10, "the letter of the standards": one test per RFC clause, through the real
 * broker on 127.0.0.1. (RFC 8693 §4.1, nested `act`, is in token-exchange.test.ts; RFC 7519
 * §4.1.4 for SETs in test/signals/set-exp.test.ts.)
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { ASSERTION_TYPE, agentNhi, dpopProof, testAgent, testDpopKey, type TestAgent } from '../helpers/agent.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import { AT_TYPE, EXCHANGE, JWT_BEARER, claimsOf, clientAuth, clientCredentials, exchange, introspect, postForm, revokeAtEndpoint, type OAuthAnswer } from '../helpers/oauth.js';

const SECRET = 'a-long-random-legacy-secret-value-for-standards';
const ALL_METHODS = ['private_key_jwt', 'client_secret_basic', 'client_secret_post', 'client_secret_jwt', 'tls_client_auth', 'none'] as const;
type Method = (typeof ALL_METHODS)[number];

interface SigningKey {
  alg: string;
  kid: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

async function signingKey(alg: string, kid: string): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, ...(alg.startsWith('RS') || alg.startsWith('PS') ? { modulusLength: 2048 } : {}) });
  return { alg, kid, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

/** An RFC 7523 §3 client assertion signed with `k`. */
async function assertionWith(id: string, k: { alg: string; kid?: string; key: CryptoKey | Uint8Array }, aud: string): Promise<string> {
  return new SignJWT({ jti: randomUUID() })
    .setProtectedHeader({ alg: k.alg, ...(k.kid ? { kid: k.kid } : {}) })
    .setIssuer(id).setSubject(id).setAudience(aud).setIssuedAt().setExpirationTime('60s')
    .sign(k.key);
}

describe('the letter of the standards (issue 15, item 10)', () => {
  let t: TestApp;
  let rec: RecordingUpstream;
  let alice: TestAgent;
  let bob: TestAgent;
  let carol: TestAgent;
  let iss: string;
  let resource: string;
  let metadata: Record<string, any>;
  /** alice's extra keys, one per algorithm (ES384 is registered but not an accepted client assertion alg). */
  const keys: Record<string, SigningKey> = {};

  before(async () => {
    rec = await startRecordingUpstream();
    [alice, bob, carol] = await Promise.all([testAgent('alice'), testAgent('bob'), testAgent('carol')]);
    for (const alg of ['EdDSA', 'RS256', 'PS256', 'ES384']) keys[alg] = await signingKey(alg, `alice-${alg.toLowerCase()}`);
    const aliceNhi = agentNhi(alice, { may_act: ['bob'] });
    aliceNhi.credentials[0]!.jwks.keys.push(...Object.values(keys).map((k) => k.publicJwk as Record<string, unknown>));
    t = await startTestApp(undefined, {
      tokens: { profiles: [{ name: 'read', ttl: '10m', binding: 'optional' }, { name: 'write', ttl: '5m' }, { name: 'destructive', ttl: '2m', approval: true }] },
      nhis: [
        aliceNhi, agentNhi(bob), agentNhi(carol),
        { id: 'legacy', class: 'workload', owner: 'o', system: 's', tier: 'read', credentials: [{ type: 'static_secret', secret: 'env:LEGACY_SECRET', exception: { ticket: 'SEC-1', expires: '2099-12-31' } }] },
      ],
      tools: [{ id: 'rec', kind: 'http', upstream: rec.url, actions: [
        { name: 'list_items', method: 'GET', path: '/items', tier: 'read' },
        { name: 'create_item', method: 'POST', path: '/items', tier: 'write' },
        { name: 'delete_item', method: 'DELETE', path: '/items/{id}', tier: 'destructive' },
      ] }],
      grants: [
        { nhi: 'alice', tool: 'rec', actions: ['*'] }, { nhi: 'bob', tool: 'rec', actions: ['*'] }, { nhi: 'carol', tool: 'rec', actions: ['*'] },
        { nhi: 'legacy', tool: 'rec', actions: ['list_items'] },
      ],
    }, { LEGACY_SECRET: SECRET });
    iss = t.app.issuer;
    resource = `${iss}/tools/rec`;
    metadata = (await (await fetch(`${iss}/.well-known/oauth-authorization-server`)).json()) as Record<string, any>;
  });
  after(async () => {
    await t.app.close();
    await rec.close();
  });

  const aliceToken = async () => {
    const r = await clientCredentials(iss, alice, { resource, scope: 'list_items' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.access_token as string;
  };
  const legacyToken = async () => {
    const r = await postForm(`${iss}/oauth/token`, { grant_type: 'client_credentials', client_id: 'legacy', client_secret: SECRET, resource, scope: 'list_items' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.access_token as string;
  };

  /**
   * One request to `endpoint` authenticated with `method` (the client and the token chosen so
   * that the request succeeds when the method is accepted): headers and form members.
   */
  async function authFor(method: Method, endpoint: 'token' | 'introspection' | 'revocation'): Promise<{ headers: Record<string, string>; form: Record<string, string> }> {
    const basic = { authorization: `Basic ${Buffer.from(`legacy:${SECRET}`).toString('base64')}` };
    switch (method) {
      case 'private_key_jwt':
        return { headers: {}, form: await clientAuth(alice, iss) };
      case 'client_secret_basic':
        return { headers: basic, form: {} };
      case 'client_secret_post':
        return { headers: {}, form: { client_id: 'legacy', client_secret: SECRET } };
      case 'client_secret_jwt':
        // RFC 7523 with an HMAC over the shared secret (OIDC Core §9): never accepted here.
        return { headers: {}, form: { client_id: 'legacy', client_assertion_type: ASSERTION_TYPE, client_assertion: await assertionWith('legacy', { alg: 'HS256', key: new TextEncoder().encode(SECRET) }, iss) } };
      case 'tls_client_auth':
        // RFC 8705 §2: a client_id and the TLS client certificate; this instance has no TLS, so the certificate is absent.
        return { headers: {}, form: { client_id: 'alice' } };
      case 'none':
        return { headers: {}, form: {} };
    }
  }

  async function requestAt(endpoint: 'token' | 'introspection' | 'revocation', method: Method): Promise<OAuthAnswer> {
    const { headers, form } = await authFor(method, endpoint);
    const usesLegacy = method.startsWith('client_secret');
    if (endpoint === 'token') {
      // `none` is for grants whose token authenticates: token exchange of a Mandate token.
      const body = method === 'none'
        ? { grant_type: EXCHANGE, subject_token: await aliceToken(), subject_token_type: AT_TYPE, resource, scope: 'list_items', ...form }
        : { grant_type: 'client_credentials', resource, scope: 'list_items', ...form };
      return postForm(`${iss}/oauth/token`, body, headers);
    }
    const token = usesLegacy ? await legacyToken() : await aliceToken();
    return postForm(`${iss}/oauth/${endpoint === 'introspection' ? 'introspect' : 'revoke'}`, { token, ...form }, headers);
  }

  for (const endpoint of ['token', 'introspection', 'revocation'] as const) {
    it(`RFC 8414 §2: ${endpoint}_endpoint_auth_methods_supported is exactly what the ${endpoint} endpoint accepts`, async () => {
      const listed = metadata[`${endpoint}_endpoint_auth_methods_supported`] as string[];
      assert.ok(Array.isArray(listed) && listed.length > 0);
      for (const m of listed) assert.ok((ALL_METHODS as readonly string[]).includes(m), `${m} is a method this test knows`);
      for (const method of ALL_METHODS) {
        const r = await requestAt(endpoint, method);
        if (listed.includes(method)) {
          assert.equal(r.status, 200, `${method} is listed for ${endpoint} but refused: ${JSON.stringify(r.body)}`);
          if (endpoint === 'introspection') assert.equal(r.body.active, true);
        } else {
          assert.equal(r.status, 401, `${method} is not listed for ${endpoint} but was not refused: ${JSON.stringify(r.body)}`);
          assert.equal(r.body.error, 'invalid_client');
          assert.match(r.headers.get('www-authenticate') ?? '', /^Basic /, 'RFC 6749 §5.2: 401 with WWW-Authenticate');
        }
      }
    });

    it(`RFC 8414 §2: every ${endpoint}_endpoint_auth_signing_alg_values_supported algorithm works at the ${endpoint} endpoint; others are refused`, async () => {
      const listed = metadata[`${endpoint}_endpoint_auth_signing_alg_values_supported`] as string[];
      assert.deepEqual([...listed].sort(), ['ES256', 'EdDSA', 'PS256', 'RS256']);
      const signer = (alg: string) => (alg === 'ES256' ? { alg, kid: alice.publicJwk.kid!, key: alice.privateKey } : { alg, kid: keys[alg]!.kid, key: keys[alg]!.privateKey });
      const send = async (assertion: string) => {
        const form = { client_assertion_type: ASSERTION_TYPE, client_assertion: assertion };
        if (endpoint === 'token') return postForm(`${iss}/oauth/token`, { grant_type: 'client_credentials', resource, scope: 'list_items', ...form });
        return postForm(`${iss}/oauth/${endpoint === 'introspection' ? 'introspect' : 'revoke'}`, { token: await aliceToken(), ...form });
      };
      for (const alg of listed) {
        const r = await send(await assertionWith('alice', signer(alg), iss));
        assert.equal(r.status, 200, `${alg}: ${JSON.stringify(r.body)}`);
      }
      // ES384 with a registered ES384 key, and HS256 keyed with alice's public key: not listed, refused.
      const es384 = await send(await assertionWith('alice', signer('ES384'), iss));
      assert.equal(es384.body.error, 'invalid_client');
      const hs = await send(await assertionWith('alice', { alg: 'HS256', kid: alice.publicJwk.kid!, key: new TextEncoder().encode(JSON.stringify(alice.publicJwk)) }, iss));
      assert.equal(hs.body.error, 'invalid_client');
    });
  }

  it('RFC 8414 §2 / RFC 9449 §5.1: every dpop_signing_alg_values_supported algorithm makes a proof the token endpoint accepts; others are refused', async () => {
    const listed = metadata.dpop_signing_alg_values_supported as string[];
    assert.ok(listed.length > 0);
    for (const alg of [...listed, 'ES512', 'RS512']) {
      const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, ...(alg.startsWith('RS') || alg.startsWith('PS') ? { modulusLength: 2048 } : {}) });
      const publicJwk = await exportJWK(publicKey);
      const proof = await new SignJWT({ jti: randomUUID(), htm: 'POST', htu: `${iss}/oauth/token`, iat: Math.floor(Date.now() / 1000) })
        .setProtectedHeader({ alg, typ: 'dpop+jwt', jwk: publicJwk }).sign(privateKey);
      const r = await postForm(`${iss}/oauth/token`, { grant_type: 'client_credentials', ...(await clientAuth(alice, iss)), resource, scope: 'list_items' }, { dpop: proof });
      if (listed.includes(alg)) assert.equal(r.status, 200, `${alg}: ${JSON.stringify(r.body)}`);
      else assert.equal(r.body.error, 'invalid_dpop_proof', `${alg} is not listed`);
    }
  });

  describe('RFC 8693 §2.2.2: an invalid or unacceptable subject or actor token is invalid_request', () => {
    const refused = (r: OAuthAnswer, which: 'subject_token' | 'actor_token') => {
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.equal(r.body.error, 'invalid_request', JSON.stringify(r.body));
      assert.match(r.body.error_description, new RegExp(which));
    };

    it('RFC 8693 §2.2.2: a subject_token that is not a valid Mandate token, a forged one, a revoked one, one of a disabled NHI', async () => {
      refused(await exchange(iss, { subject: 'garbage', resource, scope: 'list_items' }), 'subject_token');
      const good = await aliceToken();
      const [h, , sig] = good.split('.');
      const forged = `${h}.${Buffer.from(JSON.stringify({ ...claimsOf(good), sub: 'bob' })).toString('base64url')}.${sig}`;
      refused(await exchange(iss, { subject: forged, resource, scope: 'list_items' }), 'subject_token');
      refused(await exchange(iss, { subject: good, subjectType: 'urn:ietf:params:oauth:token-type:jwt', resource, scope: 'list_items' }), 'subject_token');
      const revoked = await aliceToken();
      await t.admin('POST', '/revocations', { jti: claimsOf(revoked).jti, reason: 'test' });
      refused(await exchange(iss, { subject: revoked, resource, scope: 'list_items' }), 'subject_token');
      const carols = await clientCredentials(iss, carol, { resource, scope: 'list_items' });
      assert.equal(carols.status, 200);
      assert.equal((await t.admin('POST', '/nhis/carol/disable', {})).status, 200);
      try {
        refused(await exchange(iss, { subject: carols.body.access_token, resource, scope: 'list_items' }), 'subject_token');
      } finally {
        await t.admin('POST', '/nhis/carol/enable', {});
      }
    });

    it('RFC 8693 §2.2.2: an actor_token that is invalid, whose actor the subject\'s may_act does not name, or that is itself delegated', async () => {
      const subject = await aliceToken();
      refused(await exchange(iss, { subject, actor: 'garbage', resource, scope: 'list_items' }), 'actor_token');
      // alice may_act: [bob]; alice is not in bob's.
      const bobs = await clientCredentials(iss, bob, { resource, scope: 'list_items' });
      refused(await exchange(iss, { subject: bobs.body.access_token, actor: subject, resource, scope: 'list_items' }), 'actor_token');
      const delegated = await exchange(iss, { subject, actor: bobs.body.access_token, resource, scope: 'list_items' });
      assert.equal(delegated.status, 200, JSON.stringify(delegated.body));
      refused(await exchange(iss, { subject: await aliceToken(), actor: delegated.body.access_token, resource, scope: 'list_items' }), 'actor_token');
      // The client that authenticates is the actor: alice's client with bob's actor token is not.
      refused(await exchange(iss, { subject, actor: bobs.body.access_token, auth: alice, resource, scope: 'list_items' }), 'actor_token');
    });
  });

  it('RFC 7009 §2.1: revoking another client\'s token is refused (unauthorized_client) and leaves it active', async () => {
    const alices = await aliceToken();
    const r = await revokeAtEndpoint(iss, bob, alices);
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.equal(r.body.error, 'unauthorized_client');
    assert.equal((await introspect(iss, alice, alices)).body.active, true);
    // Its own client may.
    assert.equal((await revokeAtEndpoint(iss, alice, alices)).status, 200);
    assert.deepEqual((await introspect(iss, alice, alices)).body, { active: false });
  });

  it('RFC 7009 §2.1: an unknown or wrong token_type_hint extends the search (the access token is revoked)', async () => {
    for (const hint of ['refresh_token', 'urn:example:unknown-type', 'access_token']) {
      const tok = await aliceToken();
      const r = await revokeAtEndpoint(iss, alice, tok, { token_type_hint: hint });
      assert.equal(r.status, 200, `${hint}: ${JSON.stringify(r.body)}`);
      assert.deepEqual((await introspect(iss, alice, tok)).body, { active: false }, `revoked with hint ${hint}`);
    }
  });

  it('RFC 7009 §2.2.1: a token type this server does not revoke here (an admin credential) is unsupported_token_type, and stays valid', async () => {
    const r = await revokeAtEndpoint(iss, alice, t.token, { token_type_hint: 'access_token' });
    assert.equal(r.status, 400);
    assert.equal(r.body.error, 'unsupported_token_type');
    assert.equal((await t.admin('GET', '/nhis')).status, 200);
  });

  it('RFC 7009 §2.2: an invalid or unknown token is answered 200', async () => {
    assert.equal((await revokeAtEndpoint(iss, alice, 'not-a-token')).status, 200);
  });

  it('RFC 6749 §5.2: every token-endpoint refusal is a §5.2 code or an extension Mandate documents; 400, or 401 with WWW-Authenticate for invalid_client', async () => {
    const ep = `${iss}/oauth/token`;
    const dk = await testDpopKey();
    const cc = async (extra: Record<string, string>, headers: Record<string, string> = {}) => postForm(ep, {
      grant_type: 'client_credentials', ...(await clientAuth(alice, iss)), resource, scope: 'list_items', ...extra,
    }, headers);
    const DIGEST = 'M7hzyDgX1ZjsSjX9Gq1mVSIwWbXJg2uH0xi5X_Vx2gE';
    const cases: Array<[string, () => Promise<OAuthAnswer>, string]> = [
      ['wrong content type', async () => {
        const res = await fetch(ep, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"grant_type":"client_credentials"}' });
        return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, any> };
      }, 'invalid_request'],
      ['a repeated parameter', async () => postForm(ep, { grant_type: ['client_credentials', 'client_credentials'] }), 'invalid_request'],
      ['no grant_type', async () => postForm(ep, { scope: 'x' }), 'invalid_request'],
      ['an unknown grant type', async () => postForm(ep, { grant_type: 'password', username: 'u', password: 'p' }), 'unsupported_grant_type'],
      ['the authorization code grant', async () => postForm(ep, { grant_type: 'authorization_code', code: 'x' }), 'unsupported_grant_type'],
      ['refresh_token', async () => postForm(ep, { grant_type: 'refresh_token', refresh_token: 'x' }), 'unsupported_grant_type'],
      ['client_credentials without client authentication', async () => postForm(ep, { grant_type: 'client_credentials', resource, scope: 'list_items' }), 'invalid_client'],
      ['a wrong client secret (HTTP Basic)', async () => postForm(ep, { grant_type: 'client_credentials', resource, scope: 'list_items' }, { authorization: `Basic ${Buffer.from('legacy:wrong').toString('base64')}` }), 'invalid_client'],
      ['a client assertion for another audience', async () => postForm(ep, {
        grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: await assertionWith('alice', { alg: 'ES256', kid: alice.publicJwk.kid!, key: alice.privateKey }, 'https://elsewhere.example'), resource, scope: 'list_items',
      }), 'invalid_client'],
      ['two client authentication methods', async () => cc({ client_id: 'legacy', client_secret: SECRET }), 'invalid_request'],
      ['no scope', async () => cc({ scope: '' }), 'invalid_scope'],
      ['a scope not granted', async () => postForm(ep, { grant_type: 'client_credentials', client_id: 'legacy', client_secret: SECRET, resource, scope: 'create_item' }), 'invalid_scope'],
      ['a malformed scope', async () => cc({ scope: 'list_items  create_item' }), 'invalid_scope'],
      ['no resource', async () => postForm(ep, { grant_type: 'client_credentials', ...(await clientAuth(alice, iss)), scope: 'list_items' }), 'invalid_target'],
      ['two tools', async () => postForm(ep, { grant_type: 'client_credentials', ...(await clientAuth(alice, iss)), scope: 'list_items', resource: [resource, `${iss}/tools/other`] }), 'invalid_target'],
      ['a malformed DPoP proof', async () => cc({}, { dpop: 'not.a.proof' }), 'invalid_dpop_proof'],
      ['a DPoP proof for another URL', async () => cc({}, { dpop: await dpopProof(dk, 'POST', `${iss}/elsewhere`) }), 'invalid_dpop_proof'],
      ['a JWT bearer assertion that is not valid', async () => postForm(ep, { grant_type: JWT_BEARER, assertion: 'a.b.c', resource, scope: 'list_items' }), 'invalid_grant'],
      ['a JWT bearer grant without assertion', async () => postForm(ep, { grant_type: JWT_BEARER, resource, scope: 'list_items' }), 'invalid_request'],
      ['token exchange of a garbage subject token', async () => exchange(iss, { subject: 'x', resource, scope: 'list_items' }), 'invalid_request'],
      ['token exchange with an unsupported subject_token_type', async () => exchange(iss, { subject: 'x', subjectType: 'urn:example:saml', resource, scope: 'list_items' }), 'invalid_request'],
      ['token exchange without subject_token', async () => postForm(ep, { grant_type: EXCHANGE, resource, scope: 'list_items' }), 'invalid_request'],
      ['actor_token without actor_token_type', async () => postForm(ep, { grant_type: EXCHANGE, subject_token: await aliceToken(), subject_token_type: AT_TYPE, actor_token: 'x', resource, scope: 'list_items' }), 'invalid_request'],
      ['narrowing a token for another tool', async () => exchange(iss, { subject: await aliceToken(), resource: `${iss}/tools/other`, scope: 'list_items' }), 'invalid_target'],
      ['a binding-required profile without a proof', async () => cc({ scope: 'create_item' }), 'invalid_request'],
      ['an approval tier without args_digest', async () => cc({ scope: 'delete_item' }, { dpop: await dpopProof(dk, 'POST', ep) }), 'invalid_request'],
      ['a malformed args_digest', async () => cc({ scope: 'delete_item', args_digest: 'short' }, { dpop: await dpopProof(dk, 'POST', ep) }), 'invalid_request'],
      ['an approval tier (documented extension: a human must approve)', async () => cc({ scope: 'delete_item', args_digest: DIGEST }, { dpop: await dpopProof(dk, 'POST', ep) }), 'approval_required'],
      ['an approval id of another call', async () => cc({ scope: 'delete_item', args_digest: DIGEST, approval_id: 'apr_unknown' }, { dpop: await dpopProof(dk, 'POST', ep) }), 'invalid_grant'],
    ];
    const ALLOWED = new Set([
      // RFC 6749 §5.2
      'invalid_request', 'invalid_client', 'invalid_grant', 'unauthorized_client', 'unsupported_grant_type', 'invalid_scope',
      // RFC 8707 §2, RFC 9449 §5 / §8, RFC 8628 §3.5 (elevation), Mandate's documented approval_required
      'invalid_target', 'invalid_dpop_proof', 'use_dpop_nonce', 'authorization_pending', 'access_denied', 'expired_token', 'approval_required',
    ]);
    for (const [what, send, expected] of cases) {
      const r = await send();
      assert.equal(r.body.error, expected, `${what}: ${JSON.stringify(r.body)}`);
      assert.ok(ALLOWED.has(r.body.error), `${what}: ${r.body.error} is not a §5.2 code nor a documented extension`);
      assert.equal(typeof r.body.error_description, 'string', what);
      if (r.body.error === 'invalid_client') {
        assert.equal(r.status, 401, what);
        assert.ok(r.headers.get('www-authenticate'), `${what}: 401 carries WWW-Authenticate`);
      } else {
        assert.equal(r.status, 400, `${what}: ${r.status}`);
      }
    }
  });

  it('RFC 6749 §5.2 with RFC 8628 §3.5: operator refusals at the token endpoint are access_denied with status 400 (kill switch, disabled NHI, denied approval)', async () => {
    const kill = await t.admin('POST', '/kill', { scope: 'nhi', target: 'bob', reason: 'standards' });
    try {
      const r = await clientCredentials(iss, bob, { resource, scope: 'list_items' });
      assert.equal(r.status, 400);
      assert.equal(r.body.error, 'access_denied');
    } finally {
      await t.admin('DELETE', `/kill/${kill.body.id}`);
    }
    assert.equal((await t.admin('POST', '/nhis/carol/disable', {})).status, 200);
    try {
      const r = await clientCredentials(iss, carol, { resource, scope: 'list_items' });
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.equal(r.body.error, 'access_denied');
    } finally {
      await t.admin('POST', '/nhis/carol/enable', {});
    }
    const DIGEST = 'M7hzyDgX1ZjsSjX9Gq1mVSIwWbXJg2uH0xi5X_Vx2gE';
    const dk = await testDpopKey();
    const ask = async (extra: Record<string, string> = {}) => clientCredentials(iss, alice, { resource, scope: 'delete_item', dpop: dk, extra: { args_digest: DIGEST, ...extra } });
    const asked = await ask();
    assert.equal(asked.body.error, 'approval_required');
    const pending = await ask({ approval_id: asked.body.approval_id });
    assert.equal(pending.status, 400);
    assert.equal(pending.body.error, 'authorization_pending');
    assert.equal((await t.admin('POST', `/approvals/${asked.body.approval_id}/deny`, { reason: 'no' })).status, 200);
    const denied = await ask({ approval_id: asked.body.approval_id });
    assert.equal(denied.status, 400);
    assert.equal(denied.body.error, 'access_denied');
  });
});
