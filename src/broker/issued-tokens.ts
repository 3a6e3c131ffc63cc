import { UnavailableError, type Logger } from '../core/index.js';
import type { BrokerBatchStore, BrokerStore, IssuedTokenRecord } from './ports.js';

export interface IssuedTokenWriterOptions {
  store: Pick<BrokerStore, 'recordIssuedToken'> & Partial<Pick<BrokerBatchStore, 'recordIssuedTokens'>>;
  logger: Logger;
  /** How long a lone record waits for company. Default 50 ms (as the audit log). */
  flushIntervalMs?: number;
  /** Records per write; reaching it writes at once. Default 500. */
  maxBatch?: number;
  /** Records held while the store is unreachable; beyond it issuance is refused (fail closed). Default 100 000. */
  maxQueue?: number;
}

/**
 * Issued-token records written in batches, off the token request's path (as the audit log
 * writes its events): the record is bookkeeping for listing, introspection and revocation by
 * jti, never consulted to accept a token (the signature and the revocation state are), so
 * it may reach the store up to `flushIntervalMs` after the token is returned. A failed write
 * keeps the batch queued and retries; `close()` flushes; a full queue refuses new tokens.
 */
export class IssuedTokenWriter {
  private readonly store: IssuedTokenWriterOptions['store'];
  private readonly logger: Logger;
  private readonly flushIntervalMs: number;
  private readonly maxBatch: number;
  private readonly maxQueue: number;
  private queue: IssuedTokenRecord[] = [];
  /** Queued or being written, by jti, for `get` before the store has it. */
  private readonly unwritten = new Map<string, IssuedTokenRecord>();
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private failures = 0;

  constructor(opts: IssuedTokenWriterOptions) {
    this.store = opts.store;
    this.logger = opts.logger;
    this.flushIntervalMs = opts.flushIntervalMs ?? 50;
    this.maxBatch = opts.maxBatch ?? 500;
    this.maxQueue = opts.maxQueue ?? 100_000;
  }

  /** Queues a record; throws UnavailableError when the store has been unreachable for too long. */
  record(t: IssuedTokenRecord): void {
    if (this.unwritten.size >= this.maxQueue) throw new UnavailableError('issued tokens cannot be recorded (the store is unreachable)');
    this.queue.push(t);
    this.unwritten.set(t.jti, t);
    // flush() logs its failure and keeps the batch queued; unhandled, its rejection would end the process.
    if (this.queue.length >= this.maxBatch) this.flush().catch(() => {});
    else this.arm(this.flushIntervalMs);
  }

  /** A record not yet in the store (queued or being written), or undefined. */
  pending(jti: string): IssuedTokenRecord | undefined {
    return this.unwritten.get(jti);
  }

  get queued(): number {
    return this.unwritten.size;
  }

  /** Writes everything queued; rejects when the store refuses (the records stay queued). */
  async flush(): Promise<void> {
    while (this.inFlight) await this.inFlight;
    if (this.queue.length === 0) return;
    const batch = this.queue.splice(0, this.maxBatch);
    const run = (async () => {
      try {
        if (this.store.recordIssuedTokens) await this.store.recordIssuedTokens(batch);
        else for (const t of batch) await this.store.recordIssuedToken(t);
        for (const t of batch) this.unwritten.delete(t.jti);
        this.failures = 0;
      } catch (err) {
        this.queue = batch.concat(this.queue);
        this.failures++;
        // Never the tokens themselves: only how many and why (the error names no secret).
        this.logger.warn({ err, queued: this.unwritten.size }, 'issued tokens not recorded yet; retrying');
        throw err;
      }
    })();
    this.inFlight = run;
    try {
      await run;
    } finally {
      this.inFlight = undefined;
      if (this.queue.length > 0) this.arm(this.failures ? Math.min(5000, this.flushIntervalMs * 2 ** this.failures) : 0);
    }
  }

  /** Flushes, retrying for up to `timeoutMs`. */
  async close(timeoutMs = 10_000): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const until = Date.now() + timeoutMs;
    for (;;) {
      try {
        await this.flush();
        if (this.queue.length === 0) return;
      } catch (err) {
        if (Date.now() >= until) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  private arm(delayMs: number): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush().catch(() => {});
    }, delayMs);
    this.timer.unref();
  }
}
