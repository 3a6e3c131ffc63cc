import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { main } from '../src/cli/main.js';
import { EXIT } from '../src/cli/errors.js';
import { startTestApp, type TestApp } from './helpers/app.js';

/** Runs the CLI in-process against a real server; returns exit code and output. */
async function run(t: TestApp, argv: string[], env: NodeJS.ProcessEnv = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, { log: (s) => out.push(s), err: (s) => err.push(s) }, { MANDATE_URL: t.url, MANDATE_TOKEN: t.token, ...env });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('mandate CLI over the admin API', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp(undefined, {
      tools: [{ id: 'tickets', kind: 'http', upstream: 'http://127.0.0.1:9', actions: [{ name: 'list_tickets', method: 'GET', path: '/tickets', tier: 'read' }] }],
    });
  });
  after(() => t.app.close());

  it('adds, lists, shows and disables NHIs', async () => {
    const add = await run(t, ['nhi', 'add', '--id', 'build-bot', '--class', 'runner', '--owner', 'ci@example.com', '--system', 'ci', '--tier', 'write']);
    assert.equal(add.code, EXIT.ok, add.err);
    const list = await run(t, ['nhi', 'list']);
    assert.equal(list.code, EXIT.ok);
    assert.match(list.out, /^ID\s+CLASS\s+OWNER/m);
    assert.match(list.out, /^build-bot\s+runner\s+ci@example.com\s+ci\s+production\s+write\s+active\s+api$/m);
    const json = await run(t, ['nhi', 'list', '--json', '--class', 'runner']);
    assert.deepEqual(JSON.parse(json.out).nhis.map((n: { id: string }) => n.id), ['build-bot']);
    const dis = await run(t, ['nhi', 'disable', 'build-bot', '--reason', 'test']);
    assert.equal(dis.out, 'build-bot is disabled');
    const show = await run(t, ['nhi', 'show', 'build-bot']);
    assert.match(show.out, /^status\s+disabled$/m);
  });

  it('grants and refuses undeclared actions with a usage exit code', async () => {
    const ok = await run(t, ['grant', 'add', '--nhi', 'build-bot', '--tool', 'tickets', '--actions', 'list_tickets', '--change-ref', 'CHG-9']);
    assert.equal(ok.code, EXIT.ok, ok.err);
    assert.match(ok.out, /granted build-bot → tickets: list_tickets/);
    const bad = await run(t, ['grant', 'add', '--nhi', 'build-bot', '--tool', 'tickets', '--actions', 'nuke']);
    assert.equal(bad.code, EXIT.usage);
    assert.match(bad.err, /nuke/);
    const missing = await run(t, ['grant', 'add', '--nhi', 'build-bot']);
    assert.equal(missing.code, EXIT.usage);
    assert.match(missing.err, /--tool is required/);
  });

  it('exits 4 without a credential and 3 when Mandate is unreachable', async () => {
    const noToken = await run(t, ['nhi', 'list'], { MANDATE_TOKEN: '' });
    assert.equal(noToken.code, EXIT.unauthorized);
    const badToken = await run(t, ['nhi', 'list'], { MANDATE_TOKEN: 'mdt.0000000000000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' });
    assert.equal(badToken.code, EXIT.unauthorized);
    const down = await run(t, ['nhi', 'list'], { MANDATE_URL: 'http://127.0.0.1:1' });
    assert.equal(down.code, EXIT.unreachable);
    assert.match(down.err, /cannot reach Mandate/);
    const unknown = await run(t, ['frobnicate', 'now']);
    assert.equal(unknown.code, EXIT.usage);
  });

  it('audit verify: exit 0 when intact; reports an altered and a removed record with exit 1', async () => {
    const ok = await run(t, ['audit', 'verify']);
    assert.equal(ok.code, EXIT.ok, ok.out + ok.err);
    assert.match(ok.out, /audit chain intact/);
    await t.app.audit.flush();
    const rows = await t.app.store.readAudit(1, 1000);
    assert.ok(rows.length >= 4);
    const altered = rows[1]!.seq;
    const removed = rows[3]!.seq;
    await sql`UPDATE audit SET data = ${JSON.stringify({ forged: true })} WHERE seq = ${altered}`.execute(t.app.store.db);
    await sql`DELETE FROM audit WHERE seq = ${removed}`.execute(t.app.store.db);
    const bad = await run(t, ['audit', 'verify']);
    assert.equal(bad.code, EXIT.failed);
    assert.match(bad.out, /audit chain BROKEN/);
    assert.match(bad.out, new RegExp(`^${altered}\\s+altered`, 'm'));
    assert.match(bad.out, new RegExp(`^${removed}\\s+missing`, 'm'));
    const json = await run(t, ['audit', 'verify', '--json']);
    const kinds = JSON.parse(json.out).problems.map((p: { seq: number; kind: string }) => `${p.seq}:${p.kind}`);
    assert.ok(kinds.includes(`${altered}:altered`));
    assert.ok(kinds.includes(`${removed}:missing`));
  });
});

