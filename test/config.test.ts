import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../src/core/errors.js';
import { parseConfigText, loadConfigFile, buildConfig } from '../src/core/config/index.js';

// Compiled to dist/test/config.test.js: the repository is two levels up.
const REPO = fileURLToPath(new URL('../../', import.meta.url));

/** Parses with no environment overrides, so the developer's shell cannot change the outcome. */
const parse = (text: string, env: NodeJS.ProcessEnv = {}) => parseConfigText(text, { env });

/** Asserts that parsing fails with a ConfigError and returns its issues. */
function refuse(text: string, env: NodeJS.ProcessEnv = {}): readonly string[] {
  let caught: unknown;
  try {
    parse(text, env);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof ConfigError, `expected a ConfigError, got ${String(caught)}`);
  assert.equal(caught.code, 'ERR_CONFIG_INVALID');
  assert.ok(caught.issues.length > 0);
  for (const issue of caught.issues) assert.ok(caught.message.includes(issue));
  return caught.issues;
}

/** The single issue of a refused config (a test that expects more calls refuse() itself). */
function refuseOne(text: string, env: NodeJS.ProcessEnv = {}): string {
  const issues = refuse(text, env);
  assert.equal(issues.length, 1, `expected one issue, got:\n${issues.join('\n')}`);
  return issues[0]!;
}

const TICKETS_TOOL = `
tools:
  - id: tickets
    kind: http
    upstream: http://127.0.0.1:9001
    actions:
      - { name: list_tickets, method: GET, path: /tickets, tier: read }
`;

test('a tool without upstream is refused, naming tools[0].upstream and an example', () => {
  const msg = refuseOne(`
tools:
  - id: tickets
    kind: http
    actions:
      - { name: list_tickets, method: GET, path: /tickets, tier: read }
`);
  assert.match(msg, /^mandate\.yaml: tools\[0\]\.upstream: required/);
  assert.ok(msg.includes('for example: upstream: http://127.0.0.1:9001'), msg);
});

test('a value of the wrong type names the key and the expected type, not "required"', () => {
  const msg = refuseOne('server:\n  port: abc\n');
  assert.ok(msg.startsWith('mandate.yaml: server.port: '), msg);
  assert.match(msg, /expected number, received string/);
  assert.doesNotMatch(msg, /required/);
  assert.ok(msg.includes('for example: port: 8080'), msg);
});

test('an unknown key is named, with the keys allowed there', () => {
  const msg = refuseOne('server:\n  prot: 8080\n');
  assert.ok(msg.startsWith('mandate.yaml: server: unknown key "prot"'), msg);
  assert.match(msg, /allowed here: host, port, public_url, tls, max_body_bytes, shutdown_grace/);
});

test('an inline secret is refused and the message says to write env: or file:', () => {
  const msg = refuseOne(`
tools:
  - id: tickets
    kind: http
    upstream: http://127.0.0.1:9001
    credential: { type: bearer, value: sk_live_abc }
    actions:
      - { name: list_tickets, method: GET, path: /tickets, tier: read }
`);
  assert.ok(msg.startsWith('mandate.yaml: tools[0].credential.value: an inline secret is refused'), msg);
  assert.match(msg, /env:NAME or file:PATH/);
  // The refused value is never echoed back (it may be a live secret).
  assert.ok(!msg.includes('sk_live_abc'), msg);
});

test('a trust entry that pins only the issuer is refused, naming trust[0].claims', () => {
  const msg = refuseOne(`
trust:
  - name: github-actions
    kind: github_actions
    issuer: https://token.actions.githubusercontent.com
    discovery: true
    algorithms: [RS256]
    audience: https://mandate.example.com
`);
  assert.ok(msg.startsWith('mandate.yaml: trust[0].claims: a trust entry that pins only the issuer is refused'), msg);
});

test('a grant naming an action the tool does not have is refused, naming the grant and the action', () => {
  const msg = refuseOne(`${TICKETS_TOOL}
nhis:
  - { id: support-agent, class: agent, owner: support@example.com, system: helpdesk, tier: read }
grants:
  - { nhi: support-agent, tool: tickets, actions: [list_tickets, delete_everything] }
`);
  assert.equal(msg, 'mandate.yaml: grants[0].actions[1]: tool "tickets" has no action "delete_everything"');
});

