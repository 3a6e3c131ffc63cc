import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { z } from 'zod';
import {
  NotFoundError, OAuthError, OutboundError, ValidationError, newId, readJson, sendJson, stripQuery,
  type AuditSink, type Bus, type Clock, type Logger, type MandateConfig, type OutboundGuard, type RequestContext, type Router, type Subscription,
} from '../core/index.js';
import type { AdminAuth, AdminPrincipal } from '../admin/index.js';
import type { IssuedTokenLookup, KillSwitchRecord, RestrictionRecord, RevocationRecord } from '../enforcement/index.js';
import type { Kek } from '../keys/index.js';
import type { SignalsStore, SsfEventRecord, SsfStreamRecord, SsfStreamStatus, SsfSubjectRecord } from './ports.js';
import { KILL_REASON_PREFIX } from './signals.js';
import { StreamCredentials, type StreamCaller } from './stream-credentials.js';
import {
  DELIVERY_POLL, DELIVERY_PUSH, EVENT, EVENTS_SUPPORTED, SET_MEDIA_TYPE, SET_TYP, canonicalJson, subjectProblem, type SubjectId,
} from './set.js';

/**
 * The SSF transmitter (OpenID Shared Signals Framework 1.0): configuration metadata, the stream
 * management API, and SET delivery by push (RFC 8935) and poll (RFC 8936).
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

/** Stream configuration as stored (SSF 1.0 "Stream Configuration"; read-only members are computed). */
interface StoredConfig {
  iss: string;
  aud: string | string[];
  events_requested: string[];
  /**
   * `authorization_header_sealed`: the receiver's push credential under the KEK. A plain
   * `authorization_header` is only read (rows written before it was sealed) and sealed on the next update.
   */
  delivery: { method: string; endpoint_url?: string; authorization_header?: string; authorization_header_sealed?: string };
  description?: string;
}

/** AAD of a stream's sealed push credential: a ciphertext copied onto another stream does not open there. */
const pushAuthAad = (streamId: string): string => `mandate/ssf-push-authorization/${streamId}`;

/** Largest push answer read (RFC 8935 §2.2: a 202 needs no body; §2.3: an error is a small JSON object). */
const MAX_PUSH_ANSWER_BYTES = 16 * 1024;
/** RFC 8935 §2.3 / RFC 8936 error codes (the IANA "Security Event Token Error Codes" registry): the only receiver text recorded. */
const PUSH_ERROR_CODES = new Set(['invalid_request', 'invalid_key', 'invalid_issuer', 'invalid_audience', 'authentication_failed', 'access_denied']);
const MAX_POLL_EVENTS = 1000;
const DEFAULT_POLL_EVENTS = 100;
/** Verification and stream-updated events go to every stream whatever it requested (SSF 1.0 "Verification"). */
const ALWAYS_DELIVERED = new Set<string>([EVENT.verification, EVENT.streamUpdated]);

const deliverySchema = z.object({
  method: z.enum([DELIVERY_PUSH, DELIVERY_POLL]),
  endpoint_url: z.string().max(2000).optional(),
  authorization_header: z.string().max(4000).optional(),
});
/** Receiver-supplied members (SSF 1.0: events_requested, delivery, description; `aud` as an extension). */
const configInput = z.object({
  events_requested: z.array(z.string().max(500)).max(100).optional(),
  delivery: deliverySchema.optional(),
  description: z.string().max(500).optional(),
  aud: z.union([z.string().min(1).max(500), z.array(z.string().min(1).max(500)).min(1).max(10)]).optional(),
});
const withId = z.object({ stream_id: z.string().min(1).max(200) });

const pollSchema = z.object({
  ack: z.array(z.string().min(1).max(500)).max(MAX_POLL_EVENTS).optional(),
  setErrs: z.record(z.string().min(1).max(500), z.object({ err: z.string().max(100), description: z.string().max(1000).optional() })).optional(),
  maxEvents: z.number().int().min(0).optional(),
  returnImmediately: z.boolean().optional(),
});

