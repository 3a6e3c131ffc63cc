/**
 * Adversarial: DPoP (RFC 9449) at the broker's token endpoint and at the proxy, end to end: what
 * someone holding a stolen token, or a proof seen on the wire, tries — `htm`/`htu` games,
 * stale and future `iat`, `jti` replay (sequential, parallel, across endpoints), `ath` of
 * another token, another key than `cnf.jkt`, forged server nonces.
 *
 * Also covered elsewhere: every RFC 9449 §4.3 check of the verifier on its own
 * (test/broker/dpop.test.ts: header, typ, alg none/HS256/private jwk, jwk fitting alg, htu
 * normalization, nonces, two Store instances racing one proof); at the proxy §7.1 (a bound
 * token as Bearer), §7.2, another URL/method/key, no ath, an old proof, a sequential replay and
 * two DPoP headers (test/proxy/proxy-http.test.ts); `use_dpop_nonce` at the token endpoint and
 * the SDK's retry (test/broker/broker-fast-path.test.ts); a bound subject or actor token
 * exchanged with another key (test/adversarial/exchange.test.ts, test/broker/token-exchange.test.ts).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { agentNhi, dpopProof, testAgent, testDpopKey, type TestAgent, type TestDpopKey } from '../helpers/agent.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import { b64uSha256, clientAuth, postForm, type OAuthAnswer } from '../helpers/oauth.js';

for (const nonce of ['optional', 'required'] as const) {
  describe(`adversarial: DPoP at the broker and the proxy (tokens.dpop_nonce: ${nonce})`, () => {
    let t: TestApp;
    let rec: RecordingUpstream;
    let alice: TestAgent;
    let key: TestDpopKey;
    let iss: string;
    let tokenEp: string;
    let toolUrl: string;
    let serverNonce = '';

    before(async () => {
      rec = await startRecordingUpstream();
      alice = await testAgent('alice');
      key = await testDpopKey();
      t = await startTestApp(undefined, {
        tokens: { dpop_nonce: nonce },
        nhis: [agentNhi(alice)],
        tools: [{ id: 'rec', kind: 'http', upstream: rec.url, actions: [
          { name: 'list_items', method: 'GET', path: '/items', tier: 'read' },
          { name: 'create_item', method: 'POST', path: '/items', tier: 'write' },
        ] }],
        grants: [{ nhi: 'alice', tool: 'rec', actions: ['*'] }],
      });
      iss = t.app.issuer;
      tokenEp = `${iss}/oauth/token`;
      toolUrl = `${iss}/tools/rec/items`;
      serverNonce = t.app.broker!.dpop.currentNonce();
    });
    after(async () => {
      await t.app.close();
      await rec.close();
    });

    /** A proof with the server nonce when this instance requires one. */
    const proof = (k: TestDpopKey, htm: string, htu: string, extra: Record<string, unknown> = {}) =>
      dpopProof(k, htm, htu, { ...(nonce === 'required' ? { nonce: serverNonce } : {}), ...extra });
    const tokenRequest = async (dpop: string | string[]): Promise<OAuthAnswer> => {
      const body = new URLSearchParams({ grant_type: 'client_credentials', ...(await clientAuth(alice, iss)), resource: `${iss}/tools/rec`, scope: 'list_items create_item' });
      const headers = new Headers({ 'content-type': 'application/x-www-form-urlencoded' });
      for (const d of [dpop].flat()) headers.append('dpop', d);
      const res = await fetch(tokenEp, { method: 'POST', headers, body });
      return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, any> };
    };
    const bound = async (): Promise<string> => {
      const r = await tokenRequest(await proof(key, 'POST', tokenEp));
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body.access_token as string;
    };
    const call = async (token: string, dpop: string | undefined, method = 'GET', path = '/tools/rec/items') => {
      const headers: Record<string, string> = { authorization: `DPoP ${token}`, ...(dpop !== undefined ? { dpop } : {}) };
      if (method === 'POST') headers['content-type'] = 'application/json';
      const res = await fetch(`${t.url}${path}`, { method, headers, ...(method === 'POST' ? { body: '{}' } : {}) });
      const text = await res.text();
      return { status: res.status, www: res.headers.get('www-authenticate') ?? '', nonce: res.headers.get('dpop-nonce'), body: text ? (JSON.parse(text) as Record<string, any>) : {} };
    };
    const refusedAtBroker = (r: OAuthAnswer, what: string, error = 'invalid_dpop_proof') => {
      assert.equal(r.status, 400, `${what}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error, error, what);
      assert.equal(r.body.access_token, undefined, what);
    };

    describe('at the token endpoint', () => {
      it('htm: another method, or the right one in another case, is refused', async () => {
        for (const htm of ['GET', 'post', 'PUT']) refusedAtBroker(await tokenRequest(await proof(key, htm, tokenEp)), `htm ${htm}`);
      });

      it('htu: the proxy, another host, scheme or port, a longer path are refused; query and fragment are not part of htu (§4.3 item 9)', async () => {
        const u = new URL(tokenEp);
        for (const htu of [toolUrl, `${u.protocol}//evil.example${u.pathname}`, tokenEp.replace(/^http:/, 'https:'), `${u.protocol}//${u.hostname}:1${u.pathname}`, `${tokenEp}/x`, `${iss}/oauth/tokens`]) {
          refusedAtBroker(await tokenRequest(await proof(key, 'POST', htu)), `htu ${htu}`);
        }
        assert.equal((await tokenRequest(await proof(key, 'POST', `${tokenEp}?a=b#c`))).status, 200);
      });

      it('iat: older than the proof lifetime, or in the future beyond the skew, is refused', async () => {
        const now = Math.floor(Date.now() / 1000);
        for (const iat of [now - 3600, now - 70, now + 60, 'now']) refusedAtBroker(await tokenRequest(await proof(key, 'POST', tokenEp, { iat })), `iat ${iat}`);
      });

      it('jti: a proof used twice, the same jti in a new proof, and 20 parallel uses of one proof: one token at most', async () => {
        const p = await proof(key, 'POST', tokenEp);
        assert.equal((await tokenRequest(p)).status, 200);
        refusedAtBroker(await tokenRequest(p), 'the same proof again');
        const jti = randomUUID();
        assert.equal((await tokenRequest(await proof(key, 'POST', tokenEp, { jti }))).status, 200);
        refusedAtBroker(await tokenRequest(await proof(key, 'POST', tokenEp, { jti })), 'the same jti in a new proof');
        const once = await proof(key, 'POST', tokenEp);
        const all = await Promise.all(Array.from({ length: 20 }, () => tokenRequest(once)));
        assert.equal(all.filter((r) => r.status === 200).length, 1);
      });

      it('two DPoP headers, a proof signed by another key than its jwk, a private key in jwk, a symmetric alg: refused', async () => {
        refusedAtBroker(await tokenRequest([await proof(key, 'POST', tokenEp), await proof(key, 'POST', tokenEp)]), 'two headers');
        const other = await testDpopKey();
        const lying = await new SignJWT({ jti: randomUUID(), htm: 'POST', htu: tokenEp, iat: Math.floor(Date.now() / 1000), ...(nonce === 'required' ? { nonce: serverNonce } : {}) })
          .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: key.publicJwk }).sign(other.privateKey);
        refusedAtBroker(await tokenRequest(lying), 'signed by another key');
        const { privateKey } = await generateKeyPair('ES256', { extractable: true });
        const priv = await exportJWK(privateKey);
        const withPrivate = await new SignJWT({ jti: randomUUID(), htm: 'POST', htu: tokenEp, iat: Math.floor(Date.now() / 1000) })
          .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: priv }).sign(privateKey);
        refusedAtBroker(await tokenRequest(withPrivate), 'a private jwk');
        const hs = await new SignJWT({ jti: randomUUID(), htm: 'POST', htu: tokenEp, iat: Math.floor(Date.now() / 1000) })
          .setProtectedHeader({ alg: 'HS256', typ: 'dpop+jwt', jwk: { kty: 'oct', k: 'c2VjcmV0' } as never }).sign(new TextEncoder().encode('secret'));
        refusedAtBroker(await tokenRequest(hs), 'HS256');
      });

      it('nonce: a forged, malformed or non-string nonce is refused; a missing one only where nonces are required', async () => {
        refusedAtBroker(await tokenRequest(await dpopProof(key, 'POST', tokenEp, { nonce: '1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' })), 'a forged nonce', 'use_dpop_nonce');
        refusedAtBroker(await tokenRequest(await dpopProof(key, 'POST', tokenEp, { nonce: 'garbage' })), 'a malformed nonce', 'use_dpop_nonce');
        refusedAtBroker(await tokenRequest(await dpopProof(key, 'POST', tokenEp, { nonce: 12 })), 'a numeric nonce');
        const none = await tokenRequest(await dpopProof(key, 'POST', tokenEp));
        if (nonce === 'required') {
          refusedAtBroker(none, 'no nonce', 'use_dpop_nonce');
          assert.ok(none.headers.get('dpop-nonce'), 'RFC 9449 §8: the answer carries a nonce to use');
        } else {
          assert.equal(none.status, 200);
        }
      });
    });

    describe('at the proxy', () => {
      it('a proof seen at the token endpoint is no use at the proxy (htm, htu, ath)', async () => {
        const p = await proof(key, 'POST', tokenEp);
        const r = await tokenRequest(p);
        assert.equal(r.status, 200);
        const c = await call(r.body.access_token, p);
        assert.equal(c.status, 401);
        assert.match(c.www, /^DPoP error="invalid_dpop_proof"/);
      });

      it('ath of another token of the same key is refused', async () => {
        const [a, b] = [await bound(), await bound()];
        const c = await call(a, await proof(key, 'GET', toolUrl, { ath: b64uSha256(b) }));
        assert.equal(c.status, 401);
        assert.match(c.body.error_description, /ath/);
      });

      it('htm in another case, htu of another tool or path, a future iat: refused, and the tool never sees them', async () => {
        const token = await bound();
        const ath = b64uSha256(token);
        const before = rec.seen.length;
        for (const [what, p] of [
          ['htm get', await proof(key, 'get', toolUrl, { ath })],
          ['htu of another tool', await proof(key, 'GET', `${iss}/tools/other/items`, { ath })],
          ['htu of another path', await proof(key, 'GET', `${toolUrl}/1`, { ath })],
          ['htu over https', await proof(key, 'GET', toolUrl.replace(/^http:/, 'https:'), { ath })],
          ['iat in the future', await proof(key, 'GET', toolUrl, { ath, iat: Math.floor(Date.now() / 1000) + 120 })],
        ] as const) {
          const c = await call(token, p);
          assert.equal(c.status, 401, what);
        }
        assert.equal(rec.seen.length, before);
      });

      it('a proof from the bound key for GET replayed as POST, and 20 parallel uses of one proof: at most one reaches the tool', async () => {
        const token = await bound();
        const p = await proof(key, 'GET', toolUrl, { ath: b64uSha256(token) });
        assert.equal((await call(token, p, 'POST')).status, 401);
        const before = rec.seen.length;
        const all = await Promise.all(Array.from({ length: 20 }, () => call(token, p)));
        assert.equal(all.filter((r) => r.status === 200).length, 1);
        assert.equal(rec.seen.length - before, 1, 'the tool saw exactly one call');
      });

      it('a forged nonce is refused with use_dpop_nonce and a fresh DPoP-Nonce; a missing one only where nonces are required', async () => {
        const token = await bound();
        const ath = b64uSha256(token);
        const forged = await call(token, await dpopProof(key, 'GET', toolUrl, { ath, nonce: '1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' }));
        assert.equal(forged.status, 401);
        assert.match(forged.www, /^DPoP error="use_dpop_nonce"/);
        assert.ok(forged.nonce);
        const none = await call(token, await dpopProof(key, 'GET', toolUrl, { ath }));
        if (nonce === 'required') {
          assert.equal(none.status, 401);
          assert.match(none.www, /use_dpop_nonce/);
          const retried = await call(token, await dpopProof(key, 'GET', toolUrl, { ath, nonce: none.nonce }));
          assert.equal(retried.status, 200, JSON.stringify(retried.body));
        } else {
          assert.equal(none.status, 200);
        }
      });
    });
  });
}
