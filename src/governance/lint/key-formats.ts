import { createECDH, createPrivateKey, createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';

/**
 * The binary forms of a private key that `findPrivateKeys` (private-keys.ts) confirms: DER
 * (PKCS#8 plain and encrypted, PKCS#1, SEC1) by OpenSSL or by structure, OpenSSL's legacy encrypted
 * PEM, OpenSSH's own format and OpenPGP secret keys. Pure functions over bytes.
 */

export interface KeyFacts {
  keyType: string;
  encrypted: boolean | 'unknown';
}

export interface PemBody {
  headers: Map<string, string>;
  base64: string;
  /** An OpenPGP armor checksum line (`=XXXX`), when there is one. */
  checksum?: string;
}

/**
 * A DER private key: encrypted PKCS#8 by structure, the unencrypted forms by OpenSSL. Every form
 * is one DER SEQUENCE; `exact` (a bare base64 run, which is not announced by a label) also wants
 * it to span the whole input, which most base64 runs of a source tree fail before OpenSSL sees them.
 */
export function derKey(der: Buffer, exact: boolean): KeyFacts | undefined {
  const outer = tlv(der, 0);
  if (!outer || outer.tag !== 0x30 || (exact && outer.end !== der.length)) return undefined;
  if (isEncryptedPkcs8(der, outer)) return { keyType: 'encrypted PKCS#8', encrypted: true };
  switch (derShape(der, outer)) {
    case 'pkcs8':
      return tryKey(() => createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }));
    case 'sec1':
      return tryKey(() => createPrivateKey({ key: der, format: 'der', type: 'sec1' }));
    case 'integers':
      // OpenSSL's traditional DSA form has no DER type in node:crypto; its PEM label selects it.
      return tryKey(() => createPrivateKey({ key: der, format: 'der', type: 'pkcs1' })) ?? tryKey(() => createPrivateKey(pem('DSA PRIVATE KEY', der)));
    default:
      return undefined;
  }
}

/**
 * Which unencrypted form the top level of a DER SEQUENCE has, read from the types of its
 * elements (which must tile it exactly), so that OpenSSL, slow to refuse, parses only what can
 * be a key and only as that form. A certificate (a SEQUENCE first) is none of them.
 * - PKCS#8 (RFC 5958 §2): INTEGER version, SEQUENCE algorithm, OCTET STRING key, then [0] attributes, [1] public key.
 * - SEC1 (RFC 5915 §3): INTEGER version, OCTET STRING key, then [0] parameters, [1] public key.
 * - PKCS#1 (RFC 8017 A.1.2: version and 8 INTEGERs, a SEQUENCE for more primes) and OpenSSL's DSA (version and 5 INTEGERs).
 */
function derShape(der: Buffer, outer: Tlv): 'pkcs8' | 'sec1' | 'integers' | undefined {
  const tags: number[] = [];
  for (let pos = outer.start; pos < outer.end;) {
    const el = tlv(der, pos);
    if (!el || el.end > outer.end || tags.length > 16) return undefined;
    tags.push(el.tag);
    pos = el.end;
  }
  // The version's value is not checked: OpenSSL does not check it either.
  if (tags[0] !== 0x02) return undefined;
  const rest = tags.slice(1);
  // Context-specific [0], [1], in that order, each at most once.
  const optional = (from: number) => rest.slice(from).every((t, i, a) => (t === 0xa0 || t === 0xa1 || t === 0x81) && (i === 0 || (t & 0x1f) > (a[i - 1]! & 0x1f)));
  if (rest[0] === 0x30 && rest[1] === 0x04 && optional(2)) return 'pkcs8';
  if (rest[0] === 0x04 && optional(1)) return 'sec1';
  if (rest.length >= 5 && rest.slice(0, 8).every((t) => t === 0x02) && rest.slice(8).every((t) => t === 0x30)) return 'integers';
  return undefined;
}

export function tryKey(make: () => KeyObject): KeyFacts | undefined {
  let key: KeyObject;
  try {
    key = make();
  } catch {
    return undefined;
  }
  return { keyType: describe(key), encrypted: false };
}

/** `RSA 2048-bit`, `EC P-256`, `Ed25519`, … from the parsed key (never its material). */
function describe(key: KeyObject): string {
  const type = key.asymmetricKeyType ?? 'unknown';
  const d = key.asymmetricKeyDetails ?? {};
  const name = ({ rsa: 'RSA', 'rsa-pss': 'RSA-PSS', dsa: 'DSA', ec: 'EC', dh: 'DH', ed25519: 'Ed25519', ed448: 'Ed448', x25519: 'X25519', x448: 'X448' } as Record<string, string>)[type] ?? type;
  if (d.namedCurve) return `${name} ${CURVE_NAMES[d.namedCurve] ?? d.namedCurve}`;
  if (d.modulusLength) return `${name} ${d.modulusLength}-bit`;
  return name;
}

const CURVE_NAMES: Record<string, string> = { prime256v1: 'P-256', secp384r1: 'P-384', secp521r1: 'P-521' };

