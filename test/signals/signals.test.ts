import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { main } from '../../src/cli/main.js';
import { EXIT } from '../../src/cli/errors.js';
import { ManualClock, silentLogger } from '../../src/core/index.js';
import { MemoryBus } from '../../src/bus/index.js';
import { RestrictionState, type RestrictionRecord } from '../../src/enforcement/index.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { waitFor } from './helpers.js';

const nhi = (id: string) => ({ id, class: 'agent' as const, owner: 'o@example.com', system: 's', tier: 'write' as const });

async function cli(t: TestApp, argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, { log: (s) => out.push(s), err: (s) => err.push(s) }, { MANDATE_URL: t.url, MANDATE_TOKEN: t.token });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('internal signals (issue 5 §1–2): admin API, CLI, enforcement, restrictions', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp(undefined, { nhis: [nhi('cli-agent'), nhi('step-agent'), nhi('tok-agent'), nhi('block-agent')] });
  });
  after(() => t.app.close());

  it('`mandate signal raise` revokes through the broker; stored, audited, listed, --json, exit codes', async () => {
    const before = Date.now() - 5;
    const r = await cli(t, ['signal', 'raise', '--nhi', 'cli-agent', '--action', 'revoke_tokens', '--reason', 'leaked in CI log', '--severity', 'critical']);
    assert.equal(r.code, EXIT.ok, r.err);
    assert.match(r.out, /^signal sig_\S+ applied: revoke_tokens cli-agent$/);
    assert.equal(t.app.enforcement.revocations.check({ jti: 'x', nhiId: 'cli-agent', toolId: 'tickets', issuedAt: before }), 'nhi_revoked');

    const list = await cli(t, ['signal', 'list', '--nhi', 'cli-agent', '--json']);
    const sig = JSON.parse(list.out).signals[0];
    assert.equal(sig.severity, 'critical');
    assert.match(sig.source, /^admin:/);
    assert.equal(sig.status, 'applied');
    const shown = await cli(t, ['signal', 'show', sig.id]);
    assert.match(shown.out, /^status\s+applied$/m);

    await t.app.audit.flush();
    // One record for the signal (what was raised and how it ended) and the broker's record of what it enforced.
    const records = (await t.admin('GET', '/audit?subject=cli-agent')).body.records as Array<{ type: string; data: Record<string, unknown> }>;
    const ofSignal = records.filter((x) => x.data.signal_id === sig.id);
    assert.deepEqual(ofSignal.map((x) => x.type).sort(), ['signal.applied', 'tokens.revoked']);
    const applied = ofSignal.find((x) => x.type === 'signal.applied')!;
    assert.equal(applied.data.reason, 'leaked in CI log');
    assert.equal(applied.data.severity, 'critical');
    assert.equal(applied.data.status, 'applied');
    assert.equal(typeof applied.data.time_to_apply_ms, 'number');
    assert.match(String(ofSignal.find((x) => x.type === 'tokens.revoked')!.data.reason), new RegExp(`signal ${sig.id}`));

    assert.equal((await cli(t, ['signal', 'raise', '--action', 'disable', '--reason', 'x'])).code, EXIT.usage, 'no subject');
    assert.equal((await cli(t, ['signal', 'raise', '--nhi', 'cli-agent', '--action', 'explode', '--reason', 'x'])).code, EXIT.usage);
    const failed = await cli(t, ['signal', 'raise', '--jti', 'unknown-jti', '--action', 'disable', '--reason', 'x']);
    assert.equal(failed.code, EXIT.failed, 'a signal that cannot be enforced exits 1');
    assert.match(failed.out, /failed/);
  });

  it('revoke_tokens with a token subject revokes that jti only; block engages a kill switch', async () => {
    const s = await t.admin('POST', '/signals', { jti: 'one-token', action: 'revoke_tokens', reason: 'token stolen' });
    assert.equal(s.status, 201);
    assert.equal(t.app.enforcement.revocations.check({ jti: 'one-token', nhiId: 'tok-agent', toolId: 't', issuedAt: Date.now() }), 'token_revoked');
    assert.equal(t.app.enforcement.revocations.check({ jti: 'other-token', nhiId: 'tok-agent', toolId: 't', issuedAt: Date.now() - 1000 }), undefined);
    assert.equal((await t.admin('POST', '/signals', { nhi: 'block-agent', action: 'block', reason: 'abuse' })).body.status, 'applied');
    assert.equal(t.app.enforcement.revocations.killed('block-agent', undefined), 'nhi_killed');
    assert.equal((await t.admin('POST', '/signals', { action: 'block', reason: 'abuse' })).status, 400);
  });

  it('step_down sets a restriction RestrictionState serves; `mandate signal restore` lifts it', async () => {
    const raised = await cli(t, ['signal', 'raise', '--nhi', 'step-agent', '--action', 'step_down', '--reason', 'risk high']);
    assert.equal(raised.code, EXIT.ok, raised.err);
    const r = t.app.signals.restrictions.restrictionOf('step-agent');
    assert.equal(r?.kind, 'step_down');
    assert.equal(r?.fallbackTier, 'read', 'the least dangerous profile by default');
    assert.match(r!.signalId, /^sig_/);
    // step_up replaces it; the list shows one active restriction.
    await t.admin('POST', '/signals', { nhi: 'step-agent', action: 'step_up', reason: 'assurance down', fallback_tier: 'write' });
    assert.deepEqual(t.app.signals.restrictions.restrictionOf('step-agent')?.kind, 'step_up');
    const active = (await t.admin('GET', '/restrictions?nhi=step-agent')).body.restrictions;
    assert.equal(active.length, 1);
    assert.equal(active[0].fallback_tier, 'write');

    const restore = await cli(t, ['signal', 'restore', '--nhi', 'step-agent']);
    assert.equal(restore.code, EXIT.ok, restore.err);
    assert.match(restore.out, /lifted step_up of step-agent/);
    await waitFor(() => t.app.signals.restrictions.restrictionOf('step-agent') === undefined || undefined, 2000, 'lifted');
    assert.equal(t.app.signals.restrictions.restrictionOf('step-agent'), undefined);
    assert.equal((await cli(t, ['signal', 'restore', '--nhi', 'step-agent'])).code, EXIT.failed, 'nothing to lift');
    assert.equal((await t.admin('POST', '/restrictions/step-agent/lift')).status, 404);
  });
});

