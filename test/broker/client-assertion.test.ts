import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { ManualClock, OAuthError } from '../../src/core/index.js';
import type { Store } from '../../src/store/index.js';
import { CLIENT_ASSERTION_TYPE, ClientAssertionVerifier } from '../../src/jose/client-assertion.js';
import { STORE_DIALECTS } from '../helpers/stores.js';

const ISSUER = 'https://as.example.com';
const TOKEN_ENDPOINT = `${ISSUER}/oauth/token`;
const TYPE = { assertionType: CLIENT_ASSERTION_TYPE };

interface Client {
  id: string;
  alg: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

async function client(id: string, alg = 'ES256', kid = `${id}-1`): Promise<Client> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { id, alg, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

interface AssertionOpts {
  header?: Record<string, unknown>;
  claims?: Record<string, unknown>;
  omit?: string[];
  signWith?: CryptoKey | Uint8Array;
}

/** A client assertion per RFC 7523 §3, for `clock`'s time. */
async function assertion(c: Client, clock: ManualClock, opts: AssertionOpts = {}): Promise<string> {
  const now = Math.floor(clock.now() / 1000);
  const claims: Record<string, unknown> = { iss: c.id, sub: c.id, aud: TOKEN_ENDPOINT, jti: randomUUID(), iat: now, exp: now + 60, ...opts.claims };
  for (const k of opts.omit ?? []) delete claims[k];
  return new SignJWT(claims)
    .setProtectedHeader({ alg: c.alg, kid: c.publicJwk.kid, ...opts.header } as never)
    .sign(opts.signWith ?? c.privateKey);
}

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

async function rejects(p: Promise<unknown>, re?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof OAuthError, `expected an OAuthError, got ${String(err)}`);
    assert.equal(err.error, 'invalid_client', err.message);
    assert.equal(err.status, 401);
    if (re) assert.match(err.message, re);
    return true;
  });
}

