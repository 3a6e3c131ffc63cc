// Runs every benchmark (bench/broker, bench/revocation) and prints its table; `npm run bench` builds first.
// bench/revocation needs PostgreSQL and NATS on 127.0.0.1 (see bench/README.md).
import { runBroker } from './broker.mjs';
import { runRevocation } from './revocation.mjs';

const benches = [['broker', runBroker], ['revocation', runRevocation]];
let failed = false;
for (const [name, run] of benches) {
  console.error(`== bench/${name}`);
  const { text, report } = await run();
  console.log(text);
  if (report.results.some((r) => r.errors) || report.ingest?.failed) failed = true;
}
if (failed) process.exitCode = 1;
