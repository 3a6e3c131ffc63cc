/**
 * A map that holds at most `max` entries: setting one more drops the oldest (insertion order,
 * which a Map keeps). With `lru`, a `get` that finds an entry makes it the newest, so the least
 * recently used goes first. The one bounded cache of the code base: key caches, decision caches,
 * "seen" sets for at-least-once deduplication (a `BoundedMap<string, true>`).
 */
export class BoundedMap<K, V> {
  private readonly map = new Map<K, V>();

  constructor(
    private readonly max: number,
    private readonly opts: { lru?: boolean } = {},
  ) {}

  get(k: K): V | undefined {
    const v = this.map.get(k);
    if (v !== undefined && this.opts.lru) {
      this.map.delete(k);
      this.map.set(k, v);
    }
    return v;
  }

  has(k: K): boolean {
    return this.map.has(k);
  }

  set(k: K, v: V): void {
    this.map.delete(k);
    this.map.set(k, v);
    if (this.map.size > this.max) this.map.delete(this.map.keys().next().value!);
  }

  /** Adds `k` when absent; true when it was absent (a "first time seen" check). */
  add(k: K, v: V): boolean {
    if (this.map.has(k)) return false;
    this.set(k, v);
    return true;
  }

  delete(k: K): boolean {
    return this.map.delete(k);
  }

  clear(): void {
    this.map.clear();
  }

  get size(): number {
    return this.map.size;
  }
}