for (const d of STORE_DIALECTS) {
  describe(`ClientAssertionVerifier (RFC 7523 §3, RFC 7521 §4.2) on ${d.name}`, () => {
    let store: Store;
    let clock: ManualClock;
    let v: ClientAssertionVerifier;
    let alice: Client;
    let bob: Client;
    let multi: { a: Client; b: Client };
    const registry = new Map<string, JWK[]>();
    const make = (replay: Store) =>
      new ClientAssertionVerifier({ replay, clock, audiences: [ISSUER, TOKEN_ENDPOINT], getClientKeys: async (id) => registry.get(id) });

    before(async () => {
      clock = new ManualClock(Date.now());
      store = await d.open({ clock });
      alice = await client('alice');
      bob = await client('bob', 'EdDSA');
      multi = { a: await client('multi', 'ES256', 'm-1'), b: await client('multi', 'ES256', 'm-2') };
      registry.set('alice', [alice.publicJwk]);
      registry.set('bob', [bob.publicJwk]);
      registry.set('multi', [multi.a.publicJwk, multi.b.publicJwk]);
      registry.set('empty', []);
      v = make(store);
    });
    after(async () => {
      await store?.close();
    });

    it('accepts a valid assertion and returns the client id, jti and expiry (ms)', async () => {
      const jti = randomUUID();
      const now = Math.floor(clock.now() / 1000);
      const r = await v.verify(await assertion(alice, clock, { claims: { jti } }), { ...TYPE, clientIdParam: 'alice' });
      assert.deepEqual(r, { clientId: 'alice', jti, expiresAt: (now + 60) * 1000 });
    });

    it('accepts EdDSA, RS256 and PS256, and a key registered without kid when the assertion has none', async () => {
      assert.equal((await v.verify(await assertion(bob, clock), TYPE)).clientId, 'bob');
      for (const alg of ['RS256', 'PS256']) {
        const c = await client(`rsa-${alg.toLowerCase()}`, alg);
        const { kid: _kid, ...noKid } = c.publicJwk;
        registry.set(c.id, [noKid]);
        assert.equal((await v.verify(await assertion(c, clock, { header: { kid: undefined } }), TYPE)).clientId, c.id);
      }
    });

    it('RFC 7521 §4.2: refuses a missing or wrong client_assertion_type', async () => {
      const a = await assertion(alice, clock);
      await rejects(v.verify(a, { assertionType: undefined }), /client_assertion_type/);
      await rejects(v.verify(a, { assertionType: 'urn:ietf:params:oauth:client-assertion-type:saml2-bearer' }), /client_assertion_type/);
    });

    describe('RFC 7523 §3 items 1–2: iss = sub = client_id', () => {
      it('refuses iss ≠ sub', async () => {
        await rejects(v.verify(await assertion(alice, clock, { claims: { sub: 'bob' } }), TYPE), /sub/);
      });
      it('refuses sub ≠ the client_id parameter', async () => {
        await rejects(v.verify(await assertion(alice, clock), { ...TYPE, clientIdParam: 'bob' }), /client_id/);
      });
      it('refuses a missing iss or sub', async () => {
        await rejects(v.verify(await assertion(alice, clock, { omit: ['iss'] }), TYPE), /iss/);
        await rejects(v.verify(await assertion(alice, clock, { omit: ['sub'] }), TYPE), /sub/);
      });
      it('refuses an unknown client, or one without keys', async () => {
        const mallory = await client('nobody');
        await rejects(v.verify(await assertion(mallory, clock), TYPE), /unknown client/);
        const empty = await client('empty');
        await rejects(v.verify(await assertion(empty, clock), TYPE), /unknown client/);
      });
      it('refuses a client claiming another client\'s id (signed with its own key)', async () => {
        await rejects(v.verify(await assertion(alice, clock, { claims: { iss: 'bob', sub: 'bob' }, header: { alg: 'ES256', kid: 'bob-1' } }), TYPE), /kid/);
        await rejects(v.verify(await assertion(alice, clock, { claims: { iss: 'multi', sub: 'multi' }, header: { kid: 'm-1' } }), TYPE), /signature/);
      });
    });

    describe('RFC 7523 §3 item 3: aud', () => {
      it('refuses a wrong or missing aud', async () => {
        await rejects(v.verify(await assertion(alice, clock, { claims: { aud: 'https://other.example.com/oauth/token' } }), TYPE), /aud/);
        await rejects(v.verify(await assertion(alice, clock, { claims: { aud: `${TOKEN_ENDPOINT}/x` } }), TYPE), /aud/);
        await rejects(v.verify(await assertion(alice, clock, { omit: ['aud'] }), TYPE), /aud/);
        await rejects(v.verify(await assertion(alice, clock, { claims: { aud: [] } }), TYPE), /aud/);
        await rejects(v.verify(await assertion(alice, clock, { claims: { aud: [1, TOKEN_ENDPOINT] } }), TYPE), /aud/);
      });
      it('accepts the issuer, and an array that contains one of the audiences', async () => {
        await v.verify(await assertion(alice, clock, { claims: { aud: ISSUER } }), TYPE);
        await v.verify(await assertion(alice, clock, { claims: { aud: ['https://other.example.com', TOKEN_ENDPOINT] } }), TYPE);
      });
    });

    describe('RFC 7523 §3 items 4–6: exp, nbf, iat', () => {
      it('refuses a missing exp, an expired one and one too far (10 years)', async () => {
        const now = Math.floor(clock.now() / 1000);
        await rejects(v.verify(await assertion(alice, clock, { omit: ['exp'] }), TYPE), /exp/);
        await rejects(v.verify(await assertion(alice, clock, { claims: { exp: now - 31 } }), TYPE), /expired/);
        await rejects(v.verify(await assertion(alice, clock, { claims: { exp: now + 10 * 365 * 86400 } }), TYPE), /too far/);
        await rejects(v.verify(await assertion(alice, clock, { claims: { exp: now + 331 } }), TYPE), /too far/);
        await v.verify(await assertion(alice, clock, { claims: { exp: now + 300 } }), TYPE);
        await v.verify(await assertion(alice, clock, { claims: { exp: now - 10 } }), TYPE);
      });
      it('refuses an iat in the future', async () => {
        const now = Math.floor(clock.now() / 1000);
        await rejects(v.verify(await assertion(alice, clock, { claims: { iat: now + 3600 } }), TYPE), /iat/);
        await v.verify(await assertion(alice, clock, { omit: ['iat'] }), TYPE);
      });
      it('respects nbf', async () => {
        const now = Math.floor(clock.now() / 1000);
        await rejects(v.verify(await assertion(alice, clock, { claims: { nbf: now + 120 } }), TYPE), /nbf/);
        await v.verify(await assertion(alice, clock, { claims: { nbf: now } }), TYPE);
      });
    });

    describe('RFC 7523 §3 item 7: jti and single use', () => {
      it('refuses a missing jti', async () => {
        await rejects(v.verify(await assertion(alice, clock, { omit: ['jti'] }), TYPE), /jti/);
        await rejects(v.verify(await assertion(alice, clock, { claims: { jti: 'j'.repeat(300) } }), TYPE), /jti/);
      });
      it('refuses a reused assertion', async () => {
        const a = await assertion(alice, clock);
        await v.verify(a, TYPE);
        await rejects(v.verify(a, TYPE), /already used/);
      });
      it('50 parallel requests reusing one assertion: exactly one succeeds (two Store instances)', async () => {
        const peer = await d.openPeer(store, { clock });
        try {
          const v2 = make(peer);
          const a = await assertion(alice, clock);
          const results = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => (i % 2 ? v2 : v).verify(a, TYPE)));
          assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
          for (const r of results) {
            if (r.status === 'rejected') assert.match((r.reason as OAuthError).message, /already used/);
          }
        } finally {
          await peer.close();
        }
      });
      it('the same jti from two clients are different assertions', async () => {
        const jti = randomUUID();
        await v.verify(await assertion(alice, clock, { claims: { jti } }), TYPE);
        await v.verify(await assertion(bob, clock, { claims: { jti } }), TYPE);
      });
    });

    describe('keys only from the client registration', () => {
      it('ignores a jwk in the header: an attacker key with its jwk embedded is refused', async () => {
        const attacker = await client('alice', 'ES256', 'alice-1');
        const { kid: _k, alg: _a, use: _u, ...attackerJwk } = attacker.publicJwk;
        await rejects(v.verify(await assertion(attacker, clock, { header: { jwk: attackerJwk } }), TYPE), /signature/);
        await rejects(v.verify(await assertion(attacker, clock, { header: { kid: undefined, jwk: attackerJwk } }), TYPE), /signature/);
        await rejects(v.verify(await assertion(attacker, clock, { header: { kid: 'evil', jwk: attackerJwk } }), TYPE), /kid/);
      });
      it('ignores jku, x5u and x5c in the header', async () => {
        const attacker = await client('alice', 'ES256', 'alice-1');
        const header = { jku: 'https://evil.example/jwks', x5u: 'https://evil.example/cert', x5c: ['MIIB'] };
        await rejects(v.verify(await assertion(attacker, clock, { header }), TYPE), /signature/);
        // The real client's assertion with those headers is verified with the registered key only.
        await v.verify(await assertion(alice, clock, { header }), TYPE);
      });
      it('chooses by kid among several keys, and needs a kid then', async () => {
        await v.verify(await assertion(multi.a, clock), TYPE);
        await v.verify(await assertion(multi.b, clock), TYPE);
        await rejects(v.verify(await assertion(multi.a, clock, { header: { kid: 'm-2' } }), TYPE), /signature/);
        await rejects(v.verify(await assertion(multi.a, clock, { header: { kid: undefined } }), TYPE), /kid/);
      });
      it('refuses an alg that does not fit the registered key', async () => {
        await rejects(v.verify(await assertion(bob, clock, { header: { alg: 'EdDSA', kid: 'alice-1' }, claims: { iss: 'alice', sub: 'alice' } }), TYPE), /kid/);
      });
    });

    describe('RFC 8725 §3.1: alg pinned to the asymmetric list', () => {
      it('refuses alg none in any case', async () => {
        const now = Math.floor(clock.now() / 1000);
        const claims = { iss: 'alice', sub: 'alice', aud: TOKEN_ENDPOINT, jti: randomUUID(), exp: now + 60 };
        for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
          await rejects(v.verify(`${b64({ alg, kid: 'alice-1' })}.${b64(claims)}.`, TYPE), /malformed|alg/);
          await rejects(v.verify(`${b64({ alg, kid: 'alice-1' })}.${b64(claims)}.AAAA`, TYPE), /alg/);
        }
      });
      it('refuses HS256 keyed with the client\'s public key', async () => {
        for (const secret of [Buffer.from(JSON.stringify(alice.publicJwk)), Buffer.from(alice.publicJwk.x!, 'base64url')]) {
          await rejects(v.verify(await assertion(alice, clock, { header: { alg: 'HS256' }, signWith: secret }), TYPE), /alg/);
        }
      });
      it('refuses a symmetric algorithm in the configuration', () => {
        assert.throws(() => new ClientAssertionVerifier({ replay: store, clock, audiences: [ISSUER], algorithms: ['HS256'], getClientKeys: async () => undefined }), TypeError);
      });
    });

    describe('shape', () => {
      it('refuses an oversize assertion, duplicate members, and a DPoP proof or access token', async () => {
        await rejects(v.verify(await assertion(alice, clock, { claims: { pad: 'x'.repeat(9000) } }), TYPE), /larger/);
        const [h, , s] = (await assertion(alice, clock)).split('.') as [string, string, string];
        const dup = Buffer.from('{"iss":"alice","iss":"bob","sub":"alice"}').toString('base64url');
        await rejects(v.verify(`${h}.${dup}.${s}`, TYPE), /duplicate/);
        await rejects(v.verify(await assertion(alice, clock, { header: { typ: 'dpop+jwt' } }), TYPE), /typ/);
        await rejects(v.verify(await assertion(alice, clock, { header: { typ: 'at+jwt' } }), TYPE), /typ/);
        await rejects(v.verify('a.b', TYPE), /malformed/);
      });
    });
  });
}
