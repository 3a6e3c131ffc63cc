import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { agentNhi, testAgent, testDpopKey, type TestAgent, type TestDpopKey } from '../helpers/agent.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import { findings, settled, startGovApp, tokenAt, waitFor, type GovApp } from './helpers.js';

const DAY = 86_400_000;
const HOUR = 3_600_000;

/**
 * The admin routes the console's charts and summaries read (minting rate per NHI with the
 * anomalous hours, unresolved findings by severity, credential ages, NHIs by credential type),
 * from real broker traffic on a ManualClock.
 */
describe('governance: the admin routes behind the console', () => {
  let g: GovApp;
  let rec: RecordingUpstream;
  let agent: TestAgent;
  let quiet: TestAgent;
  let key: TestDpopKey;
  // Mid-hour, so that a few tokens stay in one UTC hour.
  const T0 = Math.floor(Date.now() / HOUR) * HOUR - 30 * DAY + 20 * 60_000;

  before(async () => {
    rec = await startRecordingUpstream();
    agent = await testAgent('minter');
    quiet = await testAgent('quiet');
    key = await testDpopKey();
    g = await startGovApp({
      tokens: { profiles: [{ name: 'read', ttl: '10m', binding: 'optional' }, { name: 'write', ttl: '5m' }] },
      nhis: [agentNhi(agent), agentNhi(quiet, { tier: 'read' })],
      tools: [
        { id: 'rec', kind: 'http', upstream: rec.url, actions: [{ name: 'list_items', method: 'GET', path: '/items', tier: 'read' }] },
        { id: 'other', kind: 'http', upstream: rec.url, actions: [{ name: 'ping', method: 'GET', path: '/ping', tier: 'read' }] },
      ],
      grants: [{ nhi: 'minter', tool: 'rec', actions: ['list_items'], change_ref: 'PR-1' }, { nhi: 'quiet', tool: 'rec', actions: ['list_items'], change_ref: 'PR-2' }],
      governance: { minting_rate: { min_baseline_days: 1, min_count: 3, mad_factor: 1 } },
    }, {}, T0);
  });
  after(async () => {
    await g.app.close();
    await rec.close();
  });

  const mint = async (a: TestAgent, n: number) => {
    for (let i = 0; i < n; i++) assert.equal((await tokenAt(g, a, 'rec', 'list_items', key)).status, 200);
  };

  it('minting rate per NHI per hour: cold start has no threshold, the spike hour is marked as the detection marks it', async () => {
    await mint(agent, 1);
    await mint(quiet, 1);
    g.clock.advance(DAY);
    await mint(agent, 4);
    await settled(g, 'token.issued');
    const finding = await waitFor(async () => (await findings(g, 'nhi=minter&detection=minting_rate'))[0], 'minting finding');
    // Issued-token records reach the store in batches (within 50 ms); the chart reads the store.
    await g.app.broker!.flush();

    const r = await g.admin('GET', '/metrics/minting?hours=30');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const nowHour = Math.floor(g.clock.now() / HOUR) * HOUR;
    assert.equal(r.body.hours.length, 30);
    assert.equal(r.body.hours.at(-1), nowHour);
    assert.equal(r.body.hours[0], nowHour - 29 * HOUR);
    // The NHI with an anomaly comes first; the quiet one minted once a day ago.
    assert.deepEqual(r.body.series.map((s: any) => s.nhi), ['minter', 'quiet']);
    const [m, q] = r.body.series;
    assert.equal(m.total, 5, JSON.stringify(m));
    assert.equal(m.counts.at(-1), 4);
    assert.equal(m.counts.at(-25), 1);
    // The day before had no history yet (cold start); today's hour compares with it: median 1 + 1 × max(1.4826 × 0, 1).
    assert.equal(m.thresholds.at(-25), null);
    assert.equal(m.thresholds.at(-1), 2);
    assert.deepEqual(m.anomalies, [{ hour: nowHour, kind: 'spike', count: 4, threshold: 2 }]);
    assert.equal(finding.evidence.hour_start, nowHour, 'the chart marks the hour the detection flagged');
    assert.deepEqual(q.anomalies, []);
    assert.equal(q.total, 1);

    const one = await g.admin('GET', '/metrics/minting?hours=30&nhi=quiet&limit=1');
    assert.deepEqual(one.body.series.map((s: any) => s.nhi), ['quiet']);
    assert.equal((await g.admin('GET', '/metrics/minting?hours=0')).status, 400);
  });

  it('findings summary: unresolved findings by status and severity', async () => {
    // A grant through the admin API without a change reference: a high new_grant finding.
    assert.equal((await g.admin('POST', '/grants', { nhi: 'quiet', tool: 'other', actions: ['ping'] })).status, 201);
    await settled(g, 'inventory.>');
    const all = await findings(g, 'status=open');
    const expect = { low: 0, medium: 0, high: 0, critical: 0 } as Record<string, number>;
    for (const f of all) expect[f.severity]!++;
    let s = await g.admin('GET', '/findings/summary');
    assert.equal(s.status, 200);
    assert.deepEqual(s.body.open, expect);
    assert.ok(s.body.open.high >= 1);
    assert.deepEqual(s.body.acknowledged, { low: 0, medium: 0, high: 0, critical: 0 });

    const grant = all.find((f: any) => f.detection === 'new_grant');
    assert.equal((await g.admin('POST', `/findings/${grant.id}/ack`, { note: 'looking' })).status, 200);
    s = await g.admin('GET', '/findings/summary');
    assert.equal(s.body.open.high, expect.high! - 1);
    assert.equal(s.body.acknowledged.high, 1);
    assert.equal((await g.admin('POST', `/findings/${grant.id}/resolve`, {})).status, 200);
    s = await g.admin('GET', '/findings/summary');
    assert.equal(s.body.acknowledged.high, 0);
  });

  it('credential ages in bins, and NHIs by credential type', async () => {
    // agentNhi registers a private key for each agent at T0; the clock is a day later now.
    let r = await g.admin('GET', '/metrics/credential-ages');
    assert.equal(r.status, 200);
    assert.equal(r.body.credentials, 2);
    assert.deepEqual(r.body.bins.map((b: any) => [b.label, b.count]), [['< 1 week', 2], ['1-4 weeks', 0], ['1-3 months', 0], ['3-6 months', 0], ['> 6 months', 0]]);
    assert.equal(r.body.bins.at(-1).max_days, null);
    g.clock.advance(40 * DAY);
    assert.equal((await g.admin('POST', '/nhis/quiet/disable', { reason: 'test' })).status, 200);
    r = await g.admin('GET', '/metrics/credential-ages');
    // Only active NHIs count.
    assert.equal(r.body.credentials, 1);
    assert.equal(r.body.bins.find((b: any) => b.label === '1-3 months').count, 1);

    assert.deepEqual((await g.admin('GET', '/nhis?credential_type=private_key_jwt')).body.nhis.map((n: any) => n.id), ['minter', 'quiet']);
    assert.deepEqual((await g.admin('GET', '/nhis?credential_type=static_secret')).body.nhis, []);
    assert.equal((await g.admin('GET', '/nhis?credential_type=password')).status, 400);
  });
});