describe('RestrictionState (modelled on RevocationState)', () => {
  it('is fed by the bus (restriction.*) and reloads from the store', async () => {
    const clock = new ManualClock(1_000);
    let stored: RestrictionRecord[] = [];
    const bus = new MemoryBus();
    await bus.start();
    const state = new RestrictionState({ store: { listRestrictions: async () => stored }, bus, clock, logger: silentLogger(), reloadIntervalMs: 60_000 });
    await state.start();
    try {
      const rec: RestrictionRecord = { id: 'r1', nhiId: 'n', kind: 'step_down', fallbackTier: 'read', signalId: 's1', reason: 'x', createdAt: 1, liftedAt: null, liftedBy: null };
      await bus.publish('restriction.added', rec);
      await waitFor(() => state.restrictionOf('n'), 2000, 'bus');
      assert.deepEqual(state.restrictionOf('n'), { kind: 'step_down', fallbackTier: 'read', signalId: 's1', reason: 'x' });
      // An older record never replaces a newer one.
      state.apply({ ...rec, id: 'r0', kind: 'step_up', createdAt: 0 });
      assert.equal(state.restrictionOf('n')?.kind, 'step_down');
      await bus.publish('restriction.lifted', { ...rec, liftedAt: 5, liftedBy: 'admin:a' });
      await waitFor(() => state.restrictionOf('n') === undefined || undefined, 2000, 'lift');
      // A missed event is caught by the reload from the store.
      stored = [{ ...rec, id: 'r2', nhiId: 'm', createdAt: 9 }];
      await state.reload();
      assert.equal(state.restrictionOf('m')?.kind, 'step_down');
      assert.equal(state.lastSyncAt, 1_000);
    } finally {
      await state.stop();
      await bus.close();
    }
  });
});
