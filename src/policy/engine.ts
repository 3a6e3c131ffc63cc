import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import { BoundedMap, MandateError } from '../core/index.js';
import { ACTION_TYPE, CEDAR_SCHEMA_TEXT, MCP_METHODS, MCP_TRANSPORT_ACTIONS, NHI_TYPE, TOOL_TYPE } from './schema.js';
import { ArgsRefusedError, checkCedarArgs, toCedarArgs, type CedarValue } from './values.js';

/** What the proxy asks about one call, after it has verified the token, the declaration and the scope. */
export interface PolicyRequest {
  nhi: { id: string; class: string; owner: string; system: string; environment: string; tier: string };
  tool: { id: string; kind: 'http' | 'mcp' };
  /** A declared action name (e.g. "delete_ticket"), or "mcp:<method>" for MCP protocol methods (e.g. "mcp:resources/read"). */
  action: string;
  /** The action's risk tier (token profile name), null for MCP protocol methods. */
  tier: string | null;
  /** Call arguments: MCP tools/call arguments, or for HTTP the path parameters + query. May be null. */
  args: Record<string, unknown> | null;
  /**
   * A digest of `args`. The decision cache keys on it instead of on the arguments, so it must
   * change whenever they do; a call with arguments and no digest is not cached.
   */
  argsDigest: string | null;
  endpoint?: { method: string; path: string };
  /** 0..100; rounded and clamped, and a value that is not a number counts as 100 (fail closed). */
  riskScore: number;
  /** A human approved this exact call. */
  approved: boolean;
  /** The RFC 8693 act.sub, if any. */
  onBehalfOf: string | null;
  runId: string | null;
  /** Epoch ms. Policies see it at minute resolution (see `context.time`). */
  now: number;
}

export interface PolicyDecision {
  decision: 'allow' | 'deny' | 'approval_required';
  /** ids of the determining policies (the @id annotation, else `<source>:<line>`) */
  policies: string[];
  /**
   * Cedar evaluation errors (`<policy id>: <message>`) and, on a fail-closed deny, what failed.
   * A `permit` that errors does not apply (Cedar semantics). A `forbid` that errors counts as
   * satisfied (Mandate's rule, fail closed): arguments are untyped and chosen by the agent, so
   * `context.args.amount > 1000` must not be skipped because an agent sent `"amount": "5000"`.
   */
  errors: string[];
  cached: boolean;
}

export interface PolicyLoadOptions {
  /** Policy files, read once here. Relative paths are relative to the process's working directory. */
  files: string[];
  /** Policy texts given directly (tests, the admin API); `name` stands in for the file name in errors and ids. */
  sources?: { name: string; text: string }[];
  /** Add `@id("mandate.base") permit(principal, action, resource);` (default true). */
  basePermit?: boolean;
  /**
   * The action names the tools declare. When given, a policy that names any other action
   * (a typo) fails validation; when absent, the actions the policies name are accepted as
   * they are. The MCP protocol methods (`mcp:<method>`) are always declared.
   */
  actions?: string[];
  /** Decisions kept in the LRU cache (default 10,000; 0 turns the cache off). */
  cacheSize?: number;
  /**
   * The shortcuts of {@link PolicyEngine.evaluate} (default true). False sends every call that
   * misses the cache to Cedar: for the tests that compare the shortcuts with Cedar, and for
   * bench/policy, which measures Cedar.
   */
  fastPaths?: boolean;
}

/** A policy set that cannot be loaded. `problems` has one line per problem, each naming the source and line. */
export class PolicyError extends MandateError {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super('ERR_POLICY_INVALID', `invalid policy:\n  - ${problems.join('\n  - ')}`);
    this.problems = problems;
  }
}

