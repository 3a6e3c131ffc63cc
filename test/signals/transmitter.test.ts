import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { compactVerify, createLocalJWKSet } from 'jose';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { CAEP, RISC, decode, startPushReceiver, waitFor } from './helpers.js';

const PUSH = 'urn:ietf:rfc:8935';
const POLL = 'urn:ietf:rfc:8936';
const nhi = (id: string) => ({ id, class: 'agent' as const, owner: 'o@example.com', system: 's', tier: 'write' as const });

describe('SSF transmitter (OpenID SSF 1.0, RFC 8417, RFC 8935, RFC 8936)', () => {
  let t: TestApp;
  /**
   * `rc`: an admin credential (role admin: streams are created and managed with one), named
   * `siem` (the default `aud` of the streams it creates). `rc2`: another receiver's own stream
   * credential, which opens its stream (`otherStream`) and no other.
   */
  let rc = '';
  let rc2 = '';
  let otherStream = '';

  async function ssf(method: string, path: string, body?: unknown, token: string | null = rc): Promise<{ status: number; body: any }> {
    const res = await fetch(`${t.url}${path}`, {
      method,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  }

  async function verifySet(jwt: string) {
    const jwks = (await (await fetch(`${t.url}/oauth/jwks`)).json()) as { keys: [] };
    const { protectedHeader, payload } = await compactVerify(jwt, createLocalJWKSet(jwks));
    return { header: protectedHeader, claims: JSON.parse(new TextDecoder().decode(payload)) as Record<string, any> };
  }

  /** A poll stream with the given subjects, for event tests. */
  async function pollStream(subjects: string[] = [], events?: string[]): Promise<string> {
    const c = await ssf('POST', '/ssf/streams', { delivery: { method: POLL }, ...(events ? { events_requested: events } : {}) });
    assert.equal(c.status, 201, JSON.stringify(c.body));
    for (const id of subjects) assert.equal((await ssf('POST', '/ssf/subjects:add', { stream_id: c.body.stream_id, subject: { format: 'opaque', id } })).status, 200);
    return c.body.stream_id as string;
  }

  before(async () => {
    t = await startTestApp(undefined, {
      nhis: [nhi('deploy-agent'), nhi('other-agent'), nhi('kill-agent'), nhi('step-agent')],
      signals: { transmitter: { push_initial_backoff: '20ms', push_max_backoff: '200ms', push_max_attempts: 3, poll_max_wait: '3s', poll_redelivery: '1s' } },
    });
    rc = (await t.admin('POST', '/admin-credentials', { name: 'siem', role: 'admin' })).body.token;
    const other = await ssf('POST', '/ssf/streams', { delivery: { method: POLL }, description: 'other receiver' });
    assert.equal(other.status, 201);
    otherStream = other.body.stream_id;
    rc2 = other.body.stream_credential;
    await ssf('POST', '/ssf/subjects:add', { stream_id: otherStream, subject: { format: 'opaque', id: 'nobody' } });
  });
  after(() => t.app.close());

  it('SSF 1.0 Transmitter Configuration Metadata at /.well-known/ssf-configuration', async () => {
    const r = await ssf('GET', '/.well-known/ssf-configuration', undefined, null);
    assert.equal(r.status, 200);
    const iss = t.app.issuer;
    assert.deepEqual(r.body, {
      spec_version: '1_0', issuer: iss, jwks_uri: `${iss}/oauth/jwks`, delivery_methods_supported: [PUSH, POLL],
      configuration_endpoint: `${iss}/ssf/streams`, status_endpoint: `${iss}/ssf/status`, add_subject_endpoint: `${iss}/ssf/subjects:add`,
      remove_subject_endpoint: `${iss}/ssf/subjects:remove`, verification_endpoint: `${iss}/ssf/verify`,
      authorization_schemes: [{ spec_urn: 'urn:ietf:rfc:6750' }], default_subjects: 'ALL',
    });
  });

  it('SSF 1.0 stream management: create 201, read one and all, PATCH, PUT, DELETE 204; streams are per receiver', async () => {
    assert.equal((await ssf('POST', '/ssf/streams', {}, null)).status, 401);
    const push = await startPushReceiver();
    try {
      const c = await ssf('POST', '/ssf/streams', {
        events_requested: [`${CAEP}session-revoked`, `${CAEP}device-compliance-change`],
        delivery: { method: PUSH, endpoint_url: push.url, authorization_header: 'Bearer receiver-secret' },
        description: 'siem',
      });
      assert.equal(c.status, 201);
      const id = c.body.stream_id as string;
      assert.equal(c.body.iss, t.app.issuer);
      assert.deepEqual(c.body.events_delivered, [`${CAEP}session-revoked`], 'events_delivered = requested ∩ supported');
      assert.deepEqual(c.body.delivery, { method: PUSH, endpoint_url: push.url }, 'the authorization header is never echoed');
      assert.ok(c.body.events_supported.includes(`${RISC}account-disabled`));

      const one = await ssf('GET', `/ssf/streams?stream_id=${id}`);
      const { stream_credential: credential, ...config } = c.body;
      assert.match(credential, /^mds\./, 'the stream credential, in the creation answer only');
      assert.deepEqual(one.body, config);
      const all = await ssf('GET', '/ssf/streams');
      assert.ok(Array.isArray(all.body) && all.body.some((s: { stream_id: string }) => s.stream_id === id));
      assert.equal((await ssf('GET', `/ssf/streams?stream_id=${id}`, undefined, rc2)).status, 404, 'another receiver cannot see it');
      assert.deepEqual((await ssf('GET', '/ssf/streams', undefined, rc2)).body.map((s: { stream_id: string }) => s.stream_id), [otherStream], 'a stream credential lists its own stream only');

      const patched = await ssf('PATCH', '/ssf/streams', { stream_id: id, description: 'patched' });
      assert.equal(patched.status, 200);
      assert.equal(patched.body.description, 'patched');
      assert.deepEqual(patched.body.events_requested, c.body.events_requested, 'PATCH keeps what it does not name');
      const replaced = await ssf('PUT', '/ssf/streams', { stream_id: id, delivery: { method: POLL } });
      assert.equal(replaced.status, 200);
      assert.equal(replaced.body.description, undefined, 'PUT replaces everything');
      assert.deepEqual(replaced.body.delivery, { method: POLL, endpoint_url: `${t.app.issuer}/ssf/poll/${id}` });
      assert.equal((await ssf('PATCH', '/ssf/streams', { stream_id: id, aud: 'someone-else' })).status, 400, 'aud is transmitter-supplied');
      assert.equal((await ssf('POST', '/ssf/streams', { delivery: { method: PUSH, endpoint_url: 'http://example.com/events' } })).status, 400, 'push only to https');

      assert.equal((await ssf('DELETE', `/ssf/streams?stream_id=${id}`, undefined, rc2)).status, 404);
      assert.equal((await ssf('DELETE', `/ssf/streams?stream_id=${id}`)).status, 204);
      assert.equal((await ssf('GET', `/ssf/streams?stream_id=${id}`)).status, 404);
    } finally {
      await push.close();
    }
  });

  it('SSF 1.0 stream status: read, pause (events held), enable, disable', async () => {
    const id = await pollStream(['nobody']);
    assert.deepEqual((await ssf('GET', `/ssf/status?stream_id=${id}`)).body, { stream_id: id, status: 'enabled' });
    const paused = await ssf('POST', '/ssf/status', { stream_id: id, status: 'paused', reason: 'maintenance' });
    assert.deepEqual(paused.body, { stream_id: id, status: 'paused', reason: 'maintenance' });
    assert.equal((await ssf('POST', '/ssf/verify', { stream_id: id, state: 'held' })).status, 204);
    assert.deepEqual((await ssf('POST', `/ssf/poll/${id}`, { returnImmediately: true })).body.sets, {}, 'a paused stream holds its events');
    await ssf('POST', '/ssf/status', { stream_id: id, status: 'enabled' });
    const got = await ssf('POST', `/ssf/poll/${id}`, { returnImmediately: true });
    assert.equal(Object.keys(got.body.sets).length, 1, 'held events come once enabled');
    assert.equal((await ssf('POST', '/ssf/status', { stream_id: id, status: 'off' })).status, 400);
    assert.equal((await ssf('POST', '/ssf/status', { stream_id: id, status: 'disabled' })).body.status, 'disabled');
    assert.equal((await ssf('POST', '/ssf/verify', { stream_id: id })).status, 400, 'a disabled stream takes nothing');
    await ssf('DELETE', `/ssf/streams?stream_id=${id}`);
  });

  it('SSF 1.0 subjects: add 200, remove 204, malformed 400; events go only to streams whose subjects name the NHI', async () => {
    const mine = await pollStream(['deploy-agent']);
    const others = await pollStream(['other-agent']);
    assert.equal((await ssf('POST', '/ssf/subjects:add', { stream_id: mine, subject: { format: 'email' } })).status, 400);
    assert.equal((await ssf('POST', '/ssf/subjects:add', { stream_id: mine, subject: { format: 'email', email: 'a@example.com' } })).status, 200);
    assert.equal((await ssf('POST', '/ssf/subjects:remove', { stream_id: mine, subject: { format: 'email', email: 'a@example.com' } })).status, 204);
    assert.equal((await ssf('POST', '/ssf/subjects:remove', { stream_id: mine, subject: { format: 'email', email: 'a@example.com' } })).status, 404);
    assert.equal((await ssf('POST', '/ssf/subjects:add', { stream_id: mine, subject: { format: 'opaque', id: 'x' } }, rc2)).status, 404);

    await t.app.enforcement.revokeAll('nhi', 'deploy-agent', 'test', 'admin:test');
    const got = await ssf('POST', `/ssf/poll/${mine}`, {});
    const sets = Object.values(got.body.sets) as string[];
    assert.equal(sets.length, 1);
    const { claims } = await verifySet(sets[0]!);
    assert.deepEqual(claims.sub_id, { format: 'opaque', id: 'deploy-agent' });
    assert.deepEqual((await ssf('POST', `/ssf/poll/${others}`, { returnImmediately: true })).body.sets, {});
    for (const id of [mine, others]) await ssf('DELETE', `/ssf/streams?stream_id=${id}`);
  });

  it('SSF 1.0 verification: a signed verification SET (RFC 8417: typ secevent+jwt, iss, aud, iat, jti) carrying the state', async () => {
    const id = await pollStream(['nobody']);
    assert.equal((await ssf('POST', '/ssf/verify', { stream_id: id, state: 'VGhpcyBpcyBhbiBleGFtcGxl' })).status, 204);
    const got = await ssf('POST', `/ssf/poll/${id}`, { returnImmediately: true });
    const [jti, jwt] = Object.entries(got.body.sets)[0] as [string, string];
    const { header, claims } = await verifySet(jwt);
    assert.equal(header.typ, 'secevent+jwt');
    assert.equal(claims.iss, t.app.issuer);
    assert.equal(claims.aud, `${t.app.issuer}/ssf/receivers/siem`);
    assert.equal(claims.jti, jti);
    assert.equal(typeof claims.iat, 'number');
    assert.deepEqual(claims.sub_id, { format: 'opaque', id });
    assert.deepEqual(claims.events, { 'https://schemas.openid.net/secevent/ssf/event-type/verification': { state: 'VGhpcyBpcyBhbiBleGFtcGxl' } });
    await ssf('DELETE', `/ssf/streams?stream_id=${id}`);
  });

  it('RFC 8935 push: a receiver that fails twice then answers 202 gets the SET on the third attempt', async () => {
    const push = await startPushReceiver((n) => (n < 2 ? 503 : 202));
    try {
      const c = await ssf('POST', '/ssf/streams', { delivery: { method: PUSH, endpoint_url: push.url, authorization_header: 'Bearer receiver-secret' } });
      await ssf('POST', '/ssf/subjects:add', { stream_id: c.body.stream_id, subject: { format: 'opaque', id: 'nobody' } });
      await ssf('POST', '/ssf/verify', { stream_id: c.body.stream_id, state: 'retry-me' });
      // At rest the receiver's credential is sealed under the KEK, bound to its stream.
      const stored = JSON.stringify((await t.app.store.getSsfStream(c.body.stream_id))!.config);
      assert.ok(!stored.includes('receiver-secret'), 'the push authorization is not stored in clear');
      assert.match(stored, /"authorization_header_sealed":"[^"]+"/);
      // An update that names no delivery keeps the credential.
      assert.equal((await ssf('PATCH', '/ssf/streams', { stream_id: c.body.stream_id, description: 'kept' })).status, 200);
      await waitFor(async () => (await t.admin('GET', `/ssf/events?stream_id=${c.body.stream_id}&status=delivered`)).body.events.length === 1, 10_000, 'delivery');
      assert.equal(push.received.length, 3);
      for (const r of push.received) {
        assert.equal(r.contentType, 'application/secevent+jwt');
        assert.equal(r.authorization, 'Bearer receiver-secret');
      }
      assert.equal(push.received[0]!.body, push.received[2]!.body, 'the same SET is retried');
      const ev = (await t.admin('GET', `/ssf/events?stream_id=${c.body.stream_id}`)).body.events[0];
      assert.equal(ev.attempts, 3);
      await ssf('DELETE', `/ssf/streams?stream_id=${c.body.stream_id}`);
    } finally {
      await push.close();
    }
  });

  it('RFC 8935 push: a receiver that always fails leaves a dead letter after the last attempt, visible and retryable', async () => {
    const push = await startPushReceiver(() => 503);
    try {
      const c = await ssf('POST', '/ssf/streams', { delivery: { method: PUSH, endpoint_url: push.url } });
      await ssf('POST', '/ssf/subjects:add', { stream_id: c.body.stream_id, subject: { format: 'opaque', id: 'nobody' } });
      await ssf('POST', '/ssf/verify', { stream_id: c.body.stream_id });
      const dead = await waitFor(async () => {
        const r = await t.admin('GET', `/ssf/events?stream_id=${c.body.stream_id}&status=dead`);
        return r.body.events.length === 1 && r.body.events[0];
      }, 10_000, 'dead letter');
      assert.equal(dead.attempts, 3, 'push_max_attempts');
      assert.match(dead.last_error, /HTTP 503/);
      assert.equal(push.received.length, 3);
      assert.equal(dead.set_jwt, undefined, 'the admin API shows metadata, not the SET');
      push.answer = () => 202;
      assert.equal((await t.admin('POST', `/ssf/events/${dead.id}/retry`)).status, 200);
      await waitFor(async () => (await t.admin('GET', `/ssf/events?stream_id=${c.body.stream_id}&status=delivered`)).body.events.length === 1, 10_000, 'redelivery');
      await ssf('DELETE', `/ssf/streams?stream_id=${c.body.stream_id}`);
    } finally {
      await push.close();
    }
  });

  it('RFC 8936 poll: maxEvents and moreAvailable, ack, returnImmediately, long poll, redelivery until acknowledged', async () => {
    const id = await pollStream(['nobody']);
    for (let i = 0; i < 3; i++) await ssf('POST', '/ssf/verify', { stream_id: id, state: `s${i}` });
    const first = await ssf('POST', `/ssf/poll/${id}`, { maxEvents: 2, returnImmediately: true });
    assert.equal(Object.keys(first.body.sets).length, 2);
    assert.equal(first.body.moreAvailable, true);
    const second = await ssf('POST', `/ssf/poll/${id}`, { ack: Object.keys(first.body.sets), maxEvents: 10, returnImmediately: true });
    assert.equal(Object.keys(second.body.sets).length, 1);
    assert.equal(second.body.moreAvailable, false);
    const lastJti = Object.keys(second.body.sets)[0]!;
    // Not acknowledged: handed out again after poll_redelivery (1 s), never lost.
    assert.deepEqual((await ssf('POST', `/ssf/poll/${id}`, { returnImmediately: true })).body.sets, {});
    const again = await waitFor(async () => {
      const r = await ssf('POST', `/ssf/poll/${id}`, { returnImmediately: true });
      return Object.keys(r.body.sets).length > 0 && r.body;
    }, 5000, 'redelivery');
    assert.deepEqual(Object.keys(again.sets), [lastJti]);
    const ackOnly = await ssf('POST', `/ssf/poll/${id}`, { ack: [lastJti], maxEvents: 0 });
    assert.deepEqual(ackOnly.body, { sets: {} });
    const acked = (await t.admin('GET', `/ssf/events?stream_id=${id}&status=acked`)).body.events;
    assert.equal(acked.length, 3);

    // Long poll: no returnImmediately, an event arrives while waiting.
    const started = Date.now();
    const waiting = ssf('POST', `/ssf/poll/${id}`, {});
    await new Promise((r) => setTimeout(r, 300));
    await ssf('POST', '/ssf/verify', { stream_id: id, state: 'late' });
    const long = await waiting;
    assert.equal(Object.keys(long.body.sets).length, 1);
    assert.ok(Date.now() - started >= 250 && Date.now() - started < 2900, 'answered when the event came, before poll_max_wait');
    // setErrs settles a SET as refused by the receiver.
    const errJti = Object.keys(long.body.sets)[0]!;
    await ssf('POST', `/ssf/poll/${id}`, { setErrs: { [errJti]: { err: 'invalid_key', description: 'test' } }, maxEvents: 0 });
    assert.equal((await t.admin('GET', `/ssf/events?stream_id=${id}&status=error`)).body.events[0].last_error, 'invalid_key: test');
    // Empty long poll ends at poll_max_wait.
    const t0 = Date.now();
    assert.deepEqual((await ssf('POST', `/ssf/poll/${id}`, {})).body, { sets: {}, moreAvailable: false });
    assert.ok(Date.now() - t0 >= 2500);
    assert.equal((await ssf('POST', `/ssf/poll/${id}`, {}, rc2)).status, 404);
    await ssf('DELETE', `/ssf/streams?stream_id=${id}`);
  });

  it('CAEP session-revoked, RISC account-disabled/enabled and token-claims-change follow revocations, kills and restrictions, with txn', async () => {
    const id = await pollStream(['kill-agent', 'step-agent'], [
      `${CAEP}session-revoked`, `${CAEP}token-claims-change`, `${RISC}account-disabled`, `${RISC}account-enabled`,
    ]);
    const disable = await t.admin('POST', '/signals', { nhi: 'kill-agent', action: 'disable', reason: 'compromised' });
    assert.equal(disable.body.status, 'applied');
    const step = await t.admin('POST', '/signals', { nhi: 'step-agent', action: 'step_down', reason: 'risk high' });
    await t.admin('POST', '/restrictions/step-agent/lift');
    const kill = (await t.admin('GET', '/kill')).body.kill_switches.find((k: { target: string }) => k.target === 'kill-agent');
    await t.admin('DELETE', `/kill/${kill.id}`);
    const revoke = await t.admin('POST', '/signals', { nhi: 'kill-agent', action: 'revoke_tokens', reason: 'session hijack' });

    // A poll hands out what is queued so far (and holds it until poll_redelivery), so under load
    // the five SETs may come over several polls: collect them by jti.
    const seen = new Map<string, string>();
    const sets = await waitFor(async () => {
      const r = await ssf('POST', `/ssf/poll/${id}`, { returnImmediately: true });
      for (const [jti, set] of Object.entries(r.body.sets as Record<string, string>)) seen.set(jti, set);
      return seen.size >= 5 && [...seen.values()];
    }, 15000, 'five SETs');
    const byType = new Map<string, Record<string, any>[]>();
    for (const s of sets) {
      const p = decode(s).payload as Record<string, any>;
      const type = Object.keys(p.events)[0]!;
      byType.set(type, [...(byType.get(type) ?? []), p]);
    }
    const disabled = byType.get(`${RISC}account-disabled`)![0]!;
    assert.deepEqual(disabled.sub_id, { format: 'opaque', id: 'kill-agent' });
    assert.equal(disabled.txn, disable.body.id, 'txn: the internal signal');
    assert.equal(byType.get(`${RISC}account-enabled`)!.length, 1);
    const claimsChanges = byType.get(`${CAEP}token-claims-change`)!;
    assert.equal(claimsChanges.length, 2);
    const added = claimsChanges.find((p) => p.events[`${CAEP}token-claims-change`].claims.mandate_restriction === 'step_down')!;
    assert.equal(added.txn, step.body.id);
    assert.equal(added.events[`${CAEP}token-claims-change`].claims.mandate_tier, 'read');
    const revoked = byType.get(`${CAEP}session-revoked`)![0]!;
    assert.equal(revoked.txn, revoke.body.id);
    assert.equal(revoked.events[`${CAEP}session-revoked`].initiating_entity, 'policy');
    await ssf('DELETE', `/ssf/streams?stream_id=${id}`);
  });
});
