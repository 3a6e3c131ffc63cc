import { invoke, verbOf } from '../admin-noun.js';
import { AdminClient } from '../admin-client.js';
import { parse, str } from '../args.js';
import type { Command, Ctx } from '../command.js';
import { loadConfig } from '../config-file.js';
import { CliError, EXIT } from '../errors.js';
import { GOVERNANCE_OPTIONS, REPORT_GOVERNANCE_USAGE } from '../governance.js';
import { metricsReport, mttrReport, profilesReport, topReport, type MttrBody } from '../report-format.js';

/** The report lines of the admin section of `mandate help` (top and metrics are in the governance section). */
export const REPORT_ADMIN_USAGE = `  mandate report profiles [--config FILE] [--markdown]   the token profile catalogue (no server needed)
  mandate report mttr [--since ISO] [--limit N]  time to revoke: signal → applied at every instance, → first refused call`;

const WRONG_VERB = 'usage: mandate report profiles [--config FILE] [--markdown] [--json]\n       mandate report top|metrics [--json]\n       mandate report mttr [--since ISO] [--limit N] [--json]';

/** Each verb parses its own flags. */
const VERBS: Readonly<Record<string, (argv: string[], ctx: Ctx) => Promise<number>>> = {
  /** The token profile catalogue, from the config (no server). */
  profiles: async (argv, { out, env }) => {
    const { values } = parse(argv, { markdown: { type: 'boolean' } });
    const cfg = loadConfig(str(values, 'config'), env, false);
    out.log(profilesReport(cfg, values.json ? 'json' : values.markdown ? 'markdown' : 'table'));
    return EXIT.ok;
  },
  /** Time to revoke over the admin API (GET /admin/v1/reports/mttr). */
  mttr: async (argv, { out, env }) => {
    const { values } = parse(argv, { since: { type: 'string' }, limit: { type: 'string' } });
    let since: string | undefined;
    const sinceFlag = str(values, 'since');
    if (sinceFlag !== undefined) {
      const t = Date.parse(sinceFlag);
      if (Number.isNaN(t)) throw new CliError('--since must be an ISO 8601 time, e.g. 2026-01-31T00:00:00Z', EXIT.usage);
      since = String(t);
    }
    const client = AdminClient.from({ url: str(values, 'url'), token: str(values, 'token') }, env);
    const r = (await client.call('GET', '/reports/mttr', { query: { since, limit: str(values, 'limit') } })) as MttrBody;
    out.log(values.json ? JSON.stringify(r, null, 2) : mttrReport(r));
    return EXIT.ok;
  },
  /** The riskiest NHIs and why. */
  top: async (argv, ctx) => {
    const { client, s, print } = invoke('report', 'top', argv, GOVERNANCE_OPTIONS, ctx);
    const r = (await client.call('GET', '/risk', { query: { limit: s('limit') ?? '20' } })) as { scores: Parameters<typeof topReport>[0] };
    print(r, () => topReport(r.scores));
    return EXIT.ok;
  },
  /** Programme metrics and their weekly trend. */
  metrics: async (argv, ctx) => {
    const { client, s, values, print } = invoke('report', 'metrics', argv, GOVERNANCE_OPTIONS, ctx);
    const r = (await client.call('GET', '/metrics/programme', { query: { weeks: s('weeks') } })) as Parameters<typeof metricsReport>[0];
    print(r, () => metricsReport(r, values.markdown ? 'markdown' : 'table'));
    return EXIT.ok;
  },
};

/** `mandate report`: the reports, offline (profiles) or over the admin API (mttr, top, metrics). */
export const report: Command = {
  name: 'report',
  summary: 'reports: token profiles (no server needed), time to revoke, the riskiest NHIs, programme metrics',
  usage: `${REPORT_ADMIN_USAGE}\n${REPORT_GOVERNANCE_USAGE}`,
  run: async ([verb, ...rest], ctx) => {
    const run = verbOf(VERBS, verb);
    if (!run) throw new CliError(WRONG_VERB, EXIT.usage);
    return run(rest, ctx);
  },
};
