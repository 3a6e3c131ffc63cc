import { performance } from 'node:perf_hooks';
import { DeliverPolicy, type Consumer, type ConsumerMessages, type JetStreamClient, type JsMsg } from '@nats-io/jetstream';
import type { Logger } from '../core/logger.js';
import type { BusHandler, BusMessage, Subscription } from '../core/ports/bus.js';
import { BATCH_HEADER, unpackBatch } from './nats-batch.js';
import { errInfo } from './nats-errors.js';
import { backoffMs, awaitRunningHandler, deliverAtLeastOnce, sleep, type RetryOptions } from './util.js';

/** How long a subscriber runs handlers back to back before it lets the event loop run (see NatsSubscription.loop). */
const YIELD_AFTER_MS = 2;

/** What a subscription needs of its bus. */
export interface SubscriptionHost {
  /** The JetStream client, or UnavailableError when the bus is closed or not started. */
  requireJs(): JetStreamClient;
  readonly streamName: string;
  isConnectionClosed(): boolean;
  /** Confirmed contact with the server (a message, a heartbeat). */
  touch(): void;
}

export interface NatsSubscriptionConfig {
  /** Full wire filter, prefix included. */
  filter: string;
  handler: BusHandler;
  start: number;
  name: string;
  prefixLength: number;
  retry: RetryOptions;
  logger: Logger;
  closeTimeoutMs: number;
}

/**
 * One subscriber. Its position is `nextSeq` = last completed seq + 1; the JetStream consumer
 * is disposable. Whenever it fails, stalls or the connection comes back, a new ordered
 * consumer is created at `nextSeq`: nothing after the last completed message can be
 * skipped, and what is offered again is at most the message that was in flight
 * (at-least-once). Messages below `nextSeq` from a stale consumer are dropped, so the
 * handler sees increasing seqs (the items of one `publishMany` entry share theirs).
 */
export class NatsSubscription implements Subscription {
  private readonly ac = new AbortController();
  private nextSeq: number;
  private completed = 0;
  private current: ConsumerMessages | undefined;
  /** Bumped by every resume(): a consumer created under an older epoch is abandoned. */
  private epoch = 0;
  private done: Promise<void> = Promise.resolve();

  constructor(private readonly bus: SubscriptionHost, private readonly cfg: NatsSubscriptionConfig) {
    this.nextSeq = cfg.start;
  }

  get lastSeq(): number {
    return this.completed;
  }

  run(): Promise<void> {
    this.done = this.loop();
    return this.done;
  }

  /** Abandons the current consumer; the loop recreates one at `nextSeq`. */
  resume(reason: string): void {
    this.epoch++;
    this.cfg.logger.debug({ subscription: this.cfg.name, reason, resumeAt: this.nextSeq }, 'bus subscriber resuming');
    const cur = this.current;
    this.current = undefined;
    if (cur) void cur.close().catch(() => undefined);
  }

