import { randomBytes } from 'node:crypto';
import {
  CompactSign, SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK,
  type CryptoKey, type JWK, type JWTPayload,
} from 'jose';
import type { Clock } from '../core/clock.js';
import { systemClock } from '../core/clock.js';
import { ConfigError, MandateError, NotFoundError, UnavailableError } from '../core/errors.js';
import { ReplicatedMap } from '../core/replicated-view.js';
import type { Logger } from '../core/logger.js';
import type { AuditSink } from '../core/ports/audit-sink.js';
import { Kek, decryptPrivateJwk, encryptPrivateJwk, sealedKekId } from './kek.js';
import type { KeyStore, SigningKeyRecord } from './ports.js';

export type SigningAlgorithm = SigningKeyRecord['alg'];

export interface KeyManagerOptions {
  store: KeyStore;
  /**
   * The key-encryption key. Absent on a proxy-only instance that verifies tokens against the
   * broker's JWKS URL (`proxy.jwks_uri`): such a manager holds no keys and is never initialized;
   * anything that would decrypt, create or sign throws ERR_KEK_REQUIRED.
   */
  kek?: Kek | undefined;
  /** Algorithm for new keys (existing keys keep theirs). Default ES256. */
  algorithm?: SigningAlgorithm;
  /** keys.rotation_interval: how long each key signs. Seconds. */
  rotationIntervalS: number;
  /** keys.pre_publish: how long a new key is in the JWKS before it signs. Seconds. */
  prePublishS: number;
  /** tokens.max_ttl: the longest-lived token any key may have signed. Seconds. */
  maxTokenTtlS: number;
  /**
   * Extra time a retired key stays published beyond maxTokenTtl, for clock skew between
   * Mandate and verifiers and for instances that switch keys a little late. Default 300 s.
   */
  retireMarginS?: number;
  clock?: Clock;
  logger?: Logger;
  /** Where rotations are recorded (`key.created`, `key.retired`, `key.deleted`; subject = kid). Optional. */
  audit?: AuditSink;
}

/** A key that can sign now. `key` is a non-extractable CryptoKey. */
export interface SigningKey {
  kid: string;
  alg: SigningAlgorithm;
  key: CryptoKey;
}

export interface PublicJwks {
  keys: JWK[];
}

/** What one rotation pass changed; empty arrays when nothing was due. */
export interface RotationResult {
  /** Keys created (first boot / no usable key: active at once; otherwise pending). */
  created: { kid: string; activatesAt: number }[];
  /** Keys that stopped signing because a newer one took over. */
  retired: { kid: string; retiresAt: number; expiresAt: number }[];
  /** Keys past expiresAt, removed from the store (and so from the JWKS). */
  deleted: string[];
}

/**
 * Extra protected-header parameters, e.g. `{ typ: 'at+jwt' }` (RFC 9068) or
 * `{ typ: 'secevent+jwt' }` (RFC 8417). `alg` and `kid` are always the signing key's.
 */
export interface SignHeader {
  typ?: string;
  [param: string]: unknown;
}

interface LoadedKey {
  rec: SigningKeyRecord;
  /** The decrypted private key, imported non-extractable; absent when decryption failed. */
  privateKey?: CryptoKey;
  /** Why the private key is unusable (wrong KEK, altered ciphertext). */
  error?: Error;
}

const LOCK_NAME = 'signing-keys';

/**
 * Signing keys with rotation, shared by every instance through the store.
 *
 * Lifecycle of a key (all times in the store, epoch ms):
 *   createdAt ─ published (in the JWKS) ─ activatesAt ─ signs ─ retiresAt ─ published only ─ expiresAt ─ deleted
 *
 * Why pre-publish: verifiers cache the JWKS. A key that signed the moment it was created would
 * produce tokens that verifiers holding yesterday's JWKS reject. Publishing it `pre_publish`
 * ahead lets every verifier (and every Mandate instance, on its next refresh) learn it before it
 * signs; the switch-over then needs no coordination: each instance picks the newest key whose
 * activatesAt has passed, by the clock alone.
 *
 * Why the overlap: a token signed just before retiresAt lives up to tokens.max_ttl, so the old
 * public key must stay in the JWKS at least that long after it stops signing (plus a margin for
 * clock skew), else valid tokens stop verifying mid-life.
 */
