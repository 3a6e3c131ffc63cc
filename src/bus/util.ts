import { MandateError } from '../core/errors.js';
import type { BusHandler, BusMessage } from '../core/ports/bus.js';
import type { Logger } from '../core/logger.js';

/**
 * Pieces shared by both bus implementations: subject grammar, the retry backoff and the
 * at-least-once delivery loop. Keeping them here is what makes the two drivers behave the
 * same under the one test suite.
 */

/** A subject or filter that cannot be used. A programming error, never a client's input. */
export class BusSubjectError extends MandateError {
  constructor(message: string) {
    super('ERR_BUS_SUBJECT', message);
  }
}

// NATS tokens may hold almost anything but whitespace, `.`, `*` and `>`; we stay stricter so
// that a subject means the same thing on every driver.
const TOKEN_RE = /^[A-Za-z0-9_$:@+=~-]+$/;

/** Throws unless `subject` is a relative, dotted subject without wildcards (`token.issued`). */
export function assertSubject(subject: string): void {
  if (typeof subject !== 'string' || subject.length === 0) throw new BusSubjectError('a bus subject must be a non-empty string');
  for (const t of subject.split('.')) {
    if (!TOKEN_RE.test(t)) throw new BusSubjectError(`invalid bus subject "${subject}": each dot-separated token must be non-empty, without wildcards or spaces`);
  }
}

/** Throws unless `filter` is a valid NATS-style filter: tokens, `*` for one token, `>` last for the rest. */
export function assertFilter(filter: string): void {
  if (typeof filter !== 'string' || filter.length === 0) throw new BusSubjectError('a bus filter must be a non-empty string');
  const tokens = filter.split('.');
  tokens.forEach((t, i) => {
    if (t === '*') return;
    if (t === '>') {
      if (i !== tokens.length - 1) throw new BusSubjectError(`invalid bus filter "${filter}": ">" may only be the last token`);
      return;
    }
    if (!TOKEN_RE.test(t)) throw new BusSubjectError(`invalid bus filter "${filter}": each token must be non-empty; "*" and ">" must be whole tokens`);
  });
}

/** NATS semantics: `*` matches exactly one token, a trailing `>` matches one or more tokens. */
export function subjectMatches(filter: string, subject: string): boolean {
  const f = filter.split('.');
  const s = subject.split('.');
  for (let i = 0; i < f.length; i++) {
    const ft = f[i];
    if (ft === '>') return s.length > i;
    if (i >= s.length) return false;
    if (ft !== '*' && ft !== s[i]) return false;
  }
  return f.length === s.length;
}

export interface RetryOptions {
  /** First wait after a failed handler or a failed attempt. Default 100 ms. */
  initialMs?: number;
  /** The wait doubles up to this. Default 5 s. */
  maxMs?: number;
}

/** Exponential backoff with ±20 % jitter, so that many subscribers do not retry in step. */
export function backoffMs(attempt: number, retry: RetryOptions = {}): number {
  const initial = retry.initialMs ?? 100;
  const max = retry.maxMs ?? 5_000;
  const base = Math.min(max, initial * 2 ** Math.min(attempt, 30));
  return Math.max(1, Math.round(base * (0.8 + Math.random() * 0.4)));
}

/** Resolves after `ms`, or at once when `signal` aborts (never rejects). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Waits for `p` at most `ms`; true when it settled in time. Never rejects. */
export async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true, () => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A closing subscription waits for the handler that is still running (`running`), at most
 * `ms`; one that outlives that is left to finish on its own, and said so.
 */
export async function awaitRunningHandler(running: Promise<unknown>, ms: number, logger: Logger, name: string): Promise<void> {
  if (!(await settlesWithin(running, ms))) logger.warn({ subscription: name }, 'bus subscription closed while its handler was still running');
}

/**
 * Hands `msg` to `handler` until it completes. At-least-once: a throwing handler gets the
 * SAME message again after a backoff, and the caller does not move on (so later messages
 * wait: per-subscriber order is kept). Returns false only when `signal` aborted first; the
 * message then counts as not handled, and a resumed subscriber will offer it again.
 */
export async function deliverAtLeastOnce(
  msg: BusMessage,
  handler: BusHandler,
  opts: {
    signal: AbortSignal; retry?: RetryOptions; logger?: Logger; name?: string;
    /** The caller made the first attempt itself and it threw this: start with its backoff. */
    failed?: unknown;
  },
): Promise<boolean> {
  const retryAfter = async (err: unknown, attempt: number): Promise<void> => {
    const wait = backoffMs(attempt, opts.retry);
    opts.logger?.warn(
      { err, subscription: opts.name, seq: msg.seq, subject: msg.subject, attempt: attempt + 1, retryInMs: wait },
      'bus handler failed; the message will be offered again',
    );
    await sleep(wait, opts.signal);
  };
  let attempt = 0;
  if ('failed' in opts) await retryAfter(opts.failed, attempt++);
  for (; ; attempt++) {
    if (opts.signal.aborted) return false;
    try {
      await handler(msg);
      return true;
    } catch (err) {
      await retryAfter(err, attempt);
    }
  }
}

/** JSON is the wire format on every driver, so a memory-bus handler sees exactly what a NATS one would. */
export function encodeData(data: unknown): string {
  const s = JSON.stringify(data);
  return s === undefined ? 'null' : s;
}
