import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { agentNhi, clientCredentialsToken, testAgent, testDpopKey, type TestAgent } from '../helpers/agent.js';
import { call, settled, tokenAt, waitFor, type GovApp } from '../governance/helpers.js';
import { startDemoHttpTool, type DemoTool } from '../../src/demo/index.js';
import { MandateClient, ApprovalRequiredError } from '../../src/client/index.js';
import { ManualClock, argsDigest } from '../../src/core/index.js';
import { CONSOLE_CSP } from '../../src/web/index.js';

const CHROMIUM = '/usr/bin/chromium';
const SHOTS = join(process.cwd(), 'test-output', 'ui');
const TICKETS_KEY = 'tickets-upstream-secret-for-the-console';
const DAY = 86_400_000;

/** Real time plus an offset: the app starts a week in the past and catches up (the browser runs in real time). */
class ShiftedClock extends ManualClock {
  offset = 0;
  override now(): number {
    return Date.now() + this.offset;
  }
}

/**
 * The console end to end: a real Mandate with the demo tickets tool and a real agent, driven
 * by Debian's Chromium through playwright-core. Every request the pages make is recorded and
 * must go to Mandate's own origin. Governance runs for real: the app starts eight days in the
 * past (a programme snapshot then), the agent mints once a day ago and in a burst now (a real
 * minting-rate finding against its baseline) and calls an endpoint the tool does not declare
 * (an out-of-bounds finding), so the governance panels show what the detections raised.
 */