/** A policy file larger than this is refused before it is read. */
export const MAX_POLICY_FILE_BYTES = 1024 * 1024;
/** All policy texts together may not be larger than this. */
export const MAX_POLICY_TOTAL_BYTES = 4 * 1024 * 1024;
export const BASE_POLICY_ID = 'mandate.base';
const BASE_POLICY_TEXT = `@id("${BASE_POLICY_ID}") permit(principal, action, resource);`;
/** Per-action policy subsets prepared in Cedar; beyond this many actions the full set is used. */
const MAX_ACTION_SETS = 512;

interface LoadedPolicy {
  id: string;
  effect: 'permit' | 'forbid';
  approval: boolean;
  text: string;
  /** The actions its scope names, or null when the scope is `action` (every action). */
  actions: string[] | null;
  /**
   * Whether its conditions may read the arguments (`context.args`, `context.args_digest`, or
   * `context` as a whole). Decided on Cedar's JSON form of the policy, conservatively: any use
   * of `context` other than reading one of its other attributes counts.
   */
  readsArgs: boolean;
}

/** What can decide a call to one action: the policies whose scope can match it. */
interface ActionPlan {
  /** No policy but the base permit can apply: Cedar's answer is always that permit. */
  onlyBase: boolean;
  /** No policy that can apply reads the arguments: the decision does not depend on them. */
  argsFree: boolean;
  /** Some `@approval("required")` forbid can apply: a call of the action may be held for a human. */
  mayHold: boolean;
}

type CedarResult = { decision: 'allow' | 'deny'; reasons: string[]; errors: { policyId: string; message: string }[] };

/**
 * Mandate's Cedar policy engine: the last check the proxy makes on every call (docs/architecture.md,
 * "Policy (Cedar)"). Load once with {@link PolicyEngine.load}; {@link PolicyEngine.evaluate} is
 * synchronous and never throws (anything unexpected is a deny).
 */
export class PolicyEngine {
  /** sha256 (hex) of the policy sources, their names and the base-permit setting. */
  readonly version: string;
  /** Policies loaded from files and sources (the built-in base permit is not counted). */
  readonly policyCount: number;

  private readonly byId: ReadonlyMap<string, LoadedPolicy>;
  private readonly policies: readonly LoadedPolicy[];
  private readonly hasApproval: boolean;
  /** Prepared Cedar policy-set ids, per `<variant>\0<action>`. */
  private readonly prepared = new Map<string, string>();
  private readonly cache: BoundedMap<string, Omit<PolicyDecision, 'cached'>>;
  private readonly cacheSize: number;
  /** Per action (at most MAX_ACTION_SETS of them; beyond, plans are computed per call). */
  private readonly plans = new Map<string, ActionPlan>();

  private readonly fastPaths: boolean;

  private constructor(version: string, policies: LoadedPolicy[], cacheSize: number, fastPaths: boolean) {
    this.fastPaths = fastPaths;
    this.version = version;
    this.policies = policies;
    this.policyCount = policies.filter((p) => p.id !== BASE_POLICY_ID).length;
    this.byId = new Map(policies.map((p) => [p.id, p]));
    this.hasApproval = policies.some((p) => p.approval);
    this.cacheSize = cacheSize;
    this.cache = new BoundedMap(cacheSize, { lru: true });
  }

