import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { agentNhi, testAgent, testDpopKey, type TestAgent, type TestDpopKey } from '../helpers/agent.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import { call, findings, playbooksSettled, settled, startGovApp, tokenAt, waitFor, type GovApp } from './helpers.js';

const DAY = 86_400_000;
const HOUR = 3_600_000;

/**
 * Detections, risk and playbooks driven by real traffic: agents get tokens from the real
 * broker (private_key_jwt + DPoP) and call a real upstream through the real proxy; the
 * governance consumers hear the bus and file findings. The app's clock is a ManualClock, so
 * the minting baseline can span days without waiting for them.
 */
describe('governance: detections from real broker and proxy traffic', () => {
  let g: GovApp;
  let rec: RecordingUpstream;
  const agents: Record<string, TestAgent> = {};
  let k1: TestDpopKey;
  let k2: TestDpopKey;

  before(async () => {
    rec = await startRecordingUpstream();
    for (const id of ['steady', 'reader', 'victim', 'prober', 'normal']) agents[id] = await testAgent(id);
    k1 = await testDpopKey();
    k2 = await testDpopKey();
    g = await startGovApp({
      tokens: {
        profiles: [
          { name: 'read', ttl: '10m', binding: 'optional' },
          { name: 'write', ttl: '5m' },
          { name: 'destructive', ttl: '2m', approval: true },
        ],
      },
      nhis: [
        agentNhi(agents.steady!), agentNhi(agents.reader!, { tier: 'read' }), agentNhi(agents.victim!), agentNhi(agents.prober!), agentNhi(agents.normal!),
      ],
      tools: [
        {
          id: 'rec', kind: 'http', upstream: rec.url,
          actions: [
            { name: 'list_items', method: 'GET', path: '/items', tier: 'read' },
            { name: 'create_item', method: 'POST', path: '/items', tier: 'write' },
            { name: 'delete_item', method: 'DELETE', path: '/items/{id}', tier: 'destructive' },
          ],
        },
        { id: 'other', kind: 'http', upstream: rec.url, actions: [{ name: 'ping', method: 'GET', path: '/ping', tier: 'read' }] },
      ],
      grants: [
        { nhi: 'steady', tool: 'rec', actions: ['list_items', 'create_item'], change_ref: 'PR-1' },
        { nhi: 'reader', tool: 'rec', actions: ['list_items', 'create_item'], change_ref: 'PR-2' },
        { nhi: 'victim', tool: 'rec', actions: ['list_items'], change_ref: 'PR-3' },
        { nhi: 'victim', tool: 'other', actions: ['ping'], change_ref: 'PR-3' },
        { nhi: 'prober', tool: 'rec', actions: ['list_items'], change_ref: 'PR-4' },
        { nhi: 'normal', tool: 'rec', actions: ['list_items'], change_ref: 'PR-5' },
      ],
      governance: {
        out_of_bounds: { denials: 4, window: '10m' },
        playbooks: [
          { name: 'contain-theft', detection: 'stolen_token', min_severity: 'high', action: 'revoke_tokens' },
          { name: 'stepdown-oob', detection: 'out_of_bounds', action: 'step_down' },
          { name: 'watch-grants', detection: 'new_grant', action: 'disable', dry_run: true },
        ],
      },
    });
  });
  after(async () => {
    await g.app.close();
    await rec.close();
  });

  const token = async (nhi: string, tool: string, scope: string, key = k1) => {
    const r = await tokenAt(g, agents[nhi]!, tool, scope, key);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.access_token as string;
  };

  it('normal traffic raises nothing: tokens, allowed calls, one honest retry', async () => {
    for (let i = 0; i < 5; i++) {
      const at = await token('normal', 'rec', 'list_items');
      assert.equal((await call(g, '/tools/rec/items', { token: at, key: k1 })).status, 200);
    }
    await settled(g, 'token.issued');
    await settled(g, 'tool.called');
    await settled(g, 'tool.call_denied');
    assert.deepEqual(await findings(g, 'nhi=normal'), []);
    // What the consumers absorbed is on /metrics (counted in a map, moved into the counter on scrape).
    const count = async (consumer: string): Promise<number> => {
      const text = await (await fetch(`${g.url}/metrics`)).text();
      const m = new RegExp(`^mandate_governance_events_total\\{consumer="${consumer.replace('.', '\\.')}"\\} (\\d+)$`, 'm').exec(text);
      return m ? Number(m[1]) : 0;
    };
    const before = await count('tool.called');
    assert.equal(before, 6, 'five calls and the barrier settled() published');
    assert.equal(await count('tool.called'), before, 'a second scrape does not count again');
    const at = await token('normal', 'rec', 'list_items');
    assert.equal((await call(g, '/tools/rec/items', { token: at, key: k1 })).status, 200);
    await settled(g, 'tool.called');
    assert.equal(await count('tool.called'), before + 2, 'the call and the barrier settled() publishes');
  });

  it('stolen token: another key, no proof, another tool, two client addresses; the playbook revokes, the score rises', async () => {
    const before = (await g.admin('GET', '/nhis/victim/risk')).body;
    const at = await token('victim', 'rec', 'list_items');
    assert.equal((await call(g, '/tools/rec/items', { token: at, key: k1 })).status, 200, 'the owner uses it');
    await settled(g, 'tool.called');
    assert.deepEqual(await findings(g, 'nhi=victim&detection=stolen_token'), [], 'one honest use is not theft');

    // The thief holds the token but not the key: it signs a proof with its own.
    const thief = await call(g, '/tools/rec/items', { token: at, key: k1, proofKey: k2 });
    assert.equal(thief.status, 401);
    const [f] = await waitFor(async () => {
      const fs = await findings(g, 'nhi=victim&detection=stolen_token');
      return fs.length ? fs : undefined;
    }, 'stolen_token finding');
    assert.equal(f.severity, 'critical');
    assert.equal(f.key, `jti:${f.evidence.jti}`);
    assert.equal(f.evidence.cnf_jkt, k1.jkt);
    assert.equal(f.evidence.proof_jkt, k2.jkt);
    assert.match(f.evidence.how, /another key/);
    assert.equal(JSON.stringify(f).includes(at), false, 'no token in the finding');

    // The playbook revoked the victim's tokens through Signals, citing the finding.
    await playbooksSettled(g);
    const acts = (await g.admin('GET', '/playbook-actions?nhi=victim')).body.actions;
    const act = acts.find((a: any) => a.playbook === 'contain-theft');
    assert.ok(act, JSON.stringify(acts));
    assert.equal(act.finding_id, f.id);
    assert.equal(act.dry_run, false);
    const sig = (await g.admin('GET', `/signals/${act.signal_id}`)).body;
    assert.equal(sig.action, 'revoke_tokens');
    assert.equal(sig.status, 'applied');
    assert.equal(sig.source, 'playbook:contain-theft');
    assert.equal(sig.data.finding_id, f.id);
    assert.equal((await call(g, '/tools/rec/items', { token: at, key: k1 })).status, 401, 'the token is revoked');
    await g.app.audit.flush();
    const audited = (await g.admin('GET', '/audit?type=playbook.acted&subject=victim')).body.records;
    assert.equal(audited[0].data.finding_id, f.id);

    const after = (await g.admin('GET', '/nhis/victim/risk')).body;
    assert.ok(after.score > before.score, `${before.score} -> ${after.score}`);
    assert.ok(after.contributions.some((c: any) => c.factor === 'findings' && /critical/.test(c.detail)), JSON.stringify(after.contributions));

    // Each further case with a new token, issued after the previous revocation (the clock moves past it).
    const fresh = async () => {
      await playbooksSettled(g);
      g.clock.advance(2000);
      return token('victim', 'rec', 'list_items');
    };
    const findingOf = async (jtiHow: (x: any) => boolean, what: string) =>
      waitFor(async () => (await findings(g, 'nhi=victim&detection=stolen_token')).find(jtiHow), what);
    const at2 = await fresh();
    assert.equal((await call(g, '/tools/rec/items', { token: at2, scheme: 'Bearer' })).status, 401);
    const noProof = await findingOf((x) => x.key !== f.key && /without its DPoP proof/.test(x.evidence.how), 'without proof');
    assert.equal(noProof.severity, 'high');
    const at3 = await fresh();
    assert.equal((await call(g, '/tools/other/ping', { token: at3, key: k1 })).status, 401);
    const otherTool = await findingOf((x) => /at another tool/.test(x.evidence.how ?? ''), 'at another tool');
    assert.equal(otherTool.evidence.tool, 'other');
    const at4 = await fresh();
    assert.equal((await call(g, '/tools/rec/items', { token: at4, key: k1 })).status, 200);
    assert.equal((await call(g, '/tools/rec/items', { token: at4, key: k1, localAddress: '127.0.0.2' })).status, 200);
    const twoIps = await findingOf((x) => Array.isArray(x.evidence.client_ips) && x.evidence.client_ips.length === 2, 'two addresses');
    assert.deepEqual([...twoIps.evidence.client_ips].sort(), ['127.0.0.1', '127.0.0.2']);
    assert.equal(new Set([f.key, noProof.key, otherTool.key, twoIps.key]).size, 4, 'one finding per token');
  });

  it('out of bounds: undeclared endpoint, a tool without grant, a run of denials; the step-down playbook, undone by an operator', async () => {
    const at = await token('prober', 'rec', 'list_items');
    assert.equal((await call(g, '/tools/rec/items', { token: at, key: k1 })).status, 200);
    await settled(g, 'tool.called');
    assert.deepEqual(await findings(g, 'nhi=prober'), []);

    assert.equal((await call(g, '/tools/rec/admin/users', { token: at, key: k1 })).status, 403);
    const denied = await tokenAt(g, agents.prober!, 'other', 'ping', k1);
    assert.equal(denied.body.error, 'invalid_scope');
    assert.equal((await call(g, '/tools/rec/admin/keys', { token: at, key: k1 })).status, 403);
    assert.equal((await call(g, '/tools/rec/admin/root', { token: at, key: k1 })).status, 403);
    await settled(g, 'tool.call_denied');
    await settled(g, 'token.denied');
    const fs = await findings(g, 'nhi=prober&detection=out_of_bounds');
    const byKey = new Map(fs.map((x: any) => [x.key, x]));
    assert.ok(byKey.get('undeclared:rec'), JSON.stringify(fs));
    assert.equal(byKey.get('undeclared:rec').count, 3, 'one finding, counted three times');
    assert.equal(byKey.get('undeclared:rec').evidence.path, '/admin/root');
    assert.ok(byKey.get('no_grant'), JSON.stringify(fs));
    assert.ok(byKey.get('denial_run'), JSON.stringify(fs));
    assert.equal(byKey.get('denial_run').evidence.denials, 4);

    await playbooksSettled(g);
    const restrictions = (await g.admin('GET', '/restrictions?nhi=prober')).body.restrictions;
    assert.equal(restrictions.length, 1);
    assert.equal(restrictions[0].kind, 'step_down');
    const acts = (await g.admin('GET', '/playbook-actions?nhi=prober')).body.actions;
    assert.ok(acts.length >= 1 && acts.every((a: any) => a.playbook === 'stepdown-oob' && a.signal_id));
    const undo = await g.admin('POST', `/playbook-actions/${acts[0].id}/undo`);
    assert.equal(undo.status, 200, JSON.stringify(undo.body));
    assert.ok(undo.body.undone_at);
    assert.deepEqual((await g.admin('GET', '/restrictions?nhi=prober')).body.restrictions, []);
    assert.equal((await g.admin('POST', `/playbook-actions/${acts[0].id}/undo`)).status, 400, 'undone once');
  });

  it('unusual scope: a read-tier NHI issued a write token; its read tokens are fine', async () => {
    await token('reader', 'rec', 'list_items');
    await settled(g, 'token.issued');
    assert.deepEqual(await findings(g, 'nhi=reader'), []);
    await token('reader', 'rec', 'create_item');
    const f = await waitFor(async () => (await findings(g, 'nhi=reader&detection=unusual_scope'))[0], 'tier finding');
    assert.equal(f.key, 'tier:rec:write');
    assert.equal(f.severity, 'high');
    assert.equal(f.evidence.nhi_tier, 'read');
  });

  it('new grant through the admin API without a change reference; the dry-run playbook records and does nothing', async () => {
    const r = await g.admin('POST', '/grants', { nhi: 'normal', tool: 'other', actions: ['ping'] });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const f = await waitFor(async () => (await findings(g, 'nhi=normal&detection=new_grant'))[0], 'new_grant finding');
    assert.equal(f.severity, 'high');
    assert.deepEqual(f.evidence.added_actions, ['ping']);
    assert.equal(f.evidence.source, 'api');
    // The same grant again adds nothing: no new finding, the count stays.
    assert.equal((await g.admin('POST', '/grants', { nhi: 'normal', tool: 'other', actions: ['ping'], change_ref: 'PR-9' })).status, 201);
    await settled(g, 'inventory.>');
    const again = await findings(g, 'nhi=normal&detection=new_grant');
    assert.equal(again.length, 1);
    assert.equal(again[0].count, 1);

    await playbooksSettled(g);
    const acts = (await g.admin('GET', '/playbook-actions?nhi=normal')).body.actions;
    assert.equal(acts.length, 1);
    assert.equal(acts[0].dry_run, true);
    assert.equal(acts[0].signal_id, null);
    assert.deepEqual((await g.admin('GET', '/signals?nhi=normal')).body.signals, [], 'dry run: no signal');
    assert.deepEqual((await g.admin('GET', '/kill')).body.kill_switches.filter((k: any) => k.target === 'normal'), []);
  });

  it('findings: acknowledge, resolve, mute', async () => {
    const [f] = await findings(g, 'nhi=reader&detection=unusual_scope');
    assert.equal((await g.admin('POST', `/findings/${f.id}/ack`, { note: 'looking' })).body.status, 'acknowledged');
    const resolved = (await g.admin('POST', `/findings/${f.id}/resolve`, { note: 'tier fixed' })).body;
    assert.equal(resolved.status, 'resolved');
    assert.equal(resolved.status_note, 'tier fixed');
    assert.equal((await g.admin('POST', `/findings/${f.id}/ack`, {})).status, 400);

    const until = new Date(g.clock.now() + DAY).toISOString();
    assert.equal((await g.admin('POST', '/mutes', { nhi: 'reader', detection: 'unusual_scope', until, reason: 'migration' })).status, 201);
    await token('reader', 'rec', 'create_item');
    await settled(g, 'token.issued');
    assert.deepEqual(await findings(g, 'nhi=reader&status=open'), [], 'muted');
  });

  it('minting rate: cold start is silent, the daily rhythm is normal, a spike and a never-used hour fire', async () => {
    const start = g.clock.now();
    // Day 0: a burst, but there is no baseline yet.
    for (let i = 0; i < 12; i++) await token('steady', 'rec', 'list_items');
    for (const day of [1, 2, 3]) {
      g.clock.set(start + day * DAY);
      await token('steady', 'rec', 'list_items');
      await token('steady', 'rec', 'list_items');
    }
    await settled(g, 'token.issued');
    assert.deepEqual(await findings(g, 'nhi=steady'), [], 'cold start and the usual two a day raise nothing');

    for (let i = 0; i < 10; i++) await token('steady', 'rec', 'list_items');
    const spike = await waitFor(async () => (await findings(g, 'nhi=steady&detection=minting_rate')).find((x: any) => x.key === 'spike'), 'spike');
    assert.equal(spike.evidence.count, 10);
    assert.equal(spike.evidence.median, 2);
    assert.deepEqual(spike.evidence.history_same_hour, [2, 2, 12]);

    g.clock.set(start + 3 * DAY + 6 * HOUR);
    await token('steady', 'rec', 'list_items');
    const odd = await waitFor(async () => (await findings(g, 'nhi=steady&detection=minting_rate')).find((x: any) => x.key === 'new_hour'), 'new hour');
    assert.equal(odd.severity, 'medium');

    // A scope never asked for in three days of history.
    await token('steady', 'rec', 'create_item');
    const sc = await waitFor(async () => (await findings(g, 'nhi=steady&detection=unusual_scope'))[0], 'new scope');
    assert.equal(sc.key, 'scope:rec:create_item');
  });

  it('risk: report of all NHIs, riskiest first, with contributions; standing privilege from unused grants', async () => {
    await g.app.governance.detections.flushGrantUse();
    const grants = (await g.admin('GET', '/grants?nhi=victim')).body.grants;
    const used = grants.find((x: any) => x.tool === 'rec');
    assert.ok(used.last_used_at, 'the proxy traffic touched the grant');
    const top = (await g.admin('GET', '/risk?limit=3')).body.scores;
    assert.equal(top.length, 3);
    assert.ok(top[0].score >= top[1].score && top[1].score >= top[2].score);
    assert.ok(top.every((s: any) => Array.isArray(s.contributions)));
    assert.equal((await g.admin('GET', '/nhis/nobody/risk')).status, 404);
  });
});
