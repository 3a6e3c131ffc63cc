import type { Finding } from './rules.js';

/** One line per finding (`file:line:col  rule  message`), then a summary line. */
export function formatFindings(findings: readonly Finding[]): string {
  if (findings.length === 0) return 'ok: no findings';
  const lines = findings.map((f) => `${f.file}:${f.line}:${f.column}  ${f.level}  ${f.ruleId}  ${f.message}`);
  const counts = new Map<string, number>();
  for (const f of findings) counts.set(f.ruleId, (counts.get(f.ruleId) ?? 0) + 1);
  lines.push('', `${findings.length} finding${findings.length === 1 ? '' : 's'}: ${[...counts].map(([id, n]) => `${id} ${n}`).join(', ')}`);
  return lines.join('\n');
}