export class KeyManager {
  private readonly store: KeyStore;
  private readonly kekOrNone: Kek | undefined;
  private readonly algorithm: SigningAlgorithm;
  private readonly rotationMs: number;
  private readonly prePublishMs: number;
  private readonly maxTokenTtlMs: number;
  private readonly marginMs: number;
  private readonly clock: Clock;
  private readonly logger: Logger | undefined;
  private readonly audit: AuditSink | undefined;
  /**
   * Kids retired at once that this process has heard of: they never sign or are published here
   * again, whatever a refresh reads (the retirement is published before the key's record leaves
   * the store, so a refresh right after the message may still read it).
   */
  private readonly retiredNow = new Set<string>();
  /**
   * The keys as loaded from the store (core/replicated-view.ts): a refresh is a complete snapshot
   * started before the read; a key retired at once elsewhere (`keyRetired`, from the bus) is a
   * tombstoned removal, so a refresh that read it before the retirement does not bring it back
   * to sign or to be published. A record's version is how soon it leaves the JWKS (a key's end
   * only ever moves earlier: none, then retirement's overlap, then retirement at once).
   */
  private readonly keys = new ReplicatedMap<string, LoadedKey>({ version: (k) => (k.rec.expiresAt === null ? -Infinity : -k.rec.expiresAt) });

  private get kek(): Kek {
    if (!this.kekOrNone) {
      throw new MandateError('ERR_KEK_REQUIRED', 'this instance holds no key-encryption key (proxy.jwks_uri): it cannot load, create or sign with keys');
    }
    return this.kekOrNone;
  }
  /** False on a proxy-only instance with `proxy.jwks_uri` (no KEK): it holds, makes and retires no key. */
  get holdsKeys(): boolean {
    return this.kekOrNone !== undefined;
  }

  private jwksMemo: { revision: number; retired: number; validUntil: number; jwks: PublicJwks } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private tickRunning: Promise<void> | undefined;
  private initialized = false;

  constructor(opts: KeyManagerOptions) {
    const issues: string[] = [];
    if (!(opts.rotationIntervalS > 0)) issues.push('keys.rotation_interval: must be positive');
    if (!(opts.prePublishS >= 0)) issues.push('keys.pre_publish: must not be negative');
    if (opts.prePublishS >= opts.rotationIntervalS) {
      issues.push(`keys.pre_publish (${opts.prePublishS}s) must be shorter than keys.rotation_interval (${opts.rotationIntervalS}s)`);
    }
    if (!(opts.maxTokenTtlS > 0)) issues.push('tokens.max_ttl: must be positive');
    if (issues.length > 0) throw new ConfigError(issues);
    this.store = opts.store;
    this.kekOrNone = opts.kek;
    this.algorithm = opts.algorithm ?? 'ES256';
    this.rotationMs = opts.rotationIntervalS * 1000;
    this.prePublishMs = opts.prePublishS * 1000;
    this.maxTokenTtlMs = opts.maxTokenTtlS * 1000;
    this.marginMs = (opts.retireMarginS ?? 300) * 1000;
    this.clock = opts.clock ?? systemClock;
    this.logger = opts.logger;
    this.audit = opts.audit;
  }

  /**
   * First boot creates a key that signs at once; every boot then loads the keys and checks that
   * this KEK decrypts them (a wrong KEK fails here, loudly, instead of at the first token).
   */
  async init(): Promise<RotationResult> {
    // Decrypt what is there first: an instance with the wrong KEK must fail before it adds keys
    // that the correctly configured instances could not decrypt.
    await this.refresh();
    const result = await this.rotateIfDue(); // reloads as well
    this.initialized = true;
    return result;
  }

