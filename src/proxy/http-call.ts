import type { IncomingMessage } from 'node:http';
import { OAuthError, argsDigest, bodyDigest, readBody } from '../core/index.js';
import type { PolicyEngine } from '../policy/index.js';
import { ambiguousQuery, bodyMayOverrideMethod, bodyMethodOverride, mediaTypeOf, unreadableBody } from './actions.js';
import type { Call } from './call.js';
import type { Checks } from './checks.js';
import { deniedBy, type Decisions } from './decide.js';
import type { Forwarder } from './forwarding.js';
import { normalizePath } from './path.js';
import type { CallRecords } from './records.js';

/** How an HTTP call's body goes to the tool (HttpCalls.reading): streamed, or read whole first and why. */
const STREAM = 0;
const READ = 1;
/** The call can be held for approval: its body's digest is part of what is approved. */
const HELD = 2;
/** Its media type is one frameworks read `_method` from: checked for a method override. */
const SCAN = 4;

/**
 * An HTTP tool's call, after the checks every call passes (pipeline.ts): the declared action of
 * its method and normalized path, scope and step-down, its query and body read one way only,
 * Cedar and the approval gate, `tool.call_started` committed, then forwarded with the tool's
 * credential and its outcome recorded.
 */
export class HttpCalls {
  constructor(
    private readonly policy: PolicyEngine,
    private readonly checks: Checks,
    private readonly decisions: Decisions,
    private readonly records: CallRecords,
    private readonly forwarder: Forwarder,
  ) {}

  async run(call: Call): Promise<void> {
    const params = this.action(call); // declared action, scope and step-down, the query read one way
    const args: Record<string, unknown> = { params, query: queryObject(call.rawQuery) };
    call.args = args;
    const req = call.ctx.req;
    let body: Buffer | IncomingMessage | undefined;
    if (hasBody(req)) {
      const reading = this.reading(call); // size, media type; streamed or read whole
      if (reading === STREAM) {
        body = req;
      } else {
        body = await readBody(req, call.rt.tool.max_body_bytes);
        this.checkBody(call, body, reading);
      }
    }
    call.argsDigest = args.body === undefined ? httpArgsDigest(call, args) : argsDigest(args);
    // Cedar, then the approval gate when the call is held.
    const decision = await this.decisions.decide(call, { method: call.method, path: call.declared!.path ?? (call.toolPath || '/') });
    if (decision.decision !== 'allow') throw deniedBy(decision);

    const pathAndQuery = this.forwarder.target(call, call.toolPath, call.rawQuery);
    const headers = this.forwarder.headers(call);
    await this.records.started(call, [call]);
    this.records.called(call, await this.forwarder.forward(call, pathAndQuery, headers, body));
  }

  /**
   * The declared action of the method and the normalized path (`/tools/x` and `/tools/x/` both
   * mean the tool's root; the tool gets exactly what was asked), in the token's scope and not
   * stepped down; a query two servers would read two ways is refused, since what the policy
   * decides on is what the tool gets. Returns the path template's parameters.
   */
  private action(call: Call): Record<string, string> {
    const rt = call.rt;
    const path = call.rawRest === '' ? '' : normalizePath(call.rawRest);
    call.toolPath = path;
    call.path = path || '/';
    const m = rt.matcher.matchHttp(call.method, path || '/');
    if (!m) throw new OAuthError('access_denied', `no declared action of ${rt.tool.id} matches ${call.method} ${call.path}`, 403);
    call.action = m.action.name;
    call.declared = m.action;
    this.checks.inScope(call, m.action);
    const ambiguous = ambiguousQuery(call.rawQuery);
    if (ambiguous) throw new OAuthError('invalid_request', `${ambiguous}: refused, since the policy and ${rt.tool.id} could read it differently`, 400);
    return m.params;
  }

