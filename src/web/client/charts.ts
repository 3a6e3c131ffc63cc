import uPlot from 'uplot';
import { useEffect, useRef } from 'preact/hooks';
import { html } from './html.js';

export const PALETTE = ['#1d4ed8', '#0f766e', '#a16207', '#7c3aed', '#be185d', '#475569'];

/**
 * A uPlot chart (canvas, ~45 KiB minified, fast with thousands of points; see
 * docs/architecture.md). `summary` is its text alternative for screen readers.
 */
export function Chart(p: { title: string; summary: string; opts: Omit<uPlot.Options, 'width' | 'height'>; data: uPlot.AlignedData }) {
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    const u = new uPlot({ ...p.opts, width: Math.max(280, Math.min(720, el.clientWidth || 480)), height: 220 }, p.data, el);
    return () => u.destroy();
  }, [p.data]);
  return html`<figure class="chart">
    <figcaption>${p.title}</figcaption>
    <div ref=${ref} role="img" aria-label=${p.summary}></div>
  </figure>`;
}

/** With one point uPlot 1.6 widens a time axis to 1000 days (86400 / ms); ten minutes either side reads better. */
const timeScale = {
  x: {
    time: true,
    range: (u: uPlot, min: number, max: number): [number, number] => {
      const xs = u.data[0];
      return xs.length === 1 ? [xs[0]! - 600, xs[0]! + 600] : [min, max];
    },
  },
};

const AGE_BINS: Array<[number, string]> = [[7, '< 1 week'], [30, '1-4 weeks'], [90, '1-3 months'], [180, '3-6 months'], [Infinity, '> 6 months']];

/** Credential ages (since creation or last rotation) in five bins. */
export function SecretAges(p: { agesDays: number[] }) {
  const counts = AGE_BINS.map(() => 0);
  for (const d of p.agesDays) counts[AGE_BINS.findIndex(([max]) => d < max)]! += 1;
  const summary = AGE_BINS.map(([, l], i) => `${l}: ${counts[i]}`).join(', ');
  return html`<${Chart} title="Secret age distribution (credentials)" summary=${summary} data=${[AGE_BINS.map((_, i) => i), counts]} opts=${{
    scales: { x: { time: false, range: [-0.5, AGE_BINS.length - 0.5] } },
    axes: [{ values: (_u: uPlot, splits: number[]) => splits.map((i) => (Number.isInteger(i) ? AGE_BINS[i]?.[1] ?? '' : '')) }, { label: 'credentials' }],
    series: [{}, { label: 'credentials', fill: '#93c5fd', stroke: PALETTE[0], paths: uPlot.paths.bars!({ size: [0.6] }), points: { show: false } }],
    legend: { show: false },
  }} />`;
}

/** Seconds from a signal's arrival to its enforcement, over time. */
export function TimeToRevoke(p: { points: Array<[number, number]> }) {
  if (p.points.length === 0) return html`<${NoData} title="Time to revoke" text="No signal has been applied yet." />`;
  const pts = [...p.points].sort((a, b) => a[0] - b[0]);
  const worst = pts.reduce((m, x) => Math.max(m, x[1]), 0);
  return html`<${Chart} title="Time to revoke (signal received → applied)" summary=${`${pts.length} signals applied; slowest ${worst.toFixed(3)} s`}
    data=${[pts.map((x) => x[0] / 1000), pts.map((x) => x[1])]} opts=${{
      scales: timeScale,
      series: [{}, { label: 'seconds', stroke: PALETTE[1], width: 2, points: { show: true, size: 6 } }],
      axes: [{}, { label: 'seconds' }],
    }} />`;
}

/**
 * Tokens minted per NHI in 5-minute buckets; a bucket above mean + 3σ of that NHI's buckets
 * (and at least 5 tokens) is marked as an anomaly, the same shape of rule governance's
 * minting_rate detection uses, computed here from what the page has loaded.
 */
export function MintingRate(p: { tokens: Array<{ nhi: string; issued_at: number }> }) {
  if (p.tokens.length === 0) return html`<${NoData} title="Minting rate per NHI" text="No token has been issued yet." />`;
  const BUCKET = 300_000;
  const byNhi = new Map<string, Map<number, number>>();
  for (const t of p.tokens) {
    const b = Math.floor(t.issued_at / BUCKET) * BUCKET;
    const m = byNhi.get(t.nhi) ?? new Map<number, number>();
    m.set(b, (m.get(b) ?? 0) + 1);
    byNhi.set(t.nhi, m);
  }
  const nhis = [...byNhi.entries()].sort((a, b) => sum(b[1]) - sum(a[1])).slice(0, 5);
  const all = p.tokens.map((t) => Math.floor(t.issued_at / BUCKET) * BUCKET);
  const start = Math.min(...all);
  const end = Math.max(...all);
  const xs: number[] = [];
  for (let b = start; all.length && b <= end; b += BUCKET) xs.push(b);
  const anomalies: Array<number | null> = xs.map(() => null);
  const anomalous: string[] = [];
  const series = nhis.map(([nhi, m]) => {
    const ys = xs.map((x) => m.get(x) ?? 0);
    const mean = ys.reduce((a, b) => a + b, 0) / ys.length;
    const sd = Math.sqrt(ys.reduce((a, b) => a + (b - mean) ** 2, 0) / ys.length);
    ys.forEach((y, i) => {
      if (ys.length >= 4 && y >= 5 && y > mean + 3 * sd) {
        anomalies[i] = Math.max(anomalies[i] ?? 0, y);
        anomalous.push(`${nhi} at ${new Date(xs[i]!).toISOString()}`);
      }
    });
    return ys;
  });
  const summary = `${p.tokens.length} tokens for ${nhis.length} NHIs; ${anomalous.length ? `anomalies: ${anomalous.join('; ')}` : 'no anomaly'}`;
  return html`<${Chart} title="Minting rate per NHI (tokens per 5 min; ◆ anomaly)" summary=${summary}
    data=${[xs.map((x) => x / 1000), ...series, anomalies]} opts=${{
      scales: timeScale,
      series: [
        {},
        ...nhis.map(([nhi], i) => ({ label: nhi, stroke: PALETTE[i % PALETTE.length], width: 2 })),
        { label: 'anomaly', stroke: '#dc2626', width: 0, points: { show: true, size: 10, fill: '#dc2626' } },
      ],
      axes: [{}, { label: 'tokens' }],
    }} />
    ${anomalous.length > 0 && html`<p class="warn" data-anomaly>Anomalous minting: ${anomalous.join('; ')}</p>`}`;
}

function NoData(p: { title: string; text: string }) {
  return html`<figure class="chart"><figcaption>${p.title}</figcaption><p class="muted">${p.text}</p></figure>`;
}

function sum(m: Map<number, number>): number {
  let s = 0;
  for (const v of m.values()) s += v;
  return s;
}
