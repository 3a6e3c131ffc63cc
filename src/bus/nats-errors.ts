import { AuthorizationError, InvalidArgumentError, InvalidSubjectError, PermissionViolationError } from '@nats-io/transport-node';
import { JetStreamApiError } from '@nats-io/jetstream';

/** How the NATS bus reads the client's errors: which are worth retrying, and what of them may be logged. */

/** Permanent errors are thrown at once; anything else is retried until the deadline. */
export function isRetryable(err: unknown): boolean {
  if (err instanceof InvalidArgumentError || err instanceof InvalidSubjectError) return false;
  if (err instanceof PermissionViolationError || err instanceof AuthorizationError) return false;
  // 4xx from JetStream: the request itself is wrong (message too large, bad config)…
  // except "not found", which a recreated stream cures.
  if (err instanceof JetStreamApiError && err.status >= 400 && err.status < 500 && err.status !== 404) return false;
  return true;
}

/** No stream answered: JetStream is off, or the stream is gone (see NatsStream.maybeEnsure). */
export function isNoResponders(err: unknown): boolean {
  const e = err as { name?: string; message?: string; cause?: unknown } | undefined;
  if (!e) return false;
  if (e.name === 'JetStreamNotEnabled' || /no responders/i.test(e.message ?? '')) return true;
  return e.cause !== undefined && e.cause !== err && isNoResponders(e.cause);
}

/** An error as a loggable object, never with values that might carry credentials. */
export function errInfo(err: unknown): { name: string; message: string } {
  if (err instanceof Error) return { name: err.name, message: err.message };
  return { name: 'Error', message: String(err) };
}
