import { z } from 'zod';
import {
  NotFoundError, OAuthError, ValidationError, newId, readJson, sendJson, stripQuery, type RequestContext,
} from '../core/index.js';
import type { SsfStreamRecord, SsfStreamStatus } from './ports.js';
import { DELIVERY_POLL, EVENT, canonicalJson, subjectProblem, type SubjectId } from './set.js';
import type { SetQueue } from './set-queue.js';
import { actorOf, parse, withId, type StreamAccess } from './ssf-request.js';
import { configInput, configOf, streamJson, type StreamConfigs } from './ssf-stream-config.js';
import type { TransmitterDeps } from './transmitter.js';

/**
 * The SSF 1.0 stream management API of the transmitter: streams (create, read, update,
 * replace, delete), their status, their subjects, and verification.
 */
export class StreamApi {
  constructor(
    private readonly d: Pick<TransmitterDeps, 'store' | 'audit' | 'clock' | 'maxBodyBytes'>,
    private readonly access: StreamAccess,
    private readonly configs: StreamConfigs,
    private readonly queue: Pick<SetQueue, 'queue' | 'forget'>,
    /** Runs the push loop (a stream enabled again may have SETs due). */
    private readonly kick: () => void,
  ) {}

  /** SSF 1.0 "Creating a Stream": 201 with the stream configuration. */
  async createStream(ctx: RequestContext): Promise<void> {
    const c = await this.access.caller(ctx.req);
    if (c.kind !== 'admin') throw new OAuthError('insufficient_scope', 'a stream credential manages its own stream; streams are created with an admin credential', 403);
    const p = c.principal;
    const body = parse(configInput, await readJson(ctx.req, this.d.maxBodyBytes));
    const id = newId('str');
    const now = this.d.clock.now();
    const cfg = this.configs.build(id, body, undefined, p.name);
    await this.configs.checkPushDestination(body);
    const rec: SsfStreamRecord = { id, direction: 'out', owner: p.id, config: cfg as unknown as Record<string, unknown>, status: 'enabled', statusReason: null, createdAt: now, updatedAt: now };
    await this.d.store.createSsfStream(rec);
    const credential = await this.access.issueCredential(id);
    this.queue.forget();
    this.d.audit.record({ type: 'ssf.stream_created', actor: `admin:${p.id}`, subject: id, data: { method: cfg.delivery.method, endpoint: cfg.delivery.endpoint_url ? stripQuery(cfg.delivery.endpoint_url) : null } });
    // The stream's own credential, for its receiver: in this answer only (a Mandate member of
    // the stream configuration; receivers ignore members they do not know).
    sendJson(ctx.res, 201, { ...streamJson(rec), stream_credential: credential });
  }

  /** SSF 1.0 "Reading a Stream's Configuration": one stream with stream_id, else every stream of the caller. */
  async readStreams(ctx: RequestContext): Promise<void> {
    const c = await this.access.caller(ctx.req);
    const id = ctx.query.get('stream_id');
    if (id !== null) return sendJson(ctx.res, 200, streamJson(await this.access.ownStream(c, id)));
    const all = c.kind === 'admin'
      ? await this.d.store.listSsfStreams({ direction: 'out' })
      : [await this.d.store.getSsfStream(c.streamId)].filter((s): s is SsfStreamRecord => s !== undefined && s.direction === 'out');
    sendJson(ctx.res, 200, all.map((s) => streamJson(s)));
  }

  /** SSF 1.0 "Updating a Stream's Configuration" (PATCH: given members) and "Replacing" (PUT: all members). */
  async updateStream(ctx: RequestContext, mode: 'patch' | 'put'): Promise<void> {
    const c = await this.access.caller(ctx.req);
    const raw = await readJson(ctx.req, this.d.maxBodyBytes);
    const { stream_id } = parse(withId, raw);
    const body = parse(configInput, raw);
    const s = await this.access.ownStream(c, stream_id);
    const old = configOf(s);
    if (body.aud !== undefined && canonicalJson(body.aud) !== canonicalJson(old.aud)) throw new ValidationError('aud cannot be changed (SSF 1.0: transmitter-supplied)');
    const cfg = this.configs.build(s.id, body, mode === 'patch' ? old : { ...old, events_requested: [], description: undefined, delivery: { method: DELIVERY_POLL } }, s.id);
    await this.configs.checkPushDestination(body);
    const next = { ...s, config: cfg as unknown as Record<string, unknown>, updatedAt: this.d.clock.now() };
    await this.d.store.updateSsfStream(next);
    this.queue.forget();
    this.d.audit.record({ type: 'ssf.stream_updated', actor: actorOf(c), subject: s.id, data: { mode } });
    sendJson(ctx.res, 200, streamJson(next));
  }

