import { OutboundError } from '../core/index.js';
import type { SsfEventRecord, SsfStreamRecord } from './ports.js';
import { DELIVERY_PUSH, SET_MEDIA_TYPE } from './set.js';
import { configOf, pushAuthAad, type StoredConfig } from './ssf-stream-config.js';
import type { TransmitterDeps } from './transmitter.js';

/**
 * Push delivery (RFC 8935): queued SETs POSTed to each push stream's receiver, through the
 * outbound guard, retried with backoff and moved to the dead letters when they keep failing.
 * A compare-and-set claim on each SET lets one of several instances push it.
 */

/** Largest push answer read (RFC 8935 §2.2: a 202 needs no body; §2.3: an error is a small JSON object). */
const MAX_PUSH_ANSWER_BYTES = 16 * 1024;
/** RFC 8935 §2.3 / RFC 8936 error codes (the IANA "Security Event Token Error Codes" registry): the only receiver text recorded. */
const PUSH_ERROR_CODES = new Set(['invalid_request', 'invalid_key', 'invalid_issuer', 'invalid_audience', 'authentication_failed', 'access_denied']);

export class PushDelivery {
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;

  constructor(private readonly d: Pick<TransmitterDeps, 'store' | 'secrets' | 'audit' | 'clock' | 'logger' | 'config' | 'outbound'>) {}

  /** No more runs; the one under way, if any, finishes (see `idle`). */
  stop(): void {
    this.stopped = true;
  }

  /** The run under way, if any. */
  idle(): Promise<void> | undefined {
    return this.running;
  }

  /** Runs the push loop now (coalesced: one run at a time, one more if asked while running). */
  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.deliverDue()
      .then(() => undefined, (err: unknown) => this.d.logger.warn({ err }, 'ssf push loop failed'))
      .finally(() => {
        this.running = undefined;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  /** Pushes every due SET of every enabled push stream. Returns how many attempts were made. */
  async deliverDue(): Promise<number> {
    let attempts = 0;
    for (const s of await this.d.store.listSsfStreams({ direction: 'out' })) {
      const c = configOf(s);
      if (s.status !== 'enabled' || c.delivery.method !== DELIVERY_PUSH) continue;
      const due = await this.d.store.dueSsfEvents({ streamId: s.id, now: this.d.clock.now(), limit: 100 });
      await Promise.all(due.map(async (e) => {
        const lease = this.d.clock.now() + this.d.config.push_timeout * 1000 + 5000;
        if (!(await this.d.store.claimSsfEvent(e.id, e.nextAttemptAt, lease))) return;
        attempts++;
        await this.pushOne(s, c, e);
      }));
    }
    return attempts;
  }

  /** Puts a dead letter back in the queue for another round of attempts (admin API). */
  async retry(eventId: string): Promise<boolean> {
    const e = await this.d.store.getSsfEvent(eventId);
    if (!e || e.status !== 'dead') return false;
    await this.d.store.updateSsfEvent(e.id, { status: 'queued', attempts: 0, nextAttemptAt: this.d.clock.now(), lastError: e.lastError });
    this.kick();
    return true;
  }

  /** The receiver's push credential as an Authorization header (decrypted only here, for the request). */
  private pushAuthorization(streamId: string, c: StoredConfig): { authorization?: string } {
    if (c.delivery.authorization_header_sealed) {
      return { authorization: this.d.secrets.open(c.delivery.authorization_header_sealed, pushAuthAad(streamId), `the push authorization of stream ${streamId}`).toString('utf8') };
    }
    return c.delivery.authorization_header ? { authorization: c.delivery.authorization_header } : {};
  }

  private async pushOne(s: SsfStreamRecord, c: StoredConfig, e: SsfEventRecord): Promise<void> {
    const attempt = e.attempts + 1;
    let error: string | undefined;
    let permanent = false;
    try {
      // Through the outbound guard: the receiver chose this URL, so its address is checked (and
      // the connection pinned to it) on every push; no redirect is followed.
      const res = await this.d.outbound.request(c.delivery.endpoint_url!, {
        method: 'POST',
        headers: { 'content-type': SET_MEDIA_TYPE, accept: 'application/json', ...this.pushAuthorization(s.id, c) },
        body: e.setJwt,
        maxBytes: MAX_PUSH_ANSWER_BYTES,
        timeoutMs: this.d.config.push_timeout * 1000,
      });
      // RFC 8935 §2.2: 202 Accepted means the receiver took the SET.
      if (res.status === 202) {
        await this.d.store.updateSsfEvent(e.id, { status: 'delivered', attempts: attempt, nextAttemptAt: null, lastError: null });
        this.d.audit.record({ type: 'ssf.set_delivered', actor: 'system', subject: s.id, data: { jti: e.jti, attempts: attempt } });
        return;
      }
      // In our words only: the status, and a registered error code (never the receiver's text,
      // which the admin API would otherwise hand to anyone who can read dead letters).
      const code = res.status === 400 ? pushErrorCode(res.body) : undefined;
      error = `the push endpoint answered HTTP ${res.status}${code ? ` (err ${code})` : ''}`;
      // RFC 8935 §2.3: a 400 with an error code means this SET was refused; sending it again would not help.
      permanent = res.status === 400;
    } catch (err) {
      error = err instanceof OutboundError ? `the push failed: ${err.message}` : 'the push failed: network error';
      if (err instanceof OutboundError && err.reason === 'forbidden_address') {
        this.d.logger.warn({ stream_id: s.id, host: err.host, address: err.address, kind: err.kind }, 'SSF push endpoint refused by the outbound guard');
      }
    }
    if (permanent || attempt >= this.d.config.push_max_attempts) {
      await this.d.store.updateSsfEvent(e.id, { status: 'dead', attempts: attempt, nextAttemptAt: null, lastError: error ?? null });
      this.d.audit.record({ type: 'ssf.set_dead_letter', actor: 'system', subject: s.id, data: { jti: e.jti, attempts: attempt, error } });
      this.d.logger.warn({ stream_id: s.id, jti: e.jti, attempts: attempt, error }, 'SET moved to the dead letters');
      return;
    }
    const backoff = Math.min(this.d.config.push_initial_backoff * 1000 * 2 ** (attempt - 1), this.d.config.push_max_backoff * 1000);
    await this.d.store.updateSsfEvent(e.id, { status: 'queued', attempts: attempt, nextAttemptAt: this.d.clock.now() + backoff, lastError: error ?? null });
    const t = setTimeout(() => this.kick(), backoff + 5);
    t.unref();
  }
}

/** The RFC 8935 §2.3 `err` of a push error answer, when it is a registered code (nothing else of the answer is kept). */
function pushErrorCode(body: Buffer): string | undefined {
  try {
    const j = JSON.parse(body.toString('utf8')) as { err?: unknown };
    return typeof j.err === 'string' && PUSH_ERROR_CODES.has(j.err) ? j.err : undefined;
  } catch {
    return undefined; // not JSON
  }
}
