import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConflictError } from '../../src/core/errors.js';
import { canonicalJson } from '../../src/core/canonical.js';
import type { NhiRecord } from '../../src/inventory/ports.js';
import type { AuditEvent } from '../../src/audit/ports.js';
import { chainHash } from '../../src/audit/index.js';
import { openStore, type Store } from '../../src/store/index.js';

/**
 * A SQLite file's writer thread (store/sqlite/writer.ts): appendChained (events with their
 * canonical JSON, as the audit log sends them) and insertOnceMany run on their own connection.
 * What they store and answer must be exactly what the main connection's path gives (a
 * ':memory:' store has no thread), and the main connection's transactions must keep working
 * while the thread commits (both sides BEGIN IMMEDIATE).
 */

const T0 = 1_700_000_000_000;

function events(n: number, from: number): AuditEvent[] {
  return Array.from({ length: n }, (_, i) => {
    const k = from + i;
    const data = { n: k, path: `/items/${k}`, policies: ['p'], nested: { b: 1, a: [k, null] } };
    return {
      id: `evt_${k}`, ts: T0 + k, type: k % 2 ? 'tool.called' : 'tool.call_denied', actor: `nhi-${k % 3}`, subject: `nhi-${k % 3}`,
      tool: 'items', decision: k % 2 ? 'allow' : 'deny', traceId: k % 4 ? `${k}`.padStart(32, '0') : null, data, dataJson: canonicalJson(data),
    };
  });
}

function nhi(id: string, tier: NhiRecord['tier']): NhiRecord {
  return {
    id, class: 'agent', owner: 'o@example.com', system: 's', environment: 'production', tier,
    status: 'active', description: null, mayAct: [], source: 'config', createdAt: T0, updatedAt: T0,
  };
}

describe('SQLite writer thread', () => {
  let dir: string;
  let file: Store;
  let memory: Store;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mandate-writer-'));
    file = await openStore({ driver: 'sqlite', sqlitePath: join(dir, 'mandate.db') });
    memory = await openStore({ driver: 'sqlite', sqlitePath: ':memory:' });
    await file.migrate();
    await memory.migrate();
  });
  after(async () => {
    await file.close();
    await memory.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('appendChained writes the same chain, rows and answer as the main connection', async () => {
    for (const [n, from] of [[1, 1], [3, 2], [1200, 5]] as const) {
      const onThread = await file.appendChained(events(n, from), chainHash);
      const onMain = await memory.appendChained(events(n, from), chainHash);
      assert.deepEqual(onThread, onMain);
    }
    assert.deepEqual(await file.auditHead(), await memory.auditHead());
    assert.deepEqual(await file.readAudit(1, 10_000), await memory.readAudit(1, 10_000));
    assert.equal((await file.auditHead()).seq, 1204);
    // A duplicate id fails the whole batch on the thread too, leaving the chain as it was.
    const head = await file.auditHead();
    await assert.rejects(file.appendChained([...events(1, 9000), ...events(1, 7)], chainHash), ConflictError);
    assert.deepEqual(await file.auditHead(), head);
  });

  it('insertOnceMany decides each record as the main connection does', async () => {
    const now = Date.now();
    const recs = (keys: string[], expiresAt: number) => keys.map((key) => ({ scope: 'dpop', key, expiresAt }));
    for (const s of [file, memory]) {
      assert.deepEqual(await s.insertOnceMany(recs(['a', 'b'], now + 60_000)), [true, true]);
      assert.deepEqual(await s.insertOnceMany(recs(['b', 'c'], now + 60_000)), [false, true]);
      assert.deepEqual(await s.insertOnceMany(recs(['x'], now - 1)), [true]);
      assert.deepEqual(await s.insertOnceMany(recs(['x', 'a'], now + 60_000)), [true, false], 'an expired record is taken over');
      assert.equal(await s.insertOnce('dpop', 'c', now + 60_000), false, 'the main connection sees what the thread wrote');
    }
  });

  it('the main connection\'s read-then-write transactions keep working while the thread commits', async () => {
    await file.upsertNhi(nhi('race', 'read'));
    let n = 0;
    const main = (async () => {
      for (let i = 0; i < 40; i++) {
        await file.transaction(async (tx) => {
          const before = await tx.getNhi('race');
          await sleep(1);
          await tx.upsertNhi(nhi('race', before?.tier === 'read' ? 'write' : 'read'));
        });
        n++;
      }
    })();
    const thread = (async () => {
      for (let i = 0; i < 40; i++) await file.appendChained(events(20, 20_000 + i * 20), chainHash);
    })();
    await Promise.all([main, thread]);
    assert.equal(n, 40);
    assert.equal((await file.auditHead()).seq, 1204 + 800);
  });

  it('close() lets the thread finish what was sent before it: nothing appended is lost at shutdown', async () => {
    const path = join(dir, 'shutdown.db');
    const a = await openStore({ driver: 'sqlite', sqlitePath: path });
    await a.migrate();
    const pending = a.appendChained(events(300, 50_000), chainHash);
    const replayed = a.insertOnceMany([{ scope: 'dpop', key: 'k', expiresAt: Date.now() + 60_000 }]);
    await a.close();
    assert.equal((await pending).length, 300);
    assert.deepEqual(await replayed, [true]);
    const b = await openStore({ driver: 'sqlite', sqlitePath: path });
    try {
      assert.equal((await b.auditHead()).seq, 300);
      assert.equal(await b.insertOnce('dpop', 'k', Date.now() + 60_000), false);
    } finally {
      await b.close();
    }
  });
});
