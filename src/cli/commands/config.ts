import { parse, str } from '../args.js';
import type { Command } from '../command.js';
import { loadConfig } from '../config-file.js';
import { CliError, EXIT } from '../errors.js';

/** `mandate config check`: does the config file validate? */
export const config: Command = {
  name: 'config',
  summary: 'validate a config file (no server needed)',
  usage: '  mandate config check [--config FILE]         validate a config file',
  run: async (argv, { out, env }) => {
    const [verb, ...rest] = argv;
    if (verb !== 'check') throw new CliError('usage: mandate config check [--config FILE]', EXIT.usage);
    const { values } = parse(rest, {});
    const cfg = loadConfig(str(values, 'config'), env, true);
    out.log(values.json ? JSON.stringify({ ok: true }) : `ok: ${cfg.nhis.length} NHIs, ${cfg.tools.length} tools, ${cfg.grants.length} grants, ${cfg.trust.length} trust entries`);
    return EXIT.ok;
  },
};
