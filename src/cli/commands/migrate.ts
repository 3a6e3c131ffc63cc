import { runMigrations } from '../../app.js';
import { parse, str } from '../args.js';
import type { Command } from '../command.js';
import { loadConfig } from '../config-file.js';
import { EXIT } from '../errors.js';

/** `mandate migrate`: bring the store's schema up to date. */
export const migrate: Command = {
  name: 'migrate',
  summary: "apply the store's migrations",
  usage: '  mandate migrate --config FILE                apply store migrations',
  run: async (argv, { out, env }) => {
    const { values } = parse(argv, {});
    const applied = await runMigrations(loadConfig(str(values, 'config'), env, true), env);
    out.log(applied.length ? `applied: ${applied.join(', ')}` : 'store is up to date');
    return EXIT.ok;
  },
};
