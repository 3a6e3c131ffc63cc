// bench/governance: what governance's detection pipeline costs the proxy at full load,
// and how many events per second it absorbs meanwhile.
//
//   (on)  Mandate (bench/servers/mandate-proxy.mjs) with governance on: every allowed call's
//         `tool.called` goes to the detection consumers (stolen-token reuse, grant use, …)
//   (off) the same server and config with `governance.enabled: false`
//
// Same upstream, same request shape as bench/proxy (b): a bearer token, GET
// /tools/items/items/<i mod 1000>, closed loop, BENCH_CONCURRENCY connections; the two
// alternate round by round. For (on), `mandate_governance_events_total` (/metrics) is read
// before and right after each window: the events the consumers completed during the window
// per second is what the pipeline absorbed; `backlog` is how many of the window's `tool.called`
// events were still queued when it ended (each 200 publishes exactly one), and `drain` how long
// they took afterwards. "Absorbed" means kept up: a backlog near zero.
//
// The two servers are measured in paired rounds (the order flips each round), so the headline
// ratio is the median of the per-round ratios on/off: a round disturbed by something outside the
// servers (a disk flush, another process) moves one pair, not the result. The pooled ratio (all
// requests of all windows) is printed next to it, as are each round's ratio, CPU per request and
// the garbage collector's time in the window (from the servers' own /metrics), so that an outlier
// round can be told apart from a real cost.
//
// Environment: BENCH_DURATION (s per window, default 3), BENCH_ROUNDS (default 12), BENCH_WARMUP
// (s, default 6: a shorter warm-up left the first round of the governance-on server in V8's optimizing
// compiler), BENCH_CONCURRENCY (default 16), BENCH_GOVERNANCE_AA (on|off: an A/A run, both servers in
// that mode, to calibrate the noise), BENCH_PROFILE (1 or on: profile the governance-on
// server; off; all).
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import { es256Key, runHttpLoad, summarize, loadAvg, accessToken, build, measure, combine, serverStarter, machineInfo, profilesJson, writeReport, pad, lpad, f2 } from './lib.mjs';
import { formatProfile } from './profile-summary.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const RESULTS = join(HERE, 'results');
const TARGET = 0.95;
const IDS = 1000;
const num = (v, d) => (v !== undefined && v !== '' && Number.isFinite(Number(v)) ? Number(v) : d);

/** From a server's /metrics: the governance consumers' completed events ({ total, byConsumer }) and its GC time so far (ms). */
async function governanceEvents(url) {
  const res = await fetch(`${url}/metrics`);
  const text = await res.text();
  const byConsumer = {};
  for (const m of text.matchAll(/^mandate_governance_events_total\{consumer="([^"]*)"\} (\S+)$/gm)) byConsumer[m[1]] = Number(m[2]);
  let gcMs = 0;
  for (const m of text.matchAll(/^mandate_nodejs_gc_duration_seconds_sum\{[^}]*\} (\S+)$/gm)) gcMs += Number(m[1]) * 1000;
  return { total: Object.values(byConsumer).reduce((a, b) => a + b, 0), byConsumer, gcMs };
}

const median = (xs) => {
  const v = [...xs].sort((a, b) => a - b);
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};

