import { randomUUID } from 'node:crypto';
import { UnavailableError } from '../core/errors.js';
import { systemClock, type Clock } from '../core/clock.js';
import { silentLogger, type Logger } from '../core/logger.js';
import type { Bus, BusHandler, BusHealth, BusMessage, SubscribeOptions, Subscription } from '../core/ports/bus.js';
import {
  assertFilter, assertSubject, deliverAtLeastOnce, encodeData, settlesWithin, subjectMatches, type RetryOptions,
} from './util.js';

export interface MemoryBusOptions {
  /** How many messages the log keeps for `fromSeq` replay; the oldest go first. Default 100 000. */
  maxMessages?: number;
  /** Backoff between attempts when a handler throws. */
  retry?: RetryOptions;
  clock?: Clock;
  logger?: Logger;
  /** How long `close()` waits for a handler that is still running. Default 10 s. */
  closeTimeoutMs?: number;
}

interface Stored {
  readonly seq: number;
  readonly subject: string;
  /** Kept as JSON so each delivery is a fresh copy: a handler cannot change what another sees. */
  readonly json: string;
  readonly publishedAt: number;
  readonly id: string;
}

/**
 * The in-process bus: one process, no durability, but the same contract as NATS — a
 * bounded log with sequences from 1, `fromSeq` replay, id dedupe and ordered at-least-once
 * delivery per subscriber. For single-instance deployments and tests.
 *
 * Dedupe differs in one way: NATS remembers ids for a time window, this bus for as long as
 * the message is still in the log.
 */
export class MemoryBus implements Bus {
  readonly driver = 'memory' as const;
  private readonly maxMessages: number;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly retry: RetryOptions;
  private readonly closeTimeoutMs: number;

  /** The log: `entries[head]` is the oldest retained message; seqs are contiguous from there. */
  private entries: Stored[] = [];
  private head = 0;
  private seq = 0;
  private readonly ids = new Map<string, number>();
  private readonly subs = new Set<MemorySubscription>();
  private pulse = deferred();
  private closed = false;

  constructor(opts: MemoryBusOptions = {}) {
    this.maxMessages = Math.max(1, opts.maxMessages ?? 100_000);
    this.clock = opts.clock ?? systemClock;
    this.logger = opts.logger ?? silentLogger();
    this.retry = opts.retry ?? {};
    this.closeTimeoutMs = opts.closeTimeoutMs ?? 10_000;
  }

  async start(): Promise<void> {
    if (this.closed) throw new UnavailableError('the bus is closed');
  }

  async publish(subject: string, data: unknown, opts: { id?: string; timeoutMs?: number } = {}): Promise<number> {
    if (this.closed) throw new UnavailableError('the bus is closed');
    assertSubject(subject);
    const id = opts.id ?? randomUUID();
    // A retried publish (same id) is stored once: the caller gets the original position.
    const existing = this.ids.get(id);
    if (existing !== undefined) return existing;
    const json = encodeData(data);
    const stored: Stored = { seq: ++this.seq, subject, json, publishedAt: this.clock.now(), id };
    this.entries.push(stored);
    this.ids.set(id, stored.seq);
    this.evict();
    // Wake every subscriber loop; each one looks for its next matching message.
    const p = this.pulse;
    this.pulse = deferred();
    p.resolve();
    return stored.seq;
  }

  async subscribe(filter: string, handler: BusHandler, opts: SubscribeOptions = {}): Promise<Subscription> {
    if (this.closed) throw new UnavailableError('the bus is closed');
    assertFilter(filter);
    // Default: only what is published after subscribing.
    const start = opts.fromSeq !== undefined ? Math.max(1, Math.floor(opts.fromSeq)) : this.seq + 1;
    const sub = new MemorySubscription(this, filter, handler, start, opts.name ?? filter, this.retry, this.logger, this.closeTimeoutMs);
    this.subs.add(sub);
    sub.run().finally(() => this.subs.delete(sub));
    return sub;
  }

  async lastSeq(): Promise<number> {
    return this.seq;
  }

