import { html } from '../html.js';
import { Panel, Status, duration, useApi } from '../ui.js';

interface Catalog {
  max_ttl: number; dpop_nonce: string;
  profiles: Array<{ name: string; description: string | null; ttl: number; binding: string; approval: boolean }>;
  actions: Array<{ tool: string; action: string; tier: string }>;
}

/** The token profile catalog: what each tier means, and which declared actions fall in it. */
export function Profiles() {
  const r = useApi<Catalog>('/token-profiles');
  const c = r.data;
  return html`<h1>Token profiles</h1>
    <${Status} loading=${r.loading} error=${r.error} />
    ${c && html`<p>Ordered from least to most dangerous. No token lives longer than ${duration(c.max_ttl)}; DPoP nonces are ${c.dpop_nonce}.</p>
      <table><thead><tr><th scope="col">Profile</th><th scope="col">TTL</th><th scope="col">Binding</th><th scope="col">Human approval</th><th scope="col">Actions</th><th scope="col">Description</th></tr></thead>
      <tbody>${c.profiles.map((p) => html`<tr><th scope="row">${p.name}</th><td>${duration(p.ttl)}</td><td>${p.binding}</td><td>${p.approval ? 'every call' : 'no'}</td>
        <td>${c.actions.filter((a) => a.tier === p.name).map((a) => `${a.tool}.${a.action}`).join(', ')}</td><td>${p.description ?? ''}</td></tr>`)}</tbody></table>
      <${Panel} title="Declared actions">
        <table><thead><tr><th scope="col">Tool</th><th scope="col">Action</th><th scope="col">Tier</th></tr></thead>
        <tbody>${c.actions.map((a) => html`<tr><td>${a.tool}</td><td>${a.action}</td><td>${a.tier}</td></tr>`)}</tbody></table>
      <//>`}`;
}
