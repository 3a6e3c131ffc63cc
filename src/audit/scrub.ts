/**
 * Defence in depth for audit data. Callers must never put a secret, token, proof or credential
 * in an audit event: they pass ids and digests (`jti`, `token_sha256`, `dpop_jkt`). This scrubber
 * catches the mistakes that slip through anyway, at record() time, before anything is queued:
 *
 * - keys whose name contains authorization, token, secret, assertion, dpop, password, passwd,
 *   passphrase, cookie, apikey, privatekey or kek (ignoring case, `_` and `-`) get '[redacted]',
 *   unless the name ends in a suffix that marks a non-secret derivative (…_hash, …_sha256,
 *   …_digest, …_jkt, …_id, …_type, …_ttl, …), so `token_sha256`, `dpop_jkt` and `token_type` stay;
 * - string values that look like a compact JWS/JWE (`eyJ….….…`) or an HTTP credential
 *   (`Bearer …`, `DPoP …`, `Basic …`) are redacted wherever they appear;
 * - the result is plain JSON (no cycles, no functions, bigint as string, bounded depth and size),
 *   so that what is hashed is exactly what the store reads back.
 */

import { canonicalJson } from '../core/canonical.js';

export const REDACTED = '[redacted]';

const SENSITIVE = /(authorization|token|secret|assertion|dpop|password|passwd|passphrase|cookie|apikey|privatekey|kek)/;
const SAFE_SUFFIX =
  /(hash|hashes|digest|sha256|sha|fingerprint|thumbprint|jkt|id|ids|ref|type|types|count|ttl|kind|profile|endpoint|url|uri|exp|expiry|expiresat|issuedat|iat|format|alg|status|reason|error|present|required|bound|binding)$/;
// A whole value that is an Authorization header (scheme + one credential), not prose like "Basic plan".
const AUTH_SCHEME = /^\s*(bearer|dpop|basic|negotiate)\s+[A-Za-z0-9._~+/=-]{8,}\s*$/i;
const COMPACT_JOSE = /eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*(\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*)?/g;
// Lone UTF-16 surrogates become U+FFFD: a driver would do it silently when encoding to UTF-8,
// and the stored text would then no longer match what was hashed.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

const MAX_DEPTH = 8;
const MAX_STRING = 8192;

/**
 * Answers for the keys seen so far: audit data repeats the same dozen keys on every event (the
 * proxy records every call), and the test is a pure function of the key. Bounded; when full,
 * new keys are simply tested each time.
 */
const keyVerdicts = new Map<string, boolean>();
const MAX_KEY_VERDICTS = 4096;

/** True when a data key must not carry its value into the audit log. */
export function isSensitiveKey(key: string): boolean {
  const known = keyVerdicts.get(key);
  if (known !== undefined) return known;
  const k = key.toLowerCase().replace(/[^a-z0-9]/g, '');
  const sensitive = SENSITIVE.test(k) && !SAFE_SUFFIX.test(k);
  if (keyVerdicts.size < MAX_KEY_VERDICTS) keyVerdicts.set(key, sensitive);
  return sensitive;
}

/** A string made safe for every store (no NUL, well-formed UTF-16) and bounded in length. */
export function cleanString(s: string, max = MAX_STRING): string {
  let out = s.includes('\u0000') ? s.replace(/\u0000/g, '') : s;
  // The native check first: almost every string is well-formed, and then nothing is replaced.
  if (!(out as WellFormed).isWellFormed()) out = out.replace(LONE_SURROGATE, '\uFFFD');
  return out.length > max ? `${out.slice(0, max)}…[truncated ${out.length - max} chars]` : out;
}

/** ES2024 String.prototype.isWellFormed (Node 20), not yet in the ES2023 lib this project compiles against. */
type WellFormed = string & { isWellFormed(): boolean };

/**
 * Data keys known to come out of cleanString unchanged (the proxy's dozen keys on every call):
 * bounded like keyVerdicts; a key not in it is cleaned as before.
 */
const cleanKeys = new Set<string>();

function cleanKey(k: string): string {
  if (cleanKeys.has(k)) return k;
  const key = cleanString(k, 256);
  if (key === k && cleanKeys.size < MAX_KEY_VERDICTS) cleanKeys.add(k);
  return key;
}

/** The shortest string AUTH_SCHEME can match: a 4-letter scheme, one space, 8 credential characters. */
const AUTH_SCHEME_MIN = 13;

function scrubString(s: string): string {
  if (s.length >= AUTH_SCHEME_MIN && AUTH_SCHEME.test(s)) return REDACTED;
  const cleaned = cleanString(s);
  return cleaned.includes('eyJ') ? cleaned.replace(COMPACT_JOSE, REDACTED) : cleaned;
}

/** How an object with these keys is walked: its keys sorted, each cleaned and judged (pure functions of the keys). */
interface KeyPlan {
  readonly keys: readonly string[];
  readonly order: ReadonlyArray<{ readonly raw: string; readonly key: string; readonly sensitive: boolean }>;
  /** Some key changed when cleaned, so the result may be out of canonical order. */
  readonly resort: boolean;
}

