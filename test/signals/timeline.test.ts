import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, silentLogger } from '../../src/core/index.js';
import { MemoryBus } from '../../src/bus/index.js';
import { RevocationState, type KillSwitchRecord, type RevocationRecord } from '../../src/enforcement/index.js';
import { RELOAD_OVERLAP_MS } from '../../src/enforcement/revocation-state.js';
import { mttrReport, type SignalApplicationRecord, type SignalRecord } from '../../src/signals/index.js';
import { waitFor } from './helpers.js';

const rev = (id: string, over: Partial<RevocationRecord>): RevocationRecord => ({
  id, kind: 'nhi', target: 'n1', notBefore: 100, reason: 'r', signalId: null, createdAt: 100, expiresAt: 10_000_000, ...over,
});

describe('time to revoke bookkeeping (issue 5)', () => {
  it('RevocationState reports a signal-carrying record when it changes the state (once; not what was in force at start), and names the signal behind a refusal', async () => {
    const clock = new ManualClock(1_000);
    const bus = new MemoryBus();
    await bus.start();
    let revs: RevocationRecord[] = [rev('r0', { signalId: 'sig-old', target: 'old' })];
    let kills: KillSwitchRecord[] = [];
    const applied: Array<[string, number]> = [];
    const state = new RevocationState({
      store: { listRevocations: async () => revs, listKillSwitches: async () => kills } as never,
      bus, clock, logger: silentLogger(), reloadIntervalMs: 60_000, onSignalApplied: (s, at) => applied.push([s, at]),
    });
    await state.start();
    try {
      assert.deepEqual(applied, [], 'in force at start-up: not "applied now"');
      const r1 = rev('r1', { signalId: 'sig-1', notBefore: 500 });
      await bus.publish('revocation.added', r1);
      await waitFor(() => applied.length === 1 || undefined, 2000, 'applied');
      assert.deepEqual(applied, [['sig-1', 1_000]]);
      // Redelivery (at-least-once) and the periodic reload apply it again: reported once.
      state.applyRevocation(r1);
      revs = [...revs, r1];
      await state.reload();
      assert.equal(applied.length, 1);
      assert.equal(state.check({ jti: 'j', nhiId: 'n1', toolId: 't', issuedAt: 400 }), 'nhi_revoked');
      assert.equal(state.signalOf('nhi_revoked', { jti: 'j', nhiId: 'n1', toolId: 't' }), 'sig-1');
      // An operator's later revocation (no signal) now decides: no signal behind the refusal.
      state.applyRevocation(rev('r2', { notBefore: 600 }));
      assert.equal(state.signalOf('nhi_revoked', { jti: 'j', nhiId: 'n1', toolId: 't' }), undefined);
      state.applyRevocation(rev('r3', { kind: 'token', target: 'jti-9', notBefore: null, signalId: 'sig-3' }));
      assert.equal(state.signalOf('token_revoked', { jti: 'jti-9', nhiId: 'x', toolId: 't' }), 'sig-3');
      // Kill switches carry their signal in the reason.
      const k: KillSwitchRecord = { id: 'k1', scope: 'nhi', target: 'n2', reason: '[signal sig-4] risc.account_disabled', createdBy: 'signal:sig-4', createdAt: 1, liftedAt: null, liftedBy: null };
      kills = [k];
      state.applyKill(k);
      assert.equal(state.check({ jti: 'j', nhiId: 'n2', toolId: 't', issuedAt: 5_000 }), 'nhi_killed');
      assert.equal(state.signalOf('nhi_killed', { jti: 'j', nhiId: 'n2', toolId: 't' }), 'sig-4');
      assert.deepEqual(applied.map((a) => a[0]), ['sig-1', 'sig-3', 'sig-4']);
      // The bus repeats the kill switch: not reported again.
      state.applyKill(k);
      // Two signals' revocations of one NHI from the same commit (the same not-before): both in
      // force here, both reported; an older one after a newer changes nothing and is not.
      state.applyRevocation(rev('r5', { target: 'n5', notBefore: 700, signalId: 'sig-5' }));
      state.applyRevocation(rev('r6', { target: 'n5', notBefore: 700, signalId: 'sig-6' }));
      state.applyRevocation(rev('r7', { target: 'n5', notBefore: 650, signalId: 'sig-7' }));
      // The same token revoked again by another signal: reported; again by the same: not.
      state.applyRevocation(rev('r8', { kind: 'token', target: 'jti-9', notBefore: null, signalId: 'sig-8' }));
      state.applyRevocation(rev('r9', { kind: 'token', target: 'jti-9', notBefore: null, signalId: 'sig-8' }));
      assert.deepEqual(applied.map((a) => a[0]), ['sig-1', 'sig-3', 'sig-4', 'sig-5', 'sig-6', 'sig-8']);
      assert.equal(state.signalOf('nhi_revoked', { jti: 'j', nhiId: 'n5', toolId: 't' }), 'sig-6');
    } finally {
      await state.stop();
      await bus.close();
    }
  });

  it('mttrReport: applied everywhere = the last instance, first denial = the first refusal; enforced signals only', () => {
    const sig = (id: string, receivedAt: number, over: Partial<SignalRecord> = {}): SignalRecord => ({
      id, nhiId: 'n', jti: null, runId: null, credentialId: null, reason: 'r', severity: 'high', action: 'revoke_tokens', source: 's', txn: null,
      receivedAt, appliedAt: receivedAt, status: 'applied', error: null, data: {}, ...over,
    });
    const app = (signalId: string, instanceId: string, appliedAt: number | null, firstDeniedAt: number | null): SignalApplicationRecord => ({ signalId, instanceId, role: 'proxy', appliedAt, firstDeniedAt });
    const r = mttrReport(
      [sig('a', 1000), sig('b', 2000), sig('c', 3000, { action: 'step_down' }), sig('d', 4000, { status: 'unmapped' })],
      [app('a', 'i1', 1010, 1030), app('a', 'i2', 1050, 1020), app('b', 'i1', 2100, null), app('c', 'i1', 3001, null)],
    );
    assert.equal(r.signals, 2);
    assert.equal(r.instances, 2);
    assert.deepEqual(r.applied_everywhere, { count: 2, mean_ms: 75, p50_ms: 50, p99_ms: 100, max_ms: 100 });
    assert.deepEqual(r.first_denial, { count: 1, mean_ms: 20, p50_ms: 20, p99_ms: 20, max_ms: 20 });
  });
});

