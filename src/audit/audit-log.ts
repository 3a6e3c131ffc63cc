import type { Clock } from '../core/clock.js';
import { systemClock } from '../core/clock.js';
import { UnavailableError } from '../core/errors.js';
import { newSortableId } from '../core/ids.js';
import type { Logger } from '../core/logger.js';
import type { AuditInput, DurableAuditSink } from '../core/ports/audit-sink.js';
import { canonicalJson, chainHash } from './chain.js';
import type { AuditEvent, AuditRecord, AuditStore } from './ports.js';
import { cleanString, scrubAuditJson } from './scrub.js';

/**
 * What callers pass to `record`. `id` and `ts` are filled in when absent (an explicit id must
 * be unique: the log refuses a duplicate). `data` must hold no secret: pass ids and digests;
 * see scrub.ts for what is redacted anyway.
 */
export interface AuditRecordInput extends AuditInput {
  id?: string;
  ts?: number;
}

export interface AuditLogOptions {
  store: AuditStore;
  clock?: Clock;
  logger?: Logger;
  /** How long a lone event waits for company before it is written. Default 50 ms. */
  flushIntervalMs?: number;
  /** Events per appendChained call; reaching it writes at once. Default 500. */
  maxBatch?: number;
  /**
   * Events held in memory while the store is unreachable. Beyond it, record() throws
   * UnavailableError: an action that cannot be audited is refused (fail closed), and nothing
   * already queued is dropped. Default 100 000.
   */
  maxQueue?: number;
  /** Serialized size above which an event's data is replaced by a stub. Default 64 KiB. */
  maxDataBytes?: number;
  /** Longest pause between retries of a failed write (backoff doubles up to it). Default 5000 ms. */
  maxRetryDelayMs?: number;
  /** How long flush()/close() keep retrying before they give up (the events stay queued). Default 10 000 ms. */
  flushTimeoutMs?: number;
  /** Called with the stored records after each successful write (e.g. to export them). Errors are logged. */
  onWritten?: (records: AuditRecord[]) => void;
  /** How long `append` waits for its records to be committed before it gives up. Default 5000 ms. */
  appendTimeoutMs?: number;
}

export interface AuditLogStats {
  /** Events waiting to be written. */
  queued: number;
  /** Events written since start. */
  written: number;
  /** appendChained calls that failed (each is retried). */
  failedWrites: number;
  /** record() calls refused because the queue was full, and append() calls refused (full, failing store, time limit). */
  rejected: number;
  /** append() calls waiting for their records to be committed. */
  waiting: number;
  /** Failures since the last successful write (0 when healthy). */
  consecutiveFailures: number;
  lastError: string | null;
}

/**
 * The audit log's writer: record() queues (synchronous, no I/O, safe on hot paths) and a
 * background writer appends batches to the hash chain through `store.appendChained`.
 *
 * Nothing is lost: an event leaves the queue only once the store has committed it. A failed
 * write keeps the batch at the head of the queue and is retried with backoff; when a failure
 * is ambiguous (the commit may have happened before the error reached us), the next attempt
 * first looks the batch's ids up in the log so that a retry never duplicates events.
 * Order is preserved: batches are written one at a time, oldest first.
 *
 * Timers are created only while something is queued and are unref'd; call close() on shutdown.
 */
export class AuditLog implements DurableAuditSink {
  private readonly store: AuditStore;
  private readonly clock: Clock;
  private readonly logger: Logger | undefined;
  private readonly flushIntervalMs: number;
  private readonly maxBatch: number;
  private readonly maxQueue: number;
  private readonly maxDataBytes: number;
  private readonly maxRetryDelayMs: number;
  private readonly flushTimeoutMs: number;
  private readonly onWritten: ((records: AuditRecord[]) => void) | undefined;
  private readonly appendTimeoutMs: number;

  private queue: AuditEvent[] = [];
  /**
   * append() calls waiting for `done` to reach their `target` (the count of events that will
   * have left the queue once theirs has), oldest first: events leave the queue in order.
   */
  private waiters: Array<{ target: number; deadline: number; resolve: () => void; reject: (err: Error) => void }> = [];
  /**
   * One timer for every waiter: they all wait `appendTimeoutMs`, so deadlines come in the order
   * the waiters do and the oldest waiter's is the next to pass (no timer per append).
   */
  private waitTimer: NodeJS.Timeout | undefined;
  /** Events that left the queue (written, or found already written); flush() waits on it. */
  private done = 0;
  private writing: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = 0;
  /** Do not retry before this (Date.now() ms) after a failure. */
  private retryAt = 0;
  /** The last write failed: look the head batch up before writing it again. */
  private mayBeCommitted = false;
  /** Highest seq this instance has seen written; where a reconciliation scan starts. */
  private lastSeq: number | undefined;
  private closed = false;
  private warnedAfterClose = false;
  private lastRejectLog = 0;
  private counters = { written: 0, failedWrites: 0, rejected: 0, consecutiveFailures: 0 };
  private lastError: string | null = null;

