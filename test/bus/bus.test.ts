import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Bus, BusMessage } from '../../src/core/ports/bus.js';
import { MemoryBus, NatsBus } from '../../src/bus/index.js';
import { createLogger } from '../../src/core/logger.js';
import { collector, deleteStream, uniqueNames, waitFor } from './helpers.js';

/**
 * One suite, two drivers: whatever the in-process bus promises, JetStream must keep too.
 * NATS runs against the shared server with a stream and prefix of its own, deleted after.
 */
const NATS_URL = process.env.MANDATE_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';
const fastRetry = { initialMs: 20, maxMs: 100 };

interface Impl {
  name: 'memory' | 'nats';
  open(): Promise<{ bus: Bus; cleanup(): Promise<void> }>;
}

const impls: Impl[] = [
  {
    name: 'memory',
    async open() {
      const bus = new MemoryBus({ retry: fastRetry });
      await bus.start();
      return { bus, cleanup: () => bus.close() };
    },
  },
  {
    name: 'nats',
    async open() {
      const { stream, prefix } = uniqueNames();
      const bus = new NatsBus({ servers: [NATS_URL], stream, subjectPrefix: prefix, retry: fastRetry, connectTimeoutMs: 5_000, publishTimeoutMs: 10_000 });
      await bus.start();
      return {
        bus,
        async cleanup() {
          await bus.close();
          await deleteStream(NATS_URL, stream);
        },
      };
    },
  },
];

const T = { timeout: 20_000 };