  /**
   * One rotation pass, under the store-wide lock so that one instance at a time decides:
   * creates a first key if none can sign, publishes the next key `pre_publish` before the
   * current one has signed for `rotation_interval`, retires keys a newer key has taken over
   * from, and deletes keys past their expiry. Reloads the in-memory keys afterwards.
   */
  async rotateIfDue(): Promise<RotationResult> {
    const result: RotationResult = { created: [], retired: [], deleted: [] };
    await this.store.withLock(LOCK_NAME, async () => {
      // Always decide on the store's state, never on the cache: another instance may have rotated.
      const now = this.clock.now();
      let recs = (await this.store.listSigningKeys()).sort(byActivation);
      const expired = (r: SigningKeyRecord) => r.expiresAt !== null && r.expiresAt <= now;

      // Never add a key under a KEK the other keys were not encrypted with: instances sharing
      // this store would then hold keys that some of them cannot use.
      const foreign = recs.find((r) => !expired(r) && sealedKekId(r.privateEnc) !== this.kek.id);
      if (foreign) {
        throw new MandateError(
          'ERR_KEK_MISMATCH',
          `signing key ${foreign.kid} was encrypted under another KEK (id ${sealedKekId(foreign.privateEnc) ?? 'unknown'}), ` +
            `the configured keys.kek has id ${this.kek.id}: not rotating. Give every instance the same keys.kek.`,
        );
      }

      // Retire: a key whose successor has reached activatesAt stopped signing exactly then.
      // retiresAt is the successor's activatesAt, not "now", so a late pass does not extend
      // the old key's life, and the overlap rule below still counts from the real switch-over.
      for (let i = 0; i + 1 < recs.length; i++) {
        const r = recs[i]!;
        const next = recs[i + 1]!;
        if (r.retiresAt === null && next.activatesAt <= now) {
          const retiresAt = next.activatesAt;
          // Overlap rule: stay in the JWKS for the longest token TTL after the last signature.
          const expiresAt = retiresAt + this.maxTokenTtlMs + this.marginMs;
          await this.store.updateSigningKey(r.kid, { retiresAt, expiresAt });
          r.retiresAt = retiresAt;
          r.expiresAt = expiresAt;
          result.retired.push({ kid: r.kid, retiresAt, expiresAt });
        }
      }

      // Past expiresAt no token signed by the key can still be valid: remove it.
      for (const r of recs) {
        if (expired(r)) {
          await this.store.deleteSigningKey(r.kid);
          result.deleted.push(r.kid);
        }
      }
      recs = recs.filter((r) => !expired(r));

      const signer = pickSigner(recs, now);
      const pending = recs.some((r) => r.activatesAt > now);
      if (!signer) {
        // First boot, or every key retired/expired (long downtime): sign at once. There is no
        // old key any verifier could be using, so pre-publishing would only leave us unable to sign.
        const rec = await this.createKey(now, now);
        result.created.push({ kid: rec.kid, activatesAt: rec.activatesAt });
      } else if (!pending && now >= signer.activatesAt + this.rotationMs - this.prePublishMs) {
        // Counted from activatesAt (which equals createdAt for the first key) so that each key
        // signs for one full rotation_interval: the successor activates at signer.activatesAt +
        // rotation_interval when this pass runs on time, later (now + pre_publish) when it runs late
        // — never earlier than pre_publish after publication.
        const activatesAt = Math.max(now + this.prePublishMs, signer.activatesAt + this.rotationMs);
        const rec = await this.createKey(now, activatesAt);
        result.created.push({ kid: rec.kid, activatesAt: rec.activatesAt });
      }
    });
    if (result.created.length + result.retired.length + result.deleted.length > 0) {
      this.logger?.info(
        {
          created: result.created.map((c) => ({ kid: c.kid, activatesAt: new Date(c.activatesAt).toISOString() })),
          retired: result.retired.map((r) => r.kid),
          deleted: result.deleted,
        },
        'signing keys rotated',
      );
      // The rotation is committed already; an audit queue that refuses must not undo or fail it.
      const note = (type: string, kid: string, data: Record<string, unknown>) => {
        try {
          this.audit?.record({ type, actor: 'system', subject: kid, data });
        } catch (err) {
          this.logger?.error({ err, type, kid }, 'could not audit a key rotation');
        }
      };
      for (const c of result.created) note('key.created', c.kid, { alg: this.algorithm, activates_at: c.activatesAt });
      for (const r of result.retired) note('key.retired', r.kid, { retires_at: r.retiresAt, expires_at: r.expiresAt });
      for (const kid of result.deleted) note('key.deleted', kid, {});
    }
    await this.refresh();
    return result;
  }

