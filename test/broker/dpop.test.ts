import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair, calculateJwkThumbprint, type CryptoKey, type JWK } from 'jose';
import { ManualClock, OAuthError } from '../../src/core/index.js';
import type { Store } from '../../src/store/index.js';
import { DpopVerifier, athFor, jwkThumbprint } from '../../src/jose/dpop.js';
import { DpopNonces } from '../../src/jose/dpop-nonce.js';
import { normalizeHtu } from '../../src/jose/htu.js';
import { STORE_DIALECTS } from '../helpers/stores.js';

const URL_ = 'https://as.example.com/oauth/token';

interface Key {
  alg: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
  privateJwk: JWK;
  jkt: string;
}

async function newKey(alg = 'ES256'): Promise<Key> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = await exportJWK(publicKey);
  return { alg, privateKey, publicJwk, privateJwk: await exportJWK(privateKey), jkt: await calculateJwkThumbprint(publicJwk) };
}

interface ProofOpts {
  header?: Record<string, unknown>;
  claims?: Record<string, unknown>;
  /** Claims to leave out. */
  omit?: string[];
  /** Sign with this key (the header still carries `key`'s public jwk unless header.jwk is given). */
  signWith?: CryptoKey | Uint8Array;
}

/** A DPoP proof per RFC 9449 §4.2, for `clock`'s time. */
async function proof(key: Key, clock: ManualClock, opts: ProofOpts = {}): Promise<string> {
  const claims: Record<string, unknown> = { jti: randomUUID(), htm: 'POST', htu: URL_, iat: Math.floor(clock.now() / 1000), ...opts.claims };
  for (const c of opts.omit ?? []) delete claims[c];
  return new SignJWT(claims)
    .setProtectedHeader({ alg: key.alg, typ: 'dpop+jwt', jwk: key.publicJwk, ...opts.header } as never)
    .sign(opts.signWith ?? key.privateKey);
}

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

/** A JWS put together by hand (for what jose refuses to sign). */
function rawJws(header: Record<string, unknown>, payload: Record<string, unknown>, sig = 'AAAA'): string {
  return `${b64(header)}.${b64(payload)}.${sig}`;
}

async function rejects(p: Promise<unknown>, error: string, re?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof OAuthError, `expected an OAuthError, got ${String(err)}`);
    assert.equal(err.error, error, err.message);
    if (re) assert.match(err.message, re);
    return true;
  });
}

describe('normalizeHtu (RFC 9449 §4.3 item 9, RFC 3986 §6.2.2–6.2.3)', () => {
  it('lowercases scheme and host, drops the default port, query and fragment', () => {
    assert.equal(normalizeHtu('HTTPS://AS.Example.COM:443/oauth/token?x=1#f'), 'https://as.example.com/oauth/token');
    assert.equal(normalizeHtu('http://as.example.com:80/a'), 'http://as.example.com/a');
    assert.equal(normalizeHtu('https://as.example.com:8443/a'), 'https://as.example.com:8443/a');
    assert.equal(normalizeHtu('http://as.example.com:443/a'), 'http://as.example.com:443/a');
  });
  it('gives an empty path as "/" and removes dot segments', () => {
    assert.equal(normalizeHtu('https://as.example.com'), 'https://as.example.com/');
    assert.equal(normalizeHtu('https://as.example.com/a/../oauth/./token'), 'https://as.example.com/oauth/token');
  });
  it('normalizes percent-encoding: upper-case hex, unreserved characters decoded', () => {
    assert.equal(normalizeHtu('https://h/a%2fb'), 'https://h/a%2Fb');
    assert.equal(normalizeHtu('https://h/%7euser/%41'), 'https://h/~user/A');
    assert.equal(normalizeHtu('https://h/a%2fb'), normalizeHtu('https://h/a%2Fb'));
  });
  it('keeps the path case (paths are case-sensitive)', () => {
    assert.notEqual(normalizeHtu('https://h/Token'), normalizeHtu('https://h/token'));
  });
  it('refuses what is not an absolute http(s) URL', () => {
    for (const bad of ['', '/oauth/token', 'ftp://h/x', 'urn:x:y', 'not a url', `https://h/${'a'.repeat(5000)}`]) {
      assert.throws(() => normalizeHtu(bad), TypeError, bad.slice(0, 40));
    }
  });
});

