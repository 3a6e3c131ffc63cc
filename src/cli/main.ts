import { VERSION } from '../app.js';
import { ConfigError } from '../core/index.js';
import { LintUsageError } from '../governance/lint/index.js';
import { wantsHelp } from './args.js';
import { stdio, type Out } from './command.js';
import { COMMANDS } from './commands.js';
import { CliError, EXIT, UnknownCommand } from './errors.js';
import { nounHelp, USAGE } from './help.js';

/** Runs one CLI invocation; returns the exit code. Long-running commands resolve on shutdown. */
export async function main(argv: string[], out: Out = stdio, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const [noun, ...rest] = argv;
  try {
    if (noun === undefined || noun === 'help' || noun === '--help' || noun === '-h') {
      const about = noun === 'help' ? rest[0] : undefined;
      if (about === undefined) {
        out.log(USAGE);
        return noun === undefined ? EXIT.usage : EXIT.ok;
      }
      const c = COMMANDS.get(about);
      if (!c) throw new UnknownCommand(about);
      out.log(nounHelp(c));
      return EXIT.ok;
    }
    if (noun === '--version' || noun === 'version') {
      out.log(VERSION);
      return EXIT.ok;
    }
    const command = COMMANDS.get(noun);
    if (!command) throw new UnknownCommand([noun, rest[0]].filter(Boolean).join(' '));
    if (wantsHelp(rest)) {
      out.log(nounHelp(command));
      return EXIT.ok;
    }
    return await command.run(rest, { out, env });
  } catch (err) {
    return reportError(err, out);
  }
}

/** A failure as the user sees it: one line on stderr (and what to type, for usage errors) and its exit code. */
function reportError(err: unknown, out: Out): number {
  if (err instanceof ConfigError) {
    out.err(err.message);
    return EXIT.usage;
  }
  if (err instanceof UnknownCommand) {
    out.err(`mandate: ${err.message}\n\n${err.usage ?? USAGE}`);
    return err.exitCode;
  }
  if (err instanceof CliError) {
    out.err(`mandate: ${err.message}`);
    return err.exitCode;
  }
  if (err instanceof LintUsageError) {
    out.err(`mandate: ${err.message}`);
    return EXIT.usage;
  }
  if (err instanceof TypeError && (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    out.err(`mandate: ${err.message}\n\n${USAGE}`);
    return EXIT.usage;
  }
  throw err;
}