  /**
   * Reloads the keys from the store (another instance may have rotated). Private keys are
   * decrypted once per kid and cached as non-extractable CryptoKeys; a kid that left the store
   * is forgotten. If a key cannot be decrypted (wrong KEK), the other keys are still loaded, that
   * key cannot sign, and this throws so that the caller hears about it.
   */
  async refresh(): Promise<void> {
    const ticket = this.keys.begin();
    let recs: SigningKeyRecord[];
    try {
      recs = await this.store.listSigningKeys();
    } catch (err) {
      this.keys.abandon(ticket);
      throw err;
    }
    const next = new Map<string, LoadedKey>();
    let firstError: Error | undefined;
    for (const rec of recs) {
      const prev = this.keys.get(rec.kid);
      if (prev?.privateKey && prev.rec.privateEnc === rec.privateEnc) {
        // Keep the cached CryptoKey; the record (retiresAt/expiresAt) may have changed.
        next.set(rec.kid, { rec, privateKey: prev.privateKey });
        continue;
      }
      try {
        const jwk = decryptPrivateJwk(this.kek, rec.privateEnc, rec.kid);
        const privateKey = (await importJWK(jwk, rec.alg, { extractable: false })) as CryptoKey;
        next.set(rec.kid, { rec, privateKey });
      } catch (err) {
        const error = err instanceof Error ? err : new Error(String(err));
        next.set(rec.kid, { rec, error });
        firstError ??= error;
      }
    }
    this.keys.install(ticket, next);
    if (firstError) throw firstError;
  }

  /**
   * Retires a signing key (an operator's decision, `mandate keys retire KID [--now]`), in steps
   * ordered so that a crash between two leaves nothing open:
   * 1. it stops signing: a key that signed is replaced by a new one that signs at once (verifiers
   *    fetch a JWKS again on an unknown kid, and on the retirement's bus message);
   * 2. with `now` (a compromised key), `revoke` refuses every token it signed (a revocation of
   *    kind `key`, published), while the replacement is already in the store for the verifiers
   *    that fetch the JWKS on that message;
   * 3. with `now`, it leaves the JWKS; without, it stays published for the longest token TTL
   *    (plus the margin), as after a rotation.
   * Audited (`key.retired`, actor = the operator); when the audit log refuses the record, it
   * throws (UnavailableError) with the retirement in force. A key no longer published is not found.
   */
  async retire(kid: string, opts: { now: boolean; actor: string; reason?: string; revoke?: () => Promise<void> }): Promise<{ kid: string; retiresAt: number; expiresAt: number; signingKid: string | undefined }> {
    void this.kek; // refuses on an instance without the KEK: it could not make the replacement key
    const published = (recs: SigningKeyRecord[], now: number) => {
      const rec = recs.find((r) => r.kid === kid);
      if (!rec || (rec.expiresAt !== null && rec.expiresAt <= now)) throw new NotFoundError(`no published signing key has kid ${kid}`);
      return rec;
    };
    let out: { retiresAt: number; expiresAt: number; replacedBy: string | undefined } | undefined;
    await this.store.withLock(LOCK_NAME, async () => {
      const now = this.clock.now();
      const recs = await this.store.listSigningKeys();
      const rec = published(recs, now);
      const wasSigner = pickSigner(recs, now)?.kid === kid;
      const retiresAt = Math.min(rec.retiresAt ?? now, now);
      const expiresAt = Math.min(rec.expiresAt ?? Infinity, retiresAt + this.maxTokenTtlMs + this.marginMs);
      await this.store.updateSigningKey(kid, { retiresAt, expiresAt });
      rec.retiresAt = retiresAt;
      rec.expiresAt = expiresAt;
      let replacedBy: string | undefined;
      if (wasSigner && !pickSigner(recs, now)) replacedBy = (await this.createKey(now, now)).kid;
      out = { retiresAt, expiresAt, replacedBy };
    });
    const r = out!;
    await this.refresh();
    if (opts.now) {
      this.retiredNow.add(kid);
      await opts.revoke?.();
      r.expiresAt = this.clock.now();
      await this.store.withLock(LOCK_NAME, () => this.store.updateSigningKey(kid, { expiresAt: r.expiresAt }));
      this.keys.remove(kid);
      await this.refresh();
    }
    // An operator's change is acknowledged only with its audit record: when the log refuses the
    // record (its queue is full), the error (UnavailableError, 503) is the answer, as for every
    // other change. The retirement stays in force (keys are never un-retired); the log says so.
    try {
      this.audit?.record({
        type: 'key.retired', actor: opts.actor, subject: kid,
        data: { now: opts.now, reason: opts.reason ?? null, retires_at: r.retiresAt, expires_at: r.expiresAt, replaced_by: r.replacedBy ?? null },
      });
    } catch (err) {
      this.logger?.error({ err, kid, now: opts.now }, 'signing key retired, but the audit log refused its record: the request fails');
      throw err;
    }
    this.logger?.warn({ kid, now: opts.now, replacedBy: r.replacedBy }, 'signing key retired by an operator');
    return { kid, retiresAt: r.retiresAt, expiresAt: r.expiresAt, signingKid: this.currentKid() };
  }

