import { createECDH, createPrivateKey, createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';

/**
 * Finds committed private keys exactly: a candidate is reported only when its bytes are a key,
 * not when it looks like one. A PEM block (RFC 7468) under any `… PRIVATE KEY` label is decoded,
 * whatever its layout (indented in a YAML block scalar, escaped in a JSON string, CRLF line ends,
 * trailing spaces, comment or string-literal decoration, any wrapping), and confirmed:
 *
 * - unencrypted PKCS#8 (RFC 5958), PKCS#1 (RFC 8017 A.1.2), SEC1 (RFC 5915) and OpenSSL's
 *   traditional DSA form by `crypto.createPrivateKey` (OpenSSL's own parser);
 * - encrypted PKCS#8 (`EncryptedPrivateKeyInfo`, RFC 5958 §3) by its DER structure with a
 *   PKCS#5 or PKCS#12 encryption algorithm: it is a committed private key whatever its passphrase;
 * - the legacy OpenSSL encryption (RFC 1421 `Proc-Type: 4,ENCRYPTED` / `DEK-Info` headers) by its
 *   headers and a ciphertext of whole cipher blocks;
 * - OpenSSH's own format (`openssh-key-v1\0`, PROTOCOL.key), which OpenSSL does not read, by its
 *   structure (and, unencrypted, its two equal check integers and matching key types);
 * - OpenPGP secret keys (RFC 9580 §6 armor) by a Secret-Key packet first and the armor checksum.
 *
 * Two wrappings are looked through as well: a PEM block base64-encoded once more (a Kubernetes
 * Secret's `tls.key`, a kubeconfig's `client-key-data`), and a bare base64 DER key on one line
 * (`PRIVATE_KEY=MIIEvQ…` in an env file). And a private JSON Web Key (RFC 7517, with `d`) in
 * JSON text, the form a `private_key_jwt` client's key takes, confirmed by its private part
 * matching its public part (`createPrivateKey` alone takes `"d": "REDACTED"` for an EC or RSA key).
 *
 * Look-alikes are not reported: a document that shows a `BEGIN PRIVATE KEY` armor line with `...`
 * inside, a public key or certificate under a private-key label, random base64. The result holds
 * positions and a description of the key (type, size or curve), never any of its text.
 */
export interface PrivateKeyHit {
  /** UTF-16 offset of the first character of the finding (the BEGIN line's first dash, or the base64 run). */
  offset: number;
  /** 1-based, lines split as secretlint splits them (`\r\n`, `\r`, `\n`, U+2028, U+2029). */
  line: number;
  /** 1-based, in UTF-16 code units (SARIF's default column kind). */
  column: number;
  /** The line of the finding's last character (the END marker, or the end of the base64 run). */
  endLine: number;
  /** What the key is, e.g. `EC P-256`, `RSA 2048-bit`, `OpenSSH ssh-ed25519`, `encrypted PKCS#8`, `encrypted with AES-256-CBC`. */
  keyType: string;
  /** The PEM label as written (`EC PRIVATE KEY`), or none for a bare DER key. */
  pemLabel?: string;
  /** How it is written: a PEM block, a base64-encoded PEM block, base64 DER, or a JSON Web Key. */
  encoding: 'pem' | 'base64-pem' | 'base64-der' | 'jwk';
  /** Encrypted keys are reported too: the ciphertext and its passphrase's strength are now public. */
  encrypted: boolean | 'unknown';
}

/** A PEM body longer than this is not a key (an RSA 16384-bit PKCS#8 key is ~12 KiB, escaped and indented ~3×). */
const MAX_BLOCK_CHARS = 64 * 1024;
/** A base64 run longer than this is not one key (the bare DER and base64-of-PEM forms). */
const MAX_RUN_CHARS = 96 * 1024;

// RFC 7468 §2: "-----BEGIN " label "-----". Labels seen for private keys: PRIVATE KEY, RSA/EC/DSA
// PRIVATE KEY, ENCRYPTED PRIVATE KEY, OPENSSH PRIVATE KEY, ANY PRIVATE KEY, PGP PRIVATE KEY BLOCK.
// Bounded repetition and literal anchors: linear time on any input.
const BEGIN_RE = /-----BEGIN ((?:[A-Z0-9]{1,20} ){0,3}PRIVATE KEY(?: BLOCK)?)-----/g;
const END_RE = /-----END [A-Z0-9 ]{0,80}-----/g;
/**
 * A base64 run that starts with "-----BEGIN" encoded from a 3-byte boundary, continued over line
 * breaks and indentation (`base64` wraps at 76 columns) until padding or a line that is not base64.
 * Each repetition consumes a line break, which no other part matches: linear time.
 */
const BASE64_PEM_RE = /(?<![A-Za-z0-9+/])LS0tLS1CRUdJT[A-Za-z0-9+/]*(?:[ \t]*(?:\r\n|\n|\r)[ \t]*[A-Za-z0-9+/]+)*={0,2}/g;
/**
 * A run of base64 characters, not part of a longer one, long enough to hold the smallest DER
 * private key (X25519/Ed25519 PKCS#8: 48 bytes, 64 characters).
 */
const BASE64_DER_RE = /(?<![A-Za-z0-9+/])M[A-Za-z0-9+/]{61,}={0,2}(?![A-Za-z0-9+/=])/g;

/** Every confirmed private key in `text`, in order of position. */
export function findPrivateKeys(text: string): PrivateKeyHit[] {
  const lines = new LineIndex(text);
  const hits: PrivateKeyHit[] = [];
  const covered: [number, number][] = [];
  const inside = (start: number, end: number) => covered.some(([s, e]) => start < e && end > s);
  for (const block of pemKeys(text)) {
    hits.push(at(lines, block.start, block.end, { ...block.key, pemLabel: block.label, encoding: 'pem' }));
    covered.push([block.start, block.end]);
  }
  if (text.includes('LS0tLS1CRUdJT')) {
    for (const m of text.matchAll(BASE64_PEM_RE)) {
      const start = m.index;
      const end = start + m[0].length;
      if (m[0].length > MAX_RUN_CHARS || inside(start, end)) continue;
      // One level of wrapping only: the decoded text is searched for PEM blocks, not again for base64.
      const inner = pemKeys(Buffer.from(m[0].replace(/\s+/g, ''), 'base64').toString('latin1'))[0];
      if (!inner) continue;
      hits.push(at(lines, start, end, { ...inner.key, pemLabel: inner.label, encoding: 'base64-pem' }));
      covered.push([start, end]);
    }
  }
  // 'M' is the first base64 character of a DER SEQUENCE (0x30), which every key form below is.
  for (const m of text.matchAll(BASE64_DER_RE)) {
    const start = m.index;
    const end = start + m[0].length;
    if (m[0].length > MAX_RUN_CHARS || inside(start, end)) continue;
    const key = derKey(Buffer.from(m[0], 'base64'), true);
    if (key) hits.push(at(lines, start, end, { ...key, encoding: 'base64-der' }));
  }
  if (text.includes('"kty"')) {
    for (const jwk of jwkKeys(text)) hits.push(at(lines, jwk.start, jwk.end, { ...jwk.key, encoding: 'jwk' }));
  }
  return hits.sort((a, b) => a.offset - b.offset);
}

/** A JWK's `kty` member (RFC 7518 §6.1, RFC 8037 §2) for a key type that has a private part. */
const JWK_KTY_RE = /"kty"\s*:\s*"(?:RSA|EC|OKP)"/g;
/** A JWK object longer than this is not one (an RSA 16384-bit private JWK is ~11 KiB). */
const MAX_JWK_CHARS = 32 * 1024;

/**
 * JSON objects around a `kty` member that hold a private JWK. The object is the innermost `{…}`
 * around the member, found in one string-aware pass over the text; a JWK's members are strings
 * and arrays of strings, so an object with an object inside is not one (a multi-prime RSA key's
 * `oth`, RFC 7518 §6.3.2.7, which node:crypto does not read either, is the exception).
 */
function jwkKeys(text: string): { start: number; end: number; key: KeyFacts }[] {
  const ktys = [...text.matchAll(JWK_KTY_RE)].map((m) => m.index);
  if (ktys.length === 0) return [];
  const candidates = new Map<number, number>();
  const open: number[] = [];
  /** Open objects with a `kty` member, and open objects with an object inside. */
  const withKty = new Set<number>();
  const withObject = new Set<number>();
  let k = 0;
  for (let i = 0; i < text.length && (k < ktys.length || withKty.size > 0); i++) {
    const c = text[i];
    if (c === '"') {
      while (k < ktys.length && ktys[k]! <= i) {
        const top = open[open.length - 1];
        if (ktys[k] === i && top !== undefined) withKty.add(top);
        k++;
      }
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === '\\') i++;
    } else if (c === '{') {
      // An object that holds an object is not a JWK: only innermost objects are parsed, and
      // they do not overlap, so each character is parsed at most once.
      const parent = open[open.length - 1];
      if (parent !== undefined) withObject.add(parent);
      open.push(i);
    } else if (c === '}') {
      const from = open.pop();
      if (from === undefined) continue;
      if (withKty.delete(from) && !withObject.has(from) && i + 1 - from <= MAX_JWK_CHARS) candidates.set(from, i + 1);
      withObject.delete(from);
    }
  }
  const found: { start: number; end: number; key: KeyFacts }[] = [];
  for (const [start, end] of candidates) {
    let jwk: unknown;
    try {
      jwk = JSON.parse(text.slice(start, end));
    } catch {
      continue;
    }
    if (typeof jwk !== 'object' || jwk === null || !isPrivateJwk(jwk as JsonWebKey)) continue;
    const key = tryKey(() => createPrivateKey({ key: jwk as JsonWebKey, format: 'jwk' }));
    if (key) found.push({ start, end, key });
  }
  return found;
}