  /** SSF 1.0 "Deleting a Stream": 204. */
  async deleteStream(ctx: RequestContext): Promise<void> {
    const c = await this.access.caller(ctx.req);
    const s = await this.access.ownStream(c, ctx.query.get('stream_id'));
    await this.d.store.deleteSsfStream(s.id);
    this.queue.forget();
    this.d.audit.record({ type: 'ssf.stream_deleted', actor: actorOf(c), subject: s.id, data: {} });
    ctx.res.writeHead(204, { 'cache-control': 'no-store' }).end();
  }

  /** SSF 1.0 "Reading a Stream's Status". */
  async readStatus(ctx: RequestContext): Promise<void> {
    const c = await this.access.caller(ctx.req);
    const s = await this.access.ownStream(c, ctx.query.get('stream_id'));
    sendJson(ctx.res, 200, statusJson(s));
  }

  /** SSF 1.0 "Updating a Stream's Status": enabled, paused (events held), disabled (events dropped). */
  async updateStatus(ctx: RequestContext): Promise<void> {
    const c = await this.access.caller(ctx.req);
    const body = parse(withId.extend({ status: z.enum(['enabled', 'paused', 'disabled']), reason: z.string().max(500).optional() }), await readJson(ctx.req, this.d.maxBodyBytes));
    const s = await this.access.ownStream(c, body.stream_id);
    const next: SsfStreamRecord = { ...s, status: body.status as SsfStreamStatus, statusReason: body.reason ?? null, updatedAt: this.d.clock.now() };
    await this.d.store.updateSsfStream(next);
    this.queue.forget();
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
  async subjects(ctx: RequestContext, op: 'add' | 'remove'): Promise<void> {
    const c = await this.access.caller(ctx.req);
    const body = parse(withId.extend({ subject: z.record(z.string(), z.unknown()), verified: z.boolean().optional() }), await readJson(ctx.req, this.d.maxBodyBytes));
    const s = await this.access.ownStream(c, body.stream_id);
    const problem = subjectProblem(body.subject);
    if (problem) throw new ValidationError(`invalid subject: ${problem}`);
    const key = canonicalJson(body.subject);
    this.queue.forget();
    if (op === 'add') {
      await this.d.store.addSsfSubject({ streamId: s.id, key, subject: body.subject, nhiId: nhiOfSubject(body.subject as SubjectId), createdAt: this.d.clock.now() });
      this.d.audit.record({ type: 'ssf.subject_added', actor: actorOf(c), subject: s.id, data: { format: body.subject.format } });
      return sendJson(ctx.res, 200, {});
    }
    const removed = await this.d.store.removeSsfSubject(s.id, key);
    this.queue.forget();
    if (!removed) throw new NotFoundError('the subject is not in this stream');
    this.d.audit.record({ type: 'ssf.subject_removed', actor: actorOf(c), subject: s.id, data: { format: body.subject.format } });
    ctx.res.writeHead(204, { 'cache-control': 'no-store' }).end();
  }

  /** SSF 1.0 "Verification": queues a verification SET carrying the receiver's `state`; 204. */
  async verify(ctx: RequestContext): Promise<void> {
    const c = await this.access.caller(ctx.req);
    const body = parse(withId.extend({ state: z.string().max(1000).optional() }), await readJson(ctx.req, this.d.maxBodyBytes));
    const s = await this.access.ownStream(c, body.stream_id);
    if (s.status === 'disabled') throw new OAuthError('invalid_request', 'the stream is disabled');
    await this.queue.queue(s, {
      key: `verify:${newId('v')}`,
      subId: { format: 'opaque', id: s.id },
      events: { [EVENT.verification]: body.state === undefined ? {} : { state: body.state } },
      txn: null,
    });
    ctx.res.writeHead(204, { 'cache-control': 'no-store' }).end();
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
