// Shared helpers for the benchmarks: a fast client-side JWS signer (the client's cost, done
// before the timed window), a closed-loop load generator on undici, latency statistics and
// child-process servers. Everything talks to 127.0.0.1 only.
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { createPrivateKey, generateKeyPairSync, randomUUID, sign, createHash } from 'node:crypto';
import { createInterface } from 'node:readline';
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import { summarizeProfile } from './profile-summary.mjs';

const b64u = (x) => Buffer.from(x).toString('base64url');
const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/** An ES256 key pair as { privateKey (KeyObject), publicJwk, jkt }. */
export function es256Key(kid) {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const { kty, crv, x, y } = publicKey.export({ format: 'jwk' });
  const publicJwk = { kty, crv, x, y };
  // RFC 7638 thumbprint: required members in lexicographic order.
  const jkt = createHash('sha256').update(JSON.stringify({ crv, kty, x, y })).digest('base64url');
  return { privateKey, publicJwk: kid ? { ...publicJwk, kid, alg: 'ES256', use: 'sig' } : publicJwk, jkt };
}

export function privateJwk(key) {
  return key.privateKey.export({ format: 'jwk' });
}

/** Compact JWS (ES256) with node:crypto: synchronous and fast. */
export function signEs256(header, payload, privateKey) {
  const input = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(payload))}`;
  const sig = sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' });
  return `${input}.${sig.toString('base64url')}`;
}

/** RFC 7523 §3 client assertion. */
export function clientAssertion(key, clientId, aud, now = Math.floor(Date.now() / 1000)) {
  return signEs256(
    { alg: 'ES256', typ: 'JWT', kid: key.publicJwk.kid },
    { iss: clientId, sub: clientId, aud, jti: randomUUID(), iat: now, exp: now + 300 },
    key.privateKey,
  );
}

/** RFC 9449 §4.2 DPoP proof; `extra` adds claims (e.g. `ath` at a resource server, §4.3). */
export function dpopProof(key, htm, htu, now = Math.floor(Date.now() / 1000), extra = {}) {
  const { kty, crv, x, y } = key.publicJwk;
  return signEs256({ alg: 'ES256', typ: 'dpop+jwt', jwk: { kty, crv, x, y } }, { jti: randomUUID(), htm, htu, iat: now, ...extra }, key.privateKey);
}

/** RFC 9449 §4.2 `ath`: base64url SHA-256 of the access token. */
export function athOf(token) {
  return createHash('sha256').update(token).digest('base64url');
}

export function form(params) {
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) body.append(k, v);
  return body.toString();
}

/** One request, for warm-up checks: returns { status, body }. */
export async function postOnce(url, body, headers) {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = text; }
  return { status: res.status, body: json };
}

/**
 * Closed-loop load: `concurrency` workers take pre-built requests ({ body, headers }) from
 * `requests` in order and send them over a keep-alive undici Pool until `durationMs` has
 * passed or the requests run out. Returns per-request latencies and status counts.
 */
export async function runLoad({ url, requests, concurrency, durationMs = Infinity }) {
  const u = new URL(url);
  const pool = new Pool(u.origin, { connections: concurrency, pipelining: 1, keepAliveTimeout: 60_000 });
  const latencies = new Float64Array(requests.length);
  const statuses = new Map();
  const errorSamples = [];
  let next = 0;
  let done = 0;
  const start = performance.now();
  const deadline = start + durationMs;
  async function worker() {
    while (next < requests.length && performance.now() < deadline) {
      const r = requests[next++];
      const t0 = performance.now();
      let status;
      let text;
      try {
        const res = await pool.request({
          path: u.pathname, method: 'POST', body: r.body,
          headers: { 'content-type': 'application/x-www-form-urlencoded', ...r.headers },
        });
        status = res.statusCode;
        text = await res.body.text();
      } catch (err) {
        status = `ERR ${err.code ?? err.message}`;
        text = String(err);
      }
      latencies[done++] = performance.now() - t0;
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      if (status !== 200 && errorSamples.length < 5) errorSamples.push({ status, body: text.slice(0, 300) });
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsedMs = performance.now() - start;
  await pool.close();
  return { latencies: latencies.subarray(0, done), elapsedMs, statuses, errorSamples, exhausted: next >= requests.length };
}

/**
 * GET (or `method`) load on a keep-alive undici Pool (pass one in to keep its connections
 * across windows): requests are { path, headers }, taken in order.
 *  - closed loop (no `rate`): `concurrency` workers, each sending its next request when the
 *    previous one answered: the maximum throughput at that concurrency.
 *  - open loop (`rate` req/s): requests are started on a fixed schedule whatever the answers
 *    (no coordinated omission: a slow answer does not delay the next request), for latency at
 *    a given load. Latency counts from the moment the request is handed to the pool (waiting
 *    for a free connection included); `lag_ms` records how late the timer fired (the load
 *    generator's own jitter, not the server's).
 * Returns per-request latencies (ms) and status counts.
 */
export async function runHttpLoad({ origin, pool: given, requests, method = 'GET', concurrency = 16, durationMs = Infinity, rate }) {
  const pool = given ?? new Pool(origin, { connections: rate ? 256 : concurrency, pipelining: 1, keepAliveTimeout: 60_000 });
  const latencies = new Float64Array(requests.length);
  const statuses = new Map();
  const errorSamples = [];
  let next = 0;
  let done = 0;
  const start = performance.now();
  const deadline = start + durationMs;
  async function one(r) {
    const t0 = performance.now();
    let status;
    let text = '';
    try {
      const res = await pool.request({ path: r.path, method, headers: r.headers });
      status = res.statusCode;
      if (status === 200 && errorSamples.length >= 5) await res.body.dump({ limit: 1 << 20 });
      else text = await res.body.text();
    } catch (err) {
      status = `ERR ${err.code ?? err.message}`;
      text = String(err);
    }
    latencies[done++] = performance.now() - t0;
    statuses.set(status, (statuses.get(status) ?? 0) + 1);
    if (status !== 200 && errorSamples.length < 5) errorSamples.push({ status, body: text.slice(0, 300) });
  }
  let lag;
  if (!rate) {
    const worker = async () => {
      while (next < requests.length && performance.now() < deadline) await one(requests[next++]);
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
  } else {
    const total = Math.min(requests.length, Math.floor((rate * Math.min(durationMs, 3_600_000)) / 1000));
    const interval = 1000 / rate;
    const inflight = new Set();
    const lags = [];
    await new Promise((resolve) => {
      const tick = () => {
        const now = performance.now();
        const due = Math.min(total, Math.floor((now - start) / interval) + 1);
        if (next < due) lags.push(now - (start + next * interval));
        while (next < due) {
          const p = one(requests[next++]);
          inflight.add(p);
          p.finally(() => inflight.delete(p));
        }
        if (next < total) setTimeout(tick, Math.max(0, start + next * interval - performance.now()));
        else resolve();
      };
      tick();
    });
    await Promise.all(inflight);
    lags.sort((x, y) => x - y);
    lag = { p50_ms: +(lags[Math.floor(lags.length / 2)] ?? 0).toFixed(2), p99_ms: +(lags[Math.floor(lags.length * 0.99)] ?? 0).toFixed(2) };
  }
  const elapsedMs = performance.now() - start;
  if (!given) await pool.close();
  return { latencies: latencies.subarray(0, done), elapsedMs, statuses, errorSamples, exhausted: next >= requests.length && !rate, lag };
}

/** CPU time (user + system, ms) a process has used so far, from /proc (Linux); undefined elsewhere. */
export function cpuMs(pid) {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
  } catch {
    return undefined;
  }
}
const CLK_TCK = 100;

/** The aggregate "cpu" line of /proc/stat (user nice system idle iowait irq softirq steal …), or undefined. */
export function systemCpu() {
  try {
    return readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  } catch {
    return undefined;
  }
}

/**
 * CPU ms of every process on the machine, by process name (/proc/PID/stat `comm`), e.g.
 * `postgres`, `nats-server`, `node`: `cpuByName(pids)` names the given pids by the key given
 * instead (e.g. { signals: pid }). The difference of two snapshots is where the machine's CPU
 * went in between (a process that exited meanwhile is left out). `withSyscalls`: also
 * `NAME syscalls`, read + write system calls (/proc/PID/io; sockets and files alike): on
 * loopback the sender of a message pays for its delivery, so their count is a cost of its own.
 */
export function cpuByName(named = {}, withSyscalls = false) {
  const byPid = new Map(Object.entries(named).map(([k, pid]) => [String(pid), k]));
  const out = {};
  let pids = [];
  try { pids = readdirSync('/proc').filter((d) => /^[0-9]+$/.test(d)); } catch { return out; }
  for (const pid of pids) {
    try {
      const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const open = text.indexOf('(');
      const close = text.lastIndexOf(')');
      const f = text.slice(close + 2).split(' ');
      const name = byPid.get(pid) ?? (pid === String(process.pid) ? 'loadgen' : text.slice(open + 1, close));
      out[name] = (out[name] ?? 0) + ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
      if (withSyscalls) {
        const io = readFileSync(`/proc/${pid}/io`, 'utf8');
        const r = /syscr: (\d+)/.exec(io);
        const w = /syscw: (\d+)/.exec(io);
        if (r && w) out[`${name} syscalls`] = (out[`${name} syscalls`] ?? 0) + Number(r[1]) + Number(w[1]);
      }
    } catch { /* exited */ }
  }
  return out;
}

/** `after - before` of two cpuByName snapshots, per name, rounded; names with no change left out. */
export function cpuDiff(before, after) {
  const out = {};
  for (const [k, v] of Object.entries(after)) {
    const d = v - (before[k] ?? 0);
    if (d > 0) out[k] = Math.round(d);
  }
  return out;
}

/** /proc/loadavg's first three fields, or undefined. */
export function loadAvg() {
  try {
    return readFileSync('/proc/loadavg', 'utf8').trim().split(/\s+/).slice(0, 3).map(Number);
  } catch {
    return undefined;
  }
}

export function summarize(name, run) {
  const sorted = Float64Array.from(run.latencies).sort();
  const q = (p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)] : NaN);
  const ok = run.statuses.get(200) ?? 0;
  return {
    scenario: name,
    requests: sorted.length,
    duration_s: +(run.elapsedMs / 1000).toFixed(3),
    rps: +(sorted.length / (run.elapsedMs / 1000)).toFixed(1),
    p50_ms: +q(0.5).toFixed(2),
    p90_ms: +q(0.9).toFixed(2),
    p99_ms: +q(0.99).toFixed(2),
    max_ms: +(sorted.length ? sorted[sorted.length - 1] : NaN).toFixed(2),
    errors: sorted.length - ok,
    statuses: Object.fromEntries(run.statuses),
    error_samples: run.errorSamples,
    ended_early: run.exhausted,
  };
}

/**
 * Starts `node <script>` as a child with the given env (plus extra node flags) and resolves
 * with the first JSON line it prints on stdout and a stop() that ends it with SIGTERM.
 */
export function startServer(script, { env = {}, nodeArgs = [] } = {}) {
  const child = spawn(process.execPath, [...nodeArgs, script], {
    env: { ...process.env, NODE_ENV: 'production', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
    if (stderr.length > 20_000) stderr = stderr.slice(-10_000);
  });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: child.stdout });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${script} did not start in 30 s:\n${stderr}`)); }, 30_000);
    rl.once('line', (line) => {
      clearTimeout(timer);
      let info;
      try { info = JSON.parse(line); } catch { reject(new Error(`${script} printed ${line}\n${stderr}`)); return; }
      resolve({
        info, pid: child.pid,
        stderr: () => stderr,
        async stop() {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
          const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
          const r = await exited;
          clearTimeout(killer);
          return r;
        },
      });
    });
    exited.then(({ code, signal }) => { clearTimeout(timer); reject(new Error(`${script} exited (${code ?? signal}) before it was ready:\n${stderr}`)); });
  });
}

