/**
 * The composition root: the only file that imports every capability and wires them together
 * (as ory/hydra's driver/registry.go does). Everything else talks through ports and index.ts.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { z } from 'zod';
import {
  MandateError, OutboundGuard, Router, createLogger, newId, resolveSecret, sendJson, systemClock,
  type Clock, type HostResolver, type Logger, type MandateConfig, type AuditSink,
} from './core/index.js';
import { openStore, storeOptionsFromConfig, type Store } from './store/index.js';
import { createBus } from './bus/index.js';
import type { Bus } from './core/index.js';
import { KeyManager, loadKek, mountKeyRoutes, type Kek } from './keys/index.js';
import { AuditLog, mountAuditRoutes } from './audit/index.js';
import { Inventory, mountInventoryRoutes } from './inventory/index.js';
import { AdminApi, AdminAuth, AdminCredentials, mountAdminCredentialRoutes } from './admin/index.js';
import { Broker, mountBrokerRoutes, mountTokenProfileRoutes } from './broker/index.js';
import { Approvals, Enforcement, RestrictionState, mountEnforcementRoutes } from './enforcement/index.js';
import {
  AccessTokenVerifier, DpopNonces, DpopVerifier, JwksFetcher, ReplayBatcher, assertJwsShape, nodeVerifiable, publicKeyObject, verifyCompactAsync,
} from './jose/index.js';
import { PolicyEngine } from './policy/index.js';
import { ToolProxy } from './proxy/index.js';
import { SignalTimeline, Signals, SsfReceiver, SsfTransmitter, mountSignalsRoutes } from './signals/index.js';
import { Metrics, Readiness, mountOps, startHttpServer, type RunningServer } from './server/index.js';
import { Governance, RiskView, mountGovernanceRoutes, programmeGauges } from './governance/index.js';
import { mountConsole, type Console } from './web/index.js';

export const VERSION = '0.1.0';

export type Role = 'all' | 'broker' | 'proxy' | 'signals';

export interface AppOptions {
  config: Readonly<MandateConfig>;
  role?: Role;
  logger?: Logger;
  clock?: Clock;
  env?: NodeJS.ProcessEnv;
  /** Where a development KEK and other local state live; `.mandate` by default. */
  dataDir?: string;
  /** Receives the one-time bootstrap admin credential; by default it is printed to stderr. */
  onBootstrapCredential?: (token: string) => void;
  /** Listen on config.server (default true); tests may pass a port override through config. */
  listen?: boolean;
  /** Host name resolution for outbound requests (tests inject one); the system resolver by default. */
  resolveHost?: HostResolver;
}

export interface App {
  readonly config: Readonly<MandateConfig>;
  readonly role: Role;
  /** This process among the instances on one store and bus (time-to-revoke bookkeeping names it). */
  readonly instanceId: string;
  readonly url: string;
  readonly logger: Logger;
  /** Start-up warnings a person must see (the CLI prints them to stderr). */
  readonly warnings: readonly string[];
  readonly store: Store;
  readonly bus: Bus;
  readonly keys: KeyManager;
  readonly audit: AuditLog;
  readonly inventory: Inventory;
  /** The token broker (the authorization server), on roles all and broker. */
  readonly broker: Broker | undefined;
  /** Revocations, kill switches and approvals: on every role (the proxy enforces them too). */
  readonly enforcement: Enforcement;
  /** The tool proxy, on roles all and proxy (only they hold the tools' real credentials). */
  readonly proxy: ToolProxy | undefined;
  readonly policy: PolicyEngine;
  /** Internal signals, step-down / step-up restrictions (consulted by broker and proxy), SSF transmitter and receiver. */
  readonly signals: SignalsWiring;
  /** Detections, findings, risk scores, playbooks, programme metrics. */
  readonly governance: Governance;
  /** Risk scores in memory for the proxy's policy context (`context.risk_score`), on roles all and proxy. */
  readonly riskView: RiskView | undefined;
  /** The OAuth issuer URL (public_url, or where this instance listens). */
  readonly issuer: string;
  readonly adminAuth: AdminAuth;
  readonly metrics: Metrics;
  /** The operator's console at /ui/, unless `ui.enabled` is false. */
  readonly console: Console | undefined;
  readonly router: Router;
  readonly server: RunningServer | undefined;
  /** Graceful shutdown: stop accepting, drain, flush the audit log, close bus and store. */
  close(): Promise<void>;
}

