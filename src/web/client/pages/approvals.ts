import { html } from '../html.js';
import { api, qs, type Session } from '../api.js';
import { useLive } from '../live.js';
import { Badge, ConfirmAction, Panel, Status, Time, notify, useApi } from '../ui.js';

export interface Approval {
  id: string; nhi: string; tool: string; action: string; args_digest: string; status: string; requested_at: number; expires_at: number;
  decided_by: string | null; decided_at: number | null; reason: string | null; redeemed_at: number | null;
}

export function Approvals(p: { session: Session }) {
  const live = useLive(['approval.']);
  const pending = useApi<{ approvals: Approval[] }>(`/approvals${qs({ status: 'pending' })}`, [live]);
  const history = useApi<{ approvals: Approval[] }>(`/approvals${qs({ limit: 50 })}`, [live]);
  const canDecide = p.session.role !== 'viewer';
  const decide = async (a: Approval, verb: 'approve' | 'deny', reason: string) => {
    await api('POST', `/approvals/${encodeURIComponent(a.id)}/${verb}`, reason ? { reason } : {});
    notify(`Approval ${a.id} ${verb === 'approve' ? 'approved' : 'denied'}`);
    pending.reload();
    history.reload();
  };
  const open = (pending.data?.approvals ?? []).filter((a) => a.status === 'pending');
  return html`<h1>Approvals</h1>
    <${Panel} title="Pending">
      <${Status} loading=${pending.loading && !pending.data} error=${pending.error} />
      ${pending.data && (open.length === 0 ? html`<p class="muted">Nothing is waiting for a decision.</p>` : html`<table>
        <thead><tr><th scope="col">Requested</th><th scope="col">NHI</th><th scope="col">Tool</th><th scope="col">Action</th><th scope="col">Arguments digest</th><th scope="col">Expires</th>${canDecide && html`<th scope="col">Decision</th>`}</tr></thead>
        <tbody>${open.map((a) => html`<tr data-approval=${a.id}>
          <td><${Time} ms=${a.requested_at} /></td><td><a href=${`#/nhis/${encodeURIComponent(a.nhi)}`}>${a.nhi}</a></td><td>${a.tool}</td><td><strong>${a.action}</strong></td>
          <td><code title="base64url SHA-256 of the call's canonical arguments">${a.args_digest}</code></td><td><${Time} ms=${a.expires_at} /></td>
          ${canDecide && html`<td class="buttons">${a.nhi === p.session.name
            ? html`<span class="muted">requested by you: someone else decides</span>`
            : html`<${ConfirmAction} label="Approve" title=${`Approve ${a.action} on ${a.tool}?`}
                consequence=${`${a.nhi} may call ${a.tool}.${a.action} once, with exactly the arguments whose digest is ${a.args_digest}.`}
                onConfirm=${(r: string) => decide(a, 'approve', r)} />
              <${ConfirmAction} label="Deny" danger title=${`Deny ${a.action} on ${a.tool}?`}
                consequence=${`${a.nhi}'s call to ${a.tool}.${a.action} with these arguments keeps being refused.`}
                onConfirm=${(r: string) => decide(a, 'deny', r)} />`}</td>`}
        </tr>`)}</tbody></table>`)}
    <//>
    <${Panel} title="History">
      <${Status} loading=${history.loading && !history.data} error=${history.error} />
      ${history.data && html`<table><thead><tr><th scope="col">Requested</th><th scope="col">NHI</th><th scope="col">Tool</th><th scope="col">Action</th><th scope="col">Status</th><th scope="col">Decided by</th><th scope="col">Reason</th><th scope="col">Redeemed</th></tr></thead>
        <tbody>${history.data.approvals.map((a) => html`<tr><td><${Time} ms=${a.requested_at} /></td><td>${a.nhi}</td><td>${a.tool}</td><td>${a.action}</td>
          <td><${Badge} value=${a.status} /></td><td>${a.decided_by ?? ''}</td><td>${a.reason ?? ''}</td><td><${Time} ms=${a.redeemed_at} /></td></tr>`)}</tbody></table>`}
    <//>`;
}
