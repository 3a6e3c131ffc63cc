import { BoundedMap, type Clock, type Logger } from '../core/index.js';
import type { SignalApplicationRecord, SignalRecord, SignalsStore } from './ports.js';

/** How long a first mark waits before the write (see `enqueue`). */
const WRITE_DELAY_MS = 100;
/** Signal ids remembered per instance (dedupe of "applied" / "first denial"); beyond it the oldest go. */
const MAX_REMEMBERED = 10_000;

export type PropagationStage = 'applied' | 'first_denial';

/**
 * Time to revoke, per instance: when this instance applied what a signal caused
 * (its revocation state heard the revocation or kill switch) and when it first refused a call
 * because of it. Both are called from paths that must not wait (the bus handler, the proxy's
 * deny path): the store write happens in the background, once per signal, and a failed write is
 * logged, never thrown. Writes are group-committed: a first mark waits WRITE_DELAY_MS (off the
 * path the revocation itself takes to the other instances), and what arrives meanwhile or while
 * a write runs goes in the same or the next one: one statement on PostgreSQL (`recordSignalTimes`,
 * the upsert and the signals' arrival times for the histogram), however many signals a burst brings.
 */
export class SignalTimeline {
  private readonly applied = new BoundedMap<string, true>(MAX_REMEMBERED);
  private readonly denied = new BoundedMap<string, true>(MAX_REMEMBERED);
  private queue: Array<{ stage: PropagationStage; signalId: string; at: number }> = [];
  private scheduled = false;
  private inFlight: Promise<void> | undefined;

  constructor(
    private readonly d: {
      store: Pick<SignalsStore, 'recordSignalTimes'>;
      instanceId: string;
      role: string;
      clock: Clock;
      logger: Logger;
      /** How long a mark waits before it is written, with whatever else comes meanwhile (default WRITE_DELAY_MS). */
      writeDelayMs?: number;
      /** Seconds from the signal's arrival to this stage at this instance (`mandate_signal_propagation_seconds`). */
      onObserved?: (stage: PropagationStage, seconds: number) => void;
    },
  ) {}

  /** This instance applied a revocation / kill switch of `signalId` at `at`. */
  markApplied(signalId: string, at: number = this.d.clock.now()): void {
    if (!remember(this.applied, signalId)) return;
    this.enqueue('applied', signalId, at);
  }

  /** This instance refused a call because of `signalId` (the first time counts). */
  markDenied(signalId: string, at: number = this.d.clock.now()): void {
    if (!remember(this.denied, signalId)) return;
    this.enqueue('first_denial', signalId, at);
  }

  /** Resolves once everything marked so far has been written (or its write failed). */
  async flush(): Promise<void> {
    while (this.queue.length > 0 || this.inFlight) {
      if (this.inFlight) await this.inFlight;
      else await this.run();
    }
  }

  private enqueue(stage: PropagationStage, signalId: string, at: number): void {
    this.queue.push({ stage, signalId, at });
    if (this.scheduled || this.inFlight) return;
    this.scheduled = true;
    // Not at once: the times are already taken, and the write (a statement, its CPU, a database
    // round trip) would otherwise run right when the revocation is still on its way to the other
    // instances (on the same few cores). A short wait also gathers a burst into one statement.
    const t = setTimeout(() => {
      this.scheduled = false;
      void this.run();
    }, this.d.writeDelayMs ?? WRITE_DELAY_MS);
    t.unref();
  }

  private run(): Promise<void> {
    if (this.inFlight || this.queue.length === 0) return this.inFlight ?? Promise.resolve();
    const batch = this.queue;
    this.queue = [];
    this.inFlight = this.write(batch).finally(() => {
      this.inFlight = undefined;
      if (this.queue.length > 0) void this.run();
    });
    return this.inFlight;
  }

