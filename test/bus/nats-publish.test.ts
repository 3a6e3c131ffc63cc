import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { NatsBus } from '../../src/bus/index.js';
import { collector, deleteStream, uniqueNames, waitFor } from './helpers.js';

/**
 * The NATS bus's JetStream publish: its own ack inbox, one subscription for every publish
 * (src/bus/nats-acks.ts, AckInbox.publish). What the stream answers must reach the caller as the client's
 * request path did: the ack's seq, the stream's error (a permanent one at once), no responders
 * (the stream is recreated and the publish retried), and a timeout per attempt.
 */
const NATS_URL = process.env.MANDATE_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';

async function withJsm<T>(fn: (jsm: Awaited<ReturnType<typeof jetstreamManager>>) => Promise<T>): Promise<T> {
  const nc = await connect({ servers: NATS_URL, timeout: 3_000, maxReconnectAttempts: 0 });
  try {
    return await fn(await jetstreamManager(nc, { timeout: 3_000 }));
  } finally {
    await nc.close();
  }
}

/** A started bus on a fresh stream, closed and its stream deleted after the test. */
async function freshBus(t: TestContext, publishTimeoutMs?: number): Promise<{ bus: NatsBus; stream: string; prefix: string }> {
  const { stream, prefix } = uniqueNames();
  const bus = new NatsBus({ servers: [NATS_URL], stream, subjectPrefix: prefix, connectTimeoutMs: 5_000, ...(publishTimeoutMs ? { publishTimeoutMs } : {}) });
  t.after(async () => {
    await bus.close();
    await deleteStream(NATS_URL, stream);
  });
  await bus.start();
  return { bus, stream, prefix };
}

describe('NATS bus publish acks', () => {
  it('many publishes in flight at once each get their own seq, and each is stored once', { timeout: 30_000 }, async (t) => {
    const { bus } = await freshBus(t);
    const { msgs, handler } = collector();
    const sub = await bus.subscribe('many.>', handler);
    const seqs = await Promise.all(Array.from({ length: 500 }, (_, i) => bus.publish(`many.${i % 7}`, { i }, { id: `m-${i}` })));
    assert.equal(new Set(seqs).size, 500, 'distinct seqs');
    // The same ids again (a retry whose first ack was lost): the stream's dedupe answers with the original seqs.
    const again = await Promise.all(Array.from({ length: 500 }, (_, i) => bus.publish(`many.${i % 7}`, { i }, { id: `m-${i}` })));
    assert.deepEqual(again, seqs);
    await waitFor(() => msgs.length >= 500, 10_000, '500 messages');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(msgs.length, 500);
    assert.deepEqual(msgs.map((m) => (m.data as { i: number }).i).sort((a, b) => a - b), Array.from({ length: 500 }, (_, i) => i));
    for (const m of msgs) assert.equal(m.seq, seqs[(m.data as { i: number }).i]);
    await sub.close();
  });

  it("a stream error in the ack is thrown at once when permanent (the stream's max_msg_size)", { timeout: 30_000 }, async (t) => {
    const { bus, stream } = await freshBus(t, 10_000);
    await withJsm(async (jsm) => {
      const info = await jsm.streams.info(stream);
      await jsm.streams.update(stream, { ...info.config, max_msg_size: 256 });
    });
    assert.ok((await bus.publish('small.x', { v: 1 })) >= 1);
    const started = Date.now();
    await assert.rejects(bus.publish('small.x', { v: 'x'.repeat(1000) }), (err: Error & { status?: number }) => {
      assert.equal(err.name, 'JetStreamApiError');
      assert.equal(err.status, 400);
      return true;
    });
    assert.ok(Date.now() - started < 2_000, 'not retried until the deadline');
  });

  it('no responders (the stream was deleted): the stream is made again and the publish goes through', { timeout: 30_000 }, async (t) => {
    const { bus, stream } = await freshBus(t, 15_000);
    assert.equal(await bus.publish('gone.x', 1), 1);
    await deleteStream(NATS_URL, stream);
    // A fresh stream starts at seq 1 again.
    assert.equal(await bus.publish('gone.x', 2), 1);
    assert.equal(await bus.lastSeq(), 1);
  });

  it('an attempt with no ack times out and is asked again; the deadline ends it with UnavailableError', { timeout: 30_000 }, async (t) => {
    // A stream that does not capture the bus's subjects and a responder that never answers:
    // the publishes reach a subscriber (no "no responders") but no ack ever comes.
    const { stream, prefix } = uniqueNames();
    const bus = new NatsBus({ servers: [NATS_URL], stream, subjectPrefix: prefix, connectTimeoutMs: 5_000 });
    const nc = await connect({ servers: NATS_URL, timeout: 3_000 });
    let heard = 0;
    nc.subscribe(`${prefix}.silent.>`, { callback: () => void heard++ });
    await nc.flush();
    t.after(async () => {
      await bus.close();
      await nc.close();
      await deleteStream(NATS_URL, stream);
    });
    await bus.start();
    await withJsm(async (jsm) => {
      const info = await jsm.streams.info(stream);
      await jsm.streams.update(stream, { ...info.config, subjects: [`${prefix}.other.>`] });
    });
    const started = Date.now();
    // An attempt waits at most 2 s for its ack: the first times out, the second meets the deadline.
    await assert.rejects(bus.publish('silent.x', 1, { timeoutMs: 2_600 }), { code: 'ERR_UNAVAILABLE' });
    const took = Date.now() - started;
    assert.ok(took >= 2_550 && took < 4_500, `gave up after ${took} ms`);
    assert.ok(heard >= 2, `asked again after the attempt timed out (${heard} attempts)`);
  });
});

