import { compactVerify, createLocalJWKSet, type JSONWebKeySet } from 'jose';
import {
  NotFoundError, PayloadTooLargeError, UnavailableError, hasDuplicateKeys, readBody, secretEquals, sendJson,
  type AuditSink, type Clock, type Logger, type MandateConfig, type ReplayStore, type RequestContext, type Router,
} from '../core/index.js';
import type { InventoryStore } from '../inventory/index.js';
import type { JwsShapeCheck, SetKeySource, SignalAction, SignalSeverity, SignalsStore, SsfStreamRecord, SsfStreamStatus } from './ports.js';
import type { Signals } from './signals.js';
import { EVENT, KNOWN_EVENTS, SET_MEDIA_TYPE, SetError, subjectProblem, type SubjectId } from './set.js';

/**
 * The SSF receiver: SETs from the transmitters configured in `signals.receivers`, pushed to
 * `POST /ssf/receivers/{name}/events` (RFC 8935) or polled from their `poll_url` (RFC 8936),
 * verified, mapped to NHIs and turned into internal signals.
 *
 * Verification, in order (each refusal has its RFC 8935 §2.3 error code):
 *   size cap before anything is decoded → JWS shape (broker's jwt-guard: pinned asymmetric
 *   `alg`, no `none`, no duplicate JSON members, no `crit`) → `typ` secevent+jwt (RFC 8417 §2.3)
 *   → `iss` exactly the configured issuer → key from the configured `jwks` or `jwks_uri` only
 *   (the broker's guarded JwksFetcher; `jwk`/`jku`/`x5u`/`x5c` in the header are never used)
 *   → signature → `aud` → `iat` within max_age → `jti` → event types known and `sub_id`
 *   well formed (RFC 9493) → the local stream enabled → `jti` not seen before (the store's
 *   atomic insertOnce, shared across instances) → signals.
 */

export type ReceiverConfig = MandateConfig['signals']['receivers'][number];

export interface ReceiverDeps {
  receivers: readonly ReceiverConfig[];
  store: SignalsStore & ReplayStore & Pick<InventoryStore, 'getNhi'>;
  signals: Pick<Signals, 'raise'>;
  keySource: SetKeySource;
  checkShape: JwsShapeCheck;
  resolveSecret: (ref: string) => string;
  /** Mandate's own issuer: a `jwt_id` subject it issued names one of its tokens. */
  issuer: () => string;
  audit: AuditSink;
  clock: Clock;
  logger: Logger;
  /** Largest SET accepted, in bytes (default 32 KiB). */
  maxSetBytes?: number;
  /** Development and tests: poll http://127.0.0.1 / localhost. */
  allowLoopbackHttp: boolean;
}

/** What a verified SET carries. */
export interface VerifiedSet {
  jti: string;
  iss: string;
  iat: number;
  txn: string | null;
  subId: SubjectId | undefined;
  events: Record<string, Record<string, unknown>>;
}

const IAT_SKEW_MS = 60_000;
const LOOPBACK = new Set(['127.0.0.1', '[::1]', 'localhost']);
export const inboundStreamId = (name: string) => `rcv_${name}`;

/** The default translation of received events into actions (issue 5); `ignore` records nothing to enforce. */
export function defaultEventAction(type: string, ev: Record<string, unknown>): SignalAction | 'ignore' {
  switch (type) {
    case EVENT.sessionRevoked: // CAEP 1.0 §3.1
    case EVENT.sessionsRevoked: // RISC 1.0 §2.14
      return 'revoke_tokens';
    case EVENT.credentialChange: // CAEP 1.0 §3.3: change_type create | revoke | update | delete
      return ev.change_type === 'revoke' || ev.change_type === 'delete' ? 'revoke_tokens' : 'ignore';
    case EVENT.riskLevelChange: // CAEP 1.0 §3.8: current_level LOW | MEDIUM | HIGH
      return String(ev.current_level ?? '').toUpperCase() === 'HIGH' ? 'step_down' : 'ignore';
    case EVENT.assuranceLevelChange: // CAEP 1.0 §3.4: change_direction increase | decrease
      return ev.change_direction === 'decrease' ? 'step_up' : 'ignore';
    case EVENT.accountDisabled: // RISC 1.0 §2.3
    case EVENT.accountPurged: // RISC 1.0 §2.2
    case EVENT.credentialCompromise: // RISC 1.0 §2.7
      return 'disable';
    default:
      return 'ignore';
  }
}

