import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CEDAR_SCHEMA_TEXT, PolicyEngine, PolicyError, type PolicyRequest } from '../../src/policy/index.js';

/** 2026-03-04 (a Wednesday) 10:15:30 UTC. */
const WED_10_15 = Date.UTC(2026, 2, 4, 10, 15, 30);

function request(over: Partial<PolicyRequest> = {}): PolicyRequest {
  return {
    nhi: { id: 'support-agent', class: 'agent', owner: 'support@example.com', system: 'helpdesk', environment: 'production', tier: 'write' },
    tool: { id: 'tickets', kind: 'http' },
    action: 'list_tickets',
    tier: 'read',
    args: null,
    argsDigest: null,
    endpoint: { method: 'GET', path: '/tickets' },
    riskScore: 0,
    approved: false,
    onBehalfOf: null,
    runId: null,
    now: WED_10_15,
    ...over,
  };
}

const load = (text: string, opts: { basePermit?: boolean; cacheSize?: number; actions?: string[]; fastPaths?: boolean } = {}) =>
  PolicyEngine.load({ files: [], sources: [{ name: 'test.cedar', text }], ...opts });

async function loadError(text: string, opts: { actions?: string[] } = {}): Promise<PolicyError> {
  try {
    await load(text, opts);
  } catch (err) {
    assert.ok(err instanceof PolicyError, String(err));
    return err;
  }
  assert.fail('the policy loaded');
}

