import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NatsBus } from '../../src/bus/index.js';
import { uniqueNames, waitFor } from './helpers.js';
import { PrivateNats, freePort } from '../helpers/cluster.js';

/**
 * Acceptance: a NATS server that stops in the middle of a burst loses nothing. The
 * publisher's calls wait and retry (same msg id, so no double store) and the subscriber
 * resumes after the last seq it completed, so it ends with every message 1..N.
 * The server here is a private child process on its own port and store directory
 * (test/helpers/cluster.ts).
 */

describe('bus on nats: server restart', () => {
  it('loses no message when the server stops mid-burst and comes back', { timeout: 120_000 }, async (t) => {
    const port = await freePort();
    const storeDir = mkdtempSync(join(tmpdir(), 'mandate-nats-'));
    const server = new PrivateNats(port, storeDir);
    const buses: NatsBus[] = [];
    t.after(async () => {
      await Promise.all(buses.map((b) => b.close().catch(() => undefined)));
      server.kill();
      rmSync(storeDir, { recursive: true, force: true });
    });
    await server.start();

    const { stream, prefix } = uniqueNames();
    const url = `nats://127.0.0.1:${port}`;
    const mk = (name: string): NatsBus => {
      const b = new NatsBus({
        servers: [url], stream, subjectPrefix: prefix, name, connectTimeoutMs: 10_000, publishTimeoutMs: 45_000, heartbeatMs: 500,
      });
      buses.push(b);
      return b;
    };
    const subBus = mk('restart-subscriber');
    const pubBus = mk('restart-publisher');
    await subBus.start();
    await pubBus.start();

    const N = 200;
    const STOP_AFTER = 80;
    const seen = new Set<number>();
    const seqs: number[] = [];
    let deliveries = 0;
    // A slightly slow handler keeps the subscriber behind the publisher, so that the outage
    // hits it with messages stored but not yet handled: it must resume after its lastSeq.
    const sub = await subBus.subscribe('burst.*', async (m) => {
      await new Promise((r) => setTimeout(r, 3));
      deliveries++;
      seqs.push(m.seq);
      seen.add((m.data as { n: number }).n);
    });

    const timings: Record<string, number> = {};
    const t0 = Date.now();
    let sawSubDisconnected = false;
    let sawPubDisconnected = false;
    const sampler = setInterval(() => {
      if (!subBus.health().connected) sawSubDisconnected = true;
      if (!pubBus.health().connected) sawPubDisconnected = true;
    }, 10);
    t.after(() => clearInterval(sampler));

    let restarted: Promise<void> | undefined;
    // Ten publishes in flight at a time. The server is stopped while one batch is in flight
    // (some of it may be stored with its ack lost), and the next batch is issued while it is
    // down: those calls must wait, retry and land once, after the restart.
    for (let n = 1; n <= N; n += 10) {
      const batch: Promise<number>[] = [];
      for (let k = n; k < n + 10 && k <= N; k++) batch.push(pubBus.publish('burst.n', { n: k }, { id: `burst-${k}` }));
      if (n === STOP_AFTER + 1) {
        timings.stopAt = Date.now() - t0;
        timings.handledAtStop = seen.size;
        await server.stop();
        timings.stopped = Date.now() - t0;
        await waitFor(() => !subBus.health().connected && !pubBus.health().connected, 5_000, 'health() to report disconnected');
        timings.healthDown = Date.now() - t0;
        restarted = (async () => {
          await new Promise((r) => setTimeout(r, 2_000));
          await server.start();
          timings.restarted = Date.now() - t0;
        })();
      }
      await Promise.all(batch);
      if (n === STOP_AFTER + 1) timings.inFlightBatchAcked = Date.now() - t0;
      if (n === STOP_AFTER + 11) timings.outageBatchAcked = Date.now() - t0;
    }
    timings.allPublished = Date.now() - t0;
    await restarted;

    await waitFor(() => seen.size >= N, 30_000, `all ${N} messages (have ${seen.size})`);
    timings.allReceived = Date.now() - t0;
    timings.reconnected = subBus.health().connected && pubBus.health().connected ? 1 : 0;

    const missing = [...Array(N).keys()].map((i) => i + 1).filter((i) => !seen.has(i));
    assert.deepEqual(missing, [], 'no gaps');
    assert.equal(seen.size, N);
    for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i]! > seqs[i - 1]!, 'the handler never goes backwards');
    assert.equal(await pubBus.lastSeq(), N, 'every message stored exactly once (msg-id dedupe across the restart)');
    assert.ok(sawSubDisconnected && sawPubDisconnected, 'health() reported the outage');
    assert.ok(subBus.health().connected && pubBus.health().connected, 'both reconnected');
    assert.ok(Date.now() - subBus.health().lastContactAt < 5_000, 'contact is fresh again');
    assert.equal(sub.lastSeq, N);
    t.diagnostic(`timings (ms from start; handledAtStop is a count): ${JSON.stringify(timings)}; deliveries=${deliveries} (duplicates ${deliveries - N})`);
    await sub.close();
  });

  it('publish gives up with UnavailableError after timeoutMs while the server stays down', { timeout: 60_000 }, async (t) => {
    const port = await freePort();
    const storeDir = mkdtempSync(join(tmpdir(), 'mandate-nats-'));
    const server = new PrivateNats(port, storeDir);
    const { stream, prefix } = uniqueNames();
    const bus = new NatsBus({ servers: [`nats://127.0.0.1:${port}`], stream, subjectPrefix: prefix, connectTimeoutMs: 10_000 });
    t.after(async () => {
      await bus.close().catch(() => undefined);
      server.kill();
      rmSync(storeDir, { recursive: true, force: true });
    });
    await server.start();
    await bus.start();
    assert.equal(await bus.publish('x.y', 1), 1);
    await server.stop();
    const started = Date.now();
    await assert.rejects(bus.publish('x.y', 2, { timeoutMs: 1_500 }), { code: 'ERR_UNAVAILABLE' });
    const took = Date.now() - started;
    assert.ok(took >= 1_400 && took < 5_000, `gave up after ${took} ms`);
    assert.equal(bus.health().connected, false);
    await assert.rejects(bus.lastSeq(), { code: 'ERR_UNAVAILABLE' });
  });

  it('start() fails with UnavailableError when no server answers', { timeout: 30_000 }, async () => {
    const port = await freePort();
    const bus = new NatsBus({ servers: [`nats://127.0.0.1:${port}`], stream: 'NOPE', subjectPrefix: 'nope', connectTimeoutMs: 1_000 });
    const started = Date.now();
    await assert.rejects(bus.start(), { code: 'ERR_UNAVAILABLE' });
    assert.ok(Date.now() - started < 5_000);
    await bus.close();
  });
});