/** Who called: an admin-role credential (every stream) or one stream's own credential (that stream). */
type Caller = { kind: 'admin'; principal: AdminPrincipal } | StreamCaller;

/** `admin:<credential id>` or `stream:<stream id>`, for audit records. */
const actorOf = (c: Caller): string => (c.kind === 'admin' ? `admin:${c.principal.id}` : `stream:${c.streamId}`);

/** How long `emit` reuses its view of the out streams (see `outStreams`). */
const OUT_STREAMS_TTL_MS = 1000;

export class SsfTransmitter {
  private readonly subs: Subscription[] = [];
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  /** Long polls waiting for a stream's next event (this instance). */
  private readonly waiters = new Map<string, Set<() => void>>();
  /** The out streams and their subjects, as `emit` needs them; see `outStreams`. */
  private outView: { at: number; streams: Promise<Array<{ s: SsfStreamRecord; subjects: SsfSubjectRecord[] }>> } | undefined;

  /** Each stream's own credential (see stream-credentials.ts). */
  private readonly streamCredentials: StreamCredentials;

  constructor(private readonly d: TransmitterDeps) {
    this.streamCredentials = new StreamCredentials(d.store, d.clock);
  }

  // ------------------------------------------------------------------ lifecycle

  async start(): Promise<void> {
    this.subs.push(
      await this.d.bus.subscribe('revocation.added', (m) => this.onRevocation(m.data as RevocationRecord), { name: 'ssf-transmitter-revocation' }),
      await this.d.bus.subscribe('kill.>', (m) => this.onKill(m.subject, m.data as KillSwitchRecord), { name: 'ssf-transmitter-kill' }),
      await this.d.bus.subscribe('restriction.>', (m) => this.onRestriction(m.data as RestrictionRecord), { name: 'ssf-transmitter-restriction' }),
    );
    this.timer = setInterval(() => this.kick(), this.d.tickMs ?? 1000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await Promise.all(this.subs.map((s) => s.close()));
    for (const set of this.waiters.values()) for (const w of set) w();
    await this.running;
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
    router.get('/.well-known/ssf-configuration', (ctx) => sendJson(ctx.res, 200, this.metadata(), { 'cache-control': 'public, max-age=300' }));
    router.add('POST', '/ssf/streams', (ctx) => this.createStream(ctx));
    router.add('GET', '/ssf/streams', (ctx) => this.readStreams(ctx));
    router.add('PATCH', '/ssf/streams', (ctx) => this.updateStream(ctx, 'patch'));
    router.add('PUT', '/ssf/streams', (ctx) => this.updateStream(ctx, 'put'));
    router.add('DELETE', '/ssf/streams', (ctx) => this.deleteStream(ctx));
    router.add('GET', '/ssf/status', (ctx) => this.readStatus(ctx));
    router.add('POST', '/ssf/status', (ctx) => this.updateStatus(ctx));
    router.add('POST', '/ssf/subjects:add', (ctx) => this.subjects(ctx, 'add'));
    router.add('POST', '/ssf/subjects:remove', (ctx) => this.subjects(ctx, 'remove'));
    router.add('POST', '/ssf/verify', (ctx) => this.verify(ctx));
    router.add('POST', '/ssf/poll/:stream_id', (ctx) => this.poll(ctx));
  }

  /**
   * A stream credential (`Bearer mds.…`) opens its own stream; anything else must be an admin
   * credential of role `admin`. A stream credential that fails is a 401 of its own, never
   * retried as an admin credential.
   */
  private async caller(req: IncomingMessage): Promise<Caller> {
    const header = req.headers.authorization;
    if (StreamCredentials.presented(header)) return this.streamCredentials.authenticate(header);
    const principal = await this.d.adminAuth.authenticate(header);
    if (principal.role !== 'admin') {
      throw new OAuthError('insufficient_scope', 'SSF streams are managed with an admin credential of role admin, or by a receiver with its stream\'s own credential', 403);
    }
    return { kind: 'admin', principal };
  }

  /** The caller's stream; 404 when it does not exist or is not the caller's (nothing is learned). */
  private async ownStream(c: Caller, id: string | undefined | null): Promise<SsfStreamRecord> {
    if (!id) throw new ValidationError('stream_id is required');
    const s = c.kind === 'stream' && c.streamId !== id ? undefined : await this.d.store.getSsfStream(id);
    if (!s || s.direction !== 'out') throw new NotFoundError(`no stream "${id.slice(0, 100)}"`);
    return s;
  }

  /**
   * Replaces a stream's credential (the previous one stops working on every instance at once)
   * and returns the new one, shown once: for an admin whose receiver lost it, or a stream
   * created before streams had their own.
   */
  async rotateCredential(streamId: string): Promise<string> {
    const s = await this.d.store.getSsfStream(streamId);
    if (!s || s.direction !== 'out') throw new NotFoundError(`no stream "${streamId.slice(0, 100)}"`);
    return this.streamCredentials.issue(s.id);
  }

  /** SSF 1.0 "Creating a Stream": 201 with the stream configuration. */
  private async createStream(ctx: RequestContext): Promise<void> {
    const c = await this.caller(ctx.req);
    if (c.kind !== 'admin') throw new OAuthError('insufficient_scope', 'a stream credential manages its own stream; streams are created with an admin credential', 403);
    const p = c.principal;
    const body = parse(configInput, await readJson(ctx.req, this.d.maxBodyBytes));
    const id = newId('str');
    const now = this.d.clock.now();
    const cfg = this.buildConfig(id, body, undefined, p.name);
    await this.checkPushDestination(body);
    const rec: SsfStreamRecord = { id, direction: 'out', owner: p.id, config: cfg as unknown as Record<string, unknown>, status: 'enabled', statusReason: null, createdAt: now, updatedAt: now };
    await this.d.store.createSsfStream(rec);
    const credential = await this.streamCredentials.issue(id);
    this.outView = undefined;
    this.d.audit.record({ type: 'ssf.stream_created', actor: `admin:${p.id}`, subject: id, data: { method: cfg.delivery.method, endpoint: cfg.delivery.endpoint_url ? stripQuery(cfg.delivery.endpoint_url) : null } });
    // The stream's own credential, for its receiver: in this answer only (a Mandate member of
    // the stream configuration; receivers ignore members they do not know).
    sendJson(ctx.res, 201, { ...this.streamJson(rec), stream_credential: credential });
  }

  /** SSF 1.0 "Reading a Stream's Configuration": one stream with stream_id, else every stream of the caller. */
  private async readStreams(ctx: RequestContext): Promise<void> {
    const c = await this.caller(ctx.req);
    const id = ctx.query.get('stream_id');
    if (id !== null) return sendJson(ctx.res, 200, this.streamJson(await this.ownStream(c, id)));
    const all = c.kind === 'admin'
      ? await this.d.store.listSsfStreams({ direction: 'out' })
      : [await this.d.store.getSsfStream(c.streamId)].filter((s): s is SsfStreamRecord => s !== undefined && s.direction === 'out');
    sendJson(ctx.res, 200, all.map((s) => this.streamJson(s)));
  }

  /** SSF 1.0 "Updating a Stream's Configuration" (PATCH: given members) and "Replacing" (PUT: all members). */
  private async updateStream(ctx: RequestContext, mode: 'patch' | 'put'): Promise<void> {
    const c = await this.caller(ctx.req);
    const raw = await readJson(ctx.req, this.d.maxBodyBytes);
    const { stream_id } = parse(withId, raw);
    const body = parse(configInput, raw);
    const s = await this.ownStream(c, stream_id);
    const old = s.config as unknown as StoredConfig;
    if (body.aud !== undefined && canonicalJson(body.aud) !== canonicalJson(old.aud)) throw new ValidationError('aud cannot be changed (SSF 1.0: transmitter-supplied)');
    const cfg = this.buildConfig(s.id, body, mode === 'patch' ? old : { ...old, events_requested: [], description: undefined, delivery: { method: DELIVERY_POLL } }, s.id);
    await this.checkPushDestination(body);
    const next = { ...s, config: cfg as unknown as Record<string, unknown>, updatedAt: this.d.clock.now() };
    await this.d.store.updateSsfStream(next);
    this.outView = undefined;
    this.d.audit.record({ type: 'ssf.stream_updated', actor: actorOf(c), subject: s.id, data: { mode } });
    sendJson(ctx.res, 200, this.streamJson(next));
  }

  /** SSF 1.0 "Deleting a Stream": 204. */
  private async deleteStream(ctx: RequestContext): Promise<void> {
    const c = await this.caller(ctx.req);
    const s = await this.ownStream(c, ctx.query.get('stream_id'));
    await this.d.store.deleteSsfStream(s.id);
    this.outView = undefined;
    this.d.audit.record({ type: 'ssf.stream_deleted', actor: actorOf(c), subject: s.id, data: {} });
    ctx.res.writeHead(204, { 'cache-control': 'no-store' }).end();
  }

  /** SSF 1.0 "Reading a Stream's Status". */
  private async readStatus(ctx: RequestContext): Promise<void> {
    const c = await this.caller(ctx.req);
    const s = await this.ownStream(c, ctx.query.get('stream_id'));
    sendJson(ctx.res, 200, statusJson(s));
  }

  /** SSF 1.0 "Updating a Stream's Status": enabled, paused (events held), disabled (events dropped). */
  private async updateStatus(ctx: RequestContext): Promise<void> {
    const c = await this.caller(ctx.req);
    const body = parse(withId.extend({ status: z.enum(['enabled', 'paused', 'disabled']), reason: z.string().max(500).optional() }), await readJson(ctx.req, this.d.maxBodyBytes));
    const s = await this.ownStream(c, body.stream_id);
    const next: SsfStreamRecord = { ...s, status: body.status as SsfStreamStatus, statusReason: body.reason ?? null, updatedAt: this.d.clock.now() };
    await this.d.store.updateSsfStream(next);
    this.outView = undefined;
    if (body.status === 'disabled') {
      // A disabled stream holds nothing: what was queued is dropped (kept as `error` for the record).
      const queued = await this.d.store.listSsfEvents({ streamId: s.id, status: 'queued', limit: 10_000 });
      await this.d.store.settleSsfEvents(s.id, queued.map((e) => e.jti), { status: 'error', lastError: 'stream disabled' });
    }
    this.d.audit.record({ type: 'ssf.stream_status', actor: actorOf(c), subject: s.id, data: { status: body.status, reason: body.reason ?? null } });
    if (body.status === 'enabled') this.kick();
    sendJson(ctx.res, 200, statusJson(next));
  }

  /** SSF 1.0 "Adding a Subject to a Stream" (200) and "Removing a Subject" (204). */
  private async subjects(ctx: RequestContext, op: 'add' | 'remove'): Promise<void> {
    const c = await this.caller(ctx.req);
    const body = parse(withId.extend({ subject: z.record(z.string(), z.unknown()), verified: z.boolean().optional() }), await readJson(ctx.req, this.d.maxBodyBytes));
    const s = await this.ownStream(c, body.stream_id);
    const problem = subjectProblem(body.subject);
    if (problem) throw new ValidationError(`invalid subject: ${problem}`);
    const key = canonicalJson(body.subject);
    this.outView = undefined;
    if (op === 'add') {
      await this.d.store.addSsfSubject({ streamId: s.id, key, subject: body.subject, nhiId: nhiOfSubject(body.subject as SubjectId), createdAt: this.d.clock.now() });
      this.d.audit.record({ type: 'ssf.subject_added', actor: actorOf(c), subject: s.id, data: { format: body.subject.format } });
      return sendJson(ctx.res, 200, {});
    }
    const removed = await this.d.store.removeSsfSubject(s.id, key);
    this.outView = undefined;
    if (!removed) throw new NotFoundError('the subject is not in this stream');
    this.d.audit.record({ type: 'ssf.subject_removed', actor: actorOf(c), subject: s.id, data: { format: body.subject.format } });
    ctx.res.writeHead(204, { 'cache-control': 'no-store' }).end();
  }

  /** SSF 1.0 "Verification": queues a verification SET carrying the receiver's `state`; 204. */
  private async verify(ctx: RequestContext): Promise<void> {
    const c = await this.caller(ctx.req);
    const body = parse(withId.extend({ state: z.string().max(1000).optional() }), await readJson(ctx.req, this.d.maxBodyBytes));
    const s = await this.ownStream(c, body.stream_id);
    if (s.status === 'disabled') throw new OAuthError('invalid_request', 'the stream is disabled');
    await this.queue(s, {
      key: `verify:${newId('v')}`,
      subId: { format: 'opaque', id: s.id },
      events: { [EVENT.verification]: body.state === undefined ? {} : { state: body.state } },
      txn: null,
    });
    ctx.res.writeHead(204, { 'cache-control': 'no-store' }).end();
  }

  /**
   * RFC 8936 §2.4 poll: settles `ack` and `setErrs`, then answers up to `maxEvents` SETs in
   * `sets` (jti → SET) with `moreAvailable`. Without `returnImmediately`, waits up to
   * transmitter.poll_max_wait for a first event. A SET handed out and not acknowledged is handed
   * out again after poll_redelivery; it stays queued until acknowledged.
   */
  private async poll(ctx: RequestContext): Promise<void> {
    const c = await this.caller(ctx.req);
    const s = await this.ownStream(c, ctx.params.stream_id);
    if ((s.config as unknown as StoredConfig).delivery.method !== DELIVERY_POLL) throw new OAuthError('invalid_request', 'this stream is delivered by push, not poll');
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
      if (round > 0) await this.caller(ctx.req);
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

  /** `receiverName` names the default `aud` of a new stream (the creating credential's name). */
  private buildConfig(id: string, body: z.output<typeof configInput>, base: StoredConfig | undefined, receiverName: string): StoredConfig {
    const iss = this.d.issuer();
    const delivery = body.delivery ?? base?.delivery ?? { method: DELIVERY_POLL };
    let out: StoredConfig['delivery'];
    if (delivery.method === DELIVERY_PUSH) {
      if (!delivery.endpoint_url) throw new ValidationError('delivery.endpoint_url is required for push (RFC 8935)');
      this.checkPushUrl(delivery.endpoint_url);
      // A header given now is sealed; an update that names no delivery keeps the stored one.
      const given = body.delivery?.authorization_header;
      const kept = body.delivery === undefined ? base?.delivery : undefined;
      const sealed = given
        ? this.d.secrets.seal(Buffer.from(given, 'utf8'), pushAuthAad(id))
        : kept?.authorization_header_sealed ?? (kept?.authorization_header ? this.d.secrets.seal(Buffer.from(kept.authorization_header, 'utf8'), pushAuthAad(id)) : undefined);
      out = { method: DELIVERY_PUSH, endpoint_url: delivery.endpoint_url, ...(sealed ? { authorization_header_sealed: sealed } : {}) };
    } else {
      // RFC 8936: the transmitter supplies the poll endpoint.
      out = { method: DELIVERY_POLL, endpoint_url: `${iss}/ssf/poll/${encodeURIComponent(id)}` };
    }
    return {
      iss,
      aud: base?.aud ?? body.aud ?? `${iss}/ssf/receivers/${encodeURIComponent(receiverName)}`,
      events_requested: body.events_requested ?? base?.events_requested ?? [...EVENTS_SUPPORTED],
      delivery: out,
      ...((body.description ?? base?.description) !== undefined ? { description: body.description ?? base?.description } : {}),
    };
  }

  /** The checks that need no DNS (https, no userinfo, a literal address allowed): a 400 at once. */
  private checkPushUrl(url: string): void {
    try {
      this.d.outbound.parse(url);
    } catch (err) {
      if (err instanceof OutboundError) throw new ValidationError(`delivery.endpoint_url is refused: ${err.message}`);
      throw err;
    }
  }

  /**
   * A push URL given in this request, with its host name resolved and every address checked:
   * refused with 400 when the guard would refuse it now. Delivery checks it again on every push
   * (DNS answers change), so this is the early, clear answer, not the only check.
   */
  private async checkPushDestination(body: z.output<typeof configInput>): Promise<void> {
    const d = body.delivery;
    if (d?.method !== DELIVERY_PUSH || !d.endpoint_url) return;
    try {
      await this.d.outbound.check(d.endpoint_url, AbortSignal.timeout(this.d.config.push_timeout * 1000));
    } catch (err) {
      if (err instanceof OutboundError) {
        this.d.logger.warn({ host: err.host, address: err.address, kind: err.kind, reason: err.reason }, 'SSF push endpoint refused');
        throw new ValidationError(`delivery.endpoint_url is refused: ${err.message}`);
      }
      throw err;
    }
  }

  /** The configuration on the wire: read-only members computed, the receiver's authorization header never echoed. */
  private streamJson(s: SsfStreamRecord): Record<string, unknown> {
    const c = s.config as unknown as StoredConfig;
    return {
      stream_id: s.id, iss: c.iss, aud: c.aud, events_supported: [...EVENTS_SUPPORTED], events_requested: c.events_requested,
      events_delivered: c.events_requested.filter((e) => EVENTS_SUPPORTED.includes(e)),
      delivery: { method: c.delivery.method, endpoint_url: c.delivery.endpoint_url },
      ...(c.description !== undefined ? { description: c.description } : {}),
    };
  }

  // ------------------------------------------------------------------ events

  /** revocation.added → CAEP session-revoked (an NHI's sessions, or one token as a jwt_id subject). */
  private async onRevocation(r: RevocationRecord): Promise<void> {
    const iss = this.d.issuer();
    const common = { event_timestamp: Math.floor(r.createdAt / 1000), initiating_entity: r.signalId ? 'policy' : 'admin', ...(r.reason ? { reason_admin: { en: r.reason } } : {}) };
    if (r.kind === 'nhi' && r.target) {
      await this.emit(r.target, { key: r.id, subId: { format: 'opaque', id: r.target }, events: { [EVENT.sessionRevoked]: common }, txn: () => this.txnOf(r.signalId) });
    } else if (r.kind === 'token' && r.target) {
      const nhi = (await this.d.store.getIssuedToken(r.target))?.nhiId ?? null;
      await this.emit(nhi, { key: r.id, subId: { format: 'jwt_id', iss, jti: r.target }, events: { [EVENT.sessionRevoked]: common }, txn: () => this.txnOf(r.signalId) });
    }
  }

  /** kill.added / kill.lifted of an NHI → RISC account-disabled / account-enabled. */
  private async onKill(subject: string, k: KillSwitchRecord): Promise<void> {
    if (k.scope !== 'nhi' || !k.target) return;
    const lifted = subject.endsWith('lifted') || k.liftedAt !== null;
    const signalId = KILL_REASON_PREFIX.exec(k.reason)?.[1] ?? null;
    await this.emit(k.target, {
      key: `${k.id}:${lifted ? 'lifted' : 'added'}`,
      subId: { format: 'opaque', id: k.target },
      events: { [lifted ? EVENT.accountEnabled : EVENT.accountDisabled]: {} },
      txn: () => this.txnOf(signalId),
    });
  }

  /** restriction.added / lifted → CAEP token-claims-change (the NHI's tokens now carry another tier). */
  private async onRestriction(r: RestrictionRecord): Promise<void> {
    const lifted = r.liftedAt !== null;
    await this.emit(r.nhiId, {
      key: `${r.id}:${lifted ? 'lifted' : 'added'}`,
      subId: { format: 'opaque', id: r.nhiId },
      events: {
        [EVENT.tokenClaimsChange]: {
          event_timestamp: Math.floor((r.liftedAt ?? r.createdAt) / 1000),
          initiating_entity: lifted ? 'admin' : 'policy',
          claims: lifted ? { mandate_restriction: null } : { mandate_restriction: r.kind, mandate_tier: r.fallbackTier },
        },
      },
      txn: () => this.txnOf(r.signalId),
    });
  }

  /** RFC 8417 §2.2 `txn`: the originating signal's txn (from a received SET), else the signal id. */
  private async txnOf(signalId: string | null): Promise<string | null> {
    if (!signalId) return null;
    const s = await this.d.store.getSignal(signalId).catch(() => undefined);
    return s?.txn ?? signalId;
  }

  /**
   * Queues a SET on every stream that should carry it: not disabled, the event type delivered,
   * and either no subjects (default_subjects ALL) or a subject naming this NHI. `txn` is read
   * (a store read) only when some stream takes the event.
   */
  async emit(nhiId: string | null, e: { key: string; subId: SubjectId; events: Record<string, unknown>; txn: string | null | (() => Promise<string | null>) }): Promise<number> {
    if (!this.d.config.enabled) return 0;
    const type = Object.keys(e.events)[0]!;
    let n = 0;
    let ev: { key: string; subId: SubjectId; events: Record<string, unknown>; txn: string | null } | undefined;
    for (const { s, subjects } of await this.outStreams()) {
      if (s.status === 'disabled') continue;
      const c = s.config as unknown as StoredConfig;
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
  private async queue(s: SsfStreamRecord, ev: { key: string; subId: SubjectId; events: Record<string, unknown>; txn: string | null }): Promise<boolean> {
    const c = s.config as unknown as StoredConfig;
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
    if (push) this.kick();
    else for (const w of [...(this.waiters.get(s.id) ?? [])]) w();
    return true;
  }

  // ------------------------------------------------------------------ push delivery (RFC 8935)

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
      const c = s.config as unknown as StoredConfig;
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

  /** Puts a dead letter back in the queue for another round of attempts (admin API). */
  async retry(eventId: string): Promise<boolean> {
    const e = await this.d.store.getSsfEvent(eventId);
    if (!e || e.status !== 'dead') return false;
    await this.d.store.updateSsfEvent(e.id, { status: 'queued', attempts: 0, nextAttemptAt: this.d.clock.now(), lastError: e.lastError });
    this.kick();
    return true;
  }
}

function statusJson(s: SsfStreamRecord) {
  return { stream_id: s.id, status: s.status, ...(s.statusReason ? { reason: s.statusReason } : {}) };
}

/** The NHI a stream subject names: an opaque id is an NHI id; a complex subject through its user or application. */
function nhiOfSubject(s: SubjectId): string | null {
  if (s.format === 'opaque') return s.id as string;
  if (s.format === 'complex') {
    for (const m of ['application', 'user'] as const) {
      const inner = s[m] as SubjectId | undefined;
      if (inner?.format === 'opaque') return inner.id as string;
    }
  }
  return null;
}

function parse<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const details = r.error.issues.map((i) => `${i.path.length ? i.path.join('.') : 'body'}: ${i.message}`);
  throw new ValidationError(`invalid request: ${details.join('; ')}`, details);
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
