/**
 * Token issuance per NHI against its own history, per UTC hour-of-day: the count of this hour
 * is compared with the counts of the same hour on earlier days (median and MAD, robust to the
 * odd busy day), so a NHI that always mints at 09:00 is not flagged at 09:00, and one that
 * never minted at 03:00 is. Pure: no I/O, time comes in with each call.
 */

const HOUR_MS = 3_600_000;

export interface BaselineOptions {
  baselineDays: number;
  minBaselineDays: number;
  minCount: number;
  madFactor: number;
  newHour: boolean;
}

export interface MintingVerdict {
  /** The UTC hour (epoch hours) evaluated. */
  hour: number;
  hourOfDay: number;
  count: number;
  /** Counts of the same hour of day on earlier days, newest first. */
  history: number[];
  median: number;
  mad: number;
  threshold: number;
  /** `spike`: above the threshold; `new_hour`: minting at an hour of day never used before. */
  kind: 'spike' | 'new_hour';
}

interface NhiHistory {
  /** Epoch hour of the first issuance seen (or loaded). */
  first: number;
  counts: Map<number, number>;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export class MintingBaseline {
  private readonly nhis = new Map<string, NhiHistory>();

  constructor(private readonly o: BaselineOptions) {}

  /** Seeds history from stored issuance (after a restart). */
  load(rows: Iterable<{ nhiId: string; hour: number; count: number }>): void {
    for (const r of rows) {
      const h = this.history(r.nhiId, r.hour);
      h.counts.set(r.hour, (h.counts.get(r.hour) ?? 0) + r.count);
      if (r.hour < h.first) h.first = r.hour;
    }
  }

  /** Counts one issuance at `at`. The caller deduplicates (by jti). */
  record(nhiId: string, at: number): void {
    const hour = Math.floor(at / HOUR_MS);
    const h = this.history(nhiId, hour);
    h.counts.set(hour, (h.counts.get(hour) ?? 0) + 1);
    if (hour < h.first) h.first = hour;
  }

  /** The verdict for the hour containing `at`, or undefined when nothing is unusual (or the baseline is too young). */
  evaluate(nhiId: string, at: number): MintingVerdict | undefined {
    const a = this.assess(nhiId, at);
    return a?.kind ? (a as MintingVerdict) : undefined;
  }

  /**
   * The hour containing `at` against its baseline, unusual or not (`kind` null when it is
   * not); undefined when the NHI is unknown or its baseline too young (cold start).
   */
  assess(nhiId: string, at: number): (Omit<MintingVerdict, 'kind'> & { kind: MintingVerdict['kind'] | null }) | undefined {
    const h = this.nhis.get(nhiId);
    if (!h) return undefined;
    const hour = Math.floor(at / HOUR_MS);
    const daysKnown = Math.floor((hour - h.first) / 24);
    // Cold start: without enough earlier days there is no rhythm to compare with.
    if (daysKnown < this.o.minBaselineDays) return undefined;
    const history: number[] = [];
    for (let d = 1; d <= Math.min(daysKnown, this.o.baselineDays); d++) history.push(h.counts.get(hour - 24 * d) ?? 0);
    const count = h.counts.get(hour) ?? 0;
    const med = median(history);
    const mad = median(history.map((x) => Math.abs(x - med)));
    // 1.4826 × MAD estimates the standard deviation; at least 1 so that a perfectly regular NHI
    // (MAD 0) is not flagged for one token more than usual.
    const threshold = med + this.o.madFactor * Math.max(1.4826 * mad, 1);
    const base = { hour, hourOfDay: ((hour % 24) + 24) % 24, count, history, median: med, mad, threshold };
    if (count >= this.o.minCount && count > threshold) return { ...base, kind: 'spike' };
    if (this.o.newHour && count > 0 && history.every((x) => x === 0) && !this.usedHourOfDayBefore(h, hour)) return { ...base, kind: 'new_hour' };
    return { ...base, kind: null };
  }

  /** Drops hours older than the baseline window. */
  prune(now: number): void {
    const oldest = Math.floor(now / HOUR_MS) - 24 * (this.o.baselineDays + 1);
    for (const h of this.nhis.values()) for (const k of h.counts.keys()) if (k < oldest) h.counts.delete(k);
  }

  private usedHourOfDayBefore(h: NhiHistory, hour: number): boolean {
    for (const [k, n] of h.counts) if (k < hour && n > 0 && (k - hour) % 24 === 0) return true;
    return false;
  }

  private history(nhiId: string, hour: number): NhiHistory {
    let h = this.nhis.get(nhiId);
    if (!h) {
      h = { first: hour, counts: new Map() };
      this.nhis.set(nhiId, h);
    }
    return h;
  }
}

/** One NHI's tokens per UTC hour, with the baseline's threshold and verdict for each hour. */
export interface MintingSeries {
  nhi: string;
  total: number;
  /** Tokens per hour, aligned with `hours`. */
  counts: number[];
  /** The spike threshold of each hour; null while the baseline is too young (cold start). */
  thresholds: Array<number | null>;
  /** The hours the minting-rate detection flags (the same rule, over the stored issuance). */
  anomalies: Array<{ hour: number; kind: MintingVerdict['kind']; count: number; threshold: number }>;
}

/**
 * Minting rate per NHI over the hours [fromHour, toHour] (epoch hours), judged by the same
 * baseline as the detection. `rows` must reach back far enough for the baseline (the caller
 * loads max(baseline_days, min_baseline_days) + 1 days before `fromHour`). Pure.
 */
export function mintingSeries(rows: Iterable<{ nhiId: string; hour: number; count: number }>, o: BaselineOptions, fromHour: number, toHour: number): MintingSeries[] {
  const b = new MintingBaseline(o);
  const all = [...rows];
  b.load(all);
  const byKey = new Map<string, number>();
  for (const r of all) byKey.set(`${r.nhiId}:${r.hour}`, (byKey.get(`${r.nhiId}:${r.hour}`) ?? 0) + r.count);
  const nhis = [...new Set(all.map((r) => r.nhiId))];
  return nhis.map((nhi) => {
    const s: MintingSeries = { nhi, total: 0, counts: [], thresholds: [], anomalies: [] };
    for (let h = fromHour; h <= toHour; h++) {
      const a = b.assess(nhi, h * HOUR_MS);
      const count = byKey.get(`${nhi}:${h}`) ?? 0;
      s.total += count;
      s.counts.push(count);
      s.thresholds.push(a ? Math.round(a.threshold * 100) / 100 : null);
      if (a?.kind) s.anomalies.push({ hour: h * HOUR_MS, kind: a.kind, count: a.count, threshold: Math.round(a.threshold * 100) / 100 });
    }
    return s;
  });
}
