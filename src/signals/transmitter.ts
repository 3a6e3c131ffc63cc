import {
  sendJson,
  type AuditSink, type Bus, type Clock, type Logger, type MandateConfig, type OutboundGuard, type Router, type Subscription,
} from '../core/index.js';
import type { AdminAuth } from '../admin/index.js';
import type { IssuedTokenLookup } from '../enforcement/index.js';
import type { Kek } from '../keys/index.js';
import type { SignalsStore } from './ports.js';
import { DELIVERY_POLL, DELIVERY_PUSH } from './set.js';
import { PollDelivery } from './delivery-poll.js';
import { PushDelivery } from './delivery-push.js';
import { SetQueue, type EmitInput } from './set-queue.js';
import { EventSources } from './ssf-event-sources.js';
import { StreamAccess } from './ssf-request.js';
import { StreamConfigs } from './ssf-stream-config.js';
import { StreamApi } from './ssf-streams.js';
import { StreamCredentials } from './stream-credentials.js';

/**
 * The SSF transmitter (OpenID Shared Signals Framework 1.0): configuration metadata, the stream
 * management API, and SET delivery by push (RFC 8935) and poll (RFC 8936). This file wires the
 * parts together:
 *
 *   ssf-event-sources.ts  bus events (revocation, kill, restriction) → CAEP / RISC events
 *   set-queue.ts          which streams take an event; one signed SET per stream, queued
 *   delivery-push.ts      the push loop, retries and dead letters
 *   delivery-poll.ts      the poll endpoint and its long polls
 *   ssf-streams.ts        the stream management API (streams, status, subjects, verification)
 *   ssf-stream-config.ts  a stream's configuration: input, storage, push URL checks
 *   ssf-request.ts        who is calling, and which stream is theirs
 *
 * Who may call (RFC 6750 bearer): an admin credential of role `admin` creates streams and
 * manages every stream; each stream has its own credential (`mds.…`, see stream-credentials.ts),
 * issued with the stream and shown once, which its receiver presents to poll and manage that
 * stream only. A receiver holds no console role; viewer and approver credentials are refused
 * here. Events leave only as signed SETs, to the stream's receiver.
 *
 * Queued SETs are rows in `ssf_events`, so nothing is lost across a restart; several instances
 * share the queue (a SET's jti is derived from the event it reports, so every instance that hears
 * the bus event queues it once, and a compare-and-set claim lets one instance push it).
 */

export type TransmitterConfig = MandateConfig['signals']['transmitter'];

/** The signer (the broker's KeyManager): RFC 7515 compact JWS with the current signing key. */
export interface SetSigner {
  sign(payload: Record<string, unknown>, header: { typ: string }): Promise<string>;
}

export interface TransmitterDeps {
  store: SignalsStore & IssuedTokenLookup;
  signer: SetSigner;
  /**
   * Encrypts at rest what a receiver hands us to present back (its push `authorization_header`):
   * the KEK (AES-256-GCM, the stream id as AAD), so a database reader does not get the receiver's
   * credential.
   */
  secrets: Pick<Kek, 'seal' | 'open'>;
  adminAuth: Pick<AdminAuth, 'authenticate'>;
  bus: Bus;
  audit: AuditSink;
  clock: Clock;
  logger: Logger;
  issuer: () => string;
  config: TransmitterConfig;
  maxBodyBytes: number;
  /**
   * The guard every push goes through (src/core/outbound.ts): a receiver chooses the push URL, so
   * it must not reach Mandate's own network. Checked when a stream is configured and on every push.
   */
  outbound: OutboundGuard;
  /** How often the push loop looks for due SETs (default 1 s; SETs are also pushed as soon as they are queued). */
  tickMs?: number;
}