describe('console (/ui/) in a browser', { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (apt-get install chromium; .ci/run does it)` }, () => {
  let t: TestApp;
  let tickets: DemoTool;
  let agent: TestAgent;
  let browser: Browser;
  let viewerToken: string;
  let origin: string;
  let gov: GovApp;
  const clock = new ShiftedClock();
  const foreign: string[] = [];
  /** Script errors and console errors (a CSP violation is reported there). */
  const pageErrors: string[] = [];

  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    tickets = await startDemoHttpTool({ expectedCredential: TICKETS_KEY });
    agent = await testAgent('demo-agent');
    clock.offset = -8 * DAY;
    t = await startTestApp(undefined, {
      // read: bearer allowed, so the revoke test can replay one token by hand.
      tokens: { profiles: [{ name: 'read', ttl: '10m', binding: 'optional' }, { name: 'write', ttl: '5m' }, { name: 'destructive', ttl: '2m', approval: true }] },
      nhis: [agentNhi(agent, { description: 'The demo agent' }), { id: 'report-runner', class: 'runner', owner: 'data@example.com', system: 'reports', tier: 'read' }],
      tools: [{
        id: 'tickets', kind: 'http', upstream: tickets.url, credential: { type: 'bearer', value: 'env:TICKETS_KEY' },
        actions: [
          { name: 'list_tickets', method: 'GET', path: '/tickets', tier: 'read' },
          { name: 'create_ticket', method: 'POST', path: '/tickets', tier: 'write' },
          { name: 'delete_ticket', method: 'DELETE', path: '/tickets/{id}', tier: 'destructive' },
        ],
      }],
      grants: [{ nhi: 'demo-agent', tool: 'tickets', actions: ['*'] }],
      governance: {
        // A day of history is enough for a baseline here, and a burst of a few tokens is a spike.
        minting_rate: { min_baseline_days: 1, min_count: 3, mad_factor: 1 },
        // A grant made outside review (high) steps the NHI down until an operator undoes it.
        playbooks: [{ name: 'hold-new-grants', detection: 'new_grant', min_severity: 'high', action: 'step_down' }],
      },
    }, { TICKETS_KEY }, { clock });
    origin = new URL(t.url).origin;
    gov = { app: t.app, url: t.url, clock, token: t.token, admin: t.admin };
    const key = await testDpopKey();
    const mint = async () => {
      const r = await tokenAt(gov, agent, 'tickets', 'list_tickets', key);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body.access_token as string;
    };
    // Eight days ago: the first programme snapshot. A day ago: one token (the baseline). Now: a burst.
    assert.equal((await t.admin('POST', '/governance/sweep')).status, 200);
    clock.offset = -DAY;
    await mint();
    assert.equal((await t.admin('POST', '/governance/sweep')).status, 200);
    clock.offset = 0;
    for (let i = 0; i < 7; i++) await mint();
    const oob = await call(gov, '/tools/tickets/internal/export', { token: await mint(), key });
    assert.ok(oob.status >= 400, `an undeclared endpoint is refused (${oob.status})`);
    await settled(gov, 'token.issued');
    await settled(gov, 'tool.call_denied');
    await waitFor(async () => (await t.admin('GET', '/findings?nhi=demo-agent&detection=minting_rate')).body.findings.length > 0, 'the minting-rate finding');
    await waitFor(async () => (await t.admin('GET', '/findings?nhi=demo-agent&detection=out_of_bounds')).body.findings.length > 0, 'the out-of-bounds finding');
    await t.app.broker!.flush();
    assert.equal((await t.admin('POST', '/governance/sweep')).status, 200);
    const v = await t.admin('POST', '/admin-credentials', { name: 'auditor', role: 'viewer' });
    viewerToken = v.body.token;
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-background-networking'] });
  });
  after(async () => {
    await browser?.close();
    await t?.app.close();
    await tickets?.close();
  });

  /** A fresh browser context (its own cookies) whose every request is checked for its origin. */
  async function newPage(): Promise<{ ctx: BrowserContext; page: Page }> {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await ctx.newPage();
    page.on('request', (r) => {
      const u = new URL(r.url());
      if (u.protocol === 'data:' || u.protocol === 'blob:') return;
      if (u.origin !== origin) foreign.push(r.url());
    });
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => {
      // Failed fetches the tests provoke on purpose (401, 403, governance's 404s) are logged by Chromium too.
      if (m.type() === 'error' && !/status of (401|403|404)/.test(m.text())) pageErrors.push(m.text());
    });
    return { ctx, page };
  }
  async function signIn(page: Page, credential: string): Promise<void> {
    await page.goto(`${t.url}/ui/`);
    await page.getByLabel('Admin credential').fill(credential);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('navigation', { name: 'Console' }).waitFor();
  }
  const shot = (page: Page, name: string) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  /** fetch() from inside the page: the browser adds the session cookie and Origin itself. */
  const inPage = (page: Page, method: string, path: string, headers: Record<string, string> = {}, body = '{"nhi":"demo-agent"}') =>
    page.evaluate(async ([m, p, h, b]) => {
      const r = await fetch(p, { method: m, headers: { 'content-type': 'application/json', ...h }, body: m === 'GET' ? undefined : b });
      return { status: r.status, body: await r.text() };
    }, [method, path, headers, body] as const);
  const csrfOf = (page: Page) => page.evaluate(async () => ((await (await fetch('/ui/session')).json()) as { csrf_token: string }).csrf_token);

  it('signs in, finds the demo agent and shows its page (owner, credentials, grants, risk)', async () => {
    const { ctx, page } = await newPage();
    await signIn(page, t.token);
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    await page.locator('[data-pending]').waitFor();
    await shot(page, 'overview');
    await page.getByRole('link', { name: 'NHIs', exact: true }).click();
    await page.getByLabel('Search').fill('demo');
    await page.getByRole('row', { name: /report-runner/ }).waitFor({ state: 'detached' });
    await shot(page, 'nhis');
    await page.getByRole('link', { name: 'demo-agent' }).click();
    await page.getByRole('heading', { name: /demo-agent/ }).first().waitFor();
    assert.equal(await page.locator('[data-owner]').textContent(), 'team@example.com');
    await page.getByRole('region', { name: 'Grants' }).getByText('unused').waitFor();
    await page.getByRole('region', { name: 'Risk' }).locator('[data-risk-score]').waitFor();
    await shot(page, 'nhi');
    await ctx.close();
  });

  it('approves a pending approval raised by a real agent call, live, and the retried call passes', async () => {
    const { ctx, page } = await newPage();
    await signIn(page, t.token);
    await page.getByRole('link', { name: 'Approvals' }).click();
    await page.getByText('Nothing is waiting for a decision.').waitFor();

    const client = new MandateClient({ issuer: t.app.issuer, clientId: 'demo-agent', auth: { type: 'private_key_jwt', privateJwk: agent.privateJwk } });
    const created = (await (await client.fetch('tickets', ['create_ticket'], '/tickets', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"title":"delete me"}',
    })).json()) as { id: string };
    const digest = argsDigest({ params: { id: created.id }, query: {} });
    let approvalId = '';
    await client.getToken('tickets', ['delete_ticket'], { argsDigest: digest }).then(
      () => assert.fail('expected approval_required'),
      (err: unknown) => {
        assert.ok(err instanceof ApprovalRequiredError, String(err));
        approvalId = err.approvalId;
      },
    );
    // The row arrives over the event stream (approval.requested), without a reload.
    const row = page.locator(`[data-approval="${approvalId}"]`);
    await row.waitFor();
    assert.match(await row.textContent() ?? '', /delete_ticket/);
    assert.match(await row.textContent() ?? '', new RegExp(digest.slice(0, 10)));
    await shot(page, 'approvals');
    await row.getByRole('button', { name: 'Approve' }).click();
    const dialog = page.getByRole('dialog');
    assert.match(await dialog.textContent() ?? '', /once, with exactly the arguments/);
    await dialog.getByLabel(/Reason/).fill('checked the ticket');
    await dialog.getByRole('button', { name: 'Approve' }).click();
    await page.getByText('Nothing is waiting for a decision.').waitFor();
    await page.getByRole('region', { name: 'History' }).getByText('checked the ticket').waitFor();

    const del = await client.fetch('tickets', ['delete_ticket'], `/tickets/${created.id}`, { method: 'DELETE' }, { argsDigest: digest, approvalId });
    assert.equal(del.status, 200, await del.clone().text());
    const approval = await t.admin('GET', `/approvals/${approvalId}`);
    assert.equal(approval.body.status, 'redeemed');
    assert.match(approval.body.decided_by, /^admin:/);
    await ctx.close();
  });

  it("revokes an NHI's tokens from its page, after a confirmation naming what happens; the next call is denied", async () => {
    const token = (await clientCredentialsToken(t.app.issuer, agent, `${t.app.issuer}/tools/tickets`, 'list_tickets')).access_token;
    const call = () => fetch(`${t.url}/tools/tickets/tickets`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal((await call()).status, 200);
    const { ctx, page } = await newPage();
    await signIn(page, t.token);
    await page.goto(`${t.url}/ui/#/nhis/demo-agent`);
    await page.getByRole('region', { name: 'Recent tokens' }).getByText('list_tickets').first().waitFor();
    await page.getByRole('button', { name: 'Revoke tokens' }).click();
    const dialog = page.getByRole('dialog');
    assert.match(await dialog.textContent() ?? '', /Every token issued to demo-agent until now stops working at once/);
    await shot(page, 'nhi-revoke-confirm');
    await dialog.getByLabel(/Reason/).fill('console test');
    await dialog.getByRole('button', { name: 'Revoke tokens' }).click();
    await page.getByRole('status').getByText('Tokens of demo-agent revoked').waitFor();
    const denied = await call();
    assert.equal(denied.status, 401);
    assert.match(((await denied.json()) as { error_description: string }).error_description, /revoked/);
    const audit = await t.admin('GET', '/audit?type=tokens.revoked');
    assert.ok(audit.body.records.some((r: { subject: string; data: { reason: string } }) => r.subject === 'demo-agent' && r.data.reason === 'console test'));
    // The overview lists it among live revocations.
    await page.getByRole('link', { name: 'Overview' }).click();
    await page.locator('[data-revocations]').getByText(/demo-agent: console test/).waitFor();
    await ctx.close();
  });

  it('shows audit search with the hash-chain status, signals and streams, and token profiles', async () => {
    const { ctx, page } = await newPage();
    await signIn(page, t.token);
    await page.getByRole('link', { name: 'Audit' }).click();
    await page.getByRole('button', { name: 'Verify the chain' }).click();
    await page.locator('[data-chain="ok"]').waitFor();
    await page.getByLabel('NHI or actor').fill('demo-agent');
    await page.getByLabel('Decision').selectOption('allow');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.getByRole('cell', { name: 'tool.called' }).first().waitFor();
    await shot(page, 'audit');
    await page.getByRole('link', { name: 'Signals and streams' }).click();
    await page.getByRole('heading', { name: 'Dead letters' }).waitFor();
    await page.getByLabel('NHI').fill('report-runner');
    await page.getByLabel('Action').selectOption('step_down');
    await page.getByRole('button', { name: 'Raise signal' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Raise signal' }).click();
    await page.getByRole('region', { name: 'Signals' }).getByRole('cell', { name: 'report-runner' }).waitFor();
    await shot(page, 'signals');
    await page.getByRole('link', { name: 'Token profiles' }).click();
    await page.getByRole('row', { name: /destructive.*every call.*tickets\.delete_ticket/ }).waitFor();
    await shot(page, 'profiles');
    await ctx.close();
  });

  it('a viewer sees no change buttons and is refused a change', async () => {
    const { ctx, page } = await newPage();
    await signIn(page, viewerToken);
    assert.equal(await page.locator('[data-role]').textContent(), 'viewer');
    await page.goto(`${t.url}/ui/#/nhis/demo-agent`);
    await page.locator('[data-owner]').waitFor();
    assert.equal(await page.getByRole('button', { name: 'Revoke tokens' }).count(), 0);
    await shot(page, 'nhi-viewer');
    const r = await inPage(page, 'POST', '/admin/v1/revocations', { 'x-csrf-token': await csrfOf(page) });
    assert.equal(r.status, 403, r.body);
    assert.match(r.body, /needs the admin role/);
    // Findings: no acknowledge / resolve for a viewer, and the API refuses it.
    const f = (await t.admin('GET', '/findings?nhi=demo-agent&status=open')).body.findings[0];
    await page.getByRole('link', { name: 'Findings' }).click();
    await page.locator(`[data-finding="${f.id}"]`).waitFor();
    assert.equal(await page.getByRole('button', { name: 'Acknowledge' }).count(), 0);
    const ack = await inPage(page, 'POST', `/admin/v1/findings/${f.id}/ack`, { 'x-csrf-token': await csrfOf(page) }, '{}');
    assert.equal(ack.status, 403, ack.body);
    assert.match(ack.body, /needs the approver role/);
    assert.equal((await t.admin('GET', `/findings/${f.id}`)).body.status, 'open');
    await ctx.close();
  });

  it('refuses a change made with the session cookie but without the CSRF token', async () => {
    const { ctx, page } = await newPage();
    await signIn(page, t.token);
    const r = await inPage(page, 'POST', '/admin/v1/revocations');
    assert.equal(r.status, 403, r.body);
    assert.match(r.body, /X-CSRF-Token/);
    const wrong = await inPage(page, 'POST', '/admin/v1/revocations', { 'x-csrf-token': 'x'.repeat(43) });
    assert.equal(wrong.status, 403);
    // Reads need no token.
    assert.equal((await inPage(page, 'GET', '/admin/v1/nhis')).status, 200);
    // Signing out ends the session for the API too.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('Admin credential').waitFor();
    assert.equal((await inPage(page, 'GET', '/admin/v1/nhis')).status, 401);
    await ctx.close();
  });

  it("shows governance: the overview's metrics with their weekly trend, findings by severity and the three charts", async () => {
    const summary = (await t.admin('GET', '/findings/summary')).body;
    const { ctx, page } = await newPage();
    await signIn(page, t.token);
    const sev = page.getByRole('region', { name: 'Open findings by severity' });
    for (const s of ['critical', 'high', 'medium', 'low']) {
      assert.equal(await sev.locator(`[data-severity="${s}"] strong`).textContent(), String(summary.open[s]));
    }
    assert.ok(summary.open.high + summary.open.medium >= 2, JSON.stringify(summary));
    // The programme now and a week ago: the agent's key was new then and is eight days old now.
    const metrics = page.locator('[data-metrics]');
    await metrics.getByRole('row', { name: /Median secret age\s+8 d\s+\d+ d\s+up from/ }).waitFor();
    await metrics.getByRole('row', { name: /Federated only/ }).waitFor();
    await metrics.getByRole('row', { name: /High-privilege/ }).waitFor();
    await metrics.getByRole('row', { name: /Time to revoke \(mean\)/ }).waitFor();
    // Charts: canvases drawn from non-empty data.
    for (const name of ['minting', 'secret-ages', 'programme']) await page.locator(`[data-chart="${name}"] canvas`).first().waitFor();
    const minting = await page.locator('[data-chart="minting"] [role="img"]').getAttribute('aria-label');
    assert.match(minting ?? '', /^(\d+) tokens for \d+ NHIs/);
    assert.ok(Number(/^(\d+)/.exec(minting!)![1]) >= 9, minting ?? '');
    assert.match(await page.locator('[data-anomaly]').textContent() ?? '', /demo-agent: \d+ tokens at .*threshold/);
    assert.match(await page.locator('[data-chart="secret-ages"] [role="img"]').getAttribute('aria-label') ?? '', /1-4 weeks: 1/);
    await page.locator('[data-chart="time-to-revoke"] canvas').waitFor();
    await shot(page, 'overview-governance');
    await ctx.close();
  });

  it("shows the demo agent's risk score with its contributions, and the top riskiest with why", async () => {
    const risk = (await t.admin('GET', '/nhis/demo-agent/risk')).body;
    assert.ok(risk.contributions.some((c: { factor: string }) => c.factor === 'findings'), JSON.stringify(risk));
    const { ctx, page } = await newPage();
    await signIn(page, t.token);
    await page.getByRole('link', { name: 'Top 20 riskiest' }).click();
    const row = page.locator('[data-top-risk]').getByRole('row', { name: /demo-agent/ });
    await row.waitFor();
    assert.match(await row.textContent() ?? '', /Open findings \+\d+: .*(minting_rate|out_of_bounds)/);
    await shot(page, 'risk');
    await row.getByRole('link', { name: 'demo-agent' }).click();
    await page.locator('[data-risk-score]').filter({ hasText: new RegExp(`^${risk.score}$`) }).waitFor();
    const contributions = page.locator('[data-contributions]');
    for (const c of risk.contributions as Array<{ points: number; detail: string }>) {
      await contributions.getByRole('row', { name: new RegExp(`${c.points}\\s+${c.detail.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`) }).waitFor();
    }
    await contributions.getByRole('cell', { name: 'Open findings' }).waitFor();
    await page.getByRole('region', { name: 'Findings' }).getByText('minting_rate').first().waitFor();
    await shot(page, 'nhi-governance');
    await ctx.close();
  });

  it('findings: the evidence, acknowledge then resolve (recorded with who and why); a new finding appears live and its playbook can be undone', async () => {
    const oob = (await t.admin('GET', '/findings?nhi=demo-agent&detection=out_of_bounds')).body.findings[0];
    const { ctx, page } = await newPage();
    await signIn(page, t.token);
    await page.getByRole('link', { name: 'Findings' }).click();
    await page.getByLabel('Status').selectOption('');
    const row = page.locator(`[data-finding="${oob.id}"]`);
    await row.getByText('evidence', { exact: true }).click();
    for (const k of Object.keys(oob.evidence)) await row.locator('dt', { hasText: new RegExp(`^${k}$`) }).waitFor();
    await shot(page, 'findings');
    await row.getByRole('button', { name: 'Acknowledge' }).click();
    let dialog = page.getByRole('dialog');
    assert.match(await dialog.textContent() ?? '', /marked acknowledged/);
    await dialog.getByLabel(/Reason/).fill('looking into it');
    await dialog.getByRole('button', { name: 'Acknowledge' }).click();
    await row.getByText('acknowledged', { exact: true }).waitFor();
    await row.getByText(/by admin:.*: looking into it/).waitFor();
    await row.getByRole('button', { name: 'Resolve' }).click();
    dialog = page.getByRole('dialog');
    await dialog.getByRole('button', { name: 'Resolve' }).click();
    await row.getByText('resolved', { exact: true }).waitFor();
    const after = (await t.admin('GET', `/findings/${oob.id}`)).body;
    assert.equal(after.status, 'resolved');
    assert.match(after.status_by, /^admin:/);

    // A grant made outside review: governance raises a high new_grant finding, the page shows it without a reload.
    await page.getByLabel('Status').selectOption('open');
    assert.equal((await t.admin('POST', '/grants', { nhi: 'report-runner', tool: 'tickets', actions: ['list_tickets'] })).status, 201);
    const live = page.getByRole('row', { name: /report-runner/ }).filter({ hasText: 'new_grant' });
    await live.waitFor();
    assert.match(await live.textContent() ?? '', /high/);
    await shot(page, 'findings-live');
    // Its playbook stepped report-runner down; the NHI page shows it and an admin undoes it.
    const action = await waitFor(async () => (await t.admin('GET', '/playbook-actions?nhi=report-runner')).body.actions[0], 'the playbook action');
    assert.equal(action.action, 'step_down');
    await live.getByRole('link', { name: 'report-runner' }).click();
    const pa = page.locator(`[data-playbook-action="${action.id}"]`);
    await pa.getByRole('button', { name: 'Undo' }).click();
    dialog = page.getByRole('dialog');
    assert.match(await dialog.textContent() ?? '', /lifts the restriction the step-down put on report-runner/);
    await dialog.getByRole('button', { name: 'Undo' }).click();
    await pa.getByText(/undone by admin:/).waitFor();
    assert.deepEqual((await t.admin('GET', '/restrictions?nhi=report-runner')).body.restrictions, []);
    await ctx.close();
  });

  it('a revocation made elsewhere appears on the overview live', async () => {
    const { ctx, page } = await newPage();
    await signIn(page, t.token);
    await page.locator('[data-revocations]').waitFor();
    assert.equal((await t.admin('POST', '/revocations', { nhi: 'report-runner', reason: 'revoked from the CLI' })).status, 201);
    await page.locator('[data-revocations]').getByText('report-runner: revoked from the CLI').waitFor();
    await ctx.close();
  });

  it('admin credentials: creates one (its token shown once), gives one an end, revokes one; a console signed in with it is signed out at once', async () => {
    const { ctx, page } = await newPage();
    await signIn(page, t.token);
    await page.getByRole('link', { name: 'Admin credentials' }).click();
    await page.getByRole('heading', { name: 'Admin credentials', level: 1 }).waitFor();
    await page.getByRole('row', { name: /bootstrap.*\(you\).*admin.*active/ }).waitFor();

    await page.getByLabel('Name').fill('contractor');
    await page.getByLabel('Role').selectOption('viewer');
    await page.getByRole('button', { name: 'Create credential' }).click();
    const token = (await page.locator('[data-token]').textContent())!;
    assert.match(token, /^mdt\.[0-9a-f]{16}\.[A-Za-z0-9_-]{43}$/);
    await shot(page, 'credentials-created');
    await page.getByRole('button', { name: 'I have copied it' }).click();
    assert.equal(await page.locator('[data-token]').count(), 0);
    assert.equal((await page.content()).includes(token.split('.')[2]!), false, 'shown once: gone from the page');
    const id = token.split('.')[1]!;
    const row = page.locator(`[data-credential="${id}"]`);
    await row.getByText('active').waitFor();

    // A second console, signed in with the new credential: a viewer, with no credentials page.
    const other = await newPage();
    await signIn(other.page, token);
    assert.equal(await other.page.getByRole('link', { name: 'Admin credentials' }).count(), 0);

    // Give it an end first.
    await row.getByRole('button', { name: 'Set expiry' }).click();
    const expDialog = page.getByRole('dialog');
    const local = new Date(Date.now() + 2 * 86_400_000 - new Date().getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
    await expDialog.getByLabel('Ends at').fill(local);
    await expDialog.getByRole('button', { name: 'Set expiry' }).click();
    await page.getByRole('status').getByText(/Credential contractor now ends/).waitFor();
    const withEnd = (await t.admin('GET', `/admin-credentials/${id}`)).body;
    assert.ok(withEnd.expires_at > Date.now() + 86_400_000, JSON.stringify(withEnd));

    // Then revoke it, after a confirmation that says what happens.
    await row.getByRole('button', { name: 'Revoke' }).click();
    const dialog = page.getByRole('dialog');
    assert.match(await dialog.textContent() ?? '', /refused from now on, on every instance, and its console sessions end/);
    await dialog.getByLabel(/Reason/).fill('contract ended');
    await shot(page, 'credentials-revoke-confirm');
    await dialog.getByRole('button', { name: 'Revoke' }).click();
    await page.getByRole('status').getByText('Credential contractor revoked').waitFor();
    await row.getByText('revoked').waitFor();
    await shot(page, 'credentials');
    // The other console is signed out without doing anything (its event stream ended), and its cookie opens nothing.
    await other.page.getByLabel('Admin credential').waitFor();
    assert.equal((await inPage(other.page, 'GET', '/admin/v1/nhis')).status, 401);
    assert.equal((await fetch(`${t.url}/admin/v1/whoami`, { headers: { authorization: `Bearer ${token}` } })).status, 401);
    const audit = await t.admin('GET', `/audit?type=admin.credential_revoked&subject=${id}`);
    assert.equal(audit.body.records[0].data.reason, 'contract ended');
    await other.ctx.close();
    await ctx.close();
  });

  it('every page ran under the CSP and made no request to another host', async () => {
    assert.deepEqual(foreign, []);
    assert.deepEqual(pageErrors, [], 'no script error and no CSP violation');
    const r = await fetch(`${t.url}/ui/`);
    assert.equal(r.headers.get('content-security-policy'), CONSOLE_CSP);
  });
});
