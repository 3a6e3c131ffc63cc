/**
 * `mandate drill token-theft`: the stolen-token exercise, end to end, against a
 * running Mandate, through its public and admin HTTP APIs only.
 *
 * A drill NHI (`drill-token-theft-<run>`) with its own private_key_jwt key gets a DPoP-bound token
 * for a declared drill tool and calls it through every proxy; an "attacker" replays the token with
 * a proof from another key, as a bearer token without a proof, and at another tool; the drill
 * waits for the stolen-token finding (time to detect), for the revoke signal a playbook raises
 * (or raises it itself with --contain-manually), and probes every proxy with the legitimate key
 * until each refuses the token as revoked (time to contain). Then the attacker tries again
 * everywhere. It counts attacker calls answered 2xx (the goal is 0), writes a Markdown and a JSON
 * report, and cleans up in a `finally`. It never prints or writes a token or a key.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { exportJWK, generateKeyPair } from 'jose';
import { DpopKey, MandateClient } from '../client/index.js';
import { AdminClient, CliError, EXIT } from './admin-client.js';

type Out = { log: (s: string) => void; err: (s: string) => void };

export const DRILL_USAGE = `Drills (over the public and admin APIs; docs/drill.md):
  mandate drill token-theft [--url URL] [--token T] [--proxy URL ...] [--tool ID] [--other-tool ID]
                            [--owner O] [--out DIR] [--timeout S] [--poll-ms N] [--contain-manually] [--json]
                                               a stolen DPoP-bound token: detected? contained at every proxy?
                                               exit 0 contained with 0 attacker calls through, 1 otherwise`;

export interface DrillOptions {
  /** The broker / admin API (the all-in-one's URL). */
  url: string;
  token: string | undefined;
  /** Every proxy instance to check; the all-in-one's own URL by default. */
  proxies: string[];
  tool: string;
  otherTool: string;
  owner: string;
  outDir: string;
  /** How long to wait for detection, for the revoke signal, and for the denial at every proxy. */
  timeoutMs: number;
  /** Pause between probes of one proxy. */
  pollMs: number;
  containManually: boolean;
  runId?: string;
  /** Progress lines (stderr in the CLI). */
  progress?: (s: string) => void;
}

export interface DrillStep {
  at: number;
  step: string;
  actor: 'legit' | 'attacker' | 'drill';
  proxy?: string;
  status?: number;
  error?: string | null;
  description?: string | null;
  /** An attacker call the proxy answered 2xx. */
  through?: boolean;
}

export interface ProxyContainment {
  proxy: string;
  /** The legitimate token passed here before containment. */
  legit_passed: boolean;
  /** When the drill first saw this proxy refuse the legitimate token as revoked (epoch ms, drill clock). */
  first_denied_at: number | null;
  /** The last time it still passed, if it did after the attack. */
  last_passed_at: number | null;
  denied_after_signal_ms: number | null;
  description: string | null;
  probes: number;
}

export interface DrillReport {
  drill: 'token-theft';
  run_id: string;
  nhi: string;
  ok: boolean;
  verdict: string;
  started_at: number;
  finished_at: number | null;
  url: string;
  issuer: string | null;
  proxies: string[];
  tool: string;
  other_tool: string;
  action: string | null;
  playbooks: { checked: boolean; suitable: string[]; note: string };
  legit_ok: boolean;
  attacker: { calls: number; through: number; before_containment: { calls: number; through: number }; after_containment: { calls: number; through: number } };
  detection: {
    detected: boolean; finding_id: string | null; severity: string | null; title: string | null;
    first_attack_at: number | null; raised_at: number | null; observed_at: number | null; time_to_detect_ms: number | null;
  };
  containment: {
    contained: boolean; mode: 'playbook' | 'manual' | 'none'; detection_driven: boolean; note: string;
    signal: { id: string; source: string; action: string; status: string; received_at: number; applied_at: number | null; playbook: string | null } | null;
    per_proxy: ProxyContainment[];
    time_to_contain_ms: number | null;
    server: { instances: number; applied_everywhere_ms: number | null; first_denial_ms: number | null } | null;
  };
  steps: DrillStep[];
  cleanup: Array<{ what: string; ok: boolean; error?: string }>;
  problems: string[];
  files: { markdown: string; json: string } | null;
}

interface ProxyTarget {
  base: string;
  resource: string;
  otherResource: string;
  nonce?: string;
}

interface CallResult {
  status: number;
  error: string | null;
  description: string | null;
}

