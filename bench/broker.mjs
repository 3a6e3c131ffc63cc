// bench/broker: throughput and latency of Mandate's token endpoint against node-oidc-provider,
// in the same run on the same machine.
//
//   (a) client_credentials + private_key_jwt + DPoP  — oidc-provider (JWT access tokens) and Mandate
//   (b) token exchange (RFC 8693) + DPoP             — Mandate (subject token from (a), same DPoP key)
//
// Each server runs in its own child process; this process is the load generator. Every request
// carries a fresh client assertion and a fresh DPoP proof (unique jti, iat now), built before
// the timed window (signing is the client's cost, not the server's).
//
// Environment: BENCH_DURATION (s per scenario per round, default 6), BENCH_ROUNDS (default 2;
// the scenarios alternate round by round), BENCH_WARMUP (s, default 3), BENCH_CONCURRENCY
// (default 16), BENCH_PROFILE (1 or mandate: run the Mandate server under --cpu-prof and
// summarize the profile; oidc-provider; all), BENCH_AB_DIR (another checkout, built: its Mandate
// runs too and its (a) and (b) alternate with this build's in every round, an A/B of two builds).
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import {
  es256Key, clientAssertion, dpopProof, form, postOnce, runLoad, summarize, cpuMs, systemCpu, build, combine, serverStarter,
  machineInfo, profilesJson, writeReport, pad, lpad,
} from './lib.mjs';
import { formatProfile } from './profile-summary.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const RESULTS = join(HERE, 'results');
const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const AT_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const TARGET = 1.5;

const num = (v, d) => (v !== undefined && v !== '' && Number.isFinite(Number(v)) ? Number(v) : d);

function decodeJwt(jwt) {
  const [h, p] = jwt.split('.');
  return { header: JSON.parse(Buffer.from(h, 'base64url')), payload: JSON.parse(Buffer.from(p, 'base64url')) };
}

function assert(cond, msg) {
  if (!cond) throw new Error(`bench/broker: ${msg}`);
}

/** client_credentials + private_key_jwt + DPoP request, fresh JWTs. */
function ccRequest(info, client, dpopKey) {
  const now = Math.floor(Date.now() / 1000);
  return {
    body: form({
      grant_type: 'client_credentials',
      client_assertion_type: ASSERTION_TYPE,
      client_assertion: clientAssertion(client, info.client_id, info.token_endpoint, now),
      resource: info.resource,
      scope: info.scope,
    }),
    headers: { dpop: dpopProof(dpopKey, 'POST', info.token_endpoint, now) },
  };
}

/** RFC 8693 token exchange of a Mandate access token, fresh DPoP proof from the bound key. */
function exchangeRequest(info, subjectToken, dpopKey) {
  return {
    body: form({
      grant_type: EXCHANGE,
      subject_token: subjectToken,
      subject_token_type: AT_TYPE,
      resource: info.resource,
      scope: info.scope,
    }),
    headers: { dpop: dpopProof(dpopKey, 'POST', info.token_endpoint) },
  };
}

/** A token response must be 200, a DPoP-bound at+jwt for the resource. */
function checkTokenResponse(label, r, { resource, jkt }) {
  assert(r.status === 200, `${label}: warm-up request answered ${r.status}: ${JSON.stringify(r.body)}`);
  assert(String(r.body.token_type).toLowerCase() === 'dpop', `${label}: token_type is ${r.body.token_type}, not DPoP`);
  const { header, payload } = decodeJwt(r.body.access_token);
  assert(header.typ === 'at+jwt' && header.alg === 'ES256', `${label}: access token header ${JSON.stringify(header)}`);
  assert(payload.aud === resource || (Array.isArray(payload.aud) && payload.aud.includes(resource)), `${label}: aud ${JSON.stringify(payload.aud)}`);
  assert(payload.cnf?.jkt === jkt, `${label}: cnf ${JSON.stringify(payload.cnf)} is not bound to the DPoP key`);
  return r.body.access_token;
}

