// An A/B of two Mandate builds on one bench/proxy scenario, windows alternating (A B, B A, …), so that a
// shared machine's drift hits both alike. Reports per window: req/s, the proxy's CPU per request (the
// whole process, from /proc) and its main thread's alone (/proc/<pid>/task/<pid>/stat: what bounds
// req/s when the event loop is the bottleneck), p50 and p99.
//
//   node bench/proxy-ab.mjs <dirA> <dirB> [b|c] [pairs=3] [seconds=5]
//
// Each dir is a checkout with its build (dist/) and bench/servers/mandate-proxy.mjs (e.g. a copy of
// main's, and this worktree). The upstream is this checkout's. AB_RATE=<req/s>: open loop at that rate
// instead of the closed loop of BENCH_CONCURRENCY (16) connections. AB_PROFILE=1: both under --cpu-prof
// (profiles in bench/results/profiles/).
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { es256Key, dpopProof, athOf, accessToken, build, measure, startServer } from './lib.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const [dirA, dirB, which = 'b', pairsArg = '3', secondsArg = '5'] = process.argv.slice(2);
if (!dirA || !dirB || !['b', 'c'].includes(which)) {
  console.error('usage: node bench/proxy-ab.mjs <dirA> <dirB> [b|c] [pairs] [seconds]');
  process.exit(2);
}
const pairs = Number(pairsArg);
const seconds = Number(secondsArg);
const rate = Number(process.env.AB_RATE ?? 0);
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 16);
const profDir = join(HERE, 'results', 'profiles');

/** CPU time (ms) of a process's main thread so far. */
function mainThreadMs(pid) {
  const f = readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
}

const client = es256Key('bench-agent-1');
const dpopKey = es256Key();
const upstream = await startServer(join(HERE, 'servers', 'upstream.mjs'), {});
const builds = [];
try {
  for (const [label, dir] of [['A', dirA], ['B', dirB]]) {
    const srv = await startServer(join(resolve(dir), 'bench', 'servers', 'mandate-proxy.mjs'), {
      env: { UPSTREAM: upstream.info.url, BENCH_CLIENT_JWK: JSON.stringify(client.publicJwk), BENCH_CLIENT_ID: 'bench-agent' },
      nodeArgs: process.env.AB_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`, `--cpu-prof-name=ab-${label}-${which}-${Date.now()}.cpuprofile`] : [],
    });
    builds.push({ label, dir, srv, upstreamPid: upstream.pid, results: [] });
    const mi = srv.info;
    const bearer = await accessToken(mi, client, mi.tools.bearer);
    const dpop = await accessToken(mi, client, mi.tools.dpop, dpopKey);
    const ath = athOf(dpop);
    const b = builds[builds.length - 1];
    b.pool = new Pool(mi.url, { connections: 256, pipelining: 1, keepAliveTimeout: 60_000 });
    b.make = which === 'b'
      ? (i) => ({ path: `/tools/${mi.tools.bearer}/items/${i % 1000}`, headers: { authorization: `Bearer ${bearer}` } })
      : (i, now) => {
        const path = `/tools/${mi.tools.dpop}/items/${i % 1000}`;
        return { path, headers: { authorization: `DPoP ${dpop}`, dpop: dpopProof(dpopKey, 'GET', `${mi.issuer}${path}`, now, { ath }) } };
      };
  }
  const window = async (b, s) => {
    const now = Math.floor(Date.now() / 1000);
    const requests = build(Math.ceil(s * (rate || 6000)) + 10, (i) => b.make(i, now));
    const m0 = mainThreadMs(b.srv.pid);
    const r = await measure({ srv: b.srv, upstreamPid: b.upstreamPid, pool: b.pool }, requests, rate ? { rate, durationMs: s * 1000 } : { concurrency, durationMs: s * 1000 });
    const n = r.latencies.length;
    const lat = Float64Array.from(r.latencies).sort();
    return {
      rps: n / (r.elapsedMs / 1000), cpu: r.serverCpuMs / n, main: (mainThreadMs(b.srv.pid) - m0) / n,
      p50: lat[Math.floor(n * 0.5)], p99: lat[Math.min(n - 1, Math.floor(n * 0.99))], errors: n - (r.statuses.get(200) ?? 0),
    };
  };
  for (const b of builds) await window(b, 3); // warm-up
  const f3 = (v) => v.toFixed(3);
  for (let p = 0; p < pairs; p++) {
    for (const b of p % 2 ? [...builds].reverse() : builds) {
      const r = await window(b, seconds);
      b.results.push(r);
      const load = readFileSync('/proc/loadavg', 'utf8').split(' ')[0];
      console.log(`${b.label} (${which}) ${r.rps.toFixed(0)} req/s  CPU ${f3(r.cpu)} ms/req  main thread ${f3(r.main)}  p50 ${r.p50.toFixed(2)}  p99 ${r.p99.toFixed(2)} ms${r.errors ? `  ${r.errors} non-200` : ''}  load ${load}`);
    }
  }
  const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
  for (const b of builds) {
    const rs = b.results;
    console.log(`${b.label} ${b.dir}: median ${median(rs.map((r) => r.rps)).toFixed(0)} req/s, CPU ${f3(median(rs.map((r) => r.cpu)))} ms/req, main thread ${f3(median(rs.map((r) => r.main)))} ms/req, p99 ${median(rs.map((r) => r.p99)).toFixed(2)} ms`);
  }
} finally {
  for (const b of builds) {
    await b.pool?.close();
    await b.srv.stop();
  }
  await upstream.stop();
}
