import { randomBytes } from 'node:crypto';
import { OAuthError, bearerCredential, hashSecret, secretMatchesHash, type Clock } from '../core/index.js';
import type { SignalsStore } from './ports.js';

/**
 * Each outbound SSF stream's own credential: `mds.<stream id>.<secret>`, issued when the stream
 * is created (and again when an admin replaces it), shown once, kept only as sha256 of the
 * secret. It is what the stream's receiver presents (RFC 6750 bearer) to poll its stream
 * (RFC 8936) and to read and manage that stream's configuration, status, subjects and
 * verification (SSF 1.0), and nothing else: it is not an admin credential (AdminAuth refuses
 * its form), it opens no console session, and it names one stream, so another stream's id
 * answers 404 as if that stream did not exist.
 *
 * Read from the store on every request (no cache), so a replaced credential or a deleted
 * stream is refused by every instance on the next request.
 */

/** The stream id is in the token: the lookup is one primary-key read, and the id is not a secret. */
const TOKEN_RE = /^mds\.([A-Za-z0-9_-]{1,64})\.([A-Za-z0-9_-]{43})$/;

export interface StreamCaller {
  kind: 'stream';
  streamId: string;
}

export class StreamCredentials {
  constructor(
    private readonly store: Pick<SignalsStore, 'putSsfStreamCredential' | 'getSsfStreamCredential'>,
    private readonly clock: Clock,
  ) {}

  /** A new credential for the stream, replacing any earlier one; returns the token (shown once). */
  async issue(streamId: string): Promise<string> {
    const secret = randomBytes(32).toString('base64url');
    await this.store.putSsfStreamCredential({ streamId, secretHash: hashSecret(secret), createdAt: this.clock.now() });
    return `mds.${streamId}.${secret}`;
  }

  /** Whether an Authorization header carries a stream credential (whatever its validity). */
  static presented(header: string | string[] | undefined): boolean {
    return typeof header === 'string' && /^\s*Bearer\s+mds\./i.test(header);
  }

  /**
   * The stream a `Bearer mds.…` header opens. Any failure (malformed, unknown stream, wrong
   * secret, replaced credential) is the same 401.
   */
  async authenticate(header: string | string[] | undefined): Promise<StreamCaller> {
    const fail = () => new OAuthError('invalid_token', 'a valid stream credential or admin credential is required', 401);
    const t = TOKEN_RE.exec(bearerCredential(header) ?? '');
    if (!t) throw fail();
    // An unknown stream costs the same comparison, so timing does not tell which streams exist.
    const rec = await this.store.getSsfStreamCredential(t[1]!);
    const ok = secretMatchesHash(t[2]!, rec?.secretHash);
    if (!rec || !ok) throw fail();
    return { kind: 'stream', streamId: rec.streamId };
  }
}
