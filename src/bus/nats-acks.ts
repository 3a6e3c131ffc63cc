import { createInbox, headers, ClosedConnectionError, NoRespondersError, TimeoutError, type Msg, type NatsConnection } from '@nats-io/transport-node';
import { JetStreamApiError } from '@nats-io/jetstream';
import { BATCH_HEADER } from './nats-batch.js';

/** How often publish attempts waiting for their JetStream ack are checked against their deadline. */
const ACK_SWEEP_MS = 50;

/** A JetStream publish waiting for its ack on the bus's ack inbox. */
interface PendingAck {
  subject: string;
  deadline: number;
  resolve: (seq: number) => void;
  reject: (err: unknown) => void;
}

/**
 * JetStream publish attempts and their acks: every publish names a reply subject on the bus's
 * one ack inbox (`<inbox>.<token>`), and one subscription settles them all.
 */
export class AckInbox {
  private inbox = '';
  private token = 0;
  private readonly acks = new Map<string, PendingAck>();
  private sweep: NodeJS.Timeout | undefined;

  /** Listens for acks on `nc`; when it closes, what still waits fails at once. */
  listen(nc: NatsConnection): void {
    this.inbox = createInbox();
    nc.subscribe(`${this.inbox}.*`, { callback: (err, m) => { if (!err) this.onAck(m); } });
    // A closed connection answers nothing more: what still waits fails now (the caller's retry
    // loop then gives up with UnavailableError) rather than at its deadline.
    void nc.closed().then(() => this.failAll(() => new ClosedConnectionError()));
  }

  /**
   * One JetStream publish attempt (what `js.publish(subject, payload, { msgID })` does): the
   * message goes out with `Nats-Msg-Id` and a reply subject on the ack inbox, and the promise
   * settles with the stream's ack (its seq), the stream's error (JetStreamApiError), no
   * responders, or a TimeoutError after `timeoutMs`. The client's request path costs about three
   * times as much CPU per publish (a timer, a promise race, an inbox entry and an ack parser per
   * request), paid on every revocation, signal and proxied call.
   */
  publish(nc: NatsConnection, subject: string, payload: string, id: string, timeoutMs: number, batch?: number): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      const token = (++this.token).toString(36);
      const h = headers();
      h.set('Nats-Msg-Id', id);
      if (batch !== undefined) h.set(BATCH_HEADER, String(batch));
      this.acks.set(token, { subject, deadline: Date.now() + timeoutMs, resolve, reject });
      this.sweep ??= setInterval(() => this.sweepAcks(), ACK_SWEEP_MS).unref();
      try {
        nc.publish(subject, payload, { reply: `${this.inbox}.${token}`, headers: h });
      } catch (err) {
        this.acks.delete(token);
        reject(err);
      }
    });
  }

  /** A reply on the ack inbox: the stream's ack (`{stream, seq, duplicate?}`), its error, or no responders (503). */
  private onAck(m: Msg): void {
    const token = m.subject.slice(this.inbox.length + 1);
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
    if (this.acks.size === 0 && this.sweep) {
      clearInterval(this.sweep);
      this.sweep = undefined;
    }
  }

  private failAll(err: () => unknown): void {
    const waiting = [...this.acks.values()];
    this.acks.clear();
    for (const p of waiting) p.reject(err());
  }
}