describe('DpopNonces (RFC 9449 §8)', () => {
  const secret = randomBytes(32);
  it('accepts the current and the previous window, not two windows old, not another secret', () => {
    const clock = new ManualClock(1_700_000_000_000);
    const n = new DpopNonces(secret, clock, { windowS: 300 });
    const nonce = n.current();
    assert.match(nonce, /^\d+\.[A-Za-z0-9_-]{43}$/);
    assert.ok(n.isValid(nonce));
    clock.advance(300_000);
    assert.notEqual(n.current(), nonce);
    assert.ok(n.isValid(nonce), 'previous window');
    clock.advance(300_000);
    assert.ok(!n.isValid(nonce), 'two windows old');
    assert.ok(!new DpopNonces(randomBytes(32), clock).isValid(n.current()), 'another secret');
    assert.ok(new DpopNonces(secret, clock).isValid(n.current()), 'another instance with the same secret');
  });
  it('refuses malformed and future nonces', () => {
    const clock = new ManualClock(1_700_000_000_000);
    const n = new DpopNonces(secret, clock);
    const cur = n.current();
    const [w, mac] = cur.split('.') as [string, string];
    for (const bad of ['', 'x', `${w}.${mac}x`, `${w}`, `${Number(w) + 1}.${mac}`, `${w}.${mac.slice(0, -1)}${mac.endsWith('A') ? 'B' : 'A'}`, 42, null]) {
      assert.ok(!n.isValid(bad), String(bad));
    }
    clock.advance(300_000);
    const next = n.current();
    clock.advance(-300_000);
    assert.ok(!n.isValid(next), 'a nonce of a future window');
  });
  it('refuses a short secret', () => {
    assert.throws(() => new DpopNonces(new Uint8Array(8), new ManualClock()), TypeError);
  });
});

