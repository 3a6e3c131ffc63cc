import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import { buildConfig, silentLogger } from '../../src/core/index.js';
import { startApp, type App } from '../../src/app.js';
import { ASSERTION_TYPE, agentNhi, testAgent, testDpopKey, type TestAgent, type TestDpopKey } from '../helpers/agent.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import { freshPgSchemaUrl } from '../helpers/app.js';
import { call, findings, startGovApp, tokenAt, waitFor, type GovApp } from './helpers.js';

/** The policy under test: a high risk score refuses every call. */
function riskPolicyFile(): string {
  const dir = mkdtempSync(join(tmpdir(), 'mandate-risk-policy-'));
  const file = join(dir, 'risk.cedar');
  writeFileSync(file, '@id("risk-high")\nforbid (principal, action, resource)\n  when { context.risk_score >= 80 };\n');
  return file;
}

const TOOLS = (upstream: string) => [
  { id: 'rec', kind: 'http' as const, upstream, actions: [{ name: 'list_items', method: 'GET' as const, path: '/items', tier: 'read' }] },
  { id: 'other', kind: 'http' as const, upstream, actions: [{ name: 'ping', method: 'GET' as const, path: '/ping', tier: 'read' }] },
];

/**
 * `context.risk_score` is the NHI's current governance score: real stolen-token traffic through
 * the real proxy raises findings, governance rescores the NHI and publishes `risk.changed`, the
 * proxy's RiskView applies it, and a Cedar `forbid … when { context.risk_score >= 80 }` refuses the
 * owner's next call (same call as before: the decision cache keys on the score). Resolving the
 * findings lowers the score and the call passes again.
 */
describe('governance: the risk score in the proxy\'s Cedar context', () => {
  let g: GovApp;
  let rec: RecordingUpstream;
  let agent: TestAgent;
  let k1: TestDpopKey;
  let k2: TestDpopKey;

  before(async () => {
    rec = await startRecordingUpstream();
    agent = await testAgent('risky');
    k1 = await testDpopKey();
    k2 = await testDpopKey();
    g = await startGovApp({
      tokens: { profiles: [{ name: 'read', ttl: '10m', binding: 'optional' }, { name: 'write', ttl: '5m' }] },
      policy: { files: [riskPolicyFile()] },
      nhis: [agentNhi(agent, { tier: 'admin' })],
      tools: TOOLS(rec.url),
      grants: [{ nhi: 'risky', tool: 'rec', actions: ['list_items'], change_ref: 'PR-1' }],
    });
  });
  after(async () => {
    await g.app.close();
    await rec.close();
  });

  const token = async () => {
    const r = await tokenAt(g, agent, 'rec', 'list_items', k1);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.access_token as string;
  };

  it('allows below the threshold, denies once real findings raise the score to 80, allows again when they are resolved', async () => {
    const view = g.app.riskView!;
    const t1 = await token();
    // Scored at start: tier admin 25 + one key 5.
    const start = (await g.admin('GET', '/nhis/risky/risk')).body;
    assert.ok(start.score < 80, JSON.stringify(start));
    assert.equal(await waitFor(() => view.scoreOf('risky') === start.score, 'the view to hold the start score'), true);
    assert.equal((await call(g, '/tools/rec/items', { token: t1, key: k1 })).status, 200, 'allowed below the threshold');

    // Two tokens used with another key's DPoP proof: two critical stolen_token findings (30 each).
    const t2 = await token();
    for (const t of [t1, t2]) assert.equal((await call(g, '/tools/rec/items', { token: t, key: k1, proofKey: k2 })).status, 401);
    await waitFor(async () => (await findings(g, 'nhi=risky&detection=stolen_token')).length === 2 || undefined, 'two stolen_token findings');
    const high = await waitFor(() => view.scoreOf('risky') >= 80 && view.scoreOf('risky'), 'the proxy to see a score >= 80');
    const scored = (await g.admin('GET', '/nhis/risky/risk')).body;
    assert.equal(high, scored.score, 'the proxy sees the score governance computes');

    // The owner's own call, exactly as before, is now refused by the policy.
    const denied = await call(g, '/tools/rec/items', { token: t1, key: k1 });
    assert.equal(denied.status, 403, denied.body);
    assert.match(denied.body, /denied by policy risk-high/);
    await g.app.audit.flush();
    const rec1 = (await g.admin('GET', '/audit?type=tool.call_denied&subject=risky&limit=1')).body.records[0];
    assert.match(rec1.data.reason, /risk-high/);

    // An operator resolves the findings: the score drops below 80 and the call passes again.
    for (const f of await findings(g, 'nhi=risky&detection=stolen_token')) {
      assert.equal((await g.admin('POST', `/findings/${f.id}/resolve`, { note: 'key rotated' })).status, 200);
    }
    await waitFor(() => view.scoreOf('risky') < 80, 'the score to drop below 80');
    assert.equal((await call(g, '/tools/rec/items', { token: t1, key: k1 })).status, 200, 'allowed again');
  });
});

