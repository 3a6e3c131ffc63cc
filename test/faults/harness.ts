/**
 * The fault harness (issue 15, item 12): a private PostgreSQL cluster and a private nats-server
 * that a test may stop and start, real `mandate serve --role …` processes on them, a load of a
 * few concurrent clients on the proxies and the admin API that records every answer, and the
 * checks the fault tests share (no process ended but the one killed, the audit chain verifies,
 * every acknowledged change and its audit record are in the store).
 *
 * Everything here is exported so that a new fault is a few lines: see test/faults/README.md.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { ASSERTION_TYPE, agentNhi, clientAssertion, clientCredentialsToken, testAgent, type TestAgent } from '../helpers/agent.js';
import { adminCall, freePort, newKek, PrivateNats, spawnInstance, writeConfig, type Instance } from '../helpers/cluster.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import { main } from '../../src/cli/main.js';

export { PrivateNats, freePort, type Instance };

/** Waits for fn to return something truthy, polling every `everyMs`; throws after `timeoutMs`. */
export async function until<T>(fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs: number, what: string, everyMs = 50): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    let v: T | undefined | false;
    try {
      v = await fn();
    } catch {
      v = undefined;
    }
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

// ---------------------------------------------------------------- PostgreSQL

/** The newest PostgreSQL server binaries on this machine (MANDATE_TEST_PG_BIN overrides). */
export function postgresBinDir(): string | undefined {
  if (process.env.MANDATE_TEST_PG_BIN) return process.env.MANDATE_TEST_PG_BIN;
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return undefined;
  const versions = readdirSync(base).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  for (const v of versions) {
    const bin = join(base, v, 'bin');
    if (existsSync(join(bin, 'initdb')) && existsSync(join(bin, 'postgres'))) return bin;
  }
  return undefined;
}

/** PostgreSQL refuses to run as root: under root the cluster belongs to (and runs as) the `postgres` user. */
function postgresUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error('running as root, and there is no postgres user to run PostgreSQL as');
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/**
 * A PostgreSQL cluster of its own (initdb into a temporary directory, trust authentication,
 * 127.0.0.1 on a free port), so that a test can stop it (`stop()` is `pg_ctl -m fast stop`:
 * SIGINT to the postmaster) and start it again without touching the machine's server.
 */
export class PrivatePostgres {
  readonly dir: string;
  readonly dataDir: string;
  private child: ChildProcess | undefined;
  private exited: Promise<void> | undefined;
  log = '';
  private readonly user = postgresUser();

  private constructor(readonly bin: string, readonly port: number) {
    this.dir = mkdtempSync(join(tmpdir(), 'mandate-pg-'));
    this.dataDir = join(this.dir, 'data');
    if (this.user) chownSync(this.dir, this.user.uid, this.user.gid);
  }

