import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPair } from 'jose';
import { BACKENDS, startTestApp, type TestApp } from '../helpers/app.js';
import { CAEP, RISC, startTestTransmitter, type TestTransmitter } from './helpers.js';

/**
 * SET ingest is group-committed (src/signals/receiver.ts, SetIngest): the SETs verified while a
 * commit runs are recorded together, in one transaction with their replay records. These tests
 * check what batching must not change, on SQLite + memory bus and on PostgreSQL + NATS.
 */
const AUD = 'https://mandate.example.com/ssf';
const AGENTS = 40;
const nhi = (id: string) => ({ id, class: 'agent' as const, owner: 'o@example.com', system: 's', tier: 'write' as const });

for (const backend of BACKENDS) {
  describe(`SET ingest group commit (${backend.store} + ${backend.bus})`, () => {
    let t: TestApp;
    let tx: TestTransmitter;

    const push = async (set: string) => {
      const res = await fetch(`${t.url}/ssf/receivers/idp/events`, { method: 'POST', headers: { 'content-type': 'application/secevent+jwt' }, body: set });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : undefined };
    };
    const revoked = (id: string, extra: Record<string, unknown> = {}) => ({
      aud: AUD, sub_id: { format: 'opaque', id }, events: { [`${CAEP}session-revoked`]: {} }, ...extra,
    });
    /** Signals recorded for SETs with these jtis: jti → how many. */
    const recorded = async (jtis: readonly string[]) => {
      const all = await t.app.store.listSignals({ limit: 10_000 });
      const counts = new Map(jtis.map((j) => [j, 0]));
      for (const s of all) {
        const j = s.data.set_jti as string | undefined;
        if (j !== undefined && counts.has(j)) counts.set(j, counts.get(j)! + 1);
      }
      return counts;
    };

    before(async () => {
      tx = await startTestTransmitter();
      t = await startTestApp(backend, {
        nhis: Array.from({ length: AGENTS }, (_, i) => nhi(`ingest-agent-${i}`)),
        signals: { receivers: [{ name: 'idp', issuer: tx.issuer, jwks_uri: tx.jwksUri, audience: AUD, delivery: 'push', algorithms: ['ES256'] }] },
      });
      // The first SET fetches the transmitter's JWKS.
      assert.equal((await push(await tx.sign(revoked('ingest-agent-0')))).status, 202);
    });
    after(async () => {
      await t.app.close();
      await tx.close();
    });

    it('many concurrent pushes: every one answered 202 only once on record, each recorded and enforced exactly once', async () => {
      const n = 200;
      const jtis = Array.from({ length: n }, (_, i) => `burst-${backend.store}-${i}`);
      const sets = await Promise.all(jtis.map((jti, i) => tx.sign(revoked(`ingest-agent-${i % AGENTS}`, { jti }))));
      const answers = await Promise.all(sets.map(push));
      assert.deepEqual(answers.map((a) => a.status), sets.map(() => 202));
      // A 202 means on record: read right after the last answer, with nothing awaited in between.
      const counts = await recorded(jtis);
      assert.deepEqual([...counts.values()].filter((c) => c !== 1), [], 'each SET recorded exactly once');
      const sigs = (await t.app.store.listSignals({ limit: 10_000 })).filter((s) => jtis.includes(s.data.set_jti as string));
      assert.ok(sigs.every((s) => s.status === 'applied' && s.appliedAt !== null));
      // Enforced in this instance and in the store: every agent's earlier tokens are revoked.
      const revs = await t.app.store.listRevocations(Date.now());
      for (let i = 0; i < AGENTS; i++) {
        assert.equal(t.app.enforcement.revocations.check({ jti: 'old', nhiId: `ingest-agent-${i}`, toolId: 'x', issuedAt: Date.now() - 60_000 }), 'nhi_revoked');
        assert.ok(revs.some((r) => r.kind === 'nhi' && r.target === `ingest-agent-${i}` && sigs.some((s) => s.id === r.signalId)));
      }
    });

    it('a replayed jti (concurrent copies and a later one): one copy is accepted, every other refused as invalid_request, applied once', async () => {
      const jti = `dup-${backend.store}`;
      const set = await tx.sign(revoked('ingest-agent-1', { jti }));
      const answers = await Promise.all(Array.from({ length: 6 }, () => push(set)));
      assert.deepEqual(answers.map((a) => a.status).sort(), [202, 400, 400, 400, 400, 400]);
      assert.ok(answers.filter((a) => a.status === 400).every((a) => a.body.err === 'invalid_request'));
      const later = await push(set);
      assert.equal(later.status, 400);
      assert.equal(later.body.err, 'invalid_request');
      assert.equal((await recorded([jti])).get(jti), 1);
      const revs = await t.app.store.listRevocations(Date.now());
      const sig = (await t.app.store.listSignals({ limit: 10_000 })).find((s) => s.data.set_jti === jti)!;
      assert.equal(revs.filter((r) => r.signalId === sig.id).length, 1, 'one revocation for the one signal');
    });

    it('a burst mixing revocations, kill switches, unmapped subjects and a replay: each SET applied once, one audit record per signal', async () => {
      const tag = `mix2-${backend.store}`;
      const replayed = await tx.sign(revoked('ingest-agent-5', { jti: `${tag}-replayed` }));
      assert.equal((await push(replayed)).status, 202);
      const revokes = await Promise.all(Array.from({ length: 20 }, (_, i) => tx.sign(revoked(`ingest-agent-${i % AGENTS}`, { jti: `${tag}-rev-${i}` }))));
      const kills = await Promise.all([30, 31, 32].map((i) => tx.sign({
        aud: AUD, jti: `${tag}-kill-${i}`, sub_id: { format: 'opaque', id: `ingest-agent-${i}` }, events: { [`${RISC}credential-compromise`]: {} },
      })));
      const unmapped = await Promise.all([0, 1, 2].map((i) => tx.sign(revoked(`nobody-${i}`, { jti: `${tag}-unmapped-${i}` }))));
      const all = [...revokes.slice(0, 8), ...kills, replayed, ...unmapped, ...revokes.slice(8)];
      const answers = await Promise.all(all.map(push));
      all.forEach((set, i) => assert.equal(answers[i]!.status, set === replayed ? 400 : 202));
      for (const i of [30, 31, 32]) assert.equal(t.app.enforcement.revocations.killed(`ingest-agent-${i}`, undefined), 'nhi_killed');
      const sigs = (await t.app.store.listSignals({ limit: 10_000 })).filter((x) => String(x.data.set_jti).startsWith(tag));
      assert.equal(sigs.length, 1 + 20 + 3 + 3, 'one signal per SET, the replayed one once');
      assert.deepEqual(sigs.filter((x) => x.status === 'unmapped').length, 3);
      assert.deepEqual(sigs.filter((x) => x.status === 'applied').length, 24);
      await t.app.audit.flush();
      const audited = new Map<string, string[]>();
      for (const type of ['signal.applied', 'signal.raised', 'signal.failed']) {
        for (const r of (await t.admin('GET', `/audit?type=${type}&limit=1000`)).body.records as Array<{ type: string; data: { signal_id: string } }>) {
          audited.set(r.data.signal_id, [...(audited.get(r.data.signal_id) ?? []), r.type]);
        }
      }
      for (const x of sigs) assert.deepEqual(audited.get(x.id), [x.status === 'unmapped' ? 'signal.raised' : 'signal.applied'], x.id);
    });

    it('a stream paused by another instance (in the store) refuses SETs: at once on PostgreSQL (checked by the statement), within 1 s on SQLite', async () => {
      const stream = (await t.app.store.getSsfStream('rcv_idp'))!;
      await t.app.store.updateSsfStream({ ...stream, status: 'paused', updatedAt: Date.now() });
      if (backend.store !== 'postgres') await new Promise((r) => setTimeout(r, 1100));
      const jti = `paused-${backend.store}`;
      const answer = await push(await tx.sign(revoked('ingest-agent-6', { jti })));
      assert.equal(answer.status, 403);
      assert.equal(answer.body.err, 'access_denied');
      assert.equal((await recorded([jti])).get(jti), 0);
      assert.equal((await t.admin('POST', '/ssf/receivers/idp/status', { status: 'enabled' })).status, 200);
      assert.equal((await push(await tx.sign(revoked('ingest-agent-6', { jti })))).status, 202, 'the refused SET left no replay record');
    });

    it('a bad SET in a batch fails alone with its RFC 8935 code; the others of the batch are recorded', async () => {
      const { privateKey } = await generateKeyPair('ES256');
      const good = Array.from({ length: 30 }, (_, i) => `mixed-${backend.store}-${i}`);
      const sets = await Promise.all(good.map((jti, i) => tx.sign(revoked(`ingest-agent-${i % AGENTS}`, { jti }))));
      const badSig = await tx.sign(revoked('ingest-agent-2', { jti: `badsig-${backend.store}` }), { key: privateKey });
      const badAud = await tx.sign({ ...revoked('ingest-agent-3', { jti: `badaud-${backend.store}` }), aud: 'https://someone-else' });
      const badSub = await tx.sign({ ...revoked('ingest-agent-4', { jti: `badsub-${backend.store}` }), sub_id: { format: 'email' } });
      const all = [...sets.slice(0, 10), badSig, ...sets.slice(10, 20), badAud, badSub, ...sets.slice(20)];
      const answers = await Promise.all(all.map(push));
      const byBody = new Map(all.map((s, i) => [s, answers[i]!]));
      assert.equal(byBody.get(badSig)!.status, 400);
      assert.equal(byBody.get(badSig)!.body.err, 'authentication_failed');
      assert.equal(byBody.get(badAud)!.body.err, 'invalid_audience');
      assert.equal(byBody.get(badSub)!.body.err, 'invalid_request');
      assert.deepEqual(sets.map((s) => byBody.get(s)!.status), sets.map(() => 202));
      const counts = await recorded([...good, `badsig-${backend.store}`, `badaud-${backend.store}`, `badsub-${backend.store}`]);
      assert.deepEqual(good.map((j) => counts.get(j)), good.map(() => 1));
      assert.equal(counts.get(`badsig-${backend.store}`), 0);
      assert.equal(counts.get(`badaud-${backend.store}`), 0);
      assert.equal(counts.get(`badsub-${backend.store}`), 0);
    });

    it('while a commit runs, the SETs that arrive wait and go together in the next one: no second small commit beside it', async () => {
      // The store write of a batch (one statement on PostgreSQL, a transaction on SQLite), slowed
      // down so that the burst arrives while the first commit is in flight; concurrency observed.
      const store = t.app.store as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
      const method = backend.store === 'postgres' ? 'recordSetsOnce' : 'transaction';
      const original = store[method]!;
      let running = 0;
      let most = 0;
      let commits = 0;
      store[method] = async (...args: unknown[]) => {
        commits++;
        most = Math.max(most, ++running);
        try {
          await new Promise((r) => setTimeout(r, 60));
          return await original.apply(t.app.store, args);
        } finally {
          running--;
        }
      };
      try {
        const jtis = Array.from({ length: 30 }, (_, i) => `wait-${backend.store}-${i}`);
        const sets = await Promise.all(jtis.map((jti, i) => tx.sign(revoked(`ingest-agent-${i % AGENTS}`, { jti }))));
        const first = push(sets[0]!);
        await new Promise((r) => setTimeout(r, 20)); // the first commit is in flight
        const answers = await Promise.all([first, ...sets.slice(1).map(push)]);
        assert.deepEqual(answers.map((a) => a.status), sets.map(() => 202));
        assert.equal(most, 1, 'never two commits at once for a queue shorter than minBatchBesideCommit');
        assert.ok(commits <= 4, `30 SETs in ${commits} commits`);
        assert.deepEqual([...(await recorded(jtis)).values()], jtis.map(() => 1));
      } finally {
        store[method] = original;
      }
    });
  });
}
