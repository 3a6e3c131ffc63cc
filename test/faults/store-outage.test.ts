import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { openStore, type Store } from '../../src/store/index.js';
import { PrivatePostgres, until } from './harness.js';

/**
 * Issue 15, item 12: a PostgreSQL connection that dies while a client is checked out of the
 * pool (a transaction between two statements, the connection that holds an advisory lock) must
 * not end the process. node-postgres emits 'error' on such a client, and the pool listens only
 * while the client is idle: unhandled, the event was an uncaught exception that ended every proxy
 * at a `pg_ctl -m fast stop`. The work on that connection fails with UnavailableError (503 on the
 * wire), and the store serves again once PostgreSQL is back.
 */
describe('faults: the store across a PostgreSQL restart', { timeout: 90_000 }, () => {
  it('a checked-out client whose connection dies is an UnavailableError, never an exit; the store recovers', async (t) => {
    const pgc = await PrivatePostgres.create();
    t.after(() => pgc.destroy());
    await pgc.start();
    const store: Store = await openStore({ driver: 'postgres', url: pgc.url, poolSize: 4 });
    t.after(() => store.close());
    await store.migrate();

    // An 'error' event nobody handles is an uncaught exception: the test fails on it (as a process would end).
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown) => uncaught.push(err);
    process.on('uncaughtException', onUncaught);
    t.after(() => process.off('uncaughtException', onUncaught));

    // Two clients checked out and idle when the server stops: a transaction between statements
    // and the dedicated connection of a held lock.
    let releaseTx!: () => void;
    let releaseLock!: () => void;
    const txGate = new Promise<void>((r) => (releaseTx = r));
    const lockGate = new Promise<void>((r) => (releaseLock = r));
    let inTx = false;
    let inLock = false;
    const tx = store.transaction(async (s) => {
      await s.listTools();
      inTx = true;
      await txGate;
      return s.listTools();
    });
    const lock = store.withLock('fault-test', async () => {
      inLock = true;
      await lockGate;
    });
    tx.catch(() => {});
    lock.catch(() => {});
    await until(() => inTx && inLock, 10_000, 'the transaction and the lock to hold their clients');

    await pgc.stop();
    // Give the dead connections' events time to arrive (they come at once on a fast stop).
    await until(async () => {
      try {
        await store.ping();
        return false;
      } catch (err) {
        return (err as { code?: string }).code === 'ERR_UNAVAILABLE';
      }
    }, 10_000, 'the store to report itself unavailable');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(uncaught.map(String), [], 'no uncaught error while clients were checked out');

    releaseTx();
    releaseLock();
    await assert.rejects(tx, { code: 'ERR_UNAVAILABLE' });
    // The lock's fn itself succeeded; releasing the lock on a dead connection is the failure.
    await assert.rejects(lock, { code: 'ERR_UNAVAILABLE' });
    await assert.rejects(store.listTools(), { code: 'ERR_UNAVAILABLE' });

    await pgc.start();
    await until(async () => (await store.listTools()) && true, 20_000, 'the store serving again');
    await store.transaction(async (s) => s.listTools());
    await store.withLock('fault-test', async () => undefined);
    assert.deepEqual(uncaught.map(String), [], 'no uncaught error afterwards either');
  });
});
