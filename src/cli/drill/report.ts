/** The drill's report: what it records as it goes, the verdict, and the files it writes. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { drillMarkdown } from './format.js';

export interface DrillStep {
  at: number;
  step: string;
  actor: 'legit' | 'attacker' | 'drill';
  proxy?: string;
  status?: number;
  error?: string | null;
  description?: string | null;
  /** An attacker call the proxy answered 2xx. */
  through?: boolean;
}

export interface ProxyContainment {
  proxy: string;
  /** The legitimate token passed here before containment. */
  legit_passed: boolean;
  /** When the drill first saw this proxy refuse the legitimate token as revoked (epoch ms, drill clock). */
  first_denied_at: number | null;
  /** The last time it still passed, if it did after the attack. */
  last_passed_at: number | null;
  denied_after_signal_ms: number | null;
  description: string | null;
  probes: number;
}

export interface DrillReport {
  drill: 'token-theft';
  run_id: string;
  nhi: string;
  ok: boolean;
  verdict: string;
  started_at: number;
  finished_at: number | null;
  url: string;
  issuer: string | null;
  proxies: string[];
  tool: string;
  other_tool: string;
  action: string | null;
  playbooks: { checked: boolean; suitable: string[]; note: string };
  legit_ok: boolean;
  attacker: { calls: number; through: number; before_containment: { calls: number; through: number }; after_containment: { calls: number; through: number } };
  detection: {
    detected: boolean; finding_id: string | null; severity: string | null; title: string | null;
    first_attack_at: number | null; raised_at: number | null; observed_at: number | null; time_to_detect_ms: number | null;
  };
  containment: {
    contained: boolean; mode: 'playbook' | 'manual' | 'none'; detection_driven: boolean; note: string;
    signal: { id: string; source: string; action: string; status: string; received_at: number; applied_at: number | null; playbook: string | null } | null;
    per_proxy: ProxyContainment[];
    time_to_contain_ms: number | null;
    server: { instances: number; applied_everywhere_ms: number | null; first_denial_ms: number | null } | null;
  };
  steps: DrillStep[];
  cleanup: Array<{ what: string; ok: boolean; error?: string }>;
  problems: string[];
  files: { markdown: string; json: string } | null;
}

/** A report with nothing measured yet. */
export function newReport(o: { runId: string; nhi: string; url: string; proxies: string[]; tool: string; otherTool: string }): DrillReport {
  return {
    drill: 'token-theft', run_id: o.runId, nhi: o.nhi, ok: false, verdict: 'not run', started_at: Date.now(), finished_at: null,
    url: o.url, issuer: null, proxies: o.proxies, tool: o.tool, other_tool: o.otherTool, action: null,
    playbooks: { checked: false, suitable: [], note: '' }, legit_ok: false,
    attacker: { calls: 0, through: 0, before_containment: { calls: 0, through: 0 }, after_containment: { calls: 0, through: 0 } },
    detection: { detected: false, finding_id: null, severity: null, title: null, first_attack_at: null, raised_at: null, observed_at: null, time_to_detect_ms: null },
    containment: { contained: false, mode: 'none', detection_driven: false, note: '', signal: null, per_proxy: [], time_to_contain_ms: null, server: null },
    steps: [], cleanup: [], problems: [], files: null,
  };
}

/** The totals, the verdict and the end time, once the drill has run and cleaned up. */
export function conclude(report: DrillReport): void {
  report.attacker.calls = report.attacker.before_containment.calls + report.attacker.after_containment.calls;
  report.attacker.through = report.attacker.before_containment.through + report.attacker.after_containment.through;
  report.ok = report.legit_ok && report.containment.contained && report.attacker.through === 0 && report.attacker.after_containment.calls > 0;
  report.verdict = report.ok
    ? `CONTAINED: ${report.attacker.through} attacker calls through; every proxy (${report.containment.per_proxy.length}) refused the stolen token${report.containment.detection_driven ? '' : ' (manual containment: detection-driven containment not exercised)'}`
    : `NOT CONTAINED: ${[
      !report.legit_ok ? 'the legitimate call did not pass' : '',
      report.attacker.through ? `${report.attacker.through} attacker call(s) got through` : '',
      report.legit_ok && !report.containment.contained ? report.containment.note : '',
    ].filter(Boolean).join('; ') || report.problems.join('; ')}`;
  report.finished_at = Date.now();
  // Server-stamped steps (detection, signal) were added when the drill learnt of them: in time order for the report.
  report.steps.sort((a, b) => a.at - b.at);
}

/** Writes drill-<run>.json and drill-<run>.md under `outDir`; a failure to write is a problem in the report, not an exception. */
export function writeReportFiles(report: DrillReport, outDir: string): void {
  try {
    mkdirSync(outDir, { recursive: true });
    const base = join(outDir, `drill-${report.run_id}`);
    report.files = { markdown: `${base}.md`, json: `${base}.json` };
    writeFileSync(`${base}.json`, `${JSON.stringify(report, null, 2)}\n`);
    writeFileSync(`${base}.md`, drillMarkdown(report));
  } catch (err) {
    report.files = null;
    report.problems.push(`the report files could not be written: ${(err as Error).message}`);
  }
}