/** One timed window: the load, plus the server's CPU, this process's CPU and the machine's. */
async function measure({ url, requests, concurrency, durationMs, pid }) {
  const cpu0 = cpuMs(pid);
  const self0 = process.cpuUsage();
  const sys0 = systemCpu();
  const run = await runLoad({ url, requests, concurrency, durationMs });
  const cpu1 = cpuMs(pid);
  const self = process.cpuUsage(self0);
  const sys1 = systemCpu();
  run.serverCpuMs = cpu0 !== undefined && cpu1 !== undefined ? cpu1 - cpu0 : undefined;
  run.loadgenCpuMs = (self.user + self.system) / 1000;
  run.sys = sys0 && sys1 ? sys1.slice(0, 8).map((v, i) => v - sys0[i]) : undefined; // guest time is already in user
  return run;
}

/** Several windows of one scenario as one (lib.mjs), with the connection count. */
function combineWindows(name, runs, concurrency) {
  const out = combine(name, runs);
  out.concurrency = concurrency;
  return out;
}

/**
 * A scenario's warm-up (excluded; it must be all 200s), then the requests for its timed
 * window, built after the warm-up and sized from its rate (×2 headroom: the JIT is warmer
 * later). If they run out before the duration, the window simply ends early (ended_early).
 */
async function prepare(s, { warmupS, durationS, concurrency, log }) {
  const warm = build(Math.max(500, Math.ceil(warmupS * 2500)), s.make);
  const w = summarize(`${s.name} (warm-up)`, await runLoad({ url: s.url, requests: warm, concurrency, durationMs: warmupS * 1000 }));
  if (w.errors) {
    throw new Error(`${s.name}: ${w.errors} non-200 answers during warm-up: ${JSON.stringify(w.statuses)} ${JSON.stringify(w.error_samples, null, 1)}`);
  }
  const n = Math.min(200_000, Math.ceil(w.rps * durationS * 2) + 1000);
  const t0 = performance.now();
  const requests = build(n, s.make);
  log(`  ${s.name}: warm-up ${w.requests} req at ${w.rps} req/s; built ${n} requests in ${((performance.now() - t0) / 1000).toFixed(1)} s; measuring ${durationS} s`);
  return requests;
}

