import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { buildConfig, silentLogger, type Clock, type HostResolver, type MandateConfigInput } from '../../src/core/index.js';
import { startApp, type App } from '../../src/app.js';
import { adminCall } from './cluster.js';
import { deleteStream } from '../bus/helpers.js';
import { LOOPBACK_CIDRS } from './outbound.js';

export const PG_URL = 'postgres://postgres@127.0.0.1:5432/test';
const NATS_URL = 'nats://127.0.0.1:4222';

export interface TestApp {
  app: App;
  url: string;
  /** The bootstrap admin credential. */
  token: string;
  dataDir: string;
  /** Calls the admin API with the bootstrap credential. */
  admin(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }>;
}

export type Backend = { store: 'sqlite' | 'postgres'; bus: 'memory' | 'nats' };
export const BACKENDS: Backend[] = [
  { store: 'sqlite', bus: 'memory' },
  { store: 'postgres', bus: 'nats' },
];

/** A fresh schema and a PostgreSQL URL whose connections use it (search_path), for test isolation. */
async function freshPgSchema(): Promise<{ schema: string; url: string }> {
  const schema = `t_${randomBytes(6).toString('hex')}`;
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  await c.query(`CREATE SCHEMA ${schema}`);
  await c.end();
  return { schema, url: `${PG_URL}?options=${encodeURIComponent(`-c search_path=${schema}`)}` };
}

/** A PostgreSQL URL whose connections use a fresh schema (search_path), for test isolation. */
export async function freshPgSchemaUrl(): Promise<string> {
  return (await freshPgSchema()).url;
}

async function dropTestSchema(schema: string): Promise<void> {
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  try {
    await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await c.end();
  }
}

/** Starts a real Mandate on 127.0.0.1:0 with the given backend and extra config. */
export async function startTestApp(backend: Backend = BACKENDS[0]!, extra: MandateConfigInput = {}, env: NodeJS.ProcessEnv = {}, opts: { clock?: Clock; resolveHost?: HostResolver } = {}): Promise<TestApp> {
  const dataDir = mkdtempSync(join(tmpdir(), 'mandate-test-'));
  const suffix = randomBytes(4).toString('hex');
  const pgSchema = backend.store === 'postgres' ? await freshPgSchema() : undefined;
  const input: MandateConfigInput = {
    // Peers of the tests (issuers, SSF receivers and transmitters) listen on 127.0.0.1: the
    // documented allowance for them, unless the test configures outbound itself.
    outbound: { allow_private_cidrs: [...LOOPBACK_CIDRS] },
    ...extra,
    server: { port: 0, ...(extra.server ?? {}) },
    store: pgSchema === undefined
      ? { driver: 'sqlite', sqlite_path: join(dataDir, 'mandate.db') }
      : { driver: 'postgres', postgres_url: pgSchema.url },
    bus: backend.bus === 'memory' ? { driver: 'memory' } : { driver: 'nats', stream: `T_${suffix}`, subject_prefix: `t${suffix}` },
    log: { level: 'silent' },
  };
  const config = buildConfig(input, { env: {} });
  let token = '';
  const app = await startApp({
    config, env: { ...env }, dataDir, logger: silentLogger(), onBootstrapCredential: (t) => (token = t), ...(opts.clock ? { clock: opts.clock } : {}), ...(opts.resolveHost ? { resolveHost: opts.resolveHost } : {}),
  });
  // What the app leaves on the shared servers goes with it: its JetStream stream and its schema
  // (left behind, every run of the suite added ~20 streams and schemas to this machine's servers).
  const close = app.close.bind(app);
  let closed: Promise<void> | undefined;
  app.close = () => (closed ??= close().finally(async () => {
    if (backend.bus === 'nats') await deleteStream(NATS_URL, `T_${suffix}`).catch(() => undefined);
    if (pgSchema !== undefined) await dropTestSchema(pgSchema.schema).catch(() => undefined);
  }));
  const url = app.url;
  return {
    app, url, token, dataDir,
    admin: (method, path, body) => adminCall(url, token, method, path, body),
  };
}
