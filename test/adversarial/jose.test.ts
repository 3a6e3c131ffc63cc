/**
 * Adversarial: JOSE. The JWS guards and Mandate's own access-token verification against the
 * classic attacks (alg none and algorithm confusion, duplicate members, `crit`, `b64: false`,
 * keys embedded in or pointed to by the header, oversized tokens, bad base64url), and a
 * fast-check differential fuzz against jose: random mutations of valid tokens, re-signed so
 * that the signature is not what refuses them, must be accepted or refused alike, or refused
 * by Mandate only for one of the reasons written down below (Mandate is stricter, never laxer).
 *
 * Also covered elsewhere, per verifier: DPoP proofs (test/broker/dpop.test.ts: alg none, HS256,
 * private or symmetric jwk, duplicates, padding, size), client assertions
 * (test/broker/client-assertion.test.ts: embedded jwk, jku/x5u/x5c, HS256 with the public key,
 * alg none, size, duplicates, foreign typ), federated workload tokens (test/broker/
 * federation.test.ts: RFC 8725 §2.1/§3.1/§3.8/§3.10, crit, size, duplicates), SETs
 * (test/signals/receiver.test.ts).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, generateKeyPairSync, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify, type JWK } from 'jose';
import { ManualClock, OAuthError } from '../../src/core/index.js';
import { AccessTokenVerifier } from '../../src/jose/access-token.js';
import { assertJwsShape } from '../../src/jose/jwt-guard.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { agentNhi, testAgent, type TestAgent } from '../helpers/agent.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import { callTool, clientCredentials } from '../helpers/oauth.js';

const ISS = 'https://mandate.example.com';
const NOW_MS = 1_900_000_000_000;
const NOW = NOW_MS / 1000;
const SKEW = 5;
const MAX_BYTES = 8192;

interface Key {
  privateKey: KeyObject;
  publicJwk: JWK;
}

function ecKey(kid: string): Key {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { privateKey, publicJwk: { ...(publicKey.export({ format: 'jwk' }) as JWK), kid, alg: 'ES256', use: 'sig' } };
}

const b64u = (b: Buffer | string) => Buffer.from(b).toString('base64url');

/** ES256 over the exact signing input, R || S (RFC 7518 §3.4). */
function es256(input: string, key: KeyObject): string {
  return b64u(cryptoSign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }));
}

// ---------------------------------------------------------------------------- token model

type TextForm = 'plain' | 'spaced' | 'dup-first' | 'dup-last' | 'bom' | 'bad-utf8';
type Encoding = 'canonical' | 'padded' | 'std-alphabet' | 'trailing-bits' | 'whitespace';
type SigForm = 'valid' | 'flipped' | 'empty' | 'der' | 'hmac-public-key' | 'other-key';

interface Spec {
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
  headerText: TextForm;
  payloadText: TextForm;
  encoding: Encoding;
  sig: SigForm;
  extraPart: boolean;
  oversize: boolean;
  /** A character of the final token replaced (after signing). */
  charFlip: { at: number; ch: string } | null;
}

/** JSON text of `obj` in a given form; `dupName` is the member duplicated by the dup forms. */
function jsonBytes(obj: Record<string, unknown>, form: TextForm, dup: [string, unknown]): Buffer {
  const json = JSON.stringify(obj);
  const member = `${JSON.stringify(dup[0])}:${JSON.stringify(dup[1])}`;
  switch (form) {
    case 'plain':
      return Buffer.from(json);
    case 'spaced':
      return Buffer.from(JSON.stringify(obj, null, 1));
    case 'dup-first':
      return Buffer.from(json === '{}' ? `{${member}}` : `{${member},${json.slice(1)}`);
    case 'dup-last':
      return Buffer.from(json === '{}' ? `{${member}}` : `${json.slice(0, -1)},${member}}`);
    case 'bom':
      return Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(json)]);
    case 'bad-utf8':
      return Buffer.concat([Buffer.from(json === '{}' ? '{"z":"' : `${json.slice(0, -1)},"z":"`), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]);
  }
}

