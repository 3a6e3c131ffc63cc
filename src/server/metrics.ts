import { Registry, Counter, Histogram, Gauge, collectDefaultMetrics } from 'prom-client';

/**
 * Counts kept in a plain map on a hot path (no label validation and hashing per event) and
 * added to a prom-client counter when it is collected (read or scraped).
 */
class DeferredCounts<L extends Record<string, string>> {
  private readonly counts = new Map<string, { labels: L; n: number }>();

  /** One more for `key`; `labels` is called the first time a key is seen. */
  add(key: string, labels: () => L): void {
    const c = this.counts.get(key);
    if (c) c.n++;
    else this.counts.set(key, { labels: labels(), n: 1 });
  }

  /** Adds what was counted since the last collection to `counter`. */
  collectInto(counter: { inc(labels: L, value: number): void }): void {
    for (const c of this.counts.values()) {
      if (c.n === 0) continue;
      counter.inc(c.labels, c.n);
      c.n = 0;
    }
  }
}

/**
 * One Prometheus registry per Mandate instance (not prom-client's global one), so that
 * several instances in one process (the tests) do not share counters.
 */
export class Metrics {
  readonly registry = new Registry();
  /**
   * Requests by (route, method, status), counted in a plain map on every answer (no label
   * validation and hashing per request) and moved into httpRequests when it is read or scraped.
   */
  private readonly httpCounts = new DeferredCounts<{ route: string; method: string; status: string }>();
  readonly httpRequests = new Counter({
    name: 'mandate_http_requests_total',
    help: 'HTTP requests by route prefix, method and status.',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [this.registry],
    collect: (): void => {
      this.httpCounts.collectInto(this.httpRequests);
    },
  });
  readonly httpDuration = new Histogram({
    name: 'mandate_http_request_duration_seconds',
    help: 'Time to answer an HTTP request.',
    labelNames: ['route'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
    registers: [this.registry],
  });
  readonly auditQueued = new Gauge({ name: 'mandate_audit_queue_length', help: 'Audit events waiting to be written.', registers: [this.registry] });
  readonly auditWritten = new Gauge({ name: 'mandate_audit_written_total', help: 'Audit events written since start.', registers: [this.registry] });
  readonly busConnected = new Gauge({ name: 'mandate_bus_connected', help: '1 when the bus is reachable.', registers: [this.registry] });
  readonly busStaleness = new Gauge({ name: 'mandate_bus_staleness_seconds', help: 'Seconds since the last confirmed contact with the bus.', registers: [this.registry] });
  /** Time to revoke per instance: from a signal's arrival to this instance applying it / first refusing a call because of it. */
  readonly signalPropagation = new Histogram({
    name: 'mandate_signal_propagation_seconds',
    help: 'Seconds from a signal arriving to this instance applying it (stage="applied") and to its first call refused because of it (stage="first_denial").',
    labelNames: ['stage'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15],
    registers: [this.registry],
  });
  /** Time to revoke: from a signal's arrival to this instance enforcing it. */
  readonly signalApply = new Histogram({
    name: 'mandate_signal_apply_seconds',
    help: 'Seconds from a signal arriving (SET received, operator call) to this instance applying it.',
    labelNames: ['action'] as const,
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15],
    registers: [this.registry],
  });
  readonly storeUp = new Gauge({ name: 'mandate_store_up', help: '1 when the last store check succeeded.', registers: [this.registry] });
  /** The NHI programme (governance): set from each programme computation (sweep, admin API). */
  readonly programme = new Gauge({
    name: 'mandate_programme',
    help: 'NHI programme metrics by name: federated_ratio, static_secret_ratio, private_key_ratio, median_secret_age_days, admin_nhis, long_lived_credentials, revoke_mean_seconds, revoke_p99_seconds, exceptions_open, exceptions_overdue, unused_grants.',
    labelNames: ['metric'] as const,
    registers: [this.registry],
  });
  /**
   * Bus events the governance detection consumers completed, by consumer (subscription filter):
   * what the pipeline absorbed. Counted with {@link Metrics.countGovernanceEvent} in a plain map
   * (one per proxied request: no label hashing on that path) and moved into the counter when
   * it is scraped.
   */
  private readonly governanceCounts = new DeferredCounts<{ consumer: string }>();
  readonly governanceEvents = new Counter({
    name: 'mandate_governance_events_total',
    help: 'Bus events the governance detection consumers have completed, by consumer (token.issued, token.denied, tool.called, tool.call_denied, inventory.>, shadow_agent).',
    labelNames: ['consumer'] as const,
    registers: [this.registry],
    collect: (): void => {
      this.governanceCounts.collectInto(this.governanceEvents);
    },
  });
  readonly findingsOpen = new Gauge({ name: 'mandate_findings_open', help: 'Open governance findings by severity.', labelNames: ['severity'] as const, registers: [this.registry] });

  /** Sets the programme gauges (a null value removes its series) and the open findings by severity. */
  setProgramme(values: Readonly<Record<string, number | null>>, findingsOpen: Readonly<Record<string, number>>): void {
    for (const [metric, v] of Object.entries(values)) {
      if (v === null) this.programme.remove({ metric });
      else this.programme.set({ metric }, v);
    }
    for (const [severity, n] of Object.entries(findingsOpen)) this.findingsOpen.set({ severity }, n);
  }

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: 'mandate_' });
  }

  /** One event a governance detection consumer completed (see governanceEvents). */
  countGovernanceEvent(consumer: string): void {
    this.governanceCounts.add(consumer, () => ({ consumer }));
  }

  observeHttp(route: string, method: string, status: number, seconds: number): void {
    this.httpCounts.add(`${route}\u0000${method}\u0000${status}`, () => ({ route, method, status: String(status) }));
    this.httpDuration.observe({ route }, seconds);
  }
}