  /**
   * Another instance retired `kid` at once (the bus, or a reload of the revocations): it neither
   * signs nor is published here from now on, and the keys are read again (the replacement).
   */
  keyRetired(kid: string): void {
    this.retiredNow.add(kid);
    this.keys.remove(kid);
    if (!this.initialized) return;
    void this.refresh().catch((err: unknown) => this.logger?.warn({ err, kid }, 'signing keys not reloaded after a retirement (the next rotation pass reloads them)'));
  }

  /** The key that signs now: the newest whose activatesAt has passed and that is not retired. */
  signingKey(): SigningKey {
    const rec = this.currentRecord(this.clock.now());
    if (!rec) {
      throw new UnavailableError(
        this.initialized ? 'no signing key is active (is the key rotation running?)' : 'the key manager is not initialized (call init())',
      );
    }
    const loaded = this.keys.get(rec.kid)!;
    if (!loaded.privateKey) {
      throw loaded.error ?? new MandateError('ERR_KEY_DECRYPT', `signing key ${rec.kid} cannot be used`);
    }
    return { kid: rec.kid, alg: rec.alg, key: loaded.privateKey };
  }

  /** The kid that signs now, or undefined; synchronous, for health checks and metrics. */
  currentKid(): string | undefined {
    return this.currentRecord(this.clock.now())?.kid;
  }

  /** Signs a JWT (compact JWS) with the current key; protected header `{ ...header, alg, kid }`. */
  async sign(payload: JWTPayload, header: SignHeader = {}): Promise<string> {
    const { kid, alg, key } = this.signingKey();
    return new SignJWT(payload).setProtectedHeader({ ...header, alg, kid }).sign(key);
  }

  /** Signs arbitrary bytes as a compact JWS with the current key; protected header `{ ...header, alg, kid }`. */
  async signCompact(payload: Uint8Array, header: SignHeader = {}): Promise<string> {
    const { kid, alg, key } = this.signingKey();
    return new CompactSign(payload).setProtectedHeader({ ...header, alg, kid }).sign(key);
  }

  /**
   * The public JWKS: every key created and not yet expired, including the pending one (it is
   * published before it signs, see the class comment) and retired ones still in their overlap.
   * Current signer first.
   */
  jwks(): PublicJwks {
    // The same (frozen) object until the key set is reloaded or one of its times passes: the
    // proxy's token verifier asks on every call and recognises an unchanged set by identity.
    const now = this.clock.now();
    const memo = this.jwksMemo;
    if (memo && memo.revision === this.keys.revision && memo.retired === this.retiredNow.size && now < memo.validUntil) return memo.jwks;
    const current = this.currentRecord(now)?.kid;
    const all = this.usable();
    const recs = all
      .filter((r) => r.expiresAt === null || r.expiresAt > now)
      .sort((a, b) => (a.kid === current ? -1 : b.kid === current ? 1 : byActivation(b, a)));
    const jwks: PublicJwks = Object.freeze({ keys: Object.freeze(recs.map((r) => Object.freeze(publicJwkOf(r)))) as JWK[] });
    // What the answer depends on besides the set: which keys have expired, and which one signs
    // (activation and retirement times). It holds until the next of those instants.
    let validUntil = Infinity;
    for (const r of all) {
      for (const t of [r.activatesAt, r.retiresAt, r.expiresAt]) if (t !== null && t > now && t < validUntil) validUntil = t;
    }
    this.jwksMemo = { revision: this.keys.revision, retired: this.retiredNow.size, validUntil, jwks };
    return jwks;
  }

