import { MandateError } from '../core/errors.js';

/**
 * A token bucket per key (per NHI and tool, say): `burst` tokens at most, refilled at
 * `perSecond` tokens a second, one token per request. Buckets are refilled lazily when a key is
 * seen (no timer), so the cost is O(1) per request.
 *
 * Memory is bounded by `maxKeys`. A bucket that has refilled to `burst` is identical to the
 * bucket a new key gets, so it can be dropped without changing any answer; those go first.
 * Only when none are full is the least recently used bucket evicted (which forgives that key's
 * debt: size `maxKeys` well above the number of keys active within `burst / perSecond` seconds).
 */

export interface TokenBucketOptions {
  /** Tokens added per second (> 0). */
  readonly perSecond: number;
  /** Bucket size: the requests a key may make at once (≥ 1). */
  readonly burst: number;
  /** Buckets kept at most (≥ 1). */
  readonly maxKeys: number;
}

export type TakeResult = { ok: true } | { ok: false; retryAfterS: number };

interface Bucket {
  readonly key: string;
  tokens: number;
  /** The instant (ms) `tokens` was computed for. */
  at: number;
  /** Recency list: `prev` is less recently used, `next` more. */
  prev: Bucket | undefined;
  next: Bucket | undefined;
}

const OK: TakeResult = Object.freeze({ ok: true });

/**
 * Refill adds `elapsed × rate` in floating point, so ten refills of 0.1 make 0.9999999999999999.
 * Token counts within this margin of a whole token count as that token.
 */
const EPSILON = 1e-9;

export class TokenBucketLimiter {
  private readonly perMs: number;
  private readonly perSecond: number;
  private readonly burst: number;
  private readonly maxKeys: number;
  private readonly buckets = new Map<string, Bucket>();
  /**
   * Recency order as an intrusive doubly linked list (least recent at `lru`). Not the Map's own
   * insertion order: V8 leaves deleted entries in place until it rehashes, so walking a Map from
   * the front after many deletions skips them all, and eviction under a flood of keys went quadratic.
   */
  private lru: Bucket | undefined;
  private mru: Bucket | undefined;

  constructor(opts: TokenBucketOptions) {
    const { perSecond, burst, maxKeys } = opts;
    if (!(Number.isFinite(perSecond) && perSecond > 0)) throw new MandateError('ERR_VALIDATION', 'rate limit perSecond must be a positive number');
    if (!(Number.isFinite(burst) && burst >= 1)) throw new MandateError('ERR_VALIDATION', 'rate limit burst must be at least 1');
    if (!(Number.isInteger(maxKeys) && maxKeys >= 1)) throw new MandateError('ERR_VALIDATION', 'rate limit maxKeys must be a positive integer');
    this.perSecond = perSecond;
    this.perMs = perSecond / 1000;
    this.burst = burst;
    this.maxKeys = maxKeys;
  }

  /**
   * Takes one token for `key` at `now` (epoch ms). When the bucket has less than one token,
   * nothing is taken and `retryAfterS` says when one will be there, in whole seconds rounded up
   * and at least 1 (RFC 9110 §10.2.3 `Retry-After` is delay-seconds, a non-negative integer;
   * 0 would invite an immediate retry that fails again). A clock that steps back refills nothing.
   */
  take(key: string, now: number): TakeResult {
    let b = this.buckets.get(key);
    if (b === undefined) {
      b = { key, tokens: this.burst, at: now, prev: undefined, next: undefined };
      this.buckets.set(key, b);
      this.append(b);
      if (this.buckets.size > this.maxKeys) this.evict(now, b);
    } else {
      this.refill(b, now);
      if (b !== this.mru) {
        this.unlink(b);
        this.append(b);
      }
    }
    if (b.tokens >= 1 - EPSILON) {
      b.tokens = Math.max(0, b.tokens - 1);
      return OK;
    }
    const waitS = (1 - b.tokens) / this.perSecond;
    return { ok: false, retryAfterS: Math.max(1, Math.ceil(waitS - EPSILON)) };
  }

  /** Drops every bucket that has refilled to `burst` by `now` (for an optional periodic sweep). */
  prune(now: number): number {
    let dropped = 0;
    for (let b = this.lru; b !== undefined; ) {
      const next = b.next;
      this.refill(b, now);
      if (b.tokens >= this.burst - EPSILON) {
        this.remove(b);
        dropped++;
      }
      b = next;
    }
    return dropped;
  }

  /** Buckets held. */
  get size(): number {
    return this.buckets.size;
  }

  private refill(b: Bucket, now: number): void {
    const elapsed = now - b.at;
    if (elapsed > 0) {
      b.tokens = Math.min(this.burst, b.tokens + elapsed * this.perMs);
      b.at = now;
    }
  }

  /**
   * Brings the map back to `maxKeys`. From the least recent end, full buckets are dropped (no
   * answer changes); the walk stops at the first bucket that is not full, so the work is O(1)
   * amortized (each bucket is dropped once). If that frees nothing, the least recent is evicted.
   * `keep` (the bucket being taken from, the most recent) is never dropped.
   */
  private evict(now: number, keep: Bucket): void {
    while (this.lru !== undefined && this.lru !== keep) {
      const b = this.lru;
      this.refill(b, now);
      if (b.tokens < this.burst - EPSILON) break;
      this.remove(b);
    }
    while (this.buckets.size > this.maxKeys && this.lru !== undefined && this.lru !== keep) this.remove(this.lru);
  }

  private append(b: Bucket): void {
    b.prev = this.mru;
    b.next = undefined;
    if (this.mru) this.mru.next = b;
    else this.lru = b;
    this.mru = b;
  }

  private unlink(b: Bucket): void {
    if (b.prev) b.prev.next = b.next;
    else this.lru = b.next;
    if (b.next) b.next.prev = b.prev;
    else this.mru = b.prev;
    b.prev = b.next = undefined;
  }

  private remove(b: Bucket): void {
    this.unlink(b);
    this.buckets.delete(b.key);
  }
}
