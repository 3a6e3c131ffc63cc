import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { startTestApp, freshPgSchemaUrl, type TestApp } from '../helpers/app.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import { adminCall, clusterFixture, newKek, spawnInstance, writeConfig, type Instance } from '../helpers/cluster.js';
import { main } from '../../src/cli/main.js';
import type { DrillReport } from '../../src/cli/drill/report.js';

/**
 * Issue 7, item 6: `mandate drill token-theft` end to end against a real Mandate: the all-in-one
 * (SQLite + in-process bus) in this process, and a broker, a signals instance (where detections
 * and playbooks run) and three proxies as separate processes on PostgreSQL + NATS.
 */
const BIN = join(fileURLToPath(new URL('../../../', import.meta.url)), 'bin', 'mandate.js');

const drillTools = (upstream: string) => (['drill', 'drill-other'] as const).map((id) => ({
  id, kind: 'http' as const, upstream, actions: [{ name: 'ping', method: 'GET' as const, path: '/ping', tier: 'read' }],
}));
const PLAYBOOK = { playbooks: [{ name: 'contain-stolen-tokens', detection: 'stolen_token' as const, action: 'revoke_tokens' as const }] };

async function runDrill(args: string[]): Promise<{ code: number; report: DrillReport; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(['drill', 'token-theft', ...args, '--json'], { log: (s) => (stdout += `${s}\n`), err: (s) => (stderr += `${s}\n`) });
  return { code, report: JSON.parse(stdout) as DrillReport, stderr };
}

/** What every successful run must show, whatever the deployment. */
function assertContained(r: DrillReport, proxies: number, upstream: RecordingUpstream) {
  assert.equal(r.ok, true, r.verdict + JSON.stringify(r.problems));
  assert.equal(r.legit_ok, true);
  assert.equal(r.attacker.before_containment.calls, 3);
  assert.equal(r.attacker.after_containment.calls, 3 * proxies);
  assert.equal(r.attacker.through, 0, 'zero attacker calls through');
  for (const s of r.steps.filter((x) => x.actor === 'attacker')) {
    assert.equal(s.status, 401, `${s.step}: ${s.status} ${s.description}`);
    assert.equal(s.through, false);
  }
  // The three attacks were refused for the right reasons: another key, no proof (or already revoked:
  // the revocation check comes first, and the playbook may have acted by then), another tool.
  const refusals = r.steps.filter((x) => x.actor === 'attacker').slice(0, 3).map((x) => x.description ?? '');
  assert.match(refusals[0]!, /DPoP|proof/);
  assert.match(refusals[1]!, /DPoP-bound|revoked/);
  assert.match(refusals[2]!, /another tool/);
  assert.equal(r.detection.detected, true);
  assert.equal(r.detection.severity, 'critical');
  assert.equal(typeof r.detection.time_to_detect_ms, 'number');
  assert.equal(r.containment.contained, true);
  assert.equal(r.containment.mode, 'playbook');
  assert.equal(r.containment.detection_driven, true);
  assert.equal(r.containment.signal?.source, 'playbook:contain-stolen-tokens');
  assert.equal(r.containment.per_proxy.length, proxies);
  for (const p of r.containment.per_proxy) {
    assert.equal(p.legit_passed, true);
    assert.equal(typeof p.first_denied_at, 'number', `${p.proxy} refused the legit token`);
    assert.match(p.description ?? '', /revoked/);
  }
  assert.equal(typeof r.containment.time_to_contain_ms, 'number');
  // Only legitimate calls ever reached the tool: nothing the attacker sent was forwarded.
  const marks = upstream.seen.map((s) => String(s.headers['x-mandate-drill'] ?? '')).filter((m) => m.endsWith(`:${r.run_id}`));
  assert.ok(marks.some((m) => m.startsWith('legit')), 'the legitimate calls reached the tool');
  assert.equal(marks.filter((m) => m.startsWith('attacker')).length, 0, 'no attacker call reached the tool');
  // The report files, with the measured fields; no token in them.
  assert.ok(r.files && existsSync(r.files.markdown) && existsSync(r.files.json));
  const md = readFileSync(r.files.markdown, 'utf8');
  assert.match(md, /Time to detect/);
  assert.match(md, /Time to contain/);
  assert.match(md, /Attacker calls through \(2xx\) \| \*\*0\*\*/);
  const saved = JSON.parse(readFileSync(r.files.json, 'utf8')) as DrillReport;
  assert.equal(saved.containment.time_to_contain_ms, r.containment.time_to_contain_ms);
  for (const text of [md, readFileSync(r.files.json, 'utf8')]) assert.doesNotMatch(text, /eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}/, 'no JWT in the report');
  // Cleanup ran: tokens revoked, grant and key removed, NHI disabled, findings resolved.
  assert.ok(r.cleanup.length >= 4 && r.cleanup.every((c) => c.ok), JSON.stringify(r.cleanup));
}