function encodePart(bytes: Buffer, e: Encoding): string {
  const c = b64u(bytes);
  switch (e) {
    case 'canonical':
      return c;
    case 'padded':
      return bytes.toString('base64');
    case 'std-alphabet':
      return c.replace(/-/g, '+').replace(/_/g, '/');
    case 'trailing-bits': {
      // The last character carries unused low bits (RFC 4648 §3.5); setting one decodes to the same bytes.
      if (c.length % 4 === 0) return c;
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
      const v = alphabet.indexOf(c.at(-1)!);
      return c.slice(0, -1) + alphabet[v | 1];
    }
    case 'whitespace':
      return `${c.slice(0, 4)}\n${c.slice(4)}`;
  }
}

function build(s: Spec, key: Key, other: Key): string {
  const payload = s.oversize ? { ...s.payload, pad: 'x'.repeat(MAX_BYTES + 100) } : s.payload;
  const h = encodePart(jsonBytes(s.header, s.headerText, ['alg', 'none']), s.encoding);
  const p = encodePart(jsonBytes(payload, s.payloadText, ['sub', 'someone-else']), s.encoding === 'whitespace' ? 'canonical' : s.encoding);
  const input = `${h}.${p}`;
  let sig: string;
  switch (s.sig) {
    case 'valid':
      sig = es256(input, key.privateKey);
      break;
    case 'flipped': {
      const raw = Buffer.from(es256(input, key.privateKey), 'base64url');
      raw[5]! ^= 1;
      sig = b64u(raw);
      break;
    }
    case 'empty':
      sig = '';
      break;
    case 'der':
      sig = b64u(cryptoSign('sha256', Buffer.from(input), key.privateKey));
      break;
    case 'hmac-public-key':
      sig = b64u(createHmac('sha256', JSON.stringify(key.publicJwk)).update(input).digest());
      break;
    case 'other-key':
      sig = es256(input, other.privateKey);
      break;
  }
  let token = `${input}.${sig}${s.extraPart ? '.AAAA' : ''}`;
  if (s.charFlip) {
    const at = s.charFlip.at % token.length;
    token = token.slice(0, at) + s.charFlip.ch + token.slice(at + 1);
  }
  return token;
}

/** A valid access token's spec: what every mutation starts from. */
function validSpec(): Spec {
  return {
    header: { alg: 'ES256', typ: 'at+jwt', kid: 'k1' },
    payload: { iss: ISS, sub: 'alice', aud: `${ISS}/tools/rec`, exp: NOW + 300, iat: NOW, jti: 'at_x', scope: 'list_items' },
    headerText: 'plain', payloadText: 'plain', encoding: 'canonical', sig: 'valid', extraPart: false, oversize: false, charFlip: null,
  };
}

const ATTACKER_JWK = { kty: 'EC', crv: 'P-256', x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU', y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0' };
const DELETE = Symbol('delete');

