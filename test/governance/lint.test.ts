import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { lintConfigText, scanFiles, toSarif, LINT_RULES, type Finding } from '../../src/governance/lint/index.js';
import { officialSchemaPath, officialSchemaValidator, sarifStructureProblems } from './sarif-check.js';

const BIN = resolve('bin/mandate.js');
const NOW = new Date('2026-05-01T12:00:00Z');

/** A config every rule accepts; the tests add one problem at a time (nhis last, so withLegacy can add one). */
const CLEAN = `
tokens:
  max_ttl: 1h
  profiles:
    - { name: read, ttl: 10m }
    - { name: write, ttl: 5m }
trust:
  - name: github-actions
    issuer: https://token.actions.githubusercontent.com
    discovery: true
    algorithms: [RS256]
    audience: https://mandate.example.com
    claims: { repository_owner: acme }
tools:
  - id: tickets
    kind: http
    upstream: http://127.0.0.1:9
    credential: { type: bearer, value: env:TICKETS_TOKEN }
    actions:
      - { name: list_tickets, method: GET, path: /tickets, tier: read }
nhis:
  - id: deploy-agent
    class: agent
    owner: platform@example.com
    system: release
    tier: write
    credentials:
      - { type: federated, trust: github-actions, subject: "repo:acme/deploy:ref:refs/heads/main" }
`;

/** CLEAN with an NHI holding the given credential lines (YAML flow mappings). */
function withLegacy(...credentials: string[]): string {
  return `${CLEAN}  - id: legacy-batch
    class: workload
    owner: data@example.com
    system: warehouse
    tier: read
    credentials:
${credentials.map((c) => `      - ${c}`).join('\n')}
`;
}

const lint = (text: string, base?: string) => lintConfigText(text, { now: NOW, ...(base !== undefined ? { base } : {}) });
const ids = (fs: Finding[]) => fs.map((f) => f.ruleId);

/** A value that looks like a real secret, made now so that none is committed. */
// 40 characters of [A-Za-z0-9+/], ending in a letter or digit: secretlint's AWS rule ends its
// pattern with \b, so a key ending in + or / before a newline is (rightly or not) not matched.
const fakeSecret = () => randomBytes(30).toString('base64').replace(/[+/]$/, 'Q');
const fakeAccessKeyId = () => `AKIA${Array.from(randomBytes(16), (b) => 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'[b % 32]).join('')}`;
const fakePrivateKey = () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;

