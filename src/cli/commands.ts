/** The dispatch table: every noun of the `mandate` command and the module that runs it. */
import type { Command } from './command.js';
import { adminCredential } from './commands/admin-credential.js';
import { approval } from './commands/approval.js';
import { audit } from './commands/audit.js';
import { config } from './commands/config.js';
import { drill } from './commands/drill.js';
import { finding } from './commands/finding.js';
import { grant } from './commands/grant.js';
import { keys } from './commands/keys.js';
import { kill } from './commands/kill.js';
import { lint } from './commands/lint.js';
import { migrate } from './commands/migrate.js';
import { nhi } from './commands/nhi.js';
import { playbook } from './commands/playbook.js';
import { policy } from './commands/policy.js';
import { report } from './commands/report.js';
import { revoke } from './commands/revoke.js';
import { serve } from './commands/serve.js';
import { signal } from './commands/signal.js';
import { ssf } from './commands/ssf.js';
import { token } from './commands/token.js';
import { tool } from './commands/tool.js';
import { up } from './commands/up.js';

export const COMMANDS: ReadonlyMap<string, Command> = new Map(
  [
    up, serve, migrate, config, policy, lint, report,
    nhi, tool, grant, audit, keys, token, revoke, kill, approval, signal, ssf,
    adminCredential, finding, playbook, drill,
  ].map((c) => [c.name, c]),
);
