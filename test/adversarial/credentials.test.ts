import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import fc from 'fast-check';
import { ManualClock } from '../../src/core/index.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { testAgent, ASSERTION_TYPE, type TestAgent } from '../helpers/agent.js';

const POLL = 'urn:ietf:rfc:8936';
const HOUR = 3_600_000;

/** Real time plus an offset the test moves. */
class ShiftedClock extends ManualClock {
  offset = 0;
  override now(): number {
    return Date.now() + this.offset;
  }
}

/**
 * Credentials, attacked (issue 15 item 4): expired and revoked credentials of every kind,
 * stream credentials used across streams and against the admin API, role escalation through
 * the credential routes, and format tricks (a valid id with another's secret, case, padding,
 * schemes, the stored hash presented as the secret). Every request goes to a real Mandate.
 */
describe('adversarial: credentials', () => {
  let t: TestApp;
  const clock = new ShiftedClock();
  let viewer: { id: string; token: string };
  let approver: { id: string; token: string };
  let admin2: { id: string; token: string };
  let streamA: { id: string; credential: string };
  let streamB: { id: string; credential: string };
  let oldKey: TestAgent;
  let newKey: TestAgent;

  const http = async (method: string, path: string, headers: Record<string, string> = {}, body?: unknown) => {
    const res = await fetch(`${t.url}${path}`, {
      method,
      headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    let parsed: any = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // not JSON
    }
    return { status: res.status, body: parsed };
  };
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
  const createCred = async (name: string, role: string, extra: Record<string, unknown> = {}) => {
    const r = await t.admin('POST', '/admin-credentials', { name, role, ...extra });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return { id: r.body.id as string, token: r.body.token as string };
  };
  const createStream = async () => {
    const r = await http('POST', '/ssf/streams', bearer(t.token), { delivery: { method: POLL } });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return { id: r.body.stream_id as string, credential: r.body.stream_credential as string };
  };

  before(async () => {
    oldKey = await testAgent('rotating-agent');
    newKey = { ...(await testAgent('rotating-agent')) };
    newKey.publicJwk = { ...newKey.publicJwk, kid: 'rotating-agent-2' };
    t = await startTestApp(undefined, {
      tokens: { profiles: [{ name: 'read', ttl: '5m', binding: 'optional' }] },
      nhis: [{
        id: 'rotating-agent', class: 'agent', owner: 'o@example.com', system: 's', tier: 'read',
        credentials: [
          // The old key's credential ended yesterday; the new one is current.
          { type: 'private_key_jwt', jwks: { keys: [oldKey.publicJwk as Record<string, unknown>] }, expires: new Date(Date.now() - 86_400_000).toISOString().slice(0, 10) },
          { type: 'private_key_jwt', jwks: { keys: [newKey.publicJwk as Record<string, unknown>] } },
        ],
      }],
      tools: [{ id: 'wiki', kind: 'http', upstream: 'http://127.0.0.1:9', actions: [{ name: 'read_page', method: 'GET', path: '/pages', tier: 'read' }] }],
      grants: [{ nhi: 'rotating-agent', tool: 'wiki', actions: ['read_page'] }],
    }, {}, { clock });
    viewer = await createCred('viewer', 'viewer');
    approver = await createCred('approver', 'approver');
    admin2 = await createCred('second-admin', 'admin');
    streamA = await createStream();
    streamB = await createStream();
  });
  after(() => t.app.close());

  // ------------------------------------------------------------------ format tricks

  it('admin credential format tricks: another credential\'s secret, case, padding, appended bytes, the stored hash, other schemes', async () => {
    const [, vid, vsecret] = viewer.token.split('.') as [string, string, string];
    const [, aid, asecret] = admin2.token.split('.') as [string, string, string];
    const storedHash = createHash('sha256').update(asecret).digest('hex');
    const tricks: Array<[string, Record<string, string>]> = [
      ['valid admin id, a viewer\'s secret', bearer(`mdt.${aid}.${vsecret}`)],
      ['valid viewer id, the admin\'s secret', bearer(`mdt.${vid}.${asecret}`)],
      ['upper-case prefix', bearer(`MDT.${aid}.${asecret}`)],
      ['upper-case id', bearer(`mdt.${aid.toUpperCase()}.${asecret}`)],
      ['appended byte', bearer(`${admin2.token}A`)],
      ['base64 padding', bearer(`${admin2.token}=`)],
      ['trailing dot', bearer(`${admin2.token}.`)],
      ['truncated secret', bearer(admin2.token.slice(0, -1))],
      ['the stored sha256 as the secret', bearer(`mdt.${aid}.${storedHash}`)],
      ['two tokens', { authorization: `Bearer ${viewer.token}, Bearer ${admin2.token}` }],
      ['Basic scheme', { authorization: `Basic ${Buffer.from(`${aid}:${asecret}`).toString('base64')}` }],
      ['no scheme', { authorization: admin2.token }],
      ['stream credential form', bearer(`mds.${aid}.${asecret}`)],
      ['a stream credential', bearer(streamA.credential)],
    ];
    for (const [what, headers] of tricks) {
      const r = await http('GET', '/admin/v1/whoami', headers);
      assert.equal(r.status, 401, what);
      assert.equal(r.body.error, 'invalid_token', what);
    }
    assert.equal((await http('GET', `/admin/v1/whoami?access_token=${encodeURIComponent(admin2.token)}`)).status, 401, 'never from the query');
    // The genuine article, for contrast (scheme names are case-insensitive, RFC 9110 §11.1).
    assert.equal((await http('GET', '/admin/v1/whoami', { authorization: `bearer ${admin2.token}` })).status, 200);
  });

  it('fuzz: a mutated admin credential is accepted only when it is the credential itself (differential oracle: string equality)', async () => {
    const token = viewer.token;
    const alphabet = 'abcdef0123456789ABCDEF_-.=+/ %mdt';
    await fc.assert(fc.asyncProperty(
      fc.nat({ max: token.length - 1 }),
      fc.oneof(
        fc.record({ op: fc.constant('replace' as const), ch: fc.constantFrom(...alphabet) }),
        fc.record({ op: fc.constant('insert' as const), ch: fc.constantFrom(...alphabet) }),
        fc.record({ op: fc.constant('delete' as const), ch: fc.constant('') }),
        fc.record({ op: fc.constant('case' as const), ch: fc.constant('') }),
      ),
      async (at, m) => {
        const c = token[at]!;
        const mutated = m.op === 'replace' ? token.slice(0, at) + m.ch + token.slice(at + 1)
          : m.op === 'insert' ? token.slice(0, at) + m.ch + token.slice(at)
            : m.op === 'delete' ? token.slice(0, at) + token.slice(at + 1)
              : token.slice(0, at) + (c === c.toUpperCase() ? c.toLowerCase() : c.toUpperCase()) + token.slice(at + 1);
        const status = await t.app.adminAuth.authenticate(`Bearer ${mutated}`).then(() => 200, (e: { status?: number }) => e.status ?? 500);
        assert.equal(status, mutated === token ? 200 : 401, JSON.stringify(mutated));
      },
    ), { numRuns: 300 });
  });

  // ------------------------------------------------------------------ role escalation

  it('role escalation: a viewer or approver cannot list, create (least of all an admin), give an end to or revoke credentials', async () => {
    for (const who of [viewer, approver]) {
      const h = bearer(who.token);
      assert.equal((await http('GET', '/admin/v1/admin-credentials', h)).status, 403);
      assert.equal((await http('GET', `/admin/v1/admin-credentials/${who.id}`, h)).status, 403);
      assert.equal((await http('POST', '/admin/v1/admin-credentials', h, { name: 'x', role: 'admin' })).status, 403);
      assert.equal((await http('POST', `/admin/v1/admin-credentials/${admin2.id}/revoke`, h, { force: true })).status, 403);
      assert.equal((await http('POST', `/admin/v1/admin-credentials/${admin2.id}/expire`, h, { expires: '2099-01-01', force: true })).status, 403);
      // Not even its own end moved later, which would extend its own life.
      assert.equal((await http('POST', `/admin/v1/admin-credentials/${who.id}/expire`, h, { expires: '2099-01-01' })).status, 403);
      assert.equal((await http('POST', `/admin/v1/ssf/streams/${streamA.id}/credential`, h)).status, 403, 'nor replace a stream credential');
    }
    assert.equal((await t.admin('GET', `/admin-credentials/${admin2.id}`)).body.status, 'active');
    // Input that would smuggle a role or a chosen secret.
    assert.equal((await t.admin('POST', '/admin-credentials', { name: 'x', role: 'root' })).status, 400);
    assert.equal((await t.admin('POST', '/admin-credentials', { name: 'x', role: 'viewer', secret_hash: '0'.repeat(64) })).status, 400);
    assert.equal((await t.admin('POST', '/admin-credentials', { name: 'x', role: 'viewer', id: '0000000000000000' })).status, 400);
    assert.equal((await t.admin('POST', '/admin-credentials', { name: 'x', role: 'viewer', expires: 'tomorrow' })).status, 400);
    assert.equal((await http('POST', '/admin/v1/admin-credentials', { ...bearer(t.token), 'content-type': 'application/json' }, '{"name":"x","role":"viewer","role":"admin"}')).status, 400, 'duplicate keys');
  });

  // ------------------------------------------------------------------ expired and revoked

  it('an expired admin credential is refused everywhere: admin API, console sign-in, SSF endpoints; and never revived', async () => {
    const soon = await createCred('short-lived', 'admin', { expires: new Date(Date.now() + HOUR).toISOString() });
    const h = bearer(soon.token);
    assert.equal((await http('GET', '/admin/v1/whoami', h)).status, 200);
    clock.offset = HOUR + 1000;
    try {
      assert.equal((await http('GET', '/admin/v1/whoami', h)).status, 401);
      assert.equal((await http('POST', `/admin/v1/admin-credentials/${soon.id}/expire`, h, { expires: '2099-01-01' })).status, 401, 'cannot extend itself');
      assert.equal((await http('POST', '/ui/session', {}, { credential: soon.token })).status, 401);
      assert.equal((await http('GET', `/ssf/streams?stream_id=${streamA.id}`, h)).status, 401);
      assert.equal((await http('POST', '/ssf/streams', h, { delivery: { method: POLL } })).status, 401);
      const revive = await t.admin('POST', `/admin-credentials/${soon.id}/expire`, { expires: '2099-01-01' });
      assert.equal(revive.status, 409, 'an expired credential stays expired');
      assert.equal((await t.admin('GET', `/admin-credentials/${soon.id}`)).body.status, 'expired');
    } finally {
      clock.offset = 0;
    }
  });

  it('a revoked admin credential is refused on its next request, its console session too (cookie, event stream, /ui/session)', async () => {
    const victim = await createCred('to-revoke', 'approver');
    const signIn = await fetch(`${t.url}/ui/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ credential: victim.token }) });
    assert.equal(signIn.status, 201);
    const cookie = signIn.headers.get('set-cookie')!.split(';')[0]!;
    assert.equal((await http('GET', '/admin/v1/whoami', { cookie })).status, 200);
    const events = await fetch(`${t.url}/ui/events`, { headers: { cookie } });
    assert.equal(events.status, 200);
    const reader = events.body!.getReader();
    assert.equal((await t.admin('POST', `/admin-credentials/${victim.id}/revoke`, { reason: 'stolen' })).status, 200);
    // The open event stream is ended (session.ended), not left running for the revoked credential.
    let text = '';
    const deadline = Date.now() + 10_000;
    while (!text.includes('session.ended') && Date.now() < deadline) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    assert.match(text, /event: session\.ended/);
    assert.equal((await http('GET', '/admin/v1/whoami', { cookie })).status, 401);
    assert.equal((await http('GET', '/ui/session', { cookie })).status, 401);
    assert.equal((await http('GET', '/ui/events', { cookie })).status, 401);
    assert.equal((await http('GET', '/admin/v1/whoami', bearer(victim.token))).status, 401);
    assert.equal((await http('POST', '/ui/session', {}, { credential: victim.token })).status, 401);
  });

  it('private_key_jwt: the key of an ended credential is refused whatever the assertion says (kid, no kid), the current key works', async () => {
    const assertion = (a: TestAgent, kid: string | undefined) => {
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ iss: a.id, sub: a.id, aud: `${t.app.issuer}/oauth/token`, jti: randomUUID(), iat: now, exp: now + 60 })
        .setProtectedHeader({ alg: 'ES256', ...(kid ? { kid } : {}) }).sign(a.privateKey);
    };
    const ask = async (a: string) => http('POST', '/oauth/token', { 'content-type': 'application/x-www-form-urlencoded' }, new URLSearchParams({
      grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: a, scope: 'read_page', resource: `${t.app.issuer}/tools/wiki`,
    }).toString());
    const withOldKid = await ask(await assertion(oldKey, oldKey.publicJwk.kid));
    assert.equal(withOldKid.status, 401);
    assert.equal(withOldKid.body.error, 'invalid_client');
    const withoutKid = await ask(await assertion(oldKey, undefined));
    assert.equal(withoutKid.status, 401, 'no kid: only the current key is a candidate, and the old signature does not verify with it');
    const oldKeyNewKid = await ask(await assertion(oldKey, 'rotating-agent-2'));
    assert.equal(oldKeyNewKid.status, 401, 'the current kid on the old key');
    assert.equal((await ask(await assertion(newKey, 'rotating-agent-2'))).status, 200);
  });

  // ------------------------------------------------------------------ stream credentials

  it("cross-stream: stream A's credential cannot read, change, poll or delete stream B", async () => {
    const a = bearer(streamA.credential);
    const B = streamB.id;
    const refused: Array<[string, string, unknown?]> = [
      ['GET', `/ssf/streams?stream_id=${B}`],
      ['PATCH', '/ssf/streams', { stream_id: B, description: 'pwned' }],
      ['PUT', '/ssf/streams', { stream_id: B, delivery: { method: POLL } }],
      ['DELETE', `/ssf/streams?stream_id=${B}`],
      ['GET', `/ssf/status?stream_id=${B}`],
      ['POST', '/ssf/status', { stream_id: B, status: 'disabled' }],
      ['POST', '/ssf/subjects:add', { stream_id: B, subject: { format: 'opaque', id: 'x' } }],
      ['POST', '/ssf/subjects:remove', { stream_id: B, subject: { format: 'opaque', id: 'x' } }],
      ['POST', '/ssf/verify', { stream_id: B }],
      ['POST', `/ssf/poll/${B}`, { returnImmediately: true }],
      ['DELETE', `/ssf/streams?stream_id=${B}&stream_id=${streamA.id}`],
      ['GET', `/ssf/status?stream_id=${encodeURIComponent(`${B}`)}%00`],
    ];
    for (const [method, path, body] of refused) {
      const r = await http(method, path, a, body);
      assert.equal(r.status, 404, `${method} ${path}: ${JSON.stringify(r.body)}`);
    }
    assert.equal((await http('PATCH', '/ssf/streams', a, `{"stream_id":"${streamA.id}","stream_id":"${B}","description":"x"}`)).status, 400, 'duplicate stream_id refused, not resolved');
    assert.deepEqual((await http('GET', '/ssf/streams', a)).body.map((s: { stream_id: string }) => s.stream_id), [streamA.id]);
    assert.equal((await http('POST', '/ssf/streams', a, { delivery: { method: POLL } })).status, 403, 'creates no stream');
    // B is untouched.
    const b = await http('GET', `/ssf/streams?stream_id=${B}`, bearer(streamB.credential));
    assert.equal(b.status, 200);
    assert.equal(b.body.description, undefined);
    assert.deepEqual((await http('GET', `/ssf/status?stream_id=${B}`, bearer(streamB.credential))).body.status, 'enabled');
  });

  it("stream credential tricks: A's id with B's secret, an admin credential's secret, case, the admin form; a deleted stream's credential", async () => {
    const [, , secretB] = streamB.credential.split('.') as [string, string, string];
    const [, , adminSecret] = t.token.split('.') as [string, string, string];
    for (const [what, token] of [
      ["A's id, B's secret", `mds.${streamA.id}.${secretB}`],
      ["A's id, an admin credential's secret", `mds.${streamA.id}.${adminSecret}`],
      ['upper-case prefix', streamA.credential.replace(/^mds/, 'MDS')],
      ['appended byte', `${streamA.credential}x`],
      ['admin form with the stream secret', `mdt.${streamA.id}.${streamA.credential.split('.')[2]}`],
      ['unknown stream', `mds.str_0000000000000000000000.${secretB}`],
    ] as const) {
      const r = await http('GET', `/ssf/status?stream_id=${streamA.id}`, bearer(token));
      assert.equal(r.status, 401, what);
    }
    const gone = await createStream();
    assert.equal((await http('DELETE', `/ssf/streams?stream_id=${gone.id}`, bearer(t.token))).status, 204);
    assert.equal((await http('GET', '/ssf/streams', bearer(gone.credential))).status, 401, 'a deleted stream takes its credential with it');
  });

  it('a long poll begun with a stream credential that is then replaced gets a 401 and no SET', async () => {
    const s = await createStream();
    const waiters = (t.app.signals.transmitter as unknown as { waiters: Map<string, Set<unknown>> }).waiters;
    const polling = http('POST', `/ssf/poll/${s.id}`, bearer(s.credential), {});
    // Bounded wait until the poll is parked waiting for an event (it was accepted with the credential).
    const deadline = Date.now() + 10_000;
    while (!waiters.has(s.id) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.ok(waiters.has(s.id), 'the long poll is waiting');
    assert.equal((await t.admin('POST', `/ssf/streams/${s.id}/credential`)).status, 201);
    assert.equal((await http('POST', '/ssf/verify', bearer(t.token), { stream_id: s.id, state: 'after-rotation' })).status, 204);
    const r = await polling;
    assert.equal(r.status, 401, JSON.stringify(r.body));
    assert.equal(JSON.stringify(r.body).includes('sets'), false);
  });

  it('a stream credential opens no admin route and no console session', async () => {
    const doc = (await (await fetch(`${t.url}/admin/v1/openapi.json`)).json()) as { paths: Record<string, Record<string, unknown>> };
    let routes = 0;
    for (const [path, methods] of Object.entries(doc.paths)) {
      for (const method of Object.keys(methods)) {
        const concrete = path.replace(/\{[^}]+\}/g, streamA.id);
        const r = await http(method.toUpperCase(), concrete, bearer(streamA.credential), method === 'get' ? undefined : {});
        assert.equal(r.status, 401, `${method.toUpperCase()} ${concrete}`);
        routes++;
      }
    }
    assert.ok(routes > 40, `every admin route was tried (${routes})`);
    assert.equal((await http('POST', '/ui/session', {}, { credential: streamA.credential })).status, 401);
  });

  it('a stream credential is no client authentication at the token endpoint, however it is presented', async () => {
    const form = { 'content-type': 'application/x-www-form-urlencoded' };
    const grant = { grant_type: 'client_credentials', scope: 'read_page', resource: `${t.app.issuer}/tools/wiki` };
    const secret = streamA.credential.split('.')[2]!;
    const basic = (id: string, pass: string) => ({ authorization: `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(pass)}`).toString('base64')}` });
    // RFC 6749 §2.3.1: client_secret_basic and client_secret_post; RFC 7523 §2.2: a client assertion.
    const attempts: Array<[string, Record<string, string>, Record<string, string>]> = [
      ['as a bearer header, no client authentication', bearer(streamA.credential), {}],
      ['client_secret_basic: stream id, credential', basic(streamA.id, streamA.credential), {}],
      ['client_secret_basic: stream id, its secret part', basic(streamA.id, secret), {}],
      ['client_secret_post: stream id, credential', {}, { client_id: streamA.id, client_secret: streamA.credential }],
      ['client_secret_post: stream id, its secret part', {}, { client_id: streamA.id, client_secret: secret }],
      ['client_secret_post: the NHI\'s id, the credential', {}, { client_id: 'rotating-agent', client_secret: streamA.credential }],
      ['client_assertion: the credential as a bearer assertion', {}, { client_id: streamA.id, client_assertion_type: ASSERTION_TYPE, client_assertion: streamA.credential }],
    ];
    for (const [what, headers, params] of attempts) {
      const res = await fetch(`${t.url}/oauth/token`, { method: 'POST', headers: { ...form, ...headers }, body: new URLSearchParams({ ...grant, ...params }) });
      const body = (await res.json()) as Record<string, unknown>;
      assert.equal(res.status, 401, `${what}: ${JSON.stringify(body)}`);
      assert.equal(body.error, 'invalid_client', what);
      assert.equal(body.access_token, undefined, what);
      // RFC 6749 §5.2: a client that tried the Authorization header gets the scheme it may use.
      if (headers.authorization !== undefined) assert.match(res.headers.get('www-authenticate') ?? '', /^Basic /, what);
    }
  });
});
