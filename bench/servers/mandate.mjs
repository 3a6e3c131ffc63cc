// Mandate for the broker benchmark, in its own process: SQLite store in a temp dir, memory
// bus, silent log, one NHI with a private_key_jwt credential (BENCH_CLIENT_JWK, a public JWK),
// one tool with a read action and a grant. Prints one JSON line on stdout when it listens;
// SIGTERM closes it gracefully (so that --cpu-prof writes its profile).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startApp } from '../../dist/src/app.js';
import { buildConfig, silentLogger } from '../../dist/src/core/index.js';

const clientJwk = JSON.parse(process.env.BENCH_CLIENT_JWK ?? 'null');
if (!clientJwk) throw new Error('BENCH_CLIENT_JWK (a public JWK) is required');
const CLIENT_ID = process.env.BENCH_CLIENT_ID ?? 'bench-agent';

const dataDir = mkdtempSync(join(tmpdir(), 'mandate-bench-'));
const config = buildConfig({
  server: { host: '127.0.0.1', port: 0 },
  store: { driver: 'sqlite', sqlite_path: join(dataDir, 'mandate.db') },
  bus: { driver: 'memory' },
  log: { level: 'silent' },
  keys: { kek: 'env:MANDATE_KEK' },
  nhis: [{
    id: CLIENT_ID, class: 'agent', owner: 'bench@example.com', system: 'bench', tier: 'read',
    credentials: [{ type: 'private_key_jwt', jwks: { keys: [clientJwk] } }],
  }],
  tools: [{
    id: 'tickets', kind: 'http', upstream: 'http://127.0.0.1:9',
    actions: [{ name: 'list_tickets', method: 'GET', path: '/tickets', tier: 'read' }],
  }],
  grants: [{ nhi: CLIENT_ID, tool: 'tickets', actions: ['list_tickets'] }],
}, { env: {} });

const app = await startApp({
  config,
  env: { NODE_ENV: 'production', MANDATE_KEK: randomBytes(32).toString('base64') },
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
  server: 'mandate', url: app.url, issuer: app.issuer, token_endpoint: `${app.issuer}/oauth/token`,
  client_id: CLIENT_ID, resource: `${app.issuer}/tools/tickets`, scope: 'list_tickets', warnings: app.warnings,
})}\n`);
