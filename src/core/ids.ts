import { randomFillSync, randomUUID } from 'node:crypto';

/**
 * Random bytes are drawn from the CSPRNG in 4 KiB blocks and handed out once each (as Node's
 * own randomUUID does): one call into OpenSSL per ~250 ids instead of one per id, which the
 * proxy otherwise pays several times per request (request id, trace and span ids, audit id).
 * Each block is a fresh buffer, no byte is handed out twice, and callers get strings, so no
 * caller can see or alter another's bytes.
 */
const BLOCK = 4096;
let block = Buffer.alloc(0);
let offset = 0;

function take(n: number): Buffer {
  if (offset + n > block.length) {
    block = randomFillSync(Buffer.allocUnsafe(Math.max(BLOCK, n)));
    offset = 0;
  }
  const out = block.subarray(offset, offset + n);
  offset += n;
  return out;
}

/** A random, URL-safe identifier with a readable prefix, e.g. `apr_3k9…`. 128 bits of entropy. */
export function newId(prefix: string): string {
  return `${prefix}_${take(16).toString('base64url')}`;
}

/**
 * Like newId, with the time first: `aud_` + 9 base36 characters of epoch ms + 128 random bits.
 * Ids made later sort after earlier ones (to the millisecond), so a unique index on them grows
 * at its end instead of at a random page: for the audit table's `id`, about a third of the
 * row's insert cost (bench/proxy). The time is not a secret (the record carries it anyway).
 */
export function newSortableId(prefix: string, nowMs: number): string {
  return `${prefix}_${Math.max(0, Math.trunc(nowMs)).toString(36).padStart(9, '0')}${take(16).toString('base64url')}`;
}

/**
 * A new W3C trace id (32 lower-case hex digits) that starts with the time: 12 hex digits of epoch
 * milliseconds, then 80 random bits. Trace Context Level 1 asks only for 16 bytes, not all zero;
 * the random part is as wide as a UUIDv4's (Level 2's "random" flag is not claimed: the proxy sends
 * flags 00). Time first, so that the audit table's `trace_id` index grows at its end instead of at
 * a random page (measured: ~15–20 µs less per audit row with a random id; bench/README.md).
 */
export function newTraceId(nowMs: number): string {
  return `${Math.min(0xffffffffffff, Math.max(1, Math.trunc(nowMs))).toString(16).padStart(12, '0')}${take(10).toString('hex')}`;
}

/** `bytes` random bytes as lower-case hex (request ids, span ids). */
export function randomHex(bytes: number): string {
  return take(bytes).toString('hex');
}

export { randomUUID };