  private async write(batch: Array<{ stage: PropagationStage; signalId: string; at: number }>): Promise<void> {
    const { instanceId, role } = this.d;
    try {
      const received = await this.d.store.recordSignalTimes(batch.map((b) => ({
        signalId: b.signalId, instanceId, role, appliedAt: b.stage === 'applied' ? b.at : null, firstDeniedAt: b.stage === 'first_denial' ? b.at : null,
      })));
      if (this.d.onObserved) {
        for (const b of batch) {
          const at = received.get(b.signalId);
          if (at !== undefined) this.d.onObserved(b.stage, Math.max(0, b.at - at) / 1000);
        }
      }
    } catch (err) {
      this.d.logger.warn({ err, signals: batch.length }, 'signal timeline not recorded');
    }
  }
}

function remember(set: BoundedMap<string, true>, id: string): boolean {
  return set.add(id, true);
}

export interface LatencyStats {
  count: number;
  mean_ms: number | null;
  p50_ms: number | null;
  p99_ms: number | null;
  max_ms: number | null;
}

export interface MttrReport {
  /** Enforced signals (revoke_tokens, disable, block) in the window. */
  signals: number;
  /** Distinct instances that recorded anything for them. */
  instances: number;
  /** received_at → the last instance that recorded applying it (of those that did). */
  applied_everywhere: LatencyStats;
  /** received_at → the first call refused because of it, at any instance. */
  first_denial: LatencyStats;
  per_signal: Array<{ id: string; action: string; nhi: string | null; received_at: number; instances: number; applied_everywhere_ms: number | null; first_denial_ms: number | null }>;
}

/** Nearest-rank percentile of sorted values. */
function stats(values: number[]): LatencyStats {
  if (values.length === 0) return { count: 0, mean_ms: null, p50_ms: null, p99_ms: null, max_ms: null };
  const v = [...values].sort((a, b) => a - b);
  const q = (p: number) => v[Math.min(v.length - 1, Math.max(0, Math.ceil(p * v.length) - 1))]!;
  return { count: v.length, mean_ms: Math.round((v.reduce((a, b) => a + b, 0) / v.length) * 10) / 10, p50_ms: q(0.5), p99_ms: q(0.99), max_ms: v[v.length - 1]! };
}

/**
 * Mean, p50 and p99 time to revoke over signals and what each instance recorded about them.
 * "Everywhere" means every instance that recorded applying the signal: an instance that was down
 * (or started after it) recorded nothing and is not waited for.
 */
export function mttrReport(signals: readonly SignalRecord[], apps: readonly SignalApplicationRecord[]): MttrReport {
  const enforced = signals.filter((s) => s.status === 'applied' && (s.action === 'revoke_tokens' || s.action === 'disable' || s.action === 'block'));
  const bySignal = new Map<string, SignalApplicationRecord[]>();
  for (const a of apps) bySignal.set(a.signalId, [...(bySignal.get(a.signalId) ?? []), a]);
  const instances = new Set<string>();
  const everywhere: number[] = [];
  const denial: number[] = [];
  const per_signal: MttrReport['per_signal'] = [];
  for (const s of enforced) {
    const rows = bySignal.get(s.id) ?? [];
    for (const r of rows) instances.add(r.instanceId);
    const appliedAts = rows.flatMap((r) => (r.appliedAt === null ? [] : [r.appliedAt]));
    const deniedAts = rows.flatMap((r) => (r.firstDeniedAt === null ? [] : [r.firstDeniedAt]));
    const e = appliedAts.length ? Math.max(0, Math.max(...appliedAts) - s.receivedAt) : null;
    const f = deniedAts.length ? Math.max(0, Math.min(...deniedAts) - s.receivedAt) : null;
    if (e !== null) everywhere.push(e);
    if (f !== null) denial.push(f);
    per_signal.push({ id: s.id, action: s.action, nhi: s.nhiId, received_at: s.receivedAt, instances: rows.length, applied_everywhere_ms: e, first_denial_ms: f });
  }
  return { signals: enforced.length, instances: instances.size, applied_everywhere: stats(everywhere), first_denial: stats(denial), per_signal };
}