/**
 * The plans of the last few key lists: audit data repeats the same shapes (the proxy's record
 * on every call), and sorting, cleaning and judging its keys was a third of the scrub. Looked up
 * by comparing the key lists; small objects only; the oldest plan makes room.
 */
const recentPlans: KeyPlan[] = [];
const MAX_PLANS = 16;
const MAX_PLANNED_KEYS = 64;
let nextPlanSlot = 0;

function keyPlan(keys: string[]): KeyPlan {
  const n = keys.length;
  for (const p of recentPlans) {
    if (p.keys.length !== n) continue;
    let same = true;
    for (let i = 0; i < n; i++) {
      if (p.keys[i] !== keys[i]) {
        same = false;
        break;
      }
    }
    if (same) return p;
  }
  let resort = false;
  const order = [...keys].sort().map((raw) => {
    const key = cleanKey(raw);
    if (key !== raw) resort = true;
    return { raw, key, sensitive: isSensitiveKey(key) };
  });
  const plan: KeyPlan = { keys, order, resort };
  if (n <= MAX_PLANNED_KEYS) {
    if (recentPlans.length < MAX_PLANS) recentPlans.push(plan);
    else {
      recentPlans[nextPlanSlot] = plan;
      nextPlanSlot = (nextPlanSlot + 1) % MAX_PLANS;
    }
  }
  return plan;
}

/**
 * A scrubbed, JSON-safe copy of `data` (the input is never modified). When the serialized
 * result exceeds maxBytes, it is replaced by a stub naming its size and top-level keys.
 */
export function scrubAuditData(data: unknown, maxBytes = 64 * 1024): Record<string, unknown> {
  return scrubAuditJson(data, maxBytes).data;
}

/**
 * `scrubAuditData`, plus the canonical JSON of the result (`core/canonical.ts`: keys sorted at
 * every depth), computed once: the audit log hashes it into the chain and stores it as the
 * row's `data` text without serializing the record again. `data` is plain JSON, exactly what
 * `JSON.parse(json)` gives (ordinary objects, no `-0`, no array holes), so what is hashed is
 * what the store reads back.
 */
export function scrubAuditJson(data: unknown, maxBytes = 64 * 1024): { data: Record<string, unknown>; json: string } {
  if (data === null || data === undefined) return { data: {}, json: '{}' };
  const ancestors = new Set<object>();
  let resort = false;
  const walk = (v: unknown, depth: number): unknown => {
    switch (typeof v) {
      case 'string':
        return scrubString(v);
      case 'number':
        // JSON has no -0 (it reads back as 0) and no non-finite numbers.
        return Number.isFinite(v) ? (v === 0 ? 0 : v) : null;
      case 'boolean':
        return v;
      case 'bigint':
        return v.toString();
      case 'undefined':
      case 'function':
      case 'symbol':
        return undefined;
    }
    if (v === null) return null;
    const obj = v as object;
    if (obj instanceof Date) return Number.isNaN(obj.getTime()) ? null : obj.toISOString();
    if (ArrayBuffer.isView(obj) || obj instanceof ArrayBuffer) return `[binary ${(obj as ArrayBuffer).byteLength} bytes]`;
    if (ancestors.has(obj)) return '[circular]';
    if (depth >= MAX_DEPTH) return '[truncated: too deep]';
    ancestors.add(obj);
    try {
      if (typeof (obj as { toJSON?: unknown }).toJSON === 'function') {
        return walk((obj as { toJSON: () => unknown }).toJSON(), depth + 1);
      }
      if (Array.isArray(obj)) {
        // A loop, not map(): holes become null, as JSON writes them.
        const arr = new Array<unknown>(obj.length);
        for (let i = 0; i < obj.length; i++) arr[i] = walk(obj[i], depth + 1) ?? null;
        return arr;
      }
      if (obj instanceof Map) return walk(Object.fromEntries(obj), depth);
      if (obj instanceof Set) return walk([...obj], depth);
      const out: Record<string, unknown> = {};
      // Keys in canonical order (core/canonical.ts sorts the same way), so that the result's
      // JSON is already canonical; a key that cleaning changes may reorder, then it is sorted again.
      const plan = keyPlan(Object.keys(obj));
      if (plan.resort) resort = true;
      for (const { raw, key, sensitive } of plan.order) {
        const w = sensitive ? REDACTED : walk((obj as Record<string, unknown>)[raw], depth + 1);
        if (w === undefined) continue;
        // An own "__proto__" key (JSON.parse makes one) stays a plain key, as in JSON.
        if (key === '__proto__') Object.defineProperty(out, key, { value: w, enumerable: true, writable: true, configurable: true });
        else out[key] = w;
      }
      return out;
    } finally {
      ancestors.delete(obj);
    }
  };
  let result = walk(data, 0);
  if (result === null || typeof result !== 'object' || Array.isArray(result)) result = { value: result ?? null };
  const json = resort ? canonicalJson(result) : JSON.stringify(result);
  const bytes = Buffer.byteLength(json, 'utf8');
  if (bytes > maxBytes) {
    const stub = { '[truncated]': true, bytes, keys: Object.keys(result as object).slice(0, 50) };
    return { data: stub, json: canonicalJson(stub) };
  }
  return { data: result as Record<string, unknown>, json };
}
