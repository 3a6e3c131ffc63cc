/**
 * An in-process lock per name: callers of `run(name, fn)` with the same name run one at a
 * time, in arrival order. Not re-entrant: calling `run` for a name from inside `fn` for the
 * same name waits forever.
 */
export class KeyedMutex {
  readonly #tails = new Map<string, Promise<void>>();

  async run<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#tails.get(name) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    // Each caller waits for the one before it; the map keeps only the newest tail.
    const tail = prev.then(() => mine);
    this.#tails.set(name, tail);
    await prev;
    try {
      return await fn();
    } finally {
      release();
      // Forget the name once nobody is queued behind us, so the map does not grow.
      if (this.#tails.get(name) === tail) this.#tails.delete(name);
    }
  }
}
