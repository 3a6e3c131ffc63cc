import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { createLocalJWKSet, jwtVerify, compactVerify, decodeProtectedHeader } from 'jose';
import { ManualClock } from '../../src/core/clock.js';
import { MandateError, UnavailableError, toHttpError } from '../../src/core/errors.js';
import { AuditLog, type AuditStore } from '../../src/audit/index.js';
import {
  Kek, KeyManager, decryptPrivateJwk, encryptPrivateJwk, loadKek, parseKekMaterial,
  type KeyManagerOptions, type PublicJwks,
} from '../../src/keys/index.js';
import type { Store } from '../../src/store/index.js';
import { STORE_DIALECTS } from '../helpers/stores.js';

const S = 1000;
const DAY_S = 24 * 3600;
/** Test config: a key signs for a day, is published an hour ahead, tokens live 15 minutes. */
const ROTATION_S = DAY_S;
const PRE_PUBLISH_S = 3600;
const MAX_TTL_S = 900;
const MARGIN_S = 300;
const T0 = Date.UTC(2026, 0, 1);

function isMandateError(code: string) {
  return (err: unknown) => err instanceof MandateError && err.code === code;
}

function kids(jwks: PublicJwks): string[] {
  return jwks.keys.map((k) => k.kid!).sort();
}

/** Verifies a JWT against a JWKS snapshot as an external verifier would, at the given time. */
async function verifyAgainst(jwks: PublicJwks, token: string, at: number) {
  return jwtVerify(token, createLocalJWKSet(structuredClone(jwks)), { currentDate: new Date(at) });
}

