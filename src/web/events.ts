import type { ServerResponse } from 'node:http';
import type { Bus, BusMessage, Logger, Subscription } from '../core/index.js';

/** What the console hears live: approvals, revocations, kill switches, detections, signals. */
export const CONSOLE_SUBJECTS = ['approval.*', 'revocation.*', 'kill.*', 'detection.raised', 'signal.raised', 'admin.credential.*'] as const;

/**
 * Only these fields of a bus event reach the browser, and only when they are plain values:
 * the events carry identifiers, reasons and times today, and an allow-list keeps it that way
 * if a publisher later adds something (a signal's `data`, a token) to its record.
 */
const FIELDS: Record<string, string> = {
  id: 'id', nhi: 'nhi', nhiId: 'nhi', tool: 'tool', toolId: 'tool', action: 'action', by: 'by', at: 'at',
  kind: 'kind', scope: 'scope', target: 'target', reason: 'reason', severity: 'severity', status: 'status',
  notBefore: 'not_before', createdAt: 'created_at', liftedAt: 'lifted_at', receivedAt: 'received_at', rule: 'rule', title: 'title',
};

export function consoleEvent(msg: Pick<BusMessage, 'subject' | 'data' | 'publishedAt'>): Record<string, unknown> {
  const out: Record<string, unknown> = { subject: msg.subject, published_at: msg.publishedAt };
  const data = msg.data;
  if (data && typeof data === 'object') {
    for (const [k, v] of Object.entries(data as Record<string, unknown>)) {
      const name = FIELDS[k];
      if (name && (v === null || ['string', 'number', 'boolean'].includes(typeof v))) out[name] = typeof v === 'string' ? v.slice(0, 500) : v;
    }
  }
  return out;
}

interface Client {
  res: ServerResponse;
  live: () => boolean;
  /**
   * Asks the store whether the session's credential is still good: on every heartbeat, the
   * fallback that ends the stream of a revoked credential when the bus message was missed.
   */
  recheck?: () => Promise<boolean>;
}

/**
 * Relays bus events to the consoles connected to this instance as server-sent events. One
 * bus subscription per subject for the whole instance (not one per browser tab), fanned out,
 * and only while at least one console is connected: an instance nobody watches (a signals
 * instance taking thousands of SETs a second) does not read its own revocations and signals
 * back from the bus for nobody.
 */
export class ConsoleEvents {
  private readonly clients = new Set<Client>();
  private subs: Subscription[] = [];
  private heartbeat: NodeJS.Timeout | undefined;
  /** Subscribing and unsubscribing, one after the other (see sync). */
  private syncing: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(private readonly d: {
    bus: Bus; logger: Logger; heartbeatMs?: number;
    /** An `admin.credential.*` event, heard before it is relayed: sessions of a revoked credential end (and their streams with them). */
    onCredentialChange?: (subject: string, data: unknown) => void;
  }) {}

  get connected(): number {
    return this.clients.size;
  }

  /** True while the bus subscriptions are open (some console is connected). */
  get subscribed(): boolean {
    return this.subs.length > 0;
  }

  async start(): Promise<void> {
    // A comment line now and then keeps proxies from closing an idle stream and notices ended
    // sessions, and the credentials behind the streams are read again.
    this.heartbeat = setInterval(() => {
      this.send(': keep-alive\n\n');
      this.recheck();
    }, this.d.heartbeatMs ?? 20_000);
    this.heartbeat.unref();
  }

  /**
   * Takes over the response as an event stream until the browser leaves or the session ends.
   * `: connected` is written once the bus subscriptions are open, so that every event
   * published after it reaches this console.
   */
  async attach(res: ServerResponse, live: () => boolean, headers: Record<string, string>, recheck?: () => Promise<boolean>): Promise<void> {
    res.writeHead(200, { ...headers, 'content-type': 'text/event-stream', 'cache-control': 'no-store', 'x-accel-buffering': 'no' });
    const c: Client = { res, live, ...(recheck ? { recheck } : {}) };
    this.clients.add(c);
    res.on('close', () => this.remove(c));
    try {
      await this.sync();
    } catch (err) {
      // No live events without the bus: end the stream (the browser's EventSource retries).
      this.d.logger.warn({ err }, 'console live events unavailable');
      this.remove(c);
      res.end();
      return;
    }
    if (this.clients.has(c)) res.write(': connected\n\n');
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    for (const c of this.clients) c.res.end();
    this.clients.clear();
    await this.sync().catch(() => undefined);
  }

  /** Ends now the streams whose session has ended (a credential revoked, heard on the bus). */
  prune(): void {
    for (const c of this.clients) if (!c.live()) this.end(c);
  }

  /** Ends the streams whose credential the store no longer accepts; a store that cannot answer ends them too (fail closed). */
  private recheck(): void {
    for (const c of this.clients) {
      c.recheck?.().then((ok) => {
        if (!ok) this.end(c);
      }, () => this.end(c));
    }
  }

  private end(c: Client): void {
    if (!this.clients.has(c)) return;
    c.res.end('event: session.ended\ndata: {}\n\n');
    this.remove(c);
  }

  private remove(c: Client): void {
    if (this.clients.delete(c) && this.clients.size === 0) this.sync().catch(() => undefined);
  }

  /** Opens the subscriptions when a console is connected, closes them when none is; serialized. */
  private sync(): Promise<void> {
    const run = this.syncing.catch(() => undefined).then(async () => {
      const want = this.clients.size > 0 && !this.stopped;
      if (want && this.subs.length === 0) {
        const subs: Subscription[] = [];
        try {
          for (const f of CONSOLE_SUBJECTS) subs.push(await this.d.bus.subscribe(f, (m) => this.broadcast(m), { name: `console:${f}` }));
        } catch (err) {
          await Promise.all(subs.map((s) => s.close().catch(() => undefined)));
          throw err;
        }
        this.subs = subs;
      } else if (!want && this.subs.length > 0) {
        const subs = this.subs;
        this.subs = [];
        await Promise.all(subs.map((s) => s.close().catch(() => undefined)));
      }
    });
    this.syncing = run;
    return run;
  }

  private broadcast(m: BusMessage): void {
    if (m.subject.startsWith('admin.credential.') && this.d.onCredentialChange) {
      this.d.onCredentialChange(m.subject, m.data);
      this.prune();
    }
    this.send(`event: ${m.subject}\ndata: ${JSON.stringify(consoleEvent(m))}\n\n`);
  }

  private send(text: string): void {
    for (const c of this.clients) {
      if (!c.live()) this.end(c);
      else c.res.write(text);
    }
  }
}