const EC_CURVES: Record<string, string> = { 'P-256': 'prime256v1', 'P-384': 'secp384r1', 'P-521': 'secp521r1', secp256k1: 'secp256k1' };
const BASE64URL_RE = /^[A-Za-z0-9_-]+$/;

/**
 * Whether a JWK holds the private key of its public part: RSA (RFC 7518 §6.3) by p·q = n; EC
 * (§6.2) by d·G = (x, y); OKP (RFC 8037 §2) by the public key derived from `d` being `x`.
 * Placeholders (`"d": "..."`) fail.
 */
function isPrivateJwk(jwk: JsonWebKey): boolean {
  const b64 = (v: unknown) => (typeof v === 'string' && BASE64URL_RE.test(v) ? Buffer.from(v, 'base64url') : undefined);
  const d = b64(jwk.d);
  if (!d) return false;
  try {
    if (jwk.kty === 'RSA') {
      // node:crypto reads an RSA JWK only with its primes (§6.3.2.2-6), and n = p·q is the key.
      const [n, p, q] = [b64(jwk.n), b64(jwk.p), b64(jwk.q)];
      if (!n || !p || !q) return false;
      const big = (b: Buffer) => BigInt(`0x${b.toString('hex')}`);
      return big(p) > 1n && big(q) > 1n && big(p) * big(q) === big(n);
    }
    if (jwk.kty === 'EC') {
      const curve = EC_CURVES[String(jwk.crv)];
      const x = b64(jwk.x);
      const y = b64(jwk.y);
      if (!curve || !x || !y) return false;
      const ecdh = createECDH(curve);
      ecdh.setPrivateKey(d);
      const point = ecdh.getPublicKey();
      const size = (point.length - 1) / 2;
      const pad = (b: Buffer) => Buffer.concat([Buffer.alloc(Math.max(0, size - b.length)), b]);
      return point.equals(Buffer.concat([Buffer.from([4]), pad(x), pad(y)]));
    }
    if (jwk.kty === 'OKP') {
      const derived = createPublicKey(createPrivateKey({ key: jwk, format: 'jwk' })).export({ format: 'jwk' });
      return typeof jwk.x === 'string' && derived.x === jwk.x;
    }
  } catch {
    return false;
  }
  return false;
}