describe('mandate CLI: kill switches, revocation, approvals, profiles', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp(undefined, {
      nhis: [{ id: 'bot', class: 'agent', owner: 'o', system: 's', tier: 'write' }],
      tools: [{ id: 'tickets', kind: 'http', upstream: 'http://127.0.0.1:9', actions: [
        { name: 'list_tickets', method: 'GET', path: '/tickets', tier: 'read' },
        { name: 'delete_ticket', method: 'DELETE', path: '/tickets/{id}', tier: 'destructive' },
      ] }],
    });
  });
  after(() => t.app.close());

  it('engages, lists and lifts a kill switch', async () => {
    const noReason = await run(t, ['kill', '--nhi', 'bot']);
    assert.equal(noReason.code, EXIT.usage);
    const k = await run(t, ['kill', '--nhi', 'bot', '--reason', 'drill', '--json']);
    assert.equal(k.code, EXIT.ok, k.err);
    const id = JSON.parse(k.out).id as string;
    assert.equal(t.app.enforcement.revocations.killed('bot', 'tickets'), 'nhi_killed');
    assert.match((await run(t, ['kill', 'list'])).out, new RegExp(id));
    assert.equal((await run(t, ['kill', 'lift', id])).code, EXIT.ok);
    assert.equal(t.app.enforcement.revocations.killed('bot', 'tickets'), undefined);
  });

  it('revokes every token of an NHI', async () => {
    const r = await run(t, ['revoke', '--nhi', 'bot', '--reason', 'suspected theft']);
    assert.equal(r.code, EXIT.ok, r.err);
    assert.equal(t.app.enforcement.revocations.check({ jti: 'x', nhiId: 'bot', toolId: 'tickets', issuedAt: Date.now() - 1000 }), 'nhi_revoked');
    assert.equal((await run(t, ['revoke', '--nhi', 'bot', '--all'])).code, EXIT.usage);
  });

  it('lists and decides approvals; a decided approval cannot be decided again', async () => {
    const now = Date.now();
    await t.app.store.createApproval({
      id: 'apr_cli', nhiId: 'bot', toolId: 'tickets', action: 'delete_ticket', argsDigest: null, status: 'pending',
      requestedAt: now, expiresAt: now + 60_000, decidedBy: null, decidedAt: null, reason: null, redeemedAt: null, details: {},
    });
    const list = await run(t, ['approval', 'list']);
    assert.match(list.out, /^apr_cli\s+bot\s+tickets\s+delete_ticket/m);
    const ok = await run(t, ['approval', 'approve', 'apr_cli', '--reason', 'change CHG-1']);
    assert.equal(ok.code, EXIT.ok, ok.err);
    assert.match(ok.out, /apr_cli approved/);
    const again = await run(t, ['approval', 'deny', 'apr_cli']);
    assert.equal(again.code, EXIT.failed);
    assert.match(again.err, /not pending/);
  });

  it('prints the token profile catalogue as a table and as Markdown', async () => {
    const out: string[] = [];
    const io = { log: (s: string) => out.push(s), err: (s: string) => out.push(s) };
    assert.equal(await main(['report', 'profiles'], io, {}), EXIT.ok);
    assert.match(out.join('\n'), /^TIER\s+TTL\s+BINDING\s+APPROVAL/m);
    assert.match(out.join('\n'), /^destructive\s+2m\s+DPoP or mTLS required\s+human approval per call/m);
    out.length = 0;
    assert.equal(await main(['report', 'profiles', '--markdown'], io, {}), EXIT.ok);
    assert.match(out.join('\n'), /^\| Tier \| Lifetime \| Sender constraint \| Approval \| Actions \| Description \|$/m);
    assert.match(out.join('\n'), /^\| read \| 10m \| DPoP or mTLS required \| no \|/m);
  });
});

