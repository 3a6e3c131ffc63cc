import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import {
  connect, createInbox, credsAuthenticator, headers, nkeyAuthenticator, tokenAuthenticator, usernamePasswordAuthenticator, nanos,
  AuthorizationError, ClosedConnectionError, InvalidArgumentError, InvalidSubjectError, NoRespondersError, PermissionViolationError, TimeoutError,
  type Authenticator, type Msg, type NatsConnection,
} from '@nats-io/transport-node';
import {
  jetstream, jetstreamManager, DeliverPolicy, DiscardPolicy, JetStreamApiCodes, JetStreamApiError, RetentionPolicy,
  StorageType, type Consumer, type ConsumerMessages, type JetStreamClient, type JetStreamManager, type JsMsg,
} from '@nats-io/jetstream';
import { MandateError, UnavailableError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/logger.js';
import type { Bus, BusHandler, BusHealth, BusMessage, SubscribeOptions, Subscription } from '../core/ports/bus.js';
import {
  assertFilter, assertSubject, backoffMs, deliverAtLeastOnce, encodeData, settlesWithin, sleep, type RetryOptions,
} from './util.js';

const DAY_MS = 24 * 60 * 60 * 1000;
/** How long a subscriber runs handlers back to back before it lets the event loop run (see NatsSubscription.loop). */
const YIELD_AFTER_MS = 2;
/** After a reconnect, how long a publish attempt still waits for its ack before asking again. */
const RECONNECT_GRACE_MS = 100;
/** How often publish attempts waiting for their JetStream ack are checked against their deadline. */
const ACK_SWEEP_MS = 50;

/** Marks a stream entry that carries several messages (`publishMany`): its value is their count. */
const BATCH_HEADER = 'Mandate-Batch';
/** Room left in max_payload for the JSON brackets and what the server counts besides the payload. */
const BATCH_HEADROOM_BYTES = 1024;

/** A JetStream publish waiting for its ack on the bus's ack inbox (see `NatsBus.jsPublish`). */
interface PendingAck {
  subject: string;
  deadline: number;
  resolve: (seq: number) => void;
  reject: (err: unknown) => void;
}

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
 */
export class NatsBus implements Bus {
  readonly driver = 'nats' as const;
  private readonly opts: Required<Omit<NatsBusOptions, 'credentials' | 'name' | 'logger' | 'retry'>> &
    Pick<NatsBusOptions, 'credentials' | 'name' | 'retry'>;
  private readonly logger: Logger;
  private nc: NatsConnection | undefined;
  private js: JetStreamClient | undefined;
  private jsm: JetStreamManager | undefined;
  private connected = false;
  private lastContactAt = 0;
  private closed = false;
  private heartbeat: NodeJS.Timeout | undefined;
  private readonly subs = new Set<NatsSubscription>();
  private ensuringStream: Promise<void> | undefined;
  private lastEnsureAt = 0;
  private starting: Promise<void> | undefined;
  /** Called on every reconnect: wakes publish attempts that were stuck across it. */
  private readonly reconnectListeners = new Set<() => void>();
  /** JetStream acks come to `<ackInbox>.<token>`, one subscription for all publishes (see jsPublish). */
  private ackInbox = '';
  private ackToken = 0;
  private readonly acks = new Map<string, PendingAck>();
  private ackSweep: NodeJS.Timeout | undefined;

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
  }

  /** The full subject on the wire. */
  private wire(subject: string): string {
    return `${this.opts.subjectPrefix}.${subject}`;
  }

  async start(): Promise<void> {
    if (this.closed) throw new UnavailableError('the bus is closed');
    // Concurrent callers share one attempt; a failed attempt can be retried by calling again.
    this.starting ??= this.connectAndPrepare().catch((err: unknown) => {
      this.starting = undefined;
      throw err;
    });
    return this.starting;
  }

  private async connectAndPrepare(): Promise<void> {
    const deadline = Date.now() + this.opts.connectTimeoutMs;
    let lastErr: unknown;
    for (let attempt = 0; ; attempt++) {
      try {
        this.nc = await connect({
          servers: this.opts.servers,
          name: this.opts.name ?? 'mandate',
          // Once connected, never give up: the bus must come back by itself after an outage.
          maxReconnectAttempts: -1,
          reconnectTimeWait: this.opts.reconnectWaitMs,
          reconnectJitter: Math.min(100, this.opts.reconnectWaitMs),
          // Client pings find a dead peer that never closed the socket (a partition).
          pingInterval: Math.max(1_000, this.opts.heartbeatMs),
          maxPingOut: 2,
          timeout: Math.max(500, Math.min(5_000, deadline - Date.now())),
          // No Error object (with its stack) made up front for every request, in case it fails:
          // a failed request still rejects with its error, without the caller's async stack.
          noAsyncTraces: true,
          ...(this.opts.credentials !== undefined ? { authenticator: authenticatorFor(this.opts.credentials) } : {}),
        });
        break;
      } catch (err) {
        lastErr = err;
        if (err instanceof AuthorizationError) throw new UnavailableError('NATS refused the bus credentials', { cause: err });
        if (attempt === 0) this.logger.warn({ servers: this.opts.servers, err: errInfo(err) }, 'NATS is not reachable yet; retrying');
        if (Date.now() + this.opts.reconnectWaitMs >= deadline) {
          throw new UnavailableError(`NATS not reachable at ${this.opts.servers.join(', ')}`, { cause: lastErr });
        }
        await sleep(this.opts.reconnectWaitMs);
      }
      if (this.closed) throw new UnavailableError('the bus is closed');
    }
    const nc = this.nc;
    if (this.closed) {
      await nc.close().catch(() => undefined);
      throw new UnavailableError('the bus is closed');
    }
    this.connected = true;
    this.touch();
    this.watchStatus(nc);
    this.ackInbox = createInbox();
    nc.subscribe(`${this.ackInbox}.*`, { callback: (err, m) => { if (!err) this.onAck(m); } });
    // A closed connection answers nothing more: what still waits fails now (the caller's retry
    // loop then gives up with UnavailableError) rather than at its deadline.
    void nc.closed().then(() => this.failAcks(() => new ClosedConnectionError()));
    this.js = jetstream(nc, { timeout: this.opts.requestTimeoutMs });
    try {
      this.jsm = await jetstreamManager(nc, { timeout: this.opts.requestTimeoutMs });
      await this.ensureStream();
    } catch (err) {
      await nc.close().catch(() => undefined);
      this.nc = undefined;
      this.js = undefined;
      this.connected = false;
      throw err instanceof MandateError ? err : new UnavailableError('JetStream is not available on the NATS server', { cause: err });
    }
    this.heartbeat = setInterval(() => void this.probe(), this.opts.heartbeatMs);
    this.heartbeat.unref();
  }

  /** Creates the stream, or brings its subjects and limits in line with the configuration. */
  private async ensureStream(): Promise<void> {
    const jsm = this.requireJsm();
    const { stream } = this.opts;
    const wanted = {
      subjects: [`${this.opts.subjectPrefix}.>`],
      max_age: nanos(this.opts.maxAgeMs),
      duplicate_window: nanos(Math.min(this.opts.duplicateWindowMs, this.opts.maxAgeMs)),
    };
    let info;
    try {
      info = await jsm.streams.info(stream);
    } catch (err) {
      if (!(err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound)) throw err;
      try {
        await jsm.streams.add({
          name: stream,
          ...wanted,
          storage: StorageType.File,
          retention: RetentionPolicy.Limits,
          discard: DiscardPolicy.Old,
        });
      } catch (addErr) {
        throw streamError(`cannot create JetStream stream "${stream}" for "${wanted.subjects[0]}"`, addErr);
      }
      this.logger.info({ stream, subjects: wanted.subjects }, 'created JetStream stream');
      return;
    }
    const c = info.config;
    const same = c.subjects?.length === 1 && c.subjects[0] === wanted.subjects[0] && c.max_age === wanted.max_age && c.duplicate_window === wanted.duplicate_window;
    if (!same) {
      try {
        await jsm.streams.update(stream, wanted);
      } catch (updateErr) {
        throw streamError(`cannot update JetStream stream "${stream}" to "${wanted.subjects[0]}"`, updateErr);
      }
      this.logger.info({ stream, subjects: wanted.subjects }, 'updated JetStream stream subjects and limits');
    }
  }

  /** After a "no responders" publish while connected the stream may have been deleted: recreate it, at most every 2 s. */
  private maybeEnsureStream(): void {
    if (this.ensuringStream || Date.now() - this.lastEnsureAt < 2_000 || !this.connected) return;
    this.lastEnsureAt = Date.now();
    this.ensuringStream = this.ensureStream()
      .catch((err: unknown) => this.logger.debug({ err: errInfo(err) }, 'stream check failed'))
      .finally(() => {
        this.ensuringStream = undefined;
      });
  }

  async publish(subject: string, data: unknown, opts: { id?: string; timeoutMs?: number } = {}): Promise<number> {
    assertSubject(subject);
    this.requireJs();
    const payload = encodeData(data);
    const maxPayload = this.nc!.info?.max_payload;
    if (maxPayload !== undefined && Buffer.byteLength(payload) > maxPayload) {
      throw new MandateError('ERR_BUS_PAYLOAD_TOO_LARGE', `bus message of ${Buffer.byteLength(payload)} bytes exceeds the server's max_payload (${maxPayload})`);
    }
    return this.publishEntry(subject, payload, opts.id ?? randomUUID(), opts.timeoutMs, undefined);
  }

  /**
   * The items as few JetStream messages as max_payload allows, each with the header
   * `Mandate-Batch: <count>` and a JSON array of `[id, data]` pairs as its payload; its
   * `Nats-Msg-Id` is made of its first item's id and its count, so the same items published again
   * (a caller's retry) are stored once. Subscribers unpack them (see NatsSubscription).
   */
  async publishMany(subject: string, items: ReadonlyArray<{ data: unknown; id: string }>, opts: { timeoutMs?: number } = {}): Promise<void> {
    if (items.length === 0) return;
    if (items.length === 1) {
      await this.publish(subject, items[0]!.data, { id: items[0]!.id, timeoutMs: opts.timeoutMs });
      return;
    }
    assertSubject(subject);
    this.requireJs();
    const max = (this.nc!.info?.max_payload ?? 1024 * 1024) - BATCH_HEADROOM_BYTES;
    const entries: Array<{ parts: string[]; firstId: string; bytes: number }> = [];
    let cur: { parts: string[]; firstId: string; bytes: number } | undefined;
    for (const it of items) {
      const part = `[${JSON.stringify(it.id)},${encodeData(it.data)}]`;
      const bytes = Buffer.byteLength(part) + 1;
      if (bytes + 2 > max) throw new MandateError('ERR_BUS_PAYLOAD_TOO_LARGE', `bus message of ${bytes} bytes exceeds the server's max_payload (${max + BATCH_HEADROOM_BYTES})`);
      if (!cur || cur.bytes + bytes > max) entries.push((cur = { parts: [], firstId: it.id, bytes: 2 }));
      cur.parts.push(part);
      cur.bytes += bytes;
    }
    await Promise.all(entries.map((e) => this.publishEntry(subject, `[${e.parts.join(',')}]`, `${e.firstId}+${e.parts.length}`, opts.timeoutMs, e.parts.length)));
  }

  /** One stream entry, retried (same msg id) until acknowledged or `timeoutMs` passed; resolves with its seq. */
  private async publishEntry(subject: string, payload: string, id: string, timeoutMs: number | undefined, batch: number | undefined): Promise<number> {
    const nc = this.nc!;
    const deadline = Date.now() + (timeoutMs ?? this.opts.publishTimeoutMs);
    let lastErr: unknown;
    // Every attempt carries the same Nats-Msg-Id, so an attempt whose ack was lost but
    // which the server did store is not stored twice: the retry's ack names the original seq.
    for (let attempt = 0; ; attempt++) {
      if (this.closed) throw new UnavailableError('the bus is closed');
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new UnavailableError(`bus publish to "${subject}" not acknowledged in time`, { cause: lastErr });
      }
      try {
        // While disconnected the client buffers the request and sends it on reconnect; a
        // short per-attempt timeout keeps us asking again rather than waiting on one inbox.
        const sent = this.jsPublish(nc, this.wire(subject), payload, id, Math.max(200, Math.min(remaining, 2_000)), batch);
        const seq = await this.unlessReconnected(sent);
        if (seq === undefined) {
          // A request buffered across a reconnect is often never answered; rather than wait
          // out its timeout, ask again now (same msg id: the server stores it at most once).
          sent.catch(() => undefined);
          this.logger.debug({ subject, attempt }, 'bus publish re-sent after reconnect');
          continue;
        }
        this.touch();
        return seq;
      } catch (err) {
        lastErr = err;
        if (!isRetryable(err)) throw err;
        if (err instanceof ClosedConnectionError || nc.isClosed()) throw new UnavailableError('the bus connection is closed', { cause: err });
        if (isNoResponders(err)) this.maybeEnsureStream();
        if (attempt === 0) this.logger.warn({ subject, err: errInfo(err) }, 'bus publish not acknowledged; retrying');
        else this.logger.debug({ subject, attempt, err: errInfo(err) }, 'bus publish retry');
        await sleep(Math.min(backoffMs(attempt, { initialMs: 50, maxMs: 1_000 }), Math.max(0, deadline - Date.now())));
      }
    }
  }

  async subscribe(filter: string, handler: BusHandler, opts: SubscribeOptions = {}): Promise<Subscription> {
    assertFilter(filter);
    this.requireJs();
    // "Only new messages" is pinned to a sequence now, so that the subscriber's position is
    // always an explicit seq it can resume from, even before it has seen a message.
    const start = opts.fromSeq !== undefined
      ? Math.max(1, Math.floor(opts.fromSeq))
      : (await this.withRetry(() => this.streamLastSeq(), this.opts.publishTimeoutMs)) + 1;
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
    if (!this.connected) throw new UnavailableError('the bus is disconnected from NATS');
    try {
      return await this.streamLastSeq();
    } catch (err) {
      throw new UnavailableError('cannot read the bus stream state', { cause: err });
    }
  }

  private async streamLastSeq(): Promise<number> {
    const info = await this.requireJsm().streams.info(this.opts.stream);
    this.touch();
    return info.state.last_seq;
  }

  /**
   * One JetStream publish attempt (what `js.publish(subject, payload, { msgID })` does): the
   * message goes out with `Nats-Msg-Id` and a reply subject on the bus's one ack inbox, and the
   * promise settles with the stream's ack (its seq), the stream's error (JetStreamApiError), no
   * responders, or a TimeoutError after `timeoutMs`. The client's request path costs about three
   * times as much CPU per publish (a timer, a promise race, an inbox entry and an ack parser per
   * request), paid on every revocation, signal and proxied call.
   */
  private jsPublish(nc: NatsConnection, subject: string, payload: string, id: string, timeoutMs: number, batch?: number): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      const token = (++this.ackToken).toString(36);
      const h = headers();
      h.set('Nats-Msg-Id', id);
      if (batch !== undefined) h.set(BATCH_HEADER, String(batch));
      this.acks.set(token, { subject, deadline: Date.now() + timeoutMs, resolve, reject });
      this.ackSweep ??= setInterval(() => this.sweepAcks(), ACK_SWEEP_MS).unref();
      try {
        nc.publish(subject, payload, { reply: `${this.ackInbox}.${token}`, headers: h });
      } catch (err) {
        this.acks.delete(token);
        reject(err);
      }
    });
  }

  /** A reply on the ack inbox: the stream's ack (`{stream, seq, duplicate?}`), its error, or no responders (503). */
  private onAck(m: Msg): void {
    const token = m.subject.slice(this.ackInbox.length + 1);
    const p = this.acks.get(token);
    if (!p) return; // its attempt timed out already; the retry (same msg id) gets its own ack
    this.acks.delete(token);
    if (m.data.length === 0 && m.headers?.code === 503) return p.reject(new NoRespondersError(p.subject));
    let ack: { stream?: unknown; seq?: unknown; error?: { code: number; err_code: number; description: string } };
    try {
      ack = JSON.parse(m.string()) as typeof ack;
    } catch (err) {
      return p.reject(err);
    }
    if (ack.error) return p.reject(new JetStreamApiError(ack.error));
    if (typeof ack.stream !== 'string' || ack.stream === '' || typeof ack.seq !== 'number') return p.reject(new Error('invalid ack response'));
    p.resolve(ack.seq);
  }

  private sweepAcks(): void {
    const now = Date.now();
    for (const [token, p] of this.acks) {
      if (p.deadline > now) continue;
      this.acks.delete(token);
      p.reject(new TimeoutError());
    }
    if (this.acks.size === 0 && this.ackSweep) {
      clearInterval(this.ackSweep);
      this.ackSweep = undefined;
    }
  }

  private failAcks(err: () => unknown): void {
    const waiting = [...this.acks.values()];
    this.acks.clear();
    for (const p of waiting) p.reject(err());
  }

  health(): BusHealth {
    return { connected: this.connected && !this.closed, lastContactAt: this.lastContactAt };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    await Promise.all([...this.subs].map((s) => s.close()));
    const nc = this.nc;
    this.connected = false;
    if (!nc || nc.isClosed()) return;
    // Drain flushes what is pending; on a dead connection it cannot finish, so bound it.
    const drained = await settlesWithin(nc.drain(), this.opts.closeTimeoutMs);
    if (!drained || !nc.isClosed()) await nc.close().catch(() => undefined);
  }

  // ---- internals used by NatsSubscription ----

  /** @internal */
  requireJs(): JetStreamClient {
    if (this.closed) throw new UnavailableError('the bus is closed');
    if (!this.js || !this.nc) throw new UnavailableError('the bus is not started');
    return this.js;
  }

  private requireJsm(): JetStreamManager {
    if (!this.jsm) throw new UnavailableError('the bus is not started');
    return this.jsm;
  }

  /** @internal */
  get streamName(): string {
    return this.opts.stream;
  }

  /** @internal */
  isConnectionClosed(): boolean {
    return this.closed || !this.nc || this.nc.isClosed();
  }

  /** @internal Confirmed contact with the server: an ack, a reply, a heartbeat, a message. */
  touch(): void {
    this.lastContactAt = Date.now();
  }

  private async withRetry<T>(fn: () => Promise<T>, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (this.closed || Date.now() >= deadline || !isRetryable(err)) throw new UnavailableError('the bus is not reachable', { cause: err });
        await sleep(Math.min(backoffMs(attempt, { initialMs: 100, maxMs: 1_000 }), Math.max(0, deadline - Date.now())));
      }
    }
  }

  /**
   * `p`, or undefined when a reconnect happens first and `p` is still pending a short grace
   * later. A listener per call, removed after, so nothing piles up on a long-lived promise.
   */
  private async unlessReconnected<T>(p: Promise<T>): Promise<T | undefined> {
    let wake!: () => void;
    const stale = new Promise<undefined>((resolve) => {
      wake = () => void setTimeout(() => resolve(undefined), RECONNECT_GRACE_MS).unref();
    });
    this.reconnectListeners.add(wake);
    try {
      return await Promise.race([p, stale]);
    } finally {
      this.reconnectListeners.delete(wake);
    }
  }

  private async probe(): Promise<void> {
    const nc = this.nc;
    if (!nc || this.closed || !this.connected) return;
    try {
      const rtt = nc.rtt();
      if (await settlesWithin(rtt, this.opts.heartbeatMs)) {
        await rtt;
        this.touch();
      }
    } catch {
      // A failed probe is not contact; the status watcher reports the disconnect itself.
    }
  }

  private watchStatus(nc: NatsConnection): void {
    void (async () => {
      for await (const s of nc.status()) {
        switch (s.type) {
          case 'disconnect':
          case 'staleConnection':
            if (this.connected) this.logger.warn({ server: 'server' in s ? s.server : undefined, event: s.type }, 'bus disconnected from NATS');
            this.connected = false;
            break;
          case 'reconnect':
            this.connected = true;
            this.touch();
            this.logger.info({ server: s.server }, 'bus reconnected to NATS');
            for (const wake of this.reconnectListeners) wake();
            // The server may have restarted and lost the ephemeral consumers: every
            // subscriber restarts its consumer right after the last seq it completed.
            for (const sub of this.subs) sub.resume('reconnect');
            break;
          case 'close':
            this.connected = false;
            break;
          case 'error':
            this.logger.warn({ err: errInfo(s.error) }, 'NATS reported an error');
            break;
          default:
            break;
        }
      }
    })().catch((err: unknown) => this.logger.warn({ err: errInfo(err) }, 'NATS status watcher stopped'));
  }
}

