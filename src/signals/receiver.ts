import { compactVerify, createLocalJWKSet, type JSONWebKeySet } from 'jose';
import {
  MandateError, NotFoundError, PayloadTooLargeError, UnavailableError, hasDuplicateKeys, readBody, secretEquals, sendJson,
  type AuditInput, type AuditSink, type Clock, type Logger, type MandateConfig, type OutboundGuard, type RequestContext, type Router,
} from '../core/index.js';
import type { ReplayBatchStore } from '../core/index.js';
import type { RevocationRecord } from '../enforcement/index.js';
import type { InventoryStore } from '../inventory/index.js';
import type {
  JwsShapeCheck, SetKeySource, SetSignatureCheck, SignalAction, SignalRecord, SignalSeverity, SignalsBatchStore, SignalsStore, SsfStreamRecord, SsfStreamStatus,
} from './ports.js';
import type { SignalInput, Signals, SignalsTxStore, StagedSignals } from './signals.js';
import { SetIngest } from './set-ingest.js';
import { EVENT, IAT_SKEW_MS, KNOWN_EVENTS, SET_MEDIA_TYPE, SetError, inboundStreamId, setExpiryProblem, subjectProblem, type SubjectId } from './set.js';

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
 *   well formed (RFC 9493). Verification is per SET and runs concurrently (no store access).
 *
 * Then the group commit (`SetIngest`, set-ingest.ts): the SETs verified while the previous commit ran
 * go together: the local streams' status (one read per receiver) → `jti` not seen before
 * (`insertOnceMany`, atomic across instances) → subjects mapped (one NHI lookup) → signals and
 * what they cause, all in ONE transaction with the replay records. A push is answered 202
 * (RFC 8935 §2.2) only after that transaction committed: an acknowledged SET is on record and
 * enforced, and a SET whose transaction failed left no replay record, so the transmitter's
 * retry is taken. A pushed SET whose `jti` was already accepted is refused as a replay
 * (`invalid_request`) and not applied again; a polled one (RFC 8936: handed out again when our
 * ack was lost) is acknowledged and not applied again.
 */

/** How a verified SET ended: newly accepted (and applied), or a copy of one already accepted. */
export type IngestOutcome = 'accepted' | 'duplicate';

export type ReceiverConfig = MandateConfig['signals']['receivers'][number];

export interface ReceiverDeps {
  receivers: readonly ReceiverConfig[];
  store: SignalsStore & Pick<InventoryStore, 'getNhi'> & SignalsBatchStore & Pick<SignalsTxStore, 'getIssuedToken'> & {
    transaction<T>(fn: (tx: SignalsTxStore & ReplayBatchStore & Pick<SignalsStore, 'getSsfStream' | 'knownNhiIds'>) => Promise<T>): Promise<T>;
  };
  signals: Pick<Signals, 'stage'>;
  keySource: SetKeySource;
  checkShape: JwsShapeCheck;
  /** Optional faster signature check for keys from `keySource` (falls back to jose). */
  checkSignature?: SetSignatureCheck;
  resolveSecret: (ref: string) => string;
  /** Mandate's own issuer: a `jwt_id` subject it issued names one of its tokens. */
  issuer: () => string;
  audit: AuditSink;
  clock: Clock;
  logger: Logger;
  /** Largest SET accepted, in bytes (default 32 KiB). */
  maxSetBytes?: number;
  /** The guard for polling a transmitter (src/core/outbound.ts). */
  outbound: OutboundGuard;
  /** SETs per group commit (default 500). */
  maxBatch?: number;
  /** Group commits running at once, each on its own database connection (default 2). */
  maxCommitsInFlight?: number;
  /**
   * A commit starts while another runs only when at least this many SETs wait (default 64);
   * fewer wait for it and go together in the next (see SetIngest).
   */
  minBatchBesideCommit?: number;
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

/** How long a receiver's stream status is reused by the group commit (see `streamStatuses`). */
const STATUS_TTL_MS = 1000;
const KNOWN_NHI_TTL_MS = 60_000;
const MAX_KNOWN_NHIS = 100_000;

/** The default translation of received events into actions; `ignore` records nothing to enforce. */
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
  private readonly ingest: SetIngest;
  private readonly statusCache = new Map<string, { at: number; status: SsfStreamStatus | undefined }>();
  /** NHI id → until when it is known to exist (insertion order ≈ expiry order). */
  private readonly nhiCache = new Map<string, number>();