let diag: (r: DrillReport) => void = () => {};

async function assertCleanedUp(admin: (m: string, p: string) => Promise<{ status: number; body: any }>, nhi: string) {
  const n = await admin('GET', `/nhis/${nhi}`);
  assert.equal(n.status, 200);
  assert.equal(n.body.status, 'disabled');
  assert.deepEqual(n.body.credentials, []);
  assert.deepEqual(n.body.grants, []);
  const open = await admin('GET', `/findings?nhi=${nhi}&status=open`);
  assert.deepEqual(open.body.findings, []);
}

const measures = (r: DrillReport) =>
  `time to detect ${r.detection.time_to_detect_ms} ms; time to contain ${r.containment.time_to_contain_ms} ms (per proxy ${r.containment.per_proxy.map((p) => p.denied_after_signal_ms).join(', ')} ms); server: ${JSON.stringify(r.containment.server)}; attacker ${r.attacker.calls} calls, ${r.attacker.through} through`;

describe('mandate drill token-theft against the all-in-one (SQLite, in-process bus)', { timeout: 120_000 }, () => {
  let rec: RecordingUpstream;
  let t: TestApp;
  let bare: TestApp;
  let out: string;
  before(async () => {
    rec = await startRecordingUpstream();
    out = mkdtempSync(join(tmpdir(), 'mandate-drill-'));
    t = await startTestApp(undefined, { tools: drillTools(rec.url), governance: PLAYBOOK });
    bare = await startTestApp(undefined, { tools: drillTools(rec.url) });
  });
  after(async () => {
    await t.app.close();
    await bare.app.close();
    await rec.close();
  });

  it('detects the stolen token, the playbook revokes it, the proxy refuses it, nothing the attacker sent gets through; cleans up', async (tc) => {
    diag = (r) => tc.diagnostic(measures(r));
    const { code, report } = await runDrill(['--url', t.url, '--token', t.token, '--out', out]);
    assert.equal(code, 0);
    assertContained(report, 1, rec);
    diag(report);
    // The server's own timeline of the signal, written in batches a little later: the drill waits for it.
    assert.ok(report.containment.server && report.containment.server.instances >= 1 && report.containment.server.first_denial_ms !== null, JSON.stringify(report.containment.server));
    assert.equal(report.proxies[0], t.url, 'the all-in-one is its own proxy by default');
    assert.deepEqual(report.playbooks.suitable, ['contain-stolen-tokens']);
    await assertCleanedUp(t.admin, report.nhi);
  });

  it('without a revoking playbook it is not contained (exit 1); --contain-manually contains and says detection-driven containment was not exercised', async () => {
    const failed = await runDrill(['--url', bare.url, '--token', bare.token, '--out', out, '--timeout', '3']);
    assert.equal(failed.code, 1);
    assert.equal(failed.report.ok, false);
    assert.equal(failed.report.containment.contained, false);
    assert.equal(failed.report.detection.detected, true, 'detections run without playbooks');
    assert.match(failed.report.playbooks.note, /NO playbook/);
    assert.match(failed.report.verdict, /NOT CONTAINED/);
    assert.equal(failed.report.attacker.through, 0);
    assert.ok(existsSync(failed.report.files!.markdown));
    await assertCleanedUp(bare.admin, failed.report.nhi);

    const manual = await runDrill(['--url', bare.url, '--token', bare.token, '--out', out, '--contain-manually']);
    assert.equal(manual.code, 0, manual.report.verdict);
    assert.equal(manual.report.containment.contained, true);
    assert.equal(manual.report.containment.mode, 'manual');
    assert.equal(manual.report.containment.detection_driven, false);
    assert.match(manual.report.verdict, /detection-driven containment not exercised/);
    assert.equal(manual.report.attacker.through, 0);
    await assertCleanedUp(bare.admin, manual.report.nhi);
  });

  it('usage errors exit 2 and create nothing', async () => {
    let err = '';
    const code = await main(['drill', 'token-theft', '--url', t.url, '--token', t.token, '--tool', 'no-such-tool'], { log: () => {}, err: (s) => (err += s) });
    assert.equal(code, 2);
    assert.match(err, /no tool "no-such-tool" is declared/);
    assert.equal(await main(['drill', 'nope'], { log: () => {}, err: () => {} }), 2);
    const nhis = await t.admin('GET', '/nhis?search=drill-token-theft');
    assert.ok(nhis.body.nhis.every((n: { status: string }) => n.status === 'disabled'));
  });
});

