import { startApp, type Role } from '../../app.js';
import { parse, str } from '../args.js';
import type { Command } from '../command.js';
import { loadConfig } from '../config-file.js';
import { CliError, EXIT } from '../errors.js';
import { runUntilSignal } from '../run-until-signal.js';

const ROLES = ['all', 'broker', 'proxy', 'signals'];

/** `mandate serve`: one production instance in a role. */
export const serve: Command = {
  name: 'serve',
  summary: 'one instance of Mandate, in a role, from a config file',
  usage: `  mandate serve --role all|broker|proxy|signals --config FILE [--json]
                                               --json: print one line {ready, role, url, issuer, instance, pid}`,
  run: async (argv, { out, env }) => {
    const { values } = parse(argv, { role: { type: 'string', default: 'all' } });
    const role = values.role as string;
    if (!ROLES.includes(role)) throw new CliError(`--role must be all, broker, proxy or signals (got "${role}")`, EXIT.usage);
    const config = loadConfig(str(values, 'config'), env, true);
    const app = await startApp({ config, env, role: role as Role });
    // --json: one machine-readable line, for supervisors and tests that start instances on port 0.
    out.log(values.json
      ? JSON.stringify({ ready: true, role, url: app.url, issuer: app.issuer, instance: app.instanceId, pid: process.pid })
      : `Mandate (${role}) is up at ${app.url}`);
    return runUntilSignal(app, out);
  },
};