  constructor(private readonly d: ReceiverDeps) {
    this.ingest = new SetIngest(this, d);
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
    await this.ingest.drain();
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
    this.statusCache.set(name, { at: this.d.clock.now(), status });
    return next;
  }

  /**
   * The receivers' local stream status (undefined: no record, treated as enabled), read through
   * `tx` at most every STATUS_TTL_MS per receiver. A change through this instance takes effect
   * at once; one made through another instance within the TTL.
   */
  async streamStatuses(tx: Pick<SignalsStore, 'getSsfStream'>, names: readonly string[]): Promise<Array<SsfStreamStatus | undefined>> {
    const now = this.d.clock.now();
    return Promise.all(names.map(async (n) => {
      const c = this.statusCache.get(n);
      if (c && now - c.at < STATUS_TTL_MS) return c.status;
      const status = (await tx.getSsfStream(inboundStreamId(n)))?.status;
      this.statusCache.set(n, { at: now, status });
      return status;
    }));
  }

  /** The next `streamStatuses` reads these receivers' status from the store. */
  forgetStatuses(names: readonly string[]): void {
    for (const n of names) this.statusCache.delete(n);
  }

  /**
   * Which of `ids` are NHIs: found ones are remembered for KNOWN_NHI_TTL_MS (an NHI deleted
   * meanwhile still maps: its tokens are revoked rather than the SET recorded as unmapped, the
   * safe side); ids not found are asked again every time (an NHI added since is found).
   */
  async knownNhis(tx: Pick<SignalsStore, 'knownNhiIds'>, ids: ReadonlySet<string>): Promise<Set<string>> {
    const { known, ask } = this.rememberedNhis(ids);
    if (ask.length === 0) return known;
    const found = await tx.knownNhiIds(ask);
    this.rememberNhis(found);
    for (const id of found) known.add(id);
    return known;
  }

  /** Of `ids`, those remembered as NHIs (`known`) and those to ask the store about (`ask`). */
  rememberedNhis(ids: Iterable<string>): { known: Set<string>; ask: string[] } {
    const now = this.d.clock.now();
    const known = new Set<string>();
    const ask: string[] = [];
    for (const id of ids) {
      const until = this.nhiCache.get(id);
      if (until !== undefined && until > now) known.add(id);
      else ask.push(id);
    }
    return { known, ask };
  }