export class SsfTransmitter {
  private readonly subs: Subscription[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly access: StreamAccess;
  private readonly queue: SetQueue;
  private readonly push: PushDelivery;
  private readonly poll: PollDelivery;
  private readonly streams: StreamApi;
  private readonly sources: EventSources;
  /** Long polls waiting for a stream's next event (this instance). */
  readonly waiters: ReadonlyMap<string, ReadonlySet<() => void>>;

  constructor(private readonly d: TransmitterDeps) {
    this.access = new StreamAccess(d.store, d.adminAuth, new StreamCredentials(d.store, d.clock));
    this.push = new PushDelivery(d);
    this.poll = new PollDelivery(d, this.access);
    // A queued SET goes out at once: pushed, or handed to the long polls waiting for it.
    this.queue = new SetQueue(d, (s, push) => (push ? this.push.kick() : this.poll.wake(s.id)));
    this.streams = new StreamApi(d, this.access, new StreamConfigs(d), this.queue, () => this.push.kick());
    this.sources = new EventSources(d, this.queue);
    this.waiters = this.poll.waiters;
  }

  // ------------------------------------------------------------------ lifecycle

  async start(): Promise<void> {
    this.subs.push(...(await this.sources.subscribe()));
    this.timer = setInterval(() => this.push.kick(), this.d.tickMs ?? 1000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.push.stop();
    if (this.timer) clearInterval(this.timer);
    await Promise.all(this.subs.map((s) => s.close()));
    this.poll.stop();
    await this.push.idle();
  }

  // ------------------------------------------------------------------ HTTP

  metadata(): Record<string, unknown> {
    const iss = this.d.issuer();
    // SSF 1.0 "Transmitter Configuration Metadata".
    return {
      spec_version: '1_0',
      issuer: iss,
      jwks_uri: `${iss}/oauth/jwks`,
      delivery_methods_supported: [DELIVERY_PUSH, DELIVERY_POLL],
      configuration_endpoint: `${iss}/ssf/streams`,
      status_endpoint: `${iss}/ssf/status`,
      add_subject_endpoint: `${iss}/ssf/subjects:add`,
      remove_subject_endpoint: `${iss}/ssf/subjects:remove`,
      verification_endpoint: `${iss}/ssf/verify`,
      // RFC 6750 bearer: the stream's own credential, or an admin credential (see the class comment).
      authorization_schemes: [{ spec_urn: 'urn:ietf:rfc:6750' }],
      // A stream without subjects receives events about every NHI.
      default_subjects: 'ALL',
    };
  }

  mount(router: Router): void {
    const api = this.streams;
    router.get('/.well-known/ssf-configuration', (ctx) => sendJson(ctx.res, 200, this.metadata(), { 'cache-control': 'public, max-age=300' }));
    router.add('POST', '/ssf/streams', (ctx) => api.createStream(ctx));
    router.add('GET', '/ssf/streams', (ctx) => api.readStreams(ctx));
    router.add('PATCH', '/ssf/streams', (ctx) => api.updateStream(ctx, 'patch'));
    router.add('PUT', '/ssf/streams', (ctx) => api.updateStream(ctx, 'put'));
    router.add('DELETE', '/ssf/streams', (ctx) => api.deleteStream(ctx));
    router.add('GET', '/ssf/status', (ctx) => api.readStatus(ctx));
    router.add('POST', '/ssf/status', (ctx) => api.updateStatus(ctx));
    router.add('POST', '/ssf/subjects:add', (ctx) => api.subjects(ctx, 'add'));
    router.add('POST', '/ssf/subjects:remove', (ctx) => api.subjects(ctx, 'remove'));
    router.add('POST', '/ssf/verify', (ctx) => api.verify(ctx));
    router.add('POST', '/ssf/poll/:stream_id', (ctx) => this.poll.poll(ctx));
  }

  /**
   * Replaces a stream's credential (the previous one stops working on every instance at once)
   * and returns the new one, shown once.
   */
  rotateCredential(streamId: string): Promise<string> {
    return this.access.rotateCredential(streamId);
  }

  // ------------------------------------------------------------------ events and delivery

  /** Queues a SET on every stream that should carry it (see SetQueue.emit); how many took it. */
  emit(nhiId: string | null, e: EmitInput): Promise<number> {
    return this.queue.emit(nhiId, e);
  }

  /** Runs the push loop now (coalesced: one run at a time, one more if asked while running). */
  kick(): void {
    this.push.kick();
  }

  /** Pushes every due SET of every enabled push stream. Returns how many attempts were made. */
  deliverDue(): Promise<number> {
    return this.push.deliverDue();
  }

  /** Puts a dead letter back in the queue for another round of attempts (admin API). */
  retry(eventId: string): Promise<boolean> {
    return this.push.retry(eventId);
  }
}