function decodeJwt(jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url'));
}

/**
 * A Mandate access token for one tool from a bench server's info line ({ issuer, token_endpoint,
 * client_id, scope }): client_credentials + private_key_jwt, DPoP-bound when dpopKey is given.
 */
export async function accessToken(info, client, tool, dpopKey) {
  const now = Math.floor(Date.now() / 1000);
  const body = form({
    grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE,
    client_assertion: clientAssertion(client, info.client_id, info.token_endpoint, now),
    resource: `${info.issuer}/tools/${tool}`, scope: info.scope,
  });
  const r = await postOnce(info.token_endpoint, body, dpopKey ? { dpop: dpopProof(dpopKey, 'POST', info.token_endpoint, now) } : {});
  if (r.status !== 200) throw new Error(`token for ${tool}: ${r.status} ${JSON.stringify(r.body)}`);
  const claims = decodeJwt(r.body.access_token);
  if (dpopKey ? claims.cnf?.jkt !== dpopKey.jkt : claims.cnf !== undefined) throw new Error(`token for ${tool}: cnf ${JSON.stringify(claims.cnf)}`);
  return r.body.access_token;
}

/** `n` items made by `make(i)`. */
export function build(n, make) {
  const out = new Array(n);
  for (let i = 0; i < n; i++) out[i] = make(i);
  return out;
}