  constructor(opts: AuditLogOptions) {
    this.store = opts.store;
    this.clock = opts.clock ?? systemClock;
    this.logger = opts.logger;
    this.flushIntervalMs = Math.max(0, opts.flushIntervalMs ?? 50);
    this.maxBatch = Math.max(1, opts.maxBatch ?? 500);
    this.maxQueue = Math.max(this.maxBatch, opts.maxQueue ?? 100_000);
    this.maxDataBytes = opts.maxDataBytes ?? 64 * 1024;
    this.maxRetryDelayMs = opts.maxRetryDelayMs ?? 5_000;
    this.flushTimeoutMs = opts.flushTimeoutMs ?? 10_000;
    this.onWritten = opts.onWritten;
    this.appendTimeoutMs = opts.appendTimeoutMs ?? 5_000;
  }

  /**
   * Queues an event and returns its id. Synchronous and cheap: no I/O happens here. Data is
   * scrubbed (see scrub.ts) and normalized to plain JSON now, so the caller's object may change
   * afterwards without affecting the log. Throws UnavailableError when the queue is full.
   */
  record(input: AuditRecordInput): string {
    if (this.queue.length >= this.maxQueue) {
      this.counters.rejected++;
      const now = Date.now();
      if (now - this.lastRejectLog > 5_000) {
        this.lastRejectLog = now;
        this.logger?.error({ queued: this.queue.length, lastError: this.lastError }, 'audit queue full: refusing actions that cannot be audited');
      }
      throw new UnavailableError('the audit log cannot keep up (store unreachable?): the action is refused because it cannot be audited');
    }
    const scrubbed = scrubAuditJson(input.data, this.maxDataBytes);
    const ts = input.ts ?? this.clock.now();
    const ev: AuditEvent = {
      // Time-ordered: the unique index on audit.id then grows at its end (see newSortableId).
      id: input.id ?? newSortableId('aud', Date.now()),
      ts,
      type: cleanString(input.type, 256),
      actor: opt(input.actor),
      subject: opt(input.subject),
      tool: opt(input.tool),
      decision: opt(input.decision),
      traceId: opt(input.traceId),
      data: scrubbed.data,
      // Serialized once, here: the store hashes and stores this text (see AuditEvent.dataJson).
      dataJson: scrubbed.json,
    };
    this.queue.push(ev);
    if (this.closed && !this.warnedAfterClose) {
      this.warnedAfterClose = true;
      this.logger?.warn({ type: ev.type }, 'audit event recorded after close(); it is written on a best-effort basis');
    }
    this.schedule(this.queue.length >= this.maxBatch ? 0 : this.flushIntervalMs);
    return ev.id;
  }

  /**
   * Queues the events and resolves with their ids once the store has committed them: the
   * durable form of record(), for what must be in the log before it happens (the proxy appends
   * the fact of a call before it forwards it). The events are written with whatever else is
   * queued, at once rather than after `flushIntervalMs` (a waiter's batch does not wait for
   * company; concurrent appends share the commit that follows the running one). Rejects with
   * UnavailableError, without queueing, when the queue is full or the store is failing (a write
   * failed and is being retried), so that callers refuse at once instead of waiting on an
   * outage; and after `appendTimeoutMs`, when the events stay queued and are written later.
   */
  append(inputs: readonly AuditRecordInput[]): Promise<string[]> {
    if (this.counters.consecutiveFailures > 0 && this.queue.length > 0) {
      this.counters.rejected++;
      return Promise.reject(new UnavailableError(`the audit log cannot write now (${this.lastError ?? 'store failing'}): the action is refused because it cannot be audited`));
    }
    if (this.queue.length + inputs.length > this.maxQueue) {
      this.counters.rejected++;
      return Promise.reject(new UnavailableError('the audit log cannot keep up: the action is refused because it cannot be audited'));
    }
    let ids: string[];
    try {
      ids = inputs.map((i) => this.record(i));
    } catch (err) {
      return Promise.reject(err);
    }
    if (ids.length === 0) return Promise.resolve(ids);
    const target = this.done + this.queue.length;
    return new Promise<string[]>((resolve, reject) => {
      this.waiters.push({ target, deadline: Date.now() + this.appendTimeoutMs, resolve: () => resolve(ids), reject });
      if (this.waitTimer === undefined) this.armWaitTimer();
      this.schedule(0);
    });
  }

