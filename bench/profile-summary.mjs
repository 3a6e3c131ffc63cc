// Summarizes a V8 .cpuprofile (node --cpu-prof): top functions by self time, self time by
// package / module, and inclusive time of the project's own functions.
//
//   node bench/profile-summary.mjs <file.cpuprofile> [topN]
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

function where(url) {
  if (!url) return '';
  const u = url.replace(/^file:\/\//, '');
  const nm = u.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = u.slice(nm + 14).split('/');
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  const src = u.indexOf('/dist/src/');
  if (src >= 0) return `mandate:${u.slice(src + 10)}`;
  if (u.startsWith('node:')) return u;
  return u;
}

/** Package (or node builtin module, or Mandate module directory) a frame belongs to. */
function bucket(frame) {
  const w = where(frame.url);
  if (!w) return frame.functionName.startsWith('(') ? frame.functionName : '(native / V8 builtins)';
  if (w.startsWith('mandate:')) return `mandate/${w.slice(8).split('/').slice(0, -1).join('/') || '.'}`;
  if (w.startsWith('node:internal/crypto') || w === 'node:internal/worker/js_transferable') return 'node:crypto';
  if (w.startsWith('node:internal/modules')) return 'node:modules (start-up)';
  if (w.startsWith('node:')) return 'node:other';
  return w;
}

/** A coarse category for a bucket: where the time goes, in words. */
function category(b) {
  if (b === 'node:crypto' || b === 'jose') return 'crypto (WebCrypto, jose)';
  if (b === 'kysely' || b === 'better-sqlite3' || b === 'mandate/store') return 'store (kysely, better-sqlite3, SQLite)';
  if (b === 'mandate/audit') return 'audit';
  if (b.startsWith('mandate/')) return `mandate (other: ${b.slice(8)})`;
  if (b === '(garbage collector)') return 'GC';
  if (b === 'node:modules (start-up)') return 'module loading (start-up)';
  if (b === 'oidc-provider') return 'oidc-provider';
  if (['koa', 'delegates', 'type-is', 'mime-types', 'ee-first', 'on-finished', 'vary', 'content-type', 'raw-body', 'koa-compose', 'statuses', 'http-errors', 'accepts', 'negotiator', 'cookies', 'keygrip'].includes(b)) return 'koa (oidc-provider)';
  if (b === 'node:other') return 'node (http, streams, timers, …)';
  return 'other';
}

export function summarizeProfile(file) {
  const p = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map();
  const parent = new Map();
  for (const n of p.nodes) byId.set(n.id, n);
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const key = (n) => {
    const f = n.callFrame;
    return `${f.functionName || '(anonymous)'} ${where(f.url)}${f.url ? `:${f.lineNumber + 1}` : ''}`;
  };
  const self = new Map();
  const incl = new Map();
  const pkg = new Map();
  const cat = new Map();
  let total = 0;
  let idle = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const dt = (p.timeDeltas[i + 1] ?? p.timeDeltas[i] ?? 0) / 1000; // ms attributed to sample i
    const n = byId.get(p.samples[i]);
    if (!n) continue;
    if (n.callFrame.functionName === '(idle)') {
      idle += dt;
      continue;
    }
    total += dt;
    const k = key(n);
    self.set(k, (self.get(k) ?? 0) + dt);
    // Native frames (no URL) count towards the nearest caller that has one.
    let owner = n;
    while (!owner.callFrame.url && !owner.callFrame.functionName.startsWith('(') && parent.has(owner.id)) owner = byId.get(parent.get(owner.id));
    const b = bucket(owner.callFrame.url ? owner.callFrame : n.callFrame);
    pkg.set(b, (pkg.get(b) ?? 0) + dt);
    const c = category(b);
    cat.set(c, (cat.get(c) ?? 0) + dt);
    const seen = new Set();
    for (let id = n.id; id !== undefined; id = parent.get(id)) {
      const m = byId.get(id);
      const mk = key(m);
      if (seen.has(mk)) continue;
      seen.add(mk);
      incl.set(mk, (incl.get(mk) ?? 0) + dt);
    }
  }
  const rows = (m) => [...m].sort((a, b) => b[1] - a[1]).map(([name, ms]) => ({ name, ms: +ms.toFixed(1), pct: +((100 * ms) / total).toFixed(1) }));
  return {
    busy_ms: +total.toFixed(0),
    idle_ms: +idle.toFixed(0),
    top: rows(self),
    byPackage: rows(pkg),
    byCategory: rows(cat),
    mandateInclusive: rows(incl).filter((r) => r.name.includes(' mandate:')),
  };
}

export function formatProfile(s, topN = 25) {
  const line = (r) => `  ${r.pct.toFixed(1).padStart(5)}%  ${r.ms.toFixed(0).padStart(7)} ms  ${r.name}`;
  return [
    `busy ${s.busy_ms} ms, idle ${s.idle_ms} ms (percentages are of busy time)`,
    'top self time:',
    ...s.top.slice(0, topN).map(line),
    'self time by category (native frames count towards their nearest JS caller):',
    ...s.byCategory.map(line),
    'self time by package / module:',
    ...s.byPackage.slice(0, 15).map(line),
    'inclusive time, Mandate functions:',
    ...s.mandateInclusive.slice(0, topN).map(line),
  ].join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: node bench/profile-summary.mjs <file.cpuprofile> [topN]');
    process.exit(2);
  }
  console.log(formatProfile(summarizeProfile(file), Number(process.argv[3] ?? 25)));
}
