import uPlot from 'uplot';
import type { ComponentChildren } from 'preact';
import { useEffect, useRef } from 'preact/hooks';
import { html } from './html.js';

export const PALETTE = ['#1d4ed8', '#0f766e', '#a16207', '#7c3aed', '#be185d', '#475569'];

/**
 * A uPlot chart (canvas, ~45 KiB minified, fast with thousands of points; see
 * docs/architecture.md). `summary` is its text alternative for screen readers.
 */
export function Chart(p: { name: string; title: string; summary: string; opts: Omit<uPlot.Options, 'width' | 'height'>; data: uPlot.AlignedData; children?: ComponentChildren }) {
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    const u = new uPlot({ ...p.opts, width: Math.max(280, Math.min(720, el.clientWidth || 480)), height: 220 }, p.data, el);
    return () => u.destroy();
  }, [p.data]);
  return html`<figure class="chart" data-chart=${p.name}>
    <figcaption>${p.title}</figcaption>
    <div ref=${ref} role="img" aria-label=${p.summary}></div>
    ${p.children}
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

export interface AgeBin { label: string; max_days: number | null; count: number }

/** Credential ages (since creation or last rotation) in bins, from GET /metrics/credential-ages. */
export function SecretAges(p: { bins: AgeBin[] }) {
  const summary = p.bins.map((b) => `${b.label}: ${b.count}`).join(', ');
  return html`<${Chart} name="secret-ages" title="Secret age distribution (stored credentials)" summary=${summary} data=${[p.bins.map((_, i) => i), p.bins.map((b) => b.count)]} opts=${{
    scales: { x: { time: false, range: [-0.5, p.bins.length - 0.5] } },
    axes: [{ splits: () => p.bins.map((_, i) => i), values: (_u: uPlot, splits: number[]) => splits.map((i) => p.bins[i]?.label ?? ''), font: '11px system-ui' }, { label: 'credentials' }],
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
    name="time-to-revoke" data=${[pts.map((x) => x[0] / 1000), pts.map((x) => x[1])]} opts=${{
      scales: timeScale,
      series: [{}, { label: 'seconds', stroke: PALETTE[1], width: 2, points: { show: true, size: 6 } }],
      axes: [{}, { label: 'seconds' }],
    }} />`;
}

export interface MintingSeries {
  nhi: string; total: number; counts: number[]; thresholds: Array<number | null>;
  anomalies: Array<{ hour: number; kind: 'spike' | 'new_hour'; count: number; threshold: number }>;
}

/**
 * Tokens minted per NHI per UTC hour (GET /metrics/minting): governance judges each hour by
 * the minting-rate detection's baseline (same hour on earlier days, median + k × MAD) and
 * marks the anomalous ones; the first NHI's threshold is drawn dashed.
 */
export function MintingRate(p: { hours: number[]; series: MintingSeries[] }) {
  if (p.series.length === 0) return html`<${NoData} title="Minting rate per NHI" text="No token has been issued in this period." />`;
  const anomalies: Array<number | null> = p.hours.map(() => null);
  const anomalous: string[] = [];
  for (const s of p.series) {
    for (const a of s.anomalies) {
      const i = p.hours.indexOf(a.hour);
      if (i >= 0) anomalies[i] = Math.max(anomalies[i] ?? 0, a.count);
      anomalous.push(`${s.nhi}: ${a.count} tokens at ${new Date(a.hour).toISOString().slice(0, 13)}:00Z (${a.kind === 'spike' ? `threshold ${a.threshold}` : 'an hour never used'})`);
    }
  }
  const first = p.series[0]!;
  const total = p.series.reduce((n, s) => n + s.total, 0);
  const summary = `${total} tokens for ${p.series.length} NHIs over ${p.hours.length} hours; ${anomalous.length ? `anomalies: ${anomalous.join('; ')}` : 'no anomaly'}`;
  return html`<${Chart} name="minting" title="Minting rate per NHI (tokens per hour; ◆ anomaly)" summary=${summary}
    data=${[p.hours.map((x) => x / 1000), ...p.series.map((s) => s.counts), first.thresholds, anomalies]} opts=${{
      scales: timeScale,
      series: [
        {},
        ...p.series.map((s, i) => ({ label: s.nhi, stroke: PALETTE[i % PALETTE.length], width: 2 })),
        { label: `${first.nhi} threshold`, stroke: '#94a3b8', width: 1, dash: [6, 4] },
        { label: 'anomaly', stroke: '#dc2626', width: 0, points: { show: true, size: 12, fill: '#dc2626' } },
      ],
      axes: [{}, { label: 'tokens / hour' }],
    }}>
    ${anomalous.length > 0 && html`<p class="warn" data-anomaly>Anomalous minting: ${anomalous.join('; ')}</p>`}
  <//>`;
}

/** Programme metrics over the weekly snapshots (ratios as %). */
export function ProgrammeTrend(p: { points: Array<{ at: number; federated_pct: number | null; median_age_days: number | null; admin: number | null; revoke_mean_s: number | null }> }) {
  if (p.points.length < 2) return html`<${NoData} title="Programme trend (weekly)" text="The trend needs snapshots of at least two weeks (one is taken each day by the sweep)." />`;
  const col = <K extends keyof (typeof p.points)[number]>(k: K) => p.points.map((x) => x[k] as number | null);
  return html`<${Chart} name="programme" title="Programme trend (last snapshot of each week)" summary=${`${p.points.length} weeks`}
    data=${[p.points.map((x) => x.at / 1000), col('federated_pct'), col('median_age_days'), col('admin'), col('revoke_mean_s')]} opts=${{
      scales: timeScale,
      series: [{}, { label: '% federated', stroke: PALETTE[0], width: 2 }, { label: 'median secret age (d)', stroke: PALETTE[1], width: 2 },
        { label: 'admin-tier NHIs', stroke: PALETTE[2], width: 2 }, { label: 'time to revoke (s)', stroke: PALETTE[3], width: 2 }],
      axes: [{}, {}],
    }} />`;
}

function NoData(p: { title: string; text: string }) {
  return html`<figure class="chart"><figcaption>${p.title}</figcaption><p class="muted">${p.text}</p></figure>`;
}
