import { createHash } from 'node:crypto';
import { NotFoundError, newId } from '../core/index.js';
import type { SsfEventRecord, SsfStreamRecord, SsfSubjectRecord } from './ports.js';
import { DELIVERY_PUSH, EVENT, SET_TYP, type SubjectId } from './set.js';
import { configOf } from './ssf-stream-config.js';
import type { TransmitterDeps } from './transmitter.js';

/**
 * The transmitter's outbox: which streams take an event, and one signed SET per stream queued
 * in `ssf_events` (push and poll deliver from there).
 */

/** One event to report: `key` names it (the SET jti derives from it), `txn` per RFC 8417 §2.2. */
export interface SetEvent {
  key: string;
  subId: SubjectId;
  events: Record<string, unknown>;
  txn: string | null;
}

/** What `emit` is given: `txn` may be a read, made only when some stream takes the event. */
export type EmitInput = Omit<SetEvent, 'txn'> & { txn: string | null | (() => Promise<string | null>) };

/** Verification and stream-updated events go to every stream whatever it requested (SSF 1.0 "Verification"). */
const ALWAYS_DELIVERED = new Set<string>([EVENT.verification, EVENT.streamUpdated]);

/** How long `emit` reuses its view of the out streams (see `outStreams`). */
const OUT_STREAMS_TTL_MS = 1000;

export class SetQueue {
  /** The out streams and their subjects, as `emit` needs them; see `outStreams`. */
  private outView: { at: number; streams: Promise<Array<{ s: SsfStreamRecord; subjects: SsfSubjectRecord[] }>> } | undefined;

  constructor(
    private readonly d: Pick<TransmitterDeps, 'store' | 'signer' | 'audit' | 'clock' | 'issuer' | 'config'>,
    /** A SET was queued on `s`: push it, or wake the long polls waiting on it. */
    private readonly queued: (s: SsfStreamRecord, push: boolean) => void,
  ) {}

  /** Drops the view of the out streams: a stream or its subjects changed through this instance. */
  forget(): void {
    this.outView = undefined;
  }

  /**
   * Queues a SET on every stream that should carry it: not disabled, the event type delivered,
   * and either no subjects (default_subjects ALL) or a subject naming this NHI. `txn` is read
   * (a store read) only when some stream takes the event.
   */
  async emit(nhiId: string | null, e: EmitInput): Promise<number> {
    if (!this.d.config.enabled) return 0;
    const type = Object.keys(e.events)[0]!;
    let n = 0;
    let ev: SetEvent | undefined;
    for (const { s, subjects } of await this.outStreams()) {
      if (s.status === 'disabled') continue;
      const c = configOf(s);
      if (!ALWAYS_DELIVERED.has(type) && !c.events_requested.includes(type)) continue;
      if (subjects.length > 0 && (nhiId === null || !subjects.some((x) => x.nhiId === nhiId))) continue;
      ev ??= { ...e, txn: typeof e.txn === 'function' ? await e.txn() : e.txn };
      try {
        if (await this.queue(s, ev)) n++;
      } catch (err) {
        // Deleted by another instance since the view was read: nothing to queue for it.
        if (!(err instanceof NotFoundError)) throw err;
      }
    }
    return n;
  }

  /**
   * The out streams with their subjects, read from the store at most every
   * OUT_STREAMS_TTL_MS rather than for every bus event (that read was one round trip per
   * revocation, the largest share of a signals instance's queries at high SET rates). A change
   * through this instance's API drops the view at once. A change made through another instance
   * is seen within the TTL; that instance's own transmitter, which hears the same events, has
   * it at once, and both derive the same SET jti per (event, stream), so a new stream still
   * gets every event after its creation.
   */
  private outStreams(): Promise<Array<{ s: SsfStreamRecord; subjects: SsfSubjectRecord[] }>> {
    const now = this.d.clock.now();
    if (this.outView && now - this.outView.at < OUT_STREAMS_TTL_MS) return this.outView.streams;
    const streams = (async () => {
      const list = await this.d.store.listSsfStreams({ direction: 'out' });
      return Promise.all(list.map(async (s) => ({ s, subjects: await this.d.store.listSsfSubjects(s.id) })));
    })();
    const view = { at: now, streams };
    this.outView = view;
    streams.catch(() => {
      if (this.outView === view) this.outView = undefined;
    });
    return streams;
  }

  /** Signs and stores one SET for one stream (RFC 8417 §2.2); false when it was already queued. */
  async queue(s: SsfStreamRecord, ev: SetEvent): Promise<boolean> {
    const c = configOf(s);
    const now = this.d.clock.now();
    // Deterministic per (event, stream): every instance hearing the same bus event derives the same jti.
    const jti = createHash('sha256').update(`${ev.key}\n${s.id}`).digest('base64url');
    const claims: Record<string, unknown> = {
      iss: this.d.issuer(), aud: c.aud, iat: Math.floor(now / 1000), jti, sub_id: ev.subId, events: ev.events,
      ...(ev.txn ? { txn: ev.txn } : {}),
    };
    const setJwt = await this.d.signer.sign(claims, { typ: SET_TYP });
    const push = c.delivery.method === DELIVERY_PUSH;
    const rec: SsfEventRecord = {
      id: newId('sev'), streamId: s.id, jti, setJwt, status: 'queued', attempts: 0, nextAttemptAt: push ? now : null, lastError: null, createdAt: now,
    };
    const inserted = await this.d.store.enqueueSsfEvent(rec);
    if (!inserted) return false;
    this.d.audit.record({ type: 'ssf.set_queued', actor: 'system', subject: s.id, data: { jti, event: Object.keys(ev.events)[0], txn: ev.txn } });
    this.queued(s, push);
    return true;
  }
}
