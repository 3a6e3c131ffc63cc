import { loadConfigFile } from '../../core/index.js';
import { startApp } from '../../app.js';
import { parse, str } from '../args.js';
import type { Command } from '../command.js';
import { configPath } from '../config-file.js';
import { startDemo } from '../demo.js';
import { runUntilSignal } from '../run-until-signal.js';

/** `mandate up`: everything in one process; the demo when there is no config. */
export const up: Command = {
  name: 'up',
  summary: 'Mandate in one process (SQLite, in-process bus); the demo when there is no config',
  usage: '  mandate up [--config FILE] [--port N]        all-in-one (SQLite, in-process bus); a demo when no config',
  run: async (argv, { out, env }) => {
    const { values } = parse(argv, { port: { type: 'string' } });
    const path = configPath(str(values, 'config'), env);
    const port = str(values, 'port');
    const portEnv = port ? { MANDATE_SERVER__PORT: port } : {};
    if (path) {
      const config = loadConfigFile(path, { env: { ...env, ...portEnv } });
      const app = await startApp({ config, env });
      out.log(`Mandate is up at ${app.url} (config ${path})`);
      return runUntilSignal(app, out);
    }
    const demo = await startDemo({ env: { ...env, ...portEnv }, dataDir: '.mandate' });
    const app = await startApp({ config: demo.config, env: demo.env });
    out.log(demo.tryThis(app.url));
    return runUntilSignal(app, out, demo.close);
  },
};
