// bench/revocation: time to revoke across processes, on PostgreSQL + NATS JetStream.
//
//   - one `serve --role broker`, one `serve --role signals`, N `serve --role proxy` (N = 1, 4, 8),
//     all separate processes on one PostgreSQL schema and one JetStream stream, one issuer;
//   - per round (after BENCH_REVOCATION_WARMUP_ROUNDS (10) rounds that are not counted), an outside SSF transmitter (this process, its own ES256 key) pushes a CAEP
//     session-revoked SET for one agent to the signals instance, while this process asks every
//     proxy, over and over, to serve that agent's earlier token; the time from sending the push
//     to each proxy's first refusal (401 revoked) is one sample. Pollers run only during a round
//     and pause BENCH_POLL_GAP_MS (default 5) between calls, so that the measuring load stays small
//     at every N: with 1 ms, 8 pollers asked about 4,000 calls/s, which kept both cores busy and
//     measured the pollers' own load (p99 134 ms at N = 8 against 83 ms with 5 ms). A
//     refusal is seen at most one gap and one round trip after it takes effect, so each sample
//     is an upper bound; the report gives the pollers' call rate beside it.
//   - SET ingest: pre-signed session-revoked SETs pushed by BENCH_INGEST_CONCURRENCY (32)
//     connections for BENCH_INGEST_S (5) seconds to the signals instance, with no proxy running;
//     each SET is verified, stored, revokes an agent's tokens and is published: SETs/s = 202s / s,
//     after BENCH_INGEST_WARMUP_S (5) seconds of the same load that are not counted.
//
// Also reported, from the store (GET /admin/v1/reports/mttr): SET arrival → applied at every
// instance, and → the first refused call, as the instances themselves recorded them (ms clock).
//
// Needs `npm run build`, PostgreSQL at 127.0.0.1:5432 (db test, user postgres; a fresh schema)
// and NATS at 127.0.0.1:4222 (a fresh stream). BENCH_REVOCATION_N (default "1,4,8"),
// BENCH_REVOCATION_ROUNDS (default 30 per N). Targets: p99 < 100 ms at N = 8; >= 2,000 SETs/s.
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { performance } from 'node:perf_hooks';
import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { rawHttpClient } from './raw-http.mjs';
import { es256Key, clientAssertion, cpuByName, cpuDiff, cpuMs, signEs256, systemCpu } from './lib.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..');
const RESULTS = join(HERE, 'results');
const PG_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const NATS_URL = 'nats://127.0.0.1:4222';
const ISSUER = 'http://mandate.bench.test';
const AUD = 'https://mandate.bench.test/ssf';
const CAEP_REVOKED = 'https://schemas.openid.net/secevent/caep/event-type/session-revoked';
const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const num = (v, d) => (v !== undefined && v !== '' && Number.isFinite(Number(v)) ? Number(v) : d);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function quantiles(values) {
  const v = [...values].sort((a, b) => a - b);
  const q = (p) => (v.length ? v[Math.min(v.length - 1, Math.ceil(p * v.length) - 1)] : NaN);
  return { n: v.length, mean: v.reduce((a, b) => a + b, 0) / (v.length || 1), p50: q(0.5), p99: q(0.99), max: v[v.length - 1] ?? NaN };
}

async function freshSchemaUrl() {
  const schema = `bench_${randomBytes(5).toString('hex')}`;
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  await c.query(`CREATE SCHEMA ${schema}`);
  await c.end();
  return { schema, url: `${PG_URL}?options=${encodeURIComponent(`-c search_path=${schema}`)}` };
}

/**
 * Where the time goes, per stage, from what the instances recorded (ms clock, one machine):
 * SET arrival → committed at the signals instance (its own revocation state applied it right
 * after the commit) → applied at a proxy (the bus) → that proxy's first refusal (the poller).
 */
