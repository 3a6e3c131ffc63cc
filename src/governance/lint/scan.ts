import { closeSync, lstatSync, openSync, readdirSync, readFileSync, readSync } from 'node:fs';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { findPrivateKeys, type PrivateKeyHit } from './private-keys.js';
import { LintUsageError, ruleOf, type Finding } from './rules.js';

/** Folders never walked: history, dependencies and build output are not what a change commits. */
const SKIP_DIRS = new Set(['.git', 'node_modules', 'dist']);
/** Files larger than this are skipped: secrets live in source and config, not in multi-megabyte blobs. */
export const MAX_SCAN_BYTES = 1024 * 1024;
/** secretlint is given this many files per call, so a large tree is not one huge result string. */
const BATCH = 200;

export interface ScanOptions {
  /** Paths in findings are relative to this (default: the process's working directory). */
  cwd?: string;
  maxBytes?: number;
}

export interface ScanResult {
  findings: Finding[];
  /** Files scanned (by secretlint and the private-key detector). */
  scanned: number;
  skipped: { file: string; reason: 'binary' | 'too large' }[];
}

/**
 * Finds committed secrets with secretlint's recommended preset (AWS, GCP, GitHub, Slack, …): a
 * maintained rule set, not regexes of our own. Private keys are the exception: secretlint's rule
 * misses keys that are plainly real (a SEC1 P-256 key, whose base64 starts `MH`, not `MI`; any key
 * with `Proc-Type`/`DEK-Info` headers; `ENCRYPTED PRIVATE KEY`; Ed25519/X25519 keys, shorter than
 * its 100-character floor), so `findPrivateKeys` confirms keys by parsing them and reports
 * `committed-private-key`; secretlint's private-key finding on the same block is dropped, one it
 * makes elsewhere (a key our parsers refuse, e.g. truncated) is kept.
 * Directories are walked (symbolic links are not followed, so a link cannot loop or lead outside
 * the tree). Every secret is masked by secretlint (`maskSecrets`) and only the rule's message, its
 * id and the position leave this function: the matched text never does.
 */
export async function scanFiles(paths: readonly string[], opts: ScanOptions = {}): Promise<ScanResult> {
  const cwd = opts.cwd ?? process.cwd();
  const maxBytes = opts.maxBytes ?? MAX_SCAN_BYTES;
  const files: string[] = [];
  const skipped: ScanResult['skipped'] = [];
  for (const p of paths) collect(resolve(cwd, p), files, skipped, maxBytes, cwd, true);
  // Overlapping paths (`--scan . --scan src`) name a file twice; it is scanned and reported once.
  files.splice(0, files.length, ...new Set(files));
  const skippedOnce = new Map(skipped.map((s) => [s.file, s]));
  skipped.splice(0, skipped.length, ...skippedOnce.values());
  if (files.length === 0) return { findings: [], scanned: 0, skipped };

  const findings: Finding[] = [];
  /** Per file, the lines of each private key found: secretlint's finding inside one is the same key. */
  const keyLines = new Map<string, [number, number][]>();
  for (const abs of files) {
    const file = display(abs, cwd);
    for (const hit of findPrivateKeys(readFileSync(abs, 'utf8'))) {
      findings.push(privateKeyFinding(file, hit));
      keyLines.set(file, [...(keyLines.get(file) ?? []), [hit.line, hit.endLine]]);
    }
  }

  // Loaded on first use: secretlint and its rules cost a noticeable start-up time that no
  // other `mandate` command should pay.
  const { createEngine } = await import('@secretlint/node');
  const engine = await createEngine({
    cwd,
    formatter: 'json',
    color: false,
    maskSecrets: true,
    // Our rule set, not a .secretlintrc found in the scanned tree: a repository must not be
    // able to switch the check off for itself.
    configFileJSON: { rules: [{ id: '@secretlint/secretlint-rule-preset-recommend' }] },
  });
  for (let i = 0; i < files.length; i += BATCH) {
    const { output } = await engine.executeOnFiles({ filePathList: files.slice(i, i + BATCH) });
    // The json formatter's results carry `sourceContent` (the whole file, secret included):
    // only messages are read from them.
    const results = JSON.parse(output) as SecretlintResult[];
    for (const r of results) {
      for (const m of r.messages ?? []) {
        if (m.type !== 'message') continue;
        const file = display(r.filePath, cwd);
        const line = m.loc?.start?.line ?? 1;
        if (m.ruleId === SECRETLINT_PRIVATE_KEY_RULE && keyLines.get(file)?.some(([from, to]) => line >= from && line <= to)) continue;
        findings.push({
          ruleId: 'committed-secret',
          level: ruleOf('committed-secret').level,
          message: `${mask(m.message)} (secretlint ${m.ruleId})`,
          file,
          line,
          // secretlint columns start at 0.
          column: (m.loc?.start?.column ?? 0) + 1,
          properties: { secretlintRuleId: m.ruleId, ...(m.messageId ? { secretlintMessageId: m.messageId } : {}) },
        });
      }
    }
  }
  findings.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.column - b.column);
  return { findings, scanned: files.length, skipped };
}