interface KeyFacts {
  keyType: string;
  encrypted: boolean | 'unknown';
}

interface PemKey {
  start: number;
  end: number;
  label: string;
  key: KeyFacts;
}

/** PEM blocks under a private-key label whose content is a key. */
function pemKeys(text: string): PemKey[] {
  if (!text.includes('PRIVATE KEY')) return [];
  const begins = [...text.matchAll(BEGIN_RE)];
  if (begins.length === 0) return [];
  const ends = [...text.matchAll(END_RE)].map((m) => ({ start: m.index, end: m.index + m[0].length }));
  const found: PemKey[] = [];
  let e = 0;
  for (let i = 0; i < begins.length; i++) {
    const m = begins[i]!;
    const bodyStart = m.index + m[0].length;
    while (e < ends.length && ends[e]!.start < bodyStart) e++;
    const end = ends[e];
    if (!end || end.start - bodyStart > MAX_BLOCK_CHARS) continue;
    // Another BEGIN before this block's END: this one is broken; the inner one is a block of its own.
    // (Bodies are then disjoint, so the whole text is decoded at most once.)
    const next = begins[i + 1];
    if (next && next.index < end.start) continue;
    const label = m[1]!;
    const key = pemBodyKey(label, text.slice(bodyStart, end.start));
    if (key) found.push({ start: m.index, end: end.end, label, key });
  }
  return found;
}