  /**
   * Reads, parses and validates the policies against the schema (`schema.cedarschema`) and
   * prepares them in Cedar. Throws {@link PolicyError} naming the file and line of every
   * problem: unreadable or oversized file, syntax, validation, duplicate `@id`, a misplaced
   * `@approval`, templates.
   */
  static async load(opts: PolicyLoadOptions): Promise<PolicyEngine> {
    const basePermit = opts.basePermit ?? true;
    const sources: { name: string; text: string }[] = [];
    const problems: string[] = [];
    let total = 0;
    for (const file of opts.files) {
      try {
        const st = await stat(file);
        if (!st.isFile()) throw new Error('not a regular file');
        if (st.size > MAX_POLICY_FILE_BYTES) {
          problems.push(`${file}: ${st.size} bytes is over the ${MAX_POLICY_FILE_BYTES} byte limit`);
          continue;
        }
        sources.push({ name: file, text: await readFile(file, 'utf8') });
      } catch (err) {
        problems.push(`${file}: cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
      }
    }
    for (const s of opts.sources ?? []) {
      if (Buffer.byteLength(s.text) > MAX_POLICY_FILE_BYTES) problems.push(`${s.name}: over the ${MAX_POLICY_FILE_BYTES} byte limit`);
      else sources.push(s);
    }
    for (const s of sources) total += Buffer.byteLength(s.text);
    if (total > MAX_POLICY_TOTAL_BYTES) problems.push(`policies: ${total} bytes in all is over the ${MAX_POLICY_TOTAL_BYTES} byte limit`);
    if (problems.length > 0) throw new PolicyError(problems);

    const policies: LoadedPolicy[] = [];
    const where = new Map<string, string>();
    const named = new Set<string>();
    for (const s of sources) {
      for (const p of splitSource(s, problems)) {
        const at = `${s.name}:${p.line}`;
        if (p.explicitId) {
          if (p.id.startsWith('mandate.')) problems.push(`${at}: @id("${p.id}"): ids starting with "mandate." are reserved for built-in policies`);
          else if (named.has(p.id)) problems.push(`${at}: duplicate @id("${p.id}"), first at ${where.get(p.id)}: each policy id must be unique`);
          named.add(p.id);
        } else if (where.has(p.id)) {
          p.id = `${p.id}:${p.column}`; // two unnamed policies on one line
        }
        where.set(p.id, at);
        policies.push(p);
      }
    }
    if (problems.length > 0) throw new PolicyError(problems);

    // Validation runs per source on its own text, so that Cedar's source offsets are offsets
    // into that file and can be reported as lines.
    const actions = new Set<string>([...MCP_METHODS, ...MCP_TRANSPORT_ACTIONS, ...(opts.actions ?? policies.flatMap((p) => p.actions ?? []))]);
    const schema = schemaWith([...actions]);
    for (const s of sources) validateSource(s, schema, problems);
    if (problems.length > 0) throw new PolicyError(problems);

    if (basePermit) policies.unshift({ id: BASE_POLICY_ID, effect: 'permit', approval: false, text: BASE_POLICY_TEXT, actions: null, readsArgs: false });
    const h = createHash('sha256').update(`mandate-policy-v1\0base=${basePermit}\0`);
    for (const s of sources) h.update(`${s.name}\0${s.text}\0`);
    const engine = new PolicyEngine(h.digest('hex'), policies, Math.max(0, opts.cacheSize ?? 10_000), opts.fastPaths ?? true);
    engine.prepare('all', '*'); // a set that cannot be prepared fails the load, not the first call
    return engine;
  }

  /**
   * Decides one call. Synchronous; never throws: anything unexpected is a deny with the error.
   *
   * Two shortcuts keep Cedar off the hot path without changing any decision (each is checked
   * against Cedar itself in test/policy/engine.test.ts): when the base permit is the only
   * policy that can apply to the action, the answer is that permit (what Cedar would say);
   * when no policy that can apply reads the arguments, the cache key leaves the args digest
   * out, so calls that differ only in their arguments share one decision. In both cases the
   * arguments are still converted, so that arguments Cedar must never see are refused as before.
   */
  evaluate(req: PolicyRequest): PolicyDecision {
    try {
      const plan = this.planFor(req.action);
      if (plan.onlyBase || plan.argsFree) checkCedarArgs(req.args); // throws ArgsRefusedError as decide() would
      if (plan.onlyBase) return { ...BASE_ALLOW, cached: false };
      const key = this.cacheSize > 0 ? cacheKey(req, plan.argsFree) : undefined;
      if (key !== undefined) {
        const hit = this.cache.get(key); // LRU: a hit becomes the newest entry
        if (hit) return { ...hit, cached: true };
      }
      const d = this.decide(req);
      if (key !== undefined) {
        this.cache.set(key, d);
      }
      return { ...d, cached: false };
    } catch (err) {
      const msg = err instanceof ArgsRefusedError ? err.message : `policy engine failed: ${err instanceof Error ? err.message : String(err)}`;
      return { decision: 'deny', policies: [], errors: [msg], cached: false };
    }
  }

  /**
   * Whether a call of `action` can be held for a human by policy: some `@approval("required")`
   * forbid's scope can match it (names it, or every action). Decided from the scopes alone, so it
   * is known before the call's arguments are: the proxy then binds the whole call (an HTTP body
   * too) to the approval before it asks Cedar, and an approved `{"amount":1}` cannot pass as
   * `{"amount":1000000}`.
   */
  mayHold(action: string): boolean {
    return this.hasApproval && this.planFor(action).mayHold;
  }

  /** Which shortcuts hold for an action (see evaluate). */
  private planFor(action: string): ActionPlan {
    const known = this.plans.get(action);
    if (known !== undefined) return known;
    let onlyBase = true;
    let argsFree = true;
    let base = false;
    let mayHold = false;
    for (const p of this.policies) {
      if (p.actions !== null && !p.actions.includes(action)) continue;
      if (p.id === BASE_POLICY_ID) base = true;
      else onlyBase = false;
      if (p.readsArgs) argsFree = false;
      if (p.approval) mayHold = true;
    }
    const plan: ActionPlan = this.fastPaths ? { onlyBase: onlyBase && base, argsFree, mayHold } : { onlyBase: false, argsFree: false, mayHold };
    if (this.plans.size < MAX_ACTION_SETS) this.plans.set(action, plan);
    return plan;
  }

  private decide(req: PolicyRequest): Omit<PolicyDecision, 'cached'> {
    const call = cedarCall(req);
    const a = this.authorize('all', req.action, call);
    const errors = a.errors.map((e) => `${e.policyId}: ${e.message}`);
    const erroredForbids = this.erroredForbids(a);
    if (a.decision === 'allow' && erroredForbids.length === 0) return frozen('allow', a.reasons, errors);
    const determining = [...new Set([...(a.decision === 'deny' ? a.reasons : []), ...erroredForbids])];
    if (determining.length > 0 && determining.every((id) => this.byId.get(id)?.approval === true)) {
      // Every forbid that decided asks for approval; but approval only helps if the call
      // would otherwise be allowed (some permit applies), which the set without them tells.
      const b = this.authorize('noApproval', req.action, call);
      if (b.decision === 'allow' && this.erroredForbids(b).length === 0) return frozen('approval_required', determining, errors);
      const bDetermining = [...new Set([...(b.decision === 'deny' ? b.reasons : []), ...this.erroredForbids(b)])];
      return frozen('deny', bDetermining, errors);
    }
    return frozen('deny', determining, errors);
  }

  private erroredForbids(r: CedarResult): string[] {
    return r.errors.filter((e) => this.byId.get(e.policyId)?.effect === 'forbid').map((e) => e.policyId);
  }

  private authorize(variant: 'all' | 'noApproval', action: string, call: Omit<cedar.StatefulAuthorizationCall, 'preparsedPolicySetId'>): CedarResult {
    const setId = this.prepare(variant, action);
    const ans = cedar.statefulIsAuthorized({ ...call, preparsedPolicySetId: setId });
    if (ans.type !== 'success') throw new Error(ans.errors.map((e) => e.message).join('; '));
    const { decision, diagnostics } = ans.response;
    return { decision, reasons: diagnostics.reason, errors: diagnostics.errors.map((e) => ({ policyId: e.policyId, message: e.error.message })) };
  }

  /**
   * Prepares (once) the policies that can apply to `action` in Cedar and returns the set's id.
   * Cedar evaluates every policy in a set on every call, and cedar-wasm's cost grows with the
   * set (about 5 µs a policy here), so each action gets only the policies whose scope can
   * match it: a policy whose scope names other actions can neither be satisfied nor error
   * for this one, so leaving it out changes no decision. `noApproval` leaves out the
   * `@approval("required")` forbids as well.
   */
  private prepare(variant: 'all' | 'noApproval', action: string): string {
    const scoped = this.prepared.size < MAX_ACTION_SETS * 2 || this.prepared.has(`${variant}\0${action}`) ? action : '*';
    const k = `${variant}\0${scoped}`;
    const existing = this.prepared.get(k);
    if (existing !== undefined) return existing;
    const set: Record<string, string> = {};
    for (const p of this.policies) {
      if (variant === 'noApproval' && p.approval) continue;
      if (scoped !== '*' && p.actions !== null && !p.actions.includes(scoped)) continue;
      set[p.id] = p.text;
    }
    // Cedar keeps prepared sets in a process-wide table by id; the id carries the version, so
    // engines with different policies never share one, and reloading the same policies reuses it.
    const id = `${this.version}:${k}`;
    const r = cedar.preparsePolicySet(id, { staticPolicies: set });
    if (r.type !== 'success') throw new Error(`cannot prepare policies: ${r.errors.map((e) => e.message).join('; ')}`);
    this.prepared.set(k, id);
    return id;
  }
}

function frozen(decision: PolicyDecision['decision'], policies: string[], errors: string[]): Omit<PolicyDecision, 'cached'> {
  // Cedar reports policies in no fixed order; sorted, equal decisions compare equal.
  return Object.freeze({ decision, policies: Object.freeze([...policies].sort()) as string[], errors: Object.freeze([...errors].sort()) as string[] });
}

/** Cedar's answer when the base permit is the only policy that can apply: it applies, nothing errors. */
const BASE_ALLOW = frozen('allow', [BASE_POLICY_ID], []);

/**
 * Everything a decision depends on (the engine's version is implicit: one cache per engine).
 * `argsFree`: no policy that can apply to the action reads the arguments, so they are left out.
 */
function cacheKey(req: PolicyRequest, argsFree: boolean): string | undefined {
  // Without a digest the arguments would have to be the key; such calls are rare and are not cached.
  if (!argsFree && req.argsDigest === null && req.args !== null && Object.keys(req.args).length > 0) return undefined;
  const n = req.nhi;
  return JSON.stringify([
    n.id, n.class, n.owner, n.system, n.environment, n.tier, req.tool.id, req.tool.kind, req.action, req.tier, argsFree ? null : req.argsDigest,
    req.endpoint?.method ?? null, req.endpoint?.path ?? null, riskOf(req.riskScore), req.approved === true, req.onBehalfOf, req.runId,
    Math.floor(req.now / 60_000),
  ]);
}

function riskOf(score: number): number {
  return Number.isFinite(score) ? Math.min(100, Math.max(0, Math.round(score))) : 100;
}

/** The Cedar request: entities, ids and context of the model in schema.cedarschema. */
function cedarCall(req: PolicyRequest): Omit<cedar.StatefulAuthorizationCall, 'preparsedPolicySetId'> {
  // Minute resolution for every time attribute, so that the decision is a function of the cache key.
  const minute = Math.floor(req.now / 60_000);
  const at = new Date(minute * 60_000);
  const context: Record<string, CedarValue> = {
    tier: req.tier ?? '',
    args: toCedarArgs(req.args),
    args_digest: req.argsDigest ?? '',
    risk_score: riskOf(req.riskScore),
    approved: req.approved === true,
    on_behalf_of: req.onBehalfOf ?? '',
    run_id: req.runId ?? '',
    time: { epoch_s: minute * 60, hour: at.getUTCHours(), weekday: at.getUTCDay() },
  };
  if (req.endpoint) context.endpoint = { method: req.endpoint.method, path: req.endpoint.path };
  const { nhi, tool } = req;
  return {
    principal: { type: NHI_TYPE, id: nhi.id },
    action: { type: ACTION_TYPE, id: req.action },
    resource: { type: TOOL_TYPE, id: tool.id },
    context,
    entities: [
      { uid: { type: NHI_TYPE, id: nhi.id }, attrs: { class: nhi.class, owner: nhi.owner, system: nhi.system, environment: nhi.environment, tier: nhi.tier }, parents: [] },
      { uid: { type: TOOL_TYPE, id: tool.id }, attrs: { kind: tool.kind }, parents: [] },
    ],
  };
}

// ---------------------------------------------------------------------------------------------
// Loading

interface SplitPolicy extends LoadedPolicy {
  explicitId: boolean;
  line: number;
  column: number;
}

/** Parses one source and splits it into policies with their ids, annotations, lines and actions. */
function splitSource(s: { name: string; text: string }, problems: string[]): SplitPolicy[] {
  const parts = cedar.policySetTextToParts(s.text);
  if (parts.type !== 'success') {
    for (const e of parts.errors) problems.push(describe(s, e));
    return [];
  }
  if (parts.policy_templates.length > 0) {
    const first = s.text.indexOf(parts.policy_templates[0]!);
    problems.push(`${s.name}:${lineCol(s.text, Math.max(0, first)).line}: templates (?principal, ?resource) are not supported; write the entity`);
    return [];
  }
  // Cedar names the policies of a text policy0, policy1, … in order, and policySetTextToParts
  // returns them sorted by that name as a string (policy0, policy1, policy10, policy2, …).
  const names = parts.policies.map((_, i) => `policy${i}`).sort();
  const byName = new Map(names.map((n, i) => [n, parts.policies[i]!]));
  const out: SplitPolicy[] = [];
  let cursor = 0;
  for (let i = 0; i < parts.policies.length; i++) {
    const text = byName.get(`policy${i}`)!;
    const offset = s.text.indexOf(text, cursor);
    const { line, column } = offset >= 0 ? lineCol(s.text, offset) : { line: 0, column: i };
    if (offset >= 0) cursor = offset + text.length;
    const json = cedar.policyToJson(text);
    if (json.type !== 'success') {
      for (const e of json.errors) problems.push(describe(s, e, offset));
      continue;
    }
    const { effect, annotations = {}, action, conditions } = json.json;
    const at = `${s.name}:${line}`;
    let approval = false;
    if ('approval' in annotations) {
      if (annotations.approval !== 'required') problems.push(`${at}: @approval("${annotations.approval}"): the only value is "required"`);
      else if (effect !== 'forbid') problems.push(`${at}: @approval("required") applies to forbid policies (a permit cannot require approval)`);
      else approval = true;
    }
    const explicitId = typeof annotations.id === 'string' && annotations.id !== '';
    out.push({ id: explicitId ? annotations.id! : at, explicitId, effect, approval, text, actions: actionsOf(action), readsArgs: readsArgs(conditions), line, column });
  }
  return out;
}

/** Context attributes that carry the arguments (or stand for them). */
const ARGS_ATTRS: ReadonlySet<string> = new Set(['args', 'args_digest']);

/**
 * Whether an expression in Cedar's JSON form (EST) may read the arguments. Conservative: the
 * only use of `context` that does not count is reading (`.` or `has`) one of its attributes
 * other than `args` and `args_digest`; `context` anywhere else (compared whole, put in a set
 * or a record, …) counts, and so does anything this walker does not understand that
 * contains it, since every node is searched.
 */
function readsArgs(node: unknown): boolean {
  if (node === null || typeof node !== 'object') return false;
  if (Array.isArray(node)) return node.some(readsArgs);
  const o = node as Record<string, unknown>;
  for (const op of ['.', 'has']) {
    const inner = o[op] as { left?: unknown; attr?: unknown } | undefined;
    if (inner && typeof inner === 'object' && Object.keys(o).length === 1 && isContextVar(inner.left)) {
      return typeof inner.attr !== 'string' || ARGS_ATTRS.has(inner.attr);
    }
  }
  if (isContextVar(o)) return true;
  return Object.values(o).some(readsArgs);
}

function isContextVar(v: unknown): boolean {
  return v !== null && typeof v === 'object' && (v as { Var?: unknown }).Var === 'context';
}

/** The Mandate action names a scope constrains to, or null for every action. */
function actionsOf(c: cedar.ActionConstraint): string[] | null {
  if (c.op === 'All') return null;
  const uids = 'entities' in c ? c.entities : 'entity' in c ? [c.entity] : [];
  return uids.map((u) => ('__entity' in u ? u.__entity : u)).filter((u) => u.type === ACTION_TYPE).map((u) => u.id);
}

let baseSchemaJson: cedar.SchemaJson<string> | undefined;

/** The schema with the given actions declared, each applying to (Nhi, Tool, Context). */
function schemaWith(actions: string[]): cedar.SchemaJson<string> {
  if (!baseSchemaJson) {
    const r = cedar.schemaToJson(CEDAR_SCHEMA_TEXT);
    if (r.type !== 'success') throw new Error(`schema.cedarschema: ${r.errors.map((e) => e.message).join('; ')}`);
    baseSchemaJson = r.json;
  }
  const json = structuredClone(baseSchemaJson);
  const ns = json.Mandate!;
  ns.actions = Object.fromEntries(
    actions.map((a) => [a, { appliesTo: { principalTypes: ['Nhi'], resourceTypes: ['Tool'], context: { type: 'Context' } } }]),
  );
  return json;
}

/**
 * `context.args` is declared as an empty record because every action's arguments differ, so
 * the validator reports every `context.args.x` as unknown; those reports are dropped here
 * and the access is checked at evaluation (where an error in a forbid denies).
 */
const ARGS_ACCESS = /^for policy `[^`]*`, attribute `args\.[^`]+` in context for .+ not found$/;

function validateSource(s: { name: string; text: string }, schema: cedar.SchemaJson<string>, problems: string[]): void {
  const r = cedar.validate({ schema, policies: { staticPolicies: s.text }, validationSettings: { mode: 'strict' } });
  if (r.type !== 'success') {
    for (const e of r.errors) problems.push(describe(s, e));
    return;
  }
  const seen = new Set<string>();
  for (const v of r.validationErrors) {
    if (ARGS_ACCESS.test(v.error.message)) continue;
    const line = describe(s, v.error);
    if (!seen.has(line)) problems.push(line);
    seen.add(line);
  }
}

/** `file:line:column: message (help)`, from Cedar's offsets into the source text. */
function describe(s: { name: string; text: string }, e: cedar.DetailedError, fallbackOffset = -1): string {
  const loc = e.sourceLocations?.[0];
  const offset = loc ? loc.start : fallbackOffset;
  const pos = offset < 0 ? undefined : loc ? lineColOfByte(s.text, offset) : lineCol(s.text, offset);
  const where = pos ? `${s.name}:${pos.line}:${pos.column}` : s.name;
  const message = e.message.replace(/^for policy `[^`]*`, /, '').replace(/^failed to parse policies from string: /, '');
  const related = (e.related ?? []).map((r) => r.message).filter((m) => m && m !== message);
  return `${where}: ${message}${e.help ? ` (${e.help})` : ''}${related.length ? `; ${related.join('; ')}` : ''}`;
}

/** Cedar's source offsets count UTF-8 bytes (Rust strings); JavaScript's count UTF-16 units. */
function lineColOfByte(text: string, byteOffset: number): { line: number; column: number } {
  const prefix = Buffer.from(text, 'utf8').subarray(0, byteOffset).toString('utf8');
  return lineCol(prefix, prefix.length);
}

function lineCol(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let last = -1;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      last = i;
    }
  }
  return { line, column: offset - last };
}
