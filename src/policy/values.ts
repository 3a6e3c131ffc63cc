/**
 * JSON call arguments → Cedar values (the `context.args` record).
 *
 * Cedar has no null, no floats and 64-bit integers only, and its JSON reader gives meaning to
 * objects whose single key is `__entity` or `__extn` (an entity reference or an extension
 * value). Arguments come from the agent, so they are converted here rather than handed over:
 *
 * - a safe integer stays a number (Cedar Long); any other number becomes its decimal string;
 * - `null` members of objects and arrays are left out (so `context.args has x` is false);
 * - arrays become Cedar sets (unordered, duplicates merged);
 * - a key `__entity`, `__extn` or `__expr` anywhere is refused: passed through, it would let an
 *   agent forge an entity reference such as `Mandate::Nhi::"admin"` inside a policy's input;
 * - depth and the number of values are capped, so that the work per call is bounded.
 *
 * A refusal throws {@link ArgsRefusedError}; the engine turns it into a deny (fail closed)
 * rather than dropping the offending part, because a dropped part could hide what a `forbid`
 * looks for.
 */
import { MandateError } from '../core/index.js';

/** The JSON shape Cedar accepts for a context value (without the escapes, which are refused). */
export type CedarValue = boolean | number | string | CedarValue[] | { [key: string]: CedarValue };

/** Nesting deeper than this is refused (the top-level args record is depth 1). */
export const MAX_ARGS_DEPTH = 16;
/** More values than this (every object, array and scalar counts one) are refused. */
export const MAX_ARGS_VALUES = 10_000;

const RESERVED_KEYS = new Set(['__entity', '__extn', '__expr']);

/** Call arguments refused before Cedar sees them (see MAX_ARGS_VALUES and RESERVED_KEYS). */
export class ArgsRefusedError extends MandateError {
  constructor(message: string) {
    super('ERR_ARGS_REFUSED', message);
  }
}

/** Converts call arguments to the record used as `context.args`; null → an empty record. */
export function toCedarArgs(args: Record<string, unknown> | null): { [key: string]: CedarValue } {
  if (args === null || args === undefined) return {};
  const budget = { values: 0 };
  const out = convert(args, 1, budget, 'args');
  if (out === undefined || typeof out !== 'object' || Array.isArray(out)) throw new ArgsRefusedError('args must be an object');
  return out as { [key: string]: CedarValue };
}

/**
 * Refuses exactly what toCedarArgs refuses, with the same error, without building the Cedar
 * value: for the engine's shortcuts, which must refuse such arguments but never use the result.
 * The check allocates nothing for arguments it accepts (no copy, no paths of each value); on a
 * refusal toCedarArgs runs to throw its error, with the path, as before.
 */
export function checkCedarArgs(args: Record<string, unknown> | null): void {
  if (args === null || args === undefined) return;
  const budget = { values: 0 };
  if (typeof args === 'object' && !Array.isArray(args) && acceptable(args, 1, budget)) return;
  toCedarArgs(args);
  // Not reached unless the two disagree; then the conversion's verdict (it accepted) stands.
}

/** convert()'s checks alone: true when convert would not throw. */
function acceptable(v: unknown, depth: number, budget: { values: number }): boolean {
  if (++budget.values > MAX_ARGS_VALUES) return false;
  if (v === null || v === undefined) return true;
  switch (typeof v) {
    case 'boolean':
    case 'string':
    case 'number':
    case 'bigint':
      return true;
    case 'object': {
      if (depth > MAX_ARGS_DEPTH) return false;
      if (Array.isArray(v)) {
        for (let i = 0; i < v.length; i++) if (!acceptable(v[i], depth + 1, budget)) return false;
        return true;
      }
      for (const k of Object.keys(v)) {
        if (RESERVED_KEYS.has(k)) return false;
        if (!acceptable((v as Record<string, unknown>)[k], depth + 1, budget)) return false;
      }
      return true;
    }
    default:
      return false;
  }
}

function convert(v: unknown, depth: number, budget: { values: number }, at: string): CedarValue | undefined {
  if (++budget.values > MAX_ARGS_VALUES) throw new ArgsRefusedError(`args have more than ${MAX_ARGS_VALUES} values`);
  if (v === null || v === undefined) return undefined;
  switch (typeof v) {
    case 'boolean':
    case 'string':
      return v;
    case 'number':
      return Number.isSafeInteger(v) ? v : String(v);
    case 'bigint':
      return String(v);
    case 'object': {
      if (depth > MAX_ARGS_DEPTH) throw new ArgsRefusedError(`args are nested deeper than ${MAX_ARGS_DEPTH} levels (at ${at})`);
      if (Array.isArray(v)) {
        const arr: CedarValue[] = [];
        for (const [i, item] of v.entries()) {
          const c = convert(item, depth + 1, budget, `${at}[${i}]`);
          if (c !== undefined) arr.push(c);
        }
        return arr;
      }
      const rec: { [key: string]: CedarValue } = {};
      for (const [k, item] of Object.entries(v as Record<string, unknown>)) {
        if (RESERVED_KEYS.has(k)) throw new ArgsRefusedError(`args key "${k}" (at ${at}) is reserved by Cedar's JSON format`);
        const c = convert(item, depth + 1, budget, `${at}.${k}`);
        // defineProperty: a key "__proto__" must become a member, not the record's prototype.
        if (c !== undefined) Object.defineProperty(rec, k, { value: c, enumerable: true, writable: true, configurable: true });
      }
      return rec;
    }
    default:
      throw new ArgsRefusedError(`args value at ${at} is a ${typeof v}, not JSON`);
  }
}
