import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { agentNhi, testAgent } from '../helpers/agent.js';
import { main } from '../../src/cli/main.js';
import { findings, playbooksSettled, settled, startGovApp, waitFor, type GovApp } from './helpers.js';

const DAY = 86_400_000;
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';

/**
 * The inventory side of governance: the sweep (stale and long-lived credentials, expired
 * exceptions), shadow agents (an unmapped workload through real federation, an NHI registered
 * without an owner), a score playbook that disables and its undo from the CLI, programme
 * metrics with their daily snapshots, Prometheus gauges and the `mandate report` commands.
 */
describe('governance: sweep, shadow agents, score playbook, programme metrics, CLI', () => {
  let g: GovApp;
  let iss: TestIssuer;
  let dk: { privateKey: CryptoKey; publicJwk: JWK };

  const cli = async (...argv: string[]) => {
    const lines: string[] = [];
    const errs: string[] = [];
    const code = await main([...argv, '--url', g.url, '--token', g.token], { log: (s) => lines.push(s), err: (s) => errs.push(s) }, {});
    return { code, out: lines.join('\n'), err: errs.join('\n') };
  };

  before(async () => {
    iss = await startIssuer();
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    dk = { privateKey, publicJwk: await exportJWK(publicKey) };
    const fresh = await testAgent('fresh');
    const legacyKey = await testAgent('legacy');
    const quietKey = await testAgent('quiet');
    g = await startGovApp({
      trust: [{ name: 'github', kind: 'github_actions', issuer: iss.url, discovery: true, algorithms: ['RS256'], audience: 'mandate', claims: { repository_owner: 'acme' } }],
      nhis: [
        agentNhi(fresh),
        {
          ...agentNhi(legacyKey, { tier: 'admin' }),
          credentials: [
            { type: 'private_key_jwt', jwks: { keys: [legacyKey.publicJwk as Record<string, unknown>] }, created: '2024-01-01' },
            { type: 'static_secret', secret: 'env:LEGACY_SECRET', exception: { ticket: 'SEC-7', expires: '2025-01-31' }, created: '2024-01-01' },
          ],
        },
        { ...agentNhi(quietKey), credentials: [{ type: 'private_key_jwt', jwks: { keys: [quietKey.publicJwk as Record<string, unknown>] }, created: '2024-01-01' }] },
        { id: 'deployer', class: 'runner', owner: 'ci@example.com', system: 'ci', tier: 'write', credentials: [{ type: 'federated', trust: 'github', subject: 'repo:acme/deploy:ref:refs/heads/*' }] },
      ],
      tools: [{ id: 'tickets', kind: 'http', upstream: 'http://127.0.0.1:9', actions: [{ name: 'list_tickets', method: 'GET', path: '/tickets', tier: 'read' }] }],
      grants: [
        { nhi: 'deployer', tool: 'tickets', actions: ['list_tickets'], change_ref: 'PR-1' },
        { nhi: 'legacy', tool: 'tickets', actions: ['list_tickets'], change_ref: 'PR-2' },
      ],
      governance: { playbooks: [{ name: 'disable-riskiest', score_at_least: 70, action: 'disable' }] },
    }, { LEGACY_SECRET: 'not-a-real-secret' });
    const mute = await g.admin('POST', '/mutes', { nhi: 'quiet', detection: 'stale_credential', until: new Date(g.clock.now() + 30 * DAY).toISOString().slice(0, 10), reason: 'decommissioning' });
    assert.equal(mute.status, 201, JSON.stringify(mute.body));
  });
  after(async () => {
    await g.app.close();
    await iss.close();
  });

  it('the sweep files stale, overdue and long-lived credentials; fresh, federated and muted NHIs get nothing; a second sweep counts nothing twice', async () => {
    const r = await g.admin('POST', '/governance/sweep');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const fs = await findings(g, 'detection=stale_credential');
    assert.deepEqual([...new Set(fs.map((f: any) => f.nhi))], ['legacy'], JSON.stringify(fs.map((f: any) => [f.nhi, f.key])));
    const kinds = fs.map((f: any) => f.key.split(':')[0]).sort();
    assert.deepEqual(kinds, ['exception_expired', 'long_lived', 'long_lived', 'rotation', 'rotation']);
    const overdue = fs.find((f: any) => f.key.startsWith('exception_expired'));
    assert.equal(overdue.severity, 'high');
    assert.equal(overdue.evidence.exception_ticket, 'SEC-7');
    assert.equal(JSON.stringify(fs).includes('LEGACY_SECRET'), false, 'not even the secret reference');
    assert.equal(JSON.stringify(fs).includes('not-a-real-secret'), false);

    await g.admin('POST', '/governance/sweep');
    assert.ok((await findings(g, 'detection=stale_credential')).every((f: any) => f.count === 1), 'the same round counts once');
  });

  it('the score playbook disabled the riskiest NHI; an operator undoes it from the CLI', async () => {
    const risk = (await g.admin('GET', '/nhis/legacy/risk')).body;
    assert.ok(risk.score >= 70, JSON.stringify(risk));
    assert.deepEqual(risk.contributions.map((c: any) => c.factor).sort(), ['credential_age', 'credentials', 'exceptions', 'findings', 'tier']);
    const kills = (await g.admin('GET', '/kill')).body.kill_switches.filter((k: any) => k.target === 'legacy');
    assert.equal(kills.length, 1);
    assert.match(kills[0].reason, /^\[signal /);
    assert.deepEqual((await g.admin('GET', '/kill')).body.kill_switches.filter((k: any) => k.target !== 'legacy'), [], 'nobody else');

    const list = await cli('playbook', 'actions', '--nhi', 'legacy', '--json');
    assert.equal(list.code, 0, list.err);
    const [act] = JSON.parse(list.out).actions;
    assert.equal(act.trigger, 'score:legacy');
    assert.equal(act.action, 'disable');
    const undo = await cli('playbook', 'undo', act.id);
    assert.equal(undo.code, 0, undo.err);
    assert.match(undo.out, /undid disable of legacy/);
    assert.deepEqual((await g.admin('GET', '/kill')).body.kill_switches, []);
    await g.app.audit.flush();
    const audited = (await g.admin('GET', '/audit?type=playbook.undone')).body.records;
    assert.equal(audited[0].data.playbook_action_id, act.id);
  });

  it('shadow agents: a federated workload that maps to no NHI, and an NHI registered without an owner; mapped workloads and owned NHIs raise nothing', async () => {
    const workload = (sub: string) => {
      const now = Math.floor(g.clock.now() / 1000);
      return iss.sign({ iss: iss.url, aud: 'mandate', sub, repository_owner: 'acme', iat: now, exp: now + 300, jti: randomUUID() }, { alg: 'RS256', now });
    };
    const exchange = async (sub: string) => {
      const htu = `${g.app.issuer}/oauth/token`;
      const proof = await new SignJWT({ jti: randomUUID(), htm: 'POST', htu, iat: Math.floor(g.clock.now() / 1000) })
        .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: dk.publicJwk }).sign(dk.privateKey);
      const res = await fetch(htu, {
        method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: proof },
        body: new URLSearchParams({ grant_type: EXCHANGE, subject_token: await workload(sub), subject_token_type: JWT_TYPE, scope: 'list_tickets', resource: `${g.app.issuer}/tools/tickets` }),
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    assert.equal((await exchange('repo:acme/deploy:ref:refs/heads/main')).status, 200);
    assert.equal((await g.admin('POST', '/nhis', { id: 'owned', class: 'agent', owner: 'team@example.com', system: 'billing', tier: 'read' })).status, 201);
    await settled(g, 'shadow_agent');
    await settled(g, 'inventory.>');
    assert.deepEqual(await findings(g, 'detection=shadow_agent'), []);

    // RFC 8693 §2.2.2: an unacceptable subject token is invalid_request.
    assert.equal((await exchange('repo:acme/unknown:ref:refs/heads/main')).body.error, 'invalid_request');
    const shadow = await waitFor(async () => (await findings(g, 'detection=shadow_agent'))[0], 'shadow finding');
    assert.equal(shadow.nhi, 'shadow:github');
    assert.equal(shadow.evidence.workload_subject, 'repo:acme/unknown:ref:refs/heads/main');
    assert.equal(shadow.severity, 'high');

    assert.equal((await g.admin('POST', '/nhis', { id: 'orphan', class: 'agent', owner: 'unknown', system: 'tbd', tier: 'read' })).status, 201);
    const orphan = await waitFor(async () => (await findings(g, 'nhi=orphan&detection=shadow_agent'))[0], 'unowned finding');
    assert.equal(orphan.key, 'unowned:nhi');
  });

  it('programme metrics: ratios, ages, exceptions, time to revoke; gauges on /metrics; a daily snapshot and the weekly trend', async () => {
    await playbooksSettled(g);
    const m = (await g.admin('GET', '/metrics/programme')).body;
    const c = m.current;
    // fresh, legacy, quiet, deployer, owned, orphan (legacy is active again after the undo).
    assert.equal(c.nhis, 6);
    assert.equal(c.federated_ratio, Math.round((1 / 6) * 1000) / 1000);
    assert.equal(c.static_secret_ratio, Math.round((1 / 6) * 1000) / 1000);
    assert.equal(c.private_key_ratio, Math.round((2 / 6) * 1000) / 1000);
    assert.equal(c.admin_nhis, 1);
    assert.equal(c.exceptions_open, 1);
    assert.equal(c.exceptions_overdue, 1);
    assert.equal(c.long_lived_credentials, 3, 'two of legacy, one of quiet');
    assert.ok(c.median_secret_age_days > 300);
    assert.equal(c.revoke_samples, 1, 'the playbook disable');
    assert.ok(c.revoke_mean_s >= 0 && c.revoke_p99_s >= c.revoke_mean_s - 1e-9);
    assert.ok(c.findings_open.high >= 2);
    assert.equal(m.trend.length, 1, 'the sweep stored today');

    const text = await (await fetch(`${g.url}/metrics`)).text();
    assert.match(text, /mandate_programme\{metric="admin_nhis"\} 1/);
    assert.match(text, /mandate_programme\{metric="exceptions_overdue"\} 1/);
    assert.match(text, /mandate_findings_open\{severity="high"\} \d+/);

    g.clock.advance(7 * DAY);
    assert.equal((await g.admin('POST', '/governance/sweep')).status, 200);
    const later = (await g.admin('GET', '/metrics/programme?weeks=4')).body;
    assert.equal(later.trend.length, 2, 'one snapshot per week');
    assert.ok(later.current.long_lived_credentials > c.long_lived_credentials, 'a week on, fresh keys are long-lived too');
  });

  it('CLI: report top, report metrics (table, markdown, json), finding list / ack / resolve', async () => {
    const top = await cli('report', 'top', '--limit', '3');
    assert.equal(top.code, 0, top.err);
    const first = top.out.split('\n')[1]!;
    assert.match(first, /^1\s+legacy\s+\d+\s+admin/);
    assert.match(first, /tier \+25 \(permission tier admin\)/);
    const topJson = JSON.parse((await cli('report', 'top', '--json')).out);
    assert.equal(topJson.scores[0].nhi, 'legacy');

    const table = await cli('report', 'metrics');
    assert.equal(table.code, 0, table.err);
    assert.match(table.out, /admin-tier NHIs/);
    const md = await cli('report', 'metrics', '--markdown');
    assert.match(md.out, /^# NHI programme metrics/);
    assert.match(md.out, /\| overdue exceptions \| 1 \| 1 \| 1 \|/);
    assert.equal(JSON.parse((await cli('report', 'metrics', '--json')).out).current.admin_nhis, 1);

    const list = await cli('finding', 'list', '--nhi', 'legacy', '--min-severity', 'high', '--json');
    const [f] = JSON.parse(list.out).findings;
    assert.equal(f.severity, 'high');
    assert.equal((await cli('finding', 'ack', f.id, '--note', 'ticket SEC-8')).code, 0);
    const res = await cli('finding', 'resolve', f.id);
    assert.match(res.out, /resolved/);
    const human = await cli('finding', 'list', '--nhi', 'legacy');
    assert.match(human.out, /^ID\s+NHI\s+DETECTION/);
    assert.equal((await cli('finding', 'frobnicate')).code, 2);
  });
});
