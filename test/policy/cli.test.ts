import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const BIN = resolve('bin/mandate.js');

const CONFIG = `
nhis:
  - { id: support-agent, class: agent, owner: support@example.com, system: helpdesk, tier: write }
  - { id: nightly-runner, class: runner, owner: ci@example.com, system: ci, tier: write }
tools:
  - id: tickets
    kind: http
    upstream: http://127.0.0.1:9
    actions:
      - { name: list_tickets, method: GET, path: /tickets, tier: read }
      - { name: delete_ticket, method: DELETE, path: "/tickets/{id}", tier: destructive }
  - id: payments
    kind: mcp
    upstream: http://127.0.0.1:9
    actions:
      - { name: refund, tier: write }
policy:
  files: [policies/base.cedar]
`;

const POLICIES = `// What agents may not do, whatever their tokens say.
@id("runners-never-delete")
forbid(principal, action == Mandate::Action::"delete_ticket", resource) when { principal.class == "runner" };

@id("big-refunds") @approval("required")
forbid(principal, action == Mandate::Action::"refund", resource)
when { context.args has amount && context.args.amount > 1000 } unless { context.approved };
`;

/** `mandate …` as its own process in `cwd`, as an operator runs it. */
function mandate(cwd: string, ...argv: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...argv], { cwd, encoding: 'utf8', env: { ...process.env, MANDATE_CONFIG: '' } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('mandate policy test|check (CLI, offline)', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'mandate-policy-cli-'));
    mkdirSync(join(dir, 'policies'));
    writeFileSync(join(dir, 'mandate.yaml'), CONFIG);
    writeFileSync(join(dir, 'policies/base.cedar'), POLICIES);
  });

  it('policy check: exit 0 with a summary; a policy that does not validate exits 2 naming file and line', () => {
    const ok = mandate(dir, 'policy', 'check', '--config', 'mandate.yaml');
    assert.equal(ok.code, 0, ok.err);
    assert.match(ok.out, /^ok: 2 policies in 1 file\(s\), base permit on \(version [0-9a-f]{12}\)$/m);
    const json = JSON.parse(mandate(dir, 'policy', 'check', '--config', 'mandate.yaml', '--json').out);
    assert.equal(json.policies, 2);

    const bad = mkdtempSync(join(tmpdir(), 'mandate-policy-cli-bad-'));
    writeFileSync(join(bad, 'mandate.yaml'), CONFIG.replace('policies/base.cedar', 'rules.cedar'));
    writeFileSync(join(bad, 'rules.cedar'), '\n@id("typo") forbid(principal, action == Mandate::Action::"delete_tiket", resource);\n');
    const r = mandate(bad, 'policy', 'check', '--config', 'mandate.yaml');
    assert.equal(r.code, 2);
    assert.match(r.err, /rules\.cedar:2:\d+: unrecognized action `Mandate::Action::"delete_tiket"`/);
    const missing = mandate(dir, 'policy', 'check', '--config', 'nope.yaml');
    assert.equal(missing.code, 2);
  });

  it('policy test: allow exits 0, deny and approval required exit 1, with the deciding policies', () => {
    const allow = mandate(dir, 'policy', 'test', '--config', 'mandate.yaml', '--nhi', 'support-agent', '--tool', 'tickets', '--action', 'delete_ticket');
    assert.equal(allow.code, 0, allow.err);
    assert.match(allow.out, /^allow: support-agent → tickets\.delete_ticket\n {2}decided by: mandate\.base$/m);

    const deny = mandate(dir, 'policy', 'test', '--config', 'mandate.yaml', '--nhi', 'nightly-runner', '--tool', 'tickets', '--action', 'delete_ticket');
    assert.equal(deny.code, 1);
    assert.match(deny.out, /^deny: nightly-runner → tickets\.delete_ticket\n {2}decided by: runners-never-delete$/m);

    const ask = ['policy', 'test', '--config', 'mandate.yaml', '--nhi', 'support-agent', '--tool', 'payments', '--action', 'refund', '--args', '{"amount": 5000}'];
    const held = mandate(dir, ...ask, '--json');
    assert.equal(held.code, 1);
    const d = JSON.parse(held.out);
    assert.equal(d.decision, 'approval_required');
    assert.deepEqual(d.policies, ['big-refunds']);
    assert.equal(mandate(dir, ...ask, '--approved').code, 0);
    assert.equal(mandate(dir, 'policy', 'test', '--config', 'mandate.yaml', '--nhi', 'support-agent', '--tool', 'payments', '--action', 'mcp:tools/list', '--risk', '30', '--on-behalf-of', 'orchestrator').code, 0);
  });

  it('policy test: unknown NHI, tool or undeclared action, and bad flags exit 2', () => {
    const base = ['policy', 'test', '--config', 'mandate.yaml'];
    const noNhi = mandate(dir, ...base, '--nhi', 'ghost', '--tool', 'tickets', '--action', 'list_tickets');
    assert.equal(noNhi.code, 2);
    assert.match(noNhi.err, /no NHI "ghost" in the config \(have: support-agent, nightly-runner\)/);
    const noTool = mandate(dir, ...base, '--nhi', 'support-agent', '--tool', 'wiki', '--action', 'list_tickets');
    assert.equal(noTool.code, 2);
    assert.match(noTool.err, /no tool "wiki"/);
    const undeclared = mandate(dir, ...base, '--nhi', 'support-agent', '--tool', 'tickets', '--action', 'drop_database');
    assert.equal(undeclared.code, 2);
    assert.match(undeclared.err, /tool "tickets" declares no action "drop_database" \(declared: list_tickets, delete_ticket\)/);
    assert.equal(mandate(dir, ...base, '--nhi', 'support-agent', '--tool', 'tickets', '--action', 'mcp:tools/list').code, 2);
    assert.equal(mandate(dir, ...base, '--nhi', 'support-agent', '--tool', 'payments', '--action', 'refund', '--args', '[1]').code, 2);
    assert.equal(mandate(dir, ...base, '--nhi', 'support-agent', '--tool', 'payments', '--action', 'refund', '--risk', '101').code, 2);
    assert.equal(mandate(dir, ...base, '--tool', 'payments', '--action', 'refund').code, 2);
    assert.equal(mandate(dir, 'policy', 'frobnicate').code, 2);
  });
});