function pem(label: string, der: Buffer): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

interface Tlv {
  tag: number;
  /** Where the contents start. */
  start: number;
  /** Where the element ends. */
  end: number;
}

/** One DER element at `pos` (X.690 §8.1: definite lengths only, at most 4 length octets). */
function tlv(buf: Buffer, pos: number): Tlv | undefined {
  if (pos + 2 > buf.length) return undefined;
  const tag = buf[pos]!;
  let len = buf[pos + 1]!;
  let start = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || start + n > buf.length) return undefined;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[start + i]!;
    start += n;
  }
  const end = start + len;
  return end <= buf.length ? { tag, start, end } : undefined;
}

// 1.2.840.113549.1.5 (PKCS #5: PBES1, PBES2) and 1.2.840.113549.1.12.1 (PKCS #12 PBE), DER-encoded.
const PKCS5_OID_PREFIX = Buffer.from([0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05]);
const PKCS12_PBE_OID_PREFIX = Buffer.from([0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01]);

/**
 * RFC 5958 §3: EncryptedPrivateKeyInfo ::= SEQUENCE { encryptionAlgorithm AlgorithmIdentifier,
 * encryptedData OCTET STRING }, the algorithm a password-based one of PKCS #5 (RFC 8018) or
 * PKCS #12 (RFC 7292 Appendix C), and nothing after the ciphertext.
 */
function isEncryptedPkcs8(der: Buffer, outer: Tlv): boolean {
  const alg = tlv(der, outer.start);
  if (!alg || alg.tag !== 0x30) return false;
  const oid = tlv(der, alg.start);
  if (!oid || oid.tag !== 0x06 || oid.end > alg.end) return false;
  const value = der.subarray(oid.start, oid.end);
  const pbe = (value.length > PKCS5_OID_PREFIX.length && value.subarray(0, PKCS5_OID_PREFIX.length).equals(PKCS5_OID_PREFIX))
    || (value.length > PKCS12_PBE_OID_PREFIX.length && value.subarray(0, PKCS12_PBE_OID_PREFIX.length).equals(PKCS12_PBE_OID_PREFIX));
  if (!pbe) return false;
  const data = tlv(der, alg.end);
  return !!data && data.tag === 0x04 && data.end === outer.end && data.end - data.start >= 16;
}

/**
 * RFC 1421 §4.6.1.1/§4.6.1.3 as OpenSSL writes them: `Proc-Type: 4,ENCRYPTED` and
 * `DEK-Info: <cipher>,<IV in hex>`. The ciphertext is whole blocks of the cipher (CBC; the IV is
 * one block), at least two.
 */
export function legacyEncryptedKey(procType: string, dekInfo: string | undefined, ciphertext: Buffer): KeyFacts | undefined {
  if (!/^4,\s*ENCRYPTED$/i.test(procType) || !dekInfo) return undefined;
  const m = /^([A-Za-z0-9-]{2,40})\s*,\s*([0-9A-Fa-f]{16}|[0-9A-Fa-f]{32})$/.exec(dekInfo);
  if (!m) return undefined;
  const block = m[2]!.length / 2;
  if (ciphertext.length < 2 * block || ciphertext.length % block !== 0) return undefined;
  return { keyType: `encrypted with ${m[1]!.toUpperCase()}`, encrypted: true };
}

export const OPENSSH_MAGIC = Buffer.from('openssh-key-v1\0', 'latin1');
const SSH_NAME_RE = /^[A-Za-z0-9@._-]{1,64}$/;

/**
 * OpenSSH PROTOCOL.key: magic, string ciphername, string kdfname, string kdfoptions, uint32 N,
 * N public key strings, string private section, then the AEAD tag of the cipher if it has one
 * (16 bytes for chacha20-poly1305 and AES-GCM). Unencrypted, the private section opens with two
 * equal check integers and the first key's type, which must be the public key's.
 */
export function openSshKey(buf: Buffer): KeyFacts | undefined {
  const r = new SshReader(buf, OPENSSH_MAGIC.length);
  const cipher = r.name();
  const kdf = r.name();
  const kdfOptions = r.bytes();
  const n = r.uint32();
  if (cipher === undefined || kdf === undefined || kdfOptions === undefined || n === undefined || n < 1 || n > 64) return undefined;
  let keyType: string | undefined;
  for (let i = 0; i < n; i++) {
    const pub = r.bytes();
    if (!pub) return undefined;
    const type = new SshReader(pub, 0).name();
    if (!type) return undefined;
    keyType ??= type;
  }
  const priv = r.bytes();
  if (!priv || priv.length === 0 || priv.length % 8 !== 0) return undefined;
  const trailing = buf.length - r.pos;
  if (cipher === 'none') {
    if (kdf !== 'none' || trailing !== 0) return undefined;
    const p = new SshReader(priv, 0);
    const check1 = p.uint32();
    const check2 = p.uint32();
    if (check1 === undefined || check1 !== check2 || p.name() !== keyType) return undefined;
    return { keyType: `OpenSSH ${keyType}`, encrypted: false };
  }
  if (kdf === 'none' || (trailing !== 0 && trailing !== 16)) return undefined;
  return { keyType: `OpenSSH ${keyType}, encrypted with ${cipher}`, encrypted: true };
}

