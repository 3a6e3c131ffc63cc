import { MandateError } from '../core/index.js';

/** Exit codes scripts can rely on. */
export const EXIT = { ok: 0, failed: 1, usage: 2, unreachable: 3, unauthorized: 4 } as const;

/** A failure the CLI reports as `mandate: <message>` and exits with `exitCode`. */
export class CliError extends MandateError {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super('ERR_CLI', message);
  }
}

/**
 * A noun or verb the CLI does not know. `usage` is the text printed after the message; without
 * one, main prints the overview of every command (which a command file cannot import: the
 * overview is built from the command files).
 */
export class UnknownCommand extends CliError {
  constructor(
    readonly words: string,
    readonly usage?: string,
  ) {
    super(`unknown command "${words}"`, EXIT.usage);
  }
}