export async function runGovernance(opts = {}) {
  const aaMode = ['on', 'off'].includes(process.env.BENCH_GOVERNANCE_AA ?? '') ? process.env.BENCH_GOVERNANCE_AA : undefined;
  const log = opts.log ?? ((s) => console.error(s));
  const durationS = opts.durationS ?? num(process.env.BENCH_DURATION, 3);
  const warmupS = opts.warmupS ?? num(process.env.BENCH_WARMUP, 6);
  const concurrency = opts.concurrency ?? num(process.env.BENCH_CONCURRENCY, 16);
  const rounds = Math.max(1, Math.floor(opts.rounds ?? num(process.env.BENCH_ROUNDS, 12)));
  const profEnv = String(opts.profile ?? process.env.BENCH_PROFILE ?? '');
  const profiles = {};
  const labels = new Map();
  const start = serverStarter({
    dir: join(HERE, 'servers'), profDir: join(RESULTS, 'profiles'), profiles, log,
    profileOf: (server) => server === 'mandate-proxy' && ['1', 'all', 'mandate', 'true', labels.get('next')].includes(profEnv),
    name: (server) => (server === 'mandate-proxy' ? `mandate-proxy-governance-${labels.get('next')}` : server),
  });
  const started = Date.now();
  const load0 = loadAvg();
  const client = es256Key('bench-agent-1');
  const servers = [];
  const pools = [];
  let results;
  try {
    const upstream = await start('upstream', {});
    servers.push(upstream);
    const env = { UPSTREAM: upstream.info.url, BENCH_CLIENT_JWK: JSON.stringify(client.publicJwk), BENCH_CLIENT_ID: 'bench-agent' };
    labels.set('next', 'on');
    // BENCH_GOVERNANCE_AA=off|on: an A/A run, both servers in the same mode, to see how far the ratio
    // strays when nothing differs (the measurement's own noise on this machine).
    const aa = aaMode;
    const on = await start('mandate-proxy', { ...env, BENCH_GOVERNANCE: aa ?? 'on' });
    servers.push(on);
    labels.set('next', 'off');
    const off = await start('mandate-proxy', { ...env, BENCH_GOVERNANCE: aa ?? 'off' });
    servers.push(off);
    if (on.info.governance !== (aa ? aa === 'on' : true) || off.info.governance !== (aa ? aa === 'on' : false)) throw new Error('bench/governance: the servers did not start with governance on / off');

    const scenarios = [
      { key: 'on', name: aa ? `(A) mandate, governance ${aa}` : '(on) mandate, governance on', srv: on, consumes: on.info.governance },
      { key: 'off', name: aa ? `(B) mandate, governance ${aa}` : '(off) mandate, governance off', srv: off, consumes: false },
    ];
    for (const s of scenarios) {
      s.upstreamPid = upstream.pid;
      s.pool = new Pool(s.srv.info.url, { connections: 256, pipelining: 1, keepAliveTimeout: 60_000 });
      pools.push(s.pool);
      s.windows = [];
      s.gov = [];
      s.ok = 0; // 200s so far: each published one tool.called
    }
    const refresh = async () => {
      for (const s of scenarios) s.token = await accessToken(s.srv.info, client, s.srv.info.tools.bearer);
    };
    await refresh();
    const requestsFor = (s, n) => build(n, (i) => ({ path: `/tools/${s.srv.info.tools.bearer}/items/${i % IDS}`, headers: { authorization: `Bearer ${s.token}` } }));
    const count = (run) => run.statuses.get(200) ?? 0;

    // Every path must really be proxied (the upstream's JSON).
    for (const s of scenarios) {
      const r = await s.pool.request({ path: `/tools/${s.srv.info.tools.bearer}/items/7`, method: 'GET', headers: { authorization: `Bearer ${s.token}` } });
      const body = await r.body.text();
      if (r.statusCode !== 200 || JSON.parse(body).id !== '7') throw new Error(`bench/governance: ${s.name}: ${r.statusCode} ${body}`);
      s.ok++;
    }
    /** Waits until the consumer of tool.called has completed every call answered so far; returns how long it took. */
    const drain = async (s) => {
      const t0 = performance.now();
      for (;;) {
        const g = await governanceEvents(s.srv.info.url);
        if ((g.byConsumer['tool.called'] ?? 0) >= s.ok) return { ms: performance.now() - t0, events: g };
        if (performance.now() - t0 > 120_000) throw new Error(`bench/governance: the detections did not catch up in 120 s (${g.byConsumer['tool.called']} of ${s.ok})`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };

    for (let round = 1; round <= rounds; round++) {
      log(`max throughput, round ${round}/${rounds}`);
      if (round > 1) await refresh();
      for (const s of rounds > 1 && round % 2 === 0 ? [...scenarios].reverse() : scenarios) {
        const seconds = round === 1 ? warmupS : Math.min(1, warmupS);
        const wrun = await runHttpLoad({ pool: s.pool, requests: requestsFor(s, Math.max(500, Math.ceil(seconds * 4000))), concurrency, durationMs: seconds * 1000 });
        const w = summarize(`${s.name} (warm-up)`, wrun);
        s.ok += count(wrun);
        if (w.errors) throw new Error(`${s.name}: ${w.errors} non-200 answers during warm-up: ${JSON.stringify(w.statuses)} ${JSON.stringify(w.error_samples, null, 1)}`);
        if (s.consumes) await drain(s); // the window starts with nothing queued
        s.best = Math.max(s.best ?? 0, w.rps, ...s.windows.map((r) => r.latencies.length / (r.elapsedMs / 1000)));
        const n = Math.min(300_000, Math.ceil(s.best * durationS * 3) + 2000);
        const requests = requestsFor(s, n);
        log(`  ${s.name}: warm-up ${w.rps} req/s; ${n} requests; measuring ${durationS} s`);
        const before = await governanceEvents(s.srv.info.url);
        const run = await measure(s, requests, { concurrency, durationMs: durationS * 1000 });
        const after = await governanceEvents(s.srv.info.url);
        run.gcMs = after.gcMs - before.gcMs;
        s.ok += count(run);
        s.windows.push(run);
        if (s.consumes) {
          const d = await drain(s);
          const consumed = after.total - before.total;
          const calledDuring = (after.byConsumer['tool.called'] ?? 0) - (before.byConsumer['tool.called'] ?? 0);
          s.gov.push({
            window_s: +(run.elapsedMs / 1000).toFixed(3), published: count(run), consumed, tool_called_consumed: calledDuring,
            absorbed_per_s: +(consumed / (run.elapsedMs / 1000)).toFixed(0), backlog_at_end: Math.max(0, s.ok - (after.byConsumer['tool.called'] ?? 0)),
            drain_ms: +d.ms.toFixed(0),
          });
        }
      }
    }
    results = scenarios.map((s) => ({
      ...combine(s.name, s.windows), rounds_gc_ms: s.windows.map((w) => w.gcMs), governance: s.gov.length ? s.gov : undefined,
    }));
  } finally {
    for (const p of pools) await p.close().catch(() => {});
    for (const srv of servers.reverse()) await srv.stop();
  }

  const [rOn, rOff] = results;
  const pooled = +(rOn.rps / rOff.rps).toFixed(3);
  const perRound = rOn.rounds.map((v, i) => +(v / rOff.rounds[i]).toFixed(3));
  const ratio = +median(perRound).toFixed(3);
  const cpuPerRound = rOn.rounds_cpu_ms_per_req.map((v, i) => +(v / rOff.rounds_cpu_ms_per_req[i]).toFixed(3));
  for (const r of results) r.rounds_gc_ms = r.rounds_gc_ms.map((v) => +v.toFixed(0));
  const gov = rOn.governance ?? [];
  const absorbed = gov.length ? Math.round(gov.reduce((a, g) => a + g.consumed, 0) / gov.reduce((a, g) => a + g.window_s, 0)) : null;
  const report = {
    benchmark: 'governance',
    date: new Date(started).toISOString(),
    machine: machineInfo({ loadavg_before: load0, loadavg_after: loadAvg() }),
    config: { duration_s_per_round: durationS, rounds, warmup_s: warmupS, concurrency, ids: IDS, aa: aaMode ?? null },
    results,
    ratio: {
      on_over_off: ratio, statistic: 'median of the per-round ratios', pooled, per_round: perRound,
      cpu_ms_per_req_on_over_off: { median: +median(cpuPerRound).toFixed(3), per_round: cpuPerRound }, target: TARGET, pass: ratio >= TARGET,
    },
    absorbed_events_per_s: absorbed,
    profiles: profilesJson(profiles),
  };
  const file = writeReport(RESULTS, 'governance', report);

  const lines = [];
  lines.push(`${pad('scenario', 34)}${lpad('max req/s', 10)}${lpad('CPU ms/req', 12)}${lpad('CPU %', 7)}${lpad('p50', 8)}${lpad('p99', 8)}`);
  for (const r of results) lines.push(`${pad(r.scenario, 34)}${lpad(r.rps.toFixed(0), 10)}${lpad(f2(r.server_cpu_ms_per_req), 12)}${lpad(r.server_cpu_pct ?? 'n/a', 7)}${lpad(f2(r.p50_ms), 8)}${lpad(f2(r.p99_ms), 8)}`);
  lines.push(`on/off ${ratio.toFixed(3)}x, median of ${perRound.length} paired rounds (target >= ${TARGET}: ${ratio >= TARGET ? 'PASS' : 'MISS'}); pooled ${pooled.toFixed(3)}x`);
  lines.push(`  per round: req/s ${perRound.join(', ')}; CPU ms/req on/off ${cpuPerRound.join(', ')} (median ${median(cpuPerRound).toFixed(3)}x)`);
  lines.push(`  GC ms per window: on ${rOn.rounds_gc_ms.join(', ')}; off ${rOff.rounds_gc_ms.join(', ')}`);
  if (gov.length) lines.push(`detections absorbed ${absorbed} events/s at full load (per window: ${gov.map((g) => `${g.absorbed_per_s}/s of ${Math.round(g.published / g.window_s)}/s published, backlog at end ${g.backlog_at_end}, drained in ${g.drain_ms} ms`).join('; ')})`);
  lines.push(`(${concurrency} connections closed loop; ${rounds} alternating round(s) of ${durationS} s per scenario; ${cpus().length} CPUs; Node ${process.version}; loadavg ${load0?.join(' ')} → ${report.machine.loadavg_after?.join(' ')})`);
  for (const r of results) {
    if (r.errors) lines.push(`!! ${r.scenario}: ${r.errors} non-200 answers ${JSON.stringify(r.statuses)}\n${JSON.stringify(r.error_samples, null, 1)}`);
    if (r.machine && r.machine.other_pct >= 15) lines.push(`note: ${r.scenario}: other processes used ${r.machine.other_pct}% of a core during the window; numbers are less reliable`);
    if (r.machine && r.machine.steal_pct >= 5) lines.push(`note: ${r.scenario}: ${r.machine.steal_pct}% CPU steal during the window (noisy VM)`);
    if (r.ended_early) lines.push(`note: ${r.scenario} ran out of pre-built requests after ${r.duration_s} s`);
  }
  for (const [server, p] of Object.entries(profiles)) lines.push('', `${server} CPU profile (whole process life): ${p.file}`, formatProfile(p));
  lines.push(`results: ${file}`);
  return { report, text: lines.join('\n'), file, failed: results.some((r) => r.errors) };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { text, failed } = await runGovernance();
  console.log(text);
  if (failed) process.exitCode = 1;
}
