/** The text of `mandate help` (every command, by section) and of `mandate help <noun>`. */
import { VERSION } from '../app.js';
import type { Command } from './command.js';
import { ADMIN_CREDENTIAL_USAGE } from './commands/admin-credential.js';
import { approval } from './commands/approval.js';
import { audit } from './commands/audit.js';
import { config } from './commands/config.js';
import { DRILL_USAGE } from './commands/drill.js';
import { grant } from './commands/grant.js';
import { keys } from './commands/keys.js';
import { kill } from './commands/kill.js';
import { lint } from './commands/lint.js';
import { migrate } from './commands/migrate.js';
import { nhi } from './commands/nhi.js';
import { policy } from './commands/policy.js';
import { REPORT_ADMIN_USAGE } from './commands/report.js';
import { revoke } from './commands/revoke.js';
import { serve } from './commands/serve.js';
import { signal } from './commands/signal.js';
import { ssf } from './commands/ssf.js';
import { token } from './commands/token.js';
import { tool } from './commands/tool.js';
import { up } from './commands/up.js';
import { GOVERNANCE_USAGE } from './governance.js';

const FOOTER = `Every command takes --json. Exit codes: 0 ok, 1 failed or problems found, 2 usage or config error,
3 Mandate unreachable, 4 not authorized.`;

const lines = (cs: Command[]) => cs.map((c) => c.usage).join('\n');

/** `mandate help`: every command. */
export const USAGE = `mandate ${VERSION}: bounded autonomy for AI agents and other non-human identities

Run:
${lines([up, serve, migrate, config, policy, lint])}

Admin (over the admin API; MANDATE_URL, MANDATE_TOKEN or --url, --token):
${lines([nhi, tool, grant, audit, keys, token, revoke, kill, approval, signal, ssf])}
${REPORT_ADMIN_USAGE}

${ADMIN_CREDENTIAL_USAGE}

${GOVERNANCE_USAGE}

${DRILL_USAGE}

${FOOTER}`;

/** `mandate help <noun>`, `mandate <noun> --help`: one noun's usage. */
export function nounHelp(c: Command): string {
  return `mandate ${c.name}: ${c.summary}\n\n${c.usage}\n\n${FOOTER}`;
}
