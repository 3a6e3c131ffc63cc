import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { agentNhi, clientCredentialsToken, testAgent, type TestAgent } from '../helpers/agent.js';
import { startDemoHttpTool, type DemoTool } from '../../src/demo/index.js';
import { MandateClient, ApprovalRequiredError } from '../../src/client/index.js';
import { argsDigest } from '../../src/core/index.js';
import { CONSOLE_CSP } from '../../src/web/index.js';

const CHROMIUM = '/usr/bin/chromium';
const SHOTS = join(process.cwd(), 'test-output', 'ui');
const TICKETS_KEY = 'tickets-upstream-secret-for-the-console';

/**
 * The console end to end: a real Mandate with the demo tickets tool and a real agent, driven
 * by Debian's Chromium through playwright-core. Every request the pages make is recorded and
 * must go to Mandate's own origin.
 */
describe('console (/ui/) in a browser', { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (apt-get install chromium; .ci/run does it)` }, () => {
  let t: TestApp;
  let tickets: DemoTool;
  let agent: TestAgent;
  let browser: Browser;
  let viewerToken: string;
  let origin: string;
  const foreign: string[] = [];
  /** Script errors and console errors (a CSP violation is reported there). */
  const pageErrors: string[] = [];

  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    tickets = await startDemoHttpTool({ expectedCredential: TICKETS_KEY });
    agent = await testAgent('demo-agent');
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
    }, { TICKETS_KEY });
    origin = new URL(t.url).origin;
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
  const inPage = (page: Page, method: string, path: string, headers: Record<string, string> = {}) =>
    page.evaluate(async ([m, p, h]) => {
      const r = await fetch(p, { method: m, headers: { 'content-type': 'application/json', ...h }, body: m === 'GET' ? undefined : '{"nhi":"demo-agent"}' });
      return { status: r.status, body: await r.text() };
    }, [method, path, headers] as const);
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
    // The risk panel renders (its contents follow governance's API; see the skipped test below).
    await page.getByRole('region', { name: 'Risk' }).waitFor();
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

  it('shows audit search with the hash-chain status, signals and streams, token profiles, findings and risk pages', async () => {
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
    for (const [link, name] of [['Findings', 'findings'], ['Top 20 riskiest', 'risk']] as const) {
      await page.getByRole('link', { name: link }).click();
      await page.getByRole('heading', { name: link }).first().waitFor();
      await shot(page, name);
    }
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

  // Governance landed with response shapes other than the ones these panels were written for
  // (and its real routes win over stand-ins): the panels must be adapted to the real API. Open in issue 8.
  it.skip("lights up governance's panels once its admin API answers (stand-in routes with the planned paths)", async () => {
    // Governance is built in another branch; these stand-ins answer its planned paths with the
    // shapes the pages read, so the renderers are checked before it lands.
    const { sendJson } = await import('../../src/core/index.js');
    const finding = { id: 'fnd_1', nhi: 'demo-agent', detection: 'minting_rate', severity: 'high', title: 'Minting spike', status: 'open', evidence: { tokens_per_5m: 40, threshold: 12 }, last_seen: Date.now(), count: 2 };
    t.app.router.get('/admin/v1/findings', (c) => sendJson(c.res, 200, { findings: [finding] }));
    t.app.router.get('/admin/v1/risk', (c) => sendJson(c.res, 200, { nhis: [{ nhi: 'demo-agent', score: 72, contributions: [{ factor: 'minting_rate finding', points: 40 }] }] }));
    t.app.router.get('/admin/v1/nhis/:id/risk', (c) => sendJson(c.res, 200, { nhi: c.params.id, score: 72, contributions: [{ factor: 'minting_rate finding', points: 40 }, { factor: 'unused grants', points: 32 }] }));
    t.app.router.get('/admin/v1/metrics/programme', (c) => sendJson(c.res, 200, { metrics: { nhis_with_owner_pct: { value: 100, trend: [80, 90, 100] }, median_secret_age_days: 3 } }));
    const { ctx, page } = await newPage();
    await signIn(page, t.token);
    await page.getByRole('region', { name: 'Open findings by severity' }).getByText('high').waitFor();
    await page.getByRole('region', { name: 'Programme metrics' }).getByText('▲ from 90').waitFor();
    await shot(page, 'overview-governance');
    await page.getByRole('link', { name: 'Top 20 riskiest' }).click();
    await page.getByRole('row', { name: /demo-agent.*72.*minting_rate finding/ }).waitFor();
    await page.goto(`${t.url}/ui/#/nhis/demo-agent`);
    assert.equal(await page.locator('[data-risk-score]').textContent(), '72');
    await page.getByRole('cell', { name: 'unused grants' }).waitFor();
    await shot(page, 'nhi-governance');
    await page.getByRole('link', { name: 'Findings' }).click();
    await page.getByText('evidence', { exact: true }).click();
    await page.getByText('tokens_per_5m').waitFor();
    await shot(page, 'findings-governance');
    await ctx.close();
  });

  it('every page ran under the CSP and made no request to another host', async () => {
    assert.deepEqual(foreign, []);
    assert.deepEqual(pageErrors, [], 'no script error and no CSP violation');
    const r = await fetch(`${t.url}/ui/`);
    assert.equal(r.headers.get('content-security-policy'), CONSOLE_CSP);
  });
});
