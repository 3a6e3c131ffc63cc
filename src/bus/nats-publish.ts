import { randomUUID } from 'node:crypto';
import { ClosedConnectionError, type NatsConnection } from '@nats-io/transport-node';
import { MandateError, UnavailableError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { AckInbox } from './nats-acks.js';
import { packBatch } from './nats-batch.js';
import type { NatsLink } from './nats-connection.js';
import { errInfo, isNoResponders, isRetryable } from './nats-errors.js';
import type { NatsStream } from './nats-stream.js';
import { assertSubject, backoffMs, encodeData, sleep } from './util.js';

export interface NatsPublisherDeps {
  link: NatsLink;
  acks: AckInbox;
  stream: Pick<NatsStream, 'maybeEnsure'>;
  /** The connection, or UnavailableError when the bus is closed or not started. */
  ready(): NatsConnection;
  /** The full subject on the wire. */
  wire(subject: string): string;
  publishTimeoutMs: number;
  logger: Logger;
}

/**
 * Publishing on the NATS bus: a message is done once the stream acknowledged it; until then it
 * is sent again (same `Nats-Msg-Id`, so it is stored once) across disconnects and reconnects,
 * until its timeout.
 */
export class NatsPublisher {
  constructor(private readonly d: NatsPublisherDeps) {}

  async publish(subject: string, data: unknown, opts: { id?: string; timeoutMs?: number } = {}): Promise<number> {
    assertSubject(subject);
    const nc = this.d.ready();
    const payload = encodeData(data);
    const maxPayload = nc.info?.max_payload;
    if (maxPayload !== undefined && Buffer.byteLength(payload) > maxPayload) {
      throw new MandateError('ERR_BUS_PAYLOAD_TOO_LARGE', `bus message of ${Buffer.byteLength(payload)} bytes exceeds the server's max_payload (${maxPayload})`);
    }
    return this.publishEntry(subject, payload, opts.id ?? randomUUID(), opts.timeoutMs, undefined);
  }

  /** The items as few JetStream messages as max_payload allows (see nats-batch.ts); subscribers unpack them. */
  async publishMany(subject: string, items: ReadonlyArray<{ data: unknown; id: string }>, opts: { timeoutMs?: number } = {}): Promise<void> {
    if (items.length === 0) return;
    if (items.length === 1) {
      await this.publish(subject, items[0]!.data, { id: items[0]!.id, timeoutMs: opts.timeoutMs });
      return;
    }
    assertSubject(subject);
    const nc = this.d.ready();
    const entries = packBatch(items, nc.info?.max_payload);
    await Promise.all(entries.map((e) => this.publishEntry(subject, e.payload, e.id, opts.timeoutMs, e.count)));
  }

  /** One stream entry, retried (same msg id) until acknowledged or `timeoutMs` passed; resolves with its seq. */
  private async publishEntry(subject: string, payload: string, id: string, timeoutMs: number | undefined, batch: number | undefined): Promise<number> {
    const { link, logger } = this.d;
    const nc = link.nc!;
    const deadline = Date.now() + (timeoutMs ?? this.d.publishTimeoutMs);
    let lastErr: unknown;
    // Every attempt carries the same Nats-Msg-Id, so an attempt whose ack was lost but
    // which the server did store is not stored twice: the retry's ack names the original seq.
    for (let attempt = 0; ; attempt++) {
      if (link.closed) throw new UnavailableError('the bus is closed');
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new UnavailableError(`bus publish to "${subject}" not acknowledged in time`, { cause: lastErr });
      }
      try {
        // While disconnected the client buffers the request and sends it on reconnect; a
        // short per-attempt timeout keeps us asking again rather than waiting on one inbox.
        const sent = this.d.acks.publish(nc, this.d.wire(subject), payload, id, Math.max(200, Math.min(remaining, 2_000)), batch);
        const seq = await link.unlessReconnected(sent);
        if (seq === undefined) {
          // A request buffered across a reconnect is often never answered; rather than wait
          // out its timeout, ask again now (same msg id: the server stores it at most once).
          sent.catch(() => undefined);
          logger.debug({ subject, attempt }, 'bus publish re-sent after reconnect');
          continue;
        }
        link.touch();
        return seq;
      } catch (err) {
        lastErr = err;
        if (!isRetryable(err)) throw err;
        if (err instanceof ClosedConnectionError || nc.isClosed()) throw new UnavailableError('the bus connection is closed', { cause: err });
        if (isNoResponders(err)) this.d.stream.maybeEnsure();
        if (attempt === 0) logger.warn({ subject, err: errInfo(err) }, 'bus publish not acknowledged; retrying');
        else logger.debug({ subject, attempt, err: errInfo(err) }, 'bus publish retry');
        await sleep(Math.min(backoffMs(attempt, { initialMs: 50, maxMs: 1_000 }), Math.max(0, deadline - Date.now())));
      }
    }
  }
}