describe('policy engine (Cedar)', () => {
  it('the base permit allows what the proxy let through; without it Cedar denies by default', async () => {
    const on = await load('');
    assert.deepEqual(on.evaluate(request()), { decision: 'allow', policies: ['mandate.base'], errors: [], cached: false });
    assert.equal(on.policyCount, 0);
    const off = await load('', { basePermit: false });
    assert.deepEqual(off.evaluate(request()), { decision: 'deny', policies: [], errors: [], cached: false });
    assert.notEqual(on.version, off.version);
    const permit = await load('@id("support-reads") permit(principal, action, resource) when { context.tier == "read" };', { basePermit: false });
    assert.deepEqual(permit.evaluate(request()).policies, ['support-reads']);
    assert.equal(permit.evaluate(request({ action: 'create_ticket', tier: 'write' })).decision, 'deny');
  });

  it('a forbid on principal and resource attributes', async () => {
    const e = await load(`
      @id("no-prod-deletes")
      forbid(principal, action == Mandate::Action::"delete_ticket", resource == Mandate::Tool::"tickets")
      when { principal.environment == "production" && principal.class == "agent" && resource.kind == "http" };`);
    assert.equal(e.policyCount, 1);
    const del = request({ action: 'delete_ticket', tier: 'destructive', endpoint: { method: 'DELETE', path: '/tickets/{id}' } });
    assert.deepEqual(e.evaluate(del), { decision: 'deny', policies: ['no-prod-deletes'], errors: [], cached: false });
    const staging = { ...del, nhi: { ...del.nhi, environment: 'staging' } };
    assert.equal(e.evaluate(staging).decision, 'allow');
    assert.equal(e.evaluate(request()).decision, 'allow');
  });

  it('@approval("required") forbids ask for a human; approved, the call is allowed', async () => {
    const e = await load(`
      @id("big-refunds") @approval("required")
      forbid(principal, action == Mandate::Action::"refund", resource)
      when { context.args.amount > 1000 } unless { context.approved };`);
    const refund = (amount: unknown, approved = false) =>
      e.evaluate(request({ tool: { id: 'payments', kind: 'mcp' }, action: 'refund', tier: 'write', endpoint: undefined, args: { amount, order: 'o-1' }, argsDigest: `d-${String(amount)}`, approved }));
    assert.deepEqual(refund(5000), { decision: 'approval_required', policies: ['big-refunds'], errors: [], cached: false });
    assert.deepEqual(refund(5000, true), { decision: 'allow', policies: ['mandate.base'], errors: [], cached: false });
    assert.equal(refund(20).decision, 'allow');
  });

  it('approval and a plain forbid together deny; approval without any permit denies', async () => {
    const text = `
      @id("big-refunds") @approval("required")
      forbid(principal, action == Mandate::Action::"refund", resource) when { context.args.amount > 1000 } unless { context.approved };
      @id("no-refunds-on-weekends") forbid(principal, action == Mandate::Action::"refund", resource) when { context.time.weekday == 0 || context.time.weekday == 6 };
      @id("runners-never-refund") forbid(principal, action == Mandate::Action::"refund", resource) when { principal.class == "runner" };`;
    const e = await load(text);
    const runner = request({ action: 'refund', tier: 'write', args: { amount: 5000 }, argsDigest: 'a', nhi: { ...request().nhi, class: 'runner' } });
    assert.deepEqual(e.evaluate(runner), { decision: 'deny', policies: ['big-refunds', 'runners-never-refund'].sort(), errors: [], cached: false });
    assert.equal(e.evaluate({ ...runner, approved: true }).decision, 'deny');
    const agent = { ...runner, nhi: request().nhi };
    assert.equal(e.evaluate(agent).decision, 'approval_required');
    // Approval cannot help when nothing permits the call.
    const noBase = await load(text, { basePermit: false });
    assert.deepEqual(noBase.evaluate(agent), { decision: 'deny', policies: [], errors: [], cached: false });
  });

  it('time of day and weekday (UTC), at minute resolution', async () => {
    const e = await load(`
      @id("office-hours-deploys") forbid(principal, action == Mandate::Action::"deploy", resource)
      unless { context.time.hour >= 9 && context.time.hour < 17 && context.time.weekday >= 1 && context.time.weekday <= 5 };
      @id("not-after-2027") forbid(principal, action, resource) when { context.time.epoch_s >= 1798761600 };`);
    const deploy = (now: number) => e.evaluate(request({ action: 'deploy', tier: 'write', now })).decision;
    assert.equal(deploy(WED_10_15), 'allow');
    assert.equal(deploy(Date.UTC(2026, 2, 4, 22, 0)), 'deny'); // Wednesday 22:00
    assert.equal(deploy(Date.UTC(2026, 2, 8, 10, 0)), 'deny'); // Sunday
    assert.equal(deploy(Date.UTC(2026, 2, 4, 16, 59, 59)), 'allow');
    assert.equal(deploy(Date.UTC(2026, 2, 4, 17, 0, 0)), 'deny');
    assert.deepEqual(e.evaluate(request({ now: Date.UTC(2027, 0, 1, 0, 0, 30) })).policies, ['not-after-2027']);
    assert.equal(e.evaluate(request({ now: Date.UTC(2026, 11, 31, 23, 59, 59) })).decision, 'allow');
  });

  it('risk score', async () => {
    const e = await load(`
      @id("risky-writes") forbid(principal, action, resource) when { context.risk_score >= 70 && context.tier != "read" };
      @id("very-risky") @approval("required") forbid(principal, action, resource) when { context.risk_score >= 40 } unless { context.approved };`);
    const write = (riskScore: number) => e.evaluate(request({ action: 'create_ticket', tier: 'write', riskScore }));
    assert.equal(write(10).decision, 'allow');
    assert.equal(write(50).decision, 'approval_required');
    assert.deepEqual(write(80).policies, ['risky-writes', 'very-risky']);
    assert.equal(write(80).decision, 'deny');
    // Not a number counts as the highest risk (fail closed).
    assert.equal(write(Number.NaN).decision, 'deny');
    assert.equal(e.evaluate(request({ riskScore: 90 })).decision, 'approval_required'); // a read: only very-risky
  });

  it('arguments (MCP tools/call), converted to Cedar values', async () => {
    const e = await load(`
      @id("no-secret-spaces") forbid(principal, action == Mandate::Action::"search_docs", resource)
      when { context.args has space && ["hr", "legal"].contains(context.args.space) };
      @id("no-wildcards") forbid(principal, action == Mandate::Action::"search_docs", resource)
      when { context.args has query && context.args.query like "*\\**" };
      @id("nested") forbid(principal, action == Mandate::Action::"search_docs", resource)
      when { context.args has filter && context.args.filter has tags && context.args.filter.tags.contains("confidential") };
      @id("floats-are-strings") forbid(principal, action == Mandate::Action::"search_docs", resource)
      when { context.args has boost && context.args.boost == "1.5" };`);
    const search = (args: Record<string, unknown> | null, i: number) =>
      e.evaluate(request({ tool: { id: 'docs', kind: 'mcp' }, action: 'search_docs', tier: 'read', endpoint: undefined, args, argsDigest: args ? `s${i}` : null }));
    assert.equal(search({ query: 'refunds', space: 'support' }, 1).decision, 'allow');
    assert.deepEqual(search({ query: 'salaries', space: 'hr' }, 2).policies, ['no-secret-spaces']);
    assert.deepEqual(search({ query: 'a*' }, 3).policies, ['no-wildcards']);
    assert.deepEqual(search({ query: 'x', filter: { tags: ['public', 'confidential'], note: null } }, 4).policies, ['nested']);
    assert.deepEqual(search({ boost: 1.5 }, 5).policies, ['floats-are-strings']);
    assert.equal(search({ big: 2 ** 60, none: null, list: [1, null, 'a'] }, 6).decision, 'allow');
    assert.equal(search(null, 7).decision, 'allow');
  });

  it('on behalf of (RFC 8693 act.sub) and run id', async () => {
    const e = await load(`
      @id("delegated-deletes") forbid(principal, action == Mandate::Action::"delete_ticket", resource) when { context.on_behalf_of != "" };
      @id("only-orchestrator") forbid(principal, action, resource) when { context.on_behalf_of != "" && context.on_behalf_of != "orchestrator-agent" };
      @id("runs-only") forbid(principal, action == Mandate::Action::"create_ticket", resource) when { context.run_id == "" };`);
    assert.equal(e.evaluate(request({ onBehalfOf: 'orchestrator-agent' })).decision, 'allow');
    assert.deepEqual(e.evaluate(request({ onBehalfOf: 'rogue-agent' })).policies, ['only-orchestrator']);
    assert.deepEqual(e.evaluate(request({ action: 'delete_ticket', onBehalfOf: 'orchestrator-agent' })).policies, ['delegated-deletes']);
    assert.equal(e.evaluate(request({ action: 'delete_ticket' })).decision, 'allow');
    assert.deepEqual(e.evaluate(request({ action: 'create_ticket' })).policies, ['runs-only']);
    assert.equal(e.evaluate(request({ action: 'create_ticket', runId: 'run-1' })).decision, 'allow');
  });

  it('MCP protocol methods and HTTP endpoints are in the model', async () => {
    const e = await load(`
      @id("no-resource-reads") forbid(principal, action == Mandate::Action::"mcp:resources/read", resource) when { principal.tier == "read" };
      @id("no-deletes") forbid(principal, action, resource) when { context has endpoint && context.endpoint.method == "DELETE" };`);
    const read = request({ tool: { id: 'docs', kind: 'mcp' }, action: 'mcp:resources/read', tier: null, endpoint: undefined, nhi: { ...request().nhi, tier: 'read' } });
    assert.deepEqual(e.evaluate(read).policies, ['no-resource-reads']);
    assert.deepEqual(e.evaluate(request({ action: 'delete_ticket', endpoint: { method: 'DELETE', path: '/tickets/{id}' } })).policies, ['no-deletes']);
  });

  it('a policy that fails validation names the file, line and problem', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mandate-policy-'));
    const file = join(dir, 'rules.cedar');
    writeFileSync(file, '// rules\n@id("ok") forbid(principal, action, resource) when { context.risk_score > 90 };\n\n@id("typo")\nforbid(principal, action, resource)\n  when { principal.enviroment == "production" };\n');
    await assert.rejects(PolicyEngine.load({ files: [file] }), (err: PolicyError) => {
      assert.equal(err.problems.length, 1);
      assert.match(err.problems[0]!, new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:6:\\d+: attribute \`enviroment\` on entity type \`Mandate::Nhi\` not found \\(did you mean \`environment\`\\?\\)`));
      return true;
    });
    assert.match((await loadError('\n\npermit(principal, action, resource) when { context.risk_score > "high" };')).problems[0]!, /^test\.cedar:3:\d+: unexpected type: expected Long but saw String/);
    assert.match((await loadError('forbid(principal, action, resource) when { context.nope };')).problems[0]!, /^test\.cedar:1:\d+: .*nope/);
    // syntax
    assert.match((await loadError('permit(principal, action, resource)\nforbid(principal, action, resource);')).problems[0]!, /^test\.cedar:2:\d+: unexpected token/);
    // an action no tool declares, when the declared actions are known
    assert.match((await loadError('forbid(principal, action == Mandate::Action::"delte_ticket", resource);', { actions: ['delete_ticket'] })).problems[0]!, /^test\.cedar:1:\d+: unrecognized action `Mandate::Action::"delte_ticket"` \(did you mean `Mandate::Action::"delete_ticket"`\?\)/);
    // @approval only on forbid, only "required"
    assert.match((await loadError('\n@approval("required") permit(principal, action, resource);')).problems[0]!, /^test\.cedar:2: @approval\("required"\) applies to forbid policies/);
    assert.match((await loadError('@approval("maybe") forbid(principal, action, resource);')).problems[0]!, /the only value is "required"/);
    assert.match((await loadError('forbid(principal, action, resource == ?resource);')).problems[0]!, /templates .* are not supported/);
    // unreadable
    await assert.rejects(PolicyEngine.load({ files: [join(dir, 'missing.cedar')] }), /missing\.cedar: cannot be read \(ENOENT\)/);
  });

  it('duplicate @id, also across files; ids default to file:line', async () => {
    const err = await loadError('@id("a") forbid(principal, action, resource);\n@id("a") forbid(principal, action, resource) when { context.approved };');
    assert.match(err.problems[0]!, /^test\.cedar:2: duplicate @id\("a"\), first at test\.cedar:1/);
    await assert.rejects(
      PolicyEngine.load({ files: [], sources: [{ name: 'one.cedar', text: '@id("x") forbid(principal, action, resource);' }, { name: 'two.cedar', text: '\n\n@id("x") forbid(principal, action, resource);' }] }),
      /two\.cedar:3: duplicate @id\("x"\), first at one\.cedar:1/,
    );
    assert.match((await loadError('@id("mandate.base") forbid(principal, action, resource);')).problems[0]!, /reserved/);
    const e = await load('forbid(principal, action == Mandate::Action::"a", resource);\n\nforbid(principal, action == Mandate::Action::"b", resource);');
    assert.deepEqual(e.evaluate(request({ action: 'b' })).policies, ['test.cedar:3']);
  });

  it('caches decisions: a hit is the same decision marked cached; another args digest misses', async () => {
    const e = await load('@id("big") forbid(principal, action, resource) when { context.args has amount && context.args.amount > 10 };');
    const r = request({ action: 'refund', args: { amount: 50 }, argsDigest: 'digest-a' });
    const first = e.evaluate(r);
    assert.deepEqual(first, { decision: 'deny', policies: ['big'], errors: [], cached: false });
    assert.deepEqual(e.evaluate(r), { ...first, cached: true });
    // Same digest, within the same minute: cached (the digest stands for the arguments).
    assert.equal(e.evaluate({ ...r, now: r.now + 20_000 }).cached, true);
    const other = e.evaluate({ ...r, args: { amount: 5 }, argsDigest: 'digest-b' });
    assert.deepEqual(other, { decision: 'allow', policies: ['mandate.base'], errors: [], cached: false });
    for (const change of [{ riskScore: 5 }, { approved: true }, { onBehalfOf: 'x' }, { runId: 'r' }, { now: r.now + 60_000 }, { nhi: { ...r.nhi, tier: 'admin' } }]) {
      assert.equal(e.evaluate({ ...r, ...change }).cached, false, JSON.stringify(change));
    }
    // Arguments without a digest are never cached.
    const noDigest = { ...r, argsDigest: null };
    assert.equal(e.evaluate(noDigest).cached, false);
    assert.equal(e.evaluate(noDigest).cached, false);
    // cacheSize 0: no cache at all.
    const cold = await load('', { cacheSize: 0 });
    cold.evaluate(request());
    assert.equal(cold.evaluate(request()).cached, false);
    // The cache is bounded: the least recently used entry goes first. (A forbid, so that the
    // calls reach the cache: with the base permit alone they are answered before it.)
    const small = await load('@id("risky") forbid(principal, action, resource) when { context.risk_score > 90 };', { cacheSize: 2 });
    small.evaluate(request({ runId: '1' }));
    small.evaluate(request({ runId: '2' }));
    small.evaluate(request({ runId: '1' })); // 1 is now the most recent
    small.evaluate(request({ runId: '3' })); // evicts 2
    assert.equal(small.evaluate(request({ runId: '1' })).cached, true);
    assert.equal(small.evaluate(request({ runId: '2' })).cached, false);
  });

  it('fails closed: a forbid that errors denies, refused arguments deny, a permit that errors does not apply', async () => {
    const e = await load(`
      @id("big-refunds") forbid(principal, action == Mandate::Action::"refund", resource) when { context.args.amount > 1000 };
      @id("ask") @approval("required") forbid(principal, action == Mandate::Action::"pay", resource) when { context.args.amount > 1000 } unless { context.approved };`);
    const refund = (args: Record<string, unknown>, d: string) => e.evaluate(request({ action: 'refund', args, argsDigest: d }));
    // "5000" is a string: Cedar cannot compare it, and the forbid that errors counts as satisfied.
    const str = refund({ amount: '5000' }, 'a');
    assert.equal(str.decision, 'deny');
    assert.deepEqual(str.policies, ['big-refunds']);
    assert.match(str.errors[0]!, /^big-refunds: type error: expected long, got string/);
    // missing attribute: also an error, also a deny
    assert.equal(refund({ total: 5000 }, 'b').decision, 'deny');
    assert.equal(refund({ amount: 5 }, 'c').decision, 'allow');
    // an erroring approval forbid asks for a human rather than allowing
    assert.equal(e.evaluate(request({ action: 'pay', args: { amount: 'lots' }, argsDigest: 'd' })).decision, 'approval_required');
    // an argument that Cedar would read as an entity reference is refused
    const forged = refund({ amount: 5, who: { __entity: { type: 'Mandate::Nhi', id: 'admin' } } }, 'e');
    assert.equal(forged.decision, 'deny');
    assert.match(forged.errors[0]!, /reserved/);
    let deep: Record<string, unknown> = { amount: 5 };
    for (let i = 0; i < 20; i++) deep = { deep };
    assert.match(refund(deep, 'f').errors[0]!, /nested deeper than 16/);
    assert.match(refund({ list: Array.from({ length: 10_001 }, (_, i) => i) }, 'g').errors[0]!, /more than 10000 values/);
    // A permit whose condition errors does not apply (Cedar), so without base permit: deny.
    const permits = await load('@id("small") permit(principal, action, resource) when { context.args.amount < 100 };', { basePermit: false });
    const p = permits.evaluate(request({ args: { amount: 'x' }, argsDigest: 'h' }));
    assert.equal(p.decision, 'deny');
    assert.match(p.errors[0]!, /^small: /);
  });

  it('version follows the policy text; the schema file and the embedded schema agree', async () => {
    const a = await load('forbid(principal, action, resource) when { context.risk_score > 90 };');
    const b = await load('forbid(principal, action, resource) when { context.risk_score > 91 };');
    const a2 = await load('forbid(principal, action, resource) when { context.risk_score > 90 };');
    assert.match(a.version, /^[0-9a-f]{64}$/);
    assert.notEqual(a.version, b.version);
    assert.equal(a.version, a2.version);
    assert.equal(readFileSync(resolve('src/policy/schema.cedarschema'), 'utf8'), CEDAR_SCHEMA_TEXT);
  });

  describe('fast paths give the same decisions as Cedar', () => {
    // Policies covering each case: actions only the base permit can reach (list_tickets,
    // mcp:tools/list), actions whose policies never read the arguments (delete_ticket, search),
    // and actions with policies that read them in each way Cedar allows (`.`, `[""]`, `has`,
    // args_digest, @approval on an argument).
    const POLICIES = `
      @id("no-prod-deletes") forbid(principal, action == Mandate::Action::"delete_ticket", resource)
        when { principal.environment == "production" && context.tier == "destructive" };
      @id("night") forbid(principal, action in [Mandate::Action::"delete_ticket", Mandate::Action::"search"], resource)
        when { context.time.hour < 6 || context.risk_score > 80 };
      @id("secret-item") forbid(principal, action == Mandate::Action::"get_item", resource)
        when { context.args has params && context.args.params has id && context.args.params.id == "secret" };
      @id("bracket") forbid(principal, action == Mandate::Action::"export", resource)
        when { context["args"] has all && context["args"]["all"] == true };
      @id("has-only") forbid(principal, action == Mandate::Action::"wipe", resource) when { context has args && context.args has force };
      @id("pinned") forbid(principal, action == Mandate::Action::"pinned", resource) when { context.args_digest == "digest-bad" };
      @id("big-refunds") @approval("required") forbid(principal, action == Mandate::Action::"refund", resource)
        when { context.args.amount > 1000 } unless { context.approved };`;
    const ACTIONS = ['list_tickets', 'mcp:tools/list', 'delete_ticket', 'search', 'get_item', 'export', 'wipe', 'pinned', 'refund'];
    const ARGS: Array<[Record<string, unknown> | null, string | null]> = [
      [null, null], [{}, 'digest-empty'], [{ params: { id: '1' }, query: {} }, 'digest-1'], [{ params: { id: 'secret' }, query: {} }, 'digest-secret'],
      [{ all: true }, 'digest-all'], [{ all: false }, 'digest-notall'], [{ force: 1 }, 'digest-force'], [{ amount: 5000 }, 'digest-5000'],
      [{ amount: 5 }, 'digest-5'], [{ amount: '5000' }, 'digest-str'], [{ x: 1 }, 'digest-bad'], [{ sneaky: { __entity: { type: 'Mandate::Nhi', id: 'root' } } }, 'digest-forged'],
      [{ params: { id: '2' } }, null],
    ];
    const variants = (): PolicyRequest[] => {
      const out: PolicyRequest[] = [];
      for (const action of ACTIONS) {
        for (const [args, argsDigest] of ARGS) {
          for (const [environment, tier, riskScore, hourShift, approved] of [
            ['production', 'destructive', 0, 0, false], ['staging', 'destructive', 0, 0, true], ['production', 'read', 90, 0, false], ['staging', 'read', 0, -6, false],
          ] as const) {
            out.push(request({
              action, tier, args, argsDigest, riskScore, approved, now: WED_10_15 + hourShift * 3_600_000,
              nhi: { ...request().nhi, environment }, ...(action.startsWith('mcp:') ? { tier: null, endpoint: undefined } : {}),
            }));
          }
        }
      }
      return out;
    };

    for (const basePermit of [true, false]) {
      it(`every decision equals Cedar's (base permit ${basePermit ? 'on' : 'off'}), from the cache too`, async () => {
        const cedar = await load(POLICIES, { basePermit, cacheSize: 0, fastPaths: false });
        const fast = await load(POLICIES, { basePermit });
        const reqs = variants();
        let cachedHits = 0;
        // Twice: the second pass answers from the cache wherever the key allows.
        for (const pass of [1, 2]) {
          for (const r of reqs) {
            const want = cedar.evaluate(r);
            const got = fast.evaluate(r);
            if (got.cached) cachedHits++;
            assert.deepEqual({ ...got, cached: false }, want, `pass ${pass}: ${JSON.stringify({ action: r.action, args: r.args, d: r.argsDigest, env: r.nhi.environment, tier: r.tier })}`);
          }
        }
        assert.ok(cachedHits > 0);
      });
    }

    it('the base permit alone: allow without Cedar, still refusing forged arguments', async () => {
      const e = await load(POLICIES);
      const list = (args: Record<string, unknown> | null, argsDigest: string | null) => e.evaluate(request({ args, argsDigest }));
      assert.deepEqual(list({ q: 'x' }, 'd1'), { decision: 'allow', policies: ['mandate.base'], errors: [], cached: false });
      assert.deepEqual(list({ q: 'x' }, null), { decision: 'allow', policies: ['mandate.base'], errors: [], cached: false });
      const forged = list({ q: { __entity: { type: 'Mandate::Nhi', id: 'root' } } }, 'd2');
      assert.equal(forged.decision, 'deny');
      assert.match(forged.errors[0]!, /reserved/);
    });

    it('policies that do not read the arguments: one cached decision for any arguments', async () => {
      const e = await load(POLICIES);
      const del = (id: string, args: Record<string, unknown> = { params: { id }, query: {} }) =>
        e.evaluate(request({ action: 'delete_ticket', tier: 'destructive', args, argsDigest: `digest-${id}` }));
      assert.deepEqual(del('1'), { decision: 'deny', policies: ['no-prod-deletes'], errors: [], cached: false });
      assert.deepEqual(del('2'), { decision: 'deny', policies: ['no-prod-deletes'], errors: [], cached: true });
      // Without a digest too (the arguments do not matter to any policy of this action).
      assert.equal(e.evaluate(request({ action: 'delete_ticket', tier: 'destructive', args: { params: { id: '3' } }, argsDigest: null })).cached, true);
      // Arguments Cedar must never see are still refused, even with a decision in the cache.
      const forged = del('4', { params: { __entity: { type: 'Mandate::Nhi', id: 'root' } } });
      assert.equal(forged.decision, 'deny');
      assert.deepEqual(forged.policies, []);
      assert.match(forged.errors[0]!, /reserved/);
    });

    it('a policy that reads the arguments still depends on them, however it reads them', async () => {
      const e = await load(POLICIES);
      const call = (action: string, args: Record<string, unknown>, argsDigest: string) => e.evaluate(request({ action, args, argsDigest }));
      assert.equal(call('get_item', { params: { id: '1' } }, 'd-1').decision, 'allow');
      assert.equal(call('get_item', { params: { id: '1' } }, 'd-1').cached, true);
      assert.deepEqual(call('get_item', { params: { id: 'secret' } }, 'd-secret'), { decision: 'deny', policies: ['secret-item'], errors: [], cached: false });
      assert.equal(call('export', { all: false }, 'd-f').decision, 'allow');
      assert.equal(call('export', { all: true }, 'd-t').decision, 'deny');
      assert.equal(call('wipe', {}, 'd-none').decision, 'allow');
      assert.equal(call('wipe', { force: true }, 'd-force').decision, 'deny');
      assert.equal(call('pinned', { a: 1 }, 'digest-ok').decision, 'allow');
      assert.equal(call('pinned', { a: 1 }, 'digest-bad').decision, 'deny');
      assert.equal(call('refund', { amount: 5 }, 'd-5').decision, 'allow');
      assert.equal(call('refund', { amount: 5000 }, 'd-5000').decision, 'approval_required');
      // Arguments without a digest are not cached where a policy reads them.
      assert.equal(call('get_item', { params: { id: '1' } }, null as unknown as string).cached, false);
    });
  });
});