  /** Runs refresh + rotateIfDue every intervalMs (unref'd: it never keeps the process alive). */
  start(intervalMs = 60_000): void {
    if (this.timer) return;
    if (intervalMs * 2 > this.prePublishMs && this.prePublishMs > 0) {
      // Instances learn about a pending key on their next tick; it must come well before it signs.
      this.logger?.warn({ intervalMs, prePublishMs: this.prePublishMs }, 'key refresh interval is not well below keys.pre_publish');
    }
    this.timer = setInterval(() => void this.tick(), intervalMs);
    this.timer.unref();
  }

  /** Stops the timer and waits for a pass in progress. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.tickRunning;
  }

  private tick(): Promise<void> {
    if (this.tickRunning) return this.tickRunning; // never overlap passes
    this.tickRunning = (async () => {
      try {
        await this.rotateIfDue(); // reloads from the store as well
      } catch (err) {
        // Keep signing with what we have; the next tick retries.
        this.logger?.error({ err }, 'signing key rotation failed');
        try {
          await this.refresh();
        } catch {
          /* store unreachable: keep the cached keys */
        }
      } finally {
        this.tickRunning = undefined;
      }
    })();
    return this.tickRunning;
  }

  private currentRecord(now: number): SigningKeyRecord | undefined {
    return pickSigner(this.usable(), now);
  }

  /** The loaded records but those retired at once. */
  private usable(): SigningKeyRecord[] {
    const out: SigningKeyRecord[] = [];
    for (const k of this.keys.values()) if (!this.retiredNow.has(k.rec.kid)) out.push(k.rec);
    return out;
  }

  private async createKey(now: number, activatesAt: number): Promise<SigningKeyRecord> {
    const alg = this.algorithm;
    const pair = await generateKeyPair(alg, { extractable: true });
    const pub = await exportJWK(pair.publicKey);
    // RFC 7638 thumbprint plus a random suffix: stable to compute, unique even on key reuse.
    // Never starting with "-" or "_": `mandate keys retire KID` would read a leading "-" as an option.
    const kid = `${(await calculateJwkThumbprint(pub)).slice(0, 22)}${randomBytes(3).toString('base64url')}`.replace(/^[-_]/, 'k');
    const priv = await exportJWK(pair.privateKey);
    const rec: SigningKeyRecord = {
      kid,
      alg,
      publicJwk: { ...pub, kid, alg, use: 'sig' },
      privateEnc: encryptPrivateJwk(this.kek, priv, kid),
      createdAt: now,
      activatesAt,
      retiresAt: null,
      expiresAt: null,
    };
    await this.store.insertSigningKey(rec);
    return rec;
  }
}

/** Oldest activation first; ties by creation, then kid, so every instance orders alike. */
function byActivation(a: SigningKeyRecord, b: SigningKeyRecord): number {
  return a.activatesAt - b.activatesAt || a.createdAt - b.createdAt || (a.kid < b.kid ? -1 : a.kid > b.kid ? 1 : 0);
}

/** The newest key with activatesAt <= now that is not retired. */
function pickSigner(recs: SigningKeyRecord[], now: number): SigningKeyRecord | undefined {
  let best: SigningKeyRecord | undefined;
  for (const r of recs) {
    if (r.activatesAt > now) continue;
    if (r.retiresAt !== null && r.retiresAt <= now) continue;
    if (r.expiresAt !== null && r.expiresAt <= now) continue;
    if (!best || byActivation(r, best) > 0) best = r;
  }
  return best;
}

/** Only public members, whatever the stored JWK holds. */
function publicJwkOf(r: SigningKeyRecord): JWK {
  const src = r.publicJwk as Record<string, unknown>;
  const out: JWK = { kty: String(src.kty) };
  for (const k of ['crv', 'x', 'y'] as const) if (typeof src[k] === 'string') out[k] = src[k] as string;
  if ('d' in src) throw new MandateError('ERR_KEY_INVALID', `signing key ${r.kid}: the stored public JWK holds private material`);
  return { ...out, kid: r.kid, alg: r.alg, use: 'sig' };
}
