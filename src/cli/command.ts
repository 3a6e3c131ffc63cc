/** Where a command writes: stdout and stderr in the CLI, arrays in the tests. */
export interface Out {
  log: (s: string) => void;
  err: (s: string) => void;
}

export const stdio: Out = { log: (s) => process.stdout.write(`${s}\n`), err: (s) => process.stderr.write(`${s}\n`) };

/** What every command runs with. */
export interface Ctx {
  out: Out;
  env: NodeJS.ProcessEnv;
}

/** One noun of the `mandate` command (`mandate <name> …`), as the dispatch table in commands.ts lists them. */
export interface Command {
  readonly name: string;
  /** One line: what the noun is for, shown at the top of `mandate help <name>`. */
  readonly summary: string;
  /** The noun's usage lines, as `mandate help` lists them. */
  readonly usage: string;
  /** Runs `mandate <name> ...argv`; returns the exit code. */
  run(argv: string[], ctx: Ctx): Promise<number>;
}
