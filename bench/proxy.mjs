// bench/proxy: what Mandate's tool proxy costs over a plain reverse proxy, same
// upstream, same run, same machine.
//
//   (a) passthrough    node:http + undici Pool, no checks (bench/servers/passthrough.mjs): the baseline
//   (b) mandate bearer every check, a bearer token (binding: optional profile)
//   (c) mandate DPoP   every check, a DPoP-bound token and a fresh proof per request (unique jti,
//                      htm, htu = the exact URL, ath), signed before the timed window (client cost)
//   (r) reference      (a) plus Mandate's audit record per call, written by Mandate's own AuditLog
//                      into its SQLite store (bench/servers/audit-floor.mjs), nothing else: the
//                      most (b) could reach if every check cost nothing (maximum throughput only)
//
// Each request asks for /tools/<tool>/items/<i mod 1000>, so that per-argument caches see a
// realistic spread. Phase 1, closed loop (fixed connections): the maximum throughput of each.
// Phase 2, open loop at half of (a)'s maximum (a fixed schedule whatever the answers): the
// latency each adds. Scenarios alternate round by round. Every server is its own child process
// (the upstream too); this process is the load generator (undici; not autocannon, whose
// histogram records whole milliseconds, too coarse for sub-millisecond latencies).
//
// Environment: BENCH_DURATION (s per window, default 6), BENCH_ROUNDS (default 2),
// BENCH_WARMUP (s, default 3), BENCH_CONCURRENCY (closed loop, default 16), BENCH_HALF_RATE
// (req/s for phase 2 instead of half of (a)), BENCH_PROFILE (1 or mandate-proxy: run Mandate
// under --cpu-prof and summarize; all: every server), BENCH_POLICY=none (no policy file).
import { cpus } from 'node:os';
import { createPublicKey, verify } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import {
  es256Key, dpopProof, athOf, runHttpLoad, summarize, loadAvg, accessToken, build, measure, combine, serverStarter,
  machineInfo, profilesJson, writeReport, pad, lpad, f2,
} from './lib.mjs';
import { formatProfile } from './profile-summary.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const RESULTS = join(HERE, 'results');
const TARGETS = { b: 0.8, c: 0.6, added_p99_ms: 2 };
const IDS = 1000;

/**
 * CPU (µs, this process, node:crypto) of one ES256 verification of a DPoP proof, the one
 * cryptographic operation (c) adds per call: 3000 in a row after 500 not counted, median of 3.
 */
function es256VerifyUs(key, proof) {
  const dot = proof.lastIndexOf('.');
  const data = Buffer.from(proof.slice(0, dot), 'ascii');
  const sig = Buffer.from(proof.slice(dot + 1), 'base64url');
  const opts = { key: createPublicKey({ key: key.publicJwk, format: 'jwk' }), dsaEncoding: 'ieee-p1363' };
  for (let i = 0; i < 500; i++) verify('sha256', data, opts, sig);
  const runs = [];
  for (let r = 0; r < 3; r++) {
    const c0 = process.cpuUsage();
    for (let i = 0; i < 3000; i++) if (!verify('sha256', data, opts, sig)) throw new Error('bench/proxy: the proof does not verify');
    const c = process.cpuUsage(c0);
    runs.push((c.user + c.system) / 3000);
  }
  return +runs.sort((x, y) => x - y)[1].toFixed(1);
}

const num = (v, d) => (v !== undefined && v !== '' && Number.isFinite(Number(v)) ? Number(v) : d);

function assert(cond, msg) {
  if (!cond) throw new Error(`bench/proxy: ${msg}`);
}