/** One window: the load, plus the CPU of the server(s) behind it, of this process and of the machine. */
export async function measure(s, requests, opts) {
  const pids = [s.srv.pid, s.upstreamPid];
  const cpu0 = pids.map(cpuMs);
  const self0 = process.cpuUsage();
  const sys0 = systemCpu();
  const run = await runHttpLoad({ pool: s.pool, requests, ...opts });
  const cpu1 = pids.map(cpuMs);
  const self = process.cpuUsage(self0);
  const sys1 = systemCpu();
  run.serverCpuMs = cpu0[0] !== undefined && cpu1[0] !== undefined ? cpu1[0] - cpu0[0] : undefined;
  run.upstreamCpuMs = cpu0[1] !== undefined && cpu1[1] !== undefined ? cpu1[1] - cpu0[1] : undefined;
  run.loadgenCpuMs = (self.user + self.system) / 1000;
  run.sys = sys0 && sys1 ? sys1.slice(0, 8).map((v, i) => v - sys0[i]) : undefined;
  return run;
}

/** Several windows of one scenario as one: latencies pooled, durations and CPU times added. */
export function combine(name, runs) {
  const n = runs.reduce((a, r) => a + r.latencies.length, 0);
  const latencies = new Float64Array(n);
  let o = 0;
  for (const r of runs) {
    latencies.set(r.latencies, o);
    o += r.latencies.length;
  }
  const statuses = new Map();
  for (const r of runs) for (const [k, v] of r.statuses) statuses.set(k, (statuses.get(k) ?? 0) + v);
  const elapsedMs = runs.reduce((a, r) => a + r.elapsedMs, 0);
  const out = summarize(name, {
    latencies, elapsedMs, statuses, errorSamples: runs.flatMap((r) => r.errorSamples).slice(0, 5), exhausted: runs.some((r) => r.exhausted),
  });
  out.rounds = runs.map((r) => +(r.latencies.length / (r.elapsedMs / 1000)).toFixed(1));
  if (runs.every((r) => r.serverCpuMs !== undefined)) out.rounds_cpu_ms_per_req = runs.map((r) => +(r.serverCpuMs / Math.max(1, r.latencies.length)).toFixed(4));
  const sum = (k) => (runs.every((r) => r[k] !== undefined) ? runs.reduce((a, r) => a + r[k], 0) : undefined);
  const serverCpu = sum('serverCpuMs');
  const upstreamCpu = sum('upstreamCpuMs');
  // The proxy's own CPU (all its threads) per request: its cost, whatever the load generator does.
  out.server_cpu_ms_per_req = serverCpu !== undefined && n ? +(serverCpu / n).toFixed(3) : null;
  out.server_cpu_pct = serverCpu !== undefined ? +((100 * serverCpu) / elapsedMs).toFixed(0) : null;
  out.upstream_cpu_ms_per_req = upstreamCpu !== undefined && n ? +(upstreamCpu / n).toFixed(3) : null;
  out.loadgen_cpu_pct = +((100 * runs.reduce((a, r) => a + r.loadgenCpuMs, 0)) / elapsedMs).toFixed(0);
  if (runs[0]?.lag) out.loadgen_lag_p99_ms = Math.max(...runs.map((r) => r.lag.p99_ms));
  if (runs.every((r) => r.sys)) {
    const d = runs.map((r) => r.sys).reduce((a, b) => a.map((v, i) => v + b[i]));
    const total = d.reduce((a, b) => a + b, 0) || 1;
    const busyCores = ((total - d[3] - d[4] - (d[7] ?? 0)) / total) * cpus().length * 100;
    const ours = (out.server_cpu_pct ?? 0) + (upstreamCpu !== undefined ? (100 * upstreamCpu) / elapsedMs : 0) + out.loadgen_cpu_pct;
    // other_pct: CPU used by anything but the servers and this load generator, in % of one core.
    out.machine = {
      idle_pct: +((100 * (d[3] + d[4])) / total).toFixed(1),
      steal_pct: +((100 * (d[7] ?? 0)) / total).toFixed(1),
      other_pct: +Math.max(0, busyCores - ours).toFixed(0),
    };
  }
  return out;
}