for (const d of STORE_DIALECTS) {
  describe(`DpopVerifier on ${d.name}`, () => {
    let store: Store;
    let clock: ManualClock;
    let v: DpopVerifier;
    let key: Key;

    before(async () => {
      clock = new ManualClock(Date.now());
      store = await d.open({ clock });
      v = new DpopVerifier({ replay: store, clock });
      key = await newKey();
    });
    after(async () => {
      await store?.close();
    });

    const check = { method: 'POST', url: URL_ };

    it('accepts a valid proof and returns the RFC 7638 thumbprint, jti, iat and public jwk', async () => {
      const jti = randomUUID();
      const r = await v.verify(await proof(key, clock, { claims: { jti } }), check);
      assert.equal(r.jkt, key.jkt);
      assert.equal(r.jkt, await jwkThumbprint(key.publicJwk));
      assert.equal(r.jti, jti);
      assert.equal(r.iat, Math.floor(clock.now() / 1000));
      assert.deepEqual(r.jwk, { kty: 'EC', crv: 'P-256', x: key.publicJwk.x, y: key.publicJwk.y });
    });

    it('accepts EdDSA, ES384, RS256 and PS256 proofs', async () => {
      for (const alg of ['EdDSA', 'ES384', 'RS256', 'PS256']) {
        const k = await newKey(alg);
        const r = await v.verify(await proof(k, clock), check);
        assert.equal(r.jkt, k.jkt, alg);
      }
    });

    describe('RFC 9449 §4.3 item 1: exactly one DPoP header', () => {
      it('refuses a missing header', async () => {
        await rejects(v.verify(undefined, check), 'invalid_dpop_proof', /required/);
        await rejects(v.verify('', check), 'invalid_dpop_proof', /required/);
      });
      it('refuses two headers (array, or joined with a comma)', async () => {
        const a = await proof(key, clock);
        const b = await proof(key, clock);
        await rejects(v.verify([a, b], check), 'invalid_dpop_proof', /exactly one/);
        await rejects(v.verify([a], check), 'invalid_dpop_proof', /exactly one/);
        await rejects(v.verify(`${a}, ${b}`, check), 'invalid_dpop_proof', /exactly one/);
      });
    });

    describe('RFC 9449 §4.3 items 2–3: a well-formed JWT', () => {
      it('refuses garbage, two or four parts, padding, duplicate members, and an oversize proof', async () => {
        const good = await proof(key, clock);
        const [h, p, s] = good.split('.') as [string, string, string];
        for (const bad of ['x', `${h}.${p}`, `${good}.x`, `${h}=.${p}.${s}`, `${h}.${p}.`, 'a.b.c']) {
          await rejects(v.verify(bad, check), 'invalid_dpop_proof', /malformed/);
        }
        const dupHeader = Buffer.from(`{"typ":"dpop+jwt","alg":"ES256","alg":"ES256","jwk":${JSON.stringify(key.publicJwk)}}`).toString('base64url');
        await rejects(v.verify(`${dupHeader}.${p}.${s}`, check), 'invalid_dpop_proof', /duplicate/);
        const dupPayload = Buffer.from(`{"jti":"a","jti":"b","htm":"POST","htu":"${URL_}","iat":${Math.floor(clock.now() / 1000)}}`).toString('base64url');
        await rejects(v.verify(`${h}.${dupPayload}.${s}`, check), 'invalid_dpop_proof', /duplicate/);
        const big = await proof(key, clock, { claims: { pad: 'x'.repeat(9000) } });
        await rejects(v.verify(big, check), 'invalid_dpop_proof', /larger than 8192/);
      });
    });

    describe('RFC 9449 §4.3 item 4: typ', () => {
      it('refuses a wrong or missing typ', async () => {
        await rejects(v.verify(await proof(key, clock, { header: { typ: 'JWT' } }), check), 'invalid_dpop_proof', /typ/);
        await rejects(v.verify(await proof(key, clock, { header: { typ: 'at+jwt' } }), check), 'invalid_dpop_proof', /typ/);
        await rejects(v.verify(await proof(key, clock, { header: { typ: undefined } }), check), 'invalid_dpop_proof', /typ/);
      });
    });

    describe('RFC 9449 §4.3 item 5: an asymmetric alg the server supports', () => {
      it('refuses alg none in any case', async () => {
        const claims = { jti: randomUUID(), htm: 'POST', htu: URL_, iat: Math.floor(clock.now() / 1000) };
        for (const alg of ['none', 'None', 'NONE']) {
          await rejects(v.verify(rawJws({ alg, typ: 'dpop+jwt', jwk: key.publicJwk }, claims), check), 'invalid_dpop_proof', /alg/);
        }
      });
      it('refuses HS256, even keyed with the public key', async () => {
        const secret = Buffer.from(JSON.stringify(key.publicJwk));
        const p = await proof(key, clock, { header: { alg: 'HS256' }, signWith: secret });
        await rejects(v.verify(p, check), 'invalid_dpop_proof', /alg/);
      });
      it('refuses an alg not in the configured list', async () => {
        const only = new DpopVerifier({ replay: store, clock, algorithms: ['EdDSA'] });
        await rejects(only.verify(await proof(key, clock), check), 'invalid_dpop_proof', /alg/);
      });
      it('refuses a symmetric algorithm in the configuration', () => {
        assert.throws(() => new DpopVerifier({ replay: store, clock, algorithms: ['HS256'] }), TypeError);
        assert.throws(() => new DpopVerifier({ replay: store, clock, algorithms: ['none'] }), TypeError);
      });
    });

    describe('RFC 9449 §4.3 item 7: the jwk header is a public key', () => {
      it('refuses a private key in jwk', async () => {
        const p = await proof(key, clock, { header: { jwk: key.privateJwk } });
        await rejects(v.verify(p, check), 'invalid_dpop_proof', /public key/);
        const rsa = await newKey('RS256');
        const { d: _d, ...withoutD } = rsa.privateJwk;
        const p2 = await proof(rsa, clock, { header: { jwk: withoutD } });
        await rejects(v.verify(p2, check), 'invalid_dpop_proof', /public key/);
      });
      it('refuses a missing jwk, an oct jwk, and a jwk that does not fit alg', async () => {
        await rejects(v.verify(await proof(key, clock, { header: { jwk: undefined } }), check), 'invalid_dpop_proof', /jwk/);
        const oct = rawJws({ alg: 'ES256', typ: 'dpop+jwt', jwk: { kty: 'oct', k: 'c2VjcmV0' } }, { jti: 'x' });
        await rejects(v.verify(oct, check), 'invalid_dpop_proof', /jwk/);
        const ed = await newKey('EdDSA');
        await rejects(v.verify(await proof(key, clock, { header: { jwk: ed.publicJwk } }), check), 'invalid_dpop_proof', /fit/);
        await rejects(v.verify(await proof(key, clock, { header: { jwk: { ...key.publicJwk, use: 'enc' } } }), check), 'invalid_dpop_proof', /fit/);
      });
    });

    describe('RFC 9449 §4.3 item 6: the signature verifies with the jwk', () => {
      it('refuses a proof signed by another key than the one in its header', async () => {
        const other = await newKey();
        await rejects(v.verify(await proof(key, clock, { signWith: other.privateKey }), check), 'invalid_dpop_proof', /signature/);
      });
      it('refuses a proof whose payload was changed after signing', async () => {
        const [h, , s] = (await proof(key, clock)).split('.') as [string, string, string];
        const p = b64({ jti: randomUUID(), htm: 'POST', htu: URL_, iat: Math.floor(clock.now() / 1000) });
        await rejects(v.verify(`${h}.${p}.${s}`, check), 'invalid_dpop_proof', /signature/);
      });
    });

    describe('RFC 9449 §4.3 items 8–9: required claims, htm and htu', () => {
      it('refuses a missing jti, htm, htu or iat', async () => {
        for (const c of ['jti', 'htm', 'htu', 'iat']) {
          await rejects(v.verify(await proof(key, clock, { omit: [c] }), check), 'invalid_dpop_proof', new RegExp(c));
        }
        await rejects(v.verify(await proof(key, clock, { claims: { jti: 'j'.repeat(300) } }), check), 'invalid_dpop_proof', /jti/);
      });
      it('refuses an htm that is not the method (compared exactly)', async () => {
        await rejects(v.verify(await proof(key, clock, { claims: { htm: 'GET' } }), check), 'invalid_dpop_proof', /htm/);
        await rejects(v.verify(await proof(key, clock, { claims: { htm: 'post' } }), check), 'invalid_dpop_proof', /htm/);
      });
      it('refuses an htu for another host or another path', async () => {
        await rejects(v.verify(await proof(key, clock, { claims: { htu: 'https://evil.example.com/oauth/token' } }), check), 'invalid_dpop_proof', /htu/);
        await rejects(v.verify(await proof(key, clock, { claims: { htu: 'https://as.example.com/oauth/revoke' } }), check), 'invalid_dpop_proof', /htu/);
        await rejects(v.verify(await proof(key, clock, { claims: { htu: 'http://as.example.com/oauth/token' } }), check), 'invalid_dpop_proof', /htu/);
        await rejects(v.verify(await proof(key, clock, { claims: { htu: 'https://as.example.com:8443/oauth/token' } }), check), 'invalid_dpop_proof', /htu/);
        await rejects(v.verify(await proof(key, clock, { claims: { htu: '/oauth/token' } }), check), 'invalid_dpop_proof', /htu/);
      });
      it('ignores the query and fragment, normalizes default port and case', async () => {
        for (const htu of [`${URL_}?a=1`, `${URL_}#frag`, 'HTTPS://AS.EXAMPLE.COM:443/oauth/token', 'https://as.example.com/oauth/%74oken']) {
          await v.verify(await proof(key, clock, { claims: { htu } }), check);
        }
        await v.verify(await proof(key, clock), { method: 'POST', url: 'https://AS.example.com:443/oauth/token?x=y' });
      });
    });

    describe('RFC 9449 §4.3 item 11: iat within the window', () => {
      it('accepts iat up to maxAge + skew old and skew in the future', async () => {
        const now = Math.floor(clock.now() / 1000);
        await v.verify(await proof(key, clock, { claims: { iat: now - 64 } }), check);
        await v.verify(await proof(key, clock, { claims: { iat: now + 4 } }), check);
      });
      it('refuses iat too old or in the future', async () => {
        const now = clock.now() / 1000;
        await rejects(v.verify(await proof(key, clock, { claims: { iat: Math.floor(now) - 120 } }), check), 'invalid_dpop_proof', /older/);
        await rejects(v.verify(await proof(key, clock, { claims: { iat: Math.ceil(now) + 60 } }), check), 'invalid_dpop_proof', /future/);
        await rejects(v.verify(await proof(key, clock, { claims: { iat: String(Math.floor(now)) } }), check), 'invalid_dpop_proof', /iat/);
      });
    });

    describe('RFC 9449 §4.3 item 12 / §7.1: ath and the bound key at a resource', () => {
      const token = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln';
      const at = { method: 'GET', url: 'https://mcp.example.com/tools/github/x' };
      it('accepts a matching ath and jkt', async () => {
        const p = await proof(key, clock, { claims: { htm: 'GET', htu: at.url, ath: athFor(token) } });
        const r = await v.verify(p, { ...at, accessToken: token, expectedJkt: key.jkt });
        assert.equal(r.jkt, key.jkt);
      });
      it('refuses an ath that is missing or for another token', async () => {
        await rejects(v.verify(await proof(key, clock, { claims: { htm: 'GET', htu: at.url } }), { ...at, accessToken: token }), 'invalid_dpop_proof', /ath/);
        const wrong = await proof(key, clock, { claims: { htm: 'GET', htu: at.url, ath: athFor(`${token}x`) } });
        await rejects(v.verify(wrong, { ...at, accessToken: token }), 'invalid_dpop_proof', /ath/);
      });
      it('refuses a key whose thumbprint is not the bound jkt', async () => {
        const other = await newKey();
        const p = await proof(other, clock, { claims: { htm: 'GET', htu: at.url, ath: athFor(token) } });
        await rejects(v.verify(p, { ...at, accessToken: token, expectedJkt: key.jkt }), 'invalid_dpop_proof', /bound/);
      });
      it('computes ath as base64url(SHA-256(token)) (RFC 9449 §4.2 example)', () => {
        // The example of RFC 9449 §7.1.
        assert.equal(athFor('Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU'), 'fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo');
      });
    });

    describe('RFC 9449 §11.1: replay', () => {
      it('refuses a proof used twice, and does not echo it', async () => {
        const p = await proof(key, clock);
        await v.verify(p, check);
        await assert.rejects(v.verify(p, check), (err: unknown) => {
          assert.ok(err instanceof OAuthError && err.error === 'invalid_dpop_proof' && /replayed/.test(err.message));
          assert.ok(!err.message.includes(p.split('.')[1]!));
          return true;
        });
      });
      it('refuses the same jti again from the same key even in a different proof', async () => {
        const jti = randomUUID();
        await v.verify(await proof(key, clock, { claims: { jti } }), check);
        await rejects(v.verify(await proof(key, clock, { claims: { jti, extra: 1 } }), check), 'invalid_dpop_proof', /replayed/);
        // Another key may use the same jti.
        await v.verify(await proof(await newKey(), clock, { claims: { jti } }), check);
      });
      it('lets a failed check consume nothing', async () => {
        const p = await proof(key, clock, { claims: { htm: 'GET' } });
        await rejects(v.verify(p, check), 'invalid_dpop_proof', /htm/);
        await v.verify(p, { method: 'GET', url: URL_ });
      });
      it(`50 parallel verifications of the same proof: exactly one succeeds (two Store instances)`, async () => {
        const peer = await d.openPeer(store, { clock });
        try {
          const v2 = new DpopVerifier({ replay: peer, clock });
          const p = await proof(key, clock);
          const results = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => (i % 2 ? v2 : v).verify(p, check)));
          const ok = results.filter((r) => r.status === 'fulfilled');
          assert.equal(ok.length, 1);
          for (const r of results) {
            if (r.status === 'rejected') assert.match((r.reason as OAuthError).message, /replayed/);
          }
        } finally {
          await peer.close();
        }
      });
    });

    describe('RFC 9449 §8: server nonces', () => {
      let nclock: ManualClock;
      let nonces: DpopNonces;
      let nv: DpopVerifier;
      before(() => {
        nclock = new ManualClock(clock.now());
        nonces = new DpopNonces(randomBytes(32), nclock, { windowS: 300 });
        nv = new DpopVerifier({ replay: store, clock: nclock, nonces, requireNonce: true });
      });

      it('refuses a proof without the required nonce with use_dpop_nonce, and currentNonce() gives one', async () => {
        await rejects(nv.verify(await proof(key, nclock), check), 'use_dpop_nonce', /DPoP-Nonce/);
        const nonce = nv.currentNonce();
        assert.ok(nonces.isValid(nonce));
        await nv.verify(await proof(key, nclock, { claims: { nonce } }), check);
      });
      it('refuses a nonce from another secret', async () => {
        const foreign = new DpopNonces(randomBytes(32), nclock).current();
        await rejects(nv.verify(await proof(key, nclock, { claims: { nonce: foreign } }), check), 'use_dpop_nonce');
        await rejects(nv.verify(await proof(key, nclock, { claims: { nonce: 'made-up' } }), check), 'use_dpop_nonce');
        await rejects(nv.verify(await proof(key, nclock, { claims: { nonce: 7 } }), check), 'invalid_dpop_proof', /nonce/);
      });
      it('accepts a nonce of the previous window, refuses one two windows old', async () => {
        const nonce = nv.currentNonce();
        nclock.advance(300_000);
        await nv.verify(await proof(key, nclock, { claims: { nonce } }), check);
        nclock.advance(300_000);
        await rejects(nv.verify(await proof(key, nclock, { claims: { nonce } }), check), 'use_dpop_nonce');
      });
      it('checks a nonce that is present even when not required', async () => {
        const optional = new DpopVerifier({ replay: store, clock: nclock, nonces });
        await optional.verify(await proof(key, nclock), check);
        await optional.verify(await proof(key, nclock, { claims: { nonce: optional.currentNonce() } }), check);
        await rejects(optional.verify(await proof(key, nclock, { claims: { nonce: 'stale' } }), check), 'use_dpop_nonce');
      });
      it('refuses requireNonce without nonces', () => {
        assert.throws(() => new DpopVerifier({ replay: store, clock, requireNonce: true }), TypeError);
      });
    });
  });
}
