import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { main } from '../../src/cli/main.js';
import { EXIT } from '../../src/cli/errors.js';
import { freshPgSchemaUrl, startTestApp, type TestApp } from '../helpers/app.js';
import { ASSERTION_TYPE, agentNhi, clientAssertion, clientCredentialsToken, testAgent, type TestAgent } from '../helpers/agent.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import { adminCall, clusterFixture, newKek, spawnInstance, writeConfig } from '../helpers/cluster.js';
import { LOOPBACK_CIDRS } from '../helpers/outbound.js';
import { eventually as waitFor } from '../helpers/wait.js';

/**
 * `mandate keys retire KID --now` (issue 15, item 7): a compromised signing key leaves the JWKS
 * at once, every token it signed is refused at the broker (introspection) and at every proxy
 * within the revocation bound, and new tokens are signed by another key.
 */

const kidOf = (jwt: string) => (JSON.parse(Buffer.from(jwt.split('.')[0]!, 'base64url').toString()) as { kid: string }).kid;

describe('keys retire --now: all-in-one', () => {
  let t: TestApp;
  let rec: RecordingUpstream;
  let alice: TestAgent;

  before(async () => {
    rec = await startRecordingUpstream();
    alice = await testAgent('alice');
    t = await startTestApp(undefined, {
      tokens: { profiles: [{ name: 'read', ttl: '10m', binding: 'optional' }] },
      nhis: [agentNhi(alice)],
      tools: [{ id: 'rec', kind: 'http', upstream: rec.url, actions: [{ name: 'list_items', method: 'GET', path: '/items', tier: 'read' }] }],
      grants: [{ nhi: 'alice', tool: 'rec', actions: ['*'] }],
    });
  });
  after(async () => {
    await t.app.close();
    await rec.close();
  });

  const token = async () => (await clientCredentialsToken(t.app.issuer, alice, `${t.app.issuer}/tools/rec`, 'list_items')).access_token;
  const call = async (tok: string) => {
    const r = await fetch(`${t.url}/tools/rec/items`, { headers: { authorization: `Bearer ${tok}` } });
    return { status: r.status, body: (await r.json()) as Record<string, unknown> };
  };
  /** RFC 7662 introspection, the agent authenticating with its key (RFC 7523). */
  const introspect = async (tok: string) => {
    const r = await fetch(`${t.app.issuer}/oauth/introspect`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: tok, client_assertion_type: ASSERTION_TYPE, client_assertion: await clientAssertion(alice, t.app.issuer) }),
    });
    assert.equal(r.status, 200);
    return (await r.json()) as { active: boolean };
  };
  const cli = async (argv: string[]) => {
    const out: string[] = [];
    const code = await main(argv, { log: (s) => out.push(s), err: (s) => out.push(s) }, { MANDATE_URL: t.url, MANDATE_TOKEN: t.token });
    return { code, out: out.join('\n') };
  };

  it('refuses every token the key signed at the proxy and at introspection, drops it from the JWKS, signs with another key, audits it', async () => {
    const before = await token();
    const kid = kidOf(before);
    assert.equal((await call(before)).status, 200);
    assert.equal((await introspect(before)).active, true);

    const r = await cli(['keys', 'retire', kid, '--now', '--reason', 'private key leaked']);
    assert.equal(r.code, EXIT.ok, r.out);
    assert.match(r.out, new RegExp(`retired ${kid} now`));

    const refused = await call(before);
    assert.equal(refused.status, 401);
    assert.equal(refused.body.error, 'invalid_token');
    assert.deepEqual(await introspect(before), { active: false });
    const jwks = (await (await fetch(`${t.app.issuer}/oauth/jwks`)).json()) as { keys: { kid: string }[] };
    assert.ok(!jwks.keys.some((k) => k.kid === kid), 'the retired key left the JWKS');
    assert.ok(!((await t.admin('GET', '/keys')).body.keys as { kid: string }[]).some((k) => k.kid === kid));

    const after = await token();
    assert.notEqual(kidOf(after), kid, 'new tokens are signed by another key');
    assert.equal((await call(after)).status, 200);
    assert.equal((await introspect(after)).active, true);

    const audit = await t.admin('GET', '/audit?type=key.retired');
    const record = (audit.body.records as Array<{ subject: string; actor: string; data: Record<string, unknown> }>).find((x) => x.subject === kid);
    assert.ok(record, 'the retirement is audited');
    assert.match(record.actor, /^admin:/);
    assert.equal(record.data.now, true);
    assert.equal(record.data.reason, 'private key leaked');

    // Retired already: no published key has that kid.
    assert.equal((await t.admin('POST', `/keys/${kid}/retire`, { now: true })).status, 404);
    // A reload of the revocations (the path for an instance that missed the bus) keeps it refused.
    await t.app.enforcement.revocations.reload({ full: true });
    assert.equal((await call(before)).status, 401);
  });

  it('without --now the key stops signing but its tokens keep working until they expire', async () => {
    const before = await token();
    const kid = kidOf(before);
    const r = await cli(['keys', 'retire', kid]);
    assert.equal(r.code, EXIT.ok, r.out);
    assert.equal((await call(before)).status, 200);
    const after = await token();
    assert.notEqual(kidOf(after), kid);
    assert.equal((await call(after)).status, 200);
    const jwks = (await (await fetch(`${t.app.issuer}/oauth/jwks`)).json()) as { keys: { kid: string }[] };
    assert.ok(jwks.keys.some((k) => k.kid === kid), 'still published for the tokens it signed');
  });
});

