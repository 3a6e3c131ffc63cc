/**
 * A replicated view: an in-memory copy of some store state, kept by two feeds that race —
 * snapshots read from the store (the truth: a reload, or one key read on a cache miss) and
 * deltas from the bus (one change each, in milliseconds). Every enforcement view of Mandate
 * (revocations and kill switches, restrictions, risk scores, the NHI caches, signing keys and
 * the verified-token cache's key set) keeps its state in a {@link ReplicatedMap}, so they share
 * one race rule instead of five.
 *
 * ## The rule
 *
 * 1. **Every change carries a version**, comparable between changes to the same key: the view
 *    says how (`version(value)`: a kill switch is 0 while engaged and 1 once lifted, a
 *    not-before is itself, a risk score its computation time). Between two changes to one key
 *    the higher version wins; a removal wins a tie against a value (a lift and the record it
 *    lifts).
 * 2. **A delta is applied unless it is older** than what the key holds. A removal leaves a
 *    tombstone (its version), so that an older value arriving later — a bus redelivery, a
 *    publish retried after an outage, a snapshot read before the removal — cannot bring the key
 *    back.
 * 3. **A snapshot records when it started** (`begin()`, before the store is read) and is
 *    installed with that mark. The order on this instance is what makes the mark sound: a
 *    change is committed before it is published, so a delta this instance received before a
 *    read started is in what the read returns (or something newer is). Hence:
 *    - for a key no delta touched since the snapshot started, **the snapshot is the truth**,
 *      whatever the versions say (a lost lift message, a version stamped by a skewed clock,
 *      a removal: the key is absent from a complete snapshot);
 *    - for a key a delta touched after the snapshot started, the read may predate that delta:
 *      **the higher version wins, the delta on a tie**, and the key's tombstone stands against
 *      an older snapshot value;
 *    - a key the snapshot lacks but a delta added after it started is kept (the next snapshot
 *      decides: at worst one reload period of fail-closed, when the removal's message was lost);
 *    - a snapshot older than one already installed is dropped whole.
 * 4. **Tombstones last until a complete snapshot that started after them is installed** (it
 *    reflects the removal, so the tombstone has done its work); in a read-through cache (values
 *    only from one-key reads, deltas only invalidate) they last while a read that started before
 *    them is in flight.
 *
 * Why local order and not commit times: instances' clocks differ, and a row's commit order is
 * not its timestamp order, so "the snapshot is newer than this delta" cannot be decided from
 * times; "the read started after this delta arrived here" can, exactly. Versions are needed only
 * between a delta and a snapshot that overlapped it, and between deltas (which the bus may
 * reorder or repeat).
 *
 * A partial snapshot (a read of only the recent rows, for grow-only state such as revocations)
 * says nothing about keys it lacks: it is merged as a batch of deltas ({@link ReplicatedMap.merge}).
 *
 * The property test in test/adversarial/reload-races.test.ts checks that any interleaving of
 * snapshots (with the positions they started at) and deltas converges to the newest change per
 * key, as applying every change in version order would.
 */

/** Returned by {@link ReplicatedMap.begin}: what a snapshot read started after. */
export interface SnapshotTicket {
  readonly mark: number;
}

export interface ReplicatedMapOptions<V> {
  /** The version of a value; of two changes to one key, the higher version wins. */
  version: (value: V) => number;
  /**
   * `snapshot` (default): values come from deltas and complete snapshots; tombstones last until
   * a complete snapshot that started after them is installed. `cache`: values come only from
   * one-key reads ({@link ReplicatedMap.installOne}) and deltas only remove; a tombstone lasts
   * while a read that started before it is in flight.
   */
  mode?: 'snapshot' | 'cache';
}

interface Tombstone {
  version: number;
  seq: number;
}

export class ReplicatedMap<K, V> {
  private readonly live = new Map<K, V>();
  private readonly tombs = new Map<K, Tombstone>();
  /** Local order of every delta and snapshot start on this instance. */
  private seq = 0;
  /** The seq of the last delta per key, kept while a snapshot that started before it is in flight. */
  private readonly changed = new Map<K, number>();
  /** The marks of the snapshots being read. */
  private readonly inFlight = new Set<number>();
  /** The mark of the newest complete snapshot installed. */
  private installedMark = 0;
  /** The seq of the last `removeAll`: snapshots that started before it are dropped. */
  private clearedSeq = 0;
  private readonly version: (value: V) => number;
  private readonly cache: boolean;
  /** Moves on every change of the live values (for memos keyed on the state). */
  revision = 0;

  constructor(opts: ReplicatedMapOptions<V>) {
    this.version = opts.version;
    this.cache = opts.mode === 'cache';
  }

  get size(): number {
    return this.live.size;
  }

  get(key: K): V | undefined {
    return this.live.get(key);
  }

  has(key: K): boolean {
    return this.live.has(key);
  }

  values(): IterableIterator<V> {
    return this.live.values();
  }

  keys(): IterableIterator<K> {
    return this.live.keys();
  }

  entries(): IterableIterator<[K, V]> {
    return this.live.entries();
  }