for (const impl of impls) {
  describe(`bus on ${impl.name}`, () => {
    let bus: Bus;
    let cleanup: () => Promise<void>;

    before(async () => {
      ({ bus, cleanup } = await impl.open());
    });
    after(async () => {
      await cleanup?.();
    });

    it('reports its driver and a healthy connection', T, () => {
      assert.equal(bus.driver, impl.name);
      const h = bus.health();
      assert.equal(h.connected, true);
      assert.ok(Date.now() - h.lastContactAt < 10_000, 'recent contact');
    });

    it('delivers to a subscriber in publish order, with seq, relative subject, id and time', T, async () => {
      const { msgs, handler } = collector();
      const sub = await bus.subscribe('order.>', handler, { name: 'order-test' });
      const seqs: number[] = [];
      const t0 = Date.now();
      for (let i = 0; i < 20; i++) seqs.push(await bus.publish(`order.item.${i % 3}`, { i }, { id: `order-${i}` }));
      await waitFor(() => msgs.length >= 20, 10_000, '20 messages');
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(msgs.length, 20, 'no duplicates without failures');
      assert.deepEqual(msgs.map((m) => (m.data as { i: number }).i), [...Array(20).keys()]);
      assert.deepEqual(msgs.map((m) => m.seq), seqs);
      for (let k = 1; k < seqs.length; k++) assert.ok(seqs[k]! > seqs[k - 1]!, 'seq strictly increases');
      const m0 = msgs[0]!;
      assert.equal(m0.subject, 'order.item.0', 'prefix stripped');
      assert.equal(m0.id, 'order-0');
      assert.ok(m0.publishedAt >= t0 - 1000 && m0.publishedAt <= Date.now() + 1000, 'publishedAt is epoch ms');
      assert.equal(sub.lastSeq, seqs[19]);
      await sub.close();
    });

    it('matches NATS wildcards: * is one token, > is the rest', T, async () => {
      const star = collector();
      const tail = collector();
      const mid = collector();
      const exact = collector();
      const subs = [
        await bus.subscribe('wild.*.created', star.handler),
        await bus.subscribe('wild.>', tail.handler),
        await bus.subscribe('wild.a.*', mid.handler),
        await bus.subscribe('wild.a.created', exact.handler),
      ];
      const subjects = ['wild.a.created', 'wild.b.created', 'wild.a.deleted', 'wild.a.b.created', 'other.a.created', 'wild'];
      for (const s of subjects) await bus.publish(s, { s });
      await waitFor(() => tail.msgs.length >= 4 && star.msgs.length >= 2 && mid.msgs.length >= 2 && exact.msgs.length >= 1, 10_000, 'wildcard deliveries');
      await new Promise((r) => setTimeout(r, 100));
      const subj = (c: { msgs: BusMessage[] }): string[] => c.msgs.map((m) => m.subject);
      assert.deepEqual(subj(star), ['wild.a.created', 'wild.b.created']);
      assert.deepEqual(subj(tail), ['wild.a.created', 'wild.b.created', 'wild.a.deleted', 'wild.a.b.created']);
      assert.deepEqual(subj(mid), ['wild.a.created', 'wild.a.deleted']);
      assert.deepEqual(subj(exact), ['wild.a.created']);
      await Promise.all(subs.map((s) => s.close()));
    });

    it('rejects malformed subjects and filters', T, async () => {
      await assert.rejects(bus.publish('bad.*', {}), { code: 'ERR_BUS_SUBJECT' });
      await assert.rejects(bus.publish('bad..x', {}), { code: 'ERR_BUS_SUBJECT' });
      await assert.rejects(bus.publish('', {}), { code: 'ERR_BUS_SUBJECT' });
      await assert.rejects(bus.subscribe('a.>.b', () => {}), { code: 'ERR_BUS_SUBJECT' });
      await assert.rejects(bus.subscribe('a.b*', () => {}), { code: 'ERR_BUS_SUBJECT' });
    });

    it('replays from fromSeq (inclusive), and defaults to new messages only', T, async () => {
      const seqs: number[] = [];
      for (let i = 0; i < 5; i++) {
        seqs.push(await bus.publish('replay.x', { i }));
        await bus.publish('replay-noise.x', { i }); // interleaved, not matching the filter
      }
      const replay = collector();
      const fresh = collector();
      const s1 = await bus.subscribe('replay.*', replay.handler, { fromSeq: seqs[2]! });
      const s2 = await bus.subscribe('replay.*', fresh.handler);
      const late = await bus.publish('replay.x', { i: 5 });
      await waitFor(() => replay.msgs.length >= 4 && fresh.msgs.length >= 1, 10_000, 'replayed and fresh');
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(replay.msgs.map((m) => (m.data as { i: number }).i), [2, 3, 4, 5]);
      assert.deepEqual(replay.msgs.map((m) => m.seq), [seqs[2], seqs[3], seqs[4], late]);
      assert.deepEqual(fresh.msgs.map((m) => m.seq), [late], 'no history without fromSeq');
      await Promise.all([s1.close(), s2.close()]);
    });

    it('offers a message again after the handler throws, and later messages wait (at-least-once, ordered)', T, async () => {
      const calls: string[] = [];
      let failuresLeft = 2;
      const sub = await bus.subscribe('retry.>', (m) => {
        const i = (m.data as { i: number }).i;
        if (i === 2 && failuresLeft > 0) {
          failuresLeft--;
          calls.push(`${i}!`);
          throw new Error('transient handler failure');
        }
        calls.push(String(i));
      });
      for (let i = 1; i <= 4; i++) await bus.publish('retry.x', { i });
      await waitFor(() => calls.length >= 6, 10_000, 'all calls');
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(calls, ['1', '2!', '2!', '2', '3', '4']);
      await sub.close();
    });

    it('awaits an async handler before the next message', T, async () => {
      const events: string[] = [];
      const sub = await bus.subscribe('async.>', async (m) => {
        const i = (m.data as { i: number }).i;
        events.push(`start ${i}`);
        await new Promise((r) => setTimeout(r, 20));
        events.push(`end ${i}`);
      });
      for (let i = 0; i < 3; i++) await bus.publish('async.x', { i });
      await waitFor(() => events.length >= 6, 10_000, 'async handler runs');
      assert.deepEqual(events, ['start 0', 'end 0', 'start 1', 'end 1', 'start 2', 'end 2']);
      await sub.close();
    });

    it('stores a publish id once: a retried publish returns the original seq', T, async () => {
      const { msgs, handler } = collector();
      const sub = await bus.subscribe('dedupe.>', handler);
      const before = await bus.lastSeq();
      const a = await bus.publish('dedupe.x', { v: 1 }, { id: 'dedupe-fixed-id' });
      const b = await bus.publish('dedupe.x', { v: 2 }, { id: 'dedupe-fixed-id' });
      const c = await bus.publish('dedupe.x', { v: 3 });
      assert.equal(a, b);
      assert.equal(c, a + 1);
      assert.equal(await bus.lastSeq(), before + 2);
      await waitFor(() => msgs.length >= 2, 10_000, 'two messages');
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(msgs.map((m) => m.data), [{ v: 1 }, { v: 3 }]);
      assert.equal(msgs[0]!.id, 'dedupe-fixed-id');
      assert.match(msgs[1]!.id, /^[0-9a-f-]{36}$/, 'a UUID is generated when no id is given');
      await sub.close();
    });

    it('publishMany: each item reaches every subscriber as its own message, in order, with its id; a failing item is offered again alone', T, async () => {
      const a = collector();
      const calls: string[] = [];
      let failuresLeft = 1;
      const subA = await bus.subscribe('many.>', a.handler);
      const subB = await bus.subscribe('many.x', (m) => {
        const i = (m.data as { i: number }).i;
        if (i === 1 && failuresLeft-- > 0) {
          calls.push(`${i}!`);
          throw new Error('transient handler failure');
        }
        calls.push(String(i));
      });
      const before = await bus.lastSeq();
      await bus.publishMany('many.x', [0, 1, 2].map((i) => ({ data: { i }, id: `many-${i}` })));
      await bus.publish('many.x', { i: 3 }, { id: 'many-3' });
      await bus.publishMany('many.x', []);
      await waitFor(() => a.msgs.length >= 4 && calls.length >= 5, 10_000, 'four messages at both subscribers');
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(a.msgs.map((m) => [m.subject, m.id, m.data]), [['many.x', 'many-0', { i: 0 }], ['many.x', 'many-1', { i: 1 }], ['many.x', 'many-2', { i: 2 }], ['many.x', 'many-3', { i: 3 }]]);
      // Item 1 failed once: it alone was offered again (0 was not repeated), and 2 waited for it.
      assert.deepEqual(calls, ['0', '1!', '1', '2', '3']);
      const seqs = a.msgs.map((m) => m.seq);
      for (let k = 1; k < seqs.length; k++) assert.ok(seqs[k]! >= seqs[k - 1]!, 'seqs never go back');
      assert.ok(seqs[3]! > seqs[2]!, 'a later publish has a later seq');
      assert.ok(seqs[0]! > before);
      assert.ok(a.msgs.every((m) => Number.isFinite(m.publishedAt) && m.publishedAt > 0));
      assert.equal(subA.lastSeq, seqs[3]);
      // The same items again (a retry): stored once, nothing more delivered.
      await bus.publishMany('many.x', [0, 1, 2].map((i) => ({ data: { i }, id: `many-${i}` })));
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(a.msgs.length, 4);
      await subA.close();
      await subB.close();
    });

    it('lastSeq is the newest sequence', T, async () => {
      const before = await bus.lastSeq();
      const s1 = await bus.publish('last.x', 1);
      const s2 = await bus.publish('last.y', 2);
      const s3 = await bus.publish('last.z', null);
      assert.deepEqual([s1, s2, s3], [before + 1, before + 2, before + 3]);
      assert.equal(await bus.lastSeq(), s3);
    });

    it('gives every subscriber everything, independently', T, async () => {
      const a = collector();
      const b = collector();
      const slowSeen: number[] = [];
      const sa = await bus.subscribe('fan.>', a.handler);
      const sb = await bus.subscribe('fan.>', b.handler);
      // A slow subscriber does not hold the others back, and still gets everything.
      const sc = await bus.subscribe('fan.>', async (m) => {
        await new Promise((r) => setTimeout(r, 5));
        slowSeen.push((m.data as { i: number }).i);
      });
      const N = 50;
      for (let i = 0; i < N; i++) await bus.publish(`fan.${i % 2 ? 'odd' : 'even'}`, { i });
      await waitFor(() => a.msgs.length >= N && b.msgs.length >= N, 10_000, 'both fast subscribers');
      await waitFor(() => slowSeen.length >= N, 10_000, 'slow subscriber');
      const expected = [...Array(N).keys()];
      assert.deepEqual(a.msgs.map((m) => (m.data as { i: number }).i), expected);
      assert.deepEqual(b.msgs.map((m) => (m.data as { i: number }).i), expected);
      assert.deepEqual(slowSeen, expected);
      await Promise.all([sa.close(), sb.close(), sc.close()]);
    });

    it('stops delivering after the subscription is closed', T, async () => {
      const { msgs, handler } = collector();
      const sub = await bus.subscribe('closed.>', handler);
      const s1 = await bus.publish('closed.x', 1);
      await waitFor(() => msgs.length >= 1, 10_000, 'first message');
      await sub.close();
      assert.equal(sub.lastSeq, s1);
      await bus.publish('closed.x', 2);
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(msgs.length, 1);
    });

    it('hands each handler its own copy of the data (JSON on every driver)', T, async () => {
      const seen: unknown[] = [];
      const s1 = await bus.subscribe('copy.>', (m) => {
        (m.data as { n: number }).n = 99;
      });
      const s2 = await bus.subscribe('copy.>', (m) => void seen.push(m.data));
      const payload = { n: 1, when: new Date(0), gone: undefined };
      await bus.publish('copy.x', payload);
      payload.n = 2;
      await waitFor(() => seen.length >= 1, 10_000, 'copy');
      assert.deepEqual(seen[0], { n: 1, when: '1970-01-01T00:00:00.000Z' });
      await Promise.all([s1.close(), s2.close()]);
    });
  });
}

