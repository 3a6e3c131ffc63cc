import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TokenBucketLimiter } from '../../src/proxy/rate-limit.js';
import { MandateError } from '../../src/core/errors.js';

const T0 = 1_700_000_000_000;

describe('TokenBucketLimiter', () => {
  it('allows a burst, then refuses with Retry-After', () => {
    const l = new TokenBucketLimiter({ perSecond: 1, burst: 3, maxKeys: 10 });
    for (let i = 0; i < 3; i++) assert.deepEqual(l.take('k', T0), { ok: true });
    assert.deepEqual(l.take('k', T0), { ok: false, retryAfterS: 1 });
  });

  it('refills lazily at perSecond, never above burst', () => {
    const l = new TokenBucketLimiter({ perSecond: 2, burst: 2, maxKeys: 10 });
    assert.equal(l.take('k', T0).ok, true);
    assert.equal(l.take('k', T0).ok, true);
    assert.equal(l.take('k', T0).ok, false);
    assert.equal(l.take('k', T0 + 499).ok, false, '0.998 of a token is not a token');
    assert.equal(l.take('k', T0 + 500).ok, true, 'one token after 500 ms at 2/s');
    assert.equal(l.take('k', T0 + 500).ok, false);
    // A long pause refills to burst, not more.
    const later = T0 + 3_600_000;
    assert.equal(l.take('k', later).ok, true);
    assert.equal(l.take('k', later).ok, true);
    assert.equal(l.take('k', later).ok, false);
  });

  it('does not take a token when refusing, and many small refills add up to a whole token', () => {
    const l = new TokenBucketLimiter({ perSecond: 1, burst: 1, maxKeys: 10 });
    assert.equal(l.take('k', T0).ok, true);
    for (let t = 0; t < 1000; t += 100) assert.equal(l.take('k', T0 + t).ok, false);
    assert.equal(l.take('k', T0 + 1000).ok, true);
  });

  it('computes Retry-After in whole seconds, rounded up, at least 1', () => {
    const slow = new TokenBucketLimiter({ perSecond: 0.1, burst: 1, maxKeys: 10 });
    assert.equal(slow.take('k', T0).ok, true);
    assert.deepEqual(slow.take('k', T0), { ok: false, retryAfterS: 10 });
    assert.deepEqual(slow.take('k', T0 + 2500), { ok: false, retryAfterS: 8 }, '7.5 s rounds up to 8');
    assert.deepEqual(slow.take('k', T0 + 9001), { ok: false, retryAfterS: 1 }, '0.999 s rounds up to 1');
    const fast = new TokenBucketLimiter({ perSecond: 1000, burst: 1, maxKeys: 10 });
    assert.equal(fast.take('k', T0).ok, true);
    assert.deepEqual(fast.take('k', T0), { ok: false, retryAfterS: 1 }, '1 ms is still 1 s for Retry-After');
    const third = new TokenBucketLimiter({ perSecond: 1 / 3, burst: 1, maxKeys: 10 });
    assert.equal(third.take('k', T0).ok, true);
    assert.deepEqual(third.take('k', T0), { ok: false, retryAfterS: 3 }, 'no rounding error pushes 3 s to 4');
  });

  it('keeps keys apart', () => {
    const l = new TokenBucketLimiter({ perSecond: 1, burst: 1, maxKeys: 10 });
    assert.equal(l.take('a', T0).ok, true);
    assert.equal(l.take('a', T0).ok, false);
    assert.equal(l.take('b', T0).ok, true);
  });

  it('refills nothing when the clock steps back', () => {
    const l = new TokenBucketLimiter({ perSecond: 1, burst: 1, maxKeys: 10 });
    assert.equal(l.take('k', T0).ok, true);
    assert.equal(l.take('k', T0 - 60_000).ok, false);
    assert.equal(l.take('k', T0 + 999).ok, false, 'the refill still counts from the latest instant seen');
    assert.equal(l.take('k', T0 + 1000).ok, true);
  });

  it('holds at most maxKeys buckets', () => {
    const l = new TokenBucketLimiter({ perSecond: 1, burst: 5, maxKeys: 100 });
    for (let i = 0; i < 10_000; i++) l.take(`k${i}`, T0);
    assert.equal(l.size, 100);
  });

  it('when over maxKeys, drops every full bucket at the least recent end, keeping buckets in debt', () => {
    const l = new TokenBucketLimiter({ perSecond: 1, burst: 2, maxKeys: 4 });
    for (const k of ['a', 'b', 'c']) l.take(k, T0); // each has 1 of 2 tokens
    l.take('debtor', T0 + 900);
    l.take('debtor', T0 + 900); // 0 tokens
    l.take('x', T0 + 1000); // size 5 > 4: a, b, c are full again by now and all go; debtor stays
    assert.equal(l.size, 2);
    assert.equal(l.take('debtor', T0 + 1000).ok, false, 'the debtor kept its empty bucket');
    assert.equal(l.take('a', T0 + 1000).ok, true, 'a dropped full bucket answers as a fresh one');
    assert.equal(l.take('a', T0 + 1000).ok, true);
    assert.equal(l.take('a', T0 + 1000).ok, false);
  });

  it('evicts the least recently used bucket when none is full', () => {
    const l = new TokenBucketLimiter({ perSecond: 1, burst: 1, maxKeys: 2 });
    l.take('a', T0);
    l.take('b', T0);
    l.take('a', T0 + 1); // refused, but 'a' is now the most recent
    l.take('c', T0 + 2); // evicts 'b'
    assert.equal(l.size, 2);
    assert.equal(l.take('a', T0 + 3).ok, false, 'a is still limited');
    assert.equal(l.take('b', T0 + 3).ok, true, 'b got a fresh bucket');
  });

  it('never evicts the bucket being taken from, even with maxKeys 1', () => {
    const l = new TokenBucketLimiter({ perSecond: 1, burst: 1, maxKeys: 1 });
    assert.equal(l.take('a', T0).ok, true);
    assert.equal(l.take('b', T0).ok, true);
    assert.equal(l.size, 1);
    assert.equal(l.take('b', T0).ok, false);
  });

  it('prune drops exactly the buckets that are full again', () => {
    const l = new TokenBucketLimiter({ perSecond: 1, burst: 2, maxKeys: 10 });
    l.take('a', T0);
    l.take('b', T0 + 500);
    assert.equal(l.prune(T0 + 1000), 1, 'a is full at T0+1000, b is not');
    assert.equal(l.size, 1);
    assert.equal(l.prune(T0 + 1500), 1);
    assert.equal(l.size, 0);
  });

  it('answers as a fresh bucket after a full one was dropped', () => {
    const l = new TokenBucketLimiter({ perSecond: 1, burst: 2, maxKeys: 10 });
    l.take('a', T0);
    l.prune(T0 + 5000);
    assert.equal(l.take('a', T0 + 5000).ok, true);
    assert.equal(l.take('a', T0 + 5000).ok, true);
    assert.equal(l.take('a', T0 + 5000).ok, false);
  });

  it('refuses nonsense options', () => {
    for (const o of [
      { perSecond: 0, burst: 1, maxKeys: 1 },
      { perSecond: -1, burst: 1, maxKeys: 1 },
      { perSecond: Number.NaN, burst: 1, maxKeys: 1 },
      { perSecond: Infinity, burst: 1, maxKeys: 1 },
      { perSecond: 1, burst: 0.5, maxKeys: 1 },
      { perSecond: 1, burst: 1, maxKeys: 0 },
      { perSecond: 1, burst: 1, maxKeys: 1.5 },
    ]) {
      assert.throws(() => new TokenBucketLimiter(o), MandateError, JSON.stringify(o));
    }
  });

  it('is O(1) per take under a flood of distinct keys', () => {
    const l = new TokenBucketLimiter({ perSecond: 1, burst: 10, maxKeys: 50_000 });
    const start = process.hrtime.bigint();
    for (let i = 0; i < 200_000; i++) l.take(`nhi-${i}`, T0); // none refills: every eviction is of the LRU
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    assert.equal(l.size, 50_000);
    assert.ok(ms < 5000, `${ms} ms`);
  });
});