export async function runProxy(opts = {}) {
  const log = opts.log ?? ((s) => console.error(s));
  const durationS = opts.durationS ?? num(process.env.BENCH_DURATION, 6);
  const warmupS = opts.warmupS ?? num(process.env.BENCH_WARMUP, 3);
  const concurrency = opts.concurrency ?? num(process.env.BENCH_CONCURRENCY, 16);
  const rounds = Math.max(1, Math.floor(opts.rounds ?? num(process.env.BENCH_ROUNDS, 2)));
  const profEnv = opts.profile ?? process.env.BENCH_PROFILE ?? '';
  const profileOf = (server) => profEnv === 'all' || profEnv === server || (server === 'mandate-proxy' && (profEnv === '1' || profEnv === 'mandate' || profEnv === true));
  const profiles = {};
  const start = serverStarter({ dir: join(HERE, 'servers'), profDir: join(RESULTS, 'profiles'), profileOf, profiles, log });
  const started = Date.now();
  const load0 = loadAvg();
  const client = es256Key('bench-agent-1');
  const dpopKey = es256Key();
  const servers = [];
  const pools = [];
  let results;
  let halfRate;
  let es256Us;
  try {
    const upstream = await start('upstream', {});
    servers.push(upstream);
    const passthrough = await start('passthrough', { UPSTREAM: upstream.info.url });
    servers.push(passthrough);
    const floor = await start('audit-floor', { UPSTREAM: upstream.info.url });
    servers.push(floor);
    const mandate = await start('mandate-proxy', { UPSTREAM: upstream.info.url, BENCH_CLIENT_JWK: JSON.stringify(client.publicJwk), BENCH_CLIENT_ID: 'bench-agent' });
    servers.push(mandate);
    const mi = mandate.info;
    const tokens = {};
    const refreshTokens = async () => {
      // Fresh tokens each round: the profiles' TTL (10 min) outlives any sensible run, but not every run.
      tokens.bearer = await accessToken(mi, client, mi.tools.bearer);
      tokens.dpop = await accessToken(mi, client, mi.tools.dpop, dpopKey);
      tokens.ath = athOf(tokens.dpop);
    };
    await refreshTokens();
    es256Us = es256VerifyUs(dpopKey, dpopProof(dpopKey, 'GET', `${mi.issuer}/tools/${mi.tools.dpop}/items/1`, Math.floor(Date.now() / 1000), { ath: tokens.ath }));
    log(`one ES256 verification (node:crypto, this process): ${es256Us} µs of CPU`);

    const id = (i) => i % IDS;
    const scenarios = [
      {
        key: 'a', name: '(a) passthrough (node:http + undici)', srv: passthrough,
        make: (i) => ({ path: `/tools/items/items/${id(i)}`, headers: { authorization: `Bearer ${tokens.bearer}` } }),
      },
      {
        key: 'b', name: '(b) mandate, bearer token', srv: mandate,
        make: (i) => ({ path: `/tools/${mi.tools.bearer}/items/${id(i)}`, headers: { authorization: `Bearer ${tokens.bearer}` } }),
      },
      {
        key: 'c', name: '(c) mandate, DPoP token + proof', srv: mandate,
        make: (i, now) => {
          const path = `/tools/${mi.tools.dpop}/items/${id(i)}`;
          return { path, headers: { authorization: `DPoP ${tokens.dpop}`, dpop: dpopProof(dpopKey, 'GET', `${mi.issuer}${path}`, now, { ath: tokens.ath }) } };
        },
      },
      {
        key: 'r', name: '(r) reference: (a) + audit record', srv: floor, closedOnly: true,
        make: (i) => ({ path: `/tools/items/items/${id(i)}`, headers: { authorization: `Bearer ${tokens.bearer}` } }),
      },
    ];
    for (const s of scenarios) {
      s.upstreamPid = upstream.pid;
      s.pool = new Pool(s.srv.info.url, { connections: 256, pipelining: 1, keepAliveTimeout: 60_000 });
      pools.push(s.pool);
      s.closed = [];
      s.open = [];
    }

    // Every path must really be proxied (the upstream's JSON), and Mandate must refuse what it should.
    const one = async (s, req) => {
      const r = await s.pool.request({ path: req.path, method: 'GET', headers: req.headers });
      return { status: r.statusCode, body: await r.body.text() };
    };
    const now0 = Math.floor(Date.now() / 1000);
    for (const s of scenarios) {
      const r = await one(s, s.make(7, now0));
      assert(r.status === 200 && JSON.parse(r.body).id === '7', `${s.name}: ${r.status} ${r.body}`);
    }
    const [, b, c] = scenarios;
    assert((await one(b, { path: b.make(1).path, headers: {} })).status === 401, 'mandate accepted a call without a token');
    const proofOnce = c.make(3, now0);
    assert((await one(c, proofOnce)).status === 200, 'mandate refused a fresh DPoP proof');
    assert((await one(c, proofOnce)).status === 401, 'mandate accepted a replayed DPoP proof');
    assert((await one(c, { path: c.make(3).path, headers: { authorization: `Bearer ${tokens.dpop}` } })).status === 401, 'mandate accepted a DPoP-bound token as a bearer token');

    /** Requests built just before a window (DPoP proofs are accepted for 60 s after iat). */
    const requestsFor = (s, n) => {
      const now = Math.floor(Date.now() / 1000);
      return build(n, (i) => s.make(i, now));
    };
    const warm = async (s, seconds) => {
      const w = summarize(`${s.name} (warm-up)`, await runHttpLoad({ pool: s.pool, requests: requestsFor(s, Math.max(500, Math.ceil(seconds * 4000))), concurrency, durationMs: seconds * 1000 }));
      if (w.errors) throw new Error(`${s.name}: ${w.errors} non-200 answers during warm-up: ${JSON.stringify(w.statuses)} ${JSON.stringify(w.error_samples, null, 1)}`);
      return w;
    };

    // Phase 1: maximum throughput, closed loop.
    for (let round = 1; round <= rounds; round++) {
      log(`max throughput, round ${round}/${rounds}`);
      if (round > 1) await refreshTokens();
      for (const s of scenarios) {
        const w = await warm(s, round === 1 ? warmupS : Math.min(1, warmupS));
        // Sized from the fastest rate seen so far (a short warm-up underestimates a warm JIT), ×3 headroom.
        s.best = Math.max(s.best ?? 0, w.rps, ...s.closed.map((r) => r.latencies.length / (r.elapsedMs / 1000)));
        const n = Math.min(300_000, Math.ceil(s.best * durationS * 3) + 2000);
        const requests = requestsFor(s, n);
        log(`  ${s.name}: warm-up ${w.rps} req/s; ${n} requests; measuring ${durationS} s`);
        s.closed.push(await measure(s, requests, { concurrency, durationMs: durationS * 1000 }));
      }
    }
    const closed = scenarios.map((s) => combine(s.name, s.closed));
    halfRate = Math.max(1, Math.round(num(process.env.BENCH_HALF_RATE, closed[0].rps / 2)));

    // Phase 2: latency at half of (a)'s maximum, open loop.
    for (let round = 1; round <= rounds; round++) {
      log(`latency at ${halfRate} req/s, round ${round}/${rounds}`);
      await refreshTokens();
      for (const s of scenarios) {
        if (s.closedOnly) continue;
        await warm(s, Math.min(1, warmupS));
        const requests = requestsFor(s, Math.ceil(halfRate * durationS) + 10);
        s.open.push(await measure(s, requests, { rate: halfRate, durationMs: durationS * 1000 }));
      }
    }
    const open = scenarios.filter((s) => !s.closedOnly).map((s) => combine(`${s.name} @ ${halfRate} req/s`, s.open));
    results = { closed, open };
  } finally {
    for (const p of pools) await p.close().catch(() => {});
    for (const srv of servers.reverse()) await srv.stop();
  }

  const [ca, cb, cc, cr] = results.closed;
  const [oa, ob, oc] = results.open;
  const ratios = {
    b_over_a: +(cb.rps / ca.rps).toFixed(2),
    c_over_a: +(cc.rps / ca.rps).toFixed(2),
    per_round_b_over_a: cb.rounds.map((v, i) => +(v / ca.rounds[i]).toFixed(2)),
    per_round_c_over_a: cc.rounds.map((v, i) => +(v / ca.rounds[i]).toFixed(2)),
    reference_over_a: +(cr.rps / ca.rps).toFixed(2),
    es256_verify_us: es256Us,
    half_rate: halfRate,
    added_b: { p50_ms: +(ob.p50_ms - oa.p50_ms).toFixed(2), p99_ms: +(ob.p99_ms - oa.p99_ms).toFixed(2) },
    added_c: { p50_ms: +(oc.p50_ms - oa.p50_ms).toFixed(2), p99_ms: +(oc.p99_ms - oa.p99_ms).toFixed(2) },
    targets: TARGETS,
  };
  ratios.pass = {
    b: ratios.b_over_a >= TARGETS.b, c: ratios.c_over_a >= TARGETS.c,
    added_p99_b: ratios.added_b.p99_ms <= TARGETS.added_p99_ms, added_p99_c: ratios.added_c.p99_ms <= TARGETS.added_p99_ms,
  };
  const report = {
    benchmark: 'proxy',
    date: new Date(started).toISOString(),
    machine: machineInfo({ loadavg_before: load0, loadavg_after: loadAvg() }),
    config: { duration_s_per_round: durationS, rounds, warmup_s: warmupS, concurrency, half_rate: halfRate, ids: IDS, policies: process.env.BENCH_POLICY !== 'none' },
    results,
    ratios,
    profiles: profilesJson(profiles),
  };
  const file = writeReport(RESULTS, 'proxy', report);

  const lines = [];
  lines.push(`${pad('scenario', 38)}${lpad('max req/s', 10)}${lpad('ratio', 7)}${lpad('CPU ms/req', 12)}${lpad(`p50@${halfRate}/s`, 13)}${lpad('p99', 9)}${lpad('+p50', 9)}${lpad('+p99', 9)}`);
  for (let i = 0; i < 3; i++) {
    const c = results.closed[i];
    const o = results.open[i];
    const a = results.open[0];
    lines.push(`${pad(c.scenario, 38)}${lpad(c.rps.toFixed(0), 10)}${lpad((c.rps / ca.rps).toFixed(2), 7)}${lpad(f2(c.server_cpu_ms_per_req), 12)}${lpad(f2(o.p50_ms), 13)}${lpad(f2(o.p99_ms), 9)}${lpad(i ? f2(o.p50_ms - a.p50_ms) : '', 9)}${lpad(i ? f2(o.p99_ms - a.p99_ms) : '', 9)}`);
  }
  lines.push(`${pad(cr.scenario, 38)}${lpad(cr.rps.toFixed(0), 10)}${lpad((cr.rps / ca.rps).toFixed(2), 7)}${lpad(f2(cr.server_cpu_ms_per_req), 12)}   (no check at all: the ceiling for (b) while each call writes its audit row)`);
  lines.push(`one ES256 verification, the cryptography (c) adds per call: ${es256Us} µs of CPU (node:crypto, measured alone); (a) spends ${f2(ca.server_cpu_ms_per_req * 1000)} µs per call in all`);
  const v = (ok) => (ok ? 'PASS' : 'MISS');
  lines.push(`(b)/(a) ${ratios.b_over_a.toFixed(2)}x (target >= ${TARGETS.b}: ${v(ratios.pass.b)}; per round ${ratios.per_round_b_over_a.join(', ')})   (c)/(a) ${ratios.c_over_a.toFixed(2)}x (target >= ${TARGETS.c}: ${v(ratios.pass.c)}; per round ${ratios.per_round_c_over_a.join(', ')})`);
  lines.push(`added p99 at ${halfRate} req/s: (b) ${f2(ratios.added_b.p99_ms)} ms ${v(ratios.pass.added_p99_b)}, (c) ${f2(ratios.added_c.p99_ms)} ms ${v(ratios.pass.added_p99_c)} (target <= ${TARGETS.added_p99_ms} ms)`);
  lines.push(`upstream CPU ms/req: ${results.closed.map((r) => f2(r.upstream_cpu_ms_per_req)).join(' / ')}; load generator CPU: ${results.closed.map((r) => `${r.loadgen_cpu_pct}%`).join(' / ')}; open-loop timer lag p99 ${results.open.map((r) => f2(r.loadgen_lag_p99_ms)).join(' / ')} ms`);
  lines.push(`(${concurrency} connections closed loop; ${rounds} interleaved round(s) of ${durationS} s per scenario and phase; ${cpus().length} CPUs; Node ${process.version}; loadavg ${load0?.join(' ')} → ${report.machine.loadavg_after?.join(' ')})`);
  for (const r of results.closed.slice(1)) {
    if (r.rps < halfRate) lines.push(`note: ${r.scenario}: its maximum (${r.rps.toFixed(0)} req/s) is below the half-load rate, so its latency there is mostly queueing`);
  }
  for (const r of [...results.closed, ...results.open]) {
    if (r.errors) lines.push(`!! ${r.scenario}: ${r.errors} non-200 answers ${JSON.stringify(r.statuses)}\n${JSON.stringify(r.error_samples, null, 1)}`);
    if (r.machine && r.machine.other_pct >= 15) lines.push(`note: ${r.scenario}: other processes used ${r.machine.other_pct}% of a core during the window; numbers are less reliable`);
    if (r.machine && r.machine.steal_pct >= 5) lines.push(`note: ${r.scenario}: ${r.machine.steal_pct}% CPU steal during the window (noisy VM)`);
    if (r.ended_early) lines.push(`note: ${r.scenario} ran out of pre-built requests after ${r.duration_s} s`);
  }
  for (const [server, p] of Object.entries(profiles)) lines.push('', `${server} CPU profile (whole process life): ${p.file}`, formatProfile(p));
  lines.push(`results: ${file}`);
  return { report, text: lines.join('\n'), file, failed: [...results.closed, ...results.open].some((r) => r.errors) };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { text, failed } = await runProxy();
  console.log(text);
  if (failed) process.exitCode = 1;
}
