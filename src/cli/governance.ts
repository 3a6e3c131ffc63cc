import type { Options } from './args.js';

/** The flags of the governance nouns (finding, playbook, report top|metrics), one set for all. */
export const GOVERNANCE_OPTIONS: Options = {
  markdown: { type: 'boolean' },
  nhi: { type: 'string' }, detection: { type: 'string' }, status: { type: 'string' }, 'min-severity': { type: 'string' }, limit: { type: 'string' },
  note: { type: 'string' }, until: { type: 'string' }, reason: { type: 'string' }, weeks: { type: 'string' },
};

export const FINDING_USAGE = `  mandate finding list [--nhi ID] [--detection D] [--status open|acknowledged|resolved] [--min-severity S] [--limit N]
  mandate finding show ID  |  mandate finding ack ID [--note N]  |  mandate finding resolve ID [--note N]
  mandate finding mute --nhi ID --detection D --until YYYY-MM-DD --reason R  |  mandate finding mutes  |  mandate finding unmute MUTE_ID`;

export const REPORT_GOVERNANCE_USAGE = `  mandate report top [--limit 20]              the riskiest NHIs and why
  mandate report metrics [--markdown] [--weeks N]   programme metrics and their weekly trend`;

export const PLAYBOOK_USAGE = '  mandate playbook actions [--nhi ID]  |  mandate playbook undo ACTION_ID   undo a step-down or disable';

/** The governance section of `mandate help`, also printed after an unknown finding or playbook verb. */
export const GOVERNANCE_USAGE = `Governance (over the admin API):
${FINDING_USAGE}
${REPORT_GOVERNANCE_USAGE}
${PLAYBOOK_USAGE}`;