async function stageTimes(schema, since) {
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  try {
    // The signals instance applies a signal's revocation in its own state right after the commit:
    // its applied_at is the commit time.
    const { rows } = await c.query(
      `SELECT s.id, s.received_at::float8 AS received, a.role, a.applied_at::float8 AS applied, a.first_denied_at::float8 AS denied
         FROM ${schema}.signals s JOIN ${schema}.signal_applications a ON a.signal_id = s.id
        WHERE s.received_at >= $1 AND s.status = 'applied'`, [since]);
    const committed = new Map(rows.filter((r) => r.role === 'signals' && r.applied !== null).map((r) => [r.id, r.applied]));
    const received = new Map(rows.map((r) => [r.id, r.received]));
    const proxy = rows.filter((r) => r.role === 'proxy' && committed.has(r.id));
    // Per signal (one per round, in arrival order): its three stages, the slowest proxy's for the last two.
    const bySignal = [...committed].map(([id, at]) => {
      const mine = proxy.filter((r) => r.id === id && r.applied !== null);
      return {
        received: received.get(id),
        committed_ms: at - received.get(id),
        applied_max_ms: mine.length ? Math.max(...mine.map((r) => r.applied - at)) : null,
        denied_max_ms: mine.some((r) => r.denied !== null) ? Math.max(...mine.filter((r) => r.denied !== null).map((r) => r.denied - r.applied)) : null,
      };
    }).sort((a, b) => a.received - b.received).map(({ received, ...rest }) => rest);
    return {
      per_signal: bySignal,
      set_received_to_committed_ms: quantiles([...committed].map(([id, at]) => at - received.get(id))),
      committed_to_applied_at_proxy_ms: quantiles(proxy.filter((r) => r.applied !== null).map((r) => r.applied - committed.get(r.id))),
      applied_to_first_denial_at_proxy_ms: quantiles(proxy.filter((r) => r.applied !== null && r.denied !== null).map((r) => r.denied - r.applied)),
    };
  } finally {
    await c.end();
  }
}

/** CPU ms per SET by process name, the largest first (names under 0.005 ms per SET left out), then system calls per SET of the main processes. */
function perName(diff, count) {
  if (!count) return {};
  const cpu = Object.entries(diff).filter(([k]) => !k.endsWith(' syscalls')).map(([k, v]) => [k, +(v / count).toFixed(3)]).filter(([, v]) => v >= 0.005).sort((a, b) => b[1] - a[1]);
  const calls = ['signals', 'broker', 'postgres', 'nats-server', 'loadgen'].filter((k) => diff[`${k} syscalls`]).map((k) => [`${k} syscalls`, +(diff[`${k} syscalls`] / count).toFixed(2)]);
  return Object.fromEntries([...cpu, ...calls]);
}
/** Idle, iowait and steal time between two /proc/stat "cpu" lines, in % of the machine's time. */
function idlePct(a, b) {
  if (!a || !b) return null;
  const d = b.map((v, i) => v - (a[i] ?? 0));
  const total = d.slice(0, 8).reduce((x, y) => x + y, 0);
  const pct = (v) => (total > 0 ? Math.round((100 * v) / total) : null);
  return { idle: pct(d[3]), iowait: pct(d[4]), steal: pct(d[7]) };
}
const fmtNames = (m) => Object.entries(m).map(([k, v]) => `${k} ${v}`).join(', ');

async function dropSchema(schema) {
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  await c.query(`DROP SCHEMA ${schema} CASCADE`).catch(() => {});
  await c.end();
}

/**
 * Deletes the run's JetStream stream. Left behind, every run's ~50,000 messages stayed on the
 * server (7 days' max_age): after a session of runs ~80 streams and ~1 GB in its file store, and
 * the later runs measured a NATS server busy with them.
 */
async function deleteStream(name) {
  const nc = await connect({ servers: NATS_URL, timeout: 3_000, maxReconnectAttempts: 0 });
  try {
    await (await jetstreamManager(nc, { timeout: 5_000 })).streams.delete(name).catch(() => false);
  } finally {
    await nc.close();
  }
}