/** RFC 4251 §5 data types, bounds-checked. */
class SshReader {
  constructor(private readonly buf: Buffer, public pos: number) {}

  uint32(): number | undefined {
    if (this.pos + 4 > this.buf.length) return undefined;
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  bytes(): Buffer | undefined {
    const len = this.uint32();
    if (len === undefined || this.pos + len > this.buf.length) return undefined;
    const v = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return v;
  }

  /** A string that names an algorithm (printable ASCII, as the SSH names of RFC 4250 §4.6.1 are). */
  name(): string | undefined {
    const b = this.bytes();
    if (!b) return undefined;
    const s = b.toString('latin1');
    return SSH_NAME_RE.test(s) ? s : undefined;
  }
}

/**
 * RFC 9580 §6 (ASCII armor of a transferable secret key, §10.2): the first packet is a Secret-Key
 * packet (tag 5, §5.5.1.3) of version 3 to 6, its length within the data, and the armor checksum
 * (CRC-24, §6.1), when present, matches.
 */
export function pgpKey(body: PemBody): KeyFacts | undefined {
  const data = Buffer.from(body.base64, 'base64');
  if (body.checksum !== undefined && crc24(data) !== Buffer.from(body.checksum, 'base64').readUIntBE(0, 3)) return undefined;
  const first = data[0];
  if (first === undefined || !(first & 0x80)) return undefined;
  let tag: number;
  let pos = 1;
  let len: number;
  if (first & 0x40) {
    // OpenPGP packet format (§4.2.1): one-, two- or five-octet lengths.
    tag = first & 0x3f;
    const o1 = data[pos];
    if (o1 === undefined) return undefined;
    if (o1 < 192) { len = o1; pos += 1; }
    else if (o1 < 224) { if (data.length < pos + 2) return undefined; len = ((o1 - 192) << 8) + data[pos + 1]! + 192; pos += 2; }
    else if (o1 === 255) { if (data.length < pos + 5) return undefined; len = data.readUInt32BE(pos + 1); pos += 5; }
    else return undefined; // a partial length is not allowed for a key packet (§4.2.1.4)
  } else {
    // Legacy packet format (§4.2.2).
    tag = (first >> 2) & 0x0f;
    const lengthType = first & 0x03;
    const n = [1, 2, 4][lengthType];
    if (n === undefined || data.length < pos + n) return undefined;
    len = data.readUIntBE(pos, n);
    pos += n;
  }
  const version = data[pos];
  if (tag !== 5 || pos + len > data.length || version === undefined || version < 3 || version > 6) return undefined;
  const s2kUsage = pgpS2kUsage(data.subarray(pos, pos + len));
  const encrypted = s2kUsage === undefined ? 'unknown' : s2kUsage !== 0;
  return { keyType: `OpenPGP v${version}${encrypted === true ? ', encrypted' : ''}`, encrypted };
}

/**
 * The S2K usage octet of a Secret-Key packet body (RFC 9580 §5.5.3: 0 means the secret key
 * material is not encrypted), found by skipping the public key fields (§5.5.2): by their length
 * field in versions 5 and 6, by the algorithm's fields in version 4. Undefined when unknown.
 */
function pgpS2kUsage(body: Buffer): number | undefined {
  const version = body[0];
  if (version === 5 || version === 6) return body[10];
  if (version !== 4) return undefined;
  let pos = 6;
  const mpis = (n: number) => {
    for (let i = 0; i < n && pos + 2 <= body.length; i++) pos += 2 + Math.ceil(body.readUInt16BE(pos) / 8);
  };
  const oid = () => { pos += 1 + (body[pos] ?? 0); };
  switch (body[5]) {
    case 1: case 2: case 3: mpis(2); break; // RSA: n, e
    case 16: mpis(3); break; // Elgamal: p, g, y
    case 17: mpis(4); break; // DSA: p, q, g, y
    case 19: case 22: oid(); mpis(1); break; // ECDSA, EdDSALegacy: curve OID, point
    case 18: oid(); mpis(1); pos += 1 + (body[pos] ?? 0); break; // ECDH: curve OID, point, KDF parameters
    case 25: pos += 32; break; // X25519
    case 26: pos += 56; break; // X448
    case 27: pos += 32; break; // Ed25519
    case 28: pos += 57; break; // Ed448
    default: return undefined;
  }
  return body[pos];
}

/** RFC 9580 §6.1.1 CRC-24. */
function crc24(data: Buffer): number {
  let crc = 0xb704ce;
  for (const byte of data) {
    crc ^= byte << 16;
    for (let i = 0; i < 8; i++) {
      crc <<= 1;
      if (crc & 0x1000000) crc ^= 0x1864cfb;
    }
  }
  return crc & 0xffffff;
}
