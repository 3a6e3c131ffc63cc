import type { Bus, Clock, Logger, Subscription } from '../core/index.js';
import { credentialActiveAt, firstCredentialEnd, type CredentialRecord, type GrantRecord, type InventoryStore, type NhiRecord } from '../inventory/index.js';

/** What the token endpoint knows about one NHI. */
export interface NhiView {
  /** Undefined for an unknown id (remembered too, so that a flood of unknown ids costs no queries). */
  nhi: NhiRecord | undefined;
  /** Only the credentials that have not ended at the time of the `get` (see InventoryView.get). */
  credentials: readonly CredentialRecord[];
  grants: readonly GrantRecord[];
}

interface Entry {
  view: Promise<NhiView>;
  loadedAt: number;
  /** The earliest end of the loaded credentials, once loaded (Infinity when none ends). */
  firstEnd?: number;
}

export interface InventoryViewOptions {
  store: Pick<InventoryStore, 'getNhi' | 'listCredentials' | 'listGrants'>;
  bus: Bus;
  clock: Clock;
  logger: Logger;
  /** An entry older than this is read again from the store (default 5000 ms, as the revocation state). */
  maxAgeMs?: number;
  /** NHIs remembered (default 10 000); the oldest entries go first. */
  maxEntries?: number;
}

/**
 * The NHIs, credentials and grants the token endpoint decides with, in memory, per NHI. The
 * store stays the truth: an entry is read from it on first use, forgotten as soon as the
 * inventory announces a change on the bus (`inventory.*`, published after the store write),
 * and read again at the latest `maxAgeMs` after it was loaded, so a missed bus message (a
 * disconnected instance) delays a change by at most that. A load that started before a change
 * is never cached after it (the generation check), so a stale read cannot outlive the event.
 *
 * A credential's end (`expiresAt`, a static secret's exception end) is checked against the
 * clock on every `get`, not when the entry was loaded: an entry loaded a second before a
 * credential ends does not let it authenticate for the rest of `maxAgeMs`.
 */
export class InventoryView {
  private readonly entries = new Map<string, Entry>();
  private readonly maxAgeMs: number;
  private readonly maxEntries: number;
  private generation = 0;
  private sub: Subscription | undefined;

  constructor(private readonly deps: InventoryViewOptions) {
    this.maxAgeMs = deps.maxAgeMs ?? 5000;
    this.maxEntries = deps.maxEntries ?? 10_000;
  }

  async start(): Promise<void> {
    this.sub = await this.deps.bus.subscribe('inventory.>', (m) => {
      const nhi = (m.data as { nhi?: unknown } | null)?.nhi;
      this.invalidate(typeof nhi === 'string' ? nhi : undefined);
    }, { name: 'broker-inventory-view' });
  }

  async stop(): Promise<void> {
    await this.sub?.close();
    this.sub = undefined;
    this.entries.clear();
  }

  /** Forgets one NHI, or everything (a tool change, an unknown event). */
  invalidate(nhiId?: string): void {
    this.generation++;
    if (nhiId === undefined) this.entries.clear();
    else this.entries.delete(nhiId);
  }

  get(nhiId: string): Promise<NhiView> {
    const now = this.deps.clock.now();
    const e = this.entries.get(nhiId);
    if (e && now - e.loadedAt < this.maxAgeMs && now >= e.loadedAt) return this.current(e, now);
    const gen = this.generation;
    const view = this.load(nhiId);
    const entry: Entry = { view, loadedAt: now };
    this.entries.delete(nhiId);
    this.entries.set(nhiId, entry);
    if (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    view.then(
      (v) => {
        entry.firstEnd = firstCredentialEnd(v.credentials);
        // A change was announced while this load ran: it may predate the change, do not keep it.
        if (this.generation !== gen && this.entries.get(nhiId) === entry) this.entries.delete(nhiId);
      },
      () => {
        if (this.entries.get(nhiId) === entry) this.entries.delete(nhiId);
      },
    );
    return this.current(entry, now);
  }

  /**
   * The entry's view as of `now`: as loaded while no credential has ended (the common case,
   * no copy), else without the credentials whose end has passed.
   */
  private current(entry: Entry, now: number): Promise<NhiView> {
    if (entry.firstEnd !== undefined && now < entry.firstEnd) return entry.view;
    return entry.view.then((v) => {
      if (now < firstCredentialEnd(v.credentials)) return v;
      return { ...v, credentials: v.credentials.filter((c) => credentialActiveAt(c, now)) };
    });
  }

  private async load(nhiId: string): Promise<NhiView> {
    const [nhi, credentials, grants] = await Promise.all([
      this.deps.store.getNhi(nhiId), this.deps.store.listCredentials(nhiId), this.deps.store.listGrants({ nhiId }),
    ]);
    return { nhi, credentials, grants };
  }
}