/** One change to a spec; a token is a valid one with up to three of them. */
const mutationArb: fc.Arbitrary<(s: Spec) => void> = fc.oneof(
  fc.record({
    name: fc.constantFrom('alg', 'typ', 'kid', 'crit', 'b64', 'jwk', 'jku', 'x5u', 'x5c', 'cty', 'zip'),
    value: fc.constantFrom<unknown>(DELETE, 'none', 'NONE', 'HS256', 'ES384', 'RS256', 'EdDSA', '', 5, 'AT+JWT', 'application/at+jwt', 'JWT', 'dpop+jwt', 'k2',
      [], ['b64'], ['exp'], false, true, ATTACKER_JWK, 'http://127.0.0.1:9/attacker', ['MIIB'], 'DEF', null),
  }).map(({ name, value }) => (s: Spec) => {
    if (value === DELETE) delete s.header[name];
    else s.header[name] = value;
  }),
  fc.record({
    name: fc.constantFrom('iss', 'sub', 'aud', 'exp', 'nbf', 'iat', 'jti', 'scope', 'x', '__proto__', 'constructor'),
    value: fc.oneof(
      fc.constantFrom<unknown>(DELETE, ISS, 'https://evil.example', 'alice', NOW + 300, NOW - 3, NOW - SKEW, NOW - 60, NOW + 3, NOW + 60, 'soon', null, 7, [ISS], {}),
      fc.jsonValue({ maxDepth: 2 }),
    ),
  }).map(({ name, value }) => (s: Spec) => {
    if (value === DELETE) delete s.payload[name];
    else Object.defineProperty(s.payload, name, { value, enumerable: true, configurable: true, writable: true });
  }),
  fc.constantFrom<TextForm>('spaced', 'dup-first', 'dup-last', 'bom', 'bad-utf8').map((f) => (s: Spec) => void (s.headerText = f)),
  fc.constantFrom<TextForm>('spaced', 'dup-first', 'dup-last', 'bom', 'bad-utf8').map((f) => (s: Spec) => void (s.payloadText = f)),
  fc.constantFrom<Encoding>('padded', 'std-alphabet', 'trailing-bits', 'whitespace').map((e) => (s: Spec) => void (s.encoding = e)),
  fc.constantFrom<SigForm>('flipped', 'empty', 'der', 'hmac-public-key', 'other-key').map((g) => (s: Spec) => void (s.sig = g)),
  fc.constant((s: Spec) => void (s.extraPart = true)),
  fc.constant((s: Spec) => void (s.oversize = true)),
  fc.record({ at: fc.nat(), ch: fc.constantFrom('A', 'a', '-', '_', '.', '=', ' ', 'é', '+', '/') }).map((f) => (s: Spec) => void (s.charFlip = f)),
);

const specArb = (): fc.Arbitrary<Spec> => fc.array(mutationArb, { maxLength: 3 }).map((ms) => {
  const s = validSpec();
  for (const m of ms) m(s);
  return s;
});

// ---------------------------------------------------------------------------- the documented stricter reasons

const B64URL = /^[A-Za-z0-9_-]*$/;
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Duplicate member names anywhere in a JSON text: an independent scanner (not Mandate's). */
function duplicateMembers(text: string): boolean {
  let i = 0;
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++;
  };
  const str = (): string => {
    let out = '';
    i++; // opening quote
    while (i < text.length && text[i] !== '"') {
      if (text[i] === '\\') {
        out += text.slice(i, i + 2);
        i += 2;
      } else out += text[i++];
    }
    i++;
    return JSON.parse(`"${out}"`) as string;
  };
  let dup = false;
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const seen = new Set<string>();
      ws();
      if (text[i] === '}') {
        i++;
        return;
      }
      for (;;) {
        ws();
        const k = str();
        if (seen.has(k)) dup = true;
        seen.add(k);
        ws();
        i++; // colon
        value();
        ws();
        if (text[i++] === '}') return;
      }
    } else if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') {
        i++;
        return;
      }
      for (;;) {
        value();
        ws();
        if (text[i++] === ']') return;
      }
    } else if (c === '"') str();
    else while (i < text.length && !',}] \t\n\r'.includes(text[i]!)) i++;
  };
  try {
    value();
  } catch {
    return false;
  }
  return dup;
}

/**
 * Why Mandate may refuse a token jose accepts: each a rule Mandate applies on purpose.
 * - `size`: a cap before any parsing (8 KiB for access tokens): jose has none.
 * - `base64url`: RFC 7515 §2 base64url without padding, whitespace or the standard alphabet,
 *   and one encoding per value (no stray low bits, RFC 4648 §3.5): jose's decoder is lenient.
 * - `utf8`: strict UTF-8 without a BOM (RFC 8259 §8.1): jose's decoder replaces bad bytes and drops a BOM.
 * - `duplicates`: duplicate member names are refused (RFC 7515 §5.2 item 4 allows either
 *   refusing or taking the last; refusing means no two parsers can disagree): jose takes the last.
 * - `crit`: no JWS extension is understood, so any `crit` is refused (RFC 7515 §4.1.11): jose
 *   understands `b64`.
 */