  /** Whether `key` was removed by a delta whose tombstone still stands. */
  removed(key: K): boolean {
    return this.tombs.has(key);
  }

  /** A delta: `value` for `key`, unless the key holds something newer. True when applied. */
  apply(key: K, value: V): boolean {
    const ver = this.version(value);
    if (this.live.has(key) && this.version(this.live.get(key) as V) > ver) return false;
    const tomb = this.tombs.get(key);
    if (tomb && tomb.version >= ver) return false;
    this.touch(key);
    this.tombs.delete(key);
    this.live.set(key, value);
    this.revision++;
    return true;
  }

  /**
   * A delta: `key` was removed at `version` (default: newer than any value, as an invalidation
   * that carries none). Tombstoned (rule 4). True when applied.
   */
  remove(key: K, version = Infinity): boolean {
    if (this.live.has(key) && this.version(this.live.get(key) as V) > version) return false;
    const tomb = this.tombs.get(key);
    if (tomb && tomb.version > version) return false;
    const seq = this.touch(key);
    this.tombs.set(key, { version: tomb ? Math.max(tomb.version, version) : version, seq });
    if (this.live.delete(key)) this.revision++;
    if (this.cache && this.inFlight.size === 0) this.tombs.delete(key);
    return true;
  }

  /** A delta that removes every key (an event that names none): reads started before it are not installed. */
  removeAll(): void {
    this.clearedSeq = ++this.seq;
    if (this.live.size > 0) this.revision++;
    this.live.clear();
    this.tombs.clear();
    this.changed.clear();
  }

  /** Drops a key locally (expired, evicted): not a change, nothing is tombstoned. */
  forget(key: K): void {
    if (this.live.delete(key)) this.revision++;
  }

  /** A partial snapshot (some keys, e.g. the rows created lately): each entry as a delta. */
  merge(entries: Iterable<readonly [K, V]>): void {
    for (const [k, v] of entries) this.apply(k, v);
  }

  /** Call before the store is read; install the result with the ticket, or abandon it. */
  begin(): SnapshotTicket {
    const mark = ++this.seq;
    this.inFlight.add(mark);
    return { mark };
  }

  /** The read failed: forget the ticket. */
  abandon(ticket: SnapshotTicket): void {
    this.inFlight.delete(ticket.mark);
    this.prune();
  }

  /**
   * A complete snapshot read after `begin()` gave `ticket`: every live key, as of some moment
   * after the ticket (rule 3). False when dropped (an older snapshot than the one installed).
   */
  install(ticket: SnapshotTicket, entries: Iterable<readonly [K, V]>): boolean {
    const mark = ticket.mark;
    this.inFlight.delete(mark);
    if (mark < this.installedMark || mark < this.clearedSeq) {
      this.prune();
      return false;
    }
    const next = new Map<K, V>();
    const seen = new Set<K>();
    for (const [k, v] of entries) {
      seen.add(k);
      if (!this.changedSince(k, mark)) {
        next.set(k, v);
        continue;
      }
      // A delta after the read started: the newer of the two, the delta on a tie.
      if (this.live.has(k)) {
        const cur = this.live.get(k) as V;
        next.set(k, this.version(v) > this.version(cur) ? v : cur);
      } else {
        const tomb = this.tombs.get(k);
        if (!tomb || this.version(v) > tomb.version) next.set(k, v);
      }
    }
    for (const [k, cur] of this.live) if (!seen.has(k) && this.changedSince(k, mark)) next.set(k, cur);
    for (const [k, t] of this.tombs) if (t.seq <= mark || next.has(k)) this.tombs.delete(k);
    this.live.clear();
    for (const [k, v] of next) this.live.set(k, v);
    this.installedMark = mark;
    this.revision++;
    this.prune();
    return true;
  }

  /**
   * A snapshot of one key (a read-through cache's load; `value` undefined: the store has none).
   * Kept unless a delta touched the key after the read started. True when installed.
   */
  installOne(ticket: SnapshotTicket, key: K, value: V | undefined): boolean {
    const mark = ticket.mark;
    this.inFlight.delete(mark);
    const stale = mark < this.clearedSeq || this.changedSince(key, mark);
    if (!stale) {
      this.tombs.delete(key);
      if (value === undefined) this.live.delete(key);
      else this.live.set(key, value);
      this.revision++;
    }
    this.prune();
    return !stale;
  }

  private touch(key: K): number {
    const seq = ++this.seq;
    if (this.inFlight.size > 0) this.changed.set(key, seq);
    return seq;
  }

  private changedSince(key: K, mark: number): boolean {
    return (this.changed.get(key) ?? 0) > mark || (this.tombs.get(key)?.seq ?? 0) > mark;
  }

  /** What no snapshot in flight can need any more. */
  private prune(): void {
    if (this.inFlight.size === 0) {
      this.changed.clear();
      if (this.cache) this.tombs.clear();
      return;
    }
    let oldest = Infinity;
    for (const m of this.inFlight) if (m < oldest) oldest = m;
    for (const [k, s] of this.changed) if (s <= oldest) this.changed.delete(k);
    if (this.cache) for (const [k, t] of this.tombs) if (t.seq <= oldest) this.tombs.delete(k);
  }
}