describe('mandate config check', () => {
  it('exits 2 naming the key for a bad file and 0 for a good one', async () => {
    const { writeFileSync, mkdtempSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'mandate-cfg-'));
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'server:\n  prot: 80\n');
    const err: string[] = [];
    const code = await main(['config', 'check', '--config', bad], { log: () => {}, err: (s) => err.push(s) }, {});
    assert.equal(code, EXIT.usage);
    assert.match(err.join('\n'), /server: unknown key "prot"/);
    const good = join(dir, 'good.yaml');
    writeFileSync(good, 'server:\n  port: 8081\n');
    const out: string[] = [];
    assert.equal(await main(['config', 'check', '--config', good], { log: (s) => out.push(s), err: () => {} }, {}), EXIT.ok);
    assert.match(out.join(''), /^ok: 0 NHIs/);
  });

  it('mandate migrate applies migrations once', async () => {
    const { writeFileSync, mkdtempSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'mandate-mig-'));
    const cfg = join(dir, 'mandate.yaml');
    writeFileSync(cfg, `store:\n  sqlite_path: ${join(dir, 'm.db')}\n`);
    const out: string[] = [];
    const io = { log: (s: string) => out.push(s), err: (s: string) => out.push(s) };
    assert.equal(await main(['migrate', '--config', cfg], io, {}), EXIT.ok);
    assert.match(out.join('\n'), /applied: 001_initial/);
    assert.equal(await main(['migrate', '--config', cfg], io, {}), EXIT.ok);
    assert.match(out.join('\n'), /store is up to date/);
  });
});

describe('mandate help', () => {
  const capture = async (argv: string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const code = await main(argv, { log: (s) => out.push(s), err: (s) => err.push(s) }, {});
    return { code, out: out.join('\n'), err: err.join('\n') };
  };

  it('lists every command; with no arguments it is a usage error', async () => {
    const help = await capture(['help']);
    assert.equal(help.code, EXIT.ok);
    for (const noun of ['up', 'serve', 'nhi', 'grant', 'kill', 'report', 'admin-credential', 'finding', 'playbook', 'drill']) {
      assert.match(help.out, new RegExp(`^  mandate ${noun} `, 'm'), noun);
    }
    assert.equal((await capture([])).code, EXIT.usage);
  });

  it('mandate <noun> --help and mandate help <noun> print that noun\'s usage and run nothing', async () => {
    for (const argv of [['nhi', '--help'], ['help', 'nhi'], ['nhi', 'list', '-h']]) {
      const r = await capture(argv);
      assert.equal(r.code, EXIT.ok, argv.join(' '));
      assert.match(r.out, /^mandate nhi: /);
      assert.match(r.out, /^  mandate nhi add --id ID/m);
      assert.doesNotMatch(r.out, /mandate grant/);
    }
    const up = await capture(['up', '--help']);
    assert.equal(up.code, EXIT.ok);
    assert.match(up.out, /^  mandate up \[--config FILE\] \[--port N\]/m);
  });

  it('an unknown noun or verb is a usage error followed by the usage', async () => {
    const noun = await capture(['frobnicate', 'now']);
    assert.equal(noun.code, EXIT.usage);
    assert.match(noun.err, /^mandate: unknown command "frobnicate now"\n\nmandate \S+: bounded autonomy/);
    const verb = await capture(['finding', 'frob']);
    assert.equal(verb.code, EXIT.usage);
    assert.match(verb.err, /^mandate: unknown command "finding frob"\n\nGovernance \(over the admin API\):/);
    assert.equal((await capture(['help', 'frobnicate'])).code, EXIT.usage);
  });
});