describe('KEK', () => {
  it('round-trips a private JWK and never stores it in clear', () => {
    const kek = Kek.generate();
    const jwk = { kty: 'EC', crv: 'P-256', x: 'xx', y: 'yy', d: 'very-secret-d-value' };
    const sealed = encryptPrivateJwk(kek, jwk, 'kid-1');
    assert.match(sealed, /^v1\./);
    assert.ok(!sealed.includes('very-secret-d-value'));
    assert.deepEqual(decryptPrivateJwk(kek, sealed, 'kid-1'), jwk);
    // Fresh IV every time.
    assert.notEqual(encryptPrivateJwk(kek, jwk, 'kid-1'), sealed);
  });

  it('fails with a clear error under the wrong KEK, a swapped kid or altered ciphertext', () => {
    const kek = Kek.generate();
    const sealed = encryptPrivateJwk(kek, { d: 'x' }, 'kid-1');
    assert.throws(() => decryptPrivateJwk(Kek.generate(), sealed, 'kid-1'), (err: unknown) =>
      isMandateError('ERR_KEK_MISMATCH')(err) && /another KEK/.test((err as Error).message));
    // The kid is the AAD: the ciphertext of one key does not open as another's.
    assert.throws(() => decryptPrivateJwk(kek, sealed, 'kid-2'), isMandateError('ERR_KEY_DECRYPT'));
    const parts = sealed.split('.');
    const ct = Buffer.from(parts[3]!, 'base64url');
    ct[0] = ct[0]! ^ 1;
    parts[3] = ct.toString('base64url');
    assert.throws(() => decryptPrivateJwk(kek, parts.join('.'), 'kid-1'), isMandateError('ERR_KEY_DECRYPT'));
    assert.throws(() => decryptPrivateJwk(kek, 'garbage', 'kid-1'), isMandateError('ERR_KEY_DECRYPT'));
  });

  it('parses hex, base64 and base64url, and refuses anything that is not 32 bytes', () => {
    const raw = Buffer.alloc(32, 0xfb);
    const fromHex = Kek.parse(raw.toString('hex'));
    assert.ok(fromHex.equals(Kek.parse(raw.toString('base64'))));
    assert.ok(fromHex.equals(Kek.parse(raw.toString('base64url'))));
    assert.ok(fromHex.equals(Kek.parse(`${raw.toString('base64')}\n`)));
    assert.ok(!fromHex.equals(Kek.generate()));
    assert.deepEqual(parseKekMaterial(raw.toString('hex')), raw);
    assert.throws(() => Kek.parse(Buffer.alloc(16).toString('base64')), isMandateError('ERR_KEK_INVALID'));
    assert.throws(() => Kek.parse('not a key!'), isMandateError('ERR_KEK_INVALID'));
  });

  it('never shows its material when printed or serialized', () => {
    const raw = Buffer.alloc(32, 7);
    const kek = Kek.parse(raw.toString('hex'));
    for (const shown of [inspect(kek), JSON.stringify({ kek }), String(kek)]) {
      assert.ok(!shown.includes(raw.toString('hex')) && !shown.includes(raw.toString('base64')) && !shown.includes(raw.toString('base64url')));
      assert.ok(shown.includes(kek.id));
    }
  });

  it('loads a configured KEK through its secret reference', () => {
    const raw = Buffer.alloc(32, 1).toString('base64');
    const loaded = loadKek('env:MANDATE_KEK', { resolveSecret: (ref) => (ref === 'env:MANDATE_KEK' ? raw : 'wrong'), nodeEnv: 'production' });
    assert.equal(loaded.insecureDev, false);
    assert.equal(loaded.source, 'env:MANDATE_KEK');
    assert.ok(loaded.kek.equals(Kek.parse(raw)));
  });

  it('refuses production without a KEK, saying what to configure', () => {
    assert.throws(() => loadKek(undefined, { nodeEnv: 'production', devKekPath: '/nonexistent/never-written' }), (err: unknown) =>
      isMandateError('ERR_KEK_REQUIRED')(err) && /keys\.kek/.test((err as Error).message));
  });

  it('generates a development KEK once, mode 0600, flagged insecure', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mandate-kek-'));
    try {
      const path = join(dir, 'nested', 'dev-kek');
      const first = loadKek(undefined, { devKekPath: path, nodeEnv: 'development' });
      assert.equal(first.insecureDev, true);
      assert.equal(first.source, path);
      assert.equal(statSync(path).mode & 0o777, 0o600);
      const again = loadKek(undefined, { devKekPath: path, nodeEnv: undefined });
      assert.ok(again.kek.equals(first.kek), 'the same development KEK is reused');
      assert.equal(Kek.parse(readFileSync(path, 'utf8')).id, first.kek.id);
      writeFileSync(path, 'short');
      assert.throws(() => loadKek(undefined, { devKekPath: path, nodeEnv: 'test' }), isMandateError('ERR_KEK_INVALID'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('KeyManager options', () => {
  it('refuses a pre_publish that is not shorter than the rotation interval', () => {
    const store = {} as KeyManagerOptions['store'];
    assert.throws(
      () => new KeyManager({ store, kek: Kek.generate(), rotationIntervalS: 3600, prePublishS: 3600, maxTokenTtlS: 60 }),
      isMandateError('ERR_CONFIG_INVALID'),
    );
  });
});

for (const dialect of STORE_DIALECTS) {
  describe(`KeyManager on ${dialect.name}`, () => {
    let store: Store;
    const opened: Store[] = [];
    const open = async () => {
      const s = await dialect.open();
      opened.push(s);
      return s;
    };
    before(async () => {
      store = await open();
    });
    after(async () => {
      for (const s of opened) await s.close();
    });

    const manager = (s: Store, clock: ManualClock, over: Partial<KeyManagerOptions> = {}) =>
      new KeyManager({
        store: s, kek: over.kek ?? kek, clock, rotationIntervalS: ROTATION_S, prePublishS: PRE_PUBLISH_S, maxTokenTtlS: MAX_TTL_S,
        retireMarginS: MARGIN_S, ...over,
      });
    const kek = Kek.generate();

    it('retire now: a new key signs, the key leaves the JWKS, and another instance\'s refresh that read it before does not bring it back', async () => {
      const s = await open();
      const clock = new ManualClock(T0);
      const a = manager(s, clock);
      await a.init();
      const kid = a.currentKid()!;
      // Instance b reads the store through a wrapper whose next listSigningKeys answer waits.
      let hold: { entered: () => void; released: Promise<void> } | undefined;
      const wrapped = new Proxy(s, {
        get(target, prop) {
          const v = Reflect.get(target, prop, target) as unknown;
          if (prop === 'listSigningKeys' && hold) {
            const h = hold;
            hold = undefined;
            return async () => {
              const recs = await target.listSigningKeys();
              h.entered();
              await h.released;
              return recs;
            };
          }
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      });
      const b = manager(wrapped, clock);
      await b.init();
      let release!: () => void;
      const entered = new Promise<void>((r) => (hold = { entered: r, released: new Promise<void>((rel) => (release = rel)) }));
      const bRefresh = b.refresh();
      await entered; // b read the key as current

      let revoked = 0;
      const r = await a.retire(kid, { now: true, actor: 'admin:test', reason: 'leaked', revoke: async () => void revoked++ });
      assert.equal(revoked, 1);
      assert.notEqual(r.signingKid, kid);
      assert.equal(a.currentKid(), r.signingKid);
      assert.ok(!kids(a.jwks()).includes(kid));
      assert.ok(kids(a.jwks()).includes(r.signingKid!));

      b.keyRetired(kid); // the retirement's message
      release();
      await bRefresh;
      assert.ok(!kids(b.jwks()).includes(kid), 'the refresh that read the key before the retirement did not bring it back');
      assert.notEqual(b.currentKid(), kid);
      await b.refresh();
      assert.equal(b.currentKid(), r.signingKid);
      assert.ok(!kids(b.jwks()).includes(kid));
      await assert.rejects(a.retire(kid, { now: true, actor: 'admin:test' }), (e: unknown) => e instanceof MandateError && /no published signing key/.test((e as Error).message));
    });

    it('retire fails (503) when the audit log refuses its record: no retirement is acknowledged without one', async () => {
      const s = await open();
      const clock = new ManualClock(T0);
      // An audit log whose store does not answer (a write that never completes) and whose queue
      // is full (its two places taken by init's key.created and a backlog event): the next
      // record() is refused, as under a backlog.
      const stalled: AuditStore = {
        appendChained: () => new Promise(() => {}),
        readAudit: (from, limit) => s.readAudit(from, limit),
        auditHead: () => s.auditHead(),
        queryAudit: (f) => s.queryAudit(f),
      };
      const audit = new AuditLog({ store: stalled, clock, maxBatch: 2, maxQueue: 2, flushIntervalMs: 60_000 });
      const km = manager(s, clock, { audit });
      await km.init();
      audit.record({ type: 'backlog', data: {} });
      const kid = km.currentKid()!;
      const rejectedBefore = audit.stats().rejected;
      let refusal: unknown;
      await assert.rejects(km.retire(kid, { now: true, actor: 'admin:test', reason: 'leaked' }), (err: unknown) => {
        refusal = err;
        return err instanceof UnavailableError;
      });
      assert.equal(toHttpError(refusal).status, 503);
      assert.equal(audit.stats().rejected, rejectedBefore + 1, 'the key.retired record was the one refused');
      // The retirement itself is in force (a key is never brought back): only the answer changed.
      assert.notEqual(km.currentKid(), kid);
      assert.ok(!kids(km.jwks()).includes(kid));
    });

    it('rotates with pre-publication and an overlap as long as the longest token', async () => {
      const clock = new ManualClock(T0);
      const km = manager(store, clock);
      assert.throws(() => km.signingKey(), (err: unknown) => err instanceof UnavailableError);

      // First boot: one key, signing at once, published.
      const first = await km.init();
      assert.equal(first.created.length, 1);
      const a = first.created[0]!.kid;
      assert.equal(first.created[0]!.activatesAt, T0);
      assert.equal(km.signingKey().kid, a);
      assert.equal(km.signingKey().alg, 'ES256');
      let jwks = km.jwks();
      assert.deepEqual(kids(jwks), [a]);
      assert.deepEqual(Object.keys(jwks.keys[0]!).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']);
      assert.equal(jwks.keys[0]!.use, 'sig');
      assert.equal(jwks.keys[0]!.alg, 'ES256');

      // A second boot does not add a key.
      assert.deepEqual(await manager(store, clock).init(), { created: [], retired: [], deleted: [] });

      // Just before rotation_interval - pre_publish: nothing due.
      clock.set(T0 + (ROTATION_S - PRE_PUBLISH_S) * S - 1);
      assert.deepEqual(await km.rotateIfDue(), { created: [], retired: [], deleted: [] });

      // At rotation_interval - pre_publish: B is published, A still signs.
      clock.set(T0 + (ROTATION_S - PRE_PUBLISH_S) * S);
      const r1 = await km.rotateIfDue();
      assert.equal(r1.created.length, 1);
      const b = r1.created[0]!.kid;
      assert.notEqual(b, a);
      assert.equal(r1.created[0]!.activatesAt, T0 + ROTATION_S * S);
      assert.deepEqual(kids(km.jwks()), [a, b].sort());
      assert.equal(km.signingKey().kid, a);
      // Only one pending key at a time.
      clock.advance(60 * S);
      assert.deepEqual((await km.rotateIfDue()).created, []);

      // The last token A signs before the switch, valid for the longest TTL.
      clock.set(T0 + ROTATION_S * S - 1);
      const iat = Math.floor(clock.now() / 1000);
      // alg and kid always come from the key, whatever the caller's header says.
      const tokenA = await km.sign({ sub: 'agent-1', iat, exp: iat + MAX_TTL_S }, { typ: 'at+jwt', alg: 'none', kid: 'forged' });
      assert.deepEqual(decodeProtectedHeader(tokenA), { typ: 'at+jwt', alg: 'ES256', kid: a });

      // At B's activatesAt, B signs by the clock alone (before any rotation pass), A stays published.
      clock.set(T0 + ROTATION_S * S);
      assert.equal(km.signingKey().kid, b);
      const r2 = await km.rotateIfDue();
      const expiresA = T0 + (ROTATION_S + MAX_TTL_S + MARGIN_S) * S;
      assert.deepEqual(r2.retired, [{ kid: a, retiresAt: T0 + ROTATION_S * S, expiresAt: expiresA }]);
      assert.deepEqual(r2.created, []);
      assert.equal(km.signingKey().kid, b);
      jwks = km.jwks();
      assert.deepEqual(kids(jwks), [a, b].sort());
      assert.equal(jwks.keys[0]!.kid, b, 'the current signer is listed first');

      // During the overlap, A's token verifies against the JWKS served now.
      clock.set(T0 + ROTATION_S * S + (MAX_TTL_S - 2) * S); // tokenA expires at T0 + R + 899 s
      const { payload, protectedHeader } = await verifyAgainst(km.jwks(), tokenA, clock.now());
      assert.equal(payload.sub, 'agent-1');
      assert.equal(protectedHeader.kid, a);
      // and a token from B verifies too.
      const tokenB = await km.sign({ sub: 'agent-2' });
      assert.equal(decodeProtectedHeader(tokenB).kid, b);
      assert.equal((await verifyAgainst(km.jwks(), tokenB, clock.now())).payload.sub, 'agent-2');

      // One moment before retire + max TTL + margin: still published, nothing deleted.
      clock.set(expiresA - 1);
      assert.deepEqual((await km.rotateIfDue()).deleted, []);
      assert.deepEqual(kids(km.jwks()), [a, b].sort());

      // At expiresAt: A leaves the JWKS, and the pass deletes it from the store.
      clock.set(expiresA);
      assert.deepEqual(kids(km.jwks()), [b]);
      assert.deepEqual((await km.rotateIfDue()).deleted, [a]);
      assert.deepEqual((await store.listSigningKeys()).map((k) => k.kid), [b]);
      await assert.rejects(verifyAgainst(km.jwks(), tokenA, T0 + ROTATION_S * S), /no applicable key|JWKSNoMatchingKey|matching/i);

      // The next rotation counts from B's activation: B signs one full interval.
      clock.set(T0 + (2 * ROTATION_S - PRE_PUBLISH_S) * S);
      const r3 = await km.rotateIfDue();
      assert.equal(r3.created.length, 1);
      assert.equal(r3.created[0]!.activatesAt, T0 + 2 * ROTATION_S * S);
      await km.stop();
    });

    it('keeps private keys encrypted in the store', async () => {
      const s = await open();
      const km = manager(s, new ManualClock(T0));
      await km.init();
      const [rec] = await s.listSigningKeys();
      assert.ok(rec);
      const priv = decryptPrivateJwk(kek, rec.privateEnc, rec.kid);
      const d = priv.d as string;
      assert.equal(typeof d, 'string');
      assert.ok(d.length >= 40);
      assert.ok(!rec.privateEnc.includes(d));
      assert.ok(!('d' in rec.publicJwk));
      // The raw rows, every column, as the database holds them.
      const rows = await s.db.selectFrom('signing_keys').selectAll().execute();
      const dump = JSON.stringify(rows);
      assert.ok(!dump.includes(d), 'the private scalar is not in the database');
      assert.ok(!dump.includes('"d"'), 'no clear private JWK in the database');
      // Nor in the JWKS.
      assert.ok(!JSON.stringify(km.jwks()).includes(d));
      // The in-memory key cannot be exported.
      assert.equal(km.signingKey().key.extractable, false);
    });

    it('refuses a wrong KEK at init and adds no key under it', async () => {
      const s = await open();
      const clock = new ManualClock(T0);
      await manager(s, clock).init();
      // Even when rotation is due, the misconfigured instance must not add a key.
      clock.set(T0 + ROTATION_S * S);
      const wrong = manager(s, clock, { kek: Kek.generate() });
      await assert.rejects(wrong.init(), isMandateError('ERR_KEK_MISMATCH'));
      await assert.rejects(wrong.rotateIfDue(), isMandateError('ERR_KEK_MISMATCH'));
      assert.equal((await s.listSigningKeys()).length, 1);
    });

    it('creates one key when several instances boot at once, and peers see rotations on refresh', async () => {
      const s = await open();
      const peerStore = await dialect.openPeer(s);
      opened.push(peerStore);
      const clock = new ManualClock(T0);
      const one = manager(s, clock);
      const two = manager(peerStore, clock);
      const [r1, r2] = await Promise.all([one.init(), two.init()]);
      assert.equal(r1.created.length + r2.created.length, 1);
      assert.equal((await s.listSigningKeys()).length, 1);
      assert.equal(one.signingKey().kid, two.signingKey().kid);

      clock.set(T0 + (ROTATION_S - PRE_PUBLISH_S) * S);
      const rot = await one.rotateIfDue();
      assert.equal(rot.created.length, 1);
      assert.equal(two.jwks().keys.length, 1, 'two has not refreshed yet');
      await two.refresh();
      assert.deepEqual(kids(two.jwks()), kids(one.jwks()));
      // Both switch at activatesAt without talking to each other.
      clock.set(rot.created[0]!.activatesAt);
      assert.equal(two.signingKey().kid, rot.created[0]!.kid);
      assert.equal(one.signingKey().kid, rot.created[0]!.kid);
      // Concurrent passes retire once.
      const [p1, p2] = await Promise.all([one.rotateIfDue(), two.rotateIfDue()]);
      assert.equal(p1.retired.length + p2.retired.length, 1);
    });

    it('signs with EdDSA (Ed25519)', async () => {
      const s = await open();
      const clock = new ManualClock(T0);
      const km = manager(s, clock, { algorithm: 'EdDSA' });
      await km.init();
      const jwks = km.jwks();
      assert.equal(jwks.keys.length, 1);
      assert.equal(jwks.keys[0]!.kty, 'OKP');
      assert.equal(jwks.keys[0]!.crv, 'Ed25519');
      assert.equal(jwks.keys[0]!.alg, 'EdDSA');
      assert.equal(jwks.keys[0]!.y, undefined);
      const token = await km.sign({ sub: 'x', exp: Math.floor(T0 / 1000) + 60 });
      assert.equal(decodeProtectedHeader(token).alg, 'EdDSA');
      assert.equal((await verifyAgainst(jwks, token, T0)).payload.sub, 'x');
      const jws = await km.signCompact(new TextEncoder().encode('hello'), { typ: 'example' });
      const out = await compactVerify(jws, createLocalJWKSet(jwks));
      assert.equal(new TextDecoder().decode(out.payload), 'hello');
      assert.equal(out.protectedHeader.typ, 'example');
    });

    it('recovers from a long outage: a fresh key signs at once when every key has expired', async () => {
      const s = await open();
      const clock = new ManualClock(T0);
      const km = manager(s, clock);
      await km.init();
      clock.set(T0 + (ROTATION_S - PRE_PUBLISH_S) * S);
      await km.rotateIfDue();
      // Down for ten intervals: the pending key activated long ago and has signed past its interval.
      clock.set(T0 + 10 * ROTATION_S * S);
      const again = manager(s, clock);
      const r = await again.init();
      assert.equal(r.retired.length, 1);
      assert.deepEqual(r.deleted, [r.retired[0]!.kid], 'retired long ago: its overlap is over too');
      assert.equal(r.created.length, 1, 'the overdue successor is published');
      assert.equal(r.created[0]!.activatesAt, clock.now() + PRE_PUBLISH_S * S);
      assert.ok(again.signingKey().kid, 'the stale key still signs until its successor activates');
      assert.equal(again.jwks().keys.length, 2);
    });

    it('runs refresh and rotation on an unref\'d timer and stops cleanly', async () => {
      const s = await open();
      const clock = new ManualClock(T0);
      const km = manager(s, clock, { prePublishS: 3600 });
      await km.init();
      km.start(20);
      clock.set(T0 + (ROTATION_S - PRE_PUBLISH_S) * S);
      const deadline = Date.now() + 5_000;
      while (km.jwks().keys.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      await km.stop();
      assert.equal(km.jwks().keys.length, 2);
    });
  });
}