test('a token profile longer than tokens.max_ttl is refused', () => {
  const msg = refuseOne('tokens:\n  max_ttl: 1h\n  profiles:\n    - { name: read, ttl: 2h }\n');
  assert.ok(msg.startsWith('mandate.yaml: tokens.profiles[0].ttl: longer than tokens.max_ttl (3600s)'), msg);
});

test('two token profiles with one name are refused at tokens.profiles[i]', () => {
  const msg = refuseOne('tokens:\n  profiles:\n    - { name: read, ttl: 1m }\n    - { name: read, ttl: 2m }\n');
  assert.equal(msg, 'mandate.yaml: tokens.profiles[1]: duplicate "read": each must be unique');
});

test('a repeated YAML key is refused, naming the key and its line', () => {
  const msg = refuseOne('server:\n  port: 8080\n  host: 0.0.0.0\n  port: 9090\n');
  assert.equal(msg, 'mandate.yaml: line 4, column 3: YAML: duplicate key "port": write each key once');
});

test('a postgres_url with an inline password is refused, in the userinfo or in the query', () => {
  // Built at run time, so that `mandate lint --scan test` does not report this file's fake password.
  const withPassword = ['postgres://mandate', 'hunter2@db.internal/mandate'].join(':');
  for (const url of [withPassword, 'postgres://mandate@db.internal/mandate?password=hunter2']) {
    const msg = refuseOne(`store:\n  driver: postgres\n  postgres_url: ${url}\n`);
    assert.ok(msg.startsWith('mandate.yaml: store.postgres_url: an inline password is refused'), msg);
    assert.ok(!msg.includes('hunter2'), msg);
  }
  // Without a password the URL is accepted (the password then comes from PGPASSWORD or a .pgpass file).
  assert.equal(parse('store:\n  driver: postgres\n  postgres_url: postgres://mandate@db.internal/mandate\n').store.driver, 'postgres');
});

test('tokens.refresh_tokens: true is refused', () => {
  const msg = refuseOne('tokens:\n  refresh_tokens: true\n');
  assert.ok(msg.startsWith('mandate.yaml: tokens.refresh_tokens: refresh tokens are never issued to machines'), msg);
});

test('several problems are all reported, each naming its key', () => {
  const issues = refuse('server:\n  port: 70000\nstore:\n  driver: mysql\nlog:\n  level: loud\n');
  assert.equal(issues.length, 3, issues.join('\n'));
  assert.ok(issues.some((i) => i.startsWith('mandate.yaml: server.port: ')));
  assert.ok(issues.some((i) => i.startsWith('mandate.yaml: store.driver: ')));
  assert.ok(issues.some((i) => i.startsWith('mandate.yaml: log.level: ')));
});

test('a top level that is not a mapping is refused', () => {
  assert.match(refuseOne('- server\n- store\n'), /the top level must be a mapping/);
});

test('an empty file gives the defaults: sqlite, memory bus, profiles read/write/destructive', () => {
  const c = parse('');
  assert.equal(c.store.driver, 'sqlite');
  assert.equal(c.store.sqlite_path, '.mandate/mandate.db');
  assert.equal(c.bus.driver, 'memory');
  assert.deepEqual(
    c.tokens.profiles.map((p) => [p.name, p.ttl, p.approval]),
    [['read', 600, false], ['write', 300, false], ['destructive', 120, true]],
  );
  assert.equal(c.tokens.max_ttl, 3600);
  assert.equal(c.tokens.refresh_tokens, false);
  assert.equal(c.server.host, '127.0.0.1');
  assert.equal(c.server.port, 8080);
  assert.deepEqual([c.trust, c.nhis, c.tools, c.grants], [[], [], [], []]);
  // A file holding only a comment is empty too.
  assert.deepEqual(parse('# nothing yet\n'), c);
});