/** `mandate …` as its own process, as CI runs it. */
function mandate(cwd: string, ...argv: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...argv], { cwd, encoding: 'utf8', env: { ...process.env, MANDATE_CONFIG: '' } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function git(cwd: string, ...args: string[]) {
  return execFileSync('git', ['-c', 'user.name=lint-test', '-c', 'user.email=lint@example.com', '-c', 'commit.gpgsign=false', ...args], { cwd, encoding: 'utf8' });
}

describe('mandate lint: config rules', () => {
  it('the clean config has no findings', () => {
    assert.deepEqual(lint(CLEAN), []);
  });

  it('a static secret without an exception fails, naming the key; the same with an exception passes', () => {
    const bad = lint(withLegacy('{ type: static_secret, secret: env:LEGACY_KEY }'));
    assert.deepEqual(ids(bad), ['static-secret-without-exception']);
    assert.equal(bad[0]!.key, 'nhis[1].credentials[0].exception');
    assert.match(bad[0]!.message, /^nhis\[1\]\.credentials\[0\]\.exception: NHI "legacy-batch" has a static secret without an exception/);
    assert.equal(bad[0]!.line, 35);
    // A ticket without an end date is not an exception either.
    assert.deepEqual(ids(lint(withLegacy('{ type: static_secret, secret: env:LEGACY_KEY, exception: { ticket: SEC-1 } }'))), ['static-secret-without-exception']);
    assert.deepEqual(lint(withLegacy('{ type: static_secret, secret: env:LEGACY_KEY, exception: { ticket: SEC-1234, expires: 2026-12-31 } }')), []);
  });

  it('an expired exception fails; one that ends today still holds', () => {
    const expired = lint(withLegacy('{ type: static_secret, secret: env:LEGACY_KEY, exception: { ticket: SEC-9, expires: 2026-04-30 } }'));
    assert.deepEqual(ids(expired), ['exception-expired']);
    assert.equal(expired[0]!.key, 'nhis[1].credentials[0].exception.expires');
    assert.match(expired[0]!.message, /SEC-9 .* ended on 2026-04-30/);
    assert.deepEqual(lint(withLegacy('{ type: static_secret, secret: env:LEGACY_KEY, exception: { ticket: SEC-9, expires: 2026-05-01 } }')), []);
  });

  it('profile-ttl-too-long: over tokens.max_ttl, or over the schema default of 1h when unset', () => {
    const long = lint(CLEAN.replace('{ name: write, ttl: 5m }', '{ name: write, ttl: 2h }'));
    assert.deepEqual(ids(long), ['profile-ttl-too-long']);
    assert.equal(long[0]!.key, 'tokens.profiles[1].ttl');
    assert.match(long[0]!.message, /"write" lives 2h, longer than tokens.max_ttl \(1h\)/);
    assert.deepEqual(ids(lint(CLEAN.replace('max_ttl: 1h', 'max_ttl: 4h').replace('ttl: 5m', 'ttl: 2h'))), []);
    assert.deepEqual(ids(lint(CLEAN.replace('  max_ttl: 1h\n', '').replace('ttl: 5m', 'ttl: 61m'))), ['profile-ttl-too-long']);
    assert.deepEqual(ids(lint(CLEAN.replace('ttl: 5m', 'ttl: 1h'))), []);
  });

  it('trust-issuer-only: no claims, a condition on iss only, or only "*"; a real condition passes', () => {
    for (const claims of ['', 'claims: {}', 'claims: { iss: "https://token.actions.githubusercontent.com" }', 'claims: { sub: "*" }']) {
      const f = lint(CLEAN.replace('claims: { repository_owner: acme }', claims));
      assert.deepEqual(ids(f), ['trust-issuer-only'], claims);
      assert.equal(f[0]!.key, 'trust[0].claims');
      assert.match(f[0]!.message, /trust entry "github-actions" pins only its issuer/);
    }
    assert.deepEqual(lint(CLEAN.replace('{ repository_owner: acme }', '{ iss: x, repository: "acme/*" }')), []);
  });

  it('refresh-tokens: true (or anything but false) fails; false passes', () => {
    const f = lint(CLEAN.replace('  max_ttl: 1h\n', '  max_ttl: 1h\n  refresh_tokens: true\n'));
    assert.deepEqual(ids(f), ['refresh-tokens']);
    assert.equal(f[0]!.key, 'tokens.refresh_tokens');
    assert.equal(f[0]!.line, 4);
    assert.deepEqual(lint(CLEAN.replace('  max_ttl: 1h\n', '  max_ttl: 1h\n  refresh_tokens: false\n')), []);
  });

  it('inline-secret: every secret key of the schema, and a postgres URL with a password; references pass', () => {
    // base64 has "/" and "+": in the URL's password they would make it another URL (or none), so
    // the URL's copy keeps to characters a userinfo takes as they are.
    const secret = fakeSecret();
    const text = CLEAN.replace('value: env:TICKETS_TOKEN', `value: "${secret}"`)
      + `keys: { kek: "${secret}" }\nstore: { driver: postgres, postgres_url: "postgres://mandate:${secret.slice(0, 12).replace(/[+/]/g, 'x')}@db/mandate" }\n`;
    const f = lint(text);
    assert.deepEqual(f.map((x) => `${x.ruleId} ${x.key}`), ['inline-secret tools[0].credential.value', 'inline-secret keys.kek', 'inline-secret store.postgres_url']);
    assert.ok(f.every((x) => !x.message.includes(secret) && !x.message.includes(secret.slice(0, 12))));
    // The schema's own "an inline secret is refused" is not reported a second time as config-invalid.
    assert.ok(!ids(f).includes('config-invalid'));
    const static_ = lint(withLegacy(`{ type: static_secret, secret: "${secret}", exception: { ticket: SEC-1, expires: 2026-12-31 } }`));
    assert.deepEqual(static_.map((x) => x.key), ['nhis[1].credentials[0].secret']);
    assert.deepEqual(lint(`${CLEAN}keys: { kek: file:/run/secrets/kek }\nstore: { driver: postgres, postgres_url: "postgres://mandate@db/mandate" }\n`), []);
  });

  it('config-invalid: schema issues and YAML errors become findings with the key and line', () => {
    const unknown = lint(`${CLEAN}server: { prot: 8080 }\n`);
    assert.deepEqual(ids(unknown), ['config-invalid']);
    assert.match(unknown[0]!.message, /^server: unknown key "prot"/);
    assert.equal(unknown[0]!.line, 29);
    const yaml = lint(`${CLEAN}tools:\n  - id: again\n`);
    assert.deepEqual(ids(yaml), ['config-invalid']);
    assert.match(yaml[0]!.message, /^YAML: /);
    assert.equal(yaml[0]!.line, 29);
    assert.deepEqual(ids(lint('- just\n- a list\n')), ['config-invalid']);
  });
});

describe('mandate lint --base against a real git repository', () => {
  let repo: string;
  const exception = '{ type: static_secret, secret: env:OLD_KEY, exception: { ticket: SEC-1, expires: 2026-12-31 } }';
  before(() => {
    repo = mkdtempSync(join(tmpdir(), 'mandate-lint-git-'));
    git(repo, 'init', '-q', '-b', 'main');
    // The base already has a finding (an issuer-only trust entry): not new, so not reported.
    writeFileSync(join(repo, 'mandate.yaml'), withLegacy(exception).replace('claims: { repository_owner: acme }', 'claims: {}'));
    git(repo, 'add', 'mandate.yaml');
    git(repo, 'commit', '-q', '-m', 'base');
  });

  it('reports only what is new or changed against the ref', () => {
    const head = withLegacy(exception, '{ type: static_secret, secret: env:NEW_KEY }').replace('claims: { repository_owner: acme }', 'claims: {}');
    writeFileSync(join(repo, 'mandate.yaml'), head);
    const r = mandate(repo, 'lint', '--config', 'mandate.yaml', '--base', 'main', '--today', '2026-05-01', '--json');
    assert.equal(r.code, 1, r.err);
    const out = JSON.parse(r.out) as { findings: Finding[] };
    assert.deepEqual(out.findings.map((f) => `${f.ruleId} ${f.key}`), ['static-secret-without-exception nhis[1].credentials[1].exception']);
    // Without --base, the old finding shows too.
    assert.deepEqual(ids(JSON.parse(mandate(repo, 'lint', '--config', 'mandate.yaml', '--today', '2026-05-01', '--json').out).findings).sort(), ['static-secret-without-exception', 'trust-issuer-only']);
  });

  it('the same static secret with the same exception is not new; a changed exception is', () => {
    writeFileSync(join(repo, 'mandate.yaml'), withLegacy('{ type: federated, trust: github-actions, subject: "repo:acme/etl:ref:refs/heads/main" }', exception).replace('claims: { repository_owner: acme }', 'claims: {}'));
    assert.equal(mandate(repo, 'lint', '--config', 'mandate.yaml', '--base', 'main', '--today', '2026-05-01').code, 0);
    writeFileSync(join(repo, 'mandate.yaml'), withLegacy(exception.replace('2026-12-31', '2026-02-01')).replace('claims: { repository_owner: acme }', 'claims: {}'));
    const changed = mandate(repo, 'lint', '--config', 'mandate.yaml', '--base', 'main', '--today', '2026-05-01');
    assert.equal(changed.code, 1);
    assert.match(changed.out, /exception-expired/);
  });

  it('an exception that lapsed since the base fails although the file did not change', () => {
    git(repo, 'checkout', '-q', '--', 'mandate.yaml');
    assert.equal(mandate(repo, 'lint', '--config', 'mandate.yaml', '--base', 'main', '--today', '2026-12-31').code, 0);
    const later = mandate(repo, 'lint', '--config', 'mandate.yaml', '--base', 'main', '--today', '2027-01-01');
    assert.equal(later.code, 1);
    assert.match(later.out, /exception-expired .*SEC-1/);
  });

  it('a file that is not in the base is all new; an unknown ref exits 2', () => {
    writeFileSync(join(repo, 'other.yaml'), CLEAN.replace('claims: { repository_owner: acme }', ''));
    const r = mandate(repo, 'lint', '--config', 'other.yaml', '--base', 'main');
    assert.equal(r.code, 1);
    assert.match(r.out, /trust-issuer-only/);
    const bad = mandate(repo, 'lint', '--config', 'mandate.yaml', '--base', 'no-such-branch');
    assert.equal(bad.code, 2);
    assert.match(bad.err, /--base: "no-such-branch" is not a commit/);
    assert.equal(mandate(repo, 'lint', '--config', 'mandate.yaml', '--base', '--output=x').code, 2);
  });
});

describe('mandate lint --scan (secretlint and the private-key detector)', () => {
  let dir: string;
  let privateKey: string;
  let awsSecret: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'mandate-lint-scan-'));
    privateKey = fakePrivateKey();
    awsSecret = fakeSecret();
    mkdirSync(join(dir, 'src/deploy'), { recursive: true });
    mkdirSync(join(dir, 'node_modules/pkg'), { recursive: true });
    writeFileSync(join(dir, 'src/deploy/key.ts'), `// signing key\nexport const KEY = \`${privateKey}\`;\n`);
    writeFileSync(join(dir, 'src/deploy/aws.ini'), `[default]\naws_access_key_id = ${fakeAccessKeyId()}\naws_secret_access_key = ${awsSecret}\n`);
    writeFileSync(join(dir, 'src/clean.ts'), 'export const answer = 42;\n');
    // Skipped: dependencies, and a binary file (a NUL byte) that holds a key.
    writeFileSync(join(dir, 'node_modules/pkg/key.pem'), privateKey);
    writeFileSync(join(dir, 'src/blob.bin'), Buffer.concat([Buffer.from([0, 1, 2]), Buffer.from(privateKey)]));
  });

  it('finds a committed private key and a committed cloud access key, masked', async () => {
    const r = await scanFiles(['src', 'node_modules/..'], { cwd: dir });
    const got = r.findings.map((f) => `${f.file}:${f.line}:${f.column} ${f.ruleId} ${f.properties?.secretlintRuleId ?? f.properties?.keyType}`);
    // The key is ours to report (lint-private-keys.test.ts): secretlint's finding on it is not repeated.
    assert.deepEqual(got, [
      'src/deploy/aws.ini:3:1 committed-secret @secretlint/secretlint-rule-aws',
      'src/deploy/key.ts:2:21 committed-private-key EC P-256',
    ]);
    assert.deepEqual(r.skipped, [{ file: 'src/blob.bin', reason: 'binary' }]);
    assert.equal(r.scanned, 3);
    const text = JSON.stringify(r);
    assert.ok(!text.includes(awsSecret));
    for (const line of privateKey.split('\n').filter((l) => l && !l.startsWith('-----'))) assert.ok(!text.includes(line));
  });

  it('a clean tree has no findings; a missing path is a usage error', async () => {
    assert.deepEqual((await scanFiles(['src/clean.ts'], { cwd: dir })).findings, []);
    await assert.rejects(scanFiles(['nope'], { cwd: dir }), /--scan nope: no such file/);
  });
});

