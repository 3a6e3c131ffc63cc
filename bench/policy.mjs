// Micro-benchmark of the policy engine (src/policy): evaluations per second, cold (no decision
// cache: every call goes to cedar-wasm) and cached, on a policy set shaped like an operator's
// (the base permit, 4 forbids that apply to every action, 2 per action for 10 actions, two of them
// approval forbids on arguments). Also, for reference, cedar-wasm's plain `isAuthorized` with
// the whole set as text (what a naive engine would call on every request).
//
//   npm run build && node bench/policy.mjs        (BENCH_POLICY_MS=2000: time per scenario)
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import { PolicyEngine } from '../dist/src/policy/index.js';

const MS = Number(process.env.BENCH_POLICY_MS ?? 2000);
const ACTIONS = Array.from({ length: 10 }, (_, i) => `action_${i}`);

let text = `
@id("risky") forbid(principal, action, resource) when { context.risk_score >= 80 };
@id("prod-runners") forbid(principal, action, resource) when { principal.class == "runner" && principal.environment == "production" && context.tier == "destructive" };
@id("nights") forbid(principal, action, resource) when { context.tier != "read" && (context.time.hour < 6 || context.time.hour >= 22) };
@id("delegation") forbid(principal, action, resource) when { context.on_behalf_of != "" && context.on_behalf_of != "orchestrator" };
`;
for (const [i, a] of ACTIONS.entries()) {
  text += `@id("${a}-limit") @approval("required") forbid(principal, action == Mandate::Action::"${a}", resource) when { context.args has amount && context.args.amount > ${1000 + i} } unless { context.approved };\n`;
  text += `@id("${a}-hr") forbid(principal, action == Mandate::Action::"${a}", resource) when { context.args has space && context.args.space == "hr" };\n`;
}

function request(i) {
  return {
    nhi: { id: 'support-agent', class: 'agent', owner: 'support@example.com', system: 'helpdesk', environment: 'production', tier: 'write' },
    tool: { id: 'tickets', kind: 'mcp' },
    action: ACTIONS[i % ACTIONS.length],
    tier: 'write',
    args: { amount: 10 + (i % 500), space: 'support', note: 'customer asked for a refund of the duplicate charge' },
    argsDigest: `digest-${i % 500}`,
    riskScore: 20,
    approved: false,
    onBehalfOf: null,
    runId: 'run-1',
    now: Date.UTC(2026, 2, 4, 10, 15),
  };
}

function measure(name, fn) {
  for (let i = 0; i < 200; i++) fn(i); // warm-up (and, for the cached engine, fill the cache)
  let n = 0;
  const start = process.hrtime.bigint();
  const end = start + BigInt(MS) * 1_000_000n;
  let now = start;
  while (now < end) {
    for (let k = 0; k < 50; k++) fn(n++);
    now = process.hrtime.bigint();
  }
  const s = Number(now - start) / 1e9;
  return { name, evaluations: n, perSecond: Math.round(n / s), microseconds: (s / n) * 1e6 };
}

const cold = await PolicyEngine.load({ files: [], sources: [{ name: 'bench.cedar', text }], cacheSize: 0, fastPaths: false });
const warm = await PolicyEngine.load({ files: [], sources: [{ name: 'bench.cedar', text }] });
const requests = Array.from({ length: 500 }, (_, i) => request(i));
const check = cold.evaluate(requests[0]);
if (check.decision !== 'allow') throw new Error(`unexpected decision ${JSON.stringify(check)}`);

const fullText = `@id("mandate.base") permit(principal, action, resource);\n${text}`;
const plain = (i) => {
  const r = requests[i % 500];
  return cedar.isAuthorized({
    principal: { type: 'Mandate::Nhi', id: r.nhi.id }, action: { type: 'Mandate::Action', id: r.action }, resource: { type: 'Mandate::Tool', id: r.tool.id },
    context: { tier: r.tier, args: r.args, args_digest: r.argsDigest, risk_score: r.riskScore, approved: false, on_behalf_of: '', run_id: r.runId, time: { epoch_s: 0, hour: 10, weekday: 3 } },
    entities: [
      { uid: { type: 'Mandate::Nhi', id: r.nhi.id }, attrs: { class: r.nhi.class, owner: r.nhi.owner, system: r.nhi.system, environment: r.nhi.environment, tier: r.nhi.tier }, parents: [] },
      { uid: { type: 'Mandate::Tool', id: r.tool.id }, attrs: { kind: r.tool.kind }, parents: [] },
    ],
    policies: { staticPolicies: fullText },
  });
};

const results = [
  measure('cedar-wasm isAuthorized, whole set as text (reference)', plain),
  measure('engine cold (cacheSize 0)', (i) => cold.evaluate(requests[i % 500])),
  measure('engine cached (500 distinct calls, all hits)', (i) => warm.evaluate(requests[i % 500])),
];
console.log(`policy engine, ${warm.policyCount} policies + base permit, cedar-wasm ${cedar.getCedarVersion()}, node ${process.version}`);
for (const r of results) console.log(`${r.name.padEnd(58)} ${String(r.perSecond).padStart(9)} eval/s ${r.microseconds.toFixed(2).padStart(9)} µs/eval`);