/**
 * `start(server, env)` for the servers in `dir` (`<server>.mjs`): started with startServer, under
 * `node --cpu-prof` when `profileOf(server)`; stop() then summarizes the profile into `profiles[server]`.
 */
export function serverStarter({ dir, profDir, profileOf, profiles, log, name = (server) => server }) {
  return async function start(server, env) {
    const label = name(server);
    const prof = profileOf(server);
    if (prof) mkdirSync(profDir, { recursive: true });
    log(`starting ${label}${prof ? ' (--cpu-prof)' : ''} …`);
    const since = Date.now();
    const file = join(profDir, `${label}-${since}.cpuprofile`);
    const srv = await startServer(join(dir, `${server}.mjs`), {
      env, nodeArgs: prof ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`, `--cpu-prof-name=${label}-${since}.cpuprofile`] : [],
    });
    return {
      ...srv,
      async stop() {
        const exit = await srv.stop();
        if (!prof) return;
        try {
          profiles[label] = { file, ...summarizeProfile(file) };
        } catch (err) {
          log(`no CPU profile for ${label} (${err.message}; exit ${JSON.stringify(exit)})`);
        }
      },
    };
  };
}

/** The machine a report was measured on (and the load averages around the run, when given). */
export function machineInfo(extra = {}) {
  return { cpus: cpus().length, cpu_model: cpus()[0]?.model, mem_gb: +(totalmem() / 2 ** 30).toFixed(1), node: process.version, platform: process.platform, ...extra };
}

/** CPU profile summaries (serverStarter's `profiles`) as they go into a report's JSON. */
export function profilesJson(profiles) {
  return Object.fromEntries(Object.entries(profiles).map(([k, v]) => [k, {
    file: v.file, busy_ms: v.busy_ms, idle_ms: v.idle_ms, top_self: v.top.slice(0, 40), by_category: v.byCategory, by_package: v.byPackage.slice(0, 20), mandate_inclusive: v.mandateInclusive.slice(0, 40),
  }]));
}

/** Writes `report` as `<dir>/<name>-<date>.json` (dir created); returns the path. */
export function writeReport(dir, name, report) {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}-${report.date.replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  return file;
}

/** Table cells for the printed summaries: left-aligned, right-aligned, two decimals (or n/a). */
export const pad = (s, n) => String(s).padEnd(n);
export const lpad = (s, n) => String(s).padStart(n);
export const f2 = (v) => (Number.isFinite(v) ? v.toFixed(2) : 'n/a');