const FULL = `
server:
  host: 0.0.0.0
  port: 8443
  public_url: https://mandate.example.com
  shutdown_grace: 30s
store:
  driver: postgres
  postgres_url: env:MANDATE_DATABASE_URL
  pool_size: 20
bus:
  driver: nats
  nats_servers: [nats://nats-1:4222, nats://nats-2:4222]
  nats_credentials: file:/etc/mandate/nats.creds
  staleness_bound: 10s
keys:
  algorithm: ES256
  kek: env:MANDATE_KEK
  rotation_interval: 7d
tokens:
  max_ttl: 30m
  profiles:
    - { name: read, ttl: 10m }
    - { name: write, ttl: 5m }
    - { name: destructive, ttl: 90s, approval: true }
trust:
  - name: github-actions
    kind: github_actions
    issuer: https://token.actions.githubusercontent.com
    discovery: true
    algorithms: [RS256]
    audience: https://mandate.example.com
    claims: { repository_owner: acme, ref: refs/heads/main }
nhis:
  - id: deploy-agent
    class: agent
    owner: platform-team@example.com
    system: release-pipeline
    tier: write
    credentials:
      - { type: federated, trust: github-actions, subject: "repo:acme/deploy:ref:refs/heads/main", created: 2026-01-15 }
  - id: support-agent
    class: agent
    owner: support@example.com
    system: helpdesk
    tier: read
    may_act: [deploy-agent]
    credentials:
      - type: static_secret
        secret: env:SUPPORT_AGENT_SECRET
        exception: { ticket: SEC-1234, expires: 2026-12-31, reason: vendor bot without OIDC }
tools:
  - id: tickets
    kind: http
    upstream: http://127.0.0.1:9001
    credential: { type: bearer, value: env:TICKETS_API_TOKEN }
    timeout: 10s
    actions:
      - { name: list_tickets, method: GET, path: /tickets, tier: read }
      - { name: create_ticket, method: POST, path: /tickets, tier: write }
      - { name: delete_ticket, method: DELETE, path: "/tickets/{id}", tier: destructive }
  - id: docs
    kind: mcp
    upstream: http://127.0.0.1:9002/mcp
    credential: { type: header, name: X-Api-Key, value: file:/run/secrets/docs }
    rate_limit: { per_second: 5, burst: 10 }
    actions:
      - { name: search_docs, tier: read }
      - { name: create_page, tier: write }
      - { name: delete_space, tier: destructive }
grants:
  - { nhi: deploy-agent, tool: tickets, actions: [list_tickets, create_ticket], change_ref: PR-482 }
  - { nhi: support-agent, tool: docs, actions: ["*"], expires: 2026-12-31 }
policy:
  files: [policies/base.cedar]
signals:
  receivers:
    - { name: idp, issuer: https://idp.example.com, jwks_uri: https://idp.example.com/jwks, audience: mandate, delivery: push }
admin:
  bootstrap: false
log:
  level: warn
`;

test('a full realistic config parses, with durations in seconds and secrets kept as references', () => {
  const c = parse(FULL);
  assert.equal(c.server.port, 8443);
  assert.equal(c.server.shutdown_grace, 30);
  assert.equal(c.store.postgres_url, 'env:MANDATE_DATABASE_URL');
  assert.deepEqual(c.bus.nats_servers, ['nats://nats-1:4222', 'nats://nats-2:4222']);
  assert.equal(c.keys.rotation_interval, 7 * 86400);
  assert.equal(c.tokens.max_ttl, 1800);
  assert.deepEqual(c.tokens.profiles.map((p) => p.ttl), [600, 300, 90]);
  assert.equal(c.trust[0]!.claims.repository_owner, 'acme');
  assert.equal(c.trust[0]!.subject_claim, 'sub');
  const cred = c.nhis[0]!.credentials[0]!;
  assert.equal(cred.type, 'federated');
  assert.equal(cred.type === 'federated' ? cred.created : undefined, '2026-01-15');
  assert.equal(c.nhis[1]!.environment, 'production');
  assert.deepEqual(c.tools.map((t) => [t.id, t.kind, t.actions.length, t.credential?.value]), [
    ['tickets', 'http', 3, 'env:TICKETS_API_TOKEN'],
    ['docs', 'mcp', 3, 'file:/run/secrets/docs'],
  ]);
  assert.equal(c.tools[0]!.timeout, 10);
  assert.equal(c.tools[1]!.timeout, 30);
  assert.equal(c.tools[1]!.max_body_bytes, 1024 * 1024);
  assert.equal(c.grants[1]!.actions[0], '*');
  assert.equal(c.signals.transmitter.enabled, true);
  assert.equal(c.admin.bootstrap, false);
  assert.equal(c.log.level, 'warn');
});

