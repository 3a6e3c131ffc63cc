/** Human tables: columns padded to the widest cell, a header row, no borders. */
export function table(rows: Record<string, unknown>[], columns: string[]): string {
  if (rows.length === 0) return '(none)';
  const cells = rows.map((r) => columns.map((c) => cell(r[c])));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(columns.map((c) => c.toUpperCase())), ...cells.map(line)].join('\n');
}

export function cell(v: unknown): string {
  if (v === null || v === undefined) return '-';
  if (Array.isArray(v)) return v.join(',');
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/** `key: value` lines for one record. */
export function details(rec: Record<string, unknown>, keys?: string[]): string {
  const ks = keys ?? Object.keys(rec);
  const w = Math.max(...ks.map((k) => k.length));
  return ks.map((k) => `${k.padEnd(w)}  ${cell(rec[k])}`).join('\n');
}

export function isoTime(ms: unknown): string {
  return typeof ms === 'number' ? new Date(ms).toISOString() : '-';
}

/** A duration in milliseconds, `-` when there is none. */
export function millis(x: number | null): string {
  return x === null ? '-' : `${x} ms`;
}
