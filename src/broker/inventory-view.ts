import { ReplicatedMap, type Bus, type Clock, type Logger, type Subscription } from '../core/index.js';
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
  /** The load, settled. */
  view: Promise<NhiView>;
  loadedAt: number;
  /** The earliest end of the loaded credentials (Infinity when none ends). */
  firstEnd: number;
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
 * disconnected instance) delays a change by at most that.
 *
 * The entries are a {@link ReplicatedMap} in cache mode (core/replicated-view.ts): each load is
 * a snapshot of one NHI started before its read, and an announcement is a removal, so a load
 * that started before a change is never kept after it (its caller, whose request came first,
 * gets what it read). Concurrent callers share the load in flight; a change announced meanwhile
 * makes the next caller load again rather than join it.
 *
 * A credential's end (`expiresAt`, a static secret's exception end) is checked against the
 * clock on every `get`, not when the entry was loaded: an entry loaded a second before a
 * credential ends does not let it authenticate for the rest of `maxAgeMs`.
 */
export class InventoryView {
  private readonly entries = new ReplicatedMap<string, Entry>({ version: () => 0, mode: 'cache' });
  /** Loads in flight, shared by concurrent callers until a change is announced for the NHI. */
  private readonly loading = new Map<string, Promise<NhiView>>();
  private readonly maxAgeMs: number;
  private readonly maxEntries: number;
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
    this.entries.removeAll();
    this.loading.clear();
  }

  /** Forgets one NHI, or everything (a tool change, an unknown event). */
  invalidate(nhiId?: string): void {
    if (nhiId === undefined) {
      this.entries.removeAll();
      this.loading.clear();
    } else {
      this.entries.remove(nhiId);
      this.loading.delete(nhiId);
    }
  }

  get(nhiId: string): Promise<NhiView> {
    const now = this.deps.clock.now();
    const e = this.entries.get(nhiId);
    if (e && now - e.loadedAt < this.maxAgeMs && now >= e.loadedAt) return this.current(e.view, e.firstEnd, now);
    const pending = this.loading.get(nhiId);
    if (pending) return this.current(pending, undefined, now);
    const ticket = this.entries.begin();
    const view = this.load(nhiId);
    this.loading.set(nhiId, view);
    view.then(
      (v) => {
        if (this.loading.get(nhiId) === view) this.loading.delete(nhiId);
        // Not kept when a change was announced while it loaded (it may predate the change).
        if (this.entries.installOne(ticket, nhiId, { view, loadedAt: now, firstEnd: firstCredentialEnd(v.credentials) }) && this.entries.size > this.maxEntries) {
          this.entries.forget(this.entries.keys().next().value!);
        }
      },
      () => {
        if (this.loading.get(nhiId) === view) this.loading.delete(nhiId);
        this.entries.abandon(ticket);
      },
    );
    return this.current(view, undefined, now);
  }

  /**
   * A view as of `now`: as loaded while no credential has ended (the common case, no copy),
   * else without the credentials whose end has passed.
   */
  private current(view: Promise<NhiView>, firstEnd: number | undefined, now: number): Promise<NhiView> {
    if (firstEnd !== undefined && now < firstEnd) return view;
    return view.then((v) => {
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
