import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { VERSION } from '../../app.js';
import { formatFindings, lintConfigText, readAtRef, scanFiles, toSarif, type Finding } from '../../governance/lint/index.js';
import { parse, str } from '../args.js';
import type { Command, Ctx } from '../command.js';
import { configPath } from '../config-file.js';
import { CliError, EXIT } from '../errors.js';

export const lint: Command = {
  name: 'lint',
  summary: 'the CI check: no new long-lived secrets in the config or the scanned files (no server needed)',
  usage: `  mandate lint [--config FILE] [--base REF] [--scan PATH ...] [--json | --sarif FILE|-] [--today YYYY-MM-DD]
                                               CI check: no new long-lived secrets (docs/ci-lint.md); exit 1 on findings`,
  run: runLint,
};

/**
 * `mandate lint`: the config rules over mandate.yaml (only what is new against --base REF)
 * and secretlint over --scan paths. Exit 0 clean, 1 findings, 2 usage (bad flags, unreadable
 * file, unknown ref). A config that does not validate is a finding (config-invalid), not exit
 * 2: reporting it with a line number is the point.
 */
async function runLint(argv: string[], { out, env }: Ctx): Promise<number> {
  const { values, positionals } = parse(argv, {
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

  const path = configPath(str(values, 'config'), env);
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
