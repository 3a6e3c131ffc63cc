import { createECDH, createPrivateKey, createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { OPENSSH_MAGIC, derKey, legacyEncryptedKey, openSshKey, pgpKey, tryKey, type KeyFacts, type PemBody } from './key-formats.js';

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