const SEVERITY: Record<SignalAction, SignalSeverity> = { disable: 'critical', block: 'critical', revoke_tokens: 'high', step_down: 'medium', step_up: 'medium' };

/** `caep.session_revoked` from the event type URI. */
function reasonCode(type: string): string {
  const m = /\/secevent\/([a-z]+)\/event-type\/([a-z0-9-]+)$/.exec(type);
  return m ? `${m[1]}.${m[2]!.replace(/-/g, '_')}` : 'ssf.event';
}

export class SsfReceiver {
  private readonly byName: Map<string, ReceiverConfig>;
  private readonly localJwks = new Map<string, ReturnType<typeof createLocalJWKSet>>();
  private readonly pollers: NodeJS.Timeout[] = [];
  private stopped = false;
  private readonly inflight = new Set<Promise<unknown>>();

  constructor(private readonly d: ReceiverDeps) {
    this.byName = new Map(d.receivers.map((r) => [r.name, r]));
    for (const r of d.receivers) if (r.jwks) this.localJwks.set(r.name, createLocalJWKSet(r.jwks as JSONWebKeySet));
  }

  /** Creates each receiver's local stream record (its status) and starts the pollers. */
  async start(): Promise<void> {
    const now = this.d.clock.now();
    for (const r of this.d.receivers) {
      if (!(await this.d.store.getSsfStream(inboundStreamId(r.name)))) {
        await this.d.store.createSsfStream({
          id: inboundStreamId(r.name), direction: 'in', owner: null, config: { receiver: r.name, issuer: r.issuer },
          status: 'enabled', statusReason: null, createdAt: now, updatedAt: now,
        }).catch(() => {}); // another instance created it first
      }
      if (r.delivery === 'poll') this.schedulePoll(r, 0);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.pollers) clearTimeout(t);
    await Promise.allSettled([...this.inflight]);
  }

  mount(router: Router): void {
    router.add('POST', '/ssf/receivers/:name/events', (ctx) => this.handlePush(ctx));
  }

  list(): Array<{ name: string; issuer: string; delivery: string }> {
    return this.d.receivers.map((r) => ({ name: r.name, issuer: r.issuer, delivery: r.delivery }));
  }

  /** An operator pauses, disables or re-enables a receiver's stream (paused / disabled: SETs refused). */
  async setStatus(name: string, status: SsfStreamStatus, reason: string | null): Promise<SsfStreamRecord> {
    if (!this.byName.has(name)) throw new NotFoundError(`no receiver "${name}"`);
    const s = await this.d.store.getSsfStream(inboundStreamId(name));
    if (!s) throw new NotFoundError(`no receiver "${name}"`);
    const next = { ...s, status, statusReason: reason, updatedAt: this.d.clock.now() };
    await this.d.store.updateSsfStream(next);
    return next;
  }

  // ------------------------------------------------------------------ push (RFC 8935)

