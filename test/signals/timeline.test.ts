import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, silentLogger } from '../../src/core/index.js';
import { MemoryBus } from '../../src/bus/index.js';
import { RevocationState, type KillSwitchRecord, type RevocationRecord } from '../../src/broker/index.js';
import { mttrReport, type SignalApplicationRecord, type SignalRecord } from '../../src/signals/index.js';
import { waitFor } from './helpers.js';

const rev = (id: string, over: Partial<RevocationRecord>): RevocationRecord => ({
  id, kind: 'nhi', target: 'n1', notBefore: 100, reason: 'r', signalId: null, createdAt: 100, expiresAt: 10_000_000, ...over,
});

describe('time to revoke bookkeeping (issue 5)', () => {
  it('RevocationState reports each signal-carrying record once (not what was in force at start), and names the signal behind a refusal', async () => {
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
