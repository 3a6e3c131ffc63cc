import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { buildConfig, silentLogger, systemClock } from '../../src/core/index.js';
import { startApp } from '../../src/app.js';
import { main } from '../../src/cli/main.js';
import { EXIT } from '../../src/cli/errors.js';
import { AdminAuth, adminCredentialStatus, type AdminStore } from '../../src/admin/index.js';
import type { Store } from '../../src/store/index.js';
import { BACKENDS, startTestApp, type TestApp } from '../helpers/app.js';
import { adminCall } from '../helpers/cluster.js';
import { STORE_DIALECTS } from '../helpers/stores.js';

const future = (ms: number) => new Date(Date.now() + ms).toISOString();
const HOUR = 3_600_000;

async function cli(t: TestApp, argv: string[], token = t.token) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, { log: (s) => out.push(s), err: (s) => err.push(s) }, { MANDATE_URL: t.url, MANDATE_TOKEN: token });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

const whoami = async (t: TestApp, token: string) => (await fetch(`${t.url}/admin/v1/whoami`, { headers: { authorization: `Bearer ${token}` } })).status;

describe('admin credentials: list, give an end, revoke (admin API)', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t.app.close());

  it('creates (the token once), lists with status and never a secret, gives an end, revokes; refused at once', async () => {
    const created = await t.admin('POST', '/admin-credentials', { name: 'auditor', role: 'viewer', expires: '2099-12-31' });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const { id, token } = created.body as { id: string; token: string };
    assert.match(token, /^mdt\.[0-9a-f]{16}\.[A-Za-z0-9_-]{43}$/);
    assert.equal(created.body.status, 'active');
    assert.equal(created.body.expires_at, Date.parse('2099-12-31T23:59:59.999Z'));
    assert.equal(await whoami(t, token), 200);

    const list = await t.admin('GET', '/admin-credentials');
    assert.equal(list.status, 200);
    const names = list.body.credentials.map((c: { name: string }) => c.name);
    assert.deepEqual(names, ['bootstrap', 'auditor'], 'the bootstrap credential is one of them');
    const secret = token.split('.')[2]!;
    assert.equal(JSON.stringify(list.body).includes(secret), false, 'no secret in a listing');
    assert.equal(JSON.stringify(list.body).includes('token'), false, 'no token member either');
    const one = await t.admin('GET', `/admin-credentials/${id}`);
    assert.deepEqual(Object.keys(one.body).sort(), ['created_at', 'disabled', 'expires_at', 'id', 'last_used_at', 'name', 'revoked_at', 'role', 'status']);
    assert.equal(typeof one.body.last_used_at, 'number', 'last use is recorded');
    assert.equal((await t.admin('GET', '/admin-credentials/0000000000000000')).status, 404);

    const past = await t.admin('POST', `/admin-credentials/${id}/expire`, { expires: '2001-01-01T00:00:00Z' });
    assert.equal(past.status, 400, 'an end in the past is refused: revoke ends it now');
    const soon = future(HOUR);
    const expired = await t.admin('POST', `/admin-credentials/${id}/expire`, { expires: soon });
    assert.equal(expired.status, 200, JSON.stringify(expired.body));
    assert.equal(expired.body.expires_at, Date.parse(soon));
    assert.equal((await t.admin('GET', `/admin-credentials/${id}`)).body.expires_at, Date.parse(soon));

    const revoked = await t.admin('POST', `/admin-credentials/${id}/revoke`, { reason: 'left the team' });
    assert.equal(revoked.status, 200);
    assert.equal(revoked.body.status, 'revoked');
    assert.equal(revoked.body.already_revoked, false);
    assert.equal(typeof revoked.body.revoked_at, 'number');
    assert.equal(await whoami(t, token), 401, 'refused on its very next request');
    assert.equal((await t.admin('POST', `/admin-credentials/${id}/revoke`, {})).body.already_revoked, true);
    const revive = await t.admin('POST', `/admin-credentials/${id}/expire`, { expires: '2099-01-01' });
    assert.equal(revive.status, 409, 'an ended credential stays ended');
    assert.equal(await whoami(t, token), 401);

    const audit = await t.admin('GET', `/audit?type=admin.credential_revoked&subject=${id}`);
    assert.equal(audit.body.records.length, 1);
    assert.match(audit.body.records[0].actor, /^admin:[0-9a-f]{16}$/);
    assert.equal(audit.body.records[0].data.reason, 'left the team');
    assert.equal(JSON.stringify(audit.body).includes(secret), false);
  });

  it('declares the routes in /admin/v1/openapi.json, role admin', async () => {
    const doc = (await (await fetch(`${t.url}/admin/v1/openapi.json`)).json()) as { paths: Record<string, Record<string, Record<string, unknown>>> };
    for (const [path, method] of [['/admin/v1/admin-credentials', 'get'], ['/admin/v1/admin-credentials', 'post'], ['/admin/v1/admin-credentials/{id}', 'get'],
      ['/admin/v1/admin-credentials/{id}/expire', 'post'], ['/admin/v1/admin-credentials/{id}/revoke', 'post']] as const) {
      assert.equal(doc.paths[path]?.[method]?.['x-mandate-role'], 'admin', `${method} ${path}`);
    }
    const body = doc.paths['/admin/v1/admin-credentials/{id}/revoke']!.post!.requestBody as { content: Record<string, { schema: { properties: Record<string, unknown> } }> };
    assert.ok('force' in body.content['application/json']!.schema.properties);
  });
});

