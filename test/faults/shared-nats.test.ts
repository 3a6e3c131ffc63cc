import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBus } from '../../src/bus/index.js';
import { buildConfig, type Bus, type BusMessage } from '../../src/core/index.js';
import { PrivateNats, freePort, until } from './harness.js';

/**
 * Issue 15, item 12: a second deployment could not share a NATS server, because every stream
 * captured `mandate.>` whatever its name (NATS refuses a second stream on overlapping subjects).
 * The subjects now follow the configured stream (`bus.subject_prefix` defaults to the stream's
 * name in lower case): two deployments with their own streams on one nats-server both start,
 * and neither sees the other's messages.
 */
describe('faults: two deployments on one NATS server', { timeout: 60_000 }, () => {
  it('each with its own stream (and no subject_prefix): both start, neither sees the other', async (t) => {
    const nats = new PrivateNats(await freePort(), mkdtempSync(join(tmpdir(), 'mandate-nats-')));
    t.after(() => {
      nats.kill();
      rmSync(nats.storeDir, { recursive: true, force: true });
    });
    await nats.start();
    const busOf = (stream: string): Bus => {
      const config = buildConfig({ bus: { driver: 'nats', nats_servers: [nats.url], stream } }, { env: {} });
      const bus = createBus(config.bus, { resolveSecret: () => '' });
      t.after(() => bus.close());
      return bus;
    };
    const a = busOf('DEPLOY_A');
    const b = busOf('DEPLOY_B');
    await a.start();
    await b.start();

    const seenA: BusMessage[] = [];
    const seenB: BusMessage[] = [];
    await a.subscribe('revocation.>', (m) => void seenA.push(m), { name: 'a' });
    await b.subscribe('revocation.>', (m) => void seenB.push(m), { name: 'b' });
    await a.publish('revocation.added', { from: 'a' });
    await b.publish('revocation.added', { from: 'b' });
    await a.publish('revocation.added', { from: 'a', n: 2 });
    await until(() => seenA.length >= 2 && seenB.length >= 1, 10_000, 'each deployment to receive its own messages');
    // Anything of the other deployment's would have been delivered among (or before) its own.
    assert.deepEqual(seenA.map((m) => (m.data as { from: string }).from), ['a', 'a']);
    assert.deepEqual(seenB.map((m) => (m.data as { from: string }).from), ['b']);
    assert.equal(await a.lastSeq(), 2);
    assert.equal(await b.lastSeq(), 1);
  });

  it('two streams told to share one subject_prefix: the second refuses to start, and says what to change', async (t) => {
    const nats = new PrivateNats(await freePort(), mkdtempSync(join(tmpdir(), 'mandate-nats-')));
    t.after(() => {
      nats.kill();
      rmSync(nats.storeDir, { recursive: true, force: true });
    });
    await nats.start();
    const busOf = (stream: string): Bus => {
      const bus = createBus(buildConfig({ bus: { driver: 'nats', nats_servers: [nats.url], stream, subject_prefix: 'shared' } }, { env: {} }).bus, { resolveSecret: () => '' });
      t.after(() => bus.close());
      return bus;
    };
    await busOf('FIRST').start();
    await assert.rejects(busOf('SECOND').start(), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'ERR_BUS_STREAM');
      assert.match(err.message, /another stream on this NATS server captures these subjects.*bus\.stream.*bus\.subject_prefix/);
      return true;
    });
  });
});