describe('keys retire --now: a broker, a proxy with the KEK and a proxy-only instance with proxy.jwks_uri (separate processes)', { timeout: 180_000 }, () => {
  const fx = clusterFixture();
  const { started } = fx;
  const ISSUER = 'http://mandate.key-retire.test';

  function config(o: { pgUrl: string; stream: string; agent: TestAgent; kek: boolean; jwksUri?: string }) {
    return {
      server: { host: '127.0.0.1', port: 0, public_url: ISSUER },
      store: { driver: 'postgres', postgres_url: o.pgUrl, pool_size: 3 },
      bus: { driver: 'nats', nats_servers: ['nats://127.0.0.1:4222'], stream: `K_${o.stream}`, subject_prefix: `k${o.stream}` },
      ...(o.kek ? { keys: { kek: 'env:CLUSTER_KEK' } } : {}),
      ...(o.jwksUri ? { proxy: { jwks_uri: o.jwksUri } } : {}),
      outbound: { allow_private_cidrs: [...LOOPBACK_CIDRS] },
      log: { level: 'warn' },
      tokens: { profiles: [{ name: 'read', ttl: '10m', binding: 'optional' }] },
      nhis: [agentNhi(o.agent)],
      tools: [{ id: 'rec', kind: 'http', upstream: fx.rec.url, actions: [{ name: 'list_items', method: 'GET', path: '/items', tier: 'read' }] }],
      grants: [{ nhi: o.agent.id, tool: 'rec', actions: ['*'] }],
    };
  }

  it('the retired key\'s tokens are refused at every proxy; tokens of the new key pass', async () => {
    const alice = await testAgent('alice');
    const pgUrl = await freshPgSchemaUrl();
    const stream = randomBytes(4).toString('hex');
    const kek = newKek();
    const broker = await spawnInstance('broker', writeConfig(config({ pgUrl, stream, agent: alice, kek: true })), { CLUSTER_KEK: kek });
    started.push(broker);
    const withKek = await spawnInstance('proxy', writeConfig(config({ pgUrl, stream, agent: alice, kek: true })), { CLUSTER_KEK: kek });
    started.push(withKek);
    const remote = await spawnInstance('proxy', writeConfig(config({ pgUrl, stream, agent: alice, kek: false, jwksUri: `${broker.url}/oauth/jwks` })), {});
    started.push(remote);
    const proxies = [withKek, remote];

    const issue = async () => (await clientCredentialsToken(ISSUER, alice, `${ISSUER}/tools/rec`, 'list_items', undefined, {}, broker.url)).access_token;
    const status = async (url: string, tok: string) => (await fetch(`${url}/tools/rec/items`, { headers: { authorization: `Bearer ${tok}` } })).status;

    const before = await issue();
    const kid = kidOf(before);
    for (const p of proxies) {
      assert.equal(await status(p.url, before), 200, p.role);
      assert.equal(await status(p.url, before), 200, `${p.role}, from its verified-token cache`);
    }

    const r = await adminCall(broker.url, broker.bootstrapToken!, 'POST', `/keys/${kid}/retire`, { now: true, reason: 'leaked' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.notEqual(r.body.signing_kid, kid);

    // Within the revocation bound (the bus: milliseconds here), bounded polling.
    for (const p of proxies) await waitFor(async () => (await status(p.url, before)) === 401, `${p.url} refusing the retired key's token`, 15_000);

    const after = await issue();
    assert.notEqual(kidOf(after), kid);
    for (const p of proxies) await waitFor(async () => (await status(p.url, after)) === 200, `${p.url} accepting the new key's token`, 15_000);
    // And the old token stays refused there.
    for (const p of proxies) assert.equal(await status(p.url, before), 401);
  });
});