function stricterReasons(token: string): string[] {
  const reasons: string[] = [];
  if (token.length > MAX_BYTES) reasons.push('size');
  const parts = token.split('.');
  // All three parts: the signature is base64url too (RFC 7515 §7.1).
  for (const part of parts.slice(0, 3)) {
    if (!B64URL.test(part) || Buffer.from(part, 'base64url').toString('base64url') !== part) reasons.push('base64url');
  }
  for (const part of parts.slice(0, 2)) {
    const bytes = Buffer.from(part.replace(/\s/g, ''), part.includes('+') || part.includes('/') ? 'base64' : 'base64url');
    let text: string;
    try {
      text = strictUtf8.decode(bytes);
    } catch {
      reasons.push('utf8');
      continue;
    }
    if (text.charCodeAt(0) === 0xfeff) reasons.push('utf8');
    if (duplicateMembers(text)) reasons.push('duplicates');
  }
  try {
    if (decodeProtectedHeader(token).crit !== undefined) reasons.push('crit');
  } catch {
    // jose cannot read the header: then it refused the token too.
  }
  return reasons;
}

// ---------------------------------------------------------------------------- the two sides

describe('adversarial: JOSE (JWS guards and access-token verification)', () => {
  const key = ecKey('k1');
  const other = ecKey('k1');
  const jwks = { keys: [key.publicJwk as Record<string, unknown>] };
  const clock = new ManualClock(NOW_MS);
  const ours = new AccessTokenVerifier({ issuer: () => ISS, jwks: () => jwks, clock, skewS: SKEW, maxBytes: MAX_BYTES, cacheSize: 0 });
  const joseKeys = createLocalJWKSet(jwks as never);

  const oursVerify = async (token: string): Promise<{ ok: true; claims: Record<string, unknown> } | { ok: false; why: string }> => {
    try {
      return { ok: true, claims: (await ours.verify(token)) as unknown as Record<string, unknown> };
    } catch (err) {
      if (!(err instanceof OAuthError)) throw err;
      return { ok: false, why: err.message };
    }
  };
  const joseVerify = async (token: string): Promise<{ ok: true; claims: Record<string, unknown> } | { ok: false; why: string }> => {
    try {
      const r = await jwtVerify(token, joseKeys, {
        issuer: ISS, typ: 'at+jwt', algorithms: ['ES256', 'EdDSA'], clockTolerance: SKEW, currentDate: new Date(NOW_MS),
        requiredClaims: ['exp', 'iat', 'jti', 'sub', 'aud'],
      });
      return { ok: true, claims: r.payload as Record<string, unknown> };
    } catch (err) {
      return { ok: false, why: (err as { code?: string }).code ?? String(err) };
    }
  };
  const valid = (over: Partial<Spec> = {}): Spec => ({ ...validSpec(), ...over });

  describe('the classic attacks, one by one (signed with the real key where the signature is not the point)', () => {
    const refusedByBoth = async (s: Spec, what: string) => {
      const token = build(s, key, other);
      assert.equal((await oursVerify(token)).ok, false, `Mandate accepted ${what}`);
      assert.equal((await joseVerify(token)).ok, false, `jose accepted ${what}`);
    };
    const refusedByMandate = async (s: Spec, what: string) => {
      const r = await oursVerify(build(s, key, other));
      assert.equal(r.ok, false, `Mandate accepted ${what}`);
    };

    it('the valid token is accepted by both, with the same claims', async () => {
      const token = build(valid(), key, other);
      const [a, b] = [await oursVerify(token), await joseVerify(token)];
      assert.ok(a.ok && b.ok);
      assert.deepEqual(a.claims, b.claims);
    });

    it('RFC 8725 §3.1 / RFC 7518 §3.6: alg none (any case, no signature) is refused', async () => {
      for (const alg of ['none', 'None', 'NONE']) await refusedByBoth(valid({ header: { alg, typ: 'at+jwt' }, sig: 'empty' }), `alg ${alg}`);
    });

    it('RFC 8725 §2.1 algorithm confusion: HS256 keyed with the public key, and an alg the key does not fit, are refused', async () => {
      await refusedByBoth(valid({ header: { alg: 'HS256', typ: 'at+jwt', kid: 'k1' }, sig: 'hmac-public-key' }), 'HS256 with the public key');
      for (const alg of ['ES384', 'RS256', 'PS256', 'EdDSA']) await refusedByBoth(valid({ header: { alg, typ: 'at+jwt', kid: 'k1' } }), `${alg} with an ES256 key`);
    });

    it('RFC 7515 §5.2: duplicate member names are refused (jose takes the last; Mandate refuses)', async () => {
      await refusedByMandate(valid({ headerText: 'dup-first' }), 'a header with a duplicate alg');
      await refusedByMandate(valid({ payloadText: 'dup-last' }), 'a payload with a duplicate sub');
      // The attack duplicates make: jose reads the last sub, someone else's, from a validly signed token.
      const r = await joseVerify(build(valid({ payloadText: 'dup-last' }), key, other));
      assert.ok(r.ok && r.claims.sub === 'someone-else', 'jose takes the last member (why Mandate refuses)');
    });

    it('RFC 7515 §4.1.11: crit is refused, whatever it names; b64 = false (RFC 7797) never changes what is verified', async () => {
      await refusedByMandate(valid({ header: { alg: 'ES256', typ: 'at+jwt', crit: ['b64'], b64: true } }), 'crit b64 (true)');
      await refusedByBoth(valid({ header: { alg: 'ES256', typ: 'at+jwt', crit: ['b64'], b64: false } }), 'crit b64 false');
      await refusedByBoth(valid({ header: { alg: 'ES256', typ: 'at+jwt', crit: ['exp'] } }), 'crit exp');
      await refusedByBoth(valid({ header: { alg: 'ES256', typ: 'at+jwt', crit: [] } }), 'crit []');
      // Without crit, b64 is an unknown header parameter: ignored; the payload is base64url as always.
      const token = build(valid({ header: { alg: 'ES256', typ: 'at+jwt', b64: false } }), key, other);
      assert.equal((await oursVerify(token)).ok, true);
      assert.equal((await joseVerify(token)).ok, true);
    });

    it('RFC 8725 §3.10 / RFC 7515 §4.1.2–4.1.6: keys embedded in or pointed to by the header are never used', async () => {
      // Signed by an attacker key that the header carries or points to: refused.
      for (const extra of [{ jwk: other.publicJwk }, { jku: 'http://127.0.0.1:9/jwks' }, { x5u: 'http://127.0.0.1:9/x.pem' }, { x5c: ['MIIB'] }]) {
        await refusedByBoth(valid({ header: { alg: 'ES256', typ: 'at+jwt', kid: 'k1', ...extra }, sig: 'other-key' }), `an attacker key in ${Object.keys(extra)[0]}`);
      }
      // Signed by the real key with an attacker jwk alongside: accepted, because the jwk is ignored (nothing trusted from it).
      const token = build(valid({ header: { alg: 'ES256', typ: 'at+jwt', kid: 'k1', jwk: other.publicJwk } }), key, other);
      assert.equal((await oursVerify(token)).ok, true);
    });

    it('oversized tokens are refused before parsing; bad base64url (padding, standard alphabet, whitespace, stray bits) is refused', async () => {
      await refusedByMandate(valid({ oversize: true }), 'a 9 KiB token');
      let changed = 0;
      for (const encoding of ['padded', 'std-alphabet', 'trailing-bits', 'whitespace'] as const) {
        // Claims whose JSON encodes to '+', '/', padding and stray bits.
        for (const sub of ['alice?>', 'alice??>>', 'a~~~']) {
          const s = valid({ encoding, payload: { iss: ISS, sub, aud: `${ISS}/tools/rec`, exp: NOW + 300, iat: NOW, jti: 'at_x' } });
          if (!stricterReasons(build(s, key, other)).includes('base64url')) continue; // this encoding changed nothing here
          changed++;
          await refusedByMandate(s, `${encoding} base64url (sub ${sub})`);
        }
      }
      assert.ok(changed >= 4, `the encodings were exercised (${changed})`);
    });

    it('a BOM or bytes that are not UTF-8 in the header or payload are refused', async () => {
      await refusedByMandate(valid({ headerText: 'bom' }), 'a BOM in the header');
      await refusedByMandate(valid({ payloadText: 'bad-utf8' }), 'invalid UTF-8 in the payload');
    });
  });

  it('differential fuzz: AccessTokenVerifier vs jose jwtVerify on random mutations of valid tokens: same verdict and claims, or Mandate stricter for a documented reason', async (t) => {
    let bothAccepted = 0;
    let bothRefused = 0;
    let stricter = 0;
    await fc.assert(
      fc.asyncProperty(specArb(), async (s) => {
        const token = build(s, key, other);
        const [a, b] = [await oursVerify(token), await joseVerify(token)];
        if (a.ok && b.ok) {
          bothAccepted++;
          assert.deepEqual(a.claims, b.claims, 'both accepted: they must read the same claims');
        } else if (!a.ok && !b.ok) {
          bothRefused++;
        } else if (a.ok) {
          assert.fail(`Mandate accepted what jose refused (${b.ok ? '' : b.why}): ${JSON.stringify(s).slice(0, 600)}`);
        } else {
          const reasons = stricterReasons(token);
          assert.ok(reasons.length > 0, `Mandate refused (${a.why}) what jose accepted, for no documented reason: ${JSON.stringify(s).slice(0, 600)}`);
          stricter++;
        }
      }),
      { numRuns: 600, seed: 15_2026 },
    );
    t.diagnostic(`both accepted ${bothAccepted}, both refused ${bothRefused}, Mandate stricter ${stricter}`);
    assert.ok(bothAccepted > 20 && bothRefused > 20 && stricter > 10, `the generator reaches every verdict (accepted ${bothAccepted}, refused ${bothRefused}, stricter ${stricter})`);
  });

  it('differential fuzz: the RFC 8725 guard (assertJwsShape) reads exactly what jose decodes, or refuses for a documented reason', (t) => {
    let agreed = 0;
    fc.assert(
      fc.property(specArb(), (s) => {
        const token = build(s, key, other);
        let mine: { header: Record<string, unknown>; payload: Record<string, unknown> } | undefined;
        try {
          mine = assertJwsShape(token, { algorithms: ['ES256', 'EdDSA'], maxBytes: MAX_BYTES });
        } catch {
          mine = undefined;
        }
        let theirs: { header: Record<string, unknown>; payload: Record<string, unknown> } | undefined;
        try {
          theirs = { header: decodeProtectedHeader(token) as Record<string, unknown>, payload: decodeJwt(token) as Record<string, unknown> };
        } catch {
          theirs = undefined;
        }
        if (mine) {
          assert.ok(theirs, `the guard read a token jose cannot decode: ${JSON.stringify(s).slice(0, 600)}`);
          assert.deepEqual(mine.header, theirs.header, 'the same header');
          assert.deepEqual(mine.payload, theirs.payload, 'the same payload');
          agreed++;
        } else if (theirs) {
          // The guard's own policy (pinned alg, no none, kid a string, a signature part) or a stricter parse.
          const alg = theirs.header.alg;
          const policy = typeof alg !== 'string' || alg === '' || alg.trim().toLowerCase() === 'none' || !['ES256', 'EdDSA'].includes(alg)
            || (theirs.header.kid !== undefined && typeof theirs.header.kid !== 'string') || token.endsWith('.');
          assert.ok(policy || stricterReasons(token).length > 0, `the guard refused what jose decodes, for no documented reason: ${JSON.stringify(s).slice(0, 600)}`);
        }
      }),
      { numRuns: 1000, seed: 15_2027 },
    );
    t.diagnostic(`both read ${agreed} of 1000`);
    assert.ok(agreed > 50, `the generator reaches tokens both read (${agreed})`);
  });
});

