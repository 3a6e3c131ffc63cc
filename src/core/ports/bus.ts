/**
 * The bus port: how capabilities hear about changes sooner than the store would tell them.
 * The store is the truth; the bus makes changes arrive sooner. Implementations: in-process
 * (`bus/memory.ts`) and NATS JetStream (`bus/nats.ts`), one test suite over both.
 *
 * Subjects are relative and dotted (`token.issued`, `revocation.added`); an implementation
 * may prefix them. Filters use NATS wildcards: `*` one token, `>` the rest.
 */
export interface BusMessage<T = unknown> {
  /**
   * Position in the stream, starting at 1; increasing from one stream entry to the next. The
   * items of one `publishMany` may be one entry: they then share its seq (in their order), and a
   * subscriber completes that seq after the last of them.
   */
  readonly seq: number;
  readonly subject: string;
  readonly data: T;
  /** Epoch ms when the bus accepted it. */
  readonly publishedAt: number;
  /** Publisher-chosen id; a retried publish with the same id is stored once. */
  readonly id: string;
}

export type BusHandler = (msg: BusMessage) => void | Promise<void>;

export interface SubscribeOptions {
  /** Deliver from this sequence (inclusive). Default: only messages published after subscribing. */
  fromSeq?: number;
  /** For logs and metrics. */
  name?: string;
}

export interface Subscription {
  /** The sequence of the last message handed to the handler and completed (0 if none). */
  readonly lastSeq: number;
  close(): Promise<void>;
}

export interface BusHealth {
  connected: boolean;
  /** Epoch ms of the last confirmed contact with the bus (now, for the in-process bus). */
  lastContactAt: number;
}

export interface Bus {
  readonly driver: 'memory' | 'nats';
  /** Connects; for NATS also creates the stream when missing. */
  start(): Promise<void>;
  /**
   * Resolves with the message's sequence once the bus holds it durably. While the bus is
   * unreachable it keeps retrying (same id, so no duplicate) until `timeoutMs` passes.
   */
  publish(subject: string, data: unknown, opts?: { id?: string; timeoutMs?: number }): Promise<number>;
  /**
   * Several messages of one subject, each with its own id, delivered to every subscriber as
   * separate messages in this order, exactly as the same `publish` calls in turn would be;
   * resolves once the bus holds them all durably. An implementation may store them as one
   * entry (NATS: one JetStream message per max_payload): one write, one ack and one delivery per
   * subscriber instead of one per message, which is what a group commit of revocations costs.
   * Retried with the same ids, they are stored once.
   */
  publishMany(subject: string, items: ReadonlyArray<{ data: unknown; id: string }>, opts?: { timeoutMs?: number }): Promise<void>;
  /**
   * At-least-once, in order: the handler is awaited; if it throws, the same message is
   * offered again after a backoff. A subscriber that was disconnected resumes after
   * `lastSeq` without losing a message.
   */
  subscribe(filter: string, handler: BusHandler, opts?: SubscribeOptions): Promise<Subscription>;
  /** The sequence of the newest message (0 when empty). */
  lastSeq(): Promise<number>;
  health(): BusHealth;
  close(): Promise<void>;
}