describe('bus on memory: bounded log', () => {
  it('drops the oldest messages beyond its cap and forgets their ids', async () => {
    const bus = new MemoryBus({ maxMessages: 3 });
    for (let i = 1; i <= 5; i++) await bus.publish('cap.x', i, { id: `id-${i}` });
    const { msgs, handler } = collector();
    const sub = await bus.subscribe('cap.>', handler, { fromSeq: 1 });
    await waitFor(() => msgs.length >= 3, 2_000, 'retained messages');
    assert.deepEqual(msgs.map((m) => m.seq), [3, 4, 5]);
    assert.equal(await bus.publish('cap.x', 'again', { id: 'id-5' }), 5, 'retained id still deduped');
    assert.equal(await bus.publish('cap.x', 'again', { id: 'id-1' }), 6, 'evicted id is new again');
    await sub.close();
    await bus.close();
    await assert.rejects(bus.publish('cap.x', 1), { code: 'ERR_UNAVAILABLE' });
    assert.equal(bus.health().connected, false);
  });

  it('a subscriber that falls behind by more than the cap skips what the log evicted, says so, and goes on in order', async () => {
    const lines: Array<{ msg?: string; missedFrom?: number; resumeAt?: number }> = [];
    const logger = createLogger({ level: 'warn', destination: { write: (l: string) => void lines.push(JSON.parse(l)) } });
    const bus = new MemoryBus({ maxMessages: 3, logger });
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const seen: number[] = [];
    const sub = await bus.subscribe('lag.>', async (m) => {
      seen.push(m.seq);
      if (m.seq === 1) await gate; // stuck on the first message while 7 more arrive
    });
    for (let i = 1; i <= 8; i++) await bus.publish('lag.x', i);
    await waitFor(() => seen.length >= 1, 2_000, 'first message');
    release();
    await waitFor(() => seen.length >= 4, 2_000, 'the retained messages');
    await new Promise((r) => setTimeout(r, 50));
    // The one in the handler completes; 2..5 fell out of the log; 6..8 are still there.
    assert.deepEqual(seen, [1, 6, 7, 8]);
    assert.equal(sub.lastSeq, 8);
    const warn = lines.find((l) => l.msg?.includes('no longer holds'));
    assert.ok(warn, 'a warning names the gap');
    assert.equal(warn.missedFrom, 2);
    assert.equal(warn.resumeAt, 6);
    await bus.close();
  });

  it('routes by filter while subscriptions come and go (exact and wildcard, many filters that do not match)', async () => {
    const bus = new MemoryBus();
    const noise = await Promise.all(Array.from({ length: 20 }, (_, i) => bus.subscribe(`other${i}.>`, () => {
      throw new Error('must not be called');
    })));
    const exact = collector();
    const wild = collector();
    const sExact = await bus.subscribe('route.a', exact.handler);
    await bus.publish('route.a', 1);
    await bus.publish('route.b', 2);
    const sWild = await bus.subscribe('route.*', wild.handler);
    await bus.publish('route.a', 3);
    await waitFor(() => exact.msgs.length >= 2 && wild.msgs.length >= 1, 2_000, 'first deliveries');
    await sExact.close();
    await bus.publish('route.a', 4);
    await bus.publish('route.b', 5);
    await waitFor(() => wild.msgs.length >= 3, 2_000, 'wildcard deliveries');
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(exact.msgs.map((m) => m.data), [1, 3]);
    assert.deepEqual(wild.msgs.map((m) => m.data), [3, 4, 5]);
    for (const n of noise) assert.equal(n.lastSeq, 0);
    await bus.close();
  });
});
