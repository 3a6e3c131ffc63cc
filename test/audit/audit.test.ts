import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../src/core/clock.js';
import { UnavailableError } from '../../src/core/errors.js';
import {
  AuditLog, GENESIS_HASH, REDACTED, canonicalJson, canonicalRecord, chainHash, isSensitiveKey, scrubAuditData, scrubAuditJson, verifyAuditChain,
  type AuditRecord, type AuditStore, type AuditLogOptions,
} from '../../src/audit/index.js';
import type { Store } from '../../src/store/index.js';
import { STORE_DIALECTS } from '../helpers/stores.js';

const T0 = Date.UTC(2026, 0, 1);

/** Reads the whole log, oldest first. */
async function readAll(store: AuditStore): Promise<AuditRecord[]> {
  const out: AuditRecord[] = [];
  for (let from = 1; ; ) {
    const page = await store.readAudit(from, 1000);
    out.push(...page);
    if (page.length < 1000) return out;
    from = page[page.length - 1]!.seq + 1;
  }
}

/** A port wrapper that counts appendChained calls and can fail on demand. */
function wrap(store: AuditStore, behaviour: { failBefore?: number; failAfterCommit?: number } = {}) {
  const calls: number[] = [];
  let failBefore = behaviour.failBefore ?? 0;
  let failAfterCommit = behaviour.failAfterCommit ?? 0;
  const wrapped: AuditStore = {
    appendChained: async (events, chain) => {
      calls.push(events.length);
      if (failBefore > 0) {
        failBefore--;
        throw new Error('connection refused (simulated)');
      }
      const recs = await store.appendChained(events, chain);
      if (failAfterCommit > 0) {
        failAfterCommit--;
        throw new Error('connection reset after COMMIT (simulated)');
      }
      return recs;
    },
    readAudit: (from, limit) => store.readAudit(from, limit),
    auditHead: () => store.auditHead(),
    queryAudit: (f) => store.queryAudit(f),
  };
  return { wrapped, calls };
}