describe('the last active admin credential is not ended by accident', () => {
  it('revoke and expire need force; another admin lifts the guard; a restart prints a new bootstrap credential when none is left', async () => {
    const t = await startTestApp();
    let restarted: Awaited<ReturnType<typeof startApp>> | undefined;
    try {
      const bootId = (await t.admin('GET', '/whoami')).body.id as string;
      const viewer = (await t.admin('POST', '/admin-credentials', { name: 'v', role: 'viewer' })).body;
      // A viewer or approver does not count: only an admin credential can manage Mandate.
      const refused = await t.admin('POST', `/admin-credentials/${bootId}/revoke`, {});
      assert.equal(refused.status, 409);
      assert.match(refused.body.error_description, /last active admin credential.*force/s);
      assert.equal((await t.admin('POST', `/admin-credentials/${bootId}/expire`, { expires: future(HOUR) })).status, 409);
      assert.equal(await whoami(t, t.token), 200, 'still working');

      const second = (await t.admin('POST', '/admin-credentials', { name: 'second', role: 'admin' })).body;
      assert.equal((await t.admin('POST', `/admin-credentials/${bootId}/revoke`, {})).status, 200, 'not the last one now');
      assert.equal(await whoami(t, t.token), 401);
      const self = await adminCall(t.url, second.token, 'POST', `/admin-credentials/${second.id}/revoke`, {});
      assert.equal(self.status, 409, 'the second is the last one now');
      const forced = await adminCall(t.url, second.token, 'POST', `/admin-credentials/${second.id}/revoke`, { force: true, reason: 'compromised' });
      assert.equal(forced.status, 200, JSON.stringify(forced.body));
      assert.equal(await whoami(t, second.token), 401);
      assert.equal(await whoami(t, viewer.token), 200, 'other roles are untouched');

      // The way back in: a restart on the same store prints a new bootstrap credential.
      await t.app.close();
      let printed = '';
      const config = buildConfig({ server: { port: 0 }, store: { driver: 'sqlite', sqlite_path: join(t.dataDir, 'mandate.db') }, log: { level: 'silent' } }, { env: {} });
      restarted = await startApp({ config, env: {}, dataDir: t.dataDir, logger: silentLogger(), onBootstrapCredential: (tok) => (printed = tok) });
      assert.match(printed, /^mdt\./);
      assert.equal((await adminCall(restarted.url, printed, 'GET', '/whoami')).status, 200);
      const boot = await adminCall(restarted.url, printed, 'GET', '/audit?type=admin.bootstrap_credential_created');
      assert.deepEqual(boot.body.records.map((r: { data: { reason: string } }) => r.data.reason), ['no_active_admin', 'first_start']);
    } finally {
      await restarted?.close();
      await t.app.close();
    }
  });

  for (const backend of BACKENDS) {
    it(`two admins revoking each other at once: exactly one succeeds (${backend.store})`, async () => {
      const t = await startTestApp(backend);
      try {
        const a = (await t.admin('POST', '/admin-credentials', { name: 'a', role: 'admin' })).body;
        const b = (await t.admin('POST', '/admin-credentials', { name: 'b', role: 'admin' })).body;
        const bootId = (await t.admin('GET', '/whoami')).body.id as string;
        assert.equal((await adminCall(t.url, a.token, 'POST', `/admin-credentials/${bootId}/revoke`, {})).status, 200);
        const [ra, rb] = await Promise.all([
          adminCall(t.url, a.token, 'POST', `/admin-credentials/${b.id}/revoke`, {}),
          adminCall(t.url, b.token, 'POST', `/admin-credentials/${a.id}/revoke`, {}),
        ]);
        // The loser is refused either as revoked already (401) or by the last-admin guard (409),
        // depending on whether its request was authenticated before the winner's change.
        const statuses = [ra.status, rb.status];
        assert.equal(statuses.filter((s) => s === 200).length, 1, JSON.stringify([ra.body, rb.body]));
        assert.ok(statuses.every((s) => s === 200 || s === 401 || s === 409), JSON.stringify(statuses));
        const active = (await adminCall(t.url, ra.status === 200 ? a.token : b.token, 'GET', '/admin-credentials')).body.credentials
          .filter((c: { role: string; status: string }) => c.role === 'admin' && c.status === 'active');
        assert.equal(active.length, 1, 'one admin credential is left');
      } finally {
        await t.app.close();
      }
    });
  }
});