describe('adversarial: JOSE at the proxy (a real token, forged)', () => {
  let t: TestApp;
  let rec: RecordingUpstream;
  let alice: TestAgent;
  let attackerJwks: Server;
  let attackerHits = 0;
  let attackerUrl: string;

  before(async () => {
    rec = await startRecordingUpstream();
    alice = await testAgent('alice');
    attackerJwks = createServer((_req, res) => {
      attackerHits++;
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"keys":[]}');
    });
    await new Promise<void>((r) => attackerJwks.listen(0, '127.0.0.1', r));
    attackerUrl = `http://127.0.0.1:${(attackerJwks.address() as AddressInfo).port}`;
    t = await startTestApp(undefined, {
      tokens: { profiles: [{ name: 'read', ttl: '10m', binding: 'optional' }] },
      nhis: [agentNhi(alice)],
      tools: [{ id: 'rec', kind: 'http', upstream: rec.url, actions: [{ name: 'list_items', method: 'GET', path: '/items', tier: 'read' }] }],
      grants: [{ nhi: 'alice', tool: 'rec', actions: ['*'] }],
    });
  });
  after(async () => {
    await t.app.close();
    await rec.close();
    await new Promise<void>((r) => attackerJwks.close(() => r()));
  });

  it('alg none, HS256 with the broker\'s public key, an embedded or pointed-to attacker key, crit, duplicates, oversize and bad base64url: 401, the tool never sees it, nothing is fetched', async () => {
    const iss = t.app.issuer;
    const real = await clientCredentials(iss, alice, { resource: `${iss}/tools/rec`, scope: 'list_items' });
    assert.equal(real.status, 200, JSON.stringify(real.body));
    const token = real.body.access_token as string;
    assert.equal((await callTool(iss, 'rec', '/items', token)).status, 200);
    const [h, p, s] = token.split('.') as [string, string, string];
    const header = JSON.parse(Buffer.from(h, 'base64url').toString()) as Record<string, unknown>;
    const payload = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
    const brokerJwk = ((await (await fetch(`${iss}/oauth/jwks`)).json()) as { keys: JWK[] }).keys[0]!;
    const attacker = ecKey(String(header.kid));
    const enc = (o: unknown) => b64u(JSON.stringify(o));
    const signed = (hd: Record<string, unknown>, pl: Record<string, unknown>, k: KeyObject) => {
      const input = `${enc(hd)}.${enc(pl)}`;
      return `${input}.${es256(input, k)}`;
    };
    const wider = { ...payload, scope: 'list_items admin' };
    const forgeries: Array<[string, string]> = [
      ['alg none', `${enc({ ...header, alg: 'none' })}.${enc(wider)}.`],
      ['alg none with the old signature', `${enc({ ...header, alg: 'none' })}.${p}.${s}`],
      ['HS256 keyed with the broker public JWK', (() => {
        const input = `${enc({ ...header, alg: 'HS256' })}.${enc(wider)}`;
        return `${input}.${b64u(createHmac('sha256', JSON.stringify(brokerJwk)).update(input).digest())}`;
      })()],
      ['an attacker key embedded as jwk', signed({ ...header, jwk: attacker.publicJwk }, wider, attacker.privateKey)],
      ['an attacker JWKS in jku', signed({ ...header, jku: `${attackerUrl}/jwks` }, wider, attacker.privateKey)],
      ['an attacker certificate URL in x5u', signed({ ...header, x5u: `${attackerUrl}/cert.pem` }, wider, attacker.privateKey)],
      ['crit naming b64 with b64 false', `${enc({ ...header, crit: ['b64'], b64: false })}.${JSON.stringify(wider)}.${s}`],
      ['a duplicate scope after the signed one', `${h}.${b64u(`${Buffer.from(p, 'base64url').toString().slice(0, -1)},"scope":"list_items admin"}`)}.${s}`],
      ['a 9 KiB token', `${h}.${enc({ ...payload, pad: 'x'.repeat(9000) })}.${s}`],
      ['padding', `${h}=.${p}.${s}`],
      ['the standard alphabet', `${h.replace(/-/g, '+').replace(/_/g, '/')}.${p.replace(/-/g, '+').replace(/_/g, '/')}+.${s}`],
      ['four parts', `${h}.${p}.${s}.${s}`],
      ['a signature of another token', `${h}.${enc(wider)}.${s}`],
    ];
    const seen = rec.seen.length;
    for (const [what, forged] of forgeries) {
      const r = await callTool(iss, 'rec', '/items', forged);
      assert.equal(r.status, 401, `${what}: ${JSON.stringify(r)}`);
      assert.equal(r.error, 'invalid_token', what);
    }
    assert.equal(rec.seen.length, seen, 'no forged token reached the tool');
    assert.equal(attackerHits, 0, 'no key was fetched from a URL a token named');
  });
});