describe('mandate lint: SARIF 2.1.0', () => {
  const findings: Finding[] = [
    ...lint(withLegacy('{ type: static_secret, secret: env:LEGACY_KEY }')),
    { ruleId: 'committed-secret', level: 'error', message: 'found private key: **** (secretlint @secretlint/secretlint-rule-privatekey)', file: 'src/a dir/key.ts', line: 2, column: 17, properties: { secretlintRuleId: '@secretlint/secretlint-rule-privatekey' } },
  ];

  it('has the version, schema, every rule with a help URI, and results with relative locations', () => {
    const log = toSarif(findings, { version: '0.1.0' }) as { version: string; $schema: string; runs: { tool: { driver: { rules: { id: string; helpUri: string }[] } }; results: Record<string, any>[] }[] };
    assert.equal(log.version, '2.1.0');
    assert.match(log.$schema, /sarif-schema-2\.1\.0\.json$/);
    assert.deepEqual(log.runs[0]!.tool.driver.rules.map((r) => r.id), LINT_RULES.map((r) => r.id));
    assert.ok(log.runs[0]!.tool.driver.rules.every((r) => r.helpUri.endsWith(`#${r.id}`)));
    const [first, second] = log.runs[0]!.results;
    assert.equal(first!.ruleId, 'static-secret-without-exception');
    assert.equal(first!.level, 'error');
    assert.deepEqual(first!.locations[0].physicalLocation, { artifactLocation: { uri: 'mandate.yaml' }, region: { startLine: 35, startColumn: 9 } });
    assert.equal(first!.properties.key, 'nhis[1].credentials[0].exception');
    assert.equal(second!.locations[0].physicalLocation.artifactLocation.uri, 'src/a%20dir/key.ts');
  });

  it('passes the explicit structural check of SARIF 2.1.0, which catches a broken log', () => {
    assert.deepEqual(sarifStructureProblems(toSarif(findings)), []);
    assert.deepEqual(sarifStructureProblems(toSarif([])), []);
    const broken = toSarif(findings) as { runs: { results: Record<string, unknown>[] }[] };
    broken.runs[0]!.results[0]!.level = 'fatal';
    broken.runs[0]!.results[0]!.ruleIndex = 5;
    broken.runs[0]!.results[1]!.extra = true;
    assert.deepEqual(sarifStructureProblems(broken), [
      '$.runs[0].results[0].ruleIndex: does not point at rule "static-secret-without-exception"',
      '$.runs[0].results[0].level: one of none, note, warning, error',
      '$.runs[0].results[1]: property "extra" is not allowed in a result',
    ]);
  });

  it('validates against the official SARIF 2.1.0 JSON schema', async () => {
    const path = officialSchemaPath();
    assert.ok(path, 'the SARIF 2.1.0 schema is missing: @microsoft/jest-sarif (a dev dependency) ships it; run npm ci');
    const validate = await officialSchemaValidator(path);
    assert.deepEqual(validate(toSarif(findings, { version: '0.1.0' })), []);
    assert.deepEqual(validate(toSarif([])), []);
    const broken = toSarif(findings) as { runs: { results: Record<string, unknown>[] }[] };
    broken.runs[0]!.results[0]!.level = 'fatal';
    assert.notDeepEqual(validate(broken), []);
  });
});

