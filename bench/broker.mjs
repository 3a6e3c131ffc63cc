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
// Environment: BENCH_DURATION (s, default 8), BENCH_WARMUP (s, default 3), BENCH_CONCURRENCY
// (default 16), BENCH_PROFILE=1 (run the Mandate server under --cpu-prof and summarize it).
import { mkdirSync, writeFileSync, readdirSync, statSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import {
  es256Key, clientAssertion, dpopProof, form, postOnce, runLoad, summarize, startServer,
} from './lib.mjs';
import { summarizeProfile, formatProfile } from './profile-summary.mjs';

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

function build(n, make) {
  const out = new Array(n);
  for (let i = 0; i < n; i++) out[i] = make(i);
  return out;
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

/**
 * Warm-up (excluded), then the timed window. The timed window's requests are built after the
 * warm-up, sized from its rate (×2 headroom, the JIT is warmer later); if they run out before
 * the duration, the window simply ends early (reported as ended_early).
 */
async function scenario(name, { url, make, concurrency, warmupS, durationS, log }) {
  const warm = build(Math.max(2000, Math.ceil(warmupS * 4000)), make);
  const w = await runLoad({ url, requests: warm, concurrency, durationMs: warmupS * 1000 });
  const ws = summarize(`${name} (warm-up)`, w);
  if (ws.errors) {
    throw new Error(`${name}: ${ws.errors} non-200 answers during warm-up: ${JSON.stringify(ws.statuses)} ${JSON.stringify(ws.error_samples, null, 1)}`);
  }
  const n = Math.min(200_000, Math.ceil(ws.rps * durationS * 2) + 1000);
  const t0 = performance.now();
  const reqs = build(n, make);
  log(`  ${name}: warm-up ${ws.requests} req at ${ws.rps} req/s; built ${n} requests in ${((performance.now() - t0) / 1000).toFixed(1)} s; measuring ${durationS} s`);
  const r = summarize(name, await runLoad({ url, requests: reqs, concurrency, durationMs: durationS * 1000 }));
  r.concurrency = concurrency;
  r.warmup = { requests: ws.requests, rps: ws.rps };
  return r;
}

function newestProfile(dir, since) {
  try {
    const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(dir, f)).filter((f) => statSync(f).mtimeMs >= since);
    files.sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
    return files[0];
  } catch {
    return undefined;
  }
}

export async function runBroker(opts = {}) {
  const log = opts.log ?? ((s) => console.error(s));
  const durationS = opts.durationS ?? num(process.env.BENCH_DURATION, 8);
  const warmupS = opts.warmupS ?? num(process.env.BENCH_WARMUP, 3);
  const concurrency = opts.concurrency ?? num(process.env.BENCH_CONCURRENCY, 16);
  const profile = opts.profile ?? process.env.BENCH_PROFILE === '1';
  const started = Date.now();
  const results = [];

  // ---------------------------------------------------------------- node-oidc-provider (a)
  {
    const client = es256Key('bench-client-1');
    const dpopKey = es256Key();
    log('starting node-oidc-provider …');
    const srv = await startServer(join(HERE, 'servers', 'oidc-provider.mjs'), {
      env: { BENCH_CLIENT_JWK: JSON.stringify(client.publicJwk), BENCH_CLIENT_ID: 'bench' },
    });
    try {
      const info = srv.info;
      const one = ccRequest(info, client, dpopKey);
      checkTokenResponse('oidc-provider', await postOnce(info.token_endpoint, one.body, one.headers), { resource: info.resource, jkt: dpopKey.jkt });
      // A replayed assertion must be refused, or the comparison is unfair.
      const replay = await postOnce(info.token_endpoint, one.body, { dpop: dpopProof(dpopKey, 'POST', info.token_endpoint) });
      assert(replay.status !== 200, 'oidc-provider accepted a replayed client assertion');
      results.push(await scenario('oidc-provider client_credentials+pkjwt+DPoP', {
        url: info.token_endpoint, make: () => ccRequest(info, client, dpopKey), concurrency, warmupS, durationS, log,
      }));
    } finally {
      await srv.stop();
    }
  }

  // ---------------------------------------------------------------- Mandate (a) and (b)
  let profileSummary;
  {
    const client = es256Key('bench-agent-1');
    const dpopKey = es256Key();
    const profDir = join(RESULTS, 'profiles');
    if (profile) mkdirSync(profDir, { recursive: true });
    log(`starting Mandate${profile ? ' (--cpu-prof)' : ''} …`);
    const profStart = Date.now();
    const srv = await startServer(join(HERE, 'servers', 'mandate.mjs'), {
      env: { BENCH_CLIENT_JWK: JSON.stringify(client.publicJwk), BENCH_CLIENT_ID: 'bench-agent' },
      nodeArgs: profile ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [],
    });
    try {
      const info = srv.info;
      const one = ccRequest(info, client, dpopKey);
      checkTokenResponse('mandate', await postOnce(info.token_endpoint, one.body, one.headers), { resource: info.resource, jkt: dpopKey.jkt });
      const replay = await postOnce(info.token_endpoint, one.body, { dpop: dpopProof(dpopKey, 'POST', info.token_endpoint) });
      assert(replay.status !== 200, 'mandate accepted a replayed client assertion');
      results.push(await scenario('mandate client_credentials+pkjwt+DPoP', {
        url: info.token_endpoint, make: () => ccRequest(info, client, dpopKey), concurrency, warmupS, durationS, log,
      }));

      // Subject tokens for (b): a few, all bound to dpopKey, used round-robin.
      const subjects = [];
      for (let i = 0; i < 32; i++) {
        const r = ccRequest(info, client, dpopKey);
        subjects.push(checkTokenResponse('mandate', await postOnce(info.token_endpoint, r.body, r.headers), { resource: info.resource, jkt: dpopKey.jkt }));
      }
      const ex = exchangeRequest(info, subjects[0], dpopKey);
      const exr = await postOnce(info.token_endpoint, ex.body, ex.headers);
      checkTokenResponse('mandate exchange', exr, { resource: info.resource, jkt: dpopKey.jkt });
      assert(exr.body.issued_token_type === AT_TYPE, `mandate exchange: issued_token_type ${exr.body.issued_token_type}`);
      results.push(await scenario('mandate token exchange + DPoP', {
        url: info.token_endpoint, make: (i) => exchangeRequest(info, subjects[i % subjects.length], dpopKey), concurrency, warmupS, durationS, log,
      }));
    } finally {
      const exit = await srv.stop();
      if (profile) {
        const file = newestProfile(profDir, profStart);
        if (file) {
          profileSummary = { file, ...summarizeProfile(file) };
        } else {
          log(`no .cpuprofile found in ${profDir} (server exit: ${JSON.stringify(exit)})`);
        }
      }
    }
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
    machine: { cpus: cpus().length, cpu_model: cpus()[0]?.model, mem_gb: +(totalmem() / 2 ** 30).toFixed(1), node: process.version, platform: process.platform },
    config: { duration_s: durationS, warmup_s: warmupS, concurrency },
    results,
    ratios,
    ...(profileSummary ? { profile: { file: profileSummary.file, top_self: profileSummary.top.slice(0, 40), by_package: profileSummary.byPackage.slice(0, 20) } } : {}),
  };
  mkdirSync(RESULTS, { recursive: true });
  const file = join(RESULTS, `broker-${report.date.replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);

  const lines = [];
  const pad = (s, n) => String(s).padEnd(n);
  const lpad = (s, n) => String(s).padStart(n);
  lines.push(`${pad('scenario', 44)}${lpad('req/s', 9)}${lpad('p50 ms', 9)}${lpad('p99 ms', 9)}${lpad('errors', 8)}`);
  for (const r of results) {
    lines.push(`${pad(r.scenario, 44)}${lpad(r.rps.toFixed(0), 9)}${lpad(r.p50_ms.toFixed(2), 9)}${lpad(r.p99_ms.toFixed(2), 9)}${lpad(r.errors, 8)}`);
  }
  lines.push(`ratio mandate/oidc-provider (a): ${ratio.toFixed(2)}x   target >= ${TARGET}x: ${ratios.pass ? 'PASS' : 'BELOW'}`);
  lines.push(`p99 oidc-provider/mandate (a): ${ratios.p99_a_oidc_over_mandate.toFixed(2)}x   token exchange (b) / oidc-provider (a): ${ratios.throughput_b_over_oidc_a.toFixed(2)}x`);
  lines.push(`(${concurrency} connections, ${durationS} s per scenario after ${warmupS} s warm-up, ${cpus().length} CPUs, Node ${process.version})`);
  for (const r of results) {
    if (r.errors) lines.push(`!! ${r.scenario}: ${r.errors} non-200 answers ${JSON.stringify(r.statuses)}\n${JSON.stringify(r.error_samples, null, 1)}`);
    if (r.ended_early) lines.push(`note: ${r.scenario} ran out of pre-built requests after ${r.duration_s} s`);
  }
  if (profileSummary) lines.push('', `Mandate server CPU profile: ${profileSummary.file}`, formatProfile(profileSummary));
  lines.push(`results: ${file}`);
  return { report, text: lines.join('\n'), file };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { text, report } = await runBroker();
  console.log(text);
  if (report.results.some((r) => r.errors)) process.exitCode = 1;
}