/** Applies pending store migrations (what `mandate migrate` runs). */
export async function runMigrations(config: Readonly<MandateConfig>, env: NodeJS.ProcessEnv = process.env): Promise<string[]> {
  const store = await openStore(storeOptionsFromConfig(config.store, (ref) => resolveSecret(ref, env)));
  try {
    return await store.migrate();
  } finally {
    await store.close();
  }
}

export async function startApp(opts: AppOptions): Promise<App> {
  const { config } = opts;
  const env = opts.env ?? process.env;
  const role = opts.role ?? 'all';
  const clock = opts.clock ?? systemClock;
  const logger = opts.logger ?? createLogger({ level: config.log.level });
  const dataDir = opts.dataDir ?? '.mandate';
  const resolve = (ref: string) => resolveSecret(ref, env);
  // The one guard for every URL Mandate fetches (src/core/outbound.ts). Development (NODE_ENV is
  // not production) relaxes only the scheme, to plain http to a loopback address; which
  // addresses are reachable is outbound.allow_private_cidrs alone.
  const outbound = new OutboundGuard({
    allowPrivateCidrs: config.outbound.allow_private_cidrs,
    allowLoopbackHttp: env.NODE_ENV !== 'production',
    ...(opts.resolveHost ? { resolve: opts.resolveHost } : {}),
  });
  const cleanup: Array<() => Promise<void>> = [];
  const closeAll = async () => {
    for (const fn of cleanup.reverse()) {
      try {
        await fn();
      } catch (err) {
        logger.error({ err }, 'error during shutdown');
      }
    }
  };

  try {
    const store = await openStore(storeOptionsFromConfig(config.store, resolve));
    cleanup.push(() => store.close());
    const applied = await store.migrate();
    if (applied.length) logger.info({ migrations: applied }, 'store migrated');

    const bus = createBus(config.bus, { resolveSecret: resolve, logger });
    cleanup.push(() => bus.close());
    await bus.start();

    const metrics = new Metrics();
    const audit = new AuditLog({ store, clock, logger, appendTimeoutMs: config.proxy.audit_timeout * 1000 });
    cleanup.push(() => audit.close());
    const auditSink: AuditSink = audit;

    // A proxy-only instance with proxy.jwks_uri verifies tokens against the broker's JWKS over
    // HTTP: it reads no key-encryption key, loads no signing key and signs nothing.
    const remoteJwksUri = role === 'proxy' ? config.proxy.jwks_uri : undefined;
    const kek = remoteJwksUri === undefined
      ? loadKek(config.keys.kek, { resolveSecret: resolve, devKekPath: join(dataDir, 'dev-kek'), nodeEnv: env.NODE_ENV })
      : undefined;
    const warnings: string[] = [];
    if (config.proxy.jwks_uri !== undefined && role !== 'proxy') {
      logger.warn({ role }, 'proxy.jwks_uri is only used by a proxy-only instance (serve --role proxy); this one uses the keys in the store');
    }
    if (kek?.insecureDev) {
      warnings.push(
        `INSECURE: signing keys are encrypted with a DEVELOPMENT key-encryption key generated in ${join(dataDir, 'dev-kek')}. ` +
          'Set keys.kek to env:NAME or file:PATH (32 random bytes, base64) before production; NODE_ENV=production refuses this.',
      );
      logger.warn(
        { kek_path: join(dataDir, 'dev-kek') },
        '!!! INSECURE: signing keys are encrypted with a DEVELOPMENT key-encryption key generated on this machine. ' +
          'Set keys.kek to env:NAME or file:PATH (32 random bytes, base64) before production; NODE_ENV=production refuses this.',
      );
    }
    const maxTokenTtlS = Math.max(...config.tokens.profiles.map((p) => p.ttl), config.tokens.max_ttl);
    const keys = new KeyManager({
      store, kek: kek?.kek, algorithm: config.keys.algorithm, rotationIntervalS: config.keys.rotation_interval,
      prePublishS: config.keys.pre_publish, maxTokenTtlS, clock, logger, audit: auditSink,
    });
    if (kek) {
      await keys.init();
      keys.start(60_000);
      cleanup.push(async () => keys.stop());
    }

    const inventory = new Inventory({ store, audit: auditSink, bus, clock, logger });
    const sync = await inventory.syncFromConfig(config);
    if (sync.changes) logger.info({ changes: sync.changes }, 'inventory synced from config');

    const adminAuth = new AdminAuth(store, clock);
    if (config.admin.bootstrap) {
      const boot = await adminAuth.bootstrap();
      if (boot) {
        auditSink.record({ type: 'admin.bootstrap_credential_created', actor: 'system', data: { reason: boot.reason } });
        (opts.onBootstrapCredential ?? printBootstrap)(boot.token);
      }
    }

    const router = new Router();
    // Starting until every route is mounted and every view loaded (the end of startApp): until
    // then the listener answers 503 to all but /healthz and /readyz (which says not ready).
    const readiness = new Readiness();
    mountOps(router, {
      readiness,
      pingStore: () => store.ping(),
      bus,
      stalenessBoundS: config.bus.staleness_bound,
      metrics,
      logger,
      beforeScrape: () => {
        metrics.auditQueued.set(audit.stats().queued);
        metrics.auditWritten.set(audit.stats().written);
      },
    });
    if (kek) router.get('/oauth/jwks', (ctx) => sendJson(ctx.res, 200, keys.jwks(), { 'cache-control': 'public, max-age=300', 'content-type': 'application/jwk-set+json' }));

    const admin = new AdminApi(router, adminAuth, config.server.max_body_bytes, { version: VERSION });
    // An operator's change is answered once it and its audit record are durable (see docs/security.md, Faults and durability).
    admin.answerWhenDurable(() => audit.flush());
    mountInventoryRoutes(admin, inventory);
    mountTokenProfileRoutes(admin, { config });
    mountAuditRoutes(admin, { audit, store });
    mountAdminCredentialRoutes(admin, new AdminCredentials({ store, auth: adminAuth, audit: auditSink, bus, clock, logger }));
    const webConsole = await wireConsole({ config, router, admin, adminAuth, bus, audit: auditSink, clock, logger });

    let server: RunningServer | undefined;
    if (opts.listen ?? true) {
      const tls = config.server.tls
        ? { cert: config.server.tls.cert, key: resolve(config.server.tls.key), clientCa: config.server.tls.client_ca, clientAuth: config.server.tls.client_auth }
        : undefined;
      server = await startHttpServer({
        router, logger, host: config.server.host, port: config.server.port, tls, readiness,
        onResponse: (route, method, status, seconds) => metrics.observeHttp(route, method, status, seconds),
      });
      const s = server;
      cleanup.push(() => s.close(config.server.shutdown_grace * 1000));
    }
    // After the listener's, so it runs before it at shutdown: open event streams end first.
    if (webConsole) cleanup.push(() => webConsole.stop());
    const url = server?.url ?? config.server.public_url ?? `http://${config.server.host}:${config.server.port}`;
    // The issuer is the public URL; without one, the URL this instance listens on.
    const issuer = (config.server.public_url ?? url).replace(/\/$/, '');

    // Time to revoke: this instance records when it applied each signal and when it first refused a call because of it.
    const instanceId = newId(`inst-${role}`);
    const timeline = new SignalTimeline({
      store, instanceId, role, clock, logger, onObserved: (stage, seconds) => metrics.signalPropagation.observe({ stage }, seconds),
    });
    // Its writes wait a little (off the revocation's path): at shutdown, after the broker and the proxy stopped, before the store closes.
    cleanup.push(() => timeline.flush());
    // Restrictions before the broker and the proxy, which consult them on every request.
    const restrictions = new RestrictionState({ store, bus, clock, logger });
    await restrictions.start();
    cleanup.push(() => restrictions.stop());
    const enforcement = new Enforcement({
      store, bus, audit: auditSink, clock, logger, clockSkewS: config.proxy.clock_skew, maxTokenTtlS: config.tokens.max_ttl,
      onSignalApplied: (signalId, at) => timeline.markApplied(signalId, at),
    });
    await enforcement.start();
    cleanup.push(() => enforcement.stop());
    const approvals = new Approvals({ store, audit: auditSink, bus, clock, issuer: () => issuer });
    mountEnforcementRoutes(admin, { enforcement, approvals, store, clock });

    // JOSE: the JWKS fetcher (federated issuers, private_key_jwt clients, proxy.jwks_uri), one-time
    // jtis (DPoP proofs, client assertions) group-committed to the store, DPoP and access tokens.
    const fetcher = new JwksFetcher({ outbound, clock, logger });
    const replay = new ReplayBatcher({ store, clock });
    cleanup.push(() => replay.drain().catch(() => {}));
    const dpop = new DpopVerifier({
      replay, clock, maxAgeS: config.tokens.dpop_proof_max_age,
      // Derived from the KEK, so every instance accepts every other's nonces; without it, this process's own.
      nonces: new DpopNonces(kek ? kek.kek.derive('dpop-nonce') : randomBytes(32), clock),
      // RFC 9449 §8: tokens.dpop_nonce: required makes every proof carry a server nonce.
      requireNonce: config.tokens.dpop_nonce === 'required',
    });
    // The one verified-token memory of this instance (proxy.token_cache_size): the keys in the
    // store, or (a proxy-only instance without the KEK) the broker's JWKS fetched from proxy.jwks_uri.
    const accessTokens = new AccessTokenVerifier({
      issuer: () => issuer, clock, skewS: config.proxy.clock_skew, cacheSize: config.proxy.token_cache_size,
      ...(remoteJwksUri === undefined
        ? { jwks: () => keys.jwks() as never }
        : { remoteJwks: (refresh: boolean | 'now') => fetcher.jwks(remoteJwksUri, refresh) }),
      retiredKey: (kid) => enforcement.revocations.keyRetired(kid),
    });
    // A key retired at once (here, or at another instance: the bus, a reload): neither verified
    // nor signed with from now on; with a remote JWKS, it is fetched again.
    enforcement.revocations.onKeyRetired((kid) => {
      void accessTokens.retireKey(kid);
      keys.keyRetired(kid);
    });

    let broker: Broker | undefined;
    if (role === 'all' || role === 'broker') {
      const b = new Broker({
        config, issuer: () => issuer, keys, store, bus, audit: auditSink, clock, logger, env, restrictions,
        enforcement, approvals, accessTokens, dpop, fetcher, replay,
      });
      await b.start();
      cleanup.push(() => b.stop());
      b.mount(router, config.server.max_body_bytes);
      broker = b;
    }
    mountBrokerRoutes(admin, { store, clock, flush: () => broker?.flush() ?? Promise.resolve() });
    mountKeyRoutes(admin, { keys, revokeKey: async (kid, reason, actor) => void await enforcement.revokeAll('key', kid, reason, actor) });

    const policy = await PolicyEngine.load({ files: config.policy.files, basePermit: config.policy.base_permit });
    let proxy: ToolProxy | undefined;
    let riskView: RiskView | undefined;
    if (role === 'all' || role === 'proxy') {
      // Risk scores governance computes (here or in another instance), from the store and risk.changed.
      const rv = new RiskView({ store, bus, clock, logger });
      await rv.start();
      cleanup.push(() => rv.stop());
      riskView = rv;
      const p = new ToolProxy({
        config, issuer: () => issuer, accessTokens, dpop, revocations: enforcement.revocations, policy,
        store, approvals, audit, bus, clock, logger, env, stalenessBoundS: config.bus.staleness_bound, restrictions, risk: rv,
        onRevoked: (reason, facts) => {
          const signalId = enforcement.revocations.signalOf(reason, facts);
          if (signalId) timeline.markDenied(signalId);
        },
      });
      await p.start();
      cleanup.push(() => p.stop());
      p.mount(router);
      proxy = p;
    }

    // A proxy-only instance without the KEK never transmits (the transmitter runs on roles all and
    // signals), so it has nothing to seal or open; anything that tried would fail loudly.
    const noKek = (): never => {
      throw new MandateError('ERR_KEK_REQUIRED', 'this instance holds no key-encryption key (proxy.jwks_uri): it cannot seal or open secrets');
    };
    const secrets: Pick<Kek, 'seal' | 'open'> = kek ? kek.kek : { seal: noKek, open: noKek };
    const signals = await wireSignals({ config, role, restrictions, router, admin, store, bus, keys, kek: secrets, enforcement, adminAuth, audit: auditSink, clock, logger, metrics, env, issuer: () => issuer, outbound });
    cleanup.push(() => signals.stop());
    const governance = await wireGovernance({ config, role, admin, store, bus, audit: auditSink, clock, logger, metrics, enforcement, signals: signals.signals });
    cleanup.push(() => governance.stop());
    readiness.markReady();
    logger.info({ url, role, store: config.store.driver, bus: config.bus.driver }, 'mandate started');

    let closed: Promise<void> | undefined;
    return {
      config, role, instanceId, url, issuer, logger, warnings, store, bus, keys, audit, inventory, broker, enforcement, proxy, policy, signals, governance, riskView, adminAuth, metrics, console: webConsole, router, server,
      close: () => (closed ??= (readiness.markDraining(), closeAll()).then(() => logger.info('mandate stopped'))),
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

export interface SignalsWiring {
  signals: Signals;
  restrictions: RestrictionState;
  transmitter: SsfTransmitter;
  receiver: SsfReceiver;
  stop(): Promise<void>;
}

/**
 * Signals. Every role keeps the restriction state (the broker and proxy consult it);
 * roles `signals` and `all` mount the SSF endpoints, run the push loop and the receivers' pollers.
 */
async function wireSignals(d: {
  config: Readonly<MandateConfig>; role: Role; restrictions: RestrictionState; router: Router; admin: AdminApi; store: Store; bus: Bus; keys: KeyManager; kek: Pick<Kek, 'seal' | 'open'>; enforcement: Enforcement;
  adminAuth: AdminAuth; audit: AuditSink; clock: Clock; logger: Logger; metrics: Metrics; env: NodeJS.ProcessEnv; issuer: () => string; outbound: OutboundGuard;
}): Promise<SignalsWiring> {
  const { config, store, bus, clock, logger, audit, issuer, outbound } = d;
  const { restrictions } = d;
  const signals = new Signals({
    store, enforcement: d.enforcement, bus, audit, clock, logger,
    defaultFallbackTier: config.signals.fallback_tier ?? config.tokens.profiles[0]!.name,
    onApplied: (seconds, action) => d.metrics.signalApply.observe({ action }, seconds),
  });
  const transmitter = new SsfTransmitter({
    store, signer: d.keys, secrets: d.kek, adminAuth: d.adminAuth, bus, audit, clock, logger, issuer, config: config.signals.transmitter,
    maxBodyBytes: config.server.max_body_bytes, outbound,
  });
  const receiver = new SsfReceiver({
    receivers: config.signals.receivers, store, signals, keySource: new JwksFetcher({ outbound, clock, logger }),
    checkShape: assertJwsShape,
    checkSignature: (jwt, alg, key) => {
      const ko = nodeVerifiable(alg) ? publicKeyObject(key) : undefined;
      return ko ? verifyCompactAsync(jwt, alg, ko) : undefined;
    },
    resolveSecret: (ref) => resolveSecret(ref, d.env), issuer, audit, clock, logger, outbound,
  });
  const active = d.role === 'all' || d.role === 'signals';
  if (active) {
    if (config.signals.transmitter.enabled) {
      transmitter.mount(d.router);
      await transmitter.start();
    }
    receiver.mount(d.router);
    await receiver.start();
  }
  mountSignalsRoutes(d.admin, { signals, store, transmitter, receiver, audit, clock });
  return {
    signals, restrictions, transmitter, receiver,
    stop: async () => {
      await receiver.stop();
      await transmitter.stop();
    },
  };
}

/**
 * Governance. The admin routes are on every role; the bus consumers, the sweep and
 * the playbooks run on roles all and signals (one place that hears every event and acts).
 */
async function wireGovernance(d: {
  config: Readonly<MandateConfig>; role: Role; admin: AdminApi; store: Store; bus: Bus; audit: AuditSink; clock: Clock; logger: Logger;
  metrics: Metrics; enforcement: Enforcement; signals: Signals;
}): Promise<Governance> {
  const governance = new Governance({
    config: d.config, store: d.store, bus: d.bus, audit: d.audit, clock: d.clock, logger: d.logger, signals: d.signals,
    liftKill: (id, actor) => d.enforcement.lift(id, actor), active: d.role === 'all' || d.role === 'signals', onProgramme: (m) => d.metrics.setProgramme(programmeGauges(m), m.findings_open),
    onEvent: (filter) => d.metrics.countGovernanceEvent(filter),
  });
  await governance.start();
  mountGovernanceRoutes(d.admin, governance);
  return governance;
}

/**
 * The console on every role, since every role serves the admin API it calls; its
 * sessions stand in for the bearer credential there. Stopped before the listener closes, so
 * open event streams do not hold the shutdown for the whole grace period.
 */
async function wireConsole(d: {
  config: Readonly<MandateConfig>; router: Router; admin: AdminApi; adminAuth: AdminAuth; bus: Bus; audit: AuditSink; clock: Clock; logger: Logger;
}): Promise<Console | undefined> {
  if (!d.config.ui.enabled) return undefined;
  const publicUrl = d.config.server.public_url;
  const c = await mountConsole({
    router: d.router, adminAuth: d.adminAuth, bus: d.bus, audit: d.audit, clock: d.clock, logger: d.logger,
    idleTimeoutS: d.config.ui.idle_timeout, maxSessionS: d.config.ui.max_session,
    secureCookie: d.config.server.tls !== undefined || (publicUrl?.startsWith('https:') ?? false),
    ...(publicUrl ? { publicOrigin: new URL(publicUrl).origin } : {}),
    maxBodyBytes: d.config.server.max_body_bytes,
  });
  d.admin.useSessions(c.sessions);
  return c;
}

function printBootstrap(token: string): void {
  process.stderr.write(
    `\n  One-time admin credential (shown once, stored only as a hash):\n\n    export MANDATE_TOKEN=${token}\n\n`,
  );
}