describe('mandate drill token-theft against one broker, a signals instance and three proxies (PostgreSQL + NATS)', { timeout: 240_000 }, () => {
  const fx = clusterFixture();
  const { started } = fx;

  it('every proxy refuses the stolen token after the playbook acts; zero attacker calls through (bin/mandate.js as a child process)', async (tc) => {
    diag = (r) => tc.diagnostic(measures(r));
    const suffix = randomBytes(4).toString('hex');
    // Every instance names one public issuer; the drill reaches each at its own port and proves for the public URL.
    const path = writeConfig({
      server: { host: '127.0.0.1', port: 0, public_url: 'http://mandate.drill.test' },
      store: { driver: 'postgres', postgres_url: await freshPgSchemaUrl(), pool_size: 3 },
      bus: { driver: 'nats', nats_servers: ['nats://127.0.0.1:4222'], stream: `D_${suffix}`, subject_prefix: `d${suffix}` },
      keys: { kek: 'env:CLUSTER_KEK' },
      log: { level: 'warn' },
      tools: drillTools(fx.rec.url),
      governance: PLAYBOOK,
    });
    const env = { CLUSTER_KEK: newKek() };
    const broker = await spawnInstance('broker', path, env);
    started.push(broker);
    for (let i = 0; i < 200 && !broker.bootstrapToken; i++) await new Promise((r) => setTimeout(r, 50));
    const token = broker.bootstrapToken!;
    assert.ok(token, 'the bootstrap credential');
    const rest = await Promise.all([spawnInstance('signals', path, env), ...[1, 2, 3].map(() => spawnInstance('proxy', path, env))]);
    started.push(...rest);
    const proxies = rest.slice(1);

    const out = mkdtempSync(join(tmpdir(), 'mandate-drill-'));
    const child = spawn(process.execPath, [
      BIN, 'drill', 'token-theft', '--url', broker.url, ...proxies.flatMap((p) => ['--proxy', p.url]), '--out', out, '--owner', 'secops@example.com', '--json',
    ], { env: { PATH: process.env.PATH, MANDATE_TOKEN: token }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    assert.equal(code, 0, `${stdout}\n${stderr}`);
    assert.doesNotMatch(stdout + stderr, new RegExp(token.split('.').at(-1)!), 'the admin credential is never printed');
    const report = JSON.parse(stdout) as DrillReport;
    assertContained(report, 3, fx.rec);
    diag(report);
    assert.deepEqual(report.containment.per_proxy.map((p) => p.proxy), proxies.map((p) => p.url));
    assert.equal(report.issuer, 'http://mandate.drill.test');
    assert.ok(report.containment.server && report.containment.server.instances >= 3, JSON.stringify(report.containment.server));
    await assertCleanedUp((m, p) => adminCall(broker.url, token, m, p), report.nhi);
  });
});
