import { z } from 'zod';
import { OAuthError, readJson, sendJson, type RequestContext } from '../core/index.js';
import { DELIVERY_POLL } from './set.js';
import { parse, type StreamAccess } from './ssf-request.js';
import { configOf } from './ssf-stream-config.js';
import type { TransmitterDeps } from './transmitter.js';

/**
 * Poll delivery (RFC 8936): a receiver asks for its stream's queued SETs, acknowledging what it
 * took; a long poll waits for the next one.
 */

const MAX_POLL_EVENTS = 1000;
const DEFAULT_POLL_EVENTS = 100;

const pollSchema = z.object({
  ack: z.array(z.string().min(1).max(500)).max(MAX_POLL_EVENTS).optional(),
  setErrs: z.record(z.string().min(1).max(500), z.object({ err: z.string().max(100), description: z.string().max(1000).optional() })).optional(),
  maxEvents: z.number().int().min(0).optional(),
  returnImmediately: z.boolean().optional(),
});

export class PollDelivery {
  /** Long polls waiting for a stream's next event (this instance). */
  readonly waiters = new Map<string, Set<() => void>>();
  private stopped = false;

  constructor(
    private readonly d: Pick<TransmitterDeps, 'store' | 'clock' | 'config' | 'maxBodyBytes'>,
    private readonly access: StreamAccess,
  ) {}

  /** Answers every waiting long poll now, and every later one without waiting. */
  stop(): void {
    this.stopped = true;
    for (const set of this.waiters.values()) for (const w of set) w();
  }

  /** A SET was queued on the stream: its long polls on this instance look again. */
  wake(streamId: string): void {
    for (const w of [...(this.waiters.get(streamId) ?? [])]) w();
  }

  /**
   * RFC 8936 §2.4 poll: settles `ack` and `setErrs`, then answers up to `maxEvents` SETs in
   * `sets` (jti → SET) with `moreAvailable`. Without `returnImmediately`, waits up to
   * transmitter.poll_max_wait for a first event. A SET handed out and not acknowledged is handed
   * out again after poll_redelivery; it stays queued until acknowledged.
   */
  async poll(ctx: RequestContext): Promise<void> {
    const c = await this.access.caller(ctx.req);
    const s = await this.access.ownStream(c, ctx.params.stream_id);
    if (configOf(s).delivery.method !== DELIVERY_POLL) throw new OAuthError('invalid_request', 'this stream is delivered by push, not poll');
    const body = parse(pollSchema, await readJson(ctx.req, this.d.maxBodyBytes));
    if (body.ack?.length) await this.d.store.settleSsfEvents(s.id, body.ack, { status: 'acked' });
    for (const [jti, e] of Object.entries(body.setErrs ?? {})) {
      await this.d.store.settleSsfEvents(s.id, [jti], { status: 'error', lastError: `${e.err}: ${e.description ?? ''}`.slice(0, 500) });
    }
    const max = Math.min(body.maxEvents ?? DEFAULT_POLL_EVENTS, MAX_POLL_EVENTS);
    if (max === 0) return sendJson(ctx.res, 200, { sets: {} });
    const deadline = this.d.clock.now() + (body.returnImmediately ? 0 : this.d.config.poll_max_wait * 1000);
    let gone = false;
    ctx.res.once('close', () => {
      gone = true;
    });
    for (let round = 0; ; round++) {
      // A long poll outlives the check made when it began: the caller's credential is read again
      // on every round, so a replaced stream credential or a revoked admin credential gets
      // nothing more (a 401) within a second.
      if (round > 0) await this.access.caller(ctx.req);
      const fresh = await this.d.store.getSsfStream(s.id);
      // A paused stream holds its events (SSF 1.0 "Stream Status"): nothing is handed out.
      const due = fresh?.status === 'enabled' ? await this.d.store.dueSsfEvents({ streamId: s.id, now: this.d.clock.now(), limit: max + 1 }) : [];
      const sets: Record<string, string> = {};
      const leaseUntil = this.d.clock.now() + this.d.config.poll_redelivery * 1000;
      for (const e of due.slice(0, max)) if (await this.d.store.claimSsfEvent(e.id, e.nextAttemptAt, leaseUntil)) sets[e.jti] = e.setJwt;
      const remaining = deadline - this.d.clock.now();
      if (Object.keys(sets).length > 0 || remaining <= 0 || this.stopped || gone) {
        return sendJson(ctx.res, 200, { sets, moreAvailable: due.length > max });
      }
      // Wake on a local enqueue, or re-read after at most 1 s (another instance may have queued).
      await this.waitFor(s.id, Math.min(remaining, 1000));
    }
  }

  private waitFor(streamId: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const set = this.waiters.get(streamId) ?? new Set();
      this.waiters.set(streamId, set);
      const done = () => {
        clearTimeout(t);
        set.delete(done);
        if (set.size === 0) this.waiters.delete(streamId);
        resolve();
      };
      const t = setTimeout(done, ms);
      set.add(done);
    });
  }
}
