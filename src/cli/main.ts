import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError, loadConfigFile, buildConfig, formatDuration, type MandateConfig } from '../core/index.js';
import { runMigrations, startApp, VERSION, type App, type Role } from '../app.js';
import { AdminClient, CliError, EXIT } from './admin-client.js';
import { details, isoTime, table } from './format.js';
import { startDemo } from './demo.js';
import { GOVERNANCE_USAGE, governanceCommand } from './governance.js';
import { DRILL_USAGE, drillCommand } from './drill.js';
import { ADMIN_CREDENTIAL_USAGE, adminCredentialCommand } from './admin-credential.js';
import { PolicyEngine, PolicyError, type PolicyRequest } from '../policy/index.js';
import { formatFindings, lintConfigText, LintUsageError, readAtRef, scanFiles, toSarif, type Finding } from '../governance/lint/index.js';

const USAGE = `mandate ${VERSION}: bounded autonomy for AI agents and other non-human identities

Run:
  mandate up [--config FILE] [--port N]        all-in-one (SQLite, in-process bus); a demo when no config
  mandate serve --role all|broker|proxy|signals --config FILE [--json]
                                               --json: print one line {ready, role, url, issuer, instance, pid}
  mandate migrate --config FILE                apply store migrations
  mandate config check [--config FILE]         validate a config file
  mandate policy check [--config FILE]         validate the Cedar policies of policy.files
  mandate policy test --nhi ID --tool ID --action NAME [--args JSON] [--risk N] [--approved]
                      [--on-behalf-of ID] [--run-id ID] [--time ISO] [--config FILE]
                                               decide one call offline: exit 0 allow, 1 deny or approval required
  mandate lint [--config FILE] [--base REF] [--scan PATH ...] [--json | --sarif FILE|-] [--today YYYY-MM-DD]
                                               CI check: no new long-lived secrets (docs/ci-lint.md); exit 1 on findings

Admin (over the admin API; MANDATE_URL, MANDATE_TOKEN or --url, --token):
  mandate nhi list [--class C] [--owner O] [--environment E] [--tier T] [--status S] [--search Q]
  mandate nhi show ID
  mandate nhi add --id ID --class agent|workload|runner|tool --owner O --system S --tier read|write|admin [--environment E]
  mandate nhi disable ID [--reason R]  |  mandate nhi enable ID
  mandate tool list  |  mandate tool show ID
  mandate grant list [--nhi ID] [--tool ID]
  mandate grant add --nhi ID --tool ID --actions a,b [--change-ref REF]  |  mandate grant remove GRANT_ID
  mandate audit list [--type T] [--subject S] [--tool T] [--decision D] [--trace-id T] [--limit N]
  mandate audit verify
  mandate keys list
  mandate keys retire KID [--now] [--reason R]  stop signing with a key now; --now: also out of the JWKS
                                               now, every token it signed refused (a compromised key)
  mandate token list [--nhi ID] [--tool ID] [--active]
  mandate revoke --jti JTI | --nhi ID | --tool ID | --all  [--reason R]
  mandate kill --nhi ID | --tool ID | --all --reason R   |  mandate kill list  |  mandate kill lift KILL_ID
  mandate approval list [--status S]  |  mandate approval approve|deny APPROVAL_ID [--reason R]
  mandate signal raise --nhi ID | --jti JTI --action revoke_tokens|step_down|step_up|disable|block --reason R
                       [--severity low|medium|high|critical] [--run ID] [--credential ID] [--tier T]
  mandate signal list [--nhi ID] [--limit N]  |  mandate signal show SIGNAL_ID
  mandate signal restore --nhi ID              lift a step-down / step-up
  mandate ssf dead-letters [--stream ID]  |  mandate ssf retry EVENT_ID
  mandate report profiles [--config FILE] [--markdown]   the token profile catalogue (no server needed)
  mandate report mttr [--since ISO] [--limit N]  time to revoke: signal → applied at every instance, → first refused call

${ADMIN_CREDENTIAL_USAGE}

${GOVERNANCE_USAGE}

${DRILL_USAGE}

Every command takes --json. Exit codes: 0 ok, 1 failed or problems found, 2 usage or config error,
3 Mandate unreachable, 4 not authorized.`;

const COMMON: ParseArgsConfig['options'] = {
  json: { type: 'boolean' },
  url: { type: 'string' },
  token: { type: 'string' },
  config: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};

type Out = { log: (s: string) => void; err: (s: string) => void };
const stdio: Out = { log: (s) => process.stdout.write(`${s}\n`), err: (s) => process.stderr.write(`${s}\n`) };

