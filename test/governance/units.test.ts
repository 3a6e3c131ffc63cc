import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MintingBaseline, safeEvidence, percentile, weekOf } from '../../src/governance/index.js';

const H = 3_600_000;
const D = 24 * H;

describe('governance building blocks', () => {
  const opts = { baselineDays: 14, minBaselineDays: 3, minCount: 10, madFactor: 5, newHour: true };

  it('minting baseline: one busy day in the history does not raise the bar for the next spike; a quiet rhythm stays quiet', () => {
    const b = new MintingBaseline(opts);
    const t0 = Date.UTC(2026, 0, 5, 9, 15);
    const counts = [3, 4, 40, 3, 5, 4];
    counts.forEach((n, d) => { for (let i = 0; i < n; i++) b.record('a', t0 + d * D); });
    const today = t0 + counts.length * D;
    for (let i = 0; i < 5; i++) b.record('a', today);
    assert.equal(b.evaluate('a', today), undefined, 'five is within the rhythm (median 4)');
    for (let i = 0; i < 10; i++) b.record('a', today);
    const v = b.evaluate('a', today);
    assert.equal(v?.kind, 'spike');
    assert.equal(v?.median, 4, 'the day with 40 does not move the median');
    assert.equal(b.evaluate('nobody', today), undefined);
  });

  it('minting baseline: history loaded from the store counts like recorded history', () => {
    const b = new MintingBaseline(opts);
    const h0 = Math.floor(Date.UTC(2026, 0, 5, 9) / H);
    b.load([0, 1, 2, 3].map((d) => ({ nhiId: 'a', hour: h0 + 24 * d, count: 2 })));
    b.record('a', (h0 + 24 * 4 + 5) * H);
    assert.equal(b.evaluate('a', (h0 + 24 * 4 + 5) * H)?.kind, 'new_hour');
  });

  it('evidence: token-shaped values and secret-named keys are redacted, the rest kept', () => {
    const e = safeEvidence({
      jti: 'abc', access_token: 'x', nested: { v: 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln', ok: 1 }, admin: 'mdt.id.secret', list: ['a'],
    }) as Record<string, any>;
    assert.deepEqual(e, { jti: 'abc', access_token: '[redacted]', nested: { v: '[redacted]', ok: 1 }, admin: '[redacted]', list: ['a'] });
  });

  it('percentile (nearest rank) and ISO weeks', () => {
    const xs = Array.from({ length: 100 }, (_, i) => i + 1);
    assert.equal(percentile(xs, 0.99), 99);
    assert.equal(percentile([5], 0.99), 5);
    assert.equal(weekOf('2026-01-07'), '2026-01-05');
    assert.equal(weekOf('2026-01-05'), '2026-01-05');
    assert.equal(weekOf('2026-01-04'), '2025-12-29');
  });
});