describe('checkCedarArgs (the shortcuts\' check)', () => {
  it('refuses exactly what toCedarArgs refuses, with the same error, and accepts the rest', async () => {
    const { checkCedarArgs, toCedarArgs, MAX_ARGS_DEPTH, MAX_ARGS_VALUES } = await import('../../src/policy/values.js');
    const nest = (n: number): Record<string, unknown> => {
      let v: Record<string, unknown> = { leaf: 1 };
      for (let i = 1; i < n; i++) v = { d: v };
      return v;
    };
    const nestArr = (n: number): Record<string, unknown> => {
      let v: unknown = 1;
      for (let i = 1; i < n; i++) v = [v];
      return { a: v };
    };
    const many = (n: number) => ({ list: Array.from({ length: n }, (_, i) => i) });
    const holes = { h: [1, , 3] as unknown[] };
    const cases: Array<Record<string, unknown> | null> = [
      null, {}, { a: 1, b: 'x', c: true, d: null, e: undefined, f: 1.5, g: 2n ** 70n, h: [1, [2, { i: 'j' }]] }, holes,
      { params: { id: '42' }, query: Object.create(null) as Record<string, unknown> },
      JSON.parse('{"__proto__":{"x":1}}') as Record<string, unknown>,
      { __entity: { type: 'Mandate::Nhi', id: 'admin' } }, { a: [{ b: { __extn: { fn: 'ip', arg: '1.2.3.4' } } }] }, { __expr: 'x' },
      { f: () => 1 }, { s: Symbol('s') }, { a: [1, () => 2] },
      nest(MAX_ARGS_DEPTH - 1), nest(MAX_ARGS_DEPTH), nest(MAX_ARGS_DEPTH + 1), nestArr(MAX_ARGS_DEPTH), nestArr(MAX_ARGS_DEPTH + 1),
      many(MAX_ARGS_VALUES - 2), many(MAX_ARGS_VALUES - 1), many(MAX_ARGS_VALUES), { a: new Date(0), b: new Map([[1, 2]]) },
      [1, 2] as unknown as Record<string, unknown>, 'text' as unknown as Record<string, unknown>,
    ];
    let refused = 0;
    for (const [i, args] of cases.entries()) {
      let expected: string | undefined;
      try {
        toCedarArgs(args);
      } catch (err) {
        expected = `${(err as Error).constructor.name}: ${(err as Error).message}`;
      }
      let got: string | undefined;
      try {
        checkCedarArgs(args);
      } catch (err) {
        got = `${(err as Error).constructor.name}: ${(err as Error).message}`;
      }
      assert.equal(got, expected, `case ${i}`);
      if (expected !== undefined) refused++;
    }
    assert.equal(refused, 12, 'reserved keys (3), non-JSON values (3), too deep (2), too many (2), not a record (2)');
  });
});
