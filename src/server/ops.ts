import { Router, sendJson, type Bus, type Logger } from '../core/index.js';
import type { Readiness } from './http-server.js';
import type { Metrics } from './metrics.js';

export interface OpsDeps {
  /** Resolves when the store answers; throws otherwise. */
  pingStore(): Promise<void>;
  bus: Bus;
  /** Seconds without bus contact after which this instance reports itself not ready. */
  stalenessBoundS: number;
  metrics: Metrics;
  /** Refreshes gauges that are read, not counted (queue lengths). */
  beforeScrape?: () => void | Promise<void>;
  logger: Logger;
  /** The instance's life (starting, ready, draining); not ready unless ready. Absent: ready. */
  readiness?: Readiness;
}

/** `/healthz` (the process answers), `/readyz` (started, not draining, store and bus reachable), `/metrics` (Prometheus text). */
export function mountOps(router: Router, deps: OpsDeps): void {
  router.get('/healthz', (ctx) => sendJson(ctx.res, 200, { status: 'ok' }));

  router.get('/readyz', async (ctx) => {
    const checks: Record<string, { ok: boolean; detail?: string }> = {};
    const life = deps.readiness?.state ?? 'ready';
    if (life !== 'ready') {
      // Starting: routes or views not all there yet. Draining: shutting down. Neither takes traffic.
      sendJson(ctx.res, 503, { status: 'not_ready', checks: { lifecycle: { ok: false, detail: life } } });
      return;
    }
    checks.lifecycle = { ok: true };
    try {
      await withTimeout(deps.pingStore(), 2000);
      checks.store = { ok: true };
      deps.metrics.storeUp.set(1);
    } catch (err) {
      checks.store = { ok: false, detail: err instanceof Error ? err.message : 'unreachable' };
      deps.metrics.storeUp.set(0);
    }
    const h = deps.bus.health();
    const staleS = (Date.now() - h.lastContactAt) / 1000;
    checks.bus = h.connected || staleS <= deps.stalenessBoundS
      ? { ok: true }
      : { ok: false, detail: `no contact with the bus for ${staleS.toFixed(1)}s (bound ${deps.stalenessBoundS}s)` };
    const ok = Object.values(checks).every((c) => c.ok);
    sendJson(ctx.res, ok ? 200 : 503, { status: ok ? 'ready' : 'not_ready', checks });
  });

  router.get('/metrics', async (ctx) => {
    const h = deps.bus.health();
    deps.metrics.busConnected.set(h.connected ? 1 : 0);
    deps.metrics.busStaleness.set(Math.max(0, (Date.now() - h.lastContactAt) / 1000));
    await deps.beforeScrape?.();
    const body = await deps.metrics.registry.metrics();
    ctx.res.writeHead(200, { 'content-type': deps.metrics.registry.contentType, 'cache-control': 'no-store' });
    ctx.res.end(body);
  });
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    p.then((v) => (clearTimeout(t), resolve(v)), (e: unknown) => (clearTimeout(t), reject(e)));
  });
}
