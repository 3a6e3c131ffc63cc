import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import type { MandateConfig } from '../../src/core/config/index.js';
import { createLogger } from '../../src/core/logger.js';
import { createBus, MemoryBus, NatsBus } from '../../src/bus/index.js';
import { deleteStream, uniqueNames } from './helpers.js';

const NATS_URL = process.env.MANDATE_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';

function busConfig(over: Partial<MandateConfig['bus']>): MandateConfig['bus'] {
  return { driver: 'memory', nats_servers: [NATS_URL], stream: 'MANDATE', subject_prefix: 'mandate', staleness_bound: 15, ...over };
}

describe('createBus', () => {
  it('builds the memory bus by default', async () => {
    const bus = createBus(busConfig({}), { resolveSecret: () => assert.fail('no secret needed') });
    assert.ok(bus instanceof MemoryBus);
    assert.equal(bus.driver, 'memory');
    await bus.close();
  });

  it('builds the NATS bus, resolves the credential reference and never logs its value', { timeout: 20_000 }, async () => {
    const { stream, prefix } = uniqueNames();
    const secret = 'bus-user:s3cret-never-logged';
    const lines: string[] = [];
    const logger = createLogger({
      level: 'debug',
      destination: new Writable({
        write(chunk: Buffer, _enc, cb) {
          lines.push(chunk.toString());
          cb();
        },
      }),
    });
    const refs: string[] = [];
    const bus = createBus(busConfig({ driver: 'nats', nats_credentials: 'env:MANDATE_TEST_BUS_CREDS', stream, subject_prefix: prefix }), {
      resolveSecret: (ref) => {
        refs.push(ref);
        return secret;
      },
      logger,
    });
    assert.ok(bus instanceof NatsBus);
    assert.deepEqual(refs, ['env:MANDATE_TEST_BUS_CREDS']);
    try {
      // The shared test server has no auth, so it accepts (and ignores) the user/password.
      await bus.start();
      assert.equal(await bus.publish('cfg.x', { ok: true }), 1);
    } finally {
      await bus.close();
      await deleteStream(NATS_URL, stream);
    }
    assert.ok(lines.some((l) => l.includes('created JetStream stream')), 'something was logged');
    assert.ok(!lines.join('').includes('s3cret'), 'the credential never reaches the log');
  });
});