/** `node bin/mandate.js serve --role R --json`, small heap; resolves on its ready line. */
function spawnInstance(role, configPath, env) {
  // BENCH_PROFILE=signals (or broker, proxy, all): that role runs under `node --cpu-prof` (bench/results/profiles/).
  const prof = process.env.BENCH_PROFILE === role || process.env.BENCH_PROFILE === 'all'
    ? ['--cpu-prof', `--cpu-prof-dir=${join(RESULTS, 'profiles')}`, `--cpu-prof-name=revocation-${role}-${Date.now()}-${process.pid}.cpuprofile`] : [];
  const child = spawn(process.execPath, ['--max-old-space-size=160', ...prof, join(ROOT, 'bin', 'mandate.js'), 'serve', '--role', role, '--config', configPath, '--json'], {
    cwd: dirname(configPath), env: { PATH: process.env.PATH, NODE_ENV: 'test', ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr = (stderr + d).slice(-20_000); });
  const exited = new Promise((r) => child.once('exit', r));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${role} did not start:\n${stderr}`)); }, 60_000);
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (!line.startsWith('{"ready":true')) return;
      clearTimeout(timer);
      resolve({ ...JSON.parse(line), stop, token: () => /export MANDATE_TOKEN=(\S+)/.exec(stderr)?.[1], stderr: () => stderr });
    });
    exited.then(() => { clearTimeout(timer); reject(new Error(`${role} exited before it was ready:\n${stderr}`)); });
  });
}

/**
 * The outside SSF transmitter: its own ES256 key, JWKS at /jwks, and an RFC 8936 poll endpoint
 * at /poll for the `itdr-poll` receiver: `offer(sets)` queues SETs, each poll hands out up to
 * maxEvents of them (moreAvailable while any are left) and takes the acknowledgements (`ack`,
 * `setErrs`) of the previous one; `acked` and `errs` count them, `lastAckAt` is when the last came.
 */
async function startTransmitter() {
  const key = es256Key(`tx-${randomUUID().slice(0, 8)}`);
  const queue = [];
  const poll = { acked: 0, errs: 0, errSamples: [], lastAckAt: 0, firstOutAt: 0, polls: 0 };
  const server = createServer((req, res) => {
    if (req.url === '/jwks') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [key.publicJwk] }));
      return;
    }
    if (req.url === '/poll' && req.method === 'POST') {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (d) => { body += d; });
      req.on('end', () => {
        const doc = JSON.parse(body || '{}');
        poll.polls++;
        const acks = Array.isArray(doc.ack) ? doc.ack.length : 0;
        const errs = doc.setErrs ? Object.keys(doc.setErrs).length : 0;
        if (acks + errs > 0) poll.lastAckAt = performance.now();
        poll.acked += acks;
        poll.errs += errs;
        if (errs && poll.errSamples.length < 3) poll.errSamples.push(JSON.stringify(doc.setErrs).slice(0, 200));
        const max = Math.max(1, Math.min(Number(doc.maxEvents) || 100, 1000));
        const sets = {};
        for (const item of queue.splice(0, max)) sets[item.jti] = item.set;
        if (poll.firstOutAt === 0 && Object.keys(sets).length > 0) poll.firstOutAt = performance.now();
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ sets, moreAvailable: queue.length > 0 }));
      });
      return;
    }
    res.writeHead(404).end();
  });
  server.keepAliveTimeout = 60_000;
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${server.address().port}`;
  const sign = (nhi, jti = randomUUID()) => signEs256({ alg: 'ES256', typ: 'secevent+jwt', kid: key.publicJwk.kid }, {
    iss: url, aud: AUD, iat: Math.floor(Date.now() / 1000), jti, sub_id: { format: 'opaque', id: nhi },
    events: { [CAEP_REVOKED]: { event_timestamp: Math.floor(Date.now() / 1000) } },
  }, key.privateKey);
  return {
    issuer: url, jwksUri: `${url}/jwks`, pollUrl: `${url}/poll`, poll,
    sign,
    /** Pre-signed SETs for the poll endpoint: [{ jti, set }]. */
    signMany: (nhis) => nhis.map((nhi) => { const jti = randomUUID(); return { jti, set: sign(nhi, jti) }; }),
    offer: (items) => { queue.push(...items); },
    queued: () => queue.length,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
  };
}

async function startUpstream() {
  const server = createServer((req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'));
  server.keepAliveTimeout = 60_000;
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }) };
}

async function issue(brokerUrl, agent) {
  const res = await fetch(`${brokerUrl}/oauth/token`, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: clientAssertion(agent.key, agent.id, ISSUER),
      resource: `${ISSUER}/tools/rec`, scope: 'list_items',
    }),
  });
  const body = await res.json();
  if (res.status !== 200) throw new Error(`token for ${agent.id}: ${res.status} ${JSON.stringify(body)}`);
  return body.access_token;
}