  /** initdb (unsynced: the cluster lives for one test run) on a free port; not started. */
  static async create(): Promise<PrivatePostgres> {
    const bin = postgresBinDir();
    if (!bin) throw new Error('no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (set MANDATE_TEST_PG_BIN)');
    const p = new PrivatePostgres(bin, await freePort());
    await p.run(join(bin, 'initdb'), ['-D', p.dataDir, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-sync', '--no-instructions']);
    return p;
  }

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  private run(cmd: string, args: string[]): Promise<void> {
    return new Promise((resolve, reject) => {
      const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(this.user ?? {}), cwd: this.dir });
      let out = '';
      c.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      c.stderr!.on('data', (d: Buffer) => (out += d.toString()));
      c.once('error', reject);
      c.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} exited with ${code}:\n${out}`))));
    });
  }

  /** Starts the postmaster and resolves once it answers a query. */
  async start(): Promise<void> {
    const socketDir = join(this.dir, 'sock');
    mkdirSync(socketDir, { recursive: true });
    if (this.user) chownSync(socketDir, this.user.uid, this.user.gid);
    chmodSync(socketDir, 0o700);
    const child = spawn(join(this.bin, 'postgres'), [
      '-D', this.dataDir, '-p', String(this.port), '-h', '127.0.0.1', '-k', socketDir,
      // A test cluster: no fsync (nothing here outlives the run); enough connections for a few instances.
      '-c', 'fsync=off', '-c', 'full_page_writes=off', '-c', 'max_connections=100', '-c', 'log_min_messages=warning',
    ], { stdio: ['ignore', 'pipe', 'pipe'], ...(this.user ?? {}), cwd: this.dir });
    this.child = child;
    this.exited = new Promise((r) => child.once('exit', () => r()));
    const keep = (b: Buffer) => {
      this.log = (this.log + b.toString()).slice(-8_000);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    await until(async () => {
      if (child.exitCode !== null) throw new Error(`postgres exited with ${child.exitCode}:\n${this.log}`);
      const c = new pg.Client({ connectionString: this.url, connectionTimeoutMillis: 1_000 });
      c.on('error', () => {});
      try {
        await c.connect();
        await c.query('select 1');
        return true;
      } finally {
        await c.end().catch(() => {});
      }
    }, 20_000, `postgres on ${this.port}`).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n${this.log}`);
    });
  }

  /** `pg_ctl -m fast stop`: SIGINT, which rolls back open transactions and ends every connection; resolves when it has exited. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGINT');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await this.exited;
    clearTimeout(timer);
  }

  /** Stops the cluster (if running) and removes its directory. */
  async destroy(): Promise<void> {
    await this.stop().catch(() => {});
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** A query on a fresh connection (for the tests' own reads of what the instances stored). */
  async query<R extends pg.QueryResultRow = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<R[]> {
    const c = new pg.Client({ connectionString: this.url });
    c.on('error', () => {});
    await c.connect();
    try {
      return (await c.query<R>(sql, params)).rows;
    } finally {
      await c.end().catch(() => {});
    }
  }
}

// ---------------------------------------------------------------- the cluster

export const ISSUER = 'http://mandate.faults.test';
const TOOL = 'rec';

export interface FaultCluster {
  pg: PrivatePostgres;
  nats: PrivateNats;
  upstream: RecordingUpstream;
  configPath: string;
  env: NodeJS.ProcessEnv;
  broker: Instance;
  proxies: Instance[];
  /** The signals instance (SSF, governance's consumers and sweep), when asked for. */
  signals: Instance | undefined;
  /** Every instance started (restarted ones too), for the crash check and the teardown. */
  started: Instance[];
  /** The instances a test killed on purpose (`kill9`): the crash check leaves them out. */
  killed: Instance[];
  /** `kill -9` of one instance; resolves when it has ended. */
  kill9(i: Instance): Promise<void>;
  /** The bootstrap admin credential. */
  token: string;
  agents: TestAgent[];
  /** Starts one more instance of `role` on the same config (e.g. to replace one killed). */
  spawn(role: 'broker' | 'proxy' | 'signals' | 'all', env?: NodeJS.ProcessEnv): Promise<Instance>;
  /** A token for `agent` from the broker (or `at`), for the tool `rec`. */
  issue(agent: TestAgent, at?: Instance): Promise<string>;
  /** The admin API of `at` (the broker by default) with the bootstrap credential. */
  admin(method: string, path: string, body?: unknown, at?: Instance): Promise<{ status: number; body: any }>;
  close(): Promise<void>;
}

export interface FaultClusterOptions {
  proxies?: number;
  agents?: string[];
  /** bus.staleness_bound in seconds (default 2: a NATS outage shows quickly). */
  stalenessS?: number;
  /** Also a `--role signals` instance (its background work on the store and the bus is exposed to the faults too). */
  signals?: boolean;
}

/**
 * A private PostgreSQL and nats-server, a recording upstream, a broker, `proxies` proxy
 * processes and optionally a signals process (`mandate serve --role …`, as the cluster tests start them) sharing one config:
 * issuer ISSUER, one HTTP tool `rec` (GET /items), agents with private_key_jwt keys.
 */
export async function startFaultCluster(o: FaultClusterOptions = {}): Promise<FaultCluster> {
  const started: Instance[] = [];
  const pgc = await PrivatePostgres.create();
  const natsDir = mkdtempSync(join(tmpdir(), 'mandate-nats-'));
  const nats = new PrivateNats(await freePort(), natsDir);
  const upstream = await startRecordingUpstream();
  const closeAll = async () => {
    // FAULTS_DEBUG=1: every instance's log tail on stderr, to see why a fault test failed.
    if (process.env.FAULTS_DEBUG) {
      for (const i of started) process.stderr.write(`\n--- ${i.role} ${i.instance} (${i.exited() ?? 'running'})\n${i.stderr().slice(-4_000)}${i.stdout().slice(-8_000)}\n`);
    }
    await Promise.all(started.map((i) => i.stop().catch(() => {})));
    nats.kill();
    rmSync(natsDir, { recursive: true, force: true });
    await pgc.destroy();
    await upstream.close();
  };
  try {
    await Promise.all([pgc.start(), nats.start()]);
    const agents = await Promise.all((o.agents ?? ['alice', 'bob', 'carol']).map((id) => testAgent(id)));
    const suffix = randomBytes(4).toString('hex');
    const configPath = writeConfig({
      server: { host: '127.0.0.1', port: 0, public_url: ISSUER, shutdown_grace: 2 },
      store: { driver: 'postgres', postgres_url: pgc.url, pool_size: 4 },
      // The stream's subjects follow from its name (bus.subject_prefix is left to its default).
      bus: { driver: 'nats', nats_servers: [nats.url], stream: `F_${suffix}`, staleness_bound: o.stalenessS ?? 2 },
      keys: { kek: 'env:FAULTS_KEK' },
      log: { level: 'warn' },
      tokens: { profiles: [{ name: 'read', ttl: '10m', binding: 'optional' }, { name: 'write', ttl: '5m', binding: 'optional' }] },
      nhis: agents.map((a) => agentNhi(a)),
      tools: [{ id: TOOL, kind: 'http', upstream: upstream.url, actions: [{ name: 'list_items', method: 'GET', path: '/items', tier: 'read' }] }],
      grants: agents.map((a) => ({ nhi: a.id, tool: TOOL, actions: ['*'] })),
    });
    const env = { FAULTS_KEK: newKek() };
    const spawnOne = async (role: string, extra: NodeJS.ProcessEnv = {}) => {
      const i = await spawnInstance(role, configPath, { ...env, ...extra });
      started.push(i);
      return i;
    };
    // The broker first: it migrates, makes the first signing key and prints the bootstrap credential.
    const broker = await spawnOne('broker');
    const token = await until(() => broker.bootstrapToken, 10_000, 'the bootstrap credential');
    const [signals, ...proxies] = await Promise.all([
      o.signals ? spawnOne('signals') : Promise.resolve(undefined),
      ...Array.from({ length: o.proxies ?? 2 }, () => spawnOne('proxy')),
    ]);
    const c: FaultCluster = {
      pg: pgc, nats, upstream, configPath, env, broker, proxies: proxies as Instance[], signals, started, token, agents,
      killed: [],
      kill9: async (i) => {
        c.killed.push(i);
        await i.kill('SIGKILL');
      },
      spawn: (role, extra) => spawnOne(role, extra),
      issue: async (agent, at) => (await clientCredentialsToken(ISSUER, agent, `${ISSUER}/tools/${TOOL}`, 'list_items', undefined, {}, (at ?? c.broker).url)).access_token,
      admin: (method, path, body, at) => adminCall((at ?? c.broker).url, token, method, path, body),
      close: closeAll,
    };
    return c;
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/** A W3C trace id (32 hex digits) for one call, sent in its `traceparent`: the audit record and the upstream's copy of the call carry it. */
export function newTraceId(): string {
  return randomBytes(16).toString('hex');
}

/** A client_credentials request for `agent` at `at`: the status and the error code (never throws). */
export async function tokenRequest(agent: TestAgent, at: Instance): Promise<{ status: number; error?: string }> {
  const body = new URLSearchParams({
    grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: await clientAssertion(agent, ISSUER),
    resource: `${ISSUER}/tools/${TOOL}`, scope: 'list_items',
  });
  try {
    const res = await fetch(`${at.url}/oauth/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body, signal: AbortSignal.timeout(20_000) });
    const json = (await res.json().catch(() => ({}))) as { error?: string };
    return { status: res.status, error: json.error };
  } catch {
    return { status: 0, error: 'network' };
  }
}

/** Calls the tool through a proxy; never throws (a refused connection is status 0). `traceId` goes out in a `traceparent`. */
export async function callTool(proxy: Instance, token: string, traceId = newTraceId()): Promise<{ status: number; error?: string; description?: string }> {
  try {
    const res = await fetch(`${proxy.url}/tools/${TOOL}/items`, {
      headers: { authorization: `Bearer ${token}`, traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` },
      signal: AbortSignal.timeout(20_000),
    });
    const body = (await res.json().catch(() => ({}))) as { error?: string; error_description?: string };
    return { status: res.status, error: body.error, description: body.error_description };
  } catch (err) {
    return { status: 0, error: 'network', description: (err as Error).message };
  }
}

export const jtiOf = (token: string): string => (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { jti: string }).jti;

/** Every instance in `instances` still runs, except those in `killed`; the message names any that ended, with its log tail. */
export function crashedInstances(instances: readonly Instance[], killed: readonly Instance[] = []): string[] {
  return instances
    .filter((i) => !killed.includes(i) && i.exited() !== undefined)
    .map((i) => `${i.role} ${i.instance} ended (${i.exited()}):\n${i.stderr().slice(-3_000)}`);
}

/** `mandate audit verify` against `url`: the CLI's exit code and what it printed. */
export async function auditVerify(url: string, token: string): Promise<{ code: number; out: string }> {
  const out: string[] = [];
  const code = await main(['audit', 'verify', '--json'], { log: (s) => out.push(s), err: (s) => out.push(s) }, { MANDATE_URL: url, MANDATE_TOKEN: token });
  return { code, out: out.join('\n') };
}

// ---------------------------------------------------------------- load

/** One answer seen by the load. */
export interface LoadAnswer {
  /** `call`: the valid token; `refused`: the token that must never pass; `admin`: an operator's change. */
  kind: 'call' | 'refused' | 'admin';
  /** Which instance answered (its url). */
  at: string;
  /** A tool call's W3C trace id (its audit records carry it). */
  traceId?: string;
  status: number;
  error?: string;
  /** Date.now() when the request was sent and when it was answered. */
  sentAt: number;
  doneAt: number;
  /** For an acknowledged admin change: what it was (its kind and id) so that a test can look it up. */
  change?: { kind: 'revocation'; jti: string; id?: string };
}

/**
 * A few concurrent clients: `callers` loops calling the tool through the proxies (round robin)
 * with a valid token, and `operators` loops revoking fresh random jtis through the admin API of
 * every instance in turn. Every answer is kept; `stop()` ends the loops and returns them.
 * The load never throws: a refused connection is recorded as status 0.
 */
export class Load {
  readonly answers: LoadAnswer[] = [];
  private running = true;
  private loops: Promise<void>[] = [];

  constructor(
    private readonly c: FaultCluster,
    private readonly o: {
      /** A token that may call the tool. */
      token: string;
      /** A token refused before the load starts (revoked): every call with it must be refused, whatever the fault. */
      refused?: string;
      callers?: number;
      operators?: number;
      /** The instances called (default: the proxies), read at every call so that a replacement joins. */
      targets?: () => Instance[];
    },
  ) {}

  start(): this {
    const targets = this.o.targets ?? (() => this.c.proxies);
    for (let k = 0; k < (this.o.callers ?? 3); k++) {
      this.loops.push((async () => {
        for (let n = k; this.running; n++) {
          const list = targets().filter((i) => i.exited() === undefined);
          if (list.length === 0) break;
          const p = list[n % list.length]!;
          // Every third call of a caller uses the refused token, when there is one.
          const refused = this.o.refused !== undefined && n % 3 === 2;
          const sentAt = Date.now();
          const traceId = newTraceId();
          const r = await callTool(p, refused ? this.o.refused! : this.o.token, traceId);
          this.answers.push({ kind: refused ? 'refused' : 'call', at: p.url, traceId, status: r.status, error: r.error, sentAt, doneAt: Date.now() });
          await new Promise((res) => setTimeout(res, 10));
        }
      })());
    }
    for (let k = 0; k < (this.o.operators ?? 1); k++) {
      this.loops.push((async () => {
        for (let n = k; this.running; n++) {
          const list = [this.c.broker, ...this.c.proxies].filter((i) => i.exited() === undefined);
          if (list.length === 0) break;
          const at = list[n % list.length]!;
          const jti = `load-${randomBytes(6).toString('hex')}`;
          const sentAt = Date.now();
          let r: { status: number; body: any };
          try {
            r = await adminCall(at.url, this.c.token, 'POST', '/revocations', { jti, reason: 'fault load' });
          } catch {
            r = { status: 0, body: undefined };
          }
          this.answers.push({
            kind: 'admin', at: at.url, status: r.status, error: r.body?.error, sentAt, doneAt: Date.now(),
            ...(r.status === 201 ? { change: { kind: 'revocation' as const, jti } } : {}),
          });
          await new Promise((res) => setTimeout(res, 50));
        }
      })());
    }
    return this;
  }

  async stop(): Promise<LoadAnswer[]> {
    this.running = false;
    await Promise.all(this.loops);
    return this.answers;
  }

  /** Answers of `kind` with a status outside `allowed` (e.g. a 500 or a 404 during a fault). */
  unexpected(kind: LoadAnswer['kind'], allowed: readonly number[]): LoadAnswer[] {
    return this.answers.filter((a) => a.kind === kind && !allowed.includes(a.status));
  }
}

/**
 * Every acknowledged revocation of the load (201) is in the store with its audit record
 * (`token.revoked` naming its jti). Returns what is missing (empty: nothing lost).
 */
export async function lostAcknowledged(pgc: PrivatePostgres, answers: readonly LoadAnswer[]): Promise<string[]> {
  const jtis = answers.filter((a) => a.change?.kind === 'revocation').map((a) => a.change!.jti);
  if (jtis.length === 0) return [];
  const revoked = new Set((await pgc.query<{ target: string }>(`select target from revocations where kind = 'token' and target = any($1)`, [jtis])).map((r) => r.target));
  const audited = new Set((await pgc.query<{ jti: string }>(`select data::json->>'jti' as jti from audit where type = 'token.revoked' and data::json->>'jti' = any($1)`, [jtis])).map((r) => r.jti));
  const lost: string[] = [];
  for (const j of jtis) {
    if (!revoked.has(j)) lost.push(`revocation of ${j} acknowledged but not in the store`);
    if (!audited.has(j)) lost.push(`revocation of ${j} acknowledged but its audit record is missing`);
  }
  return lost;
}

/**
 * Calls the tool executed (the upstream saw them: their trace id reached it in `traceparent`)
 * that have no audit record with their trace id. For a "kill -9 under load loses no call record"
 * test (issue 15, item 3): empty when every executed call is on record.
 */
export async function unrecordedCalls(pgc: PrivatePostgres, upstream: RecordingUpstream): Promise<string[]> {
  const executed = new Set<string>();
  for (const r of upstream.seen) {
    const m = /^[0-9a-f]{2}-([0-9a-f]{32})-/.exec(String(r.headers.traceparent ?? ''));
    if (m) executed.add(m[1]!);
  }
  if (executed.size === 0) return [];
  const recorded = new Set((await pgc.query<{ trace_id: string }>('select distinct trace_id from audit where trace_id = any($1)', [[...executed]])).map((r) => r.trace_id));
  return [...executed].filter((id) => !recorded.has(id));
}

/** `kind:status` counts of answers, for a test's diagnostics: `{ "call:200": 812, "call:503": 40, … }`. */
export function tally(answers: readonly LoadAnswer[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const a of answers) out[`${a.kind}:${a.status}`] = (out[`${a.kind}:${a.status}`] ?? 0) + 1;
  return out;
}

/** Whether the instance reports itself connected to the bus (`mandate_bus_connected` on /metrics). */
export async function busConnected(i: Instance): Promise<boolean> {
  const text = await (await fetch(`${i.url}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
  return /^mandate_bus_connected 1$/m.test(text);
}

/** p's value if it settles within ms; otherwise throws "hung" (an answer that waits on something it should not). */
export async function withinOrHung<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms: the call hangs`)), ms);
  });
  try {
    return await Promise.race([p, hung]);
  } finally {
    clearTimeout(timer);
  }
}
