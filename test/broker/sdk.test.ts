import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { exportJWK, generateKeyPair, decodeJwt, type JWK } from 'jose';
import { MandateClient, ApprovalRequiredError, waitForApproval, BrokerError } from '../../src/client/index.js';
import { startTestApp, type TestApp } from '../helpers/app.js';

/** The agent SDK against the real broker: private_key_jwt + DPoP, the cache, elevation. */
describe('mandate/client against the real broker', () => {
  let t: TestApp;
  let privateJwk: JWK;

  before(async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    privateJwk = { ...(await exportJWK(privateKey)), kid: 'k1', alg: 'ES256' };
    const pub = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
    t = await startTestApp(undefined, {
      nhis: [{ id: 'sdk-agent', class: 'agent', owner: 'o@example.com', system: 's', tier: 'write', credentials: [{ type: 'private_key_jwt', jwks: { keys: [pub] } }] }],
      tools: [{ id: 'tickets', kind: 'http', upstream: 'http://127.0.0.1:9', actions: [
        { name: 'list_tickets', method: 'GET', path: '/tickets', tier: 'read' },
        { name: 'delete_ticket', method: 'DELETE', path: '/tickets/{id}', tier: 'destructive' },
      ] }],
      grants: [{ nhi: 'sdk-agent', tool: 'tickets', actions: ['list_tickets', 'delete_ticket'] }],
    });
  });
  after(() => t.app.close());

  it('gets a DPoP-bound token for one tool and serves the second request from its cache', async () => {
    const client = new MandateClient({ issuer: t.app.issuer, clientId: 'sdk-agent', auth: { type: 'private_key_jwt', privateJwk } });
    const a = await client.getToken('tickets', ['list_tickets']);
    assert.equal(a.tokenType, 'DPoP');
    const claims = decodeJwt(a.accessToken);
    assert.equal(claims.sub, 'sdk-agent');
    assert.deepEqual(claims.cnf, { jkt: await (await client.dpopKey()).thumbprint() });
    const b = await client.getToken('tickets', ['list_tickets']);
    assert.equal(b.accessToken, a.accessToken);
    const issued = await t.admin('GET', '/tokens?nhi=sdk-agent');
    assert.equal(issued.body.tokens.length, 1, 'one issuance for two calls');
  });

  it('surfaces approval_required, waits for the approval and redeems it', async () => {
    const client = new MandateClient({ issuer: t.app.issuer, clientId: 'sdk-agent', auth: { type: 'private_key_jwt', privateJwk } });
    const digest = client.argsDigest({ id: 42 });
    const err = await client.getToken('tickets', ['delete_ticket'], { argsDigest: digest }).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof ApprovalRequiredError);
    const pending = await t.admin('GET', '/approvals');
    assert.equal(pending.body.approvals[0].id, err.approvalId);
    assert.equal(pending.body.approvals[0].args_digest, digest);
    setTimeout(() => void t.admin('POST', `/approvals/${err.approvalId}/approve`, {}), 100);
    const tok = await waitForApproval(client, 'tickets', ['delete_ticket'], { approvalId: err.approvalId, argsDigest: digest, intervalMs: 50, timeoutMs: 5000 });
    assert.equal(decodeJwt(tok.accessToken).mandate_args_digest, digest);
  });

  it('reports a kill switch as a typed broker error', async () => {
    const client = new MandateClient({ issuer: t.app.issuer, clientId: 'sdk-agent', auth: { type: 'private_key_jwt', privateJwk } });
    const kill = await t.admin('POST', '/kill', { scope: 'global', reason: 'drill' });
    try {
      const err = await client.getToken('tickets', ['list_tickets']).then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof BrokerError);
      assert.equal(err.error, 'access_denied');
    } finally {
      await t.admin('DELETE', `/kill/${kill.body.id}`);
    }
  });
});