  private async handlePush(ctx: RequestContext): Promise<void> {
    const r = this.byName.get(ctx.params.name!);
    if (!r || r.delivery !== 'push') throw new NotFoundError('no such receiver');
    try {
      // RFC 8935 §2.4 (authentication of the transmitter): the configured Authorization value, compared in constant time.
      if (r.authorization) {
        const got = ctx.req.headers.authorization;
        if (typeof got !== 'string' || !secretEquals(got, this.d.resolveSecret(r.authorization))) {
          ctx.req.resume();
          return sendJson(ctx.res, 401, { err: 'authentication_failed', description: 'the request is not authenticated' });
        }
      }
      const type = (ctx.req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      if (type !== SET_MEDIA_TYPE) throw new SetError('invalid_request', `Content-Type must be ${SET_MEDIA_TYPE} (RFC 8935 §2.1)`);
      let body: Buffer;
      try {
        body = await readBody(ctx.req, this.maxBytes());
      } catch (err) {
        if (err instanceof PayloadTooLargeError) throw new SetError('invalid_request', `the SET is larger than ${this.maxBytes()} bytes`);
        throw err;
      }
      await this.accept(r, body.toString('utf8').trim());
      // RFC 8935 §2.2: 202 Accepted, no body.
      ctx.res.writeHead(202, { 'cache-control': 'no-store' }).end();
    } catch (err) {
      if (err instanceof SetError) {
        this.d.audit.record({ type: 'ssf.set_refused', actor: `ssf:${r.name}`, decision: 'deny', data: { err: err.err, description: err.description } });
        return sendJson(ctx.res, err.status, { err: err.err, description: err.description });
      }
      throw err;
    }
  }

  private maxBytes(): number {
    return this.d.maxSetBytes ?? 32 * 1024;
  }

  /** Verifies and processes one SET; throws SetError with its RFC 8935 code. */
  async accept(r: ReceiverConfig, jwt: string): Promise<VerifiedSet> {
    const receivedAt = this.d.clock.now();
    const set = await this.verify(r, jwt);
    await this.process(r, set, receivedAt);
    return set;
  }

  async verify(r: ReceiverConfig, jwt: string): Promise<VerifiedSet> {
    if (Buffer.byteLength(jwt, 'utf8') > this.maxBytes()) throw new SetError('invalid_request', `the SET is larger than ${this.maxBytes()} bytes`);
    let header: Record<string, unknown>;
    let payload: Record<string, unknown>;
    try {
      ({ header, payload } = this.d.checkShape(jwt, { algorithms: r.algorithms, maxBytes: this.maxBytes() }));
    } catch (err) {
      const reason = (err as { reason?: string }).reason;
      if (reason === 'alg_none' || reason === 'alg_not_allowed') throw new SetError('invalid_key', 'the SET algorithm is not one of the pinned algorithms');
      throw new SetError('invalid_request', `the SET is not a well-formed JWS${reason ? ` (${reason})` : ''}`);
    }
    // RFC 8417 §2.3 explicit typing; RFC 7515 §4.1.9 lets "application/" be omitted.
    const typ = typeof header.typ === 'string' ? header.typ.toLowerCase().replace(/^application\//, '') : '';
    if (typ !== 'secevent+jwt') throw new SetError('invalid_request', 'the SET "typ" header must be secevent+jwt (RFC 8417 §2.3)');
    if (payload.iss !== r.issuer) throw new SetError('invalid_issuer', 'the SET issuer is not the configured issuer');
    const alg = header.alg as string;
    const kid = typeof header.kid === 'string' ? header.kid : undefined;
    try {
      const local = this.localJwks.get(r.name);
      if (local) {
        // Keys come from the configured set only; the header's kid and alg select among them.
        await compactVerify(jwt, local, { algorithms: [alg] });
      } else {
        const key = await this.d.keySource.getKey(r.jwks_uri!, { kid, alg }).catch((err: unknown) => {
          const reason = (err as { reason?: string }).reason;
          if (reason && ['key_not_found', 'ambiguous_key', 'symmetric_key', 'alg_mismatch', 'key_use', 'unsupported_key'].includes(reason)) {
            throw new SetError('invalid_key', `no usable key for the SET in the configured JWKS (${reason})`);
          }
          throw new UnavailableError(`the transmitter's keys cannot be fetched now (${reason ?? 'error'})`);
        });
        await compactVerify(jwt, key as Parameters<typeof compactVerify>[1], { algorithms: [alg] });
      }
    } catch (err) {
      if (err instanceof SetError || err instanceof UnavailableError) throw err;
      const code = (err as { code?: string }).code;
      if (code === 'ERR_JWKS_NO_MATCHING_KEY' || code === 'ERR_JWKS_MULTIPLE_MATCHING_KEYS') throw new SetError('invalid_key', 'no configured key fits the SET');
      throw new SetError('authentication_failed', 'the SET signature does not verify');
    }

    const aud = payload.aud;
    if (!(aud === r.audience || (Array.isArray(aud) && aud.includes(r.audience)))) throw new SetError('invalid_audience', 'the SET audience is not this receiver');
    const now = this.d.clock.now();
    if (typeof payload.iat !== 'number' || !Number.isFinite(payload.iat)) throw new SetError('invalid_request', 'the SET has no numeric "iat" (RFC 8417 §2.2)');
    if (payload.iat * 1000 > now + IAT_SKEW_MS) throw new SetError('invalid_request', 'the SET "iat" is in the future');
    if (now - payload.iat * 1000 > r.max_age * 1000) throw new SetError('invalid_request', 'the SET is older than max_age');
    if (typeof payload.jti !== 'string' || payload.jti === '' || payload.jti.length > 256) throw new SetError('invalid_request', 'the SET has no "jti" (RFC 8417 §2.2)');
    const events = payload.events;
    if (!events || typeof events !== 'object' || Array.isArray(events) || Object.keys(events).length === 0) {
      throw new SetError('invalid_request', 'the SET has no "events" object (RFC 8417 §2.2)');
    }
    for (const [type, body] of Object.entries(events as Record<string, unknown>)) {
      if (!KNOWN_EVENTS.has(type)) throw new SetError('invalid_request', `unknown event type "${type.slice(0, 200)}"`);
      if (!body || typeof body !== 'object' || Array.isArray(body)) throw new SetError('invalid_request', 'an event payload must be a JSON object');
    }
    // SSF 1.0 "Subject Members in SSF Events": a top-level sub_id, or (existing CAEP/RISC events) `subject` in the event.
    const evs = events as Record<string, Record<string, unknown>>;
    let subId = payload.sub_id as SubjectId | undefined;
    if (subId === undefined) subId = Object.values(evs).find((e) => e.subject !== undefined)?.subject as SubjectId | undefined;
    const needsSubject = Object.keys(evs).some((t) => t !== EVENT.verification && t !== EVENT.streamUpdated);
    if (subId !== undefined || needsSubject) {
      const problem = subId === undefined ? 'the SET names no subject (sub_id)' : subjectProblem(subId);
      if (problem) throw new SetError('invalid_request', `malformed sub_id: ${problem}`);
    }
    for (const e of Object.values(evs)) {
      if (e.subject !== undefined && subjectProblem(e.subject)) throw new SetError('invalid_request', `malformed subject: ${subjectProblem(e.subject)}`);
    }
    if (payload.txn !== undefined && typeof payload.txn !== 'string') throw new SetError('invalid_request', 'the SET "txn" must be a string (RFC 8417 §2.2)');

    const stream = await this.d.store.getSsfStream(inboundStreamId(r.name));
    if (stream && stream.status !== 'enabled') throw new SetError('access_denied', `the stream is ${stream.status}`);
    // Replay: one acceptance per jti per receiver, across instances; remembered as long as the SET could be accepted.
    const fresh = await this.d.store.insertOnce(`ssf-set:${r.name}`, payload.jti, payload.iat * 1000 + r.max_age * 1000 + IAT_SKEW_MS);
    if (!fresh) throw Object.assign(new SetError('invalid_request', 'the SET "jti" was already received'), { replay: true });
    return { jti: payload.jti, iss: r.issuer, iat: payload.iat, txn: (payload.txn as string | undefined) ?? null, subId, events: evs };
  }

  /** Each event → one internal signal (or a record of an unmapped subject / an event with no action). */
  private async process(r: ReceiverConfig, set: VerifiedSet, receivedAt: number): Promise<void> {
    for (const [type, ev] of Object.entries(set.events)) {
      if (type === EVENT.verification || type === EVENT.streamUpdated) {
        this.d.audit.record({
          type: type === EVENT.verification ? 'ssf.verification_received' : 'ssf.stream_updated_received', actor: `ssf:${r.name}`,
          data: { jti: set.jti, ...(typeof ev.status === 'string' ? { status: ev.status } : {}) },
        });
        continue;
      }
      const configured = r.event_actions[type];
      const action = configured ?? defaultEventAction(type, ev);
      const subject = (ev.subject as SubjectId | undefined) ?? set.subId!;
      const target = await this.mapSubject(r, subject);
      const base = {
        reason: reasonCode(type), source: `ssf:${r.name}`, txn: set.txn, receivedAt,
        data: { set_jti: set.jti, event: type, ...(ev.change_type ? { change_type: ev.change_type } : {}), ...(ev.current_level ? { current_level: ev.current_level } : {}) },
      };
      if (action === 'ignore') {
        // A known event that asks for nothing (e.g. credential-change `create`): on record in the audit log only.
        this.d.audit.record({ type: 'ssf.event_ignored', actor: `ssf:${r.name}`, subject: target.nhiId ?? null, data: { ...base.data, txn: set.txn } });
      } else if (!target.nhiId && !target.jti) {
        await this.d.signals.raise({ ...base, action, severity: SEVERITY[action], recordOnly: 'unmapped', data: { ...base.data, subject } });
      } else {
        await this.d.signals.raise({ ...base, ...target, action, severity: SEVERITY[action] });
      }
    }
  }

  /** RFC 9493 subject → NHI: opaque id = NHI id; email / iss_sub through `subjects`; Mandate's own jwt_id → a token. */
  async mapSubject(r: ReceiverConfig, s: SubjectId): Promise<{ nhiId?: string; jti?: string }> {
    const nhi = async (id: unknown) => (typeof id === 'string' && (await this.d.store.getNhi(id)) ? id : undefined);
    switch (s.format) {
      case 'opaque': {
        const id = await nhi(s.id);
        return id ? { nhiId: id } : {};
      }
      case 'email': {
        const email = String(s.email).toLowerCase();
        const m = r.subjects.find((x) => 'email' in x && x.email.toLowerCase() === email);
        return m ? { nhiId: m.nhi } : {};
      }
      case 'iss_sub': {
        const m = r.subjects.find((x) => 'iss' in x && x.iss === s.iss && x.sub === s.sub);
        if (m) return { nhiId: m.nhi };
        // A token Mandate issued has the NHI id as its `sub`.
        if (s.iss === this.d.issuer()) {
          const id = await nhi(s.sub);
          return id ? { nhiId: id } : {};
        }
        return {};
      }
      case 'jwt_id':
        return s.iss === this.d.issuer() && typeof s.jti === 'string' ? { jti: s.jti } : {};
      case 'aliases':
        for (const a of s.identifiers as SubjectId[]) {
          const t = await this.mapSubject(r, a);
          if (t.nhiId || t.jti) return t;
        }
        return {};
      case 'complex': {
        const out: { nhiId?: string; jti?: string } = {};
        for (const m of ['session', 'application', 'user', 'device'] as const) {
          if (!s[m]) continue;
          const t = await this.mapSubject(r, s[m] as SubjectId);
          out.jti ??= t.jti;
          out.nhiId ??= t.nhiId;
        }
        return out;
      }
      default:
        return {};
    }
  }

  // ------------------------------------------------------------------ poll (RFC 8936)

  private schedulePoll(r: ReceiverConfig, delayMs: number, state: PollState = { ack: [], setErrs: {} }): void {
    if (this.stopped) return;
    const t = setTimeout(() => {
      const p = this.pollOnce(r, state)
        .then((again) => this.schedulePoll(r, again ? 0 : r.poll_interval * 1000, state))
        .catch((err: unknown) => {
          this.d.logger.warn({ receiver: r.name, err: (err as Error).message }, 'SSF poll failed');
          this.schedulePoll(r, r.poll_interval * 1000, state);
        })
        .finally(() => this.inflight.delete(p));
      this.inflight.add(p);
    }, delayMs);
    t.unref();
    this.pollers.push(t);
    if (this.pollers.length > 16) this.pollers.splice(0, this.pollers.length - 16);
  }

  /**
   * One RFC 8936 §2.4 poll with the acknowledgements of the previous round (`ack`, `setErrs`).
   * Returns true when it should poll again at once (more available, or acknowledgements to send).
   */
  async pollOnce(r: ReceiverConfig, state: PollState = { ack: [], setErrs: {} }): Promise<boolean> {
    const url = this.checkPollUrl(r.poll_url!);
    const body = { ack: state.ack, ...(Object.keys(state.setErrs).length ? { setErrs: state.setErrs } : {}), maxEvents: 100, returnImmediately: true };
    const res = await fetch(url, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/json', accept: 'application/json', ...(r.authorization ? { authorization: this.d.resolveSecret(r.authorization) } : {}) },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
    if (res.status !== 200) {
      await res.body?.cancel().catch(() => {});
      throw new Error(`poll answered ${res.status}`);
    }
    const text = await readCapped(res, 4 * 1024 * 1024);
    let doc: { sets?: unknown; moreAvailable?: unknown };
    try {
      doc = JSON.parse(text) as typeof doc;
    } catch {
      throw new Error('poll answer is not JSON');
    }
    if (hasDuplicateKeys(text) || !doc || typeof doc !== 'object') throw new Error('poll answer is not a JSON object without duplicate members');
    // The acknowledgements went through: start a new round.
    state.ack = [];
    state.setErrs = {};
    const sets = doc.sets && typeof doc.sets === 'object' ? (doc.sets as Record<string, unknown>) : {};
    for (const [jti, jwt] of Object.entries(sets)) {
      try {
        if (typeof jwt !== 'string') throw new SetError('invalid_request', 'not a SET');
        await this.accept(r, jwt);
        state.ack.push(jti);
      } catch (err) {
        if (err instanceof SetError) {
          // Already processed (our acknowledgement was lost): acknowledge it again.
          if ((err as SetError & { replay?: boolean }).replay) state.ack.push(jti);
          else state.setErrs[jti] = { err: err.err, description: err.description };
          this.d.audit.record({ type: 'ssf.set_refused', actor: `ssf:${r.name}`, decision: 'deny', data: { err: err.err, description: err.description } });
        } else {
          this.d.logger.warn({ receiver: r.name, err: (err as Error).message }, 'SET not processed; it will come again');
        }
      }
    }
    return doc.moreAvailable === true || state.ack.length > 0 || Object.keys(state.setErrs).length > 0;
  }

  private checkPollUrl(url: string): URL {
    const u = new URL(url);
    if (u.username || u.password) throw new Error('poll_url must not carry credentials');
    if (u.protocol === 'https:') return u;
    if (u.protocol === 'http:' && this.d.allowLoopbackHttp && LOOPBACK.has(u.hostname)) return u;
    throw new Error('poll_url must be https');
  }
}

interface PollState {
  ack: string[];
  setErrs: Record<string, { err: string; description: string }>;
}

async function readCapped(res: Response, max: number): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > max) {
      await reader.cancel().catch(() => {});
      throw new Error(`poll answer larger than ${max} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}
