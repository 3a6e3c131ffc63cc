import type { AdminClient } from '../admin-client.js';
import { CliError, EXIT } from '../errors.js';
import type { DrillReport } from './report.js';

/** What the drill has created so far, for the cleanup to undo. */
export interface Created { nhi: boolean; credential: string | null; grant: string | null }

/** Undo everything the drill did: playbook step-downs / kill switches, tokens, grant, key, NHI; resolve its findings. */
export async function cleanup(admin: AdminClient, nhi: string, runId: string, created: Created, report: DrillReport): Promise<void> {
  const act = async (what: string, fn: () => Promise<unknown>) => {
    try {
      await fn();
      report.cleanup.push({ what, ok: true });
    } catch (err) {
      report.cleanup.push({ what, ok: false, error: (err as Error).message });
    }
  };
  if (!created.nhi) return;
  const reason = `mandate drill token-theft ${runId}: cleanup`;
  await act(`revoked every token of ${nhi}`, () => admin.call('POST', '/revocations', { body: { nhi, reason } }));
  if (created.grant) await act(`removed grant ${created.grant}`, () => admin.call('DELETE', `/grants/${encodeURIComponent(created.grant!)}`));
  if (created.credential) await act(`removed credential ${created.credential}`, () => admin.call('DELETE', `/credentials/${encodeURIComponent(created.credential!)}`));
  await act(`disabled NHI ${nhi}`, () => admin.call('POST', `/nhis/${encodeURIComponent(nhi)}/disable`, { body: { reason } }));
  // Detections and playbooks run behind the bus, possibly on another instance: a finding or a
  // step-down about the attack can land after the first look. Look again until a pass, a second
  // after the previous one, finds nothing left to undo or resolve (at most ten passes).
  const undone = new Set<string>();
  for (let pass = 0; pass < 10; pass++) {
    let handled = 0;
    try {
      const r = (await admin.call('GET', '/playbook-actions', { query: { nhi, limit: '100' } })) as { actions: Array<{ id: string; action: string; dry_run: boolean; undone_at: number | null }> };
      for (const a of r.actions) {
        if (a.dry_run || a.undone_at !== null || a.action === 'revoke_tokens' || undone.has(a.id)) continue;
        undone.add(a.id);
        handled++;
        await act(`undid playbook action ${a.id} (${a.action})`, () => admin.call('POST', `/playbook-actions/${encodeURIComponent(a.id)}/undo`));
      }
    } catch (err) {
      if (!(err instanceof CliError && err.exitCode === EXIT.failed)) report.cleanup.push({ what: 'listing playbook actions', ok: false, error: (err as Error).message });
    }
    try {
      const r = (await admin.call('GET', '/findings', { query: { nhi, limit: '100' } })) as { findings: Array<{ id: string; status: string; detection: string }> };
      for (const f of r.findings) {
        if (f.status === 'resolved' || undone.has(f.id)) continue;
        undone.add(f.id);
        handled++;
        await act(`resolved finding ${f.id} (${f.detection})`, () => admin.call('POST', `/findings/${encodeURIComponent(f.id)}/resolve`, { body: { note: `raised by mandate drill token-theft ${runId}` } }));
      }
    } catch (err) {
      if (!(err instanceof CliError && err.exitCode === EXIT.failed)) report.cleanup.push({ what: 'listing findings', ok: false, error: (err as Error).message });
    }
    if (handled === 0 && pass > 0) break;
    await new Promise((r) => setTimeout(r, 1000));
  }
}
