import type { AdminClient } from '../admin-client.js';
import { CliError, EXIT } from '../errors.js';
import { getJson, SAFE_METHOD, stripSlash, type ProxyTarget } from './http.js';
import type { DrillReport } from './report.js';

export interface ToolAction { name: string; method?: string; path?: string; tier: string }

/** A declared http tool and its actions; an undeclared or non-http tool is a usage error naming `flag`. */
async function toolOf(admin: AdminClient, id: string, flag: string): Promise<{ kind: string; actions: ToolAction[] }> {
  let t: { kind: string; config: { actions?: ToolAction[] } };
  try {
    t = (await admin.call('GET', `/tools/${encodeURIComponent(id)}`)) as typeof t;
  } catch (err) {
    if (err instanceof CliError && err.exitCode === EXIT.failed) {
      throw new CliError(`no tool "${id}" is declared (${flag}): tools come from the config; declare the drill tools (docs/drill.md) or name declared ones with --tool / --other-tool`, EXIT.usage);
    }
    throw err;
  }
  if (t.kind !== 'http') throw new CliError(`tool "${id}" is an ${t.kind} tool; the drill needs http tools (${flag})`, EXIT.usage);
  return { kind: t.kind, actions: t.config.actions ?? [] };
}

/** What the drill learnt before creating anything: where to get tokens, what to call, at which proxies. */
export interface Preflight {
  issuer: string;
  tokenEndpoint: string;
  /** The drill tool's read-only action the agent is granted and calls. */
  action: ToolAction;
  /** Its path, with placeholders filled in. */
  path: string;
  /** A path at the other tool, where the attacker presents the stolen token. */
  otherPath: string;
  targets: ProxyTarget[];
}

/**
 * Checks, creating nothing, that the server is a Mandate broker with two http drill tools behind
 * every proxy, picks the read-only action to call, and notes in the report which playbooks would
 * contain a stolen token. Throws CliError (usage, unreachable, not authorized) when the drill cannot run.
 */
export async function preflight(
  o: { url: string; proxies: string[]; tool: string; otherTool: string; containManually: boolean },
  admin: AdminClient,
  report: DrillReport,
  say: (s: string) => void,
): Promise<Preflight> {
  const md = await getJson(`${o.url}/.well-known/oauth-authorization-server`);
  if (!md || typeof md.issuer !== 'string' || typeof md.token_endpoint !== 'string') {
    throw new CliError(`${o.url} is not a Mandate broker (no OAuth metadata at /.well-known/oauth-authorization-server); --url names the broker or the all-in-one`, EXIT.usage);
  }
  const issuer = stripSlash(md.issuer);
  report.issuer = issuer;
  if (o.tool === o.otherTool) throw new CliError('--tool and --other-tool must name two different tools', EXIT.usage);
  const tool = await toolOf(admin, o.tool, '--tool');
  const profiles = (await admin.call('GET', '/token-profiles')) as { profiles: Array<{ name: string }> };
  const rank = new Map(profiles.profiles.map((p, i) => [p.name, i]));
  const action = tool.actions
    .filter((a) => a.method?.toUpperCase() === SAFE_METHOD && typeof a.path === 'string')
    .sort((a, b) => (rank.get(a.tier) ?? 99) - (rank.get(b.tier) ?? 99))[0];
  if (!action) {
    throw new CliError(`tool "${o.tool}" declares no ${SAFE_METHOD} action: the drill only calls a read-only ${SAFE_METHOD} endpoint (declare e.g. { name: ping, method: GET, path: /healthz, tier: read }; docs/drill.md)`, EXIT.usage);
  }
  report.action = action.name;
  const path = action.path!.replace(/\{[^}]+\}/g, 'drill');
  const other = await toolOf(admin, o.otherTool, '--other-tool');
  const otherPath = (other.actions.find((a) => typeof a.path === 'string')?.path ?? '/').replace(/\{[^}]+\}/g, 'drill');

  const targets: ProxyTarget[] = [];
  for (const p of o.proxies) {
    const r1 = await getJson(`${p}/.well-known/oauth-protected-resource/tools/${encodeURIComponent(o.tool)}`);
    const r2 = await getJson(`${p}/.well-known/oauth-protected-resource/tools/${encodeURIComponent(o.otherTool)}`);
    if (!r1 || typeof r1.resource !== 'string' || !r2 || typeof r2.resource !== 'string') {
      throw new CliError(`${p} does not proxy tools "${o.tool}" and "${o.otherTool}" (no RFC 9728 metadata); --proxy names each proxy instance`, EXIT.usage);
    }
    targets.push({ base: p, resource: r1.resource, otherResource: r2.resource });
  }

  let playbooks: { enabled: boolean; dry_run: boolean; playbooks: Array<{ name: string; detection: string | null; score_at_least: number | null; action: string; dry_run: boolean }> } | undefined;
  try {
    playbooks = (await admin.call('GET', '/playbooks')) as typeof playbooks;
  } catch (err) {
    if (!(err instanceof CliError) || err.exitCode !== EXIT.failed) throw err;
  }
  if (playbooks) {
    report.playbooks.checked = true;
    report.playbooks.suitable = playbooks.playbooks
      .filter((p) => p.score_at_least === null && (p.detection === null || p.detection === 'stolen_token') && (p.action === 'revoke_tokens' || p.action === 'disable') && !p.dry_run)
      .map((p) => p.name);
    report.playbooks.note = !playbooks.enabled
      ? 'governance is disabled in the config (governance.enabled: false): nothing detects or acts'
      : playbooks.dry_run
        ? 'governance.dry_run is on: playbooks only record what they would do'
        : report.playbooks.suitable.length
          ? `playbook(s) revoking on stolen-token findings: ${report.playbooks.suitable.join(', ')}`
          : 'NO playbook revokes tokens (or disables) on stolen_token findings: add one under governance.playbooks (docs/drill.md)';
    if (!playbooks.enabled || playbooks.dry_run) report.playbooks.suitable = [];
  } else {
    report.playbooks.note = 'this server does not list its playbooks (GET /admin/v1/playbooks): relying on whatever it is configured with';
  }
  if (!report.playbooks.suitable.length) say(`! ${report.playbooks.note}${o.containManually ? '; --contain-manually: the drill will raise the revoke signal itself' : ''}`);

  return { issuer, tokenEndpoint: md.token_endpoint, action, path, otherPath, targets };
}
