import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { ReplicatedMap, type SnapshotTicket } from '../../src/core/index.js';
import { AccessTokenVerifier, JwksFetcher } from '../../src/jose/index.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { agentNhi, clientCredentialsToken, testAgent, type TestAgent } from '../helpers/agent.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import { devOutbound } from '../helpers/outbound.js';
import { eventually as waitFor } from '../helpers/wait.js';

/**
 * Reload races (issue 15, item 7): every in-memory enforcement view is "store snapshot + bus
 * deltas", and a periodic reload that read the store before a change was committed must not
 * undo the change that the bus brought while the reload was in flight. Each race is made
 * deterministic by holding the reload's read (the real store's answer, read before the change)
 * until the change's bus message has been applied, then releasing it.
 */

interface Hold {
  /** Resolves when the held call has read the store (before it returns). */
  entered: Promise<void>;
  release(): void;
}

/** The next call of `obj[method]` reads the store, then waits for `release()` before it answers. */
function holdNextRead<T extends object>(obj: T, method: keyof T & string): Hold {
  const real = (obj as Record<string, (...a: unknown[]) => Promise<unknown>>)[method]!;
  let entered!: () => void;
  let release!: () => void;
  const enteredP = new Promise<void>((r) => (entered = r));
  const released = new Promise<void>((r) => (release = r));
  let armed = true;
  (obj as Record<string, unknown>)[method] = async (...args: unknown[]) => {
    const result = await real.apply(obj, args);
    if (armed) {
      armed = false;
      (obj as Record<string, unknown>)[method] = real;
      entered();
      await released;
    }
    return result;
  };
  return { entered: enteredP, release };
}

function riskPolicyFile(): string {
  const file = join(mkdtempSync(join(tmpdir(), 'mandate-reload-races-')), 'risk.cedar');
  writeFileSync(file, '@id("risk-high")\nforbid (principal, action, resource)\n  when { context.risk_score >= 80 };\n');
  return file;
}

const AGENTS = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace'] as const;