/** Runs one CLI invocation; returns the exit code. Long-running commands resolve on shutdown. */
export async function main(argv: string[], out: Out = stdio, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const [noun, ...rest] = argv;
  try {
    switch (noun) {
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        out.log(USAGE);
        return noun === undefined ? EXIT.usage : EXIT.ok;
      case '--version':
      case 'version':
        out.log(VERSION);
        return EXIT.ok;
      case 'up':
        return await up(rest, out, env);
      case 'serve':
        return await serve(rest, out, env);
      case 'migrate': {
        const { values } = args(rest, {});
        const applied = await runMigrations(loadConfig(values.config as string | undefined, env, true), env);
        out.log(applied.length ? `applied: ${applied.join(', ')}` : 'store is up to date');
        return EXIT.ok;
      }
      case 'config': {
        const [verb, ...r] = rest;
        if (verb !== 'check') throw new CliError('usage: mandate config check [--config FILE]', EXIT.usage);
        const { values } = args(r, {});
        const cfg = loadConfig(values.config as string | undefined, env, true);
        out.log(values.json ? JSON.stringify({ ok: true }) : `ok: ${cfg.nhis.length} NHIs, ${cfg.tools.length} tools, ${cfg.grants.length} grants, ${cfg.trust.length} trust entries`);
        return EXIT.ok;
      }
      case 'policy':
        return await policyCommand(rest, out, env);
      case 'lint':
        return await lintCommand(rest, out, env);
      case 'report': {
        const [verb, ...r] = rest;
        if (verb === 'mttr') return await mttrCommand(r, out, env);
        if (verb === 'top' || verb === 'metrics') return await governanceCommand(noun, verb, r, out, env);
        if (verb !== 'profiles') throw new CliError('usage: mandate report profiles [--config FILE] [--markdown] [--json]\n       mandate report top|metrics [--json]\n       mandate report mttr [--since ISO] [--limit N] [--json]', EXIT.usage);
        const { values } = args(r, { markdown: { type: 'boolean' } });
        const cfg = loadConfig(values.config as string | undefined, env, false);
        out.log(profilesReport(cfg, values.json ? 'json' : values.markdown ? 'markdown' : 'table'));
        return EXIT.ok;
      }
      case 'drill':
        return await drillCommand(rest[0], rest.slice(1), out, env);
      case 'admin-credential':
        return await adminCredentialCommand(rest[0], rest.slice(1), out, env);
      case 'finding':
      case 'playbook':
        return await governanceCommand(noun, rest[0], rest.slice(1), out, env);
      default:
        return await adminCommand(noun, rest, out, env);
    }
  } catch (err) {
    if (err instanceof ConfigError) {
      out.err(err.message);
      return EXIT.usage;
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
}

function args(argv: string[], options: ParseArgsConfig['options']) {
  return parseArgs({ args: argv, options: { ...COMMON, ...options }, allowPositionals: true, strict: true });
}

/** `--config`, else MANDATE_CONFIG, else ./mandate.yaml when it exists. */
function configPath(flag: string | undefined, env: NodeJS.ProcessEnv): string | undefined {
  if (flag) return flag;
  if (env.MANDATE_CONFIG) return env.MANDATE_CONFIG;
  return existsSync('mandate.yaml') ? 'mandate.yaml' : undefined;
}

function loadConfig(flag: string | undefined, env: NodeJS.ProcessEnv, required: boolean): Readonly<MandateConfig> {
  const path = configPath(flag, env);
  if (!path) {
    if (required) throw new CliError('no config: pass --config FILE, set MANDATE_CONFIG, or create ./mandate.yaml', EXIT.usage);
    return buildConfig({}, { env });
  }
  return loadConfigFile(path, { env });
}

/**
 * `mandate lint`: the config rules over mandate.yaml (only what is new against --base REF)
 * and secretlint over --scan paths. Exit 0 clean, 1 findings, 2 usage (bad flags, unreadable
 * file, unknown ref). A config that does not validate is a finding (config-invalid), not exit
 * 2: reporting it with a line number is the point.
 */
async function lintCommand(argv: string[], out: Out, env: NodeJS.ProcessEnv): Promise<number> {
  const { values, positionals } = args(argv, {
    base: { type: 'string' }, scan: { type: 'string', multiple: true }, sarif: { type: 'string' }, today: { type: 'string' },
  });
  if (positionals.length > 0) throw new CliError(`mandate lint takes no positional arguments (got "${positionals[0]}"); scan paths with --scan PATH`, EXIT.usage);
  const json = values.json === true;
  const sarif = values.sarif as string | undefined;
  if (json && sarif !== undefined) throw new CliError('give --json or --sarif, not both', EXIT.usage);
  const today = values.today as string | undefined;
  if (today !== undefined && !/^\d{4}-\d{2}-\d{2}$/.test(today)) throw new CliError(`--today must be YYYY-MM-DD (got "${today}")`, EXIT.usage);
  const now = today ? new Date(`${today}T00:00:00Z`) : new Date();
  if (Number.isNaN(now.getTime())) throw new CliError(`--today is not a date: "${today}"`, EXIT.usage);
  const scan = (values.scan as string[] | undefined) ?? [];
  const base = values.base as string | undefined;

  const path = configPath(values.config as string | undefined, env);
  if (!path && scan.length === 0) throw new CliError('nothing to lint: pass --config FILE (or create ./mandate.yaml) and/or --scan PATH', EXIT.usage);
  if (!path && base !== undefined) throw new CliError('--base needs a config file (--config FILE)', EXIT.usage);

  const findings: Finding[] = [];
  if (path) {
    let text: string;
    try {
      // The loader's size cap applies here too: a lint must not be a way to read a huge file.
      if (statSync(path).size > 4 * 1024 * 1024) throw new CliError(`${path}: over the 4 MiB config size limit`, EXIT.usage);
      text = readFileSync(path, 'utf8');
    } catch (err) {
      if (err instanceof CliError) throw err;
      throw new CliError(`${path}: cannot be read (no such file?)`, EXIT.usage);
    }
    const file = displayPath(path);
    findings.push(...lintConfigText(text, { now, file, ...(base !== undefined ? { base: readAtRef(path, base) } : {}) }));
  }
  let scanned = 0;
  if (scan.length > 0) {
    const r = await scanFiles(scan);
    findings.push(...r.findings);
    scanned = r.scanned;
  }

  if (sarif !== undefined) {
    const log = `${JSON.stringify(toSarif(findings, { version: VERSION }), null, 2)}\n`;
    if (sarif === '-') out.log(log.trimEnd());
    else {
      writeFileSync(sarif, log);
      out.log(formatFindings(findings));
    }
  } else if (json) {
    out.log(JSON.stringify({ ok: findings.length === 0, findings, ...(scan.length ? { scanned_files: scanned } : {}) }, null, 2));
  } else {
    out.log(formatFindings(findings));
  }
  return findings.length === 0 ? EXIT.ok : EXIT.failed;
}

/** A path relative to the working directory when it lies below it: what CI annotations and SARIF resolve. */
function displayPath(p: string): string {
  const rel = relative(process.cwd(), resolve(p));
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel.split(sep).join('/') : p;
}

/** Keeps a server running until SIGINT/SIGTERM, then shuts it down gracefully. */
function runUntilSignal(app: App, out: Out, extra: () => Promise<void> = async () => {}): Promise<number> {
  for (const w of app.warnings) out.err(`\n  !!! ${w}\n`);
  return new Promise((resolve) => {
    const stop = (sig: string) => {
      app.logger.info({ signal: sig }, 'shutting down');
      void app
        .close()
        .then(extra)
        .then(() => resolve(EXIT.ok), () => resolve(EXIT.failed));
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
}

async function up(argv: string[], out: Out, env: NodeJS.ProcessEnv): Promise<number> {
  const { values } = args(argv, { port: { type: 'string' } });
  const path = configPath(values.config as string | undefined, env);
  const portEnv = values.port ? { MANDATE_SERVER__PORT: String(values.port) } : {};
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
}

async function serve(argv: string[], out: Out, env: NodeJS.ProcessEnv): Promise<number> {
  const { values } = args(argv, { role: { type: 'string', default: 'all' } });
  const role = values.role as string;
  if (!['all', 'broker', 'proxy', 'signals'].includes(role)) throw new CliError(`--role must be all, broker, proxy or signals (got "${role}")`, EXIT.usage);
  const config = loadConfig(values.config as string | undefined, env, true);
  const app = await startApp({ config, env, role: role as Role });
  // --json: one machine-readable line, for supervisors and tests that start instances on port 0.
  out.log(values.json
    ? JSON.stringify({ ready: true, role, url: app.url, issuer: app.issuer, instance: app.instanceId, pid: process.pid })
    : `Mandate (${role}) is up at ${app.url}`);
  return runUntilSignal(app, out);
}

async function adminCommand(noun: string, argv: string[], out: Out, env: NodeJS.ProcessEnv): Promise<number> {
  const [verb, ...rest] = argv;
  const { values, positionals } = args(rest, {
    id: { type: 'string' }, class: { type: 'string' }, owner: { type: 'string' }, system: { type: 'string' },
    environment: { type: 'string' }, tier: { type: 'string' }, status: { type: 'string' }, search: { type: 'string' },
    description: { type: 'string' }, reason: { type: 'string' }, nhi: { type: 'string' }, tool: { type: 'string' },
    actions: { type: 'string' }, 'change-ref': { type: 'string' }, type: { type: 'string' }, subject: { type: 'string' },
    decision: { type: 'string' }, 'trace-id': { type: 'string' }, limit: { type: 'string' }, name: { type: 'string' },
    role: { type: 'string' }, jti: { type: 'string' }, all: { type: 'boolean' }, active: { type: 'boolean' },
    action: { type: 'string' }, severity: { type: 'string' }, run: { type: 'string' }, credential: { type: 'string' },
    stream: { type: 'string' }, now: { type: 'boolean' },
  });
  const v = values as Record<string, string | boolean | undefined>;
  const s = (k: string) => (typeof v[k] === 'string' ? (v[k] as string) : undefined);
  const need = (k: string) => {
    const x = s(k);
    if (!x) throw new CliError(`--${k} is required for "${noun} ${verb}"`, EXIT.usage);
    return x;
  };
  const arg0 = () => {
    const x = positionals[0];
    if (!x) throw new CliError(`"${noun} ${verb}" needs an id`, EXIT.usage);
    return x;
  };
  const client = new AdminClient(s('url') ?? env.MANDATE_URL ?? 'http://127.0.0.1:8080', s('token') ?? env.MANDATE_TOKEN);
  const json = v.json === true;
  const print = (body: unknown, human: () => string) => out.log(json ? JSON.stringify(body, null, 2) : human());

  switch (`${noun} ${verb}`) {
    case 'nhi list': {
      const r = (await client.call('GET', '/nhis', {
        query: { class: s('class'), owner: s('owner'), environment: s('environment'), tier: s('tier'), status: s('status'), search: s('search') },
      })) as { nhis: Record<string, unknown>[] };
      print(r, () => table(r.nhis, ['id', 'class', 'owner', 'system', 'environment', 'tier', 'status', 'source']));
      return EXIT.ok;
    }
    case 'nhi show': {
      const r = (await client.call('GET', `/nhis/${encodeURIComponent(arg0())}`)) as Record<string, unknown> & {
        credentials: Record<string, unknown>[];
        grants: Record<string, unknown>[];
      };
      print(r, () =>
        [
          details(r, ['id', 'class', 'owner', 'system', 'environment', 'tier', 'status', 'source', 'description']),
          '',
          'CREDENTIALS',
          table(r.credentials.map((c) => ({ ...c, created_at: isoTime(c.created_at), exception_expires_at: isoTime(c.exception_expires_at) })), ['id', 'type', 'trust', 'subject', 'exception_ticket', 'exception_expires_at', 'created_at']),
          '',
          'GRANTS',
          table(r.grants, ['id', 'tool', 'actions', 'source', 'change_ref']),
        ].join('\n'),
      );
      return EXIT.ok;
    }
    case 'nhi add': {
      const r = (await client.call('POST', '/nhis', {
        body: {
          id: need('id'), class: need('class'), owner: need('owner'), system: need('system'), tier: need('tier'),
          ...(s('environment') ? { environment: s('environment') } : {}), ...(s('description') ? { description: s('description') } : {}),
        },
      })) as Record<string, unknown>;
      print(r, () => `added ${String(r.id)}`);
      return EXIT.ok;
    }
    case 'nhi disable':
    case 'nhi enable': {
      const r = (await client.call('POST', `/nhis/${encodeURIComponent(arg0())}/${verb}`, { body: s('reason') ? { reason: s('reason') } : {} })) as Record<string, unknown>;
      print(r, () => `${String(r.id)} is ${String(r.status)}`);
      return EXIT.ok;
    }
    case 'tool list': {
      const r = (await client.call('GET', '/tools')) as { tools: Record<string, unknown>[] };
      print(r, () => table(r.tools.map((t) => ({ ...t, actions: ((t.config as { actions?: { name: string }[] }).actions ?? []).map((a) => a.name) })), ['id', 'kind', 'upstream', 'actions', 'source']));
      return EXIT.ok;
    }
    case 'tool show': {
      const r = (await client.call('GET', `/tools/${encodeURIComponent(arg0())}`)) as Record<string, unknown> & { config: { actions?: Record<string, unknown>[] } };
      print(r, () => [details(r, ['id', 'kind', 'upstream', 'description', 'source']), '', 'ACTIONS', table(r.config.actions ?? [], ['name', 'method', 'path', 'tier'])].join('\n'));
      return EXIT.ok;
    }
    case 'grant list': {
      const r = (await client.call('GET', '/grants', { query: { nhi: s('nhi'), tool: s('tool') } })) as { grants: Record<string, unknown>[] };
      print(r, () => table(r.grants, ['id', 'nhi', 'tool', 'actions', 'source', 'change_ref']));
      return EXIT.ok;
    }
    case 'grant add': {
      const r = (await client.call('POST', '/grants', {
        body: { nhi: need('nhi'), tool: need('tool'), actions: need('actions').split(',').map((a) => a.trim()).filter(Boolean), ...(s('change-ref') ? { change_ref: s('change-ref') } : {}) },
      })) as Record<string, unknown>;
      print(r, () => `granted ${String(r.nhi)} → ${String(r.tool)}: ${(r.actions as string[]).join(', ')} (${String(r.id)})`);
      return EXIT.ok;
    }
    case 'grant remove': {
      const r = await client.call('DELETE', `/grants/${encodeURIComponent(arg0())}`);
      print(r, () => `removed ${positionals[0]}`);
      return EXIT.ok;
    }
    case 'audit list': {
      const r = (await client.call('GET', '/audit', {
        query: { type: s('type'), subject: s('subject'), tool: s('tool'), decision: s('decision'), trace_id: s('trace-id'), limit: s('limit') },
      })) as { records: Record<string, unknown>[] };
      print(r, () => table(r.records.map((x) => ({ ...x, ts: isoTime(x.ts) })), ['seq', 'ts', 'type', 'actor', 'subject', 'tool', 'decision']));
      return EXIT.ok;
    }
    case 'audit verify': {
      const r = (await client.call('POST', '/audit/verify')) as { ok: boolean; checked: number; headSeq: number; problems: { seq: number; kind: string; detail: string }[] };
      print(r, () =>
        r.ok
          ? `audit chain intact: ${r.checked} records, head at seq ${r.headSeq}`
          : `audit chain BROKEN: ${r.problems.length} problem(s) in ${r.checked} records\n${table(r.problems as never, ['seq', 'kind', 'detail'])}`,
      );
      return r.ok ? EXIT.ok : EXIT.failed;
    }
    case 'keys list': {
      const r = (await client.call('GET', '/keys')) as { keys: Record<string, unknown>[] };
      print(r, () => table(r.keys, ['kid', 'alg', 'kty', 'crv', 'use']));
      return EXIT.ok;
    }
    case 'keys retire': {
      const kid = arg0();
      const r = (await client.call('POST', `/keys/${encodeURIComponent(kid)}/retire`, { body: { now: v.now === true, ...(s('reason') ? { reason: s('reason') } : {}) } })) as Record<string, unknown>;
      print(r, () => (v.now === true
        ? `retired ${kid} now: out of the JWKS, every token it signed is refused; signing with ${String(r.signing_kid)}`
        : `retired ${kid}: no longer signs (signing with ${String(r.signing_kid)}), published until ${isoTime(r.expires_at)}`));
      return EXIT.ok;
    }
    case 'token list': {
      const r = (await client.call('GET', '/tokens', { query: { nhi: s('nhi'), tool: s('tool'), active: v.active ? 'true' : undefined, limit: s('limit') } })) as { tokens: Record<string, unknown>[] };
      print(r, () => table(r.tokens.map((t) => ({ ...t, issued_at: isoTime(t.issued_at), expires_at: isoTime(t.expires_at) })), ['jti', 'nhi', 'tool', 'scope', 'tier', 'bound', 'issued_at', 'expires_at']));
      return EXIT.ok;
    }
    case 'approval list': {
      const r = (await client.call('GET', '/approvals', { query: { status: s('status') ?? 'pending', nhi: s('nhi'), limit: s('limit') } })) as { approvals: Record<string, unknown>[] };
      print(r, () => table(r.approvals.map((a) => ({ ...a, requested_at: isoTime(a.requested_at), expires_at: isoTime(a.expires_at) })), ['id', 'nhi', 'tool', 'action', 'args_digest', 'status', 'requested_at', 'expires_at']));
      return EXIT.ok;
    }
    case 'approval approve':
    case 'approval deny': {
      const r = (await client.call('POST', `/approvals/${encodeURIComponent(arg0())}/${verb}`, { body: s('reason') ? { reason: s('reason') } : {} })) as Record<string, unknown>;
      print(r, () => `${String(r.id)} ${String(r.status)}: ${String(r.nhi)} may${r.status === 'approved' ? '' : ' not'} ${String(r.action)} on ${String(r.tool)}`);
      return EXIT.ok;
    }
    case 'signal raise': {
      if (!s('nhi') && !s('jti')) throw new CliError('give --nhi or --jti for "signal raise"', EXIT.usage);
      const r = (await client.call('POST', '/signals', {
        body: {
          ...(s('nhi') ? { nhi: s('nhi') } : {}), ...(s('jti') ? { jti: s('jti') } : {}), ...(s('run') ? { run_id: s('run') } : {}),
          ...(s('credential') ? { credential: s('credential') } : {}), ...(s('severity') ? { severity: s('severity') } : {}),
          ...(s('tier') ? { fallback_tier: s('tier') } : {}), action: need('action'), reason: need('reason'),
        },
      })) as Record<string, unknown>;
      print(r, () => `signal ${String(r.id)} ${String(r.status)}: ${String(r.action)} ${String(r.nhi ?? r.jti)}${r.error ? ` (${String(r.error)})` : ''}`);
      return r.status === 'applied' ? EXIT.ok : EXIT.failed;
    }
    case 'signal list': {
      const r = (await client.call('GET', '/signals', { query: { nhi: s('nhi'), limit: s('limit') } })) as { signals: Record<string, unknown>[] };
      print(r, () => table(r.signals.map((x) => ({ ...x, received_at: isoTime(x.received_at), applied_at: isoTime(x.applied_at) })), ['id', 'nhi', 'jti', 'action', 'severity', 'reason', 'source', 'status', 'received_at', 'applied_at']));
      return EXIT.ok;
    }
    case 'signal show': {
      const r = (await client.call('GET', `/signals/${encodeURIComponent(arg0())}`)) as Record<string, unknown>;
      print(r, () => details({ ...r, received_at: isoTime(r.received_at), applied_at: isoTime(r.applied_at) }, ['id', 'nhi', 'jti', 'run_id', 'credential', 'action', 'severity', 'reason', 'source', 'txn', 'status', 'error', 'received_at', 'applied_at']));
      return EXIT.ok;
    }
    case 'signal restore': {
      const r = (await client.call('POST', `/restrictions/${encodeURIComponent(need('nhi'))}/lift`)) as { lifted: Record<string, unknown>[] };
      print(r, () => r.lifted.map((x) => `lifted ${String(x.kind)} of ${String(x.nhi)} (${String(x.id)}, from signal ${String(x.signal_id)})`).join('\n'));
      return EXIT.ok;
    }
    case 'ssf dead-letters': {
      const r = (await client.call('GET', '/ssf/events', { query: { status: 'dead', stream_id: s('stream'), limit: s('limit') } })) as { events: Record<string, unknown>[] };
      print(r, () => table(r.events.map((e) => ({ ...e, created_at: isoTime(e.created_at) })), ['id', 'stream_id', 'jti', 'attempts', 'last_error', 'created_at']));
      return EXIT.ok;
    }
    case 'ssf retry': {
      const r = await client.call('POST', `/ssf/events/${encodeURIComponent(arg0())}/retry`);
      print(r, () => `queued ${positionals[0]} again`);
      return EXIT.ok;
    }
    case 'kill list': {
      const r = (await client.call('GET', '/kill')) as { kill_switches: Record<string, unknown>[] };
      print(r, () => table(r.kill_switches.map((k) => ({ ...k, created_at: isoTime(k.created_at) })), ['id', 'scope', 'target', 'reason', 'created_by', 'created_at']));
      return EXIT.ok;
    }
    case 'kill lift': {
      const r = await client.call('DELETE', `/kill/${encodeURIComponent(arg0())}`);
      print(r, () => `lifted ${positionals[0]}`);
      return EXIT.ok;
    }
    default:
      if (noun === 'revoke' || noun === 'kill') return revokeOrKill(noun, [verb, ...rest].filter((x): x is string => x !== undefined), client, out, json);
      throw new CliError(`unknown command "${[noun, verb].filter(Boolean).join(' ')}"\n\n${USAGE}`, EXIT.usage);
  }
}

/** Loads the config's policies; a policy that does not load is a config error (exit 2). */
async function loadPolicies(cfg: Readonly<MandateConfig>): Promise<PolicyEngine> {
  try {
    return await PolicyEngine.load({
      files: [...cfg.policy.files],
      basePermit: cfg.policy.base_permit,
      actions: [...new Set(cfg.tools.flatMap((t) => t.actions.map((a) => a.name)))],
    });
  } catch (err) {
    if (err instanceof PolicyError) throw new CliError(err.message, EXIT.usage);
    throw err;
  }
}

const POLICY_USAGE = 'usage: mandate policy check [--config FILE] [--json]\n       mandate policy test --nhi ID --tool ID --action NAME [--args JSON] [--risk N] [--approved] [--on-behalf-of ID] [--run-id ID] [--time ISO] [--config FILE] [--json]';

/** `mandate policy check|test`: offline, from the config file and its policy files (no server). */
async function policyCommand(argv: string[], out: Out, env: NodeJS.ProcessEnv): Promise<number> {
  const [verb, ...r] = argv;
  if (verb === 'check') {
    const { values } = args(r, {});
    const cfg = loadConfig(values.config as string | undefined, env, true);
    const engine = await loadPolicies(cfg);
    out.log(values.json
      ? JSON.stringify({ ok: true, files: cfg.policy.files, policies: engine.policyCount, base_permit: cfg.policy.base_permit, version: engine.version })
      : `ok: ${engine.policyCount} ${engine.policyCount === 1 ? 'policy' : 'policies'} in ${cfg.policy.files.length} file(s), base permit ${cfg.policy.base_permit ? 'on' : 'off'} (version ${engine.version.slice(0, 12)})`);
    return EXIT.ok;
  }
  if (verb !== 'test') throw new CliError(POLICY_USAGE, EXIT.usage);
  const { values } = args(r, {
    nhi: { type: 'string' }, tool: { type: 'string' }, action: { type: 'string' }, args: { type: 'string' }, risk: { type: 'string' },
    approved: { type: 'boolean' }, 'on-behalf-of': { type: 'string' }, 'run-id': { type: 'string' }, time: { type: 'string' },
  });
  const v = values as Record<string, string | boolean | undefined>;
  const need = (k: string) => {
    if (typeof v[k] !== 'string' || v[k] === '') throw new CliError(`--${k} is required\n${POLICY_USAGE}`, EXIT.usage);
    return v[k] as string;
  };
  const cfg = loadConfig(v.config as string | undefined, env, true);
  const nhiId = need('nhi');
  const toolId = need('tool');
  const actionName = need('action');
  const nhi = cfg.nhis.find((n) => n.id === nhiId);
  if (!nhi) throw new CliError(`no NHI "${nhiId}" in the config (have: ${cfg.nhis.map((n) => n.id).join(', ') || 'none'})`, EXIT.usage);
  const tool = cfg.tools.find((t) => t.id === toolId);
  if (!tool) throw new CliError(`no tool "${toolId}" in the config (have: ${cfg.tools.map((t) => t.id).join(', ') || 'none'})`, EXIT.usage);
  let tier: string | null = null;
  let endpoint: PolicyRequest['endpoint'];
  if (actionName.startsWith('mcp:')) {
    if (tool.kind !== 'mcp') throw new CliError(`"${actionName}" is an MCP protocol method, and tool "${tool.id}" is an http tool`, EXIT.usage);
  } else {
    const action = tool.actions.find((a) => a.name === actionName);
    if (!action) throw new CliError(`tool "${tool.id}" declares no action "${actionName}" (declared: ${tool.actions.map((a) => a.name).join(', ')})`, EXIT.usage);
    tier = action.tier;
    if (action.method && action.path) endpoint = { method: action.method, path: action.path };
  }
  let callArgs: Record<string, unknown> | null = null;
  if (typeof v.args === 'string') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(v.args);
    } catch (err) {
      throw new CliError(`--args is not JSON: ${(err as Error).message}`, EXIT.usage);
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new CliError('--args must be a JSON object, e.g. {"amount": 1200}', EXIT.usage);
    callArgs = parsed as Record<string, unknown>;
  }
  const risk = v.risk === undefined ? 0 : Number(v.risk);
  if (!Number.isInteger(risk) || risk < 0 || risk > 100) throw new CliError('--risk must be an integer from 0 to 100', EXIT.usage);
  const now = v.time === undefined ? Date.now() : Date.parse(v.time as string);
  if (Number.isNaN(now)) throw new CliError('--time must be an ISO 8601 time, e.g. 2026-01-31T23:30:00Z', EXIT.usage);
  const engine = await loadPolicies(cfg);
  const req: PolicyRequest = {
    nhi: { id: nhi.id, class: nhi.class, owner: nhi.owner, system: nhi.system, environment: nhi.environment, tier: nhi.tier },
    tool: { id: tool.id, kind: tool.kind },
    action: actionName,
    tier,
    args: callArgs,
    argsDigest: callArgs ? createHash('sha256').update(JSON.stringify(callArgs)).digest('base64url') : null,
    ...(endpoint ? { endpoint } : {}),
    riskScore: risk,
    approved: v.approved === true,
    onBehalfOf: typeof v['on-behalf-of'] === 'string' ? v['on-behalf-of'] : null,
    runId: typeof v['run-id'] === 'string' ? v['run-id'] : null,
    now,
  };
  const d = engine.evaluate(req);
  if (v.json) {
    out.log(JSON.stringify({ decision: d.decision, policies: d.policies, errors: d.errors, nhi: nhi.id, tool: tool.id, action: actionName, tier, policy_version: engine.version }, null, 2));
  } else {
    out.log([
      `${d.decision}: ${nhi.id} → ${tool.id}.${actionName}`,
      `  decided by: ${d.policies.length ? d.policies.join(', ') : d.errors.length ? '(no policy: see the errors)' : '(no permit applies: Cedar denies by default)'}`,
      ...d.errors.map((e) => `  error: ${e}`),
    ].join('\n'));
  }
  return d.decision === 'allow' ? EXIT.ok : EXIT.failed;
}

/** `mandate report mttr`: time to revoke over the admin API (GET /admin/v1/reports/mttr). */
async function mttrCommand(argv: string[], out: Out, env: NodeJS.ProcessEnv): Promise<number> {
  const { values } = args(argv, { since: { type: 'string' }, limit: { type: 'string' } });
  const v = values as Record<string, string | boolean | undefined>;
  let since: string | undefined;
  if (typeof v.since === 'string') {
    const t = Date.parse(v.since);
    if (Number.isNaN(t)) throw new CliError('--since must be an ISO 8601 time, e.g. 2026-01-31T00:00:00Z', EXIT.usage);
    since = String(t);
  }
  const client = new AdminClient(typeof v.url === 'string' ? v.url : env.MANDATE_URL ?? 'http://127.0.0.1:8080', typeof v.token === 'string' ? v.token : env.MANDATE_TOKEN);
  const r = (await client.call('GET', '/reports/mttr', { query: { since, limit: typeof v.limit === 'string' ? v.limit : undefined } })) as {
    signals: number; instances: number;
    applied_everywhere: { count: number; mean_ms: number | null; p50_ms: number | null; p99_ms: number | null; max_ms: number | null };
    first_denial: { count: number; mean_ms: number | null; p50_ms: number | null; p99_ms: number | null; max_ms: number | null };
  };
  if (v.json) {
    out.log(JSON.stringify(r, null, 2));
    return EXIT.ok;
  }
  const ms = (x: number | null) => (x === null ? '-' : `${x} ms`);
  out.log([
    `time to revoke over ${r.signals} enforced signal(s), ${r.instances} instance(s) reporting`,
    table([
      { measure: 'signal → applied at every instance', signals: r.applied_everywhere.count, mean: ms(r.applied_everywhere.mean_ms), p50: ms(r.applied_everywhere.p50_ms), p99: ms(r.applied_everywhere.p99_ms), max: ms(r.applied_everywhere.max_ms) },
      { measure: 'signal → first refused call', signals: r.first_denial.count, mean: ms(r.first_denial.mean_ms), p50: ms(r.first_denial.p50_ms), p99: ms(r.first_denial.p99_ms), max: ms(r.first_denial.max_ms) },
    ], ['measure', 'signals', 'mean', 'p50', 'p99', 'max']),
  ].join('\n'));
  return EXIT.ok;
}

async function revokeOrKill(noun: 'revoke' | 'kill', argv: string[], client: AdminClient, out: Out, json: boolean): Promise<number> {
  const { values } = args(argv, { jti: { type: 'string' }, nhi: { type: 'string' }, tool: { type: 'string' }, all: { type: 'boolean' }, reason: { type: 'string' } });
  const v = values as Record<string, string | boolean | undefined>;
  const targets = (['jti', 'nhi', 'tool', 'all'] as const).filter((k) => v[k] !== undefined);
  if (targets.length !== 1 || (noun === 'kill' && targets[0] === 'jti')) {
    throw new CliError(noun === 'revoke' ? 'give exactly one of --jti, --nhi, --tool, --all' : 'give exactly one of --nhi, --tool, --all', EXIT.usage);
  }
  const t = targets[0]!;
  const reason = typeof v.reason === 'string' ? v.reason : undefined;
  if (noun === 'kill' && !reason) throw new CliError('--reason is required for kill', EXIT.usage);
  const body = noun === 'revoke'
    ? { ...(t === 'all' ? { all: true } : { [t]: v[t] }), ...(reason ? { reason } : {}) }
    : { scope: t === 'all' ? 'global' : t, ...(t === 'all' ? {} : { target: v[t] }), reason };
  const r = (await client.call('POST', noun === 'revoke' ? '/revocations' : '/kill', { body })) as Record<string, unknown>;
  out.log(json ? JSON.stringify(r, null, 2) : noun === 'revoke' ? `revoked ${JSON.stringify(r.revoked)}` : `kill switch ${String(r.id)} engaged (${t === 'all' ? 'global' : `${t} ${String(v[t])}`}); lift with: mandate kill lift ${String(r.id)}`);
  return EXIT.ok;
}

/** The token profile catalogue: each risk tier, its rules, and the actions that fall in it. */
export function profilesReport(cfg: Readonly<MandateConfig>, format: 'table' | 'markdown' | 'json'): string {
  const rows = cfg.tokens.profiles.map((p) => ({
    tier: p.name,
    ttl: formatDuration(p.ttl),
    binding: p.binding === 'required' ? 'DPoP or mTLS required' : 'optional',
    approval: p.approval ? 'human approval per call' : 'no',
    actions: cfg.tools.flatMap((t) => t.actions.filter((a) => a.tier === p.name).map((a) => `${t.id}.${a.name}`)),
    description: p.description ?? '',
  }));
  if (format === 'json') return JSON.stringify({ max_ttl: cfg.tokens.max_ttl, refresh_tokens: false, profiles: rows }, null, 2);
  if (format === 'table') return table(rows, ['tier', 'ttl', 'binding', 'approval', 'actions']);
  const esc = (x: string) => x.replace(/\|/g, '\\|');
  return [
    '# Token profiles',
    '',
    `Every token Mandate issues is for one tool, carries only the actions asked for and granted, and lives no longer than its tier allows (organisation ceiling: ${formatDuration(cfg.tokens.max_ttl)}). Machines get no refresh tokens: they re-federate with their workload identity.`,
    '',
    '| Tier | Lifetime | Sender constraint | Approval | Actions | Description |',
    '|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${esc(r.tier)} | ${r.ttl} | ${r.binding} | ${r.approval} | ${r.actions.length ? r.actions.map((a) => `\`${a}\``).join(', ') : '–'} | ${esc(r.description)} |`),
    '',
  ].join('\n');
}