describe('audit chain', () => {
  it('serializes canonically, independent of key order', () => {
    const base = { seq: 1, id: 'a', ts: 1, type: 't', actor: null, subject: null, tool: null, decision: null, traceId: null };
    const one = canonicalRecord({ ...base, data: { b: 1, a: { y: 2, x: [{ q: 1, p: 2 }] } } });
    const two = canonicalRecord({ ...base, data: { a: { x: [{ p: 2, q: 1 }], y: 2 }, b: 1 } });
    assert.equal(one, two);
    assert.equal(GENESIS_HASH, '0'.repeat(64));
    const h = chainHash(GENESIS_HASH, { ...base, data: {} });
    assert.match(h, /^[0-9a-f]{64}$/);
    assert.notEqual(chainHash('1'.repeat(64), { ...base, data: {} }), h, 'the previous hash is part of the input');
    assert.notEqual(chainHash(GENESIS_HASH, { ...base, seq: 2, data: {} }), h, 'seq is part of the input');
  });

  it('writes a record\'s canonical form directly, the same text as canonicalJson of its fields', () => {
    const data = { b: [1, { z: null, a: 'é\u2028"' }], a: -1.5e-7, '10': 'ten', '9': 'nine', __proto__x: 1 };
    const recs = [
      { seq: 1, id: 'aud-1', ts: T0, type: 'tool.called', actor: 'nhi-1', subject: 'nhi-1', tool: 't', decision: 'allow', traceId: 'ab', data },
      { seq: 2 ** 40, id: 'a"\\b', ts: 0, type: 'x', actor: null, subject: null, tool: null, decision: null, traceId: null, data: {} },
    ];
    for (const r of recs) {
      const generic = canonicalJson({
        seq: r.seq, id: r.id, ts: r.ts, type: r.type, actor: r.actor, subject: r.subject, tool: r.tool, decision: r.decision, traceId: r.traceId, data: r.data,
      });
      assert.equal(canonicalRecord(r), generic);
      assert.equal(canonicalRecord({ ...r, dataJson: canonicalJson(r.data) }), generic);
    }
  });

  it('serializes scrubbed data once: its JSON is canonical and reads back as the data it returns', () => {
    const parsed = JSON.parse('{"__proto__": {"polluted": true}}') as Record<string, unknown>;
    const sparse = [1, , 3]; // eslint-disable-line no-sparse-arrays
    const inputs: unknown[] = [
      { z: 1, a: { y: [3, { d: 1, c: -0 }], x: 'é' }, '10': 1, '2': 2, u: undefined, n: Number.NaN },
      parsed,
      { sparse, when: new Date(T0), big: 10n, set: new Set(['a']), map: new Map([['k', 1]]) },
      { 'a\u0000z': 1, ab: 2, nested: { 'q\u0000z': 1, qa: 2 } }, // cleaning a key changes its place in the order
      'just a string',
    ];
    for (const input of inputs) {
      const { data, json } = scrubAuditJson(input);
      const back = JSON.parse(json) as Record<string, unknown>;
      assert.equal(json, canonicalJson(back), 'the text is canonical');
      assert.deepStrictEqual(data, back, 'the data is exactly what the text reads back as');
      assert.deepStrictEqual(scrubAuditData(input), data);
    }
    assert.equal(({} as Record<string, unknown>).polluted, undefined, 'a "__proto__" key stays a plain key');
    const big = scrubAuditJson({ blob: 'x'.repeat(200) }, 100);
    assert.deepStrictEqual(big.data, { '[truncated]': true, bytes: 211, keys: ['blob'] });
    assert.equal(big.json, canonicalJson(big.data));
  });

  it('scrubs secrets by key and by value, keeping digests', () => {
    const input = {
      authorization: 'Bearer abc',
      Access_Token: 'at',
      client_secret: 's',
      clientAssertion: 'ca',
      nested: { password: 'p', DPoP: 'proof', list: [{ refresh_token: 'r' }], header: 'DPoP eyJhbGciOiJFUzI1NiJ9' },
      token_sha256: 'digest',
      dpop_jkt: 'thumb',
      token_type: 'access_token',
      note: 'saw eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl in a header',
      when: new Date(T0),
      big: 10n,
      nul: 'a\u0000b',
      plan: 'Basic plan selected',
    };
    const out = scrubAuditData(input);
    assert.deepEqual(out, {
      authorization: REDACTED,
      Access_Token: REDACTED,
      client_secret: REDACTED,
      clientAssertion: REDACTED,
      nested: { password: REDACTED, DPoP: REDACTED, list: [{ refresh_token: REDACTED }], header: REDACTED },
      token_sha256: 'digest',
      dpop_jkt: 'thumb',
      token_type: 'access_token',
      note: `saw ${REDACTED} in a header`,
      when: new Date(T0).toISOString(),
      big: '10',
      nul: 'ab',
      plan: 'Basic plan selected',
    });
    assert.equal(input.authorization, 'Bearer abc', 'the caller\'s object is not modified');
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    assert.deepEqual(scrubAuditData(cyclic), { a: 1, self: '[circular]' });
    assert.ok(isSensitiveKey('x-api-key') && isSensitiveKey('private_key') && !isSensitiveKey('jti') && !isSensitiveKey('token_id'));
  });

  it('scrubs each record by its own keys and values when shapes repeat and interleave (key plans are remembered)', () => {
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 40; i++) {
        const input: Record<string, unknown> = { [`z${i}`]: `v${round}`, token: `t${round}`, qa: round, ['q\u0000z']: i, path: round === 1 ? 'Bearer abcdefgh12345' : '/p' };
        if (i % 3 === 0) input[`secret_${i}`] = 'shh';
        const { data, json } = scrubAuditJson(input);
        const expected: Record<string, unknown> = { path: round === 1 ? REDACTED : '/p', qa: round, qz: i, token: REDACTED, [`z${i}`]: `v${round}` };
        if (i % 3 === 0) expected[`secret_${i}`] = REDACTED;
        assert.deepStrictEqual(data, expected, `round ${round}, shape ${i}`);
        assert.equal(json, canonicalJson(expected), 'canonical order, also after a cleaned key moved');
      }
    }
    // The same keys in another order are the same record.
    assert.equal(scrubAuditJson({ b: 1, a: 'x' }).json, scrubAuditJson({ a: 'x', b: 1 }).json);
    // An Authorization-shaped value: a 4-letter scheme, a space and at least 8 characters.
    assert.deepStrictEqual(scrubAuditData({ v: 'DPoP abcdefgh', w: 'DPoP abcdefg', x: ' Basic abcdefgh ', y: 'Bearer' }), { v: REDACTED, w: 'DPoP abcdefg', x: REDACTED, y: 'Bearer' });
  });

  it('lone UTF-16 surrogates become U+FFFD in keys and values, pairs stay, on every call (the clean-key memo included)', () => {
    for (let i = 0; i < 3; i++) {
      const { data, json } = scrubAuditJson({ ['k\uD800']: 'a\uDC00b', pair: 'x\uD83D\uDE00y', path: '/items/1', ['n\u0000ul']: 'c\u0000d' });
      assert.deepEqual(data, { ['k\uFFFD']: 'a\uFFFDb', nul: 'cd', pair: 'x\uD83D\uDE00y', path: '/items/1' });
      assert.equal(json, canonicalJson(data));
      assert.doesNotMatch(json, /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/);
    }
  });
});