/**
 * Many instances: governance runs in a `signals` process, the call goes through a `proxy`
 * process that has no governance; the score reaches it through risk.changed on NATS (and the
 * `risk_scores` table on PostgreSQL, which a proxy started later loads).
 */
describe('governance: a proxy instance without governance gets the scores (PostgreSQL + NATS)', () => {
  const ISSUER = 'http://mandate.test';
  let rec: RecordingUpstream;
  let agent: TestAgent;
  const apps: App[] = [];
  let governance: App;
  let proxy: App;

  before(async () => {
    rec = await startRecordingUpstream();
    agent = await testAgent('risky-pg');
    const dataDir = mkdtempSync(join(tmpdir(), 'mandate-risk-pg-'));
    const suffix = randomBytes(4).toString('hex');
    const config = buildConfig({
      server: { host: '127.0.0.1', port: 0, public_url: ISSUER },
      store: { driver: 'postgres', postgres_url: await freshPgSchemaUrl() },
      bus: { driver: 'nats', stream: `T_${suffix}`, subject_prefix: `t${suffix}` },
      log: { level: 'silent' },
      keys: { kek: 'env:MANDATE_KEK' },
      tokens: { profiles: [{ name: 'read', ttl: '10m', binding: 'optional' }, { name: 'write', ttl: '5m' }] },
      policy: { files: [riskPolicyFile()] },
      nhis: [agentNhi(agent, { id: 'risky-pg', tier: 'admin' })],
      tools: TOOLS(rec.url),
      grants: [{ nhi: 'risky-pg', tool: 'rec', actions: ['list_items'], change_ref: 'PR-1' }],
    }, { env: {} });
    const env = { MANDATE_KEK: randomBytes(32).toString('base64') };
    const start = async (role: 'broker' | 'signals' | 'proxy') => {
      const app = await startApp({ config, role, env, dataDir, logger: silentLogger(), onBootstrapCredential: () => {} });
      apps.push(app);
      return app;
    };
    await start('broker');
    governance = await start('signals');
    proxy = await start('proxy');
  });
  after(async () => {
    for (const a of apps.reverse()) await a.close();
    await rec.close();
  });

  const token = async () => {
    const broker = apps[0]!;
    const now = Math.floor(Date.now() / 1000);
    const assertion = await new SignJWT({ jti: randomUUID() })
      .setProtectedHeader({ alg: 'ES256', kid: agent.publicJwk.kid! })
      .setIssuer(agent.id).setSubject(agent.id).setAudience(ISSUER).setIssuedAt(now).setExpirationTime(now + 60)
      .sign(agent.privateKey);
    const res = await fetch(`${broker.url}/oauth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: assertion, resource: `${ISSUER}/tools/rec`, scope: 'list_items' }),
    });
    const body = (await res.json()) as Record<string, string>;
    assert.equal(res.status, 200, JSON.stringify(body));
    return body.access_token!;
  };
  const get = async (path: string, t: string) => {
    const res = await fetch(`${proxy.url}${path}`, { headers: { authorization: `Bearer ${t}` } });
    return { status: res.status, body: await res.text() };
  };

  it('denies through the proxy process once governance in the signals process scores the NHI at 80', async () => {
    assert.equal(proxy.governance.riskFeed.scoreOf('risky-pg'), undefined, 'no governance runs in the proxy process');
    assert.equal(governance.riskView, undefined);
    const t0 = await token();
    assert.equal((await get('/tools/rec/items', t0)).status, 200);

    // Four tokens presented at a tool they were not issued for: four high stolen_token findings (15 each, 60 in all).
    for (let i = 0; i < 4; i++) assert.equal((await get('/tools/other/ping', await token())).status, 401);
    await waitFor(() => proxy.riskView!.scoreOf('risky-pg') >= 80, 'the proxy process to see a score >= 80');
    const denied = await get('/tools/rec/items', t0);
    assert.equal(denied.status, 403, denied.body);
    assert.match(denied.body, /risk-high/);
    assert.equal(governance.governance.riskFeed.scoreOf('risky-pg'), proxy.riskView!.scoreOf('risky-pg'));
  });
});