const SAFE_METHOD = 'GET';
const RESPONSE_CAP = 64 * 1024;
/** How long the drill waits for the instances' timeline rows (written in batches shortly after the fact) before it reports. */
const TIMELINE_WAIT_MS = 3_000;

/** `mandate drill token-theft …`. */
export async function drillCommand(verb: string | undefined, argv: string[], out: Out, env: NodeJS.ProcessEnv): Promise<number> {
  if (verb !== 'token-theft') throw new CliError(`unknown drill "${verb ?? ''}"\n\n${DRILL_USAGE}`, EXIT.usage);
  const { values: v, positionals } = parseArgs({
    args: argv,
    options: {
      json: { type: 'boolean' }, url: { type: 'string' }, token: { type: 'string' }, config: { type: 'string' },
      proxy: { type: 'string', multiple: true }, tool: { type: 'string' }, 'other-tool': { type: 'string' }, owner: { type: 'string' },
      out: { type: 'string' }, timeout: { type: 'string' }, 'poll-ms': { type: 'string' }, 'contain-manually': { type: 'boolean' },
      'run-id': { type: 'string' },
    },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length) throw new CliError(`mandate drill token-theft takes no positional arguments (got "${positionals[0]}")`, EXIT.usage);
  const url = stripSlash(v.url ?? env.MANDATE_URL ?? 'http://127.0.0.1:8080');
  const proxies = (v.proxy ?? [url]).map(stripSlash);
  for (const u of [url, ...proxies]) {
    if (!/^https?:\/\/[^/]+/.test(u)) throw new CliError(`not an http(s) URL: "${u}"`, EXIT.usage);
  }
  const timeoutS = v.timeout === undefined ? 30 : Number(v.timeout);
  if (!Number.isFinite(timeoutS) || timeoutS <= 0 || timeoutS > 3600) throw new CliError('--timeout must be seconds, more than 0 and at most 3600', EXIT.usage);
  const pollMs = v['poll-ms'] === undefined ? 25 : Number(v['poll-ms']);
  if (!Number.isInteger(pollMs) || pollMs < 1 || pollMs > 10_000) throw new CliError('--poll-ms must be an integer from 1 to 10000', EXIT.usage);
  const runId = v['run-id'];
  if (runId !== undefined && !/^[a-z0-9]{4,16}$/.test(runId)) throw new CliError('--run-id must be 4 to 16 lower-case letters or digits', EXIT.usage);
  const owner = v.owner ?? 'security-drill';
  if (!owner.trim()) throw new CliError('--owner must not be empty', EXIT.usage);
  const json = v.json === true;

  const report = await runTokenTheftDrill({
    url, token: v.token ?? env.MANDATE_TOKEN, proxies, tool: v.tool ?? 'drill', otherTool: v['other-tool'] ?? 'drill-other', owner,
    outDir: resolve(v.out ?? '.'), timeoutMs: timeoutS * 1000, pollMs, containManually: v['contain-manually'] === true,
    ...(runId !== undefined ? { runId } : {}),
    progress: json ? undefined : (s) => out.err(s),
  });
  out.log(json ? JSON.stringify(report, null, 2) : drillSummary(report));
  return report.ok ? EXIT.ok : EXIT.failed;
}

/**
 * Runs the drill. Throws CliError before it has created anything (usage, unreachable, not
 * authorized, no drill tool); once it has, it always returns a report and has cleaned up.
 */
export async function runTokenTheftDrill(o: DrillOptions): Promise<DrillReport> {
  const say = o.progress ?? (() => {});
  const admin = new AdminClient(o.url, o.token);
  const runId = o.runId ?? randomBytes(4).toString('hex');
  const nhi = `drill-token-theft-${runId}`;
  const report: DrillReport = {
    drill: 'token-theft', run_id: runId, nhi, ok: false, verdict: 'not run', started_at: Date.now(), finished_at: null,
    url: o.url, issuer: null, proxies: o.proxies, tool: o.tool, other_tool: o.otherTool, action: null,
    playbooks: { checked: false, suitable: [], note: '' }, legit_ok: false,
    attacker: { calls: 0, through: 0, before_containment: { calls: 0, through: 0 }, after_containment: { calls: 0, through: 0 } },
    detection: { detected: false, finding_id: null, severity: null, title: null, first_attack_at: null, raised_at: null, observed_at: null, time_to_detect_ms: null },
    containment: { contained: false, mode: 'none', detection_driven: false, note: '', signal: null, per_proxy: [], time_to_contain_ms: null, server: null },
    steps: [], cleanup: [], problems: [], files: null,
  };
  const step = (s: DrillStep) => report.steps.push(s);

  // ---------------------------------------------------------------- preflight (creates nothing)
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

  // ---------------------------------------------------------------- setup, attack, measure; cleanup always
  const created: { nhi: boolean; credential: string | null; grant: string | null } = { nhi: false, credential: null, grant: null };
  try {
    say(`drill ${runId}: creating NHI ${nhi}`);
    const clientKeys = await generateKeyPair('ES256', { extractable: false });
    const kid = `${nhi}-1`;
    const pub = { ...(await exportJWK(clientKeys.publicKey)), kid, alg: 'ES256', use: 'sig' };
    const tomorrow = new Date(Date.now() + 2 * 86_400_000).toISOString().slice(0, 10);
    const actionTier = tool.actions.find((a) => a.name === action.name)!.tier;
    await admin.call('POST', '/nhis', {
      body: {
        id: nhi, class: 'agent', owner: o.owner, system: 'mandate-drill', environment: 'drill', tier: actionTier === 'read' ? 'read' : 'write',
        description: `token-theft drill ${runId}: created and disabled by mandate drill token-theft`,
      },
    });
    created.nhi = true;
    const cred = (await admin.call('POST', `/nhis/${nhi}/credentials`, { body: { type: 'private_key_jwt', jwks: { keys: [pub] }, expires: tomorrow } })) as { id: string };
    created.credential = cred.id;
    const grant = (await admin.call('POST', '/grants', { body: { nhi, tool: o.tool, actions: [action.name], change_ref: `drill:${runId}`, expires: tomorrow } })) as { id: string };
    created.grant = grant.id;
    step({ at: Date.now(), step: `created NHI ${nhi}, its key (${cred.id}) and a grant on ${o.tool}.${action.name} (${grant.id})`, actor: 'drill' });

    // 1. The legitimate agent: a DPoP-bound token, and a call through every proxy.
    const legitKey = await DpopKey.generate();
    const base = o.url;
    const viaBroker: typeof fetch = (input, init) => {
      const u = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
      return fetch(u === issuer || u.startsWith(`${issuer}/`) ? `${base}${u.slice(issuer.length)}` : u, init);
    };
    const client = new MandateClient({
      issuer, clientId: nhi, auth: { type: 'private_key_jwt', privateKey: clientKeys.privateKey, alg: 'ES256', kid },
      dpop: legitKey, fetch: viaBroker, tokenEndpoint: md.token_endpoint as string,
    });
    const tok = await client.getToken(o.tool, [action.name]);
    const jti = jtiOf(tok.accessToken);
    step({ at: Date.now(), step: `legit agent got a ${tok.tokenType} token for ${o.tool} (jti ${jti})`, actor: 'legit' });
    if (tok.tokenType !== 'DPoP') throw new DrillAbort(`the broker issued a ${tok.tokenType} token, not a DPoP-bound one`);
    const legit = (t: ProxyTarget, note: string) => toolCall(t, o.tool, t.resource, path, tok.accessToken, 'DPoP', legitKey, `legit:${runId}`).then((r) => {
      step({ at: Date.now(), step: note, actor: 'legit', proxy: t.base, status: r.status, error: r.error, description: r.description });
      return r;
    });
    const perProxy = new Map<ProxyTarget, ProxyContainment>();
    for (const t of targets) {
      const r = await legit(t, `legit call ${SAFE_METHOD} ${o.tool}${path} with its own DPoP proof`);
      perProxy.set(t, { proxy: t.base, legit_passed: ok2xx(r.status), first_denied_at: null, last_passed_at: null, denied_after_signal_ms: null, description: null, probes: 0 });
    }
    report.legit_ok = [...perProxy.values()].every((p) => p.legit_passed);
    if (!report.legit_ok) throw new DrillAbort('the legitimate call did not pass at every proxy: the drill tool must answer 2xx (see the steps)');

    // 2. The attacker: the stolen token with its own key's proof, without a proof, at another tool.
    const attackerKey = await DpopKey.generate();
    const attack = async (phase: 'before_containment' | 'after_containment', t: ProxyTarget) => {
      const tries: Array<[string, () => Promise<CallResult>]> = [
        ['attacker replays the token with a DPoP proof from another key', () => toolCall(t, o.tool, t.resource, path, tok.accessToken, 'DPoP', attackerKey, `attacker:${runId}`)],
        ['attacker replays the token as a bearer token without DPoP', () => toolCall(t, o.tool, t.resource, path, tok.accessToken, 'Bearer', undefined, `attacker:${runId}`)],
        [`attacker presents the token at another tool (${o.otherTool})`, () => toolCall(t, o.otherTool, t.otherResource, otherPath, tok.accessToken, 'DPoP', attackerKey, `attacker:${runId}`)],
      ];
      for (const [what, call] of tries) {
        const at = Date.now();
        const r = await call();
        const through = ok2xx(r.status);
        report.attacker[phase].calls++;
        if (through) report.attacker[phase].through++;
        report.detection.first_attack_at ??= at;
        step({ at, step: `${what}${phase === 'after_containment' ? ' (after containment)' : ''}`, actor: 'attacker', proxy: t.base, status: r.status, error: r.error, description: r.description, through });
      }
    };
    // 3. Probe every proxy with the legitimate key, from before the attack until it refuses the token
    //    as revoked: the first refusal is then seen within one probe's round trip and --poll-ms.
    let containDeadline = Date.now() + o.timeoutMs;
    let stop = false;
    const probes = Promise.all(targets.map(async (t) => {
      const pc = perProxy.get(t)!;
      while (!stop && Date.now() < containDeadline) {
        const r = await toolCall(t, o.tool, t.resource, path, tok.accessToken, 'DPoP', legitKey, `legit-probe:${runId}`);
        pc.probes++;
        const now = Date.now();
        if (ok2xx(r.status)) pc.last_passed_at = now;
        else if (r.status === 401 && /revoked/.test(r.description ?? '')) {
          pc.first_denied_at = now;
          pc.description = r.description;
          step({ at: now, step: 'legit token refused as revoked', actor: 'legit', proxy: t.base, status: r.status, error: r.error, description: r.description });
          return;
        }
        await sleep(o.pollMs);
      }
    }));
    try {
      say('attacker: replaying the stolen token (another key, no DPoP, another tool)');
      await attack('before_containment', targets[0]!);
      const attackAt = report.detection.first_attack_at!;
      containDeadline = attackAt + o.timeoutMs;

      // 4. Detection: the stolen_token finding.
      const found = await pollUntil(attackAt + o.timeoutMs, 100, async () => {
        const r = (await admin.call('GET', '/findings', { query: { nhi, detection: 'stolen_token', limit: '10' } })) as { findings: Array<{ id: string; severity: string; title: string; first_seen: number }> };
        return r.findings.at(-1);
      });
      if (found) {
        report.detection.detected = true;
        report.detection.observed_at = Date.now();
        report.detection.finding_id = found.id;
        report.detection.severity = found.severity;
        report.detection.title = found.title;
        say(`detected: ${found.severity} ${found.title}`);
        const rec = await pollUntil(Math.min(Date.now() + 3000, attackAt + o.timeoutMs + 3000), 100, async () => {
          const a = (await admin.call('GET', '/audit', { query: { type: 'detection.raised', subject: nhi, limit: '50' } })) as { records: Array<{ ts: number; data?: { finding_id?: string } }> };
          return a.records.find((x) => x.data?.finding_id === found.id);
        });
        report.detection.raised_at = rec?.ts ?? null;
        report.detection.time_to_detect_ms = (rec?.ts ?? report.detection.observed_at) - attackAt;
        step({ at: rec?.ts ?? report.detection.observed_at, step: `detection.raised: ${found.id} (${found.severity}) ${found.title}`, actor: 'drill' });
      } else {
        report.problems.push(`no stolen_token finding for ${nhi} within ${o.timeoutMs / 1000} s: are detections running (role all or signals, governance.enabled)?`);
      }

      // 5. Containment: the revoke signal (a playbook's, else ours with --contain-manually).
      type Sig = { id: string; source: string; action: string; status: string; received_at: number; applied_at: number | null; data?: { playbook?: string; finding_id?: string } | null };
      const findSignal = async (): Promise<Sig | undefined> => {
        const r = (await admin.call('GET', '/signals', { query: { nhi, limit: '50' } })) as { signals: Sig[] };
        const enforcing = r.signals.filter((s) => ['revoke_tokens', 'disable', 'block'].includes(s.action));
        return enforcing.find((s) => report.detection.finding_id !== null && s.data?.finding_id === report.detection.finding_id) ?? enforcing.at(-1);
      };
      let sig: Sig | undefined;
      if (report.playbooks.suitable.length || !o.containManually) sig = await pollUntil(attackAt + o.timeoutMs, 50, findSignal);
      if (sig) {
        report.containment.mode = sig.source.startsWith('playbook:') ? 'playbook' : 'manual';
        report.containment.detection_driven = sig.source.startsWith('playbook:');
      } else if (o.containManually) {
        say('containing manually: raising a revoke_tokens signal for the drill NHI');
        sig = (await admin.call('POST', '/signals', {
          body: { nhi, action: 'revoke_tokens', severity: 'critical', reason: `mandate drill token-theft ${runId}: manual containment (--contain-manually)` },
        })) as Sig;
        report.containment.mode = 'manual';
        report.containment.detection_driven = false;
      }
      if (sig) {
        report.containment.signal = {
          id: sig.id, source: sig.source, action: sig.action, status: sig.status, received_at: sig.received_at, applied_at: sig.applied_at,
          playbook: sig.data?.playbook ?? null,
        };
        step({ at: sig.received_at, step: `signal ${sig.id}: ${sig.action} from ${sig.source} (${sig.status})`, actor: 'drill' });
        containDeadline = Math.max(containDeadline, Date.now() + o.timeoutMs);
      } else {
        stop = true;
        report.problems.push(`no revoke signal for ${nhi} within ${o.timeoutMs / 1000} s${report.playbooks.suitable.length ? '' : ' (no playbook revokes on stolen_token findings; --contain-manually raises it)'}`);
      }
    } finally {
      // On any way out of here the probes end (at the latest at their deadline) before cleanup starts.
      if (!report.containment.signal) stop = true;
      await probes;
    }

    // 6. Did every proxy refuse the token after the signal?
    const s = report.containment.signal;
    for (const pc of perProxy.values()) {
      if (s && pc.first_denied_at !== null) pc.denied_after_signal_ms = pc.first_denied_at - s.received_at;
      report.containment.per_proxy.push(pc);
    }
    const all = report.containment.per_proxy;
    report.containment.contained = s !== null && s.status === 'applied' && all.every((p) => p.first_denied_at !== null);
    if (report.containment.contained) {
      report.containment.time_to_contain_ms = Math.max(...all.map((p) => p.denied_after_signal_ms!));
      report.containment.note = report.containment.detection_driven
        ? `playbook ${s!.playbook ?? s!.source} revoked the token; every proxy (${all.length}) refused it`
        : 'contained by the drill\'s own signal (--contain-manually): detection-driven containment was NOT exercised';
    } else {
      const open = all.filter((p) => p.first_denied_at === null).map((p) => p.proxy);
      report.containment.note = !s ? 'no revoke signal' : s.status !== 'applied' ? `the signal was not applied (${s.status})` : `still accepted the token at: ${open.join(', ')}`;
    }
    if (s) {
      try {
        // Each instance writes its timeline (applied, first refusal) in batches a little after the
        // fact (signals/timeline.ts): ask again for up to TIMELINE_WAIT_MS until every proxy that
        // refused the token has its row, then report what is there.
        const waitUntil = Date.now() + TIMELINE_WAIT_MS;
        for (;;) {
          const r = (await admin.call('GET', '/reports/mttr', { query: { since: String(s.received_at - 1), per_signal: 'true' } })) as {
            per_signal?: Array<{ id: string; instances: number; applied_everywhere_ms: number | null; first_denial_ms: number | null }>;
          };
          const mine = r.per_signal?.find((x) => x.id === s.id);
          if (mine) report.containment.server = { instances: mine.instances, applied_everywhere_ms: mine.applied_everywhere_ms, first_denial_ms: mine.first_denial_ms };
          const complete = mine !== undefined && mine.instances >= Math.max(1, all.length) && (!report.containment.contained || mine.first_denial_ms !== null);
          if (complete || Date.now() >= waitUntil) break;
          await sleep(100);
        }
      } catch (err) {
        report.problems.push(`the time-to-revoke report was not available: ${(err as Error).message}`);
      }
    }

    // 7. The attacker again, at every proxy: after containment nothing may pass.
    if (report.containment.contained) {
      say('attacker: trying again at every proxy after containment');
      for (const t of targets) await attack('after_containment', t);
    }
  } catch (err) {
    if (err instanceof DrillAbort) report.problems.push(err.message);
    else report.problems.push(`the drill stopped: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    say('cleaning up');
    await cleanup(admin, nhi, runId, created, report);
    report.attacker.calls = report.attacker.before_containment.calls + report.attacker.after_containment.calls;
    report.attacker.through = report.attacker.before_containment.through + report.attacker.after_containment.through;
    report.ok = report.legit_ok && report.containment.contained && report.attacker.through === 0 && report.attacker.after_containment.calls > 0;
    report.verdict = report.ok
      ? `CONTAINED: ${report.attacker.through} attacker calls through; every proxy (${report.containment.per_proxy.length}) refused the stolen token${report.containment.detection_driven ? '' : ' (manual containment: detection-driven containment not exercised)'}`
      : `NOT CONTAINED: ${[
        !report.legit_ok ? 'the legitimate call did not pass' : '',
        report.attacker.through ? `${report.attacker.through} attacker call(s) got through` : '',
        report.legit_ok && !report.containment.contained ? report.containment.note : '',
      ].filter(Boolean).join('; ') || report.problems.join('; ')}`;
    report.finished_at = Date.now();
    // Server-stamped steps (detection, signal) were added when the drill learnt of them: in time order for the report.
    report.steps.sort((a, b) => a.at - b.at);
    try {
      mkdirSync(o.outDir, { recursive: true });
      const base = join(o.outDir, `drill-${runId}`);
      report.files = { markdown: `${base}.md`, json: `${base}.json` };
      writeFileSync(`${base}.json`, `${JSON.stringify(report, null, 2)}\n`);
      writeFileSync(`${base}.md`, drillMarkdown(report));
    } catch (err) {
      report.files = null;
      report.problems.push(`the report files could not be written: ${(err as Error).message}`);
    }
  }
  return report;
}

class DrillAbort extends Error {}

/** Undo everything the drill did: playbook step-downs / kill switches, tokens, grant, key, NHI; resolve its findings. */
async function cleanup(admin: AdminClient, nhi: string, runId: string, created: { nhi: boolean; credential: string | null; grant: string | null }, report: DrillReport): Promise<void> {
  const act = async (what: string, fn: () => Promise<unknown>) => {
    try {
      await fn();
      report.cleanup.push({ what, ok: true });
    } catch (err) {
      report.cleanup.push({ what, ok: false, error: (err as Error).message });
    }
  };
  if (!created.nhi) return;
  const reason = `mandate drill token-theft ${runId}: cleanup`;
  await act(`revoked every token of ${nhi}`, () => admin.call('POST', '/revocations', { body: { nhi, reason } }));
  if (created.grant) await act(`removed grant ${created.grant}`, () => admin.call('DELETE', `/grants/${encodeURIComponent(created.grant!)}`));
  if (created.credential) await act(`removed credential ${created.credential}`, () => admin.call('DELETE', `/credentials/${encodeURIComponent(created.credential!)}`));
  await act(`disabled NHI ${nhi}`, () => admin.call('POST', `/nhis/${encodeURIComponent(nhi)}/disable`, { body: { reason } }));
  // Detections and playbooks run behind the bus, possibly on another instance: a finding or a
  // step-down about the attack can land after the first look. Look again until a pass, a second
  // after the previous one, finds nothing left to undo or resolve (at most ten passes).
  const undone = new Set<string>();
  for (let pass = 0; pass < 10; pass++) {
    let handled = 0;
    try {
      const r = (await admin.call('GET', '/playbook-actions', { query: { nhi, limit: '100' } })) as { actions: Array<{ id: string; action: string; dry_run: boolean; undone_at: number | null }> };
      for (const a of r.actions) {
        if (a.dry_run || a.undone_at !== null || a.action === 'revoke_tokens' || undone.has(a.id)) continue;
        undone.add(a.id);
        handled++;
        await act(`undid playbook action ${a.id} (${a.action})`, () => admin.call('POST', `/playbook-actions/${encodeURIComponent(a.id)}/undo`));
      }
    } catch (err) {
      if (!(err instanceof CliError && err.exitCode === EXIT.failed)) report.cleanup.push({ what: 'listing playbook actions', ok: false, error: (err as Error).message });
    }
    try {
      const r = (await admin.call('GET', '/findings', { query: { nhi, limit: '100' } })) as { findings: Array<{ id: string; status: string; detection: string }> };
      for (const f of r.findings) {
        if (f.status === 'resolved' || undone.has(f.id)) continue;
        undone.add(f.id);
        handled++;
        await act(`resolved finding ${f.id} (${f.detection})`, () => admin.call('POST', `/findings/${encodeURIComponent(f.id)}/resolve`, { body: { note: `raised by mandate drill token-theft ${runId}` } }));
      }
    } catch (err) {
      if (!(err instanceof CliError && err.exitCode === EXIT.failed)) report.cleanup.push({ what: 'listing findings', ok: false, error: (err as Error).message });
    }
    if (handled === 0 && pass > 0) break;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

interface ToolAction { name: string; method?: string; path?: string; tier: string }

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

/**
 * One call through a proxy. The connection goes to the proxy instance; the DPoP `htu` is the
 * tool's public resource URL (what every instance compares against), so it works behind one
 * public name as well as instance by instance. Retries once on `use_dpop_nonce` (RFC 9449 §9).
 */
async function toolCall(t: ProxyTarget, toolId: string, resource: string, path: string, token: string, scheme: 'DPoP' | 'Bearer', key: DpopKey | undefined, marker: string): Promise<CallResult> {
  const url = `${t.base}/tools/${encodeURIComponent(toolId)}${path}`;
  let nonce = t.nonce;
  for (let attempt = 0; ; attempt++) {
    const headers: Record<string, string> = { authorization: `${scheme} ${token}`, 'x-mandate-drill': marker, accept: 'application/json' };
    if (key) headers.dpop = await key.proof({ htm: SAFE_METHOD, htu: `${resource}${path}`, accessToken: token, ...(nonce !== undefined ? { nonce } : {}) });
    let res: Response;
    try {
      res = await fetch(url, { method: SAFE_METHOD, headers, signal: AbortSignal.timeout(10_000) });
    } catch (err) {
      return { status: 0, error: 'unreachable', description: (err as Error).message };
    }
    const text = (await res.text()).slice(0, RESPONSE_CAP);
    let body: { error?: unknown; error_description?: unknown } = {};
    try {
      const parsed = JSON.parse(text) as unknown;
      if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) body = parsed as typeof body;
    } catch {
      // not JSON: fine for a 2xx from the tool
    }
    const www = res.headers.get('www-authenticate') ?? '';
    const error = typeof body.error === 'string' ? body.error : /error="([^"]*)"/.exec(www)?.[1] ?? null;
    const description = ok2xx(res.status) ? null : typeof body.error_description === 'string' ? body.error_description.slice(0, 300) : null;
    const newNonce = res.headers.get('dpop-nonce') ?? undefined;
    if (newNonce) t.nonce = newNonce;
    if (res.status === 401 && error === 'use_dpop_nonce' && attempt === 0 && newNonce && key) {
      nonce = newNonce;
      continue;
    }
    return { status: res.status, error: ok2xx(res.status) ? null : error, description };
  }
}

async function getJson(url: string): Promise<Record<string, unknown> | undefined> {
  let res: Response;
  try {
    res = await fetch(url, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(10_000) });
  } catch (err) {
    throw new CliError(`cannot reach ${url} (${(err as Error).message})`, EXIT.unreachable);
  }
  const text = (await res.text()).slice(0, RESPONSE_CAP);
  if (!res.ok) return undefined;
  try {
    const v = JSON.parse(text) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

async function pollUntil<T>(deadline: number, everyMs: number, fn: () => Promise<T | undefined>): Promise<T | undefined> {
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() >= deadline) return undefined;
    await sleep(everyMs);
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const ok2xx = (s: number) => s >= 200 && s < 300;
const stripSlash = (u: string) => u.replace(/\/+$/, '');
/** The token's `jti` (an identifier, printed; the token itself never is). */
function jtiOf(token: string): string {
  try {
    const p = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { jti?: unknown };
    return typeof p.jti === 'string' ? p.jti : '?';
  } catch {
    return '?';
  }
}

const ms = (x: number | null) => (x === null ? '-' : `${x} ms`);
const iso = (x: number | null) => (x === null ? '-' : new Date(x).toISOString());

/** The human summary on stdout. */
export function drillSummary(r: DrillReport): string {
  const c = r.containment;
  return [
    `mandate drill token-theft, run ${r.run_id} (NHI ${r.nhi}, tool ${r.tool}.${r.action ?? '?'}, ${r.proxies.length} prox${r.proxies.length === 1 ? 'y' : 'ies'})`,
    `  playbooks:         ${r.playbooks.note}`,
    `  legit call:        ${r.legit_ok ? 'passed at every proxy' : 'FAILED'}`,
    `  attacker calls:    ${r.attacker.calls} (${r.attacker.before_containment.calls} before, ${r.attacker.after_containment.calls} after containment), ${r.attacker.through} through`,
    `  time to detect:    ${r.detection.detected ? `${ms(r.detection.time_to_detect_ms)} (${r.detection.severity} ${r.detection.finding_id})` : 'NOT DETECTED'}`,
    `  time to contain:   ${c.contained ? `${ms(c.time_to_contain_ms)} from signal ${c.signal!.id} to a refusal at every proxy` : 'NOT CONTAINED'} (${c.mode}${c.detection_driven ? ', detection-driven' : ''})`,
    ...c.per_proxy.map((p) => `    ${p.proxy}: ${p.first_denied_at === null ? 'still accepted the token' : `refused ${ms(p.denied_after_signal_ms)} after the signal`}`),
    ...(c.server ? [`  server timeline:   applied at ${c.server.instances} instance(s) within ${ms(c.server.applied_everywhere_ms)}, first refusal ${ms(c.server.first_denial_ms)} after the signal`] : []),
    `  cleanup:           ${r.cleanup.length ? r.cleanup.map((x) => `${x.ok ? '' : 'FAILED '}${x.what}`).join('; ') : 'nothing was created'}`,
    ...r.problems.map((p) => `  problem:           ${p}`),
    ...(r.files ? [`  report:            ${r.files.markdown}, ${r.files.json}`] : []),
    `RESULT: ${r.verdict}`,
  ].join('\n');
}

/** The Markdown report. */
export function drillMarkdown(r: DrillReport): string {
  const c = r.containment;
  const esc = (s: unknown) => String(s ?? '-').replace(/\|/g, '\\|').replace(/\n/g, ' ');
  return [
    `# Token-theft drill ${r.run_id}`,
    '',
    `**${r.ok ? 'PASS' : 'FAIL'}**: ${r.verdict}`,
    '',
    `- Started ${iso(r.started_at)}, finished ${iso(r.finished_at)}`,
    `- Mandate: ${r.url} (issuer ${r.issuer ?? '-'}); proxies: ${r.proxies.join(', ')}`,
    `- Drill NHI \`${r.nhi}\`, tool \`${r.tool}\` action \`${r.action ?? '-'}\`, other tool \`${r.other_tool}\``,
    `- Playbooks: ${r.playbooks.note}`,
    '',
    '## Measures',
    '',
    '| Measure | Value |',
    '|---|---|',
    `| Legitimate call passed at every proxy | ${r.legit_ok ? 'yes' : 'no'} |`,
    `| Attacker calls (before / after containment) | ${r.attacker.calls} (${r.attacker.before_containment.calls} / ${r.attacker.after_containment.calls}) |`,
    `| Attacker calls through (2xx) | **${r.attacker.through}** |`,
    `| Time to detect (first attacker call → detection.raised) | ${r.detection.detected ? ms(r.detection.time_to_detect_ms) : 'not detected'} |`,
    `| Finding | ${esc(r.detection.finding_id)} ${esc(r.detection.severity)}: ${esc(r.detection.title)} |`,
    `| Containment | ${c.contained ? 'contained' : 'NOT contained'}, ${c.mode}${c.detection_driven ? ' (detection-driven)' : ''} |`,
    `| Revoke signal | ${c.signal ? `${c.signal.id} ${c.signal.action} from ${esc(c.signal.source)}, ${c.signal.status}` : '-'} |`,
    `| Time to contain (signal → refusal at every proxy) | ${ms(c.time_to_contain_ms)} |`,
    ...(c.server ? [`| Server timeline: applied at every instance / first refusal | ${ms(c.server.applied_everywhere_ms)} at ${c.server.instances} instance(s) / ${ms(c.server.first_denial_ms)} |`] : []),
    '',
    c.note,
    '',
    '## Each proxy',
    '',
    '| Proxy | Legit call passed | First refusal seen | After the signal | Probes | Refusal |',
    '|---|---|---|---|---|---|',
    ...c.per_proxy.map((p) => `| ${p.proxy} | ${p.legit_passed ? 'yes' : 'no'} | ${iso(p.first_denied_at)} | ${ms(p.denied_after_signal_ms)} | ${p.probes} | ${esc(p.description)} |`),
    '',
    '## Steps',
    '',
    '| Time | Who | Step | Proxy | Answer | Through |',
    '|---|---|---|---|---|---|',
    ...r.steps.map((s) => `| ${iso(s.at)} | ${s.actor} | ${esc(s.step)} | ${esc(s.proxy)} | ${s.status === undefined ? '' : `${s.status} ${esc(s.error ?? '')} ${esc(s.description ?? '')}`.trim()} | ${s.through === undefined ? '' : s.through ? '**yes**' : 'no'} |`),
    '',
    '## Cleanup',
    '',
    ...(r.cleanup.length ? r.cleanup.map((x) => `- ${x.ok ? 'done' : '**failed**'}: ${x.what}${x.error ? ` (${esc(x.error)})` : ''}`) : ['- nothing was created']),
    ...(r.problems.length ? ['', '## Problems', '', ...r.problems.map((p) => `- ${p}`)] : []),
    '',
    'Times are the drill\'s clock, except the signal\'s `received_at` and `detection.raised` (the server\'s); across machines they include clock skew.',
    '',
  ].join('\n');
}
