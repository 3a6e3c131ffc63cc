import type { MandateConfig } from '../core/config/index.js';
import type { Logger } from '../core/logger.js';
import type { Bus } from '../core/ports/bus.js';
import { MemoryBus } from './memory.js';
import { NatsBus } from './nats.js';

export { MemoryBus } from './memory.js';
export { NatsBus } from './nats.js';

export interface CreateBusOptions {
  /** Resolves `env:NAME` / `file:PATH` references (core/secrets `resolveSecret`). */
  resolveSecret(ref: string): string;
  logger?: Logger;
}

/**
 * The subjects of a deployment whose config names no `bus.subject_prefix`: its stream's name in
 * lower case (`MANDATE` → `mandate`, as before). Subjects that follow the stream let two
 * deployments share a NATS server, each with its own stream; a fixed prefix made the second
 * stream overlap the first, which NATS refuses.
 */
export function defaultSubjectPrefix(stream: string): string {
  return stream.toLowerCase();
}

/**
 * The bus the configuration asks for, not yet started. The NATS credential reference is
 * resolved here, once; its value goes to the client and nowhere else (never to a log).
 */
export function createBus(cfg: MandateConfig['bus'], opts: CreateBusOptions): Bus {
  const logger = opts.logger?.child({ component: 'bus', driver: cfg.driver });
  if (cfg.driver === 'memory') return new MemoryBus(logger ? { logger } : {});
  const credentials = cfg.nats_credentials !== undefined ? opts.resolveSecret(cfg.nats_credentials) : undefined;
  // Contact is confirmed at least three times per staleness bound, so that a healthy
  // instance never looks stale; at most every second, at least every 5 s.
  const heartbeatMs = Math.min(5_000, Math.max(1_000, Math.floor((cfg.staleness_bound * 1000) / 3)));
  return new NatsBus({
    servers: [...cfg.nats_servers],
    stream: cfg.stream,
    subjectPrefix: cfg.subject_prefix ?? defaultSubjectPrefix(cfg.stream),
    heartbeatMs,
    ...(credentials !== undefined ? { credentials } : {}),
    ...(logger ? { logger } : {}),
  });
}