test('loadConfigFile reads a file and names it in errors', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mandate-config-'));
  try {
    const good = join(dir, 'mandate.yaml');
    writeFileSync(good, FULL);
    assert.equal(loadConfigFile(good, { env: {} }).tools.length, 2);
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'server:\n  prot: 1\n');
    assert.throws(() => loadConfigFile(bad, { env: {} }), (err: unknown) => err instanceof ConfigError && err.issues[0]!.startsWith(`${bad}: server: unknown key "prot"`));
    assert.throws(() => loadConfigFile(join(dir, 'missing.yaml'), { env: {} }), (err: unknown) => err instanceof ConfigError && /cannot be read/.test(err.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the result is deep-frozen: assignment throws (ESM is strict mode)', () => {
  const c = parse(FULL);
  assert.ok(Object.isFrozen(c));
  assert.ok(Object.isFrozen(c.tools[0]!.actions[0]));
  assert.throws(() => {
    (c.server as { port: number }).port = 1;
  }, TypeError);
  assert.throws(() => {
    (c.tools[0]!.actions as unknown as unknown[]).push({});
  }, TypeError);
  assert.throws(() => {
    (c.trust[0]!.claims as Record<string, string>).repository_owner = 'evil';
  }, TypeError);
  assert.equal(c.server.port, 8443);
  assert.equal(c.trust[0]!.claims.repository_owner, 'acme');
});

test('environment overrides: MANDATE_SERVER__PORT and MANDATE_STORE__DRIVER/POSTGRES_URL', () => {
  const c = parse('server:\n  port: 8080\n', {
    MANDATE_SERVER__PORT: '9001',
    MANDATE_STORE__DRIVER: 'postgres',
    MANDATE_STORE__POSTGRES_URL: 'env:X',
    // Not overrides: these are read elsewhere, and must not become config keys.
    MANDATE_URL: 'http://127.0.0.1:8080',
    MANDATE_TOKEN: 'x',
    PATH: '/usr/bin',
  });
  assert.equal(c.server.port, 9001);
  assert.equal(typeof c.server.port, 'number');
  assert.equal(c.store.driver, 'postgres');
  assert.equal(c.store.postgres_url, 'env:X');
  // The override is validated like the file: a wrong value is refused naming the key.
  assert.match(refuseOne('', { MANDATE_SERVER__PORT: 'abc' }), /^mandate\.yaml: server\.port: /);
  // Postgres without a URL is refused.
  assert.match(refuseOne('', { MANDATE_STORE__DRIVER: 'postgres' }), /^mandate\.yaml: store\.postgres_url: required when store\.driver is postgres/);
});

test('an override through a list is refused instead of landing under the wrong key', () => {
  const msg = refuseOne(TICKETS_TOOL, { MANDATE_TOOLS__0__UPSTREAM: 'http://evil.example' });
  assert.equal(msg, 'MANDATE_TOOLS__0__UPSTREAM: tools is not a mapping, so it cannot be overridden key by key');
});

test('buildConfig does not change the object it is given', () => {
  const raw = { server: { port: 8080 } };
  const c = buildConfig(raw, { env: { MANDATE_SERVER__PORT: '9001' } });
  assert.equal(c.server.port, 9001);
  assert.deepEqual(raw, { server: { port: 8080 } });
  assert.ok(!Object.isFrozen(raw.server));
});

test('durations: 15m is 900 seconds, and the other units and bare numbers parse', () => {
  const c = parse('tokens:\n  max_ttl: 2h\n  dpop_proof_max_age: 90\n  profiles:\n    - { name: read, ttl: 15m }\n    - { name: write, ttl: 300s }\nkeys:\n  rotation_interval: 7d\n');
  assert.equal(c.tokens.profiles[0]!.ttl, 900);
  assert.equal(c.tokens.profiles[1]!.ttl, 300);
  assert.equal(c.tokens.max_ttl, 7200);
  assert.equal(c.tokens.dpop_proof_max_age, 90);
  assert.equal(c.keys.rotation_interval, 604800);
  const msg = refuseOne('tokens:\n  max_ttl: 1 hour\n');
  assert.ok(msg.startsWith('mandate.yaml: tokens.max_ttl: "1 hour" is not a duration'), msg);
});

test('schema/mandate.schema.json equals a fresh generation (gen-schema --check)', () => {
  const r = spawnSync(process.execPath, [join(REPO, 'scripts/gen-schema.mjs'), '--check'], { cwd: REPO, encoding: 'utf8' });
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  assert.match(r.stdout, /schema\/mandate\.schema\.json is up to date/);
});
