import { parseArgs, type ParseArgsConfig } from 'node:util';

export type Options = NonNullable<ParseArgsConfig['options']>;
export type Values = Record<string, string | boolean | string[] | undefined>;

/** The flags every command takes. */
export const COMMON = {
  json: { type: 'boolean' },
  url: { type: 'string' },
  token: { type: 'string' },
  config: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies Options;

/** Strict parsing of one command's flags (COMMON plus its own); positionals allowed. */
export function parse(argv: string[], options: Options): { values: Values; positionals: string[] } {
  const { values, positionals } = parseArgs({ args: argv, options: { ...COMMON, ...options }, allowPositionals: true, strict: true });
  return { values: values as Values, positionals };
}

/** A string flag's value, if it was given as one. */
export function str(values: Values, k: string): string | undefined {
  const v = values[k];
  return typeof v === 'string' ? v : undefined;
}

/** `--help` or `-h` anywhere among a noun's arguments: print its usage instead of running it. */
export function wantsHelp(argv: string[]): boolean {
  return argv.includes('--help') || argv.includes('-h');
}
