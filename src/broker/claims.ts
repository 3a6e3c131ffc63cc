/**
 * Claim conditions for federation: a trust entry's `claims` and a federated credential's
 * `subject` are exact values or anchored globs.
 *
 * In a pattern `*` matches any run of characters (including none); every other character is
 * literal, so `.`, `+`, `?`, `[`, `(`, `\` and the rest mean themselves. The match is anchored
 * at both ends: `repo:acme/*` matches `repo:acme/deploy:ref:refs/heads/main` but not
 * `xrepo:acme/deploy`. No regular expression is built, so there is nothing to escape and no
 * pattern can backtrack exponentially: the classic two-pointer wildcard match is O(n·m).
 */

/** True when `value` matches `pattern` (exact, or anchored glob with `*`). */
export function matchPattern(pattern: string, value: string): boolean {
  if (!pattern.includes('*')) return pattern === value;
  let p = 0;
  let v = 0;
  let star = -1; // position in pattern just after the last `*` seen
  let mark = 0; // position in value where that `*` started matching
  while (v < value.length) {
    if (p < pattern.length && pattern[p] === '*') {
      star = ++p;
      mark = v;
    } else if (p < pattern.length && pattern[p] === value[v]) {
      p++;
      v++;
    } else if (star >= 0) {
      // Let the last `*` absorb one more character and retry from there.
      p = star;
      v = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.length && pattern[p] === '*') p++;
  return p === pattern.length;
}

/**
 * The claim's value as a string for matching: strings as they are, finite numbers and booleans
 * stringified; anything else (missing, null, arrays, objects) never matches.
 */
export function claimString(payload: Readonly<Record<string, unknown>>, claim: string): string | undefined {
  if (!Object.prototype.hasOwnProperty.call(payload, claim)) return undefined;
  const v = payload[claim];
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (typeof v === 'boolean') return String(v);
  return undefined;
}

/** The first condition that does not hold (its claim name), or undefined when all hold. */
export function firstClaimMismatch(conditions: Readonly<Record<string, string>>, payload: Readonly<Record<string, unknown>>): string | undefined {
  for (const [claim, pattern] of Object.entries(conditions)) {
    const value = claimString(payload, claim);
    if (value === undefined || !matchPattern(pattern, value)) return claim;
  }
  return undefined;
}

/** Every condition's claim is present as a scalar and matches its pattern. */
export function claimsMatch(conditions: Readonly<Record<string, string>>, payload: Readonly<Record<string, unknown>>): boolean {
  return firstClaimMismatch(conditions, payload) === undefined;
}