interface NatsSubscriptionConfig {
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
class NatsSubscription implements Subscription {
  private readonly ac = new AbortController();
  private nextSeq: number;
  private completed = 0;
  private current: ConsumerMessages | undefined;
  /** Bumped by every resume(): a consumer created under an older epoch is abandoned. */
  private epoch = 0;
  private done: Promise<void> = Promise.resolve();

  constructor(private readonly bus: NatsBus, private readonly cfg: NatsSubscriptionConfig) {
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

  /**
   * The messages of one stream entry: itself, or the items of a `publishMany` entry (header
   * Mandate-Batch), in order, each with its own id and the entry's seq and time.
   */
  private toBusMessages(m: JsMsg, seq: number): BusMessage[] {
    if (!m.headers?.has(BATCH_HEADER)) return [this.toBusMessage(m, seq)];
    let items: unknown;
    try {
      items = m.json<unknown>();
    } catch {
      items = undefined;
    }
    if (!Array.isArray(items) || !items.every((x) => Array.isArray(x) && x.length === 2 && typeof x[0] === 'string')) {
      // Not what publishMany writes (someone else published under the prefix with this header): handed over as one message.
      this.cfg.logger.warn({ subscription: this.cfg.name, seq }, 'bus entry marked as a batch is not one; delivered as it is');
      return [this.toBusMessage(m, seq)];
    }
    const subject = m.subject.slice(this.cfg.prefixLength);
    let publishedAt: number | undefined;
    const at = (): number => (publishedAt ??= Number(m.timestampNanos / 1_000_000n));
    return (items as Array<[string, unknown]>).map(([id, data]) => ({
      seq, subject, data, id,
      get publishedAt() {
        return at();
      },
    }));
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
    if (!(await settlesWithin(this.done, this.cfg.closeTimeoutMs))) {
      this.cfg.logger.warn({ subscription: this.cfg.name }, 'bus subscription closed while its handler was still running');
    }
  }
}

/** Permanent errors are thrown at once; anything else is retried until the deadline. */
function isRetryable(err: unknown): boolean {
  if (err instanceof InvalidArgumentError || err instanceof InvalidSubjectError) return false;
  if (err instanceof PermissionViolationError || err instanceof AuthorizationError) return false;
  // 4xx from JetStream: the request itself is wrong (message too large, bad config)…
  // except "not found", which a recreated stream cures.
  if (err instanceof JetStreamApiError && err.status >= 400 && err.status < 500 && err.status !== 404) return false;
  return true;
}

function isNoResponders(err: unknown): boolean {
  const e = err as { name?: string; message?: string; cause?: unknown } | undefined;
  if (!e) return false;
  if (e.name === 'JetStreamNotEnabled' || /no responders/i.test(e.message ?? '')) return true;
  return e.cause !== undefined && e.cause !== err && isNoResponders(e.cause);
}

/** Builds the NATS authenticator from the resolved credential; the value is never logged. */
export function authenticatorFor(credentials: string): Authenticator {
  const enc = new TextEncoder();
  const v = credentials.trim();
  if (v.includes('-----BEGIN NATS USER JWT-----')) return credsAuthenticator(enc.encode(v));
  if (/^SU[A-Z2-7]{56}$/.test(v)) return nkeyAuthenticator(enc.encode(v));
  const colon = v.indexOf(':');
  if (colon > 0) return usernamePasswordAuthenticator(v.slice(0, colon), v.slice(colon + 1));
  return tokenAuthenticator(v);
}

/** An error as a loggable object, never with values that might carry credentials. */
function errInfo(err: unknown): { name: string; message: string } {
  if (err instanceof Error) return { name: err.name, message: err.message };
  return { name: 'Error', message: String(err) };
}

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/** JetStream's code for subjects that another stream on the server already captures. */
const SUBJECTS_OVERLAP = 10065;

/** Why the stream could not be made; an overlap says what to change in the config. */
function streamError(what: string, err: unknown): MandateError {
  const overlap = (err instanceof JetStreamApiError && err.code === SUBJECTS_OVERLAP) || /overlap/i.test(errInfo(err).message);
  return new MandateError(
    'ERR_BUS_STREAM',
    overlap
      ? `${what}: another stream on this NATS server captures these subjects (another deployment?); give each deployment its own bus.stream, and leave bus.subject_prefix unset or different`
      : `${what}: ${errInfo(err).message}`,
    { cause: err },
  );
}