  /**
   * A body over max_body_bytes by its declared length is refused. It is read whole (capped)
   * before anything is sent when:
   * - the call can be held (its tier, a step-up, or an `@approval` policy that can apply): it is
   *   bound to its body too, digested before the decision, so other bytes are another call;
   * - its length is not declared (chunked): a body over max_body_bytes must not reach the tool
   *   in part before the cap is found;
   * - it is of a type frameworks read `_method` from: a method override there is refused as in
   *   a header or the query.
   * Otherwise it streams to the tool as it comes.
   */
  private reading(call: Call): number {
    const req = call.ctx.req;
    const max = call.rt.tool.max_body_bytes;
    const declared = Number(req.headers['content-length'] ?? NaN);
    if (Number.isFinite(declared) && declared > max) throw new OAuthError('invalid_request', `request body is larger than ${max} bytes`, 413);
    const action = call.declared!;
    const held = this.checks.holdsForTier(call, action) || this.policy.mayHold(action.name);
    const scan = bodyMayOverrideMethod(mediaTypeOf(req.headers['content-type']));
    if (scan) {
      const unreadable = unreadableBody(req.headers);
      if (unreadable) throw new OAuthError('invalid_request', `${unreadable}: refused, since the proxy checks such bodies for a method override`, 415);
    }
    if (!held && !scan && Number.isFinite(declared)) return STREAM;
    return READ | (held ? HELD : 0) | (scan ? SCAN : 0);
  }

  /** The body read whole: no method override in it; a call that can be held is bound to its bytes. */
  private checkBody(call: Call, whole: Buffer, reading: number): void {
    const headers = call.ctx.req.headers;
    if (reading & SCAN) {
      const override = bodyMethodOverride(whole, mediaTypeOf(headers['content-type']));
      if (override) throw new OAuthError('invalid_request', `method override (${override}) is refused: send the real method`, 400);
    }
    // The approval is for these bytes read this way: as this media type, with this coding.
    if (reading & HELD) call.args!.body = bodyDigest(whole, headerText(headers['content-type']), headerText(headers['content-encoding']));
  }
}

const MAX_DIGESTS_PER_ACTION = 4096;
const MAX_DIGEST_KEY = 1024;

/**
 * argsDigest(args) of an HTTP call whose args are `{ params, query }` only (no body digest),
 * remembered per action by `path?rawQuery`: for one action the normalized path decides the
 * template's params and the raw query the query object, so the key decides the digest (a
 * normalized path has no raw `?`). Saves the canonical JSON and the SHA-256 on repeated calls
 * (a client reading the same items). Bounded per action; long keys are not remembered.
 */
function httpArgsDigest(call: Call, args: Record<string, unknown>): string {
  const key = `${call.toolPath}?${call.rawQuery}`;
  if (key.length > MAX_DIGEST_KEY) return argsDigest(args);
  const rt = call.rt;
  const action = call.declared!;
  let known = rt.argsDigests.get(action);
  if (known === undefined) rt.argsDigests.set(action, (known = new Map()));
  let digest = known.get(key);
  if (digest === undefined) {
    digest = argsDigest(args);
    if (known.size >= MAX_DIGESTS_PER_ACTION) known.clear();
    known.set(key, digest);
  }
  return digest;
}

/**
 * The query of a call without one: shared by every such call (a null-prototype object is made
 * in V8's dictionary mode, a hash table per call otherwise), frozen, since args are only read
 * (digest, policy).
 */
const NO_QUERY: Record<string, string | string[]> = Object.freeze(Object.create(null) as Record<string, string | string[]>);

/** The query as an object for policies: a repeated parameter becomes a list. */
function queryObject(raw: string): Record<string, string | string[]> {
  if (raw === '') return NO_QUERY;
  // No prototype: a parameter named __proto__ is just a key.
  const out = Object.create(null) as Record<string, string | string[]>;
  for (const [k, v] of new URLSearchParams(raw)) {
    const prev = out[k];
    out[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  return out;
}

/** A request header's value as sent (the first of repeated ones, as node:http keeps it), or null. */
function headerText(v: string | string[] | undefined): string | null {
  return v === undefined ? null : Array.isArray(v) ? (v[0] ?? null) : v;
}

function hasBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}
