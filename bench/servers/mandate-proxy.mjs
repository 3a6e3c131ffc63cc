// Mandate as the tool proxy for bench/proxy, in its own process: SQLite store in a temp dir,
// memory bus, silent log, one NHI with a private_key_jwt credential (BENCH_CLIENT_JWK, a public
// JWK), and two tools in front of the same upstream (UPSTREAM) with a header credential:
//   items       GET /items/{id} as get_item, tier `read`  (binding: optional → bearer tokens, (b))
//   items-dpop  GET /items/{id} as get_item, tier `bound` (binding: required → DPoP tokens, (c))
// A small policy file is loaded as well (BENCH_POLICY=none leaves it out): a forbid on every
// action that reads only the principal and the tier, and an @approval forbid on an argument of
// another action, so that Cedar has real policies to consider, as in a deployment.
// BENCH_GOVERNANCE=off turns governance off (`governance.enabled: false`: no detection consumers,
// sweep, playbooks or risk feed); bench/governance compares the two.
// Prints one JSON line on stdout when it listens; SIGTERM closes it gracefully (so that
// --cpu-prof writes its profile).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startApp } from '../../dist/src/app.js';
import { buildConfig, silentLogger } from '../../dist/src/core/index.js';

const clientJwk = JSON.parse(process.env.BENCH_CLIENT_JWK ?? 'null');
if (!clientJwk) throw new Error('BENCH_CLIENT_JWK (a public JWK) is required');
const upstream = process.env.UPSTREAM;
if (!upstream) throw new Error('UPSTREAM is required');
const CLIENT_ID = process.env.BENCH_CLIENT_ID ?? 'bench-agent';

const dataDir = mkdtempSync(join(tmpdir(), 'mandate-bench-proxy-'));
const policyFiles = [];
if (process.env.BENCH_POLICY !== 'none') {
  const file = join(dataDir, 'bench.cedar');
  writeFileSync(file, [
    '@id("no-destructive-in-production")',
    'forbid (principal, action, resource)',
    '  when { principal.environment == "production" && context.tier == "destructive" };',
    '@id("big-refunds")',
    '@approval("required")',
    'forbid (principal, action == Mandate::Action::"refund", resource)',
    '  when { context.args has body && context.args.body has amount && context.args.body.amount > 1000 }',
    '  unless { context.approved };',
    '',
  ].join('\n'));
  policyFiles.push(file);
}
const actions = (tier) => [
  { name: 'get_item', method: 'GET', path: '/items/{id}', tier },
  { name: 'refund', method: 'POST', path: '/refunds', tier: 'write' },
];
const config = buildConfig({
  server: { host: '127.0.0.1', port: 0 },
  store: { driver: 'sqlite', sqlite_path: join(dataDir, 'mandate.db') },
  bus: { driver: 'memory' },
  log: { level: 'silent' },
  keys: { kek: 'env:MANDATE_KEK' },
  tokens: {
    profiles: [
      { name: 'read', ttl: '10m', binding: 'optional' },
      { name: 'bound', ttl: '10m', binding: 'required' },
      { name: 'write', ttl: '5m' },
    ],
  },
  policy: { files: policyFiles },
  governance: { enabled: process.env.BENCH_GOVERNANCE !== 'off' },
  nhis: [{
    id: CLIENT_ID, class: 'agent', owner: 'bench@example.com', system: 'bench', tier: 'read',
    credentials: [{ type: 'private_key_jwt', jwks: { keys: [clientJwk] } }],
  }],
  tools: [
    { id: 'items', kind: 'http', upstream, credential: { type: 'header', name: 'X-Api-Key', value: 'env:ITEMS_KEY' }, actions: actions('read') },
    { id: 'items-dpop', kind: 'http', upstream, credential: { type: 'header', name: 'X-Api-Key', value: 'env:ITEMS_KEY' }, actions: actions('bound') },
  ],
  grants: [
    { nhi: CLIENT_ID, tool: 'items', actions: ['get_item'] },
    { nhi: CLIENT_ID, tool: 'items-dpop', actions: ['get_item'] },
  ],
}, { env: {} });

const app = await startApp({
  config,
  env: { NODE_ENV: 'production', MANDATE_KEK: randomBytes(32).toString('base64'), ITEMS_KEY: randomBytes(24).toString('base64url') },
  dataDir,
  logger: silentLogger(),
  onBootstrapCredential: () => {},
});

let closing = false;
async function shutdown() {
  if (closing) return;
  closing = true;
  try {
    await app.close();
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
    process.exit(0);
  }
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

process.stdout.write(`${JSON.stringify({
  server: 'mandate-proxy', url: app.url, issuer: app.issuer, token_endpoint: `${app.issuer}/oauth/token`, client_id: CLIENT_ID,
  tools: { bearer: 'items', dpop: 'items-dpop' }, scope: 'get_item', policies: policyFiles.length > 0, governance: config.governance.enabled, warnings: app.warnings,
})}\n`);
