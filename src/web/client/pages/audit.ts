import { useState } from 'preact/hooks';
import { html } from '../html.js';
import { api, qs } from '../api.js';
import { Panel, Status, useApi } from '../ui.js';
import { AuditTable } from './nhis.js';

interface Verify { ok: boolean; checked: number; headSeq: number; problems: Array<{ seq: number; kind?: string; problem?: string }> }

const FIELDS: Array<[string, string]> = [['actor', 'NHI or actor'], ['subject', 'Subject'], ['tool', 'Tool'], ['type', 'Event type'], ['trace_id', 'Trace id']];

/** Audit search: by NHI, tool, decision, time and trace id, with the hash chain's status. */
export function Audit(p: { initial: Record<string, string> }) {
  const [form, setForm] = useState<Record<string, string>>({ ...p.initial });
  const [query, setQuery] = useState<Record<string, string>>({ ...p.initial });
  const [verify, setVerify] = useState<{ result?: Verify; error?: string; busy?: boolean }>({});
  const toMs = (v: string | undefined) => (v ? String(new Date(v).getTime()) : undefined);
  const r = useApi<{ records: Parameters<typeof AuditTable>[0]['records'] }>(
    `/audit${qs({ ...query, since: toMs(query.since), until: toMs(query.until), limit: 200 })}`,
  );
  const set = (k: string) => (e: Event) => setForm({ ...form, [k]: (e.target as HTMLInputElement).value });
  const check = async () => {
    setVerify({ busy: true });
    try {
      setVerify({ result: await api<Verify>('POST', '/audit/verify') });
    } catch (err) {
      setVerify({ error: err instanceof Error ? err.message : String(err) });
    }
  };
  return html`<h1>Audit</h1>
    <${Panel} title="Hash chain" actions=${html`<button type="button" onClick=${check} disabled=${verify.busy}>Verify the chain</button>`}>
      ${verify.result
        ? verify.result.ok
          ? html`<p class="ok" data-chain="ok">Intact: ${verify.result.checked} records checked, head at ${verify.result.headSeq}.</p>`
          : html`<p class="error" data-chain="broken" role="alert">Broken: ${verify.result.problems.length} problems (first at seq ${verify.result.problems[0]?.seq}).</p>`
        : verify.error ? html`<p class="error">${verify.error}</p>` : html`<p class="muted">Not checked yet in this view.</p>`}
    <//>
    <form class="filters" role="search" onSubmit=${(e: Event) => { e.preventDefault(); setQuery({ ...form }); }}>
      ${FIELDS.map(([k, label]) => html`<label>${label}<input name=${k} value=${form[k] ?? ''} onInput=${set(k)} /></label>`)}
      <label>Decision <select name="decision" value=${form.decision ?? ''} onChange=${set('decision')}>
        <option value="">any</option>${['allow', 'deny', 'error'].map((d) => html`<option value=${d}>${d}</option>`)}</select></label>
      <label>From <input type="datetime-local" name="since" value=${form.since ?? ''} onInput=${set('since')} /></label>
      <label>To <input type="datetime-local" name="until" value=${form.until ?? ''} onInput=${set('until')} /></label>
      <button type="submit" class="primary">Search</button>
    </form>
    <${Status} loading=${r.loading && !r.data} error=${r.error} />
    ${r.data && html`<p class="muted">${r.data.records.length} records (newest first, at most 200)</p><${AuditTable} records=${r.data.records} />`}`;
}