async function admin(url, token, path) {
  const res = await fetch(`${url}/admin/v1${path}`, { headers: { authorization: `Bearer ${token}` } });
  return res.json();
}

/** Asks one proxy until it refuses; resolves with the time (performance.now()) of the first refusal. */
async function pollUntilDenied(client, token, gapMs, deadline, counter) {
  const call = client.prepare('GET', '/tools/rec/items', { authorization: `Bearer ${token}` });
  for (;;) {
    counter.calls++;
    const res = await call();
    const now = performance.now();
    if (res.status === 401) return now;
    if (res.status !== 200) throw new Error(`unexpected ${res.status} from a proxy`);
    if (now > deadline) throw new Error('no refusal within 10 s');
    if (gapMs > 0) await sleep(gapMs);
  }
}

export async function runRevocation(opts = {}) {
  const log = opts.log ?? ((s) => console.error(s));
  const ns = (opts.n ?? process.env.BENCH_REVOCATION_N ?? '1,4,8').toString().split(',').map(Number).filter((n) => n > 0);
  const rounds = num(opts.rounds ?? process.env.BENCH_REVOCATION_ROUNDS, 30);
  const gapMs = num(process.env.BENCH_POLL_GAP_MS, 5);
  const ingestS = num(process.env.BENCH_INGEST_S, 5);
  const ingestConc = num(process.env.BENCH_INGEST_CONCURRENCY, 32);
  const ingestWarmupS = num(process.env.BENCH_INGEST_WARMUP_S, 5);
  const warmupRounds = num(process.env.BENCH_REVOCATION_WARMUP_ROUNDS, 10);
  const agentsNeeded = (rounds + warmupRounds) * ns.length + 50;
  const agents = Array.from({ length: agentsNeeded }, (_, i) => ({ id: `bench-agent-${i}`, key: es256Key(`bench-agent-${i}-1`) }));

  const { schema, url: pgUrl } = await freshSchemaUrl();
  const suffix = randomBytes(4).toString('hex');
  const tx = await startTransmitter();
  const upstream = await startUpstream();
  const dir = mkdtempSync(join(tmpdir(), 'mandate-bench-rev-'));
  const configPath = join(dir, 'mandate.yaml');
  writeFileSync(configPath, JSON.stringify({
    server: { host: '127.0.0.1', port: 0, public_url: ISSUER },
    store: { driver: 'postgres', postgres_url: pgUrl, pool_size: num(process.env.BENCH_PG_POOL, 4) },
    bus: { driver: 'nats', stream: `BENCHREV_${suffix}`, subject_prefix: `benchrev${suffix}` },
    keys: { kek: 'env:BENCH_KEK' },
    log: { level: 'error' },
    // The bench's transmitter listens on 127.0.0.1: loopback is reachable only when allowed (docs/security.md, "Outbound requests").
    outbound: { allow_private_cidrs: ['127.0.0.0/8', '::1/128'] },
    tokens: { profiles: [{ name: 'read', ttl: '10m', binding: 'optional' }] },
    nhis: agents.map((a) => ({
      id: a.id, class: 'agent', owner: 'bench@example.com', system: 'bench', tier: 'read',
      credentials: [{ type: 'private_key_jwt', jwks: { keys: [a.key.publicJwk] } }],
    })),
    tools: [{ id: 'rec', kind: 'http', upstream: upstream.url, actions: [{ name: 'list_items', method: 'GET', path: '/items', tier: 'read' }] }],
    grants: agents.map((a) => ({ nhi: a.id, tool: 'rec', actions: ['list_items'] })),
    signals: {
      receivers: [
        { name: 'itdr', issuer: tx.issuer, jwks_uri: tx.jwksUri, audience: AUD, delivery: 'push', algorithms: ['ES256'] },
        { name: 'itdr-poll', issuer: tx.issuer, jwks_uri: tx.jwksUri, audience: AUD, delivery: 'poll', poll_url: tx.pollUrl, poll_interval: 1, algorithms: ['ES256'] },
      ],
    },
  }));
  const env = { BENCH_KEK: randomBytes(32).toString('base64') };
  const started = [];
  const report = { bench: 'revocation', at: new Date().toISOString(), cpus: cpus().length, node: process.version, rounds, warmup_rounds: warmupRounds, poll_gap_ms: gapMs, results: [], ingest: null, ingest_poll: null };
  try {
    const broker = await spawnInstance('broker', configPath, env);
    started.push(broker);
    for (let i = 0; i < 100 && !broker.token(); i++) await sleep(50);
    const adminToken = broker.token();
    const signals = await spawnInstance('signals', configPath, env);
    started.push(signals);
    // The transmitter's pushes go through a minimal HTTP/1.1 client (bench/raw-http.mjs): it
    // runs on the same two cores as the instances, and costs them two thirds of what undici did.
    const pushClient = rawHttpClient(signals.url, { connections: Math.max(ingestConc, 4) });
    const postSet = pushClient.prepare('POST', '/ssf/receivers/itdr/events', { 'content-type': 'application/secevent+jwt' });
    const push = async (set) => {
      const res = await postSet(set);
      if (res.status !== 202) throw new Error(`push answered ${res.status}: ${res.body}`);
    };
    let nextAgent = 0;
    // Warm-up: the receiver's first SET fetches the transmitter's JWKS.
    await push(tx.sign(agents[agentsNeeded - 1].id));

    for (const n of ns) {
      log(`bench/revocation: N = ${n} proxies`);
      const proxies = await Promise.all(Array.from({ length: n }, () => spawnInstance('proxy', configPath, env)));
      started.push(...proxies);
      const pools = proxies.map((p) => rawHttpClient(p.url, { connections: 1 }));
      const roundAgents = agents.slice(nextAgent, nextAgent + warmupRounds + rounds);
      nextAgent += warmupRounds + rounds;
      const tokens = await Promise.all(roundAgents.map((a) => issue(broker.url, a)));
      // Warm every proxy's token cache and connection (each token verified once, as an agent's would be).
      for (const pool of pools) {
        for (const t of tokens) {
          const r = await pool.prepare('GET', '/tools/rec/items', { authorization: `Bearer ${t}` })();
          if (r.status !== 200) throw new Error(`warm-up call answered ${r.status}`);
        }
      }
      const samples = [];
      const perRoundMax = [];
      const probes = { calls: 0, ms: 0 };
      // Where the machine's CPU went during the counted rounds, in % of one core, by process.
      const named = Object.fromEntries([['signals', signals.pid], ['broker', broker.pid], ...proxies.map((p, i) => [`proxy ${i}`, p.pid])]);
      let machine0 = cpuByName(named);
      let wall0 = performance.now();
      let load0 = loadavg()[0];
      let since = Date.now();
      // The first warmupRounds are the same rounds, not counted: the paths a revocation takes
      // (applying it at a proxy, the refusal, its timeline and audit) run for the first time in
      // fresh processes, and until V8 has compiled them a sample measures the JIT (the
      // first ten rounds at N = 8 took up to 157 ms, the twenty after them 35-60 ms).
      for (let r = 0; r < warmupRounds + rounds; r++) {
        const counted = r >= warmupRounds;
        if (r === warmupRounds) {
          load0 = loadavg()[0];
          since = Date.now();
          probes.calls = 0;
          machine0 = cpuByName(named);
          wall0 = performance.now();
        }
        const set = tx.sign(roundAgents[r].id);
        const t0 = performance.now();
        const deadline = t0 + 10_000;
        const pollers = pools.map((pool) => pollUntilDenied(pool, tokens[r], gapMs, deadline, probes));
        await push(set);
        const denied = await Promise.all(pollers);
        if (!counted) {
          await sleep(150);
          continue;
        }
        probes.ms += performance.now() - t0;
        const ms = denied.map((t) => t - t0);
        samples.push(...ms);
        perRoundMax.push(Math.max(...ms));
        await sleep(150);
      }
      const busy = new Map();
      for (const [k, v] of Object.entries(cpuDiff(machine0, cpuByName(named)))) {
        const key = k.startsWith('proxy ') ? 'proxies' : k;
        busy.set(key, (busy.get(key) ?? 0) + v);
      }
      const wall = performance.now() - wall0;
      const machineCpuPct = Object.fromEntries([...busy].map(([k, v]) => [k, Math.round((100 * v) / wall)]).filter(([, v]) => v >= 1).sort((a, b) => b[1] - a[1]));
      for (const p of pools) p.close();
      const mttr = await admin(signals.url, adminToken, `/reports/mttr?per_signal=true&limit=${rounds}`);
      const q = quantiles(samples);
      const all = quantiles(perRoundMax);
      await sleep(300); // the instances write their timeline in the background
      const stages = await stageTimes(schema, since);
      report.results.push({
        n, rounds, samples: samples.length, push_to_denial_ms: q, push_to_denied_at_all_ms: all, round_max_ms: perRoundMax.map((x) => +x.toFixed(1)), probe_calls_per_s: Math.round(probes.calls / (probes.ms / 1000)),
        store_applied_everywhere_ms: mttr.applied_everywhere, store_first_denial_ms: mttr.first_denial, stages, machine_cpu_pct: machineCpuPct, loadavg_1m_before: load0, loadavg_1m_after: loadavg()[0],
      });
      log(`  push → denial at a proxy: p50 ${q.p50.toFixed(1)} ms, p99 ${q.p99.toFixed(1)} ms (${q.n} samples); at all ${n}: p50 ${all.p50.toFixed(1)}, p99 ${all.p99.toFixed(1)} ms; pollers asked ${Math.round(probes.calls / (probes.ms / 1000))} calls/s in all`);
      const st = (x) => `p50 ${x.p50} / p99 ${x.p99}`;
      log(`  machine CPU during the counted rounds (% of one core, by process): ${Object.entries(machineCpuPct).map(([k, v]) => `${k} ${v}`).join(', ')}`);
      log(`  stages (ms): SET arrival → committed ${st(stages.set_received_to_committed_ms)}; committed → applied at a proxy ${st(stages.committed_to_applied_at_proxy_ms)}; applied → first refusal ${st(stages.applied_to_first_denial_at_proxy_ms)}`);
      await Promise.all(proxies.map((p) => p.stop()));
      started.splice(started.length - proxies.length, proxies.length);
    }

    // SET ingest: no proxy running; pre-signed SETs (signing is the transmitter's cost). A warm-up
    // window first, at the same concurrency and not counted: until V8 has optimized the ingest path
    // (a cold signals instance spends a fifth of its CPU in V8's optimizing compiler during the
    // first seconds of this load, still ~6% after 8 s), the CPU per SET measures the JIT rather
    // than the steady state.
    const sets = Array.from({ length: Math.max(2000, (ingestS + ingestWarmupS) * 4000) }, (_, i) => tx.sign(agents[i % agentsNeeded].id));
    log(`bench/revocation: SET ingest, ${ingestConc} connections, ${ingestWarmupS} s warm-up, ${ingestS} s measured`);
    let next = 0;
    let ok = 0;
    let failed = 0;
    const errors = [];
    const window = async (seconds, count) => {
      const end = performance.now() + seconds * 1000;
      await Promise.all(Array.from({ length: ingestConc }, async () => {
        while (next < sets.length && performance.now() < end) {
          const s = sets[next++];
          try { await push(s); if (count) ok++; } catch (err) { if (!count) continue; failed++; if (errors.length < 3) errors.push(String(err.message).slice(0, 200)); }
        }
      }));
    };
    if (ingestWarmupS > 0) await window(ingestWarmupS, false);
    const cpu0 = { signals: cpuMs(signals.pid), broker: cpuMs(broker.pid) };
    const named = { signals: signals.pid, broker: broker.pid };
    const machine0 = cpuByName(named, true);
    const sys0 = systemCpu();
    const tStart = performance.now();
    await window(ingestS, true);
    const elapsed = (performance.now() - tStart) / 1000;
    const machine = cpuDiff(machine0, cpuByName(named, true));
    const idle = idlePct(sys0, systemCpu());
    // CPU per accepted SET of the signals instance (verification, commit, audit, publishes, its own
    // bus consumers) and of the broker (it hears every revocation): on a shared machine the SETs/s
    // follow whatever else runs, the CPU per SET much less.
    const perSet = (pid, before) => (before === undefined || ok === 0 ? null : +(((cpuMs(pid) ?? before) - before) / ok).toFixed(3));
    report.ingest = {
      concurrency: ingestConc, warmup_s: ingestWarmupS, seconds: +elapsed.toFixed(2), accepted: ok, failed, sets_per_s: Math.round(ok / elapsed), ran_out: next >= sets.length, errors,
      signals_cpu_ms_per_set: perSet(signals.pid, cpu0.signals), broker_cpu_ms_per_set: perSet(broker.pid, cpu0.broker), loadavg_1m: loadavg()[0],
      machine_cpu_ms_per_set: perName(machine, ok), machine_idle_pct: idle,
    };
    log(`  machine CPU per SET (ms, by process): ${fmtNames(report.ingest.machine_cpu_ms_per_set)}; the machine was idle ${idle?.idle}% of the time (iowait ${idle?.iowait}%, steal ${idle?.steal}%)`);
    log(`  ${report.ingest.sets_per_s} SETs/s accepted (${ok} in ${elapsed.toFixed(1)} s, ${failed} failed); CPU per SET: signals ${report.ingest.signals_cpu_ms_per_set} ms, broker ${report.ingest.broker_cpu_ms_per_set} ms; load ${report.ingest.loadavg_1m.toFixed(1)}`);
    pushClient.close();

    // The same SETs delivered by poll (RFC 8936) to the `itdr-poll` receiver of the same signals
    // instance: up to 100 SETs per poll answer, verified concurrently and committed together, each
    // acknowledged in the next poll once committed. Timed from the first answer that carries SETs
    // to the last acknowledgement; a warm-up batch first, not counted.
    const pollSets = num(process.env.BENCH_POLL_SETS, 12_000);
    const pollWarmup = num(process.env.BENCH_POLL_WARMUP_SETS, 3_000);
    log(`bench/revocation: SET ingest by poll, ${pollWarmup} SETs warm-up, ${pollSets} measured`);
    const drainPoll = async (items) => {
      const target = tx.poll.acked + tx.poll.errs + items.length;
      tx.poll.firstOutAt = 0;
      tx.offer(items);
      const deadline = performance.now() + 120_000;
      while (tx.poll.acked + tx.poll.errs < target) {
        if (performance.now() > deadline) throw new Error(`poll ingest: ${target - tx.poll.acked - tx.poll.errs} SETs not acknowledged in 120 s`);
        await sleep(20);
      }
    };
    if (pollSets > 0) {
      if (pollWarmup > 0) await drainPoll(tx.signMany(Array.from({ length: pollWarmup }, (_, i) => agents[i % agentsNeeded].id)));
      const measured = tx.signMany(Array.from({ length: pollSets }, (_, i) => agents[(i + 7) % agentsNeeded].id));
      const before = { acked: tx.poll.acked, errs: tx.poll.errs, polls: tx.poll.polls, signals: cpuMs(signals.pid), broker: cpuMs(broker.pid), machine: cpuByName(named, true) };
      await drainPoll(measured);
      const pollMachine = cpuDiff(before.machine, cpuByName(named, true));
      const pollElapsed = (tx.poll.lastAckAt - tx.poll.firstOutAt) / 1000;
      const pAcked = tx.poll.acked - before.acked;
      const perPolled = (pid, b) => (b === undefined || pAcked === 0 ? null : +(((cpuMs(pid) ?? b) - b) / pAcked).toFixed(3));
      report.ingest_poll = {
        sets: pollSets, acknowledged: pAcked, set_errors: tx.poll.errs - before.errs, error_samples: tx.poll.errSamples, polls: tx.poll.polls - before.polls,
        seconds: +pollElapsed.toFixed(2), sets_per_s: Math.round(pAcked / pollElapsed),
        signals_cpu_ms_per_set: perPolled(signals.pid, before.signals), broker_cpu_ms_per_set: perPolled(broker.pid, before.broker), loadavg_1m: loadavg()[0],
        machine_cpu_ms_per_set: perName(pollMachine, pAcked),
      };
      log(`  machine CPU per SET (ms, by process): ${fmtNames(report.ingest_poll.machine_cpu_ms_per_set)}`);
      log(`  ${report.ingest_poll.sets_per_s} SETs/s acknowledged (${pAcked} in ${pollElapsed.toFixed(1)} s, ${report.ingest_poll.polls} polls, ${report.ingest_poll.set_errors} refused); CPU per SET: signals ${report.ingest_poll.signals_cpu_ms_per_set} ms, broker ${report.ingest_poll.broker_cpu_ms_per_set} ms`);
    }
  } finally {
    await Promise.all(started.map((i) => i.stop()));
    await tx.close();
    await upstream.close();
    await dropSchema(schema);
    await deleteStream(`BENCHREV_${suffix}`).catch((err) => log(`bench/revocation: the stream BENCHREV_${suffix} was not deleted (${err.message})`));
  }

  mkdirSync(RESULTS, { recursive: true });
  const file = join(RESULTS, `revocation-${report.at.replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify(report, null, 2));
  const lines = [];
  const f = (x) => (x === null || x === undefined || Number.isNaN(x) ? '-' : Number(x).toFixed(1));
  lines.push(`${'proxies'.padEnd(9)}${'push→denial p50'.padStart(17)}${'p99'.padStart(8)}${'at all N p50'.padStart(14)}${'p99'.padStart(8)}${'store: applied everywhere p50/p99'.padStart(36)}${'first denial p50/p99'.padStart(23)}`);
  for (const r of report.results) {
    lines.push(`${String(r.n).padEnd(9)}${f(r.push_to_denial_ms.p50).padStart(17)}${f(r.push_to_denial_ms.p99).padStart(8)}${f(r.push_to_denied_at_all_ms.p50).padStart(14)}${f(r.push_to_denied_at_all_ms.p99).padStart(8)}${`${f(r.store_applied_everywhere_ms.p50_ms)} / ${f(r.store_applied_everywhere_ms.p99_ms)}`.padStart(36)}${`${f(r.store_first_denial_ms.p50_ms)} / ${f(r.store_first_denial_ms.p99_ms)}`.padStart(23)}`);
  }
  for (const r of report.results) {
    const st = (x) => `${f(x.p50)} / ${f(x.p99)}`;
    lines.push(`N = ${r.n} stages p50 / p99 ms: SET arrival → committed ${st(r.stages.set_received_to_committed_ms)}, committed → applied at a proxy ${st(r.stages.committed_to_applied_at_proxy_ms)}, applied → first refusal ${st(r.stages.applied_to_first_denial_at_proxy_ms)}`);
  }
  const n8 = report.results.find((r) => r.n === 8);
  if (n8) lines.push(`target p99 < 100 ms at N = 8 (push → denial at a proxy): ${n8.push_to_denial_ms.p99 < 100 ? 'PASS' : 'MISSED'} (${f(n8.push_to_denial_ms.p99)} ms)`);
  if (report.ingest) lines.push(`SET ingest: ${report.ingest.sets_per_s} SETs/s (${report.ingest.accepted} accepted, ${report.ingest.failed} failed, ${report.ingest.concurrency} connections; signals CPU ${report.ingest.signals_cpu_ms_per_set} ms/SET, broker ${report.ingest.broker_cpu_ms_per_set} ms/SET; load ${report.ingest.loadavg_1m.toFixed(1)})   target >= 2000: ${report.ingest.sets_per_s >= 2000 ? 'PASS' : 'MISSED'}`);
  if (report.ingest_poll) {
    const p = report.ingest_poll;
    lines.push(`SET ingest by poll (RFC 8936, 100 per answer): ${p.sets_per_s} SETs/s (${p.acknowledged} acknowledged, ${p.set_errors} refused, ${p.polls} polls; signals CPU ${p.signals_cpu_ms_per_set} ms/SET, broker ${p.broker_cpu_ms_per_set} ms/SET; load ${p.loadavg_1m.toFixed(1)})   target >= 2000: ${p.sets_per_s >= 2000 && p.set_errors === 0 ? 'PASS' : 'MISSED'}`);
  }
  lines.push(`(${rounds} signals per N after ${warmupRounds} not counted; pollers pause ${gapMs} ms between calls (calls/s in all: ${report.results.map((r) => `N=${r.n} ${r.probe_calls_per_s}`).join(', ')}); ${cpus().length} CPUs; Node ${process.version}; load average before/after per N: ${report.results.map((r) => `${r.loadavg_1m_before.toFixed(1)}/${r.loadavg_1m_after.toFixed(1)}`).join(', ')})`);
  lines.push(`results: ${file}`);
  return { report, text: lines.join('\n'), file };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { text } = await runRevocation();
  console.log(text);
}
