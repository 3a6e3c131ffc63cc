import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestApp, type TestApp } from '../helpers/app.js';

const POLL = 'urn:ietf:rfc:8936';

/**
 * SSF receivers hold a credential scoped to their own stream (issue 15 item 4), issued with the
 * stream and shown once, hashed at rest: it polls (RFC 8936) and manages that stream (SSF 1.0)
 * and nothing else. An admin credential (role admin) manages every stream.
 */
describe('SSF stream credentials', () => {
  let t: TestApp;
  const ssf = async (method: string, path: string, token: string, body?: unknown) => {
    const res = await fetch(`${t.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };
  const create = async () => {
    const c = await ssf('POST', '/ssf/streams', t.token, { delivery: { method: POLL } });
    assert.equal(c.status, 201, JSON.stringify(c.body));
    return { id: c.body.stream_id as string, credential: c.body.stream_credential as string };
  };

  before(async () => {
    t = await startTestApp(undefined, { nhis: [{ id: 'agent', class: 'agent', owner: 'o@example.com', system: 's', tier: 'read' }] });
  });
  after(() => t.app.close());

  it('issued with the stream, shown once, hashed at rest; the receiver reads, manages and polls its stream with it', async () => {
    const { id, credential } = await create();
    assert.match(credential, new RegExp(`^mds\\.${id}\\.[A-Za-z0-9_-]{43}$`));
    const secret = credential.split('.')[2]!;
    const stored = await t.app.store.getSsfStreamCredential(id);
    assert.match(stored!.secretHash, /^[0-9a-f]{64}$/);
    assert.ok(!stored!.secretHash.includes(secret));
    for (const r of [await ssf('GET', `/ssf/streams?stream_id=${id}`, credential), await ssf('GET', '/ssf/streams', t.token), await t.admin('GET', '/ssf/streams')]) {
      assert.equal(JSON.stringify(r.body).includes(secret), false, 'never shown again');
    }

    assert.equal((await ssf('GET', `/ssf/streams?stream_id=${id}`, credential)).body.stream_id, id);
    assert.deepEqual((await ssf('GET', '/ssf/streams', credential)).body.map((s: { stream_id: string }) => s.stream_id), [id]);
    assert.equal((await ssf('PATCH', '/ssf/streams', credential, { stream_id: id, description: 'mine' })).body.description, 'mine');
    assert.equal((await ssf('POST', '/ssf/subjects:add', credential, { stream_id: id, subject: { format: 'opaque', id: 'agent' } })).status, 200);
    assert.deepEqual((await ssf('GET', `/ssf/status?stream_id=${id}`, credential)).body, { stream_id: id, status: 'enabled' });
    assert.equal((await ssf('POST', '/ssf/verify', credential, { stream_id: id, state: 'hello' })).status, 204);
    const polled = await ssf('POST', `/ssf/poll/${id}`, credential, { returnImmediately: true });
    assert.equal(polled.status, 200);
    const [jti] = Object.keys(polled.body.sets);
    assert.ok(jti);
    assert.equal((await ssf('POST', `/ssf/poll/${id}`, credential, { ack: [jti], maxEvents: 0 })).status, 200);
    const audit = await t.admin('GET', `/audit?type=ssf.subject_added&subject=${id}`);
    assert.equal(audit.body.records[0].actor, `stream:${id}`, 'audited as the stream');
  });

  it('an admin replaces it: the old one is refused at once, the new one works; deleting the stream ends it', async () => {
    const { id, credential } = await create();
    const rotated = await t.admin('POST', `/ssf/streams/${id}/credential`);
    assert.equal(rotated.status, 201);
    const fresh = rotated.body.stream_credential as string;
    assert.notEqual(fresh, credential);
    assert.equal((await ssf('GET', `/ssf/status?stream_id=${id}`, credential)).status, 401, 'the replaced credential');
    assert.equal((await ssf('GET', `/ssf/status?stream_id=${id}`, fresh)).status, 200);
    assert.equal((await t.admin('POST', '/ssf/streams/str_nope/credential')).status, 404);
    // The receiver may delete its own stream (SSF 1.0); its credential goes with it.
    assert.equal((await ssf('DELETE', `/ssf/streams?stream_id=${id}`, fresh)).status, 204);
    assert.equal((await ssf('GET', `/ssf/status?stream_id=${id}`, fresh)).status, 401);
    assert.equal(await t.app.store.getSsfStreamCredential(id), undefined);
  });

  it('an admin credential manages every stream; viewer and approver credentials are refused (a receiver holds no console role)', async () => {
    const { id } = await create();
    assert.equal((await ssf('GET', `/ssf/status?stream_id=${id}`, t.token)).status, 200);
    assert.equal((await ssf('POST', '/ssf/status', t.token, { stream_id: id, status: 'paused' })).status, 200);
    for (const role of ['viewer', 'approver']) {
      const tok = (await t.admin('POST', '/admin-credentials', { name: `r-${role}`, role })).body.token as string;
      assert.equal((await ssf('POST', '/ssf/streams', tok, { delivery: { method: POLL } })).status, 403, `${role} creates no stream`);
      assert.equal((await ssf('GET', `/ssf/status?stream_id=${id}`, tok)).status, 403, `${role} reads no stream`);
      assert.equal((await ssf('POST', `/ssf/poll/${id}`, tok, { returnImmediately: true })).status, 403, `${role} polls no stream`);
    }
  });
});