describe('mandate lint (CLI as a child process)', () => {
  let dir: string;
  let inline: string;
  let awsSecret: string;
  let privateKey: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'mandate-lint-cli-'));
    inline = fakeSecret();
    awsSecret = fakeSecret();
    privateKey = fakePrivateKey();
    writeFileSync(join(dir, 'clean.yaml'), CLEAN);
    writeFileSync(join(dir, 'mandate.yaml'), `${withLegacy('{ type: static_secret, secret: env:LEGACY_KEY }')}keys: { kek: "${inline}" }\n`);
    mkdirSync(join(dir, 'src'));
    writeFileSync(join(dir, 'src/creds.py'), `AWS_ACCESS_KEY_ID = "${fakeAccessKeyId()}"\nAWS_SECRET_ACCESS_KEY = "${awsSecret}"\n`);
    writeFileSync(join(dir, 'src/key.pem'), privateKey);
    writeFileSync(join(dir, 'src/ok.ts'), 'export {};\n');
  });

  it('exit 0 when clean, 1 with findings, naming the key', () => {
    const ok = mandate(dir, 'lint', '--config', 'clean.yaml', '--scan', 'src/ok.ts');
    assert.equal(ok.code, 0, ok.err);
    assert.equal(ok.out.trim(), 'ok: no findings');
    const bad = mandate(dir, 'lint', '--config', 'mandate.yaml', '--today', '2026-05-01');
    assert.equal(bad.code, 1, bad.err);
    assert.match(bad.out, /^mandate\.yaml:35:9 {2}error {2}static-secret-without-exception {2}nhis\[1\]\.credentials\[0\]\.exception: /m);
    assert.match(bad.out, /^mandate\.yaml:\d+:\d+ {2}error {2}inline-secret {2}keys\.kek: /m);
    assert.match(bad.out, /^2 findings: /m);
    // ./mandate.yaml is the default config.
    assert.equal(mandate(dir, 'lint').code, 1);
  });

  it('--json, --sarif FILE and --sarif -', () => {
    const json = mandate(dir, 'lint', '--config', 'mandate.yaml', '--scan', 'src', '--json');
    assert.equal(json.code, 1);
    const body = JSON.parse(json.out) as { ok: boolean; findings: Finding[]; scanned_files: number };
    assert.equal(body.ok, false);
    assert.equal(body.scanned_files, 3);
    assert.deepEqual(ids(body.findings), ['static-secret-without-exception', 'inline-secret', 'committed-secret', 'committed-private-key']);
    const file = mandate(dir, 'lint', '--config', 'mandate.yaml', '--scan', 'src', '--sarif', 'out.sarif');
    assert.equal(file.code, 1);
    assert.match(file.out, /4 findings/);
    const log = JSON.parse(readFileSync(join(dir, 'out.sarif'), 'utf8'));
    assert.deepEqual(sarifStructureProblems(log), []);
    assert.equal(log.runs[0].results.length, 4);
    const stdout = mandate(dir, 'lint', '--config', 'clean.yaml', '--sarif', '-');
    assert.equal(stdout.code, 0);
    assert.deepEqual(JSON.parse(stdout.out).runs[0].results, []);
  });

  it('no secret value in any output', () => {
    const outputs = [
      mandate(dir, 'lint', '--config', 'mandate.yaml', '--scan', 'src'),
      mandate(dir, 'lint', '--config', 'mandate.yaml', '--scan', 'src', '--json'),
      mandate(dir, 'lint', '--config', 'mandate.yaml', '--scan', 'src', '--sarif', '-'),
    ].map((r) => r.out + r.err);
    outputs.push(readFileSync(join(dir, 'out.sarif'), 'utf8'));
    const secrets = [inline, awsSecret, ...privateKey.split('\n').filter((l) => l && !l.startsWith('-----'))];
    for (const text of outputs) {
      assert.match(text, /committed-secret/);
      assert.match(text, /committed-private-key/);
      for (const s of secrets) assert.ok(!text.includes(s), 'a secret value reached the output');
    }
  });

  it('exit 2 on usage errors', () => {
    const empty = mkdtempSync(join(tmpdir(), 'mandate-lint-empty-'));
    assert.equal(mandate(empty, 'lint').code, 2);
    assert.equal(mandate(dir, 'lint', '--config', 'missing.yaml').code, 2);
    assert.equal(mandate(dir, 'lint', '--json', '--sarif', '-').code, 2);
    assert.equal(mandate(dir, 'lint', '--today', '01/05/2026').code, 2);
    assert.equal(mandate(dir, 'lint', '--scan', 'no-such-dir').code, 2);
    assert.equal(mandate(dir, 'lint', 'extra').code, 2);
    assert.equal(mandate(dir, 'lint', '--frobnicate').code, 2);
    // Not a git repository.
    assert.equal(mandate(empty, 'lint', '--config', join(dir, 'clean.yaml'), '--base', 'HEAD').code, 2);
  });
});

describe('this repository', () => {
  it('has no committed secret in its sources, tests, docs and benchmarks (mandate lint --scan, as its CI would run it)', () => {
    const root = resolve(BIN, '..', '..');
    const r = mandate(root, 'lint', '--scan', 'src', '--scan', 'test', '--scan', 'docs', '--scan', 'bench', '--scan', 'README.md', '--json');
    assert.equal(r.code, 0, r.out + r.err);
    assert.deepEqual(JSON.parse(r.out).findings, []);
  });
});
