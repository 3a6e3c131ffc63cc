import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { OAuthError, secretEquals, type Clock } from '../core/index.js';
import type { AdminPrincipal, AdminRole, AdminSessionResolver } from '../admin/index.js';

export const SESSION_COOKIE = 'mandate_session';
export const CSRF_HEADER = 'x-csrf-token';

export interface ConsoleSession {
  credentialId: string;
  name: string;
  role: AdminRole;
  /** The synchronizer token every change must carry in `X-CSRF-Token`. */
  csrf: string;
  createdAt: number;
  lastSeenAt: number;
  /** When the credential it was opened with ends (epoch ms), or null: the session ends with it. */
  credentialExpiresAt: number | null;
  /** Set when signed out, expired or evicted, so that open event streams notice. */
  ended: boolean;
}

export interface ConsoleSessionsOptions {
  clock: Clock;
  idleTimeoutS: number;
  maxSessionS: number;
  /** Cookies get `Secure` (TLS here, or an https public URL in front). */
  secureCookie: boolean;
  /** The origin of `server.public_url`, accepted as well as the request's own. */
  publicOrigin?: string;
  /** Memory bound: past it, expired sessions go first, then the least recently used. */
  maxSessions?: number;
}

/**
 * Console sessions, in memory per instance: a session lives on the instance that created it,
 * so several instances behind a load balancer need sticky sessions (or the operator signs in
 * again). What is kept is the credential id and role, never the credential; sessions are
 * looked up by sha256 of their id, so the map holds nothing a cookie could be rebuilt from.
 */
export class ConsoleSessions implements AdminSessionResolver {
  private readonly sessions = new Map<string, ConsoleSession>();
  private readonly maxSessions: number;

  constructor(private readonly o: ConsoleSessionsOptions) {
    this.maxSessions = o.maxSessions ?? 10_000;
  }

  get size(): number {
    return this.sessions.size;
  }

  /** Opens a session for a principal AdminAuth has just checked; returns the cookie value and the CSRF token. */
  create(p: AdminPrincipal): { id: string; session: ConsoleSession } {
    this.sweep();
    if (this.sessions.size >= this.maxSessions) {
      let oldest: [string, ConsoleSession] | undefined;
      for (const e of this.sessions) if (!oldest || e[1].lastSeenAt < oldest[1].lastSeenAt) oldest = e;
      if (oldest) this.remove(oldest[0]);
    }
    const id = randomBytes(32).toString('base64url');
    const now = this.o.clock.now();
    const session: ConsoleSession = {
      credentialId: p.id, name: p.name, role: p.role, csrf: randomBytes(32).toString('base64url'), createdAt: now, lastSeenAt: now,
      credentialExpiresAt: p.expiresAt ?? null, ended: false,
    };
    this.sessions.set(digest(id), session);
    return { id, session };
  }

  /**
   * The live session the request's cookie names. `touch` counts the request as activity (an
   * open event stream does not, so a console left open still times out).
   */
  lookup(req: IncomingMessage, touch = true): ConsoleSession | undefined {
    const id = sessionCookie(req.headers.cookie);
    if (!id) return undefined;
    const key = digest(id);
    const s = this.sessions.get(key);
    if (!s) return undefined;
    const now = this.o.clock.now();
    if (!this.alive(s, now)) {
      this.remove(key);
      return undefined;
    }
    if (touch) s.lastSeenAt = now;
    return s;
  }

  /** Whether a session found earlier (an event stream's) is still signed in. */
  isLive(s: ConsoleSession): boolean {
    return !s.ended && this.alive(s, this.o.clock.now());
  }

  /**
   * A change to the credential sessions were opened with, heard on the bus: revoked ends them
   * (the API reads the credential again on every request anyway; this ends open event streams
   * without waiting for one), a new end is kept so that they end with it. Returns how many
   * sessions it touched.
   */
  credentialChanged(credentialId: string, change: { revoked: true } | { revoked: false; expiresAt: number | null }): number {
    let n = 0;
    for (const [k, s] of this.sessions) {
      if (s.credentialId !== credentialId) continue;
      n++;
      if (change.revoked) this.remove(k);
      else s.credentialExpiresAt = change.expiresAt;
    }
    return n;
  }

  /** Signs the request's session out; true when there was one. */
  end(req: IncomingMessage): boolean {
    const id = sessionCookie(req.headers.cookie);
    return id ? this.remove(digest(id)) : false;
  }

  credentialOf(req: IncomingMessage, change: boolean): string | undefined {
    const s = this.lookup(req);
    if (!s) return undefined;
    if (change) this.checkChange(req, s);
    return s.credentialId;
  }

  /**
   * CSRF defence for a change made with the cookie: the session's token in `X-CSRF-Token`
   * (compared in constant time; a cross-site page cannot read it, and cannot set the header
   * without a CORS preflight Mandate never grants), and the request must come from Mandate's
   * own origin (`Origin`, and `Sec-Fetch-Site` when the browser sends it). SameSite=Strict on
   * the cookie is the third, independent layer.
   */
  checkChange(req: IncomingMessage, s: ConsoleSession): void {
    const token = req.headers[CSRF_HEADER];
    if (typeof token !== 'string' || !secretEquals(token, s.csrf)) {
      throw new OAuthError('access_denied', 'a change made with a console session needs its X-CSRF-Token', 403);
    }
    const site = req.headers['sec-fetch-site'];
    if (site !== undefined && site !== 'same-origin') throw new OAuthError('access_denied', 'cross-site request refused', 403);
    const origin = req.headers.origin;
    if (typeof origin !== 'string' || !this.ownOrigins(req).includes(origin)) {
      throw new OAuthError('access_denied', 'a change made with a console session must come from this origin', 403);
    }
  }

  /** `Set-Cookie` for a new session, and for clearing it. */
  cookie(id: string): string {
    return `${SESSION_COOKIE}=${id}; Path=/; HttpOnly; SameSite=Strict${this.o.secureCookie ? '; Secure' : ''}`;
  }
  clearCookie(): string {
    return `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0${this.o.secureCookie ? '; Secure' : ''}`;
  }

  private ownOrigins(req: IncomingMessage): string[] {
    const tls = (req.socket as TLSSocket).encrypted === true;
    const out = req.headers.host ? [`${tls ? 'https' : 'http'}://${req.headers.host}`] : [];
    if (this.o.publicOrigin) out.push(this.o.publicOrigin);
    return out;
  }

  private alive(s: ConsoleSession, now: number): boolean {
    return now - s.lastSeenAt < this.o.idleTimeoutS * 1000 && now - s.createdAt < this.o.maxSessionS * 1000
      && (s.credentialExpiresAt === null || now < s.credentialExpiresAt);
  }

  private sweep(): void {
    const now = this.o.clock.now();
    for (const [k, s] of this.sessions) if (!this.alive(s, now)) this.remove(k);
  }

  private remove(key: string): boolean {
    const s = this.sessions.get(key);
    if (!s) return false;
    s.ended = true;
    return this.sessions.delete(key);
  }
}

function digest(id: string): string {
  return createHash('sha256').update(id).digest('base64url');
}

/**
 * The session cookie's value. Two cookies of that name (one planted for a parent domain, say)
 * are refused rather than guessed between.
 */
export function sessionCookie(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const found = header.split(';').map((p) => p.trim()).filter((p) => p.startsWith(`${SESSION_COOKIE}=`));
  if (found.length !== 1) return undefined;
  const v = found[0]!.slice(SESSION_COOKIE.length + 1);
  return /^[A-Za-z0-9_-]{43}$/.test(v) ? v : undefined;
}
