import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { buildConfig, silentLogger, type Clock, type MandateConfigInput } from '../../src/core/index.js';
import { startApp, type App } from '../../src/app.js';
import { adminCall } from './cluster.js';

export const PG_URL = 'postgres://postgres@127.0.0.1:5432/test';

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

/** A PostgreSQL URL whose connections use a fresh schema (search_path), for test isolation. */
export async function freshPgSchemaUrl(): Promise<string> {
  const schema = `t_${randomBytes(6).toString('hex')}`;
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  await c.query(`CREATE SCHEMA ${schema}`);
  await c.end();
  return `${PG_URL}?options=${encodeURIComponent(`-c search_path=${schema}`)}`;
}

async function deleteTestStream(name: string): Promise<void> {
  const nc = await connect({ servers: 'nats://127.0.0.1:4222', timeout: 3_000, maxReconnectAttempts: 0 });
  try {
    await (await jetstreamManager(nc, { timeout: 3_000 })).streams.delete(name).catch(() => false);
  } finally {
    await nc.close();
  }
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
export async function startTestApp(backend: Backend = BACKENDS[0]!, extra: MandateConfigInput = {}, env: NodeJS.ProcessEnv = {}, opts: { clock?: Clock } = {}): Promise<TestApp> {
  const dataDir = mkdtempSync(join(tmpdir(), 'mandate-test-'));
  const suffix = randomBytes(4).toString('hex');
  const input: MandateConfigInput = {
    ...extra,
    server: { port: 0, ...(extra.server ?? {}) },
    store: backend.store === 'sqlite'
      ? { driver: 'sqlite', sqlite_path: join(dataDir, 'mandate.db') }
      : { driver: 'postgres', postgres_url: await freshPgSchemaUrl() },
    bus: backend.bus === 'memory' ? { driver: 'memory' } : { driver: 'nats', stream: `T_${suffix}`, subject_prefix: `t${suffix}` },
    log: { level: 'silent' },
  };
  const config = buildConfig(input, { env: {} });
  let token = '';
  const app = await startApp({
    config, env: { ...env }, dataDir, logger: silentLogger(), onBootstrapCredential: (t) => (token = t), ...(opts.clock ? { clock: opts.clock } : {}),
  });
  // What the app leaves on the shared servers goes with it: its JetStream stream and its schema
  // (left behind, every run of the suite added ~20 streams and schemas to this machine's servers).
  const close = app.close.bind(app);
  let closed: Promise<void> | undefined;
  app.close = () => (closed ??= close().finally(async () => {
    if (backend.bus === 'nats') await deleteTestStream(`T_${suffix}`).catch(() => undefined);
    const schema = input.store?.driver === 'postgres' ? /search_path%3D(t_[0-9a-f]+)/.exec(String(input.store.postgres_url))?.[1] : undefined;
    if (schema) await dropTestSchema(schema).catch(() => undefined);
  }));
  const url = app.url;
  return {
    app, url, token, dataDir,
    admin: (method, path, body) => adminCall(url, token, method, path, body),
  };
}
