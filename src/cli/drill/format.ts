/** The drill's report as people read it: the summary on stdout and the Markdown file. */
import { millis as ms } from '../format.js';
import type { DrillReport } from './report.js';

const iso = (x: number | null) => (x === null ? '-' : new Date(x).toISOString());

/** The human summary on stdout. */
export function drillSummary(r: DrillReport): string {
  const c = r.containment;
  return [
    `mandate drill token-theft, run ${r.run_id} (NHI ${r.nhi}, tool ${r.tool}.${r.action ?? '?'}, ${r.proxies.length} prox${r.proxies.length === 1 ? 'y' : 'ies'})`,
    `  playbooks:         ${r.playbooks.note}`,
    `  legit call:        ${r.legit_ok ? 'passed at every proxy' : 'FAILED'}`,
    `  attacker calls:    ${r.attacker.calls} (${r.attacker.before_containment.calls} before, ${r.attacker.after_containment.calls} after containment), ${r.attacker.through} through`,
    `  time to detect:    ${r.detection.detected ? `${ms(r.detection.time_to_detect_ms)} (${r.detection.severity} ${r.detection.finding_id})` : 'NOT DETECTED'}`,
    `  time to contain:   ${c.contained ? `${ms(c.time_to_contain_ms)} from signal ${c.signal!.id} to a refusal at every proxy` : 'NOT CONTAINED'} (${c.mode}${c.detection_driven ? ', detection-driven' : ''})`,
    ...c.per_proxy.map((p) => `    ${p.proxy}: ${p.first_denied_at === null ? 'still accepted the token' : `refused ${ms(p.denied_after_signal_ms)} after the signal`}`),
    ...(c.server ? [`  server timeline:   applied at ${c.server.instances} instance(s) within ${ms(c.server.applied_everywhere_ms)}, first refusal ${ms(c.server.first_denial_ms)} after the signal`] : []),
    `  cleanup:           ${r.cleanup.length ? r.cleanup.map((x) => `${x.ok ? '' : 'FAILED '}${x.what}`).join('; ') : 'nothing was created'}`,
    ...r.problems.map((p) => `  problem:           ${p}`),
    ...(r.files ? [`  report:            ${r.files.markdown}, ${r.files.json}`] : []),
    `RESULT: ${r.verdict}`,
  ].join('\n');
}

/** The Markdown report. */
export function drillMarkdown(r: DrillReport): string {
  const c = r.containment;
  const esc = (s: unknown) => String(s ?? '-').replace(/\|/g, '\\|').replace(/\n/g, ' ');
  return [
    `# Token-theft drill ${r.run_id}`,
    '',
    `**${r.ok ? 'PASS' : 'FAIL'}**: ${r.verdict}`,
    '',
    `- Started ${iso(r.started_at)}, finished ${iso(r.finished_at)}`,
    `- Mandate: ${r.url} (issuer ${r.issuer ?? '-'}); proxies: ${r.proxies.join(', ')}`,
    `- Drill NHI \`${r.nhi}\`, tool \`${r.tool}\` action \`${r.action ?? '-'}\`, other tool \`${r.other_tool}\``,
    `- Playbooks: ${r.playbooks.note}`,
    '',
    '## Measures',
    '',
    '| Measure | Value |',
    '|---|---|',
    `| Legitimate call passed at every proxy | ${r.legit_ok ? 'yes' : 'no'} |`,
    `| Attacker calls (before / after containment) | ${r.attacker.calls} (${r.attacker.before_containment.calls} / ${r.attacker.after_containment.calls}) |`,
    `| Attacker calls through (2xx) | **${r.attacker.through}** |`,
    `| Time to detect (first attacker call → detection.raised) | ${r.detection.detected ? ms(r.detection.time_to_detect_ms) : 'not detected'} |`,
    `| Finding | ${esc(r.detection.finding_id)} ${esc(r.detection.severity)}: ${esc(r.detection.title)} |`,
    `| Containment | ${c.contained ? 'contained' : 'NOT contained'}, ${c.mode}${c.detection_driven ? ' (detection-driven)' : ''} |`,
    `| Revoke signal | ${c.signal ? `${c.signal.id} ${c.signal.action} from ${esc(c.signal.source)}, ${c.signal.status}` : '-'} |`,
    `| Time to contain (signal → refusal at every proxy) | ${ms(c.time_to_contain_ms)} |`,
    ...(c.server ? [`| Server timeline: applied at every instance / first refusal | ${ms(c.server.applied_everywhere_ms)} at ${c.server.instances} instance(s) / ${ms(c.server.first_denial_ms)} |`] : []),
    '',
    c.note,
    '',
    '## Each proxy',
    '',
    '| Proxy | Legit call passed | First refusal seen | After the signal | Probes | Refusal |',
    '|---|---|---|---|---|---|',
    ...c.per_proxy.map((p) => `| ${p.proxy} | ${p.legit_passed ? 'yes' : 'no'} | ${iso(p.first_denied_at)} | ${ms(p.denied_after_signal_ms)} | ${p.probes} | ${esc(p.description)} |`),
    '',
    '## Steps',
    '',
    '| Time | Who | Step | Proxy | Answer | Through |',
    '|---|---|---|---|---|---|',
    ...r.steps.map((s) => `| ${iso(s.at)} | ${s.actor} | ${esc(s.step)} | ${esc(s.proxy)} | ${s.status === undefined ? '' : `${s.status} ${esc(s.error ?? '')} ${esc(s.description ?? '')}`.trim()} | ${s.through === undefined ? '' : s.through ? '**yes**' : 'no'} |`),
    '',
    '## Cleanup',
    '',
    ...(r.cleanup.length ? r.cleanup.map((x) => `- ${x.ok ? 'done' : '**failed**'}: ${x.what}${x.error ? ` (${esc(x.error)})` : ''}`) : ['- nothing was created']),
    ...(r.problems.length ? ['', '## Problems', '', ...r.problems.map((p) => `- ${p}`)] : []),
    '',
    'Times are the drill\'s clock, except the signal\'s `received_at` and `detection.raised` (the server\'s); across machines they include clock skew.',
    '',
  ].join('\n');
}
