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
import { exportJWK, generateKeyPair } from 'jose';
import { DpopKey, MandateClient } from '../../client/index.js';
import { AdminClient } from '../admin-client.js';
import { cleanup, type Created } from './cleanup.js';
import { ok2xx, pollUntil, SAFE_METHOD, sleep, jtiOf, toolCall, type CallResult, type ProxyTarget } from './http.js';
import { preflight } from './preflight.js';
import { MandateError } from '../../core/index.js';
import { conclude, newReport, writeReportFiles, type DrillReport, type DrillStep, type ProxyContainment } from './report.js';

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

/** How long the drill waits for the instances' timeline rows (written in batches shortly after the fact) before it reports. */
const TIMELINE_WAIT_MS = 3_000;

/** Ends the drill early with a problem for the report (cleanup still runs). */
/** A step that could not be carried out: the drill stops there and reports what it did. */
class DrillAbort extends MandateError {
  constructor(message: string) {
    super('ERR_DRILL_ABORT', message);
  }
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
  const report = newReport({ runId, nhi, url: o.url, proxies: o.proxies, tool: o.tool, otherTool: o.otherTool });
  const step = (s: DrillStep) => report.steps.push(s);
  const { issuer, tokenEndpoint, action, path, otherPath, targets } = await preflight(o, admin, report, say);

  const created: Created = { nhi: false, credential: null, grant: null };
  try {
    say(`drill ${runId}: creating NHI ${nhi}`);
    const clientKeys = await generateKeyPair('ES256', { extractable: false });
    const kid = `${nhi}-1`;
    const pub = { ...(await exportJWK(clientKeys.publicKey)), kid, alg: 'ES256', use: 'sig' };
    const tomorrow = new Date(Date.now() + 2 * 86_400_000).toISOString().slice(0, 10);
    await admin.call('POST', '/nhis', {
      body: {
        id: nhi, class: 'agent', owner: o.owner, system: 'mandate-drill', environment: 'drill', tier: action.tier === 'read' ? 'read' : 'write',
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
      dpop: legitKey, fetch: viaBroker, tokenEndpoint,
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
    conclude(report);
    writeReportFiles(report, o.outDir);
  }
  return report;
}
