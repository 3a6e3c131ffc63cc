import { existsSync } from 'node:fs';
import { buildConfig, loadConfigFile, type MandateConfig } from '../core/index.js';
import { CliError, EXIT } from './errors.js';

/** `--config`, else MANDATE_CONFIG, else ./mandate.yaml when it exists. */
export function configPath(flag: string | undefined, env: NodeJS.ProcessEnv): string | undefined {
  if (flag) return flag;
  if (env.MANDATE_CONFIG) return env.MANDATE_CONFIG;
  return existsSync('mandate.yaml') ? 'mandate.yaml' : undefined;
}

/** The config the command runs with; without a file, the defaults (or a usage error when one is `required`). */
export function loadConfig(flag: string | undefined, env: NodeJS.ProcessEnv, required: boolean): Readonly<MandateConfig> {
  const path = configPath(flag, env);
  if (!path) {
    if (required) throw new CliError('no config: pass --config FILE, set MANDATE_CONFIG, or create ./mandate.yaml', EXIT.usage);
    return buildConfig({}, { env });
  }
  return loadConfigFile(path, { env });
}