  /** Resolves the append() calls whose events have all left the queue (written). */
  private settleWaiters(): void {
    let n = 0;
    while (n < this.waiters.length && this.waiters[n]!.target <= this.done) {
      this.waiters[n]!.resolve();
      n++;
    }
    if (n > 0) this.waiters.splice(0, n);
    if (this.waiters.length === 0 && this.waitTimer !== undefined) {
      clearTimeout(this.waitTimer);
      this.waitTimer = undefined;
    }
  }

  /**
   * Sets the one timer for the oldest waiter's deadline; when it fires, every waiter past its
   * deadline is refused (its events stay queued and are written later). Not unref'd: someone
   * awaits these promises, so they must settle even with nothing else alive.
   */
  private armWaitTimer(): void {
    const head = this.waiters[0];
    if (head === undefined) {
      this.waitTimer = undefined;
      return;
    }
    this.waitTimer = setTimeout(() => {
      const now = Date.now();
      let n = 0;
      while (n < this.waiters.length && this.waiters[n]!.deadline <= now) {
        this.counters.rejected++;
        this.waiters[n]!.reject(new UnavailableError(`the audit log did not commit in ${this.appendTimeoutMs} ms (${this.lastError ?? 'write in progress'}): the action is refused because it cannot be audited`));
        n++;
      }
      if (n > 0) this.waiters.splice(0, n);
      this.armWaitTimer();
    }, Math.max(0, head.deadline - Date.now()));
  }

  /**
   * Writes everything queued when it was called (and whatever joins meanwhile). Retries failed
   * writes until `timeoutMs`, then throws UnavailableError; the events stay queued either way.
   */
  async flush(timeoutMs = this.flushTimeoutMs): Promise<void> {
    const target = this.done + this.queue.length;
    const deadline = Date.now() + timeoutMs;
    while (this.done < target) {
      const left = deadline - Date.now();
      if (this.writing) {
        if (!(await withinDeadline(this.writing, left))) break;
        continue;
      }
      const wait = this.retryAt - Date.now();
      if (wait > 0) {
        if (wait >= left) break;
        await sleep(wait);
        continue;
      }
      if (left <= 0) break;
      this.startWriter();
    }
    if (this.done < target) {
      throw new UnavailableError(
        `audit flush timed out: ${target - this.done} event(s) not yet written (${this.lastError ?? 'write in progress'}); they remain queued`,
      );
    }
  }

  /** Flushes and stops scheduling timers. Graceful shutdown loses nothing unless the store is down. */
  async close(timeoutMs = this.flushTimeoutMs): Promise<void> {
    this.closed = true;
    this.clearTimer();
    try {
      await this.flush(timeoutMs);
    } finally {
      this.clearTimer();
    }
  }

  stats(): AuditLogStats {
    return { queued: this.queue.length, waiting: this.waiters.length, ...this.counters, lastError: this.lastError };
  }

  // ------------------------------------------------------------------ writer

