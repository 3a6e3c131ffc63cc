import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { inspect } from 'node:util';
import { MandateError } from '../core/errors.js';
import { resolveSecret as defaultResolveSecret, secretEquals } from '../core/secrets.js';

/**
 * The key-encryption key (KEK): 32 bytes that encrypt the signing keys' private JWKs at rest
 * (AES-256-GCM). The store only ever holds ciphertext; whoever reads the database without the
 * KEK learns the public keys and nothing else.
 *
 * The bytes live in a private field: a `Kek` prints, logs and serializes as `Kek(<id>)`, never as
 * its material, so a careless `log.info({ kek })` cannot leak it, and no public method returns it.
 */
export class Kek {
  readonly #key: Buffer;
  /**
   * A short, non-secret identifier of this KEK (HMAC of a constant under the KEK, 8 bytes).
   * It is written next to every ciphertext so that "wrong KEK" can be told apart from
   * "ciphertext altered", and shown in errors so operators can compare KEKs without revealing them.
   */
  readonly id: string;

  private constructor(key: Buffer) {
    if (key.length !== KEK_BYTES) throw new MandateError('ERR_KEK_INVALID', `a KEK is ${KEK_BYTES} bytes, got ${key.length}`);
    this.#key = Buffer.from(key);
    this.id = createHmac('sha256', this.#key).update('mandate/kek-id/v1').digest().subarray(0, 8).toString('base64url');
  }

  /** Parses KEK material: 64 hex characters, or base64/base64url of exactly 32 bytes. */
  static parse(material: string): Kek {
    const bytes = parseKekMaterial(material);
    try {
      return new Kek(bytes);
    } finally {
      bytes.fill(0);
    }
  }

  /**
   * A subkey for another purpose (HKDF-SHA256, RFC 5869, info = label), so that every
   * instance sharing this KEK derives the same secret (e.g. for stateless DPoP nonces)
   * without the KEK itself ever being used for two things.
   */
  derive(label: string, bytes = 32): Buffer {
    return Buffer.from(hkdfSync('sha256', this.#key, Buffer.alloc(0), `mandate/${label}`, bytes));
  }

  /** A fresh random KEK (tests; production KEKs come from a secret manager). */
  static generate(): Kek {
    return new Kek(randomBytes(KEK_BYTES));
  }

  /** Generates a development KEK and writes it to `path` (0600, never overwriting); internal to loadKek. */
  static createDevFile(path: string): Kek {
    const key = randomBytes(KEK_BYTES);
    writeFileSync(path, key.toString('base64url') + '\n', { mode: 0o600, flag: 'wx' });
    const kek = new Kek(key);
    key.fill(0);
    return kek;
  }

  /** Constant-time comparison of two KEKs. */
  equals(other: Kek): boolean {
    return secretEquals(this.#key, other.#key);
  }

  /** AES-256-GCM with a random 96-bit IV; `aad` is authenticated but not encrypted. */
  seal(plaintext: Uint8Array, aad: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.#key, iv);
    cipher.setAAD(Buffer.from(aad, 'utf8'));
    const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    const tag = cipher.getAuthTag();
    return [ENC_VERSION, this.id, iv.toString('base64url'), ct.toString('base64url'), tag.toString('base64url')].join('.');
  }

  /** Reverses `seal`; throws ERR_KEK_MISMATCH (other KEK) or ERR_KEY_DECRYPT (altered data or AAD). */
  open(sealed: string, aad: string, what = 'data'): Buffer {
    const parts = sealed.split('.');
    if (parts.length !== 5 || parts[0] !== ENC_VERSION) {
      throw new MandateError('ERR_KEY_DECRYPT', `cannot decrypt ${what}: unknown format (expected ${ENC_VERSION}.<kek id>.<iv>.<ciphertext>.<tag>)`);
    }
    const [, kekId, ivB64, ctB64, tagB64] = parts as [string, string, string, string, string];
    // Ids are not secret, but compare in constant time anyway: it costs nothing here.
    if (!secretEquals(kekId, this.id)) {
      throw new MandateError(
        'ERR_KEK_MISMATCH',
        `cannot decrypt ${what}: it was encrypted under another KEK (id ${kekId}), the configured keys.kek has id ${this.id}. ` +
          'Restore the KEK that was in use, or remove the signing keys from the store so new ones are generated (tokens signed by them stop verifying).',
      );
    }
    const iv = Buffer.from(ivB64, 'base64url');
    const tag = Buffer.from(tagB64, 'base64url');
    if (iv.length !== 12 || tag.length !== 16) throw new MandateError('ERR_KEY_DECRYPT', `cannot decrypt ${what}: malformed IV or tag`);
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#key, iv, { authTagLength: 16 });
      decipher.setAAD(Buffer.from(aad, 'utf8'));
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(Buffer.from(ctB64, 'base64url')), decipher.final()]);
    } catch (err) {
      // GCM authentication failed: never return unauthenticated plaintext.
      throw new MandateError('ERR_KEY_DECRYPT', `cannot decrypt ${what}: authentication failed (ciphertext altered, bound to another key id, or wrong KEK)`, { cause: err });
    }
  }

  toString(): string {
    return `Kek(${this.id})`;
  }
  toJSON(): string {
    return `Kek(${this.id})`;
  }
  [inspect.custom](): string {
    return `Kek(${this.id})`;
  }
}

export const KEK_BYTES = 32;
const ENC_VERSION = 'v1';

/** Parses 64 hex chars or base64/base64url (padded or not) of exactly 32 bytes. */
export function parseKekMaterial(material: string): Buffer {
  const s = material.trim();
  const hint = 'keys.kek must hold 32 random bytes as 64 hex characters or base64/base64url (e.g. the output of `openssl rand -base64 32`)';
  if (/^[0-9a-fA-F]{64}$/.test(s)) return Buffer.from(s, 'hex');
  if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(s)) {
    // Node's base64 decoder accepts both alphabets; reject mixed-in garbage by the regex above.
    const buf = Buffer.from(s.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    if (buf.length === KEK_BYTES) return buf;
    throw new MandateError('ERR_KEK_INVALID', `${hint}; this value decodes to ${buf.length} bytes`);
  }
  throw new MandateError('ERR_KEK_INVALID', `${hint}; this value is neither`);
}

/**
 * Encrypts a private JWK under the KEK. The kid is the AAD: a ciphertext copied onto another key
 * row does not decrypt there (no swapping private keys between kids).
 */
export function encryptPrivateJwk(kek: Kek, jwk: Record<string, unknown>, kid: string): string {
  return kek.seal(Buffer.from(JSON.stringify(jwk), 'utf8'), `mandate/signing-key/${kid}`);
}

/** Decrypts what `encryptPrivateJwk` wrote; a wrong KEK or altered data throws, never returns garbage. */
export function decryptPrivateJwk(kek: Kek, sealed: string, kid: string): Record<string, unknown> {
  const plain = kek.open(sealed, `mandate/signing-key/${kid}`, `the private key of signing key ${kid}`);
  try {
    const jwk = JSON.parse(plain.toString('utf8')) as unknown;
    if (jwk === null || typeof jwk !== 'object' || Array.isArray(jwk)) throw new Error('not an object');
    return jwk as Record<string, unknown>;
  } finally {
    plain.fill(0);
  }
}

/** The id of the KEK a sealed value was encrypted under (not secret), or undefined if malformed. */
export function sealedKekId(sealed: string): string | undefined {
  const parts = sealed.split('.');
  return parts.length === 5 && parts[0] === ENC_VERSION ? parts[1] : undefined;
}

export interface LoadKekOptions {
  /** Resolves `env:`/`file:` references; core's resolveSecret by default. */
  resolveSecret?: (ref: string) => string;
  /** Where the development KEK is kept when none is configured. Default `.mandate/dev-kek`. */
  devKekPath?: string;
  /** `process.env.NODE_ENV` by default; `production` refuses to run without a configured KEK. */
  nodeEnv?: string | undefined;
}

export interface LoadedKek {
  kek: Kek;
  /**
   * True when the KEK is the generated development one: the caller must print a LOUD warning
   * (the KEK sits next to the database it protects, so encryption at rest is only nominal).
   */
  insecureDev: boolean;
  /** Where it came from: the secret reference, or the dev file path. Never the material. */
  source: string;
}

export const DEFAULT_DEV_KEK_PATH = '.mandate/dev-kek';

/**
 * Loads the KEK from `keys.kek` (a secret reference). Without one: in production this refuses to
 * start (ERR_KEK_REQUIRED); elsewhere a development KEK is generated once at `devKekPath` (0600)
 * and reused, flagged `insecureDev`.
 */
export function loadKek(ref: string | undefined, opts: LoadKekOptions = {}): LoadedKek {
  const resolve = opts.resolveSecret ?? ((r: string) => defaultResolveSecret(r));
  if (ref !== undefined && ref !== '') {
    return { kek: Kek.parse(resolve(ref)), insecureDev: false, source: ref };
  }
  const nodeEnv = 'nodeEnv' in opts ? opts.nodeEnv : process.env.NODE_ENV;
  if (nodeEnv === 'production') {
    throw new MandateError(
      'ERR_KEK_REQUIRED',
      'NODE_ENV=production requires a key-encryption key: set keys.kek to a secret reference (e.g. kek: env:MANDATE_KEK) ' +
        'holding 32 random bytes as base64 or 64 hex characters (generate one with `openssl rand -base64 32`).',
    );
  }
  const path = opts.devKekPath ?? DEFAULT_DEV_KEK_PATH;
  return { kek: readOrCreateDevKek(path), insecureDev: true, source: path };
}

function readOrCreateDevKek(path: string): Kek {
  try {
    const kek = Kek.parse(readFileSync(path, 'utf8'));
    // Tighten a file someone loosened; ignore failure (e.g. not the owner) — it is dev only.
    try {
      if ((statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o600);
    } catch {
      /* best effort */
    }
    return kek;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      if (err instanceof MandateError) {
        throw new MandateError('ERR_KEK_INVALID', `the development KEK at ${path} is unreadable: ${err.message}`, { cause: err });
      }
      throw new MandateError('ERR_KEK_INVALID', `the development KEK at ${path} cannot be read`, { cause: err });
    }
  }
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  try {
    // 'wx': never overwrite; if another process created it meanwhile, use theirs.
    const kek = Kek.createDevFile(path);
    chmodSync(path, 0o600); // the umask cannot widen it, but be explicit
    return kek;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return Kek.parse(readFileSync(path, 'utf8'));
    throw new MandateError('ERR_KEK_INVALID', `cannot write the development KEK to ${path}`, { cause: err });
  }
}