const SECRETLINT_PRIVATE_KEY_RULE = '@secretlint/secretlint-rule-privatekey';

const ENCODINGS: Record<PrivateKeyHit['encoding'], string> = {
  pem: 'in a PEM block',
  'base64-pem': 'in a base64-encoded PEM block',
  'base64-der': 'as base64 DER',
  jwk: 'as a JSON Web Key',
};

/** What the key is and how it is written; never any of its text. */
function privateKeyFinding(file: string, hit: PrivateKeyHit): Finding {
  return {
    ruleId: 'committed-private-key',
    level: ruleOf('committed-private-key').level,
    message: `private key (${hit.keyType}) ${ENCODINGS[hit.encoding]}${hit.pemLabel ? ` "${hit.pemLabel}"` : ''}`,
    file,
    line: hit.line,
    column: hit.column,
    properties: {
      keyType: hit.keyType,
      encoding: hit.encoding,
      encrypted: String(hit.encrypted),
      ...(hit.pemLabel ? { pemLabel: hit.pemLabel } : {}),
    },
  };
}

interface SecretlintResult {
  filePath: string;
  messages?: { type: string; ruleId: string; messageId?: string; message: string; loc?: { start?: { line?: number; column?: number } } }[];
}

/** secretlint masks data values with `*` as long as the secret; a fixed mask hides the length too. */
function mask(message: string): string {
  return message.replace(/\*{3,}/g, '****');
}

function collect(abs: string, files: string[], skipped: ScanResult['skipped'], maxBytes: number, cwd: string, named: boolean): void {
  let st;
  try {
    st = lstatSync(abs);
  } catch {
    if (named) throw new LintUsageError(`--scan ${display(abs, cwd)}: no such file or directory`);
    return;
  }
  if (st.isSymbolicLink()) return;
  if (st.isDirectory()) {
    for (const name of readdirSync(abs).sort()) {
      if (SKIP_DIRS.has(name)) continue;
      collect(join(abs, name), files, skipped, maxBytes, cwd, false);
    }
    return;
  }
  if (!st.isFile()) return;
  if (st.size > maxBytes) skipped.push({ file: display(abs, cwd), reason: 'too large' });
  else if (isBinary(abs)) skipped.push({ file: display(abs, cwd), reason: 'binary' });
  else files.push(abs);
}

/** A NUL byte in the first 8 KiB, git's own test for a binary file. */
function isBinary(abs: string): boolean {
  const buf = Buffer.alloc(8192);
  const fd = openSync(abs, 'r');
  try {
    const n = readSync(fd, buf, 0, buf.length, 0);
    return buf.subarray(0, n).includes(0);
  } finally {
    closeSync(fd);
  }
}

/** Relative to cwd with forward slashes when below it (what SARIF and CI annotations expect). */
export function display(abs: string, cwd: string): string {
  const rel = relative(cwd, abs);
  if (rel === '' || isAbsolute(rel)) return abs.split(sep).join('/');
  return rel.split(sep).join('/');
}
