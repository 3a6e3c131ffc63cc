import {
  connect, credsAuthenticator, nkeyAuthenticator, tokenAuthenticator, usernamePasswordAuthenticator, AuthorizationError,
  type Authenticator, type NatsConnection,
} from '@nats-io/transport-node';
import { UnavailableError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { BusHealth } from '../core/ports/bus.js';
import { errInfo } from './nats-errors.js';
import { settlesWithin, sleep } from './util.js';

/** After a reconnect, how long a publish attempt still waits for its ack before asking again. */
const RECONNECT_GRACE_MS = 100;

export interface NatsLinkOptions {
  servers: string[];
  name?: string;
  credentials?: string;
  reconnectWaitMs: number;
  connectTimeoutMs: number;
  heartbeatMs: number;
  closeTimeoutMs: number;
  logger: Logger;
  /** The connection came back: the server may have lost what lived on it (the ephemeral consumers). */
  onReconnect: () => void;
}

/**
 * The NATS connection of one bus: connecting (retried until the connect timeout), reconnects
 * (forever, once connected), and how fresh the bus is: every confirmed contact with the server
 * moves `lastContactAt`, and a heartbeat probe keeps it moving while nothing else flows.
 */
export class NatsLink {
  private conn: NatsConnection | undefined;
  private up = false;
  private shut = false;
  private lastContactAt = 0;
  private heartbeat: NodeJS.Timeout | undefined;
  /** Called on every reconnect: wakes publish attempts that were stuck across it. */
  private readonly reconnectListeners = new Set<() => void>();

  constructor(private readonly o: NatsLinkOptions) {}

  /** The connection, once `open` reached a server. */
  get nc(): NatsConnection | undefined {
    return this.conn;
  }

  /** Connected now, as far as the client knows. */
  get connected(): boolean {
    return this.up;
  }

  /** Given up for good (`markClosed`). */
  get closed(): boolean {
    return this.shut;
  }

  /** Reaches a server, retrying until the connect timeout; a refused credential fails at once. */
  async open(): Promise<NatsConnection> {
    const deadline = Date.now() + this.o.connectTimeoutMs;
    let lastErr: unknown;
    for (let attempt = 0; ; attempt++) {
      try {
        this.conn = await connect({
          servers: this.o.servers,
          name: this.o.name ?? 'mandate',
          // Once connected, never give up: the bus must come back by itself after an outage.
          maxReconnectAttempts: -1,
          reconnectTimeWait: this.o.reconnectWaitMs,
          reconnectJitter: Math.min(100, this.o.reconnectWaitMs),
          // Client pings find a dead peer that never closed the socket (a partition).
          pingInterval: Math.max(1_000, this.o.heartbeatMs),
          maxPingOut: 2,
          timeout: Math.max(500, Math.min(5_000, deadline - Date.now())),
          // No Error object (with its stack) made up front for every request, in case it fails:
          // a failed request still rejects with its error, without the caller's async stack.
          noAsyncTraces: true,
          ...(this.o.credentials !== undefined ? { authenticator: authenticatorFor(this.o.credentials) } : {}),
        });
        break;
      } catch (err) {
        lastErr = err;
        if (err instanceof AuthorizationError) throw new UnavailableError('NATS refused the bus credentials', { cause: err });
        if (attempt === 0) this.o.logger.warn({ servers: this.o.servers, err: errInfo(err) }, 'NATS is not reachable yet; retrying');
        if (Date.now() + this.o.reconnectWaitMs >= deadline) {
          throw new UnavailableError(`NATS not reachable at ${this.o.servers.join(', ')}`, { cause: lastErr });
        }
        await sleep(this.o.reconnectWaitMs);
      }
      if (this.shut) throw new UnavailableError('the bus is closed');
    }
    const nc = this.conn;
    if (this.shut) {
      await nc.close().catch(() => undefined);
      throw new UnavailableError('the bus is closed');
    }
    this.up = true;
    this.touch();
    this.watchStatus(nc);
    return nc;
  }

  /** Starts probing the connection, so that `lastContactAt` stays fresh while nothing flows. */
  startHeartbeat(): void {
    this.heartbeat = setInterval(() => void this.probe(), this.o.heartbeatMs);
    this.heartbeat.unref();
  }

  /** Drops a connection that `open` made but the bus could not use (no JetStream). */
  async abandon(): Promise<void> {
    await this.conn?.close().catch(() => undefined);
    this.conn = undefined;
    this.up = false;
  }

  /** Confirmed contact with the server: an ack, a reply, a heartbeat, a message. */
  touch(): void {
    this.lastContactAt = Date.now();
  }

  health(): BusHealth {
    return { connected: this.up && !this.shut, lastContactAt: this.lastContactAt };
  }

  /** Nothing more is started; `drain` then ends the connection. */
  markClosed(): void {
    this.shut = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
  }

  /** Flushes what is pending and closes the connection, within the close timeout. */
  async drain(): Promise<void> {
    const nc = this.conn;
    this.up = false;
    if (!nc || nc.isClosed()) return;
    // Drain flushes what is pending; on a dead connection it cannot finish, so bound it.
    const drained = await settlesWithin(nc.drain(), this.o.closeTimeoutMs);
    if (!drained || !nc.isClosed()) await nc.close().catch(() => undefined);
  }

  /**
   * `p`, or undefined when a reconnect happens first and `p` is still pending a short grace
   * later. A listener per call, removed after, so nothing piles up on a long-lived promise.
   */
  async unlessReconnected<T>(p: Promise<T>): Promise<T | undefined> {
    let wake!: () => void;
    const stale = new Promise<undefined>((resolve) => {
      wake = () => void setTimeout(() => resolve(undefined), RECONNECT_GRACE_MS).unref();
    });
    this.reconnectListeners.add(wake);
    try {
      return await Promise.race([p, stale]);
    } finally {
      this.reconnectListeners.delete(wake);
    }
  }

  private async probe(): Promise<void> {
    const nc = this.conn;
    if (!nc || this.shut || !this.up) return;
    try {
      const rtt = nc.rtt();
      if (await settlesWithin(rtt, this.o.heartbeatMs)) {
        await rtt;
        this.touch();
      }
    } catch {
      // A failed probe is not contact; the status watcher reports the disconnect itself.
    }
  }

  private watchStatus(nc: NatsConnection): void {
    void (async () => {
      for await (const s of nc.status()) {
        switch (s.type) {
          case 'disconnect':
          case 'staleConnection':
            if (this.up) this.o.logger.warn({ server: 'server' in s ? s.server : undefined, event: s.type }, 'bus disconnected from NATS');
            this.up = false;
            break;
          case 'reconnect':
            this.up = true;
            this.touch();
            this.o.logger.info({ server: s.server }, 'bus reconnected to NATS');
            for (const wake of this.reconnectListeners) wake();
            this.o.onReconnect();
            break;
          case 'close':
            this.up = false;
            break;
          case 'error':
            this.o.logger.warn({ err: errInfo(s.error) }, 'NATS reported an error');
            break;
          default:
            break;
        }
      }
    })().catch((err: unknown) => this.o.logger.warn({ err: errInfo(err) }, 'NATS status watcher stopped'));
  }
}

/** Builds the NATS authenticator from the resolved credential; the value is never logged. */
export function authenticatorFor(credentials: string): Authenticator {
  const enc = new TextEncoder();
  const v = credentials.trim();
  if (v.includes('-----BEGIN NATS USER JWT-----')) return credsAuthenticator(enc.encode(v));
  if (/^SU[A-Z2-7]{56}$/.test(v)) return nkeyAuthenticator(enc.encode(v));
  const colon = v.indexOf(':');
  if (colon > 0) return usernamePasswordAuthenticator(v.slice(0, colon), v.slice(colon + 1));
  return tokenAuthenticator(v);
}
