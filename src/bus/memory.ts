import { randomUUID } from 'node:crypto';
import { UnavailableError } from '../core/errors.js';
import { systemClock, type Clock } from '../core/clock.js';
import { silentLogger, type Logger } from '../core/logger.js';
import type { Bus, BusHandler, BusHealth, BusMessage, SubscribeOptions, Subscription } from '../core/ports/bus.js';
import {
  assertFilter, assertSubject, awaitRunningHandler, deliverAtLeastOnce, encodeData, subjectMatches, type RetryOptions,
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

const RESOLVED = Promise.resolve();

/** Past this many distinct subjects the subject → subscribers cache starts over (subjects are few in practice). */
const MAX_ROUTES = 10_000;

/** Messages a subscriber will never see (the bounded log dropped them first): said loudly. */
function warnSkipped(logger: Logger, subscription: string, missedFrom: number, resumeAt: number): void {
  logger.warn({ subscription, missedFrom, resumeAt }, 'memory bus log no longer holds these messages; the subscriber skips them');
}

/**
 * The in-process bus: one process, no durability, but the same contract as NATS — a
 * bounded log with sequences from 1, `fromSeq` replay, id dedupe and ordered at-least-once
 * delivery per subscriber. For single-instance deployments and tests.
 *
 * Dedupe differs in one way: NATS remembers ids for a time window, this bus for as long as
 * the message is still in the log.
 *
 * Cost: a publish touches only the subscriptions whose filter matches its subject (exact
 * filters are looked up by subject, wildcard filters are matched once per distinct subject
 * and the result is cached until a subscription comes or goes), and hands the message to each
 * of them by appending it to that subscription's queue. A subscription's loop drains its queue
 * and sleeps (one promise) only when it is empty; a subscription whose filter does not match
 * is never woken. The JSON is parsed once per matching subscriber (each gets its own copy).
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
  /** Subscriptions with a filter without wildcards, by that filter (= the one subject they match). */
  private readonly exact = new Map<string, Set<MemorySubscription>>();
  /** Subscriptions with `*` or `>` in their filter. */
  private readonly wild = new Set<MemorySubscription>();
  /** subject → the subscriptions it reaches, in subscription order; cleared when one comes or goes. */
  private routes = new Map<string, MemorySubscription[]>();
  private closed = false;
  /** Subjects already checked by assertSubject (publishers use a handful). */
  private readonly validSubjects = new Set<string>();

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
    if (!this.validSubjects.has(subject)) {
      assertSubject(subject);
      if (this.validSubjects.size >= MAX_ROUTES) this.validSubjects.clear();
      this.validSubjects.add(subject);
    }
    const id = opts.id ?? randomUUID();
    // A retried publish (same id) is stored once: the caller gets the original position.
    const existing = this.ids.get(id);
    if (existing !== undefined) return existing;
    const json = encodeData(data);
    const stored: Stored = { seq: ++this.seq, subject, json, publishedAt: this.clock.now(), id };
    this.entries.push(stored);
    this.ids.set(id, stored.seq);
    this.evict();
    // Only the subscriptions whose filter matches hear of it.
    for (const sub of this.routeOf(subject)) sub.enqueue(stored);
    return stored.seq;
  }

  /** One entry per item (each its own seq): in one process there is no write to save. */
  async publishMany(subject: string, items: ReadonlyArray<{ data: unknown; id: string }>): Promise<void> {
    for (const it of items) await this.publish(subject, it.data, { id: it.id });
  }

  async subscribe(filter: string, handler: BusHandler, opts: SubscribeOptions = {}): Promise<Subscription> {
    if (this.closed) throw new UnavailableError('the bus is closed');
    assertFilter(filter);
    const exact = !filter.includes('*') && !filter.includes('>');
    const sub = new MemorySubscription(this, filter, exact, handler, opts.name ?? filter, this.retry, this.logger, this.closeTimeoutMs, this.maxMessages);
    // Default: only what is published after subscribing. With fromSeq, what the log still
    // holds from there is queued now, before any later publish can be (the order is kept).
    if (opts.fromSeq !== undefined) {
      const from = Math.max(1, Math.floor(opts.fromSeq));
      const first = this.firstSeq();
      if (from < first && from <= this.seq) {
        // The bounded log no longer holds what this subscriber asked for: it cannot be delivered.
        warnSkipped(this.logger, sub.name, from, first);
      }
      for (let seq = Math.max(from, first); seq <= this.seq; seq++) {
        const e = this.entries[this.head + (seq - first)];
        if (e && sub.matches(e.subject)) sub.enqueue(e);
      }
    }
    this.subs.add(sub);
    if (exact) {
      let set = this.exact.get(filter);
      if (!set) this.exact.set(filter, (set = new Set()));
      set.add(sub);
    } else {
      this.wild.add(sub);
    }
    this.routes = new Map();
    sub.start();
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

  /** @internal The oldest retained sequence (seq + 1 when the log is empty). */
  firstSeq(): number {
    return this.entries[this.head]?.seq ?? this.seq + 1;
  }

  /** @internal Stops routing messages to a subscription (closed or ended). */
  remove(sub: MemorySubscription): void {
    if (!this.subs.delete(sub)) return;
    const set = this.exact.get(sub.filter);
    if (set?.delete(sub) && set.size === 0) this.exact.delete(sub.filter);
    this.wild.delete(sub);
    this.routes = new Map();
  }

  /** The subscriptions `subject` reaches, oldest subscription first. */
  private routeOf(subject: string): readonly MemorySubscription[] {
    let route = this.routes.get(subject);
    if (route) return route;
    route = [];
    for (const sub of this.subs) {
      if (sub.matches(subject)) route.push(sub);
    }
    if (this.routes.size >= MAX_ROUTES) this.routes = new Map();
    this.routes.set(subject, route);
    return route;
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

/**
 * One subscriber's queue and its delivery. Not an async loop: enqueue() schedules a drain in
 * a microtask (so `subscribe()` and `publish()` return first, as on a network bus); the drain
 * hands queued messages to the handler one after the other, synchronously as long as the
 * handler completes synchronously, and waits for a returned promise before the next one.
 * A handler that throws (or rejects) gets the same message again after a backoff and the
 * queue waits (the shared retry loop of util.ts): ordered, at-least-once.
 */
class MemorySubscription implements Subscription {
  /** Aborted by close(): ends a retry backoff at once. */
  private readonly ac = new AbortController();
  /** Messages routed here and not yet completed, oldest first (`queue[qHead]` is next). */
  private queue: Stored[] = [];
  private qHead = 0;
  /** A drain is scheduled (microtask) and has not run yet. */
  private scheduled = false;
  /** The handler's promise (or a retry) for `queue[qHead]` while it runs; the drain waits for it. */
  private pending: Promise<void> | undefined;
  /** The first sequence dropped from a queue that outgrew the log's cap (undefined when none). */
  private droppedFrom: number | undefined;
  private completed = 0;
  private readonly drainFn = (): void => this.drain();

  constructor(
    private readonly bus: MemoryBus,
    readonly filter: string,
    readonly exact: boolean,
    private readonly handler: BusHandler,
    readonly name: string,
    private readonly retry: RetryOptions,
    private readonly logger: Logger,
    private readonly closeTimeoutMs: number,
    private readonly maxQueued: number,
  ) {}

  get lastSeq(): number {
    return this.completed;
  }

  matches(subject: string): boolean {
    return this.exact ? this.filter === subject : subjectMatches(this.filter, subject);
  }

  /** @internal A message for this subscription (the bus routed it here), in sequence order. */
  enqueue(e: Stored): void {
    this.queue.push(e);
    // A queue longer than the log's cap holds messages the log evicted already: a subscriber
    // that fell that far behind loses the oldest, as a scan of the log would. The one whose
    // handler is running is not lost: it completes first.
    if (this.queue.length - this.qHead > this.maxQueued + (this.pending ? 1 : 0)) {
      if (this.pending) {
        // Drop the one after the head: the head moves up a slot (O(1), no splice).
        this.droppedFrom ??= this.queue[this.qHead + 1]!.seq;
        this.queue[this.qHead + 1] = this.queue[this.qHead]!;
      } else {
        this.droppedFrom ??= this.queue[this.qHead]!.seq;
      }
      this.queue[this.qHead++] = undefined as unknown as Stored;
    }
    this.schedule();
  }

  /** Starts delivering (what subscribe() queued from the log, if anything). */
  start(): void {
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled || this.pending || this.ac.signal.aborted) return;
    this.scheduled = true;
    // A resolved promise's then: a microtask without queueMicrotask's async-hooks resource.
    void RESOLVED.then(this.drainFn);
  }

  private drain(): void {
    this.scheduled = false;
    const { signal } = this.ac;
    while (!signal.aborted && !this.pending && this.qHead < this.queue.length) {
      const e = this.queue[this.qHead]!;
      const first = this.bus.firstSeq();
      if (e.seq < first || this.droppedFrom !== undefined) {
        // The bounded log no longer holds what this subscriber had still to handle (it fell
        // behind by more than the cap): it cannot be delivered.
        const missedFrom = Math.min(this.droppedFrom ?? e.seq, e.seq);
        while (this.qHead < this.queue.length && this.queue[this.qHead]!.seq < first) this.queue[this.qHead++] = undefined as unknown as Stored;
        this.droppedFrom = undefined;
        warnSkipped(this.logger, this.name, missedFrom, first);
        continue;
      }
      // Each delivery parses the JSON again: every handler gets its own copy, as from NATS.
      const msg: BusMessage = { seq: e.seq, subject: e.subject, data: JSON.parse(e.json) as unknown, publishedAt: e.publishedAt, id: e.id };
      let r: void | Promise<void>;
      try {
        r = this.handler(msg);
      } catch (err) {
        this.wait(this.redeliver(msg, err));
        return;
      }
      if (r !== undefined && typeof (r as Promise<void>).then === 'function') {
        this.wait(Promise.resolve(r).then(() => true, (err: unknown) => this.redeliver(msg, err)));
        return;
      }
      this.done(e);
    }
    if (this.qHead === this.queue.length && this.qHead > 0) {
      this.queue = [];
      this.qHead = 0;
    }
  }

  /** The shared retry loop: the same message again after a backoff, until it completes or the subscription closes. */
  private redeliver(msg: BusMessage, err: unknown): Promise<boolean> {
    return deliverAtLeastOnce(msg, this.handler, { signal: this.ac.signal, retry: this.retry, logger: this.logger, name: this.name, failed: err });
  }

  /** Holds the queue until the head's handler (or its retries) settled; false: closed first. */
  private wait(p: Promise<boolean>): void {
    const e = this.queue[this.qHead]!;
    this.pending = p.then((ok) => {
      this.pending = undefined;
      if (!ok) return;
      this.done(e);
      this.drain();
    });
  }

  /** Ordered, at-least-once: the queue moves past a message only once its handler completed. */
  private done(e: Stored): void {
    this.completed = e.seq;
    this.queue[this.qHead++] = undefined as unknown as Stored;
  }

  async close(): Promise<void> {
    this.ac.abort();
    this.bus.remove(this);
    if (this.pending) await awaitRunningHandler(this.pending, this.closeTimeoutMs, this.logger, this.name);
  }
}
