import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { MandateError, UnavailableError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/logger.js';
import type { Bus, BusHandler, BusHealth, SubscribeOptions, Subscription } from '../core/ports/bus.js';
import { AckInbox } from './nats-acks.js';
import { NatsLink } from './nats-connection.js';
import { isRetryable } from './nats-errors.js';
import { NatsPublisher } from './nats-publish.js';
import { NatsStream } from './nats-stream.js';
import { NatsSubscription, type SubscriptionHost } from './nats-subscription.js';
import { assertFilter, backoffMs, sleep, type RetryOptions } from './util.js';

const DAY_MS = 24 * 60 * 60 * 1000;

export interface NatsBusOptions {
  /** `nats://host:port` URLs; the client reconnects to any of them, forever. */
  servers: string[];
  /** JetStream stream name; created (or its limits updated) by `start()`. */
  stream: string;
  /** Every subject is published as `<prefix>.<subject>`; the stream captures `<prefix>.>`. */
  subjectPrefix: string;
  /**
   * The resolved value of `bus.nats_credentials` (never logged): the text of a `.creds`
   * file, an nkey user seed (`SU…`), `user:password`, or else a token.
   */
  credentials?: string;
  /** Messages older than this are dropped by the server. Default 7 days. */
  maxAgeMs?: number;
  /** How long the server remembers `Nats-Msg-Id`s for dedupe. Default 2 min; must exceed any publish retry window. */
  duplicateWindowMs?: number;
  /** Wait between reconnect attempts. Default 250 ms. */
  reconnectWaitMs?: number;
  /** How long `start()` keeps trying to reach a server. Default 30 s. */
  connectTimeoutMs?: number;
  /** Default for `publish(…, { timeoutMs })`. Default 30 s. */
  publishTimeoutMs?: number;
  /** Timeout of one JetStream API request (stream info, consumer create). Default 5 s. */
  requestTimeoutMs?: number;
  /** How often the connection is probed to keep `health().lastContactAt` fresh. Default 5 s. */
  heartbeatMs?: number;
  /** Backoff when a handler throws. */
  retry?: RetryOptions;
  /** How long `close()` waits for running handlers and the drain. Default 10 s. */
  closeTimeoutMs?: number;
  /** Connection name shown by the server's monitoring. */
  name?: string;
  logger?: Logger;
}

/**
 * The bus over NATS JetStream. The stream is the log: publishes are acknowledged only once
 * stored (and deduplicated by `Nats-Msg-Id`), and every subscriber reads the stream through
 * its own ordered, ephemeral consumer, restarted from the position it last completed.
 *
 * This class wires the parts: the connection and its freshness (nats-connection.ts), the
 * stream (nats-stream.ts), publishing (nats-publish.ts, its acks in nats-acks.ts and the batch
 * entry of publishMany in nats-batch.ts), and each subscriber (nats-subscription.ts).
 */
export class NatsBus implements Bus, SubscriptionHost {
  readonly driver = 'nats' as const;
  private readonly opts: Required<Omit<NatsBusOptions, 'credentials' | 'name' | 'logger' | 'retry'>> &
    Pick<NatsBusOptions, 'credentials' | 'name' | 'retry'>;
  private readonly logger: Logger;
  private readonly link: NatsLink;
  private readonly stream: NatsStream;
  private readonly acks = new AckInbox();
  private readonly publisher: NatsPublisher;
  private js: JetStreamClient | undefined;
  private readonly subs = new Set<NatsSubscription>();
  private starting: Promise<void> | undefined;

  constructor(opts: NatsBusOptions) {
    this.opts = {
      maxAgeMs: 7 * DAY_MS,
      duplicateWindowMs: 2 * 60_000,
      reconnectWaitMs: 250,
      connectTimeoutMs: 30_000,
      publishTimeoutMs: 30_000,
      requestTimeoutMs: 5_000,
      heartbeatMs: 5_000,
      closeTimeoutMs: 10_000,
      ...stripUndefined(opts),
    };
    this.logger = opts.logger ?? silentLogger();
    if (this.opts.servers.length === 0) throw new MandateError('ERR_BUS_CONFIG', 'the NATS bus needs at least one server');
    const o = this.opts;
    this.link = new NatsLink({
      servers: o.servers, name: o.name, credentials: o.credentials, reconnectWaitMs: o.reconnectWaitMs, connectTimeoutMs: o.connectTimeoutMs,
      heartbeatMs: o.heartbeatMs, closeTimeoutMs: o.closeTimeoutMs, logger: this.logger,
      // The server may have restarted and lost the ephemeral consumers: every
      // subscriber restarts its consumer right after the last seq it completed.
      onReconnect: () => {
        for (const sub of this.subs) sub.resume('reconnect');
      },
    });
    this.stream = new NatsStream({
      stream: o.stream, subjectPrefix: o.subjectPrefix, maxAgeMs: o.maxAgeMs, duplicateWindowMs: o.duplicateWindowMs, requestTimeoutMs: o.requestTimeoutMs, logger: this.logger,
    }, this.link);
    this.publisher = new NatsPublisher({
      link: this.link, acks: this.acks, stream: this.stream, publishTimeoutMs: o.publishTimeoutMs, logger: this.logger,
      ready: () => this.ready(),
      wire: (subject) => this.wire(subject),
    });
  }

  /** The full subject on the wire. */
  private wire(subject: string): string {
    return `${this.opts.subjectPrefix}.${subject}`;
  }

  async start(): Promise<void> {
    if (this.link.closed) throw new UnavailableError('the bus is closed');
    // Concurrent callers share one attempt; a failed attempt can be retried by calling again.
    this.starting ??= this.connectAndPrepare().catch((err: unknown) => {
      this.starting = undefined;
      throw err;
    });
    return this.starting;
  }

  private async connectAndPrepare(): Promise<void> {
    const nc = await this.link.open();
    this.acks.listen(nc);
    this.js = jetstream(nc, { timeout: this.opts.requestTimeoutMs });
    try {
      await this.stream.init(nc);
    } catch (err) {
      await this.link.abandon();
      this.js = undefined;
      throw err instanceof MandateError ? err : new UnavailableError('JetStream is not available on the NATS server', { cause: err });
    }
    this.link.startHeartbeat();
  }

  publish(subject: string, data: unknown, opts: { id?: string; timeoutMs?: number } = {}): Promise<number> {
    return this.publisher.publish(subject, data, opts);
  }

  /**
   * The items as few JetStream messages as max_payload allows, stored once however often a
   * caller retries them (see nats-batch.ts). Subscribers unpack them.
   */
  publishMany(subject: string, items: ReadonlyArray<{ data: unknown; id: string }>, opts: { timeoutMs?: number } = {}): Promise<void> {
    return this.publisher.publishMany(subject, items, opts);
  }

  async subscribe(filter: string, handler: BusHandler, opts: SubscribeOptions = {}): Promise<Subscription> {
    assertFilter(filter);
    this.requireJs();
    // "Only new messages" is pinned to a sequence now, so that the subscriber's position is
    // always an explicit seq it can resume from, even before it has seen a message.
    const start = opts.fromSeq !== undefined
      ? Math.max(1, Math.floor(opts.fromSeq))
      : (await this.withRetry(() => this.stream.lastSeq(), this.opts.publishTimeoutMs)) + 1;
    const sub = new NatsSubscription(this, {
      filter: this.wire(filter),
      handler,
      start,
      name: opts.name ?? filter,
      prefixLength: this.opts.subjectPrefix.length + 1,
      retry: this.opts.retry ?? {},
      logger: this.logger,
      closeTimeoutMs: this.opts.closeTimeoutMs,
    });
    this.subs.add(sub);
    sub.run().finally(() => this.subs.delete(sub));
    return sub;
  }

  async lastSeq(): Promise<number> {
    this.requireJs();
    // Fail closed at once rather than after a request timeout: callers use this to judge freshness.
    if (!this.link.connected) throw new UnavailableError('the bus is disconnected from NATS');
    try {
      return await this.stream.lastSeq();
    } catch (err) {
      throw new UnavailableError('cannot read the bus stream state', { cause: err });
    }
  }

  health(): BusHealth {
    return this.link.health();
  }

  async close(): Promise<void> {
    if (this.link.closed) return;
    this.link.markClosed();
    await Promise.all([...this.subs].map((s) => s.close()));
    await this.link.drain();
  }

  // ---- what NatsSubscription needs of its bus ----

  /** @internal */
  requireJs(): JetStreamClient {
    if (this.link.closed) throw new UnavailableError('the bus is closed');
    if (!this.js || !this.link.nc) throw new UnavailableError('the bus is not started');
    return this.js;
  }

  /** The connection, checked as `requireJs` checks it. */
  private ready(): NatsConnection {
    this.requireJs();
    return this.link.nc!;
  }

  /** @internal */
  get streamName(): string {
    return this.opts.stream;
  }

  /** @internal */
  isConnectionClosed(): boolean {
    return this.link.closed || !this.link.nc || this.link.nc.isClosed();
  }

  /** @internal Confirmed contact with the server: an ack, a reply, a heartbeat, a message. */
  touch(): void {
    this.link.touch();
  }

  private async withRetry<T>(fn: () => Promise<T>, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (this.link.closed || Date.now() >= deadline || !isRetryable(err)) throw new UnavailableError('the bus is not reachable', { cause: err });
        await sleep(Math.min(backoffMs(attempt, { initialMs: 100, maxMs: 1_000 }), Math.max(0, deadline - Date.now())));
      }
    }
  }
}

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
