import type { IncomingMessage } from 'node:http';
import { z } from 'zod';
import { NotFoundError, OAuthError, ValidationError } from '../core/index.js';
import type { AdminAuth, AdminPrincipal } from '../admin/index.js';
import type { SignalsStore, SsfStreamRecord } from './ports.js';
import { StreamCredentials, type StreamCaller } from './stream-credentials.js';

/**
 * What every call to the transmitter's SSF API starts with: who is calling (an admin-role
 * credential, or one stream's own credential), the stream it names, and its parsed body.
 */

/** Who called: an admin-role credential (every stream) or one stream's own credential (that stream). */
export type Caller = { kind: 'admin'; principal: AdminPrincipal } | StreamCaller;

/** `admin:<credential id>` or `stream:<stream id>`, for audit records. */
export const actorOf = (c: Caller): string => (c.kind === 'admin' ? `admin:${c.principal.id}` : `stream:${c.streamId}`);

/** The `stream_id` member of a request body. */
export const withId = z.object({ stream_id: z.string().min(1).max(200) });

/** The body as `schema` reads it, or a 400 naming every problem. */
export function parse<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const details = r.error.issues.map((i) => `${i.path.length ? i.path.join('.') : 'body'}: ${i.message}`);
  throw new ValidationError(`invalid request: ${details.join('; ')}`, details);
}

export class StreamAccess {
  constructor(
    private readonly store: SignalsStore,
    private readonly adminAuth: Pick<AdminAuth, 'authenticate'>,
    /** Each stream's own credential (see stream-credentials.ts). */
    private readonly credentials: StreamCredentials,
  ) {}

  /**
   * A stream credential (`Bearer mds.…`) opens its own stream; anything else must be an admin
   * credential of role `admin`. A stream credential that fails is a 401 of its own, never
   * retried as an admin credential.
   */
  async caller(req: IncomingMessage): Promise<Caller> {
    const header = req.headers.authorization;
    if (StreamCredentials.presented(header)) return this.credentials.authenticate(header);
    const principal = await this.adminAuth.authenticate(header);
    if (principal.role !== 'admin') {
      throw new OAuthError('insufficient_scope', 'SSF streams are managed with an admin credential of role admin, or by a receiver with its stream\'s own credential', 403);
    }
    return { kind: 'admin', principal };
  }

  /** The caller's stream; 404 when it does not exist or is not the caller's (nothing is learned). */
  async ownStream(c: Caller, id: string | undefined | null): Promise<SsfStreamRecord> {
    if (!id) throw new ValidationError('stream_id is required');
    const s = c.kind === 'stream' && c.streamId !== id ? undefined : await this.store.getSsfStream(id);
    if (!s || s.direction !== 'out') throw new NotFoundError(`no stream "${id.slice(0, 100)}"`);
    return s;
  }

  /** A new stream's credential, shown once. */
  issueCredential(streamId: string): Promise<string> {
    return this.credentials.issue(streamId);
  }

  /**
   * Replaces a stream's credential (the previous one stops working on every instance at once)
   * and returns the new one, shown once: for an admin whose receiver lost it, or a stream
   * created before streams had their own.
   */
  async rotateCredential(streamId: string): Promise<string> {
    const s = await this.store.getSsfStream(streamId);
    if (!s || s.direction !== 'out') throw new NotFoundError(`no stream "${streamId.slice(0, 100)}"`);
    return this.credentials.issue(s.id);
  }
}
