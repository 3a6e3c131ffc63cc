import { AdminClient } from './admin-client.js';
import { parse, str, type Options, type Values } from './args.js';
import type { Command, Ctx } from './command.js';
import { CliError, EXIT, UnknownCommand } from './errors.js';

/**
 * The flags of the admin-API nouns (nhi, tool, grant, audit, keys, token, kill, approval, signal,
 * ssf). They share one set: a flag a verb does not read is accepted and ignored.
 */
export const ADMIN_OPTIONS: Options = {
  id: { type: 'string' }, class: { type: 'string' }, owner: { type: 'string' }, system: { type: 'string' },
  environment: { type: 'string' }, tier: { type: 'string' }, status: { type: 'string' }, search: { type: 'string' },
  description: { type: 'string' }, reason: { type: 'string' }, nhi: { type: 'string' }, tool: { type: 'string' },
  actions: { type: 'string' }, 'change-ref': { type: 'string' }, type: { type: 'string' }, subject: { type: 'string' },
  decision: { type: 'string' }, 'trace-id': { type: 'string' }, limit: { type: 'string' }, name: { type: 'string' },
  role: { type: 'string' }, jti: { type: 'string' }, all: { type: 'boolean' }, active: { type: 'boolean' },
  action: { type: 'string' }, severity: { type: 'string' }, run: { type: 'string' }, credential: { type: 'string' },
  stream: { type: 'string' }, now: { type: 'boolean' },
};

/** One `mandate <noun> <verb> …` over the admin API: its flags, and the client and printer they name. */
export interface Invocation {
  noun: string;
  verb: string | undefined;
  values: Values;
  positionals: string[];
  client: AdminClient;
  json: boolean;
  /** A string flag's value. */
  s(k: string): string | undefined;
  /** A string flag the verb cannot do without. */
  need(k: string): string;
  /** The first positional: the id the verb acts on. */
  arg0(): string;
  /** The response as JSON with --json, else as `human()` renders it. */
  print(body: unknown, human: () => string): void;
}

/** Parses `argv` (what follows the verb) and builds the invocation. */
export function invoke(noun: string, verb: string | undefined, argv: string[], options: Options, ctx: Ctx): Invocation {
  const { values, positionals } = parse(argv, options);
  const s = (k: string) => str(values, k);
  const json = values.json === true;
  return {
    noun, verb, values, positionals, json, s,
    client: AdminClient.from({ url: s('url'), token: s('token') }, ctx.env),
    need: (k) => {
      const x = s(k);
      if (!x) throw new CliError(`--${k} is required for "${noun} ${verb}"`, EXIT.usage);
      return x;
    },
    arg0: () => {
      const x = positionals[0];
      if (!x) throw new CliError(`"${noun} ${verb}" needs an id`, EXIT.usage);
      return x;
    },
    print: (body, human) => ctx.out.log(json ? JSON.stringify(body, null, 2) : human()),
  };
}

export type Verb = (i: Invocation, ctx: Ctx) => Promise<number>;

/** A verb table's entry for `verb`, if it has one (never one inherited from Object). */
export function verbOf<T>(table: Readonly<Record<string, T>>, verb: string | undefined): T | undefined {
  return verb !== undefined && Object.hasOwn(table, verb) ? table[verb] : undefined;
}

/**
 * A noun whose verbs call the admin API: `mandate <name> <verb> [flags]`. The flags are parsed
 * before the verb is looked up, so a bad flag is reported as such whatever the verb.
 * `otherwise`: runs `mandate <name> …` when the first word is not a verb (`mandate kill --nhi ID`).
 * `unknownUsage`: what an unknown verb prints after its message (the overview of every command when absent).
 */
export function adminNoun(spec: {
  name: string;
  summary: string;
  usage: string;
  verbs: Readonly<Record<string, Verb>>;
  options?: Options;
  otherwise?: (argv: string[], ctx: Ctx) => Promise<number>;
  unknownUsage?: string;
}): Command {
  return {
    name: spec.name,
    summary: spec.summary,
    usage: spec.usage,
    run: async (argv, ctx) => {
      const [verb, ...rest] = argv;
      const i = invoke(spec.name, verb, rest, spec.options ?? ADMIN_OPTIONS, ctx);
      const run = verbOf(spec.verbs, verb);
      if (!run && spec.otherwise) return spec.otherwise(argv, ctx);
      if (!run) throw new UnknownCommand([spec.name, verb].filter(Boolean).join(' '), spec.unknownUsage);
      return run(i, ctx);
    },
  };
}