describe('reload races: a change the bus brought while a reload was in flight survives the reload', () => {
  let t: TestApp;
  let rec: RecordingUpstream;
  const agents = new Map<string, TestAgent>();

  before(async () => {
    rec = await startRecordingUpstream();
    for (const id of AGENTS) agents.set(id, await testAgent(id));
    t = await startTestApp(undefined, {
      tokens: { profiles: [{ name: 'read', ttl: '10m', binding: 'optional' }, { name: 'write', ttl: '5m', binding: 'optional' }] },
      // Scores come only from this test (no rescoring behind its back).
      governance: { enabled: false },
      policy: { files: [riskPolicyFile()] },
      nhis: AGENTS.map((id) => agentNhi(agents.get(id)!)),
      tools: [{
        id: 'rec', kind: 'http', upstream: rec.url,
        actions: [
          { name: 'list_items', method: 'GET', path: '/items', tier: 'read' },
          { name: 'create_item', method: 'POST', path: '/items', tier: 'write' },
        ],
      }],
      grants: AGENTS.map((id) => ({ nhi: id, tool: 'rec', actions: ['*'] })),
    });
  });
  after(async () => {
    await t.app.close();
    await rec.close();
  });

  const token = async (who: string, scope = 'list_items create_item') =>
    (await clientCredentialsToken(t.app.issuer, agents.get(who)!, `${t.app.issuer}/tools/rec`, scope)).access_token;
  const call = async (tok: string, method = 'GET') => {
    const res = await fetch(`${t.url}/tools/rec/items`, {
      method, headers: { authorization: `Bearer ${tok}`, ...(method === 'POST' ? { 'content-type': 'application/json' } : {}) },
      body: method === 'POST' ? '{"title":"x"}' : undefined,
    });
    return { status: res.status, body: (await res.json().catch(() => undefined)) as Record<string, string> | undefined };
  };

  it('a kill switch engaged while a reload is in flight stays engaged after the reload', async () => {
    const tok = await token('alice');
    assert.equal((await call(tok)).status, 200);
    const revocations = t.app.enforcement.revocations;
    const hold = holdNextRead(t.app.store, 'listKillSwitches');
    const reload = revocations.reload();
    await hold.entered; // the reload has read the store: no kill yet
    const kill = await t.admin('POST', '/kill', { scope: 'nhi', target: 'alice', reason: 'compromised during a reload' });
    assert.equal(kill.status, 201, JSON.stringify(kill.body));
    assert.equal(revocations.killed('alice', 'rec'), 'nhi_killed');
    hold.release();
    await reload;
    assert.equal(revocations.killed('alice', 'rec'), 'nhi_killed', 'the reload\'s older read did not drop the kill');
    const refused = await call(tok);
    assert.notEqual(refused.status, 200);
    assert.match(refused.body?.error_description ?? '', /kill|killed/i);
  });

  it('a kill switch lifted while a reload is in flight does not come back with the reload', async () => {
    const tok = await token('bob');
    const kill = await t.admin('POST', '/kill', { scope: 'nhi', target: 'bob', reason: 'to be lifted' });
    assert.equal(kill.status, 201);
    assert.notEqual((await call(tok)).status, 200);
    const revocations = t.app.enforcement.revocations;
    const hold = holdNextRead(t.app.store, 'listKillSwitches');
    const reload = revocations.reload();
    await hold.entered; // the reload read the kill as active
    const lift = await t.admin('DELETE', `/kill/${kill.body.id as string}`);
    assert.equal(lift.status, 200, JSON.stringify(lift.body));
    assert.equal(revocations.killed('bob', 'rec'), undefined);
    hold.release();
    await reload;
    assert.equal(revocations.killed('bob', 'rec'), undefined, 'the lifted kill did not come back');
    assert.equal((await call(tok)).status, 200);
  });

  it('a token revoked while a reload is in flight stays revoked after the reload', async () => {
    const tok = await token('carol');
    assert.equal((await call(tok)).status, 200);
    const jti = JSON.parse(Buffer.from(tok.split('.')[1]!, 'base64url').toString()).jti as string;
    const hold = holdNextRead(t.app.store, 'listRevocations');
    const reload = t.app.enforcement.revocations.reload({ full: true });
    await hold.entered;
    assert.equal((await t.admin('POST', '/revocations', { jti, reason: 'revoked during a reload' })).status, 201);
    hold.release();
    await reload;
    const refused = await call(tok);
    assert.equal(refused.status, 401);
    assert.match(refused.body?.error_description ?? '', /revoked/);
  });

  it('a restriction (step_down) raised while a reload is in flight stays in force after the reload', async () => {
    const tok = await token('dave');
    assert.equal((await call(tok, 'POST')).status, 200);
    const restrictions = t.app.signals.restrictions;
    const hold = holdNextRead(t.app.store, 'listRestrictions');
    const reload = restrictions.reload();
    await hold.entered;
    const sig = await t.admin('POST', '/signals', { nhi: 'dave', action: 'step_down', reason: 'risk-level-change HIGH' });
    assert.equal(sig.status, 201, JSON.stringify(sig.body));
    await waitFor(() => restrictions.restrictionOf('dave'), 'the restriction.added message');
    hold.release();
    await reload;
    assert.equal(restrictions.restrictionOf('dave')?.kind, 'step_down', 'the reload\'s older read did not drop the restriction');
    const refused = await call(tok, 'POST');
    assert.equal(refused.status, 403);
    assert.equal(refused.body?.error, 'insufficient_scope');
  });

  it('a restriction lifted while a reload is in flight does not come back with the reload', async () => {
    const tok = await token('grace');
    const restrictions = t.app.signals.restrictions;
    assert.equal((await t.admin('POST', '/signals', { nhi: 'grace', action: 'step_down', reason: 'risk-level-change HIGH' })).status, 201);
    await waitFor(() => restrictions.restrictionOf('grace'), 'the restriction.added message');
    const hold = holdNextRead(t.app.store, 'listRestrictions');
    const reload = restrictions.reload();
    await hold.entered; // the reload read the restriction as active
    assert.equal((await t.admin('POST', '/restrictions/grace/lift', {})).status, 200);
    await waitFor(() => restrictions.restrictionOf('grace') === undefined, 'the restriction.lifted message');
    hold.release();
    await reload;
    assert.equal(restrictions.restrictionOf('grace'), undefined, 'the lifted restriction did not come back');
    assert.equal((await call(tok, 'POST')).status, 200);
  });

  it('a risk score raised while a reload is in flight is kept after the reload', async () => {
    const view = t.app.riskView!;
    const tok = await token('erin');
    assert.equal((await call(tok)).status, 200);
    // The reload read no score for erin; governance stores and publishes 95 meanwhile.
    const hold = holdNextRead(t.app.store, 'listRiskScores');
    const reload = view.reload();
    await hold.entered;
    const at = Date.now();
    await t.app.store.putRiskScores([{ nhiId: 'erin', score: 95, computedAt: at }]);
    await t.app.bus.publish('risk.changed', { nhi: 'erin', score: 95, previous: null, computed_at: at });
    await waitFor(() => view.scoreOf('erin') === 95, 'the risk.changed message');
    hold.release();
    await reload;
    assert.equal(view.scoreOf('erin'), 95, 'the reload\'s older read did not drop the score');
    const refused = await call(tok);
    assert.equal(refused.status, 403);
  });

  it('an NHI disabled while the proxy reads it is not cached as active', async () => {
    const tok = await token('frank');
    const disabled = new Promise<void>((resolve) => {
      void t.app.bus.subscribe('inventory.>', (m) => {
        const d = m.data as { nhi?: string; type?: string };
        if (d.nhi === 'frank' && d.type === 'nhi.disabled') resolve();
      }, { name: 'test-reload-races' });
    });
    // The proxy's first call for frank reads the NHI (active) and waits there.
    const hold = holdNextRead(t.app.store, 'getNhi');
    const first = call(tok);
    await hold.entered;
    const r = await t.admin('POST', '/nhis/frank/disable', { reason: 'compromised' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    // Subscribed after the proxy: when this subscriber has the message, the proxy has applied it.
    await disabled;
    hold.release();
    await first; // it began before the change: what it read is its own
    const refused = await call(tok);
    assert.equal(refused.status, 401, 'the read that raced the disable was not kept');
    assert.match(refused.body?.error_description ?? '', /disabled/);
  });
});

describe('reload races: a key retired at once while a JWKS refetch is in flight stays refused', () => {
  it('the refetch that read the old JWKS does not bring the retired key back; the next one drops it', async () => {
    const issuer = 'https://mandate.reload-races.test';
    const mk = async (kid: string) => {
      const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
      return { kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' } as JWK };
    };
    const retired = await mk('k-retired');
    const kept = await mk('k-kept');
    const other = await mk('k-other');
    let published: JWK[] = [retired.jwk, kept.jwk];
    let holdNext = false;
    let heldAnswer: (() => void) | undefined;
    let fetches = 0;
    const server = createServer((_req, res) => {
      fetches++;
      // What the JWKS was when the request arrived (the read), answered now or when released.
      const body = JSON.stringify({ keys: published });
      const answer = () => res.writeHead(200, { 'content-type': 'application/jwk-set+json' }).end(body);
      if (holdNext) {
        holdNext = false;
        heldAnswer = answer;
      } else {
        answer();
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    try {
      const uri = `http://127.0.0.1:${(server.address() as AddressInfo).port}/oauth/jwks`;
      const fetcher = new JwksFetcher({ outbound: devOutbound(), refetchCooldownMs: 0 });
      const verifier = new AccessTokenVerifier({ issuer: () => issuer, clock: { now: () => Date.now() }, remoteJwks: (refresh) => fetcher.jwks(uri, refresh) });
      const sign = (k: { kid: string; privateKey: CryptoKey }) => new SignJWT({ sub: 'a', aud: `${issuer}/tools/rec`, jti: `j-${k.kid}` })
        .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: k.kid }).setIssuer(issuer).setIssuedAt().setExpirationTime('5m').sign(k.privateKey);
      const byRetired = await sign(retired);
      const byKept = await sign(kept);
      assert.equal((await verifier.verify(byRetired)).sub, 'a');

      // A token with a kid the verifier does not know makes it fetch the JWKS again; that fetch is
      // held after the server read the JWKS (still with the key about to be retired).
      holdNext = true;
      const unknown = verifier.verify(await sign(other)).then(() => 'verified', (e: { error?: string }) => e.error);
      await waitFor(() => heldAnswer, 'the held JWKS fetch');
      // The operator retires the key at once: the server's JWKS loses it, the bus tells the verifier.
      published = [kept.jwk];
      const refetched = verifier.retireKey('k-retired');
      heldAnswer!(); // the old JWKS arrives after the retirement
      assert.equal(await unknown, 'invalid_token');
      await assert.rejects(verifier.verify(byRetired), (e: { error?: string }) => e.error === 'invalid_token', 'the older JWKS did not bring the retired key back');
      await refetched;
      assert.ok(fetches >= 3, 'the retirement fetched the JWKS again');
      await assert.rejects(verifier.verify(byRetired), (e: { error?: string }) => e.error === 'invalid_token');
      assert.equal((await verifier.verify(byKept)).sub, 'a', 'the other key still verifies');
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});

describe('a key retired at once: no header form gets around the refusal', () => {
  it('a token the retired key signed without a kid (or with another key\'s kid) is refused while the key is still in the verifier\'s JWKS copy', async () => {
    const issuer = 'https://mandate.reload-races.test';
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    const jwks = { keys: [{ ...(await exportJWK(publicKey)), kid: 'k-leaked', alg: 'ES256', use: 'sig' }] as Record<string, unknown>[] };
    let retired = false;
    // An instance that heard of the retirement (the revocation) but whose JWKS copy still lists the key.
    const verifier = new AccessTokenVerifier({ issuer: () => issuer, clock: { now: () => Date.now() }, jwks: () => jwks, retiredKey: (kid) => retired && kid === 'k-leaked' });
    const sign = (header: Record<string, unknown>) => new SignJWT({ sub: 'a', aud: `${issuer}/tools/rec`, jti: `j-${Object.keys(header).join()}` })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', ...header }).setIssuer(issuer).setIssuedAt().setExpirationTime('5m').sign(privateKey);
    const withKid = await sign({ kid: 'k-leaked' });
    const withoutKid = await sign({});
    assert.equal((await verifier.verify(withKid)).sub, 'a');
    assert.equal((await verifier.verify(withoutKid)).sub, 'a');
    retired = true;
    for (const tok of [withKid, withoutKid, await sign({}), await sign({ kid: 'k-leaked' })]) {
      await assert.rejects(verifier.verify(tok), (e: { error?: string; message?: string }) => e.error === 'invalid_token' && /retired/.test(e.message ?? ''));
    }
  });
});

/**
 * The replicated view (core/replicated-view.ts) against an oracle: a history of changes (a value
 * or a removal per key, versions in commit order) is committed to a "store" one by one; each
 * change's delta is delivered after its commit; snapshots begin, read the committed prefix at
 * some later point, and are installed later still, overlapping each other and the deltas.
 * Whatever the interleaving, the view ends as applying every change in version order would.
 */
describe('ReplicatedMap: any interleaving of snapshots and deltas converges to the newest change per key (fast-check)', () => {
  type Change = { key: number; remove: boolean; version: number };
  type Step =
    | { t: number; kind: 'commit'; i: number } | { t: number; kind: 'deliver'; i: number }
    | { t: number; kind: 'begin'; s: number } | { t: number; kind: 'read'; s: number } | { t: number; kind: 'install'; s: number };
  const ORDER = { commit: 0, deliver: 1, begin: 2, read: 3, install: 4 } as const;

  const historyArb = (inOrder: boolean) => fc.record({
    changes: fc.array(fc.record({ key: fc.integer({ min: 0, max: 3 }), remove: fc.boolean(), commitAt: fc.integer({ min: 0, max: 100 }), delay: fc.integer({ min: 0, max: 40 }) }), { minLength: 1, maxLength: 25 }),
    snapshots: fc.array(fc.record({ beginAt: fc.integer({ min: 0, max: 140 }), readDelay: fc.integer({ min: 0, max: 30 }), installDelay: fc.integer({ min: 0, max: 30 }) }), { maxLength: 6 }),
  }).map(({ changes, snapshots }) => {
    const commits = changes.map((c) => c.commitAt).sort((a, b) => a - b);
    const history: Change[] = changes.map((c, i) => ({ key: c.key, remove: c.remove, version: i + 1 }));
    let last = 0;
    const deliverAt = changes.map((c, i) => {
      const at = commits[i]! + c.delay;
      // One stream delivers in publish order; retried publishes may not (inOrder false).
      last = inOrder ? Math.max(last, at) : at;
      return inOrder ? last : at;
    });
    const steps: Step[] = [];
    history.forEach((_, i) => {
      steps.push({ t: commits[i]!, kind: 'commit', i }, { t: deliverAt[i]!, kind: 'deliver', i });
    });
    snapshots.forEach((s, i) => {
      steps.push({ t: s.beginAt, kind: 'begin', s: i }, { t: s.beginAt + s.readDelay, kind: 'read', s: i }, { t: s.beginAt + s.readDelay + s.installDelay, kind: 'install', s: i });
    });
    // Ties: a commit before its delivery, a begin before its read before its install.
    steps.sort((a, b) => a.t - b.t || ORDER[a.kind] - ORDER[b.kind] || ('i' in a && 'i' in b ? a.i - b.i : 0));
    return { history, steps };
  });

  const run = (history: Change[], steps: Step[], finalSnapshot: boolean) => {
    const view = new ReplicatedMap<number, number>({ version: (v) => v });
    const store = new Map<number, number>();
    const tickets = new Map<number, SnapshotTicket>();
    const reads = new Map<number, Array<[number, number]>>();
    const commit = (c: Change) => (c.remove ? store.delete(c.key) : store.set(c.key, c.version));
    const deliver = (c: Change) => (c.remove ? view.remove(c.key, c.version) : view.apply(c.key, c.version));
    for (const st of steps) {
      if (st.kind === 'commit') commit(history[st.i]!);
      else if (st.kind === 'deliver') deliver(history[st.i]!);
      else if (st.kind === 'begin') tickets.set(st.s, view.begin());
      else if (st.kind === 'read') reads.set(st.s, [...store]);
      else view.install(tickets.get(st.s)!, reads.get(st.s)!);
    }
    if (finalSnapshot) {
      const ticket = view.begin();
      view.install(ticket, [...store]);
    }
    // The oracle: every change in version order.
    const oracle = new Map<number, number>();
    for (const c of [...history].sort((a, b) => a.version - b.version)) (c.remove ? oracle.delete(c.key) : oracle.set(c.key, c.version));
    assert.deepEqual(new Map([...view.entries()].sort((a, b) => a[0] - b[0])), new Map([...oracle].sort((a, b) => a[0] - b[0])));
  };

  it('deltas in commit order (one stream), snapshots anywhere: the view equals the oracle', () => {
    fc.assert(fc.property(historyArb(true), ({ history, steps }) => run(history, steps, false)), { numRuns: 2000 });
  });

  it('deltas in any order (publishes retried), then one reload: the view equals the oracle', () => {
    fc.assert(fc.property(historyArb(false), ({ history, steps }) => run(history, steps, true)), { numRuns: 2000 });
  });

  it('the rule main had (a reload replaces the state) fails the first property', () => {
    // The naive view, for contrast: the snapshot replaces everything. fast-check finds the lost kill.
    const naive = (history: Change[], steps: Step[]) => {
      const view = new Map<number, number>();
      const store = new Map<number, number>();
      const reads = new Map<number, Array<[number, number]>>();
      for (const st of steps) {
        if (st.kind === 'commit') { const c = history[st.i]!; if (c.remove) store.delete(c.key); else store.set(c.key, c.version); }
        else if (st.kind === 'deliver') { const c = history[st.i]!; if (c.remove) view.delete(c.key); else view.set(c.key, c.version); }
        else if (st.kind === 'read') reads.set(st.s, [...store]);
        else if (st.kind === 'install') { view.clear(); for (const [k, v] of reads.get(st.s)!) view.set(k, v); }
      }
      const oracle = new Map<number, number>();
      for (const c of history) (c.remove ? oracle.delete(c.key) : oracle.set(c.key, c.version));
      return [...view].sort().join() === [...oracle].sort().join();
    };
    const found = fc.check(fc.property(historyArb(true), ({ history, steps }) => naive(history, steps)), { numRuns: 2000 });
    assert.equal(found.failed, true, 'the naive rule loses changes');
  });
});