  /** Remembers these ids as NHIs for KNOWN_NHI_TTL_MS. */
  rememberNhis(ids: Iterable<string>): void {
    const until = this.d.clock.now() + KNOWN_NHI_TTL_MS;
    for (const id of ids) {
      this.nhiCache.delete(id);
      this.nhiCache.set(id, until);
    }
    if (this.nhiCache.size > MAX_KNOWN_NHIS) {
      for (const id of this.nhiCache.keys()) {
        if (this.nhiCache.size <= MAX_KNOWN_NHIS) break;
        this.nhiCache.delete(id);
      }
    }
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
      const { outcome } = await this.accept(r, body.toString('utf8').trim());
      // A SET whose jti is on record already is a replay: refused (RFC 8935 §2.3 invalid_request),
      // never applied twice. A transmitter that lost our 202 and retries learns the SET is known;
      // it was applied the first time.
      if (outcome === 'duplicate') throw new SetError('invalid_request', 'a SET with this "jti" was already received (replay)');
      // RFC 8935 §2.2: 202 Accepted, no body (said by Content-Length, or node:http frames the
      // empty body as chunked on a keep-alive connection).
      ctx.res.writeHead(202, { 'cache-control': 'no-store', 'content-length': '0' }).end();
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

  /**
   * Verifies one SET and records it in the next group commit; resolves once it is durably on
   * record (or was already). Throws SetError with its RFC 8935 code.
   */
  async accept(r: ReceiverConfig, jwt: string): Promise<VerifiedSet & { outcome: IngestOutcome }> {
    const receivedAt = this.d.clock.now();
    const set = await this.verify(r, jwt);
    const outcome = await this.ingest.submit(r, set, receivedAt);
    if (outcome === 'duplicate') this.d.audit.record({ type: 'ssf.set_duplicate', actor: `ssf:${r.name}`, data: { jti: set.jti } });
    return { ...set, outcome };
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
        const fast = this.d.checkSignature?.(jwt, alg, key);
        if (fast !== undefined) {
          if (!(await fast)) throw new SetError('authentication_failed', 'the SET signature does not verify');
        } else {
          await compactVerify(jwt, key as Parameters<typeof compactVerify>[1], { algorithms: [alg] });
        }
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
    const expired = setExpiryProblem(payload.exp, now, IAT_SKEW_MS);
    if (expired) throw new SetError('invalid_request', expired);
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

    return { jti: payload.jti, iss: r.issuer, iat: payload.iat, txn: (payload.txn as string | undefined) ?? null, subId, events: evs };
  }

  /**
   * Each event → one internal signal (or a record of an unmapped subject / an event with no
   * action). `known`: which of the batch's candidate NHI ids exist (`nhiCandidates`).
   */
  plan(r: ReceiverConfig, set: VerifiedSet, receivedAt: number, known: ReadonlySet<string>): { inputs: SignalInput[]; audits: AuditInput[] } {
    const inputs: SignalInput[] = [];
    const audits: AuditInput[] = [];
    for (const [type, ev] of Object.entries(set.events)) {
      if (type === EVENT.verification || type === EVENT.streamUpdated) {
        audits.push({
          type: type === EVENT.verification ? 'ssf.verification_received' : 'ssf.stream_updated_received', actor: `ssf:${r.name}`,
          data: { jti: set.jti, ...(typeof ev.status === 'string' ? { status: ev.status } : {}) },
        });
        continue;
      }
      const configured = r.event_actions[type];
      const action = configured ?? defaultEventAction(type, ev);
      const subject = (ev.subject as SubjectId | undefined) ?? set.subId!;
      const target = this.mapSubject(r, subject, known);
      const base = {
        reason: reasonCode(type), source: `ssf:${r.name}`, txn: set.txn, receivedAt,
        data: { set_jti: set.jti, event: type, ...(ev.change_type ? { change_type: ev.change_type } : {}), ...(ev.current_level ? { current_level: ev.current_level } : {}) },
      };
      if (action === 'ignore') {
        // A known event that asks for nothing (e.g. credential-change `create`): on record in the audit log only.
        audits.push({ type: 'ssf.event_ignored', actor: `ssf:${r.name}`, subject: target.nhiId ?? null, data: { ...base.data, txn: set.txn } });
      } else if (!target.nhiId && !target.jti) {
        inputs.push({ ...base, action, severity: SEVERITY[action], recordOnly: 'unmapped', data: { ...base.data, subject } });
      } else {
        inputs.push({ ...base, ...target, action, severity: SEVERITY[action] });
      }
    }
    return { inputs, audits };
  }

  /** The NHI ids `mapSubject` would look up for this SET's subjects (one query for a whole batch). */
  nhiCandidates(r: ReceiverConfig, set: VerifiedSet, out: Set<string>): void {
    const visit = (s: SubjectId | undefined): void => {
      if (!s || typeof s !== 'object') return;
      if (s.format === 'opaque' && typeof s.id === 'string') out.add(s.id);
      else if (s.format === 'iss_sub' && s.iss === this.d.issuer() && typeof s.sub === 'string') out.add(s.sub);
      else if (s.format === 'aliases' && Array.isArray(s.identifiers)) for (const a of s.identifiers as SubjectId[]) visit(a);
      else if (s.format === 'complex') for (const m of ['session', 'application', 'user', 'device'] as const) visit(s[m] as SubjectId | undefined);
    };
    for (const ev of Object.values(set.events)) visit((ev.subject as SubjectId | undefined) ?? set.subId);
  }

  /** RFC 9493 subject → NHI: opaque id = NHI id; email / iss_sub through `subjects`; Mandate's own jwt_id → a token. */
  mapSubject(r: ReceiverConfig, s: SubjectId, known: ReadonlySet<string>): { nhiId?: string; jti?: string } {
    const nhi = (id: unknown) => (typeof id === 'string' && known.has(id) ? id : undefined);
    switch (s.format) {
      case 'opaque': {
        const id = nhi(s.id);
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
          const id = nhi(s.sub);
          return id ? { nhiId: id } : {};
        }
        return {};
      }
      case 'jwt_id':
        return s.iss === this.d.issuer() && typeof s.jti === 'string' ? { jti: s.jti } : {};
      case 'aliases':
        for (const a of s.identifiers as SubjectId[]) {
          const t = this.mapSubject(r, a, known);
          if (t.nhiId || t.jti) return t;
        }
        return {};
      case 'complex': {
        const out: { nhiId?: string; jti?: string } = {};
        for (const m of ['session', 'application', 'user', 'device'] as const) {
          if (!s[m]) continue;
          const t = this.mapSubject(r, s[m] as SubjectId, known);
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
    const body = { ack: state.ack, ...(Object.keys(state.setErrs).length ? { setErrs: state.setErrs } : {}), maxEvents: 100, returnImmediately: true };
    // The outbound guard: https (loopback http in development), the address checked and pinned,
    // no redirects, 4 MiB and 30 s caps; its errors are in Mandate's words.
    const res = await this.d.outbound.request(r.poll_url!, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json', ...(r.authorization ? { authorization: this.d.resolveSecret(r.authorization) } : {}) },
      body: JSON.stringify(body),
      maxBytes: 4 * 1024 * 1024,
      timeoutMs: 30_000,
    });
    if (res.status !== 200) throw new Error(`poll answered HTTP ${res.status}`);
    const text = res.body.toString('utf8');
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
    // Verified concurrently, then handed to the group commit in the transmitter's order (one
    // commit for the whole answer). A copy of a SET already accepted (our acknowledgement was
    // lost) is acknowledged again.
    const receivedAt = this.d.clock.now();
    const entries = Object.entries(sets);
    const verified = await Promise.all(entries.map(([, jwt]) => (typeof jwt === 'string' ? this.verify(r, jwt) : Promise.reject(new SetError('invalid_request', 'not a SET'))).then(
      (set) => ({ set }), (err: unknown) => ({ err }),
    )));
    await Promise.all(entries.map(async ([jti], i) => {
      const v = verified[i]!;
      try {
        if ('err' in v) throw v.err;
        if ((await this.ingest.submit(r, v.set, receivedAt)) === 'duplicate') {
          this.d.audit.record({ type: 'ssf.set_duplicate', actor: `ssf:${r.name}`, data: { jti: v.set.jti } });
        }
        state.ack.push(jti);
      } catch (err) {
        if (err instanceof SetError) {
          state.setErrs[jti] = { err: err.err, description: err.description };
          this.d.audit.record({ type: 'ssf.set_refused', actor: `ssf:${r.name}`, decision: 'deny', data: { err: err.err, description: err.description } });
        } else {
          this.d.logger.warn({ receiver: r.name, err: (err as Error).message }, 'SET not processed; it will come again');
        }
      }
    }));
    return doc.moreAvailable === true || state.ack.length > 0 || Object.keys(state.setErrs).length > 0;
  }
}

interface PollState {
  ack: string[];
  setErrs: Record<string, { err: string; description: string }>;
}