describe('NATS bus publishMany', () => {
  it('stores the items as one stream entry, split only where max_payload requires, and a subscriber from fromSeq gets every item', { timeout: 30_000 }, async (t) => {
    const { bus } = await freshBus(t);
    const before = await bus.lastSeq();
    await bus.publishMany('pm.small', Array.from({ length: 50 }, (_, i) => ({ data: { i }, id: `small-${i}` })));
    assert.equal(await bus.lastSeq(), before + 1, '50 small items: one entry');
    // Five items of 300 kB against the server's max_payload (1 MB by default): three per entry at most.
    const big = 'x'.repeat(300_000);
    await bus.publishMany('pm.big', Array.from({ length: 5 }, (_, i) => ({ data: { i, big }, id: `big-${i}` })));
    const entries = (await bus.lastSeq()) - before - 1;
    assert.ok(entries >= 2 && entries <= 3, `five 300 kB items in ${entries} entries`);
    const { msgs, handler } = collector();
    const sub = await bus.subscribe('pm.>', handler, { fromSeq: before + 1 });
    await waitFor(() => msgs.length >= 55, 10_000, 'every item');
    assert.deepEqual(msgs.slice(0, 50).map((m) => m.id), Array.from({ length: 50 }, (_, i) => `small-${i}`));
    assert.deepEqual(msgs.slice(50).map((m) => [m.subject, m.id, (m.data as { i: number }).i, (m.data as { big: string }).big.length]), Array.from({ length: 5 }, (_, i) => ['pm.big', `big-${i}`, i, 300_000]));
    assert.ok(msgs.slice(0, 50).every((m) => m.seq === before + 1), 'the items of one entry share its seq');
    await sub.close();
  });

  it('refuses an item larger than max_payload, and hands over an entry marked as a batch that is not one as it is', { timeout: 30_000 }, async (t) => {
    const { bus, prefix } = await freshBus(t);
    await assert.rejects(bus.publishMany('pm.x', [{ data: 'x'.repeat(2_000_000), id: 'a' }, { data: 1, id: 'b' }]), { code: 'ERR_BUS_PAYLOAD_TOO_LARGE' });
    const { msgs, handler } = collector();
    const sub = await bus.subscribe('pm.>', handler);
    const nc = await connect({ servers: NATS_URL, timeout: 3_000 });
    t.after(() => nc.close());
    const { headers } = await import('@nats-io/transport-node');
    const h = headers();
    h.set('Mandate-Batch', '2');
    const { jetstream } = await import('@nats-io/jetstream');
    await jetstream(nc).publish(`${prefix}.pm.foreign`, JSON.stringify({ not: 'a batch' }), { headers: h });
    await bus.publish('pm.after', { ok: true });
    await waitFor(() => msgs.length >= 2, 10_000, 'both messages');
    assert.deepEqual(msgs.map((m) => [m.subject, m.data]), [['pm.foreign', { not: 'a batch' }], ['pm.after', { ok: true }]]);
    await sub.close();
  });
});