  /** Arranges for the writer to run in `delayMs` (or at retryAt after a failure, if later). */
  private schedule(delayMs: number): void {
    // The running writer drains the queue, including what joins while it writes (at once when
    // someone waits on it). After close() this still runs (a late event is written if the store
    // is still open) but nobody waits.
    if (this.writing) return;
    const at = Math.max(Date.now() + delayMs, this.retryAt);
    if (this.timer && this.timerAt <= at) return;
    this.clearTimer();
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.startWriter();
    }, Math.max(0, at - Date.now()));
    this.timer.unref();
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private startWriter(): void {
    if (this.writing || this.queue.length === 0) return;
    this.clearTimer();
    const started = Date.now();
    this.writing = this.drain()
      .then(
        () => {
          this.counters.consecutiveFailures = 0;
          this.retryAt = 0;
        },
        (err: unknown) => {
          this.counters.failedWrites++;
          this.counters.consecutiveFailures++;
          this.lastError = err instanceof Error ? err.message : String(err);
          const delay = Math.min(this.maxRetryDelayMs, Math.max(this.flushIntervalMs, 50) * 2 ** (this.counters.consecutiveFailures - 1));
          this.retryAt = Date.now() + delay;
          this.logger?.error(
            { err, queued: this.queue.length, attempt: this.counters.consecutiveFailures, retryInMs: delay },
            'audit write failed; the events stay queued and are retried',
          );
        },
      )
      .finally(() => {
        this.writing = undefined;
        // What joined while the writer ran waits for company too, at most flushIntervalMs from
        // when this write began (so no event waits longer than when it was written at once).
        if (this.queue.length > 0) {
          const urgent = this.queue.length >= this.maxBatch || this.waiters.length > 0;
          this.schedule(urgent ? 0 : Math.max(0, started + this.flushIntervalMs - Date.now()));
        }
      });
  }

  /** Writes batches until the queue is empty; throws on the first failure (the batch stays queued). */
  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      if (this.mayBeCommitted) {
        await this.reconcile();
        this.mayBeCommitted = false;
        continue;
      }
      const batch = this.queue.slice(0, this.maxBatch);
      let records: AuditRecord[];
      try {
        records = await this.store.appendChained(batch, chainHash);
      } catch (err) {
        this.mayBeCommitted = true;
        throw err;
      }
      // Only now does the batch leave the queue: a crash or an error above keeps it.
      this.queue.splice(0, batch.length);
      this.done += batch.length;
      if (this.waiters.length > 0) this.settleWaiters();
      this.counters.written += records.length;
      this.lastError = null;
      const last = records[records.length - 1];
      if (last) this.lastSeq = Math.max(this.lastSeq ?? 0, last.seq);
      if (this.onWritten) {
        try {
          this.onWritten(records);
        } catch (err) {
          this.logger?.warn({ err }, 'audit onWritten hook failed');
        }
      }
      // Less than a full batch joined during the write (an asynchronous store, or the SQLite
      // writer thread, lets calls go on meanwhile): it is written with what joins next, not
      // at once, so that a busy log commits a few large batches rather than many small ones;
      // unless someone waits on it (append): then the next commit starts now (group commit).
      if (this.queue.length < this.maxBatch && this.flushIntervalMs > 0 && this.waiters.length === 0) return;
    }
  }

  /**
   * After a failed appendChained the transaction may still have committed (the error can come
   * after COMMIT, e.g. a connection reset). appendChained is one transaction, so the batch is
   * either wholly in the log or not at all; look its ids up in the records written since the
   * last seq we know, and drop from the queue those that are there with the same content.
   * An id present with OTHER content is a genuine collision: that event gets a fresh id.
   */
  private async reconcile(): Promise<void> {
    const batch = this.queue.slice(0, this.maxBatch);
    const wanted = new Map(batch.map((e) => [e.id, e]));
    const head = await this.store.auditHead();
    const window = 50_000; // the batch, if committed, is among the newest records
    let from = Math.max(this.lastSeq === undefined ? 1 : this.lastSeq + 1, head.seq - window + 1, 1);
    const found = new Set<string>();
    while (from <= head.seq && found.size < wanted.size) {
      const page = await this.store.readAudit(from, 1000);
      if (page.length === 0) break;
      for (const r of page) {
        const ev = wanted.get(r.id);
        if (!ev) continue;
        if (sameContent(ev, r)) {
          found.add(r.id);
        } else {
          const fresh = newSortableId('aud', Date.now());
          this.logger?.warn({ id: ev.id, fresh }, 'audit event id already used by another record; re-keyed');
          ev.id = fresh;
        }
      }
      from = page[page.length - 1]!.seq + 1;
    }
    this.lastSeq = Math.max(this.lastSeq ?? 0, head.seq);
    if (found.size === 0) return;
    const before = this.queue.length;
    this.queue = this.queue.filter((e, i) => i >= batch.length || !found.has(e.id));
    const removed = before - this.queue.length;
    this.done += removed;
    this.counters.written += removed;
    if (this.waiters.length > 0) this.settleWaiters();
    this.logger?.warn({ events: removed }, 'audit write reported failure but had committed; not writing it twice');
  }
}

function opt(v: string | null | undefined): string | null {
  return v === undefined || v === null ? null : cleanString(v, 1024);
}

function sameContent(ev: AuditEvent, r: AuditRecord): boolean {
  return (
    ev.ts === r.ts && ev.type === r.type && ev.actor === r.actor && ev.subject === r.subject && ev.tool === r.tool &&
    ev.decision === r.decision && ev.traceId === r.traceId && canonicalJson(ev.data) === canonicalJson(r.data)
  );
}

// flush()/close() timers are NOT unref'd: a shutdown awaiting them must not exit half-way.
function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Waits for p (which never rejects) up to ms; true when it settled in time. */
async function withinDeadline(p: Promise<void>, ms: number): Promise<boolean> {
  if (ms <= 0) return false;
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    t = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true as const), timeout]);
  } finally {
    clearTimeout(t);
  }
}