describe('RevocationState reload (the safety net under the bus)', () => {
  it('reads the revocations created since the previous reload (minus the overlap), and all of them every full-reload interval', async () => {
    const clock = new ManualClock(1_000_000);
    const bus = new MemoryBus();
    await bus.start();
    const stored: RevocationRecord[] = [];
    const asked: Array<number | undefined> = [];
    type List = (now: number, opts?: { createdSince?: number }) => Promise<RevocationRecord[]>;
    const store = {
      listRevocations: (async (now: number, opts?: { createdSince?: number }) => {
        asked.push(opts?.createdSince);
        return stored.filter((r) => (r.expiresAt === null || r.expiresAt > now) && (opts?.createdSince === undefined || r.createdAt >= opts.createdSince));
      }) as List,
      listKillSwitches: async () => [],
    };
    const state = new RevocationState({ store: store as never, bus, clock, logger: silentLogger(), reloadIntervalMs: 3_600_000, fullReloadIntervalMs: 60_000 });
    await state.start();
    const facts = (nhiId: string) => ({ jti: 'j', nhiId, toolId: 't', issuedAt: 900_000 });
    try {
      assert.deepEqual([...asked], [undefined], 'the first reload reads everything');
      // Written to the store, its bus message lost: the next reload finds it.
      stored.push(rev('lost-1', { target: 'a', notBefore: 999_000, createdAt: 999_000 }));
      clock.advance(5_000);
      await state.reload();
      assert.deepEqual(asked.at(-1), 1_000_000 - RELOAD_OVERLAP_MS, 'recent ones only: created since the previous reload minus the overlap');
      assert.equal(state.check(facts('a')), 'nhi_revoked');
      // Committed long after its createdAt (older than the overlap): not in a recent read …
      stored.push(rev('late-1', { target: 'b', notBefore: 950_000, createdAt: 950_000 }));
      clock.advance(5_000);
      await state.reload();
      assert.equal(state.check(facts('b')), undefined);
      // … but in the next full one.
      clock.advance(50_000);
      await state.reload();
      assert.deepEqual(asked.at(-1), undefined, 'a full reload every fullReloadIntervalMs');
      assert.equal(state.check(facts('b')), 'nhi_revoked');
      clock.advance(5_000);
      await state.reload();
      assert.deepEqual(asked.at(-1), 1_060_000 - RELOAD_OVERLAP_MS, 'since the previous (full) reload');
      await state.reload({ full: true });
      assert.deepEqual(asked.at(-1), undefined, 'full on request');
      // A failed reload does not move the window: the next one reads from the last successful one.
      const lastOk = clock.now();
      store.listRevocations = async () => { throw new Error('store down'); };
      clock.advance(5_000);
      await assert.rejects(state.reload());
      store.listRevocations = async (now: number, opts?: { createdSince?: number }) => {
        asked.push(opts?.createdSince);
        return stored.filter((r) => (r.expiresAt === null || r.expiresAt > now) && (opts?.createdSince === undefined || r.createdAt >= opts.createdSince));
      };
      clock.advance(5_000);
      await state.reload();
      assert.deepEqual(asked.at(-1), lastOk - RELOAD_OVERLAP_MS);
    } finally {
      await state.stop();
      await bus.close();
    }
  });
});
