import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { setExpiryProblem } from '../../src/signals/set.js';
import { CAEP, startTestTransmitter, type TestTransmitter } from './helpers.js';

const AUD = 'https://mandate.example.com/ssf';
const PUSH_AUTH = 'Bearer push-credential-exp-0123456789';

/** Issue 15, item 10: a SET whose `exp` has passed is refused at the SSF receiver (RFC 7519 §4.1.4). */
describe('SSF receiver: SET expiry (RFC 7519 §4.1.4)', () => {
  let t: TestApp;
  let tx: TestTransmitter;

  before(async () => {
    tx = await startTestTransmitter();
    t = await startTestApp(undefined, {
      nhis: [{ id: 'exp-agent', class: 'agent', owner: 'o@example.com', system: 's', tier: 'write' }],
      signals: { receivers: [{ name: 'idp', issuer: tx.issuer, jwks_uri: tx.jwksUri, audience: AUD, delivery: 'push', authorization: 'env:SSF_PUSH_AUTH', algorithms: ['ES256'] }] },
    }, { SSF_PUSH_AUTH: PUSH_AUTH });
  });
  after(async () => {
    await t.app.close();
    await tx.close();
  });

  const push = async (set: string) => {
    const res = await fetch(`${t.url}/ssf/receivers/idp/events`, {
      method: 'POST', headers: { 'content-type': 'application/secevent+jwt', authorization: PUSH_AUTH }, body: set,
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };
  const sessionRevoked = (extra: Record<string, unknown>) => ({
    aud: AUD, sub_id: { format: 'opaque', id: 'exp-agent' }, events: { [`${CAEP}session-revoked`]: { event_timestamp: Math.floor(Date.now() / 1000) } }, ...extra,
  });

  it('RFC 7519 §4.1.4: a SET with exp in the past is refused (invalid_request) and changes nothing', async () => {
    const now = Math.floor(Date.now() / 1000);
    const r = await push(await tx.sign(sessionRevoked({ iat: now - 120, exp: now - 90 })));
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.equal(r.body.err, 'invalid_request');
    assert.match(r.body.description, /exp/);
    assert.equal((await t.admin('GET', '/signals?nhi=exp-agent')).body.signals.length, 0, 'no signal recorded');
    assert.equal(t.app.enforcement.revocations.check({ jti: 'x', nhiId: 'exp-agent', toolId: 't', issuedAt: Date.now() - 5000 }), undefined);
  });

  it('RFC 7519 §4.1.4: an exp that is not a NumericDate is refused', async () => {
    const r = await push(await tx.sign(sessionRevoked({ exp: 'tomorrow' })));
    assert.equal(r.status, 400);
    assert.equal(r.body.err, 'invalid_request');
  });

  it('a SET with exp in the future, or none (RFC 8417 §2.2 does not require it), is accepted', async () => {
    const now = Math.floor(Date.now() / 1000);
    assert.equal((await push(await tx.sign(sessionRevoked({ exp: now + 300 })))).status, 202);
    assert.equal((await push(await tx.sign(sessionRevoked({})))).status, 202);
  });

  it('the leeway: exp within the skew is accepted, beyond it refused', () => {
    const now = 1_000_000_000_000;
    assert.equal(setExpiryProblem(undefined, now, 60_000), undefined);
    assert.equal(setExpiryProblem(now / 1000 - 30, now, 60_000), undefined);
    assert.match(setExpiryProblem(now / 1000 - 60, now, 60_000) ?? '', /expired/);
    assert.match(setExpiryProblem(Number.NaN, now, 60_000) ?? '', /NumericDate/);
  });
});