export async function runBroker(opts = {}) {
  const log = opts.log ?? ((s) => console.error(s));
  const durationS = opts.durationS ?? num(process.env.BENCH_DURATION, 6);
  const warmupS = opts.warmupS ?? num(process.env.BENCH_WARMUP, 3);
  const concurrency = opts.concurrency ?? num(process.env.BENCH_CONCURRENCY, 16);
  const rounds = Math.max(1, Math.floor(opts.rounds ?? num(process.env.BENCH_ROUNDS, 2)));
  const results = [];
  const profEnv = opts.profile ?? process.env.BENCH_PROFILE ?? '';
  const profileOf = (server) => profEnv === 'all' || profEnv === server || (server === 'mandate' && (profEnv === '1' || profEnv === true));
  const profDir = join(RESULTS, 'profiles');
  const profiles = {};
  const start = serverStarter({ dir: join(HERE, 'servers'), profDir, profileOf, profiles, log });
  // BENCH_AB_DIR=<checkout with its build>: that build's Mandate runs beside this one and its (a)
  // and (b) scenarios alternate with this build's in every round (an A/B on one machine's moment).
  const abDir = opts.abDir ?? process.env.BENCH_AB_DIR;
  const startOther = abDir ? serverStarter({ dir: join(abDir, 'bench', 'servers'), profDir, profileOf, profiles, log, name: (s) => `${s}-ab` }) : undefined;
  const started = Date.now();

  // Both servers run for the whole benchmark (an idle one costs nothing) so that the scenarios
  // can alternate: drift on a shared machine (CPU steal, other jobs) hits each of them alike.
  const oidcClient = es256Key('bench-client-1');
  const mandateClient = es256Key('bench-agent-1');
  const dpopKey = es256Key();
  const servers = [];
  try {
    const oidc = await start('oidc-provider', { BENCH_CLIENT_JWK: JSON.stringify(oidcClient.publicJwk), BENCH_CLIENT_ID: 'bench' });
    servers.push(oidc);
    const mandate = await start('mandate', { BENCH_CLIENT_JWK: JSON.stringify(mandateClient.publicJwk), BENCH_CLIENT_ID: 'bench-agent' });
    servers.push(mandate);
    const other = startOther ? await startOther('mandate', { BENCH_CLIENT_JWK: JSON.stringify(mandateClient.publicJwk), BENCH_CLIENT_ID: 'bench-agent' }) : undefined;
    if (other) servers.push(other);

    // Both must answer a real token, and refuse a replayed assertion (or the comparison is unfair).
    for (const [label, srv, client] of [['oidc-provider', oidc, oidcClient], ['mandate', mandate, mandateClient]]) {
      const info = srv.info;
      const one = ccRequest(info, client, dpopKey);
      checkTokenResponse(label, await postOnce(info.token_endpoint, one.body, one.headers), { resource: info.resource, jkt: dpopKey.jkt });
      const replay = await postOnce(info.token_endpoint, one.body, { dpop: dpopProof(dpopKey, 'POST', info.token_endpoint) });
      assert(replay.status !== 200, `${label} accepted a replayed client assertion`);
    }
    // Subject tokens for (b): a few Mandate tokens, all bound to dpopKey, used round-robin.
    const mi = mandate.info;
    const subjectsOf = async (info) => {
      const out = [];
      for (let i = 0; i < 32; i++) {
        const r = ccRequest(info, mandateClient, dpopKey);
        out.push(checkTokenResponse('mandate', await postOnce(info.token_endpoint, r.body, r.headers), { resource: info.resource, jkt: dpopKey.jkt }));
      }
      return out;
    };
    const subjects = await subjectsOf(mi);
    const ex = exchangeRequest(mi, subjects[0], dpopKey);
    const exr = await postOnce(mi.token_endpoint, ex.body, ex.headers);
    checkTokenResponse('mandate exchange', exr, { resource: mi.resource, jkt: dpopKey.jkt });
    assert(exr.body.issued_token_type === AT_TYPE, `mandate exchange: issued_token_type ${exr.body.issued_token_type}`);

    const scenarios = [
      { name: 'oidc-provider client_credentials+pkjwt+DPoP', srv: oidc, url: oidc.info.token_endpoint, make: () => ccRequest(oidc.info, oidcClient, dpopKey) },
      { name: 'mandate client_credentials+pkjwt+DPoP', srv: mandate, url: mi.token_endpoint, make: () => ccRequest(mi, mandateClient, dpopKey) },
      { name: 'mandate token exchange + DPoP', srv: mandate, url: mi.token_endpoint, make: (i) => exchangeRequest(mi, subjects[i % subjects.length], dpopKey) },
    ];
    if (other) {
      const oi = other.info;
      const otherSubjects = await subjectsOf(oi);
      scenarios.push(
        { name: `mandate (${abDir}) client_credentials+pkjwt+DPoP`, srv: other, url: oi.token_endpoint, make: () => ccRequest(oi, mandateClient, dpopKey) },
        { name: `mandate (${abDir}) token exchange + DPoP`, srv: other, url: oi.token_endpoint, make: (i) => exchangeRequest(oi, otherSubjects[i % otherSubjects.length], dpopKey) },
      );
    }
    for (const s of scenarios) s.runs = [];
    for (let round = 1; round <= rounds; round++) {
      log(`round ${round}/${rounds}`);
      for (const s of scenarios) {
        // The first round warms up for warmupS; later ones briefly (the other scenarios ran in between).
        const requests = await prepare(s, { warmupS: round === 1 ? warmupS : Math.min(1, warmupS), durationS, concurrency, log });
        s.runs.push(await measure({ url: s.url, requests, concurrency, durationMs: durationS * 1000, pid: s.srv.pid }));
      }
    }
    results.push(...scenarios.map((s) => combineWindows(s.name, s.runs, concurrency)));
  } finally {
    for (const srv of servers) await srv.stop();
  }

  const [oidcA, mandateA, mandateB] = results;
  const ratio = mandateA.rps / oidcA.rps;
  const ratios = {
    throughput_a: +ratio.toFixed(2),
    p99_a_oidc_over_mandate: +(oidcA.p99_ms / mandateA.p99_ms).toFixed(2),
    throughput_b_over_oidc_a: +(mandateB.rps / oidcA.rps).toFixed(2),
    target_a: TARGET,
    pass: ratio >= TARGET,
  };
  const report = {
    benchmark: 'broker',
    date: new Date(started).toISOString(),
    machine: machineInfo(),
    config: { duration_s_per_round: durationS, rounds, warmup_s: warmupS, concurrency },
    results,
    ratios,
    profiles: profilesJson(profiles),
  };
  const file = writeReport(RESULTS, 'broker', report);

  const lines = [];
  lines.push(`${pad('scenario', 44)}${lpad('req/s', 9)}${lpad('p50 ms', 9)}${lpad('p99 ms', 9)}${lpad('errors', 8)}${lpad('server CPU ms/req', 19)}`);
  for (const r of results) {
    const cpu = r.server_cpu_ms_per_req === null ? 'n/a' : `${r.server_cpu_ms_per_req.toFixed(2)} (${r.server_cpu_pct}%)`;
    lines.push(`${pad(r.scenario, 44)}${lpad(r.rps.toFixed(0), 9)}${lpad(r.p50_ms.toFixed(2), 9)}${lpad(r.p99_ms.toFixed(2), 9)}${lpad(r.errors, 8)}${lpad(cpu, 19)}`);
  }
  lines.push(`ratio mandate/oidc-provider (a): ${ratio.toFixed(2)}x   target >= ${TARGET}x: ${ratios.pass ? 'PASS' : 'BELOW'}`);
  lines.push(`p99 oidc-provider/mandate (a): ${ratios.p99_a_oidc_over_mandate.toFixed(2)}x   token exchange (b) / oidc-provider (a): ${ratios.throughput_b_over_oidc_a.toFixed(2)}x`);
  lines.push(`(${concurrency} connections; ${rounds} interleaved round(s) of ${durationS} s per scenario after a ${warmupS} s warm-up; ${cpus().length} CPUs; Node ${process.version})`);
  lines.push(`per-round ratio (a): ${mandateA.rounds.map((m, i) => (m / oidcA.rounds[i]).toFixed(2)).join(', ')}`);
  for (const r of results) {
    if (r.errors) lines.push(`!! ${r.scenario}: ${r.errors} non-200 answers ${JSON.stringify(r.statuses)}\n${JSON.stringify(r.error_samples, null, 1)}`);
    if (r.machine && r.machine.other_pct >= 15) lines.push(`note: ${r.scenario}: other processes used ${r.machine.other_pct}% of a core during the window; numbers are less reliable`);
    if (r.machine && r.machine.steal_pct >= 5) lines.push(`note: ${r.scenario}: ${r.machine.steal_pct}% CPU steal during the window (noisy VM); numbers are less reliable`);
    if (r.ended_early) lines.push(`note: ${r.scenario} ran out of pre-built requests after ${r.duration_s} s`);
  }
  for (const [server, v] of Object.entries(profiles)) lines.push('', `${server} server CPU profile (whole process life): ${v.file}`, formatProfile(v));
  lines.push(`results: ${file}`);
  return { report, text: lines.join('\n'), file };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { text, report } = await runBroker();
  console.log(text);
  if (report.results.some((r) => r.errors)) process.exitCode = 1;
}
