/**
 * Polls `fn` until it gives a value (not undefined, false or null) and returns it; throws after
 * `timeoutMs` naming `what`. For what reaches instances within a bound, not at once (a revocation
 * over the bus, a record written in a batch): tests wait for conditions, never for fixed times.
 */
export async function eventually<T>(
  fn: () => Promise<T | undefined | false | null> | T | undefined | false | null, what: string, timeoutMs = 10_000, everyMs = 25,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false && v !== null) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