/**
 * Two instances' views of one store, whose `decisive` read (the one bootstrap decides on), once
 * made, returns only when the other instance has made it too or is waiting for a lock. Without a
 * lock around the check and the mint, both instances read before either writes: the race is
 * certain, not left to timing. With it, the instance holding the lock goes on as soon as the
 * other waits for it.
 */
function racingViews(stores: [Store, Store], decisive: 'countAdminCredentials' | 'listAdminCredentials'): [AdminStore, AdminStore] {
  const signal = () => {
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    return { promise, resolve };
  };
  const read = [signal(), signal()];
  const waitsForLock = [signal(), signal()];
  const view = (i: 0 | 1): AdminStore => {
    const s = stores[i];
    const other = 1 - i;
    return new Proxy(s, {
      get(target, prop) {
        if (prop === 'withLock') {
          return (name: string, fn: () => Promise<unknown>) => {
            waitsForLock[i]!.resolve();
            return target.withLock(name, fn);
          };
        }
        if (prop === decisive) {
          return async () => {
            const v = await target[decisive]();
            read[i]!.resolve();
            await Promise.race([read[other]!.promise, waitsForLock[other]!.promise]);
            return v;
          };
        }
        const v = Reflect.get(target, prop, target) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    }) as unknown as AdminStore;
  };
  return [view(0), view(1)];
}

for (const dialect of STORE_DIALECTS) {
  describe(`bootstrap: instances starting together mint one admin credential (${dialect.name})`, () => {
    const opened: Store[] = [];
    after(async () => {
      for (const s of opened.reverse()) await s.close();
    });
    const pair = async (): Promise<[Store, Store]> => {
      const a = await dialect.open();
      opened.push(a);
      const b = await dialect.openPeer(a);
      opened.push(b);
      return [a, b];
    };
    const activeAdmins = async (s: Store) =>
      (await s.listAdminCredentials()).filter((c) => c.role === 'admin' && adminCredentialStatus(c, Date.now()) === 'active');

    it('on the first start: exactly one prints a credential, and it is the only one stored', async () => {
      const stores = await pair();
      const [va, vb] = racingViews(stores, 'countAdminCredentials');
      const boots = await Promise.all([new AdminAuth(va, systemClock).bootstrap(), new AdminAuth(vb, systemClock).bootstrap()]);
      const printed = boots.filter((b) => b !== undefined);
      assert.equal(printed.length, 1, JSON.stringify(boots.map((b) => b?.reason)));
      assert.equal(printed[0]!.reason, 'first_start');
      assert.equal((await stores[0].listAdminCredentials()).length, 1);
      const principal = await new AdminAuth(stores[1], systemClock).authenticate(`Bearer ${printed[0]!.token}`);
      assert.equal(principal.role, 'admin');
    });

    it('on a restart with no active admin credential (recovery): exactly one prints a credential', async () => {
      const stores = await pair();
      const auth = new AdminAuth(stores[0], systemClock);
      const old = await auth.create('bootstrap', 'admin');
      await stores[0].revokeAdminCredential(old.id, Date.now());
      await auth.create('ops', 'viewer');
      const [va, vb] = racingViews(stores, 'listAdminCredentials');
      const boots = await Promise.all([new AdminAuth(va, systemClock).bootstrap(), new AdminAuth(vb, systemClock).bootstrap()]);
      const printed = boots.filter((b) => b !== undefined);
      assert.equal(printed.length, 1, JSON.stringify(boots.map((b) => b?.reason)));
      assert.equal(printed[0]!.reason, 'no_active_admin');
      assert.equal((await activeAdmins(stores[0])).length, 1, 'one new admin credential');
      assert.equal((await stores[0].listAdminCredentials()).length, 3);
    });
  });
}

describe('mandate admin-credential list|create|expire|revoke', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t.app.close());

  it('creates (printed once), lists, gives an end, revokes; the revoked token is refused by the CLI too', async () => {
    const created = await cli(t, ['admin-credential', 'create', '--name', 'release-bot', '--role', 'approver', '--expires-in', '8h', '--json']);
    assert.equal(created.code, EXIT.ok, created.err);
    const c = JSON.parse(created.out) as { id: string; token: string; expires_at: number };
    assert.ok(c.expires_at > Date.now() + 7 * HOUR && c.expires_at <= Date.now() + 8 * HOUR);
    const human = await cli(t, ['admin-credential', 'create', '--name', 'ops', '--role', 'viewer']);
    assert.match(human.out, /^created viewer credential [0-9a-f]{16} \(shown once\):\n  mdt\./);

    const list = await cli(t, ['admin-credential', 'list']);
    assert.equal(list.code, EXIT.ok);
    assert.match(list.out, /^ID\s+NAME\s+ROLE\s+STATUS\s+CREATED_AT\s+EXPIRES_AT/m);
    assert.match(list.out, new RegExp(`^${c.id}\\s+release-bot\\s+approver\\s+active\\s`, 'm'));
    assert.equal(list.out.includes(c.token.split('.')[2]!), false, 'no secret listed');

    const exp = await cli(t, ['admin-credential', 'expire', c.id, '--expires', '2099-06-30']);
    assert.equal(exp.code, EXIT.ok, exp.err);
    assert.match(exp.out, new RegExp(`^${c.id} \\(release-bot, approver\\) ends at 2099-06-30T23:59:59.999Z$`));
    assert.equal((await cli(t, ['admin-credential', 'expire', c.id])).code, EXIT.usage, 'expire needs an end');

    const rev = await cli(t, ['admin-credential', 'revoke', c.id, '--reason', 'rotated']);
    assert.equal(rev.code, EXIT.ok, rev.err);
    assert.match(rev.out, /^revoked [0-9a-f]{16} \(release-bot, approver\): refused from now on, on every instance$/);
    const asRevoked = await cli(t, ['nhi', 'list'], c.token);
    assert.equal(asRevoked.code, EXIT.unauthorized);
    const status = JSON.parse((await cli(t, ['admin-credential', 'list', '--json'])).out).credentials.find((x: { id: string }) => x.id === c.id);
    assert.equal(status.status, 'revoked');

    const bootId = (await t.admin('GET', '/whoami')).body.id as string;
    const last = await cli(t, ['admin-credential', 'revoke', bootId]);
    assert.equal(last.code, EXIT.failed);
    assert.match(last.err, /409 conflict: .*last active admin credential/);
    assert.equal((await cli(t, ['admin-credential', 'frob'])).code, EXIT.usage);
  });
});