  private async loop(): Promise<void> {
    const { signal } = this.ac;
    for (let failures = 0; !signal.aborted && !this.bus.isConnectionClosed(); ) {
      let messages: ConsumerMessages | undefined;
      let consumer: Consumer | undefined;
      const epoch = this.epoch;
      try {
        const js = this.bus.requireJs();
        consumer = await js.consumers.get(this.bus.streamName, {
          filter_subjects: this.cfg.filter,
          deliver_policy: DeliverPolicy.StartSequence,
          opt_start_seq: this.nextSeq,
        });
        // A reconnect (or close) while the consumer was being created: it may already be
        // gone on the server, so start over rather than wait for it to notice.
        if (signal.aborted || this.epoch !== epoch) continue;
        // idle heartbeats every 5 s while nothing flows; two missed ones count as a stall.
        messages = await consumer.consume({ max_messages: 256, expires: 10_000 });
        this.current = messages;
        this.watch(messages);
        failures = 0;
        let slice = performance.now();
        for await (const m of messages) {
          this.bus.touch();
          // A pull hands over up to 256 messages, and the iterator serves buffered ones in
          // microtasks: without a pause the whole buffer would run before any I/O (a SET push, a
          // revocation on another subscription, a proxied call) got a turn. Every few ms of
          // handlers, let the event loop run.
          if (performance.now() - slice > YIELD_AFTER_MS) {
            await new Promise<void>((r) => setImmediate(r));
            slice = performance.now();
          }
          const seq = m.seq;
          if (seq < this.nextSeq) continue; // replayed by a newer consumer after a resume
          // The common case in line: one call, awaited only when the handler returned a promise.
          // A handler that throws (or rejects) goes to the at-least-once loop with its error.
          if (signal.aborted) break; // closing: not handed over, not completed
          let ok = true;
          for (const msg of this.toBusMessages(m, seq)) {
            try {
              const r = this.cfg.handler(msg);
              if (r !== undefined) await r;
            } catch (err) {
              ok = await deliverAtLeastOnce(msg, this.cfg.handler, { signal, retry: this.cfg.retry, logger: this.cfg.logger, name: this.cfg.name, failed: err });
            }
            // Closing: the entry is not completed, and a resumed subscriber offers all of it
            // again (its items before this one too: at-least-once).
            if (!ok) break;
          }
          if (!ok) break; // closing: the in-flight message is not completed
          this.completed = seq;
          this.nextSeq = seq + 1;
          if (this.epoch !== epoch) break; // resume() was called: start over at nextSeq
        }
      } catch (err) {
        if (signal.aborted) break;
        failures++;
        if (failures === 1 || failures % 20 === 0) {
          this.cfg.logger.warn({ subscription: this.cfg.name, resumeAt: this.nextSeq, err: errInfo(err) }, 'bus subscriber lost its consumer; retrying');
        }
      } finally {
        if (messages) {
          if (this.current === messages) this.current = undefined;
          void messages.close().catch(() => undefined);
        }
        // Ephemeral consumers would linger on the server until their inactivity threshold.
        if (consumer) void consumer.delete().catch(() => undefined);
      }
      if (!signal.aborted) await sleep(backoffMs(failures, { initialMs: 100, maxMs: 2_000 }), signal);
    }
  }

  private watch(messages: ConsumerMessages): void {
    void (async () => {
      for await (const s of messages.status()) {
        if (s.type === 'heartbeat') this.bus.touch();
        else if (s.type === 'heartbeats_missed' && s.count >= 2) this.resume('heartbeats missed');
      }
    })().catch(() => undefined);
  }

  /** The messages of one stream entry: itself, or the items of a `publishMany` entry (header Mandate-Batch). */
  private toBusMessages(m: JsMsg, seq: number): BusMessage[] {
    if (!m.headers?.has(BATCH_HEADER)) return [this.toBusMessage(m, seq)];
    const items = unpackBatch(m, m.subject.slice(this.cfg.prefixLength), seq);
    if (items) return items;
    // Not what publishMany writes (someone else published under the prefix with this header): handed over as one message.
    this.cfg.logger.warn({ subscription: this.cfg.name, seq }, 'bus entry marked as a batch is not one; delivered as it is');
    return [this.toBusMessage(m, seq)];
  }

  private toBusMessage(m: JsMsg, seq: number): BusMessage {
    let data: unknown;
    try {
      data = m.json<unknown>();
    } catch {
      data = m.string(); // not ours (someone published raw bytes under the prefix): hand it over as text
    }
    // `publishedAt` (the reply subject's nanosecond timestamp) and `id` (the header block) are
    // parsed only when a handler reads them: most do not (a revocation, a restriction). Plain
    // enumerable getters, so a spread or JSON copy of the message still has both values.
    let publishedAt: number | undefined;
    let id: string | undefined;
    return {
      seq,
      subject: m.subject.slice(this.cfg.prefixLength),
      data,
      get publishedAt() {
        return (publishedAt ??= Number(m.timestampNanos / 1_000_000n));
      },
      get id() {
        return (id ??= m.headers?.get('Nats-Msg-Id') ?? '');
      },
    };
  }

  async close(): Promise<void> {
    this.ac.abort();
    this.resume('close');
    await awaitRunningHandler(this.done, this.cfg.closeTimeoutMs, this.cfg.logger, this.cfg.name);
  }
}