  health(): BusHealth {
    return { connected: !this.closed, lastContactAt: this.clock.now() };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.subs].map((s) => s.close()));
  }

  /** @internal A promise that settles on the next publish. */
  nextPulse(): Promise<void> {
    return this.pulse.promise;
  }

  /** @internal The oldest retained sequence (seq + 1 when the log is empty). */
  firstSeq(): number {
    return this.entries[this.head]?.seq ?? this.seq + 1;
  }

  /**
   * @internal The first message at or after `from` that matches `filter`, or, when none,
   * the sequence up to which the log was scanned (so the next scan starts after it).
   */
  find(from: number, filter: string): { msg: BusMessage | undefined; scannedTo: number } {
    const first = this.firstSeq();
    // A filter without wildcards matches its own subject only: compare the strings (every
    // subscriber scans every message, so this runs subscribers × messages times).
    const exact = !filter.includes('*') && !filter.includes('>');
    for (let seq = Math.max(from, first); seq <= this.seq; seq++) {
      const e = this.entries[this.head + (seq - first)];
      if (e && (exact ? e.subject === filter : subjectMatches(filter, e.subject))) {
        return {
          msg: { seq: e.seq, subject: e.subject, data: JSON.parse(e.json) as unknown, publishedAt: e.publishedAt, id: e.id },
          scannedTo: seq,
        };
      }
    }
    return { msg: undefined, scannedTo: this.seq };
  }

  private evict(): void {
    while (this.entries.length - this.head > this.maxMessages) {
      const old = this.entries[this.head];
      this.entries[this.head] = undefined as unknown as Stored;
      this.head++;
      if (old && this.ids.get(old.id) === old.seq) this.ids.delete(old.id);
    }
    // Compact now and then, so eviction stays O(1) amortized without `shift()`.
    if (this.head > 1024 && this.head * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
  }
}

/** `Promise.withResolvers` is Node 22; Mandate runs on Node 20. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

class MemorySubscription implements Subscription {
  private readonly ac = new AbortController();
  private nextSeq: number;
  private completed = 0;
  private done: Promise<void> = Promise.resolve();

  constructor(
    private readonly bus: MemoryBus,
    private readonly filter: string,
    private readonly handler: BusHandler,
    start: number,
    private readonly name: string,
    private readonly retry: RetryOptions,
    private readonly logger: Logger,
    private readonly closeTimeoutMs: number,
  ) {
    this.nextSeq = start;
  }

  /** Until the next publish or close. The abort listener is removed each time, so none pile up. */
  private waitFor(pulse: Promise<void>): Promise<void> {
    const { signal } = this.ac;
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const onAbort = (): void => resolve();
      signal.addEventListener('abort', onAbort, { once: true });
      void pulse.then(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      });
    });
  }

  get lastSeq(): number {
    return this.completed;
  }

  run(): Promise<void> {
    this.done = this.loop();
    return this.done;
  }

  private async loop(): Promise<void> {
    // Let `subscribe()` return before the first delivery, as a network bus would.
    await Promise.resolve();
    while (!this.ac.signal.aborted) {
      const first = this.bus.firstSeq();
      if (this.nextSeq < first) {
        // The bounded log no longer holds what this subscriber asked for (an old fromSeq, or
        // it fell behind by more than the cap): it cannot be delivered, so say so loudly.
        this.logger.warn({ subscription: this.name, missedFrom: this.nextSeq, resumeAt: first }, 'memory bus log no longer holds these messages; the subscriber skips them');
        this.nextSeq = first;
      }
      const pulse = this.bus.nextPulse();
      const { msg, scannedTo } = this.bus.find(this.nextSeq, this.filter);
      if (!msg) {
        this.nextSeq = Math.max(this.nextSeq, scannedTo + 1);
        await this.waitFor(pulse);
        continue;
      }
      // Ordered, at-least-once: we only move past a message once its handler completed.
      const ok = await deliverAtLeastOnce(msg, this.handler, { signal: this.ac.signal, retry: this.retry, logger: this.logger, name: this.name });
      if (!ok) return;
      this.completed = msg.seq;
      this.nextSeq = msg.seq + 1;
    }
  }

  async close(): Promise<void> {
    this.ac.abort();
    if (!(await settlesWithin(this.done, this.closeTimeoutMs))) {
      this.logger.warn({ subscription: this.name }, 'bus subscription closed while its handler was still running');
    }
  }
}
