// Runs every benchmark (for now: bench/broker) and prints its table; `npm run bench` builds first.
import { runBroker } from './broker.mjs';

const benches = [['broker', runBroker]];
let failed = false;
for (const [name, run] of benches) {
  console.error(`== bench/${name}`);
  const { text, report } = await run();
  console.log(text);
  if (report.results.some((r) => r.errors)) failed = true;
}
if (failed) process.exitCode = 1;
