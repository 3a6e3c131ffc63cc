/**
 * Mandate instances as separate processes (`node bin/mandate.js serve --role R --json`) on one
 * PostgreSQL and one NATS, for the many-instances tests (issue 5). Each listens on
 * 127.0.0.1:0 and announces itself with one JSON line on stdout; the first to start prints the
 * bootstrap admin credential on stderr. Secrets reach them through the environment only.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, connect as tcpConnect } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { randomBytes } from 'node:crypto';
import { after, before } from 'node:test';
import { startRecordingUpstream, type RecordingUpstream } from './upstream.js';

/** The repository root (tests run from dist/test/…; bin/ is next to dist/). */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BIN = join(ROOT, 'bin', 'mandate.js');

/**
 * The fixture of a describe that spawns instances: a recording upstream started before its
 * tests, and every instance pushed to `started` stopped after them (then the upstream closed).
 * Call it in the describe's body.
 */
export function clusterFixture(): { readonly rec: RecordingUpstream; readonly started: Instance[] } {
  let rec: RecordingUpstream | undefined;
  const started: Instance[] = [];
  before(async () => {
    rec = await startRecordingUpstream();
  });
  after(async () => {
    await Promise.all(started.map((i) => i.stop()));
    await rec?.close();
  });
  return {
    get rec(): RecordingUpstream {
      if (!rec) throw new Error('clusterFixture: the upstream starts in before()');
      return rec;
    },
    started,
  };
}

export interface Instance {
  role: string;
  url: string;
  instance: string;
  pid: number;
  /** The bootstrap admin credential, when this process printed it. */
  bootstrapToken: string | undefined;
  stderr(): string;
  /** The tail of what it wrote on stdout (its log lines). */
  stdout(): string;
  stop(): Promise<void>;
  /** How the process ended (`code N` or the signal's name); undefined while it runs. */
  exited(): string | undefined;
  /** Sends a signal (SIGKILL: `kill -9`) and resolves when the process has ended. */
  kill(signal: NodeJS.Signals): Promise<void>;
}

/** Writes a config file (JSON is YAML) in a fresh directory; returns its path. */
export function writeConfig(config: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'mandate-cluster-'));
  const path = join(dir, 'mandate.yaml');
  writeFileSync(path, JSON.stringify(config, null, 2));
  return path;
}

/** 32 random bytes, base64: a key-encryption key every instance shares through the environment. */
export function newKek(): string {
  return randomBytes(32).toString('base64');
}

export function spawnInstance(role: string, configPath: string, env: NodeJS.ProcessEnv): Promise<Instance> {
  const child: ChildProcess = spawn(process.execPath, [BIN, 'serve', '--role', role, '--config', configPath, '--json'], {
    cwd: join(configPath, '..'),
    env: { PATH: process.env.PATH, NODE_ENV: 'test', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  let stdout = '';
  let bootstrapToken: string | undefined;
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-20_000);
    const m = /export MANDATE_TOKEN=(\S+)/.exec(stderr);
    if (m) bootstrapToken = m[1];
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const exitedHow = () => (child.signalCode !== null ? child.signalCode : child.exitCode !== null ? `code ${child.exitCode}` : undefined);
  const kill = async (signal: NodeJS.Signals) => {
    if (exitedHow() !== undefined) return;
    child.kill(signal);
    await exited;
  };
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(killer);
  };
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${role} did not start within 60 s:\n${stderr}`));
    }, 60_000);
    const rl = createInterface({ input: child.stdout! });
    rl.on('line', (line) => {
      stdout = (stdout + line + '\n').slice(-20_000);
      if (!line.startsWith('{"ready":true')) return;
      clearTimeout(timer);
      const info = JSON.parse(line) as { role: string; url: string; instance: string; pid: number };
      resolvePromise({ ...info, get bootstrapToken() { return bootstrapToken; }, stderr: () => stderr, stdout: () => stdout, stop, exited: exitedHow, kill });
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`${role} exited (${child.exitCode ?? child.signalCode}) before it was ready:\n${stderr}`));
    });
  });
}

/** Calls an instance's admin API. */
export async function adminCall(url: string, token: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${url}/admin/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      srv.close(() => res(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = tcpConnect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      res(true);
    });
    s.once('error', () => res(false));
  });
}

/**
 * A private nats-server with JetStream on its own port and store directory, so that a test can stop it without touching the shared NATS.
 */
export class PrivateNats {
  child: ChildProcess | undefined;
  log = '';
  constructor(readonly port: number, readonly storeDir: string, readonly bin = process.env.MANDATE_TEST_NATS_SERVER ?? '/usr/sbin/nats-server') {}

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const child = spawn(this.bin, ['-a', '127.0.0.1', '-p', String(this.port), '-js', '-sd', this.storeDir], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    const keep = (b: Buffer) => {
      this.log = (this.log + b.toString()).slice(-8_000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    const deadline = Date.now() + 10_000;
    while (!(await canConnect(this.port))) {
      if (child.exitCode !== null) throw new Error(`nats-server exited with ${child.exitCode}:\n${this.log}`);
      if (Date.now() > deadline) throw new Error(`nats-server did not listen on ${this.port} within 10 s:\n${this.log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }

  kill(): void {
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}
