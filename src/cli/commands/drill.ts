import { resolve } from 'node:path';
import { DEFAULT_URL } from '../admin-client.js';
import { parse, str } from '../args.js';
import type { Command, Ctx } from '../command.js';
import { drillSummary } from '../drill/format.js';
import { stripSlash } from '../drill/http.js';
import { runTokenTheftDrill } from '../drill/scenario.js';
import { CliError, EXIT } from '../errors.js';

export const DRILL_USAGE = `Drills (over the public and admin APIs; docs/drill.md):
  mandate drill token-theft [--url URL] [--token T] [--proxy URL ...] [--tool ID] [--other-tool ID]
                            [--owner O] [--out DIR] [--timeout S] [--poll-ms N] [--contain-manually] [--json]
                                               a stolen DPoP-bound token: detected? contained at every proxy?
                                               exit 0 contained with 0 attacker calls through, 1 otherwise`;

export const drill: Command = {
  name: 'drill',
  summary: 'exercises against a running Mandate: a stolen token, detected and contained? (docs/drill.md)',
  usage: DRILL_USAGE,
  run: runDrill,
};

/** `mandate drill token-theft …`: the flags turned into the drill's options; the summary (or --json, the report) on stdout. */
async function runDrill([verb, ...argv]: string[], { out, env }: Ctx): Promise<number> {
  if (verb !== 'token-theft') throw new CliError(`unknown drill "${verb ?? ''}"\n\n${DRILL_USAGE}`, EXIT.usage);
  const { values, positionals } = parse(argv, {
    proxy: { type: 'string', multiple: true }, tool: { type: 'string' }, 'other-tool': { type: 'string' }, owner: { type: 'string' },
    out: { type: 'string' }, timeout: { type: 'string' }, 'poll-ms': { type: 'string' }, 'contain-manually': { type: 'boolean' },
    'run-id': { type: 'string' },
  });
  const v = (k: string) => str(values, k);
  if (positionals.length) throw new CliError(`mandate drill token-theft takes no positional arguments (got "${positionals[0]}")`, EXIT.usage);
  const url = stripSlash(v('url') ?? env.MANDATE_URL ?? DEFAULT_URL);
  const proxies = ((values.proxy as string[] | undefined) ?? [url]).map(stripSlash);
  for (const u of [url, ...proxies]) {
    if (!/^https?:\/\/[^/]+/.test(u)) throw new CliError(`not an http(s) URL: "${u}"`, EXIT.usage);
  }
  const timeoutS = v('timeout') === undefined ? 30 : Number(v('timeout'));
  if (!Number.isFinite(timeoutS) || timeoutS <= 0 || timeoutS > 3600) throw new CliError('--timeout must be seconds, more than 0 and at most 3600', EXIT.usage);
  const pollMs = v('poll-ms') === undefined ? 25 : Number(v('poll-ms'));
  if (!Number.isInteger(pollMs) || pollMs < 1 || pollMs > 10_000) throw new CliError('--poll-ms must be an integer from 1 to 10000', EXIT.usage);
  const runId = v('run-id');
  if (runId !== undefined && !/^[a-z0-9]{4,16}$/.test(runId)) throw new CliError('--run-id must be 4 to 16 lower-case letters or digits', EXIT.usage);
  const owner = v('owner') ?? 'security-drill';
  if (!owner.trim()) throw new CliError('--owner must not be empty', EXIT.usage);
  const json = values.json === true;

  const report = await runTokenTheftDrill({
    url, token: v('token') ?? env.MANDATE_TOKEN, proxies, tool: v('tool') ?? 'drill', otherTool: v('other-tool') ?? 'drill-other', owner,
    outDir: resolve(v('out') ?? '.'), timeoutMs: timeoutS * 1000, pollMs, containManually: values['contain-manually'] === true,
    ...(runId !== undefined ? { runId } : {}),
    progress: json ? undefined : (s) => out.err(s),
  });
  out.log(json ? JSON.stringify(report, null, 2) : drillSummary(report));
  return report.ok ? EXIT.ok : EXIT.failed;
}

