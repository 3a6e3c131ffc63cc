import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPair, SignJWT } from 'jose';
import { BACKENDS, startTestApp, type TestApp } from '../helpers/app.js';
import { CAEP, RISC, startTestTransmitter, waitFor, type TestTransmitter } from './helpers.js';

const AUD = 'https://mandate.example.com/ssf';
const PUSH_AUTH = 'Bearer push-credential-0123456789';
const nhi = (id: string) => ({ id, class: 'agent' as const, owner: 'o@example.com', system: 's', tier: 'write' as const });

describe('SSF receiver (RFC 8935 push, RFC 8936 poll, RFC 8417 validation)', () => {
  let t: TestApp;
  let tx: TestTransmitter;
  let polled: TestTransmitter;

  async function push(set: string, opts: { name?: string; auth?: string | null; type?: string } = {}) {
    const res = await fetch(`${t.url}/ssf/receivers/${opts.name ?? 'idp'}/events`, {
      method: 'POST',
      headers: { 'content-type': opts.type ?? 'application/secevent+jwt', ...(opts.auth === null ? {} : { authorization: opts.auth ?? PUSH_AUTH }) },
      body: set,
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined, headers: res.headers };
  }

  const sessionRevoked = (id = 'deploy-agent', extra: Record<string, unknown> = {}) => ({
    aud: AUD, sub_id: { format: 'opaque', id }, events: { [`${CAEP}session-revoked`]: { event_timestamp: Math.floor(Date.now() / 1000) } }, ...extra,
  });

  before(async () => {
    tx = await startTestTransmitter();
    polled = await startTestTransmitter();
    t = await startTestApp(undefined, {
      nhis: [nhi('deploy-agent'), nhi('mail-agent'), nhi('risky-agent'), nhi('burned-agent'), nhi('poll-agent')],
      signals: {
        receivers: [
          {
            name: 'idp', issuer: tx.issuer, jwks_uri: tx.jwksUri, audience: AUD, delivery: 'push', authorization: 'env:SSF_PUSH_AUTH',
            algorithms: ['ES256'], subjects: [{ email: 'mail-bot@example.com', nhi: 'mail-agent' }],
          },
          { name: 'idp-poll', issuer: polled.issuer, jwks: { keys: [polled.publicJwk as Record<string, unknown>] }, audience: AUD, delivery: 'poll', poll_url: polled.pollUrl, poll_interval: '100ms', authorization: 'env:SSF_POLL_AUTH' },
        ],
      },
    }, { SSF_PUSH_AUTH: PUSH_AUTH, SSF_POLL_AUTH: 'Bearer poll-credential' });
  });
  after(async () => {
    await t.app.close();
    await tx.close();
    await polled.close();
  });

  it('CAEP session-revoked (RFC 8935 push, 202) revokes the NHI\'s earlier tokens: broker.revocations.check says so', async () => {
    const issuedBefore = Date.now() - 1000;
    const facts = { jti: 'earlier-token', nhiId: 'deploy-agent', toolId: 'tickets', issuedAt: issuedBefore };
    assert.equal(t.app.enforcement.revocations.check(facts), undefined);
    const r = await push(await tx.sign(sessionRevoked('deploy-agent', { txn: 'upstream-txn-1' })));
    assert.equal(r.status, 202);
    assert.equal(r.body, undefined);
    // No body, said by Content-Length (not an empty chunked body), and not to be cached.
    assert.equal(r.headers.get('content-length'), '0');
    assert.equal(r.headers.get('transfer-encoding'), null);
    assert.equal(r.headers.get('cache-control'), 'no-store');
    assert.equal(t.app.enforcement.revocations.check(facts), 'nhi_revoked');
    const sig = (await t.admin('GET', '/signals?nhi=deploy-agent')).body.signals[0];
    assert.equal(sig.action, 'revoke_tokens');
    assert.equal(sig.reason, 'caep.session_revoked');
    assert.equal(sig.source, 'ssf:idp');
    assert.equal(sig.txn, 'upstream-txn-1');
    assert.equal(sig.status, 'applied');
    assert.ok(sig.applied_at >= sig.received_at, 'time to revoke is on record');
    const metrics = await (await fetch(`${t.url}/metrics`)).text();
    assert.match(metrics, /mandate_signal_apply_seconds_count\{action="revoke_tokens"\} [1-9]/);
  });

  it('subjects: email through the configured mapping; an unknown subject is accepted and recorded as unmapped', async () => {
    const creds = await push(await tx.sign({ aud: AUD, sub_id: { format: 'email', email: 'mail-bot@example.com' }, events: { [`${CAEP}credential-change`]: { credential_type: 'x509', change_type: 'revoke' } } }));
    assert.equal(creds.status, 202);
    assert.equal((await t.admin('GET', '/signals?nhi=mail-agent')).body.signals[0].action, 'revoke_tokens');
    const unknown = await push(await tx.sign(sessionRevoked('no-such-nhi')));
    assert.equal(unknown.status, 202);
    const rec = (await t.admin('GET', '/signals?limit=5')).body.signals.find((s: { data: { subject?: { id?: string } } }) => s.data.subject?.id === 'no-such-nhi');
    assert.equal(rec.status, 'unmapped');
    assert.equal(rec.applied_at, null);
  });

  it('default mapping: risk-level-change HIGH → step_down, RISC credential-compromise → disable (kill switch)', async () => {
    assert.equal((await push(await tx.sign({ aud: AUD, sub_id: { format: 'opaque', id: 'risky-agent' }, events: { [`${CAEP}risk-level-change`]: { current_level: 'HIGH', principal: 'USER', risk_reason: 'x' } } }))).status, 202);
    assert.deepEqual(t.app.signals.restrictions.restrictionOf('risky-agent')?.kind, 'step_down');
    assert.equal((await push(await tx.sign({ aud: AUD, sub_id: { format: 'opaque', id: 'burned-agent' }, events: { [`${RISC}credential-compromise`]: { credential_type: 'password' } } }))).status, 202);
    assert.equal(t.app.enforcement.revocations.killed('burned-agent', undefined), 'nhi_killed');
  });

  describe('RFC 8935 §2.3 error responses', () => {
    const refused = async (set: string | Promise<string>, err: string, status = 400, opts: Parameters<typeof push>[1] = {}) => {
      const r = await push(await set, opts);
      assert.equal(r.status, status, JSON.stringify(r.body));
      assert.equal(r.body.err, err);
      assert.equal(typeof r.body.description, 'string');
    };

    it('bad signature → authentication_failed', async () => {
      const { privateKey } = await generateKeyPair('ES256');
      await refused(tx.sign(sessionRevoked(), { key: privateKey }), 'authentication_failed');
    });
    it('unknown key id → invalid_key; an algorithm that is not pinned → invalid_key', async () => {
      await refused(tx.sign(sessionRevoked(), { header: { kid: 'not-published' } }), 'invalid_key');
      const { privateKey } = await generateKeyPair('RS256');
      const rs = await new SignJWT({ iss: tx.issuer, iat: Math.floor(Date.now() / 1000), jti: 'rs', ...sessionRevoked() })
        .setProtectedHeader({ alg: 'RS256', typ: 'secevent+jwt' }).sign(privateKey);
      await refused(rs, 'invalid_key');
    });
    it('wrong aud → invalid_audience', async () => refused(tx.sign({ ...sessionRevoked(), aud: 'https://someone-else' }), 'invalid_audience'));
    it('wrong iss → invalid_issuer', async () => refused(tx.sign({ ...sessionRevoked(), iss: 'https://evil.example.com' }), 'invalid_issuer'));
    it('replayed jti → invalid_request (and the first is applied once)', async () => {
      const set = await tx.sign(sessionRevoked('deploy-agent', { jti: 'once-only' }));
      assert.equal((await push(set)).status, 202);
      await refused(set, 'invalid_request');
      const sigs = (await t.admin('GET', '/signals?nhi=deploy-agent&limit=100')).body.signals.filter((x: { data: { set_jti?: string } }) => x.data.set_jti === 'once-only');
      assert.equal(sigs.length, 1);
    });
    it('wrong typ (RFC 8417 §2.3) → invalid_request', async () => {
      await refused(tx.sign(sessionRevoked(), { header: { typ: 'JWT' } }), 'invalid_request');
      await refused(tx.sign(sessionRevoked(), { header: { typ: undefined } }), 'invalid_request');
    });
    it('unknown event type → invalid_request', async () => {
      await refused(tx.sign({ aud: AUD, sub_id: { format: 'opaque', id: 'deploy-agent' }, events: { 'https://example.com/event/nope': {} } }), 'invalid_request');
    });
    it('malformed sub_id (RFC 9493) → invalid_request', async () => {
      await refused(tx.sign({ ...sessionRevoked(), sub_id: { format: 'email' } }), 'invalid_request');
      await refused(tx.sign({ ...sessionRevoked(), sub_id: { format: 'carrier-pigeon', id: 'x' } }), 'invalid_request');
      await refused(tx.sign({ ...sessionRevoked(), sub_id: undefined }), 'invalid_request');
    });
    it('old iat, missing events, wrong content type, oversized SET → invalid_request', async () => {
      await refused(tx.sign({ ...sessionRevoked(), iat: Math.floor(Date.now() / 1000) - 3600 }), 'invalid_request');
      await refused(tx.sign({ aud: AUD, sub_id: { format: 'opaque', id: 'x' } }), 'invalid_request');
      await refused(tx.sign(sessionRevoked()), 'invalid_request', 400, { type: 'application/jwt' });
      await refused('a'.repeat(40_000), 'invalid_request');
      await refused('not.a.jws', 'invalid_request');
    });
    it('missing or wrong push credential → 401 authentication_failed', async () => {
      await refused(tx.sign(sessionRevoked()), 'authentication_failed', 401, { auth: null });
      await refused(tx.sign(sessionRevoked()), 'authentication_failed', 401, { auth: 'Bearer wrong' });
    });
    it('stream paused or disabled → access_denied', async () => {
      for (const status of ['paused', 'disabled']) {
        assert.equal((await t.admin('POST', '/ssf/receivers/idp/status', { status })).status, 200);
        await refused(tx.sign(sessionRevoked()), 'access_denied', 403);
      }
      await t.admin('POST', '/ssf/receivers/idp/status', { status: 'enabled' });
      assert.equal((await push(await tx.sign(sessionRevoked()))).status, 202);
      const list = (await t.admin('GET', '/ssf/receivers')).body.receivers;
      assert.deepEqual(list.map((r: { name: string; status: string }) => [r.name, r.status]), [['idp', 'enabled'], ['idp-poll', 'enabled']]);
    });
  });

  it('RFC 8936 poll: the poller fetches with its credential, applies, acknowledges what it processed and reports setErrs', async () => {
    const good = await polled.sign({ aud: AUD, jti: 'poll-good', sub_id: { format: 'opaque', id: 'poll-agent' }, events: { [`${RISC}account-disabled`]: {} } });
    const bad = await polled.sign({ aud: 'https://wrong', jti: 'poll-bad', sub_id: { format: 'opaque', id: 'poll-agent' }, events: { [`${RISC}account-disabled`]: {} } });
    polled.queue('poll-good', good);
    polled.queue('poll-bad', bad);
    await waitFor(() => polled.acked.includes('poll-good') && polled.setErrs['poll-bad'], 10_000, 'ack and setErrs');
    assert.equal(polled.setErrs['poll-bad']!.err, 'invalid_audience');
    assert.equal(t.app.enforcement.revocations.killed('poll-agent', undefined), 'nhi_killed');
    assert.equal(polled.pollRequests[0]!.authorization, 'Bearer poll-credential');
    assert.equal(polled.pollRequests[0]!.body.returnImmediately, true);
  });
});

describe('signals on PostgreSQL + NATS: a received SET is enforced and re-transmitted', () => {
  it('CAEP session-revoked in → revocation → CAEP session-revoked out (poll), txn carried', async () => {
    const tx = await startTestTransmitter();
    const t = await startTestApp(BACKENDS[1], {
      nhis: [nhi('pg-agent')],
      signals: { receivers: [{ name: 'idp', issuer: tx.issuer, jwks_uri: tx.jwksUri, audience: AUD, delivery: 'push' }] },
    });
    try {
      // The stream is created with an admin credential; its receiver polls with the stream's own credential.
      let rc = t.token;
      const call = async (path: string, body: unknown) => {
        const res = await fetch(`${t.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${rc}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
        return (await res.json()) as Record<string, any>;
      };
      const stream = await call('/ssf/streams', { delivery: { method: 'urn:ietf:rfc:8936' } });
      rc = stream.stream_credential as string;
      const issuedAt = Date.now() - 1000;
      const set = await tx.sign({ aud: AUD, txn: 'pg-txn', sub_id: { format: 'opaque', id: 'pg-agent' }, events: { [`${CAEP}session-revoked`]: {} } });
      const res = await fetch(`${t.url}/ssf/receivers/idp/events`, { method: 'POST', headers: { 'content-type': 'application/secevent+jwt' }, body: set });
      assert.equal(res.status, 202);
      assert.equal(t.app.enforcement.revocations.check({ jti: 'j', nhiId: 'pg-agent', toolId: 't', issuedAt }), 'nhi_revoked');
      const polled = await call(`/ssf/poll/${stream.stream_id}`, { maxEvents: 5 });
      const out = Object.values(polled.sets as Record<string, string>).map((s) => JSON.parse(Buffer.from(s.split('.')[1]!, 'base64url').toString()));
      assert.equal(out.length, 1);
      assert.equal(out[0].txn, 'pg-txn');
      assert.deepEqual(Object.keys(out[0].events), [`${CAEP}session-revoked`]);
    } finally {
      await t.app.close();
      await tx.close();
    }
  });
});