/**
 * The key in a PEM body, read in two ways. First as a PEM parser reads it once the escapes of a
 * string literal are undone and each line trimmed: plain, indented, JSON, CRLF, trailing spaces.
 * Then, when that fails, as lines that carry decoration around the base64 (a comment mark, quoted
 * string literals with their `+` or `,`): each line's longest base64 run is taken.
 */
function pemBodyKey(label: string, body: string): KeyFacts | undefined {
  const unescaped = unescape(body);
  for (const decorated of [false, true]) {
    // Decorated, a quote ends a line too: string literals joined by `+`, or listed in an array.
    const parsed = readBody(decorated ? unescaped.replace(/["'`]/g, '\n') : unescaped, decorated);
    if (!parsed) continue;
    const key = label.startsWith('PGP ') ? pgpKey(parsed) : pemKey(parsed);
    if (key) return key;
  }
  return undefined;
}

/**
 * Undoes the escapes a PEM text gets inside string literals and markup: `\uXXXX`, `\n`, `\r`,
 * `\t`, `\/` (JSON, RFC 8259 §7; also doubly escaped JSON in JSON), XML/HTML numeric character
 * references (`&#13;`, `&#xA;`) and `<br>`, and drops any other backslash (a line continuation):
 * base64 has none, so no backslash belongs to the key.
 */
function unescape(body: string): string {
  return body
    .replace(/&#(?:[xX]([0-9A-Fa-f]{1,4})|([0-9]{1,5}));/g, (_, hex: string | undefined, dec: string | undefined) => String.fromCharCode(hex ? Number.parseInt(hex, 16) : Number(dec)))
    .replace(/<br\s{0,4}\/?>/gi, '\n')
    .replace(/\\+u([0-9A-Fa-f]{4})/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)))
    .replace(/\\+(?:r\\+n|n|r)/g, '\n')
    .replace(/\\+t/g, ' ')
    .replace(/\\/g, '');
}

interface PemBody {
  headers: Map<string, string>;
  base64: string;
  /** An OpenPGP armor checksum line (`=XXXX`), when there is one. */
  checksum?: string;
}

const HEADER_RE = /^([A-Za-z][A-Za-z0-9-]{0,40}): ?(.*)$/;
const LINE_SPLIT_RE = /\r\n|[\r\n\u2028\u2029]/;

/**
 * RFC 1421/RFC 9580 §6.2: optional `Name: value` headers, then the base64 lines. `decorated`
 * strips what surrounds a header (`"Proc-Type: 4,ENCRYPTED" +`) and keeps each other line's
 * longest base64 run that is not an operator or comment mark (`+`, `//`). Decorated lines are
 * meant to be wrapped at a multiple of 4 characters, as every tool wraps base64 (64 or 76): a
 * last line of 1 to 3 characters, all `+` or `/`, is taken for an operator.
 */
function readBody(body: string, decorated: boolean): PemBody | undefined {
  const headers = new Map<string, string>();
  const data: string[] = [];
  for (const raw of body.split(LINE_SPLIT_RE)) {
    const line = raw.trim();
    if (line === '') continue;
    // A header starts with a letter: a decorated one after its comment mark or quote.
    const header = data.length === 0 ? HEADER_RE.exec(decorated ? line.replace(/^[^A-Za-z]+/, '') : line) : null;
    if (header) {
      const value = header[2]!.trim();
      headers.set(header[1]!.toLowerCase(), decorated ? value.replace(/[^A-Za-z0-9]+$/, '') : value);
      continue;
    }
    if (decorated) {
      const runs = line.match(/[A-Za-z0-9+/=]+/g) ?? [];
      // A line of only quotes, operators and comment marks (`"" +`, `//`) holds no data.
      if (runs.every(isOperator)) continue;
      const run = longestRun(runs);
      if (run) data.push(run);
    } else {
      data.push(line.replace(/\s+/g, ''));
    }
  }
  let checksum: string | undefined;
  const last = data[data.length - 1];
  if (last && /^=[A-Za-z0-9+/]{4}$/.test(last)) {
    checksum = last.slice(1);
    data.pop();
  }
  const base64 = data.join('');
  if (base64.length < 4 || !/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) return undefined;
  return { headers, base64, ...(checksum ? { checksum } : {}) };
}

/** `+`, `/`, `//`: shorter than a base64 line wrapped at a multiple of 4 (`////` is data: 0xFF bytes). */
const isOperator = (run: string) => /^[+/]{1,3}$/.test(run);

function longestRun(runs: string[]): string | undefined {
  return runs.filter((r) => !isOperator(r)).reduce<string | undefined>((a, b) => (a === undefined || b.length > a.length ? b : a), undefined);
}

/** The key in a decoded PEM body (not OpenPGP). */
function pemKey(body: PemBody): KeyFacts | undefined {
  const der = Buffer.from(body.base64, 'base64');
  const procType = body.headers.get('proc-type');
  if (procType !== undefined) return legacyEncryptedKey(procType, body.headers.get('dek-info'), der);
  if (der.subarray(0, OPENSSH_MAGIC.length).equals(OPENSSH_MAGIC)) return openSshKey(der);
  return derKey(der, false);
}

/**
 * A DER private key: encrypted PKCS#8 by structure, the unencrypted forms by OpenSSL. Every form
 * is one DER SEQUENCE; `exact` (a bare base64 run, which is not announced by a label) also wants
 * it to span the whole input, which most base64 runs of a source tree fail before OpenSSL sees them.
 */
function derKey(der: Buffer, exact: boolean): KeyFacts | undefined {
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

function tryKey(make: () => KeyObject): KeyFacts | undefined {
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
function legacyEncryptedKey(procType: string, dekInfo: string | undefined, ciphertext: Buffer): KeyFacts | undefined {
  if (!/^4,\s*ENCRYPTED$/i.test(procType) || !dekInfo) return undefined;
  const m = /^([A-Za-z0-9-]{2,40})\s*,\s*([0-9A-Fa-f]{16}|[0-9A-Fa-f]{32})$/.exec(dekInfo);
  if (!m) return undefined;
  const block = m[2]!.length / 2;
  if (ciphertext.length < 2 * block || ciphertext.length % block !== 0) return undefined;
  return { keyType: `encrypted with ${m[1]!.toUpperCase()}`, encrypted: true };
}

const OPENSSH_MAGIC = Buffer.from('openssh-key-v1\0', 'latin1');
const SSH_NAME_RE = /^[A-Za-z0-9@._-]{1,64}$/;

/**
 * OpenSSH PROTOCOL.key: magic, string ciphername, string kdfname, string kdfoptions, uint32 N,
 * N public key strings, string private section, then the AEAD tag of the cipher if it has one
 * (16 bytes for chacha20-poly1305 and AES-GCM). Unencrypted, the private section opens with two
 * equal check integers and the first key's type, which must be the public key's.
 */
function openSshKey(buf: Buffer): KeyFacts | undefined {
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
function pgpKey(body: PemBody): KeyFacts | undefined {
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

function at(lines: LineIndex, start: number, end: number, facts: KeyFacts & { pemLabel?: string; encoding: PrivateKeyHit['encoding'] }): PrivateKeyHit {
  const begin = lines.position(start);
  return { offset: start, line: begin.line, column: begin.column, endLine: lines.position(Math.max(start, end - 1)).line, ...facts };
}

/** Offsets to 1-based line and column. */
class LineIndex {
  private starts: number[] | undefined;

  constructor(private readonly text: string) {}

  position(offset: number): { line: number; column: number } {
    const starts = (this.starts ??= lineStarts(this.text));
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, column: offset - starts[lo]! + 1 };
  }
}

function lineStarts(text: string): number[] {
  const starts = [0];
  const re = /\r\n|[\r\n\u2028\u2029]/g;
  for (const m of text.matchAll(re)) starts.push(m.index + m[0].length);
  return starts;
}
