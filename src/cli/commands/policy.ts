import { createHash } from 'node:crypto';
import type { MandateConfig } from '../../core/index.js';
import { PolicyEngine, PolicyError, type PolicyRequest } from '../../policy/index.js';
import { parse, str } from '../args.js';
import type { Command, Ctx } from '../command.js';
import { loadConfig } from '../config-file.js';
import { CliError, EXIT } from '../errors.js';

/** What a wrong `mandate policy …` prints. */
const POLICY_USAGE = 'usage: mandate policy check [--config FILE] [--json]\n       mandate policy test --nhi ID --tool ID --action NAME [--args JSON] [--risk N] [--approved] [--on-behalf-of ID] [--run-id ID] [--time ISO] [--config FILE] [--json]';

export const policy: Command = {
  name: 'policy',
  summary: 'the Cedar policies, offline: check that they load, test one call against them (no server needed)',
  usage: `  mandate policy check [--config FILE]         validate the Cedar policies of policy.files
  mandate policy test --nhi ID --tool ID --action NAME [--args JSON] [--risk N] [--approved]
                      [--on-behalf-of ID] [--run-id ID] [--time ISO] [--config FILE]
                                               decide one call offline: exit 0 allow, 1 deny or approval required`,
  run: runPolicy,
};

/** Loads the config's policies; a policy that does not load is a config error (exit 2). */
async function loadPolicies(cfg: Readonly<MandateConfig>): Promise<PolicyEngine> {
  try {
    return await PolicyEngine.load({
      files: [...cfg.policy.files],
      basePermit: cfg.policy.base_permit,
      actions: [...new Set(cfg.tools.flatMap((t) => t.actions.map((a) => a.name)))],
    });
  } catch (err) {
    if (err instanceof PolicyError) throw new CliError(err.message, EXIT.usage);
    throw err;
  }
}

/** `mandate policy check|test`: offline, from the config file and its policy files (no server). */
async function runPolicy(argv: string[], { out, env }: Ctx): Promise<number> {
  const [verb, ...r] = argv;
  if (verb === 'check') {
    const { values } = parse(r, {});
    const cfg = loadConfig(str(values, 'config'), env, true);
    const engine = await loadPolicies(cfg);
    out.log(values.json
      ? JSON.stringify({ ok: true, files: cfg.policy.files, policies: engine.policyCount, base_permit: cfg.policy.base_permit, version: engine.version })
      : `ok: ${engine.policyCount} ${engine.policyCount === 1 ? 'policy' : 'policies'} in ${cfg.policy.files.length} file(s), base permit ${cfg.policy.base_permit ? 'on' : 'off'} (version ${engine.version.slice(0, 12)})`);
    return EXIT.ok;
  }
  if (verb !== 'test') throw new CliError(POLICY_USAGE, EXIT.usage);
  const { values } = parse(r, {
    nhi: { type: 'string' }, tool: { type: 'string' }, action: { type: 'string' }, args: { type: 'string' }, risk: { type: 'string' },
    approved: { type: 'boolean' }, 'on-behalf-of': { type: 'string' }, 'run-id': { type: 'string' }, time: { type: 'string' },
  });
  const v = values as Record<string, string | boolean | undefined>;
  const need = (k: string) => {
    if (typeof v[k] !== 'string' || v[k] === '') throw new CliError(`--${k} is required\n${POLICY_USAGE}`, EXIT.usage);
    return v[k] as string;
  };
  const cfg = loadConfig(v.config as string | undefined, env, true);
  const nhiId = need('nhi');
  const toolId = need('tool');
  const actionName = need('action');
  const nhi = cfg.nhis.find((n) => n.id === nhiId);
  if (!nhi) throw new CliError(`no NHI "${nhiId}" in the config (have: ${cfg.nhis.map((n) => n.id).join(', ') || 'none'})`, EXIT.usage);
  const tool = cfg.tools.find((t) => t.id === toolId);
  if (!tool) throw new CliError(`no tool "${toolId}" in the config (have: ${cfg.tools.map((t) => t.id).join(', ') || 'none'})`, EXIT.usage);
  let tier: string | null = null;
  let endpoint: PolicyRequest['endpoint'];
  if (actionName.startsWith('mcp:')) {
    if (tool.kind !== 'mcp') throw new CliError(`"${actionName}" is an MCP protocol method, and tool "${tool.id}" is an http tool`, EXIT.usage);
  } else {
    const action = tool.actions.find((a) => a.name === actionName);
    if (!action) throw new CliError(`tool "${tool.id}" declares no action "${actionName}" (declared: ${tool.actions.map((a) => a.name).join(', ')})`, EXIT.usage);
    tier = action.tier;
    if (action.method && action.path) endpoint = { method: action.method, path: action.path };
  }
  let callArgs: Record<string, unknown> | null = null;
  if (typeof v.args === 'string') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(v.args);
    } catch (err) {
      throw new CliError(`--args is not JSON: ${(err as Error).message}`, EXIT.usage);
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new CliError('--args must be a JSON object, e.g. {"amount": 1200}', EXIT.usage);
    callArgs = parsed as Record<string, unknown>;
  }
  const risk = v.risk === undefined ? 0 : Number(v.risk);
  if (!Number.isInteger(risk) || risk < 0 || risk > 100) throw new CliError('--risk must be an integer from 0 to 100', EXIT.usage);
  const now = v.time === undefined ? Date.now() : Date.parse(v.time as string);
  if (Number.isNaN(now)) throw new CliError('--time must be an ISO 8601 time, e.g. 2026-01-31T23:30:00Z', EXIT.usage);
  const engine = await loadPolicies(cfg);
  const req: PolicyRequest = {
    nhi: { id: nhi.id, class: nhi.class, owner: nhi.owner, system: nhi.system, environment: nhi.environment, tier: nhi.tier },
    tool: { id: tool.id, kind: tool.kind },
    action: actionName,
    tier,
    args: callArgs,
    argsDigest: callArgs ? createHash('sha256').update(JSON.stringify(callArgs)).digest('base64url') : null,
    ...(endpoint ? { endpoint } : {}),
    riskScore: risk,
    approved: v.approved === true,
    onBehalfOf: typeof v['on-behalf-of'] === 'string' ? v['on-behalf-of'] : null,
    runId: typeof v['run-id'] === 'string' ? v['run-id'] : null,
    now,
  };
  const d = engine.evaluate(req);
  if (v.json) {
    out.log(JSON.stringify({ decision: d.decision, policies: d.policies, errors: d.errors, nhi: nhi.id, tool: tool.id, action: actionName, tier, policy_version: engine.version }, null, 2));
  } else {
    out.log([
      `${d.decision}: ${nhi.id} → ${tool.id}.${actionName}`,
      `  decided by: ${d.policies.length ? d.policies.join(', ') : d.errors.length ? '(no policy: see the errors)' : '(no permit applies: Cedar denies by default)'}`,
      ...d.errors.map((e) => `  error: ${e}`),
    ].join('\n'));
  }
  return d.decision === 'allow' ? EXIT.ok : EXIT.failed;
}
