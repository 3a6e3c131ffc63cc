// Runs the benchmarks (bench/broker, bench/proxy, bench/governance, bench/revocation) and prints their
// tables; `npm run bench` builds first. `node bench/run.mjs proxy` (or broker, governance, revocation) runs only the
// ones named. bench/revocation needs PostgreSQL and NATS on 127.0.0.1 (see bench/README.md).
import { runBroker } from './broker.mjs';
import { runProxy } from './proxy.mjs';
import { runGovernance } from './governance.mjs';
import { runRevocation } from './revocation.mjs';

const all = [['broker', runBroker], ['proxy', runProxy], ['governance', runGovernance], ['revocation', runRevocation]];
const wanted = process.argv.slice(2);
const unknown = wanted.filter((w) => !all.some(([name]) => name === w));
if (unknown.length > 0) {
  console.error(`unknown benchmark(s): ${unknown.join(', ')}; known: ${all.map(([n]) => n).join(', ')}`);
  process.exit(2);
}
const benches = wanted.length > 0 ? all.filter(([name]) => wanted.includes(name)) : all;
let failed = false;
for (const [name, run] of benches) {
  console.error(`== bench/${name}`);
  const { text, report } = await run();
  console.log(text);
  const rows = [...(report.results?.closed ?? []), ...(report.results?.open ?? []), ...(Array.isArray(report.results) ? report.results : [])];
  if (rows.some((r) => r.errors) || report.ingest?.failed) failed = true;
}
if (failed) process.exitCode = 1;