for (const dialect of STORE_DIALECTS) {
  describe(`audit log on ${dialect.name}`, () => {
    const opened: Store[] = [];
    const open = async () => {
      const s = await dialect.open();
      opened.push(s);
      return s;
    };
    after(async () => {
      for (const s of opened) await s.close();
    });
    const log = (store: AuditStore, over: Partial<AuditLogOptions> = {}) => new AuditLog({ store, clock: new ManualClock(T0), ...over });

    it('writes in batches; after flush everything is stored, in order, with an unbroken chain', async () => {
      const store = await open();
      const { wrapped, calls } = wrap(store);
      const written: AuditRecord[] = [];
      const audit = log(wrapped, { maxBatch: 100, onWritten: (r) => written.push(...r) });
      const ids: string[] = [];
      for (let i = 0; i < 1050; i++) {
        ids.push(audit.record({ type: 'token.issued', actor: `nhi-${i % 7}`, subject: null, tool: null, decision: 'allow', traceId: null, data: { i } }));
      }
      assert.ok(audit.stats().queued > 0, 'record() does not write synchronously');
      await audit.flush();
      assert.equal(audit.stats().queued, 0);
      assert.equal(audit.stats().written, 1050);
      assert.ok(calls.every((n) => n <= 100), `batches of at most maxBatch: ${calls.join(',')}`);
      assert.ok(calls.length >= 11);
      const rows = await readAll(store);
      assert.deepEqual(rows.map((r) => r.id), ids, 'stored in record order');
      assert.deepEqual(rows.map((r) => r.seq), ids.map((_, i) => i + 1));
      assert.equal(rows[0]!.prevHash, GENESIS_HASH);
      for (let i = 1; i < rows.length; i++) assert.equal(rows[i]!.prevHash, rows[i - 1]!.hash);
      assert.equal(rows[0]!.ts, T0);
      assert.deepEqual(rows[5]!.data, { i: 5 });
      assert.deepEqual(written.map((r) => r.id), ids, 'onWritten saw every record');
      const v = await verifyAuditChain(store, { pageSize: 128 });
      assert.deepEqual(v, { ok: true, checked: 1050, headSeq: 1050, problems: [] });
      await audit.close();
    });

    it('writes on its own timer without flush()', async () => {
      const store = await open();
      const audit = log(store, { flushIntervalMs: 10 });
      audit.record({ type: 'nhi.updated', data: {} });
      const deadline = Date.now() + 5_000;
      while (audit.stats().written < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      assert.equal(audit.stats().written, 1);
      assert.equal((await store.auditHead()).seq, 1);
      await audit.close();
    });

    it('close() with 1,000 queued events loses none', async () => {
      const store = await open();
      const audit = log(store, { flushIntervalMs: 60_000, maxBatch: 5_000 });
      const ids = new Set<string>();
      for (let i = 0; i < 1000; i++) ids.add(audit.record({ type: 'tool.call_allowed', tool: 'tickets', data: { i } }));
      assert.equal(audit.stats().queued, 1000);
      assert.equal((await store.auditHead()).seq, 0, 'nothing written yet');
      await audit.close();
      assert.equal(audit.stats().queued, 0);
      const rows = await readAll(store);
      assert.equal(rows.length, 1000);
      assert.deepEqual(new Set(rows.map((r) => r.id)), ids);
      assert.equal((await verifyAuditChain(store)).ok, true);
    });

    it('retries a write that fails, losing and duplicating nothing', async () => {
      const store = await open();
      const { wrapped, calls } = wrap(store, { failBefore: 1 });
      const audit = log(wrapped, { flushIntervalMs: 5 });
      const ids = Array.from({ length: 10 }, (_, i) => audit.record({ type: 'token.issued', data: { i } }));
      await audit.flush();
      assert.equal(audit.stats().failedWrites, 1);
      assert.equal(audit.stats().written, 10);
      assert.equal(audit.stats().consecutiveFailures, 0);
      assert.ok(calls.length >= 2);
      assert.deepEqual((await readAll(store)).map((r) => r.id), ids);
      assert.equal((await verifyAuditChain(store)).ok, true);
      await audit.close();
    });

    it('does not write a batch twice when the failure came after the commit', async () => {
      const store = await open();
      const { wrapped } = wrap(store, { failAfterCommit: 1 });
      const audit = log(wrapped);
      audit.record({ type: 'before', data: {} });
      await audit.flush();
      const ids = Array.from({ length: 20 }, (_, i) => audit.record({ type: 'token.issued', data: { i } }));
      await audit.flush();
      const rows = await readAll(store);
      assert.equal(rows.length, 21);
      assert.deepEqual(rows.slice(1).map((r) => r.id), ids);
      assert.equal(audit.stats().written, 21);
      assert.equal(audit.stats().failedWrites, 1);
      assert.equal((await verifyAuditChain(store)).ok, true);
      await audit.close();
    });

    it('flush() gives up after its timeout while the store is down, keeping the events', async () => {
      const store = await open();
      const { wrapped } = wrap(store, { failBefore: 1_000_000 });
      const audit = log(wrapped, { maxRetryDelayMs: 20 });
      audit.record({ type: 'x', data: {} });
      await assert.rejects(audit.flush(200), (err: unknown) => err instanceof UnavailableError && /1 event/.test((err as Error).message));
      assert.equal(audit.stats().queued, 1);
      assert.ok(audit.stats().failedWrites >= 2);
      assert.match(audit.stats().lastError ?? '', /simulated/);
    });

    it('refuses new events (fail closed) when the queue is full', async () => {
      const store = await open();
      const { wrapped } = wrap(store, { failBefore: 1_000_000 });
      const audit = log(wrapped, { maxBatch: 2, maxQueue: 3, flushIntervalMs: 60_000 });
      for (let i = 0; i < 3; i++) audit.record({ type: 'x', data: {} });
      assert.throws(() => audit.record({ type: 'x', data: {} }), UnavailableError);
      assert.equal(audit.stats().rejected, 1);
      assert.equal(audit.stats().queued, 3);
    });

    it('append() resolves once its events are committed, at once rather than after flushIntervalMs', async () => {
      const store = await open();
      const audit = log(store, { flushIntervalMs: 60_000 });
      audit.record({ type: 'queued.before', data: {} });
      const ids = await audit.append([{ type: 'tool.call_started', data: { n: 1 } }, { type: 'tool.call_started', data: { n: 2 } }]);
      const rows = await readAll(store);
      assert.deepEqual(rows.map((r) => r.type), ['queued.before', 'tool.call_started', 'tool.call_started'], 'committed with what was queued before, in order');
      assert.deepEqual(rows.slice(1).map((r) => r.id), ids);
      assert.equal(audit.stats().waiting, 0);
      await audit.close();
    });

    it('concurrent append() calls share commits (group commit)', async () => {
      const store = await open();
      const { wrapped, calls } = wrap(store);
      const audit = log(wrapped, { flushIntervalMs: 60_000 });
      await Promise.all(Array.from({ length: 200 }, (_, i) => audit.append([{ type: 'tool.call_started', data: { i } }])));
      assert.equal((await store.auditHead()).seq, 200);
      assert.ok(calls.length < 200, `${calls.length} commits for 200 appends`);
      assert.equal((await verifyAuditChain(store)).ok, true);
      await audit.close();
    });

    it('append() refuses at once, queueing nothing, while the store is failing or the queue is full', async () => {
      const store = await open();
      const { wrapped } = wrap(store, { failBefore: 1_000_000 });
      const audit = log(wrapped, { maxRetryDelayMs: 20, appendTimeoutMs: 300, maxBatch: 2, maxQueue: 4 });
      // The first waits for its commit, which cannot come: it gives up at its time limit (the event stays queued).
      await assert.rejects(audit.append([{ type: 'x', data: {} }]), (err: unknown) => err instanceof UnavailableError && /did not commit in 300 ms/.test((err as Error).message));
      assert.equal(audit.stats().queued, 1);
      // Now the store is known to fail: refused at once, nothing more queued.
      await assert.rejects(audit.append([{ type: 'y', data: {} }]), (err: unknown) => err instanceof UnavailableError && /cannot write now/.test((err as Error).message));
      assert.equal(audit.stats().queued, 1);
      assert.ok(audit.stats().rejected >= 2);
      // A full queue refuses too.
      const full = log(wrapped, { maxBatch: 2, maxQueue: 3, flushIntervalMs: 60_000 });
      for (let i = 0; i < 3; i++) full.record({ type: 'x', data: {} });
      await assert.rejects(full.append([{ type: 'z', data: {} }]), UnavailableError);
      assert.equal(full.stats().queued, 3);
    });

    it('append() after the store recovers commits again', async () => {
      const store = await open();
      const { wrapped } = wrap(store, { failBefore: 2 });
      const audit = log(wrapped, { maxRetryDelayMs: 20, appendTimeoutMs: 2_000 });
      const ids = await audit.append([{ type: 'after.outage', data: {} }]);
      assert.equal(audit.stats().failedWrites, 2);
      assert.deepEqual((await readAll(store)).map((r) => r.id), ids);
      await audit.close();
    });

    it('stores scrubbed data, never the secret', async () => {
      const store = await open();
      const audit = log(store);
      audit.record({
        type: 'token.issued', actor: 'nhi-1',
        data: { authorization: 'Bearer sekrit-1', token: 'sekrit-2', subject_token: 'sekrit-3', token_sha256: 'ok-digest', dpop: 'sekrit-4' },
      });
      await audit.flush();
      const [row] = await readAll(store);
      assert.deepEqual(row!.data, { authorization: REDACTED, token: REDACTED, subject_token: REDACTED, token_sha256: 'ok-digest', dpop: REDACTED });
      const raw = JSON.stringify(await store.db.selectFrom('audit').selectAll().execute());
      assert.ok(!/sekrit/.test(raw));
      assert.equal((await verifyAuditChain(store)).ok, true);
      await audit.close();
    });

    describe('verification', () => {
      /** A store holding 20 records written by the real writer. */
      const seeded = async (n = 20) => {
        const store = await open();
        const audit = log(store, { maxBatch: 7 });
        for (let i = 1; i <= n; i++) audit.record({ type: 'tool.call_allowed', actor: 'nhi-1', tool: 'tickets', decision: 'allow', data: { i, nested: { b: 2, a: 1 } } });
        await audit.close();
        return store;
      };

      it('passes a clean log, and an empty one', async () => {
        assert.deepEqual(await verifyAuditChain(await open()), { ok: true, checked: 0, headSeq: 0, problems: [] });
        const store = await seeded();
        assert.deepEqual(await verifyAuditChain(store, { pageSize: 3 }), { ok: true, checked: 20, headSeq: 20, problems: [] });
      });

      it('reports one altered row at its seq', async () => {
        const store = await seeded();
        await store.db.updateTable('audit').set({ data: JSON.stringify({ i: 999 }) }).where('seq', '=', 5).execute();
        const v = await verifyAuditChain(store, { pageSize: 4 });
        assert.equal(v.ok, false);
        assert.equal(v.checked, 20);
        assert.deepEqual(v.problems.map((p) => [p.seq, p.kind]), [[5, 'altered']]);
      });

      it('reports one removed row as missing', async () => {
        const store = await seeded();
        await store.db.deleteFrom('audit').where('seq', '=', 7).execute();
        const v = await verifyAuditChain(store);
        assert.equal(v.ok, false);
        assert.equal(v.checked, 19);
        assert.deepEqual(v.problems.map((p) => [p.seq, p.kind]), [[7, 'missing']]);
      });

      it('reports a forged row inserted in place of a real one, even with a self-consistent hash', async () => {
        const store = await seeded();
        const [prev] = await store.readAudit(9, 1);
        await store.db.deleteFrom('audit').where('seq', '=', 10).execute();
        const forged = {
          seq: 10, id: 'aud_forged', ts: T0, type: 'tool.call_allowed', actor: 'attacker', subject: null, tool: 'tickets',
          decision: 'allow', traceId: null, data: { i: 10 },
        };
        const hash = chainHash(prev!.hash, forged);
        await store.db.insertInto('audit').values({
          seq: 10, id: forged.id, ts: forged.ts, type: forged.type, actor: forged.actor, subject: null, tool: forged.tool,
          decision: forged.decision, trace_id: null, data: JSON.stringify(forged.data), prev_hash: prev!.hash, hash,
        }).execute();
        const v = await verifyAuditChain(store);
        assert.equal(v.ok, false);
        assert.deepEqual(v.problems.map((p) => [p.seq, p.kind]), [[10, 'inserted']]);
        assert.match(v.problems[0]!.detail, /aud_forged/);
      });

      it('reports a forged row appended behind the head', async () => {
        const store = await seeded();
        const head = await store.auditHead();
        const forged = { seq: 21, id: 'aud_tail', ts: T0, type: 'x', actor: null, subject: null, tool: null, decision: null, traceId: null, data: {} };
        await store.db.insertInto('audit').values({
          seq: 21, id: forged.id, ts: T0, type: 'x', actor: null, subject: null, tool: null, decision: null, trace_id: null,
          data: '{}', prev_hash: head.hash, hash: chainHash(head.hash, forged),
        }).execute();
        const v = await verifyAuditChain(store);
        assert.deepEqual(v.problems.map((p) => [p.seq, p.kind]), [[20, 'head_mismatch']]);
      });

      it('reports a removed last row as head_mismatch', async () => {
        const store = await seeded();
        await store.db.deleteFrom('audit').where('seq', '=', 20).execute();
        const v = await verifyAuditChain(store);
        assert.equal(v.ok, false);
        assert.equal(v.headSeq, 20);
        assert.deepEqual(v.problems.map((p) => [p.seq, p.kind]), [[20, 'head_mismatch']]);
      });

      it('reports every problem, not just the first', async () => {
        const store = await seeded();
        await store.db.updateTable('audit').set({ actor: 'someone-else' }).where('seq', '=', 3).execute();
        await store.db.deleteFrom('audit').where('seq', 'in', [8, 9]).execute();
        await store.db.updateTable('audit').set({ data: '{}' }).where('seq', '=', 15).execute();
        await store.db.deleteFrom('audit').where('seq', '=', 20).execute();
        const v = await verifyAuditChain(store, { pageSize: 5 });
        assert.deepEqual(v.problems.map((p) => [p.seq, p.kind]), [[3, 'altered'], [8, 'missing'], [15, 'altered'], [20, 'head_mismatch']]);
        assert.match(v.problems[1]!.detail, /8\.\.9/);
      });

      it('has no false alarms while another writer appends', async () => {
        const store = await seeded(200);
        const peer = await dialect.openPeer(store);
        opened.push(peer);
        const writer = log(peer, { maxBatch: 50, flushIntervalMs: 1 });
        const writing = (async () => {
          for (let i = 0; i < 40; i++) {
            for (let j = 0; j < 25; j++) writer.record({ type: 'busy', data: { i, j } });
            await new Promise((r) => setImmediate(r));
          }
          await writer.close();
        })();
        const results = [];
        for (let k = 0; k < 3; k++) results.push(await verifyAuditChain(store, { pageSize: 50 }));
        await writing;
        results.push(await verifyAuditChain(store, { pageSize: 50 }));
        for (const r of results) assert.deepEqual(r.problems, []);
        assert.equal(results[results.length - 1]!.checked, 1200);
      });
    });
  });
}
