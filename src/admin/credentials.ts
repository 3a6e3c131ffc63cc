import {
  ConflictError, NotFoundError, ValidationError,
  type AuditSink, type Bus, type Clock, type Logger,
} from '../core/index.js';
import { ADMIN_CREDENTIALS_LOCK, adminCredentialStatus, type AdminAuth, type AdminCredentialStatus } from './auth.js';
import type { AdminCredentialRecord, AdminRole, AdminStore } from './ports.js';

/** Bus subjects of admin-credential changes (`admin.credential.revoked`, `admin.credential.expiry_set`). */
export const ADMIN_CREDENTIAL_SUBJECT = 'admin.credential';

/** What may be shown of an admin credential: never its secret or the hash of it. */
export interface AdminCredentialView {
  id: string;
  name: string;
  role: AdminRole;
  status: AdminCredentialStatus;
  created_at: number;
  expires_at: number | null;
  revoked_at: number | null;
  last_used_at: number | null;
  /** Kept for callers of the first version of this API: true unless active. */
  disabled: boolean;
}

export function adminCredentialJson(c: AdminCredentialRecord, now: number): AdminCredentialView {
  const status = adminCredentialStatus(c, now);
  return {
    id: c.id, name: c.name, role: c.role, status, created_at: c.createdAt, expires_at: c.expiresAt, revoked_at: c.revokedAt,
    last_used_at: c.lastUsedAt, disabled: status !== 'active',
  };
}

export interface AdminCredentialsDeps {
  store: AdminStore;
  auth: AdminAuth;
  audit: AuditSink;
  bus: Bus;
  clock: Clock;
  logger: Logger;
}

/**
 * Admin, approver and viewer credentials as the operator manages them: listed, created, given
 * an expiry, revoked. Every instance reads the credential from the store on every request
 * (AdminAuth), so a change is in force everywhere as soon as it is written; the bus message
 * that follows only ends console sessions and their open event streams sooner.
 *
 * The last active `admin` credential is not revoked or given an end unless the caller says
 * `force`: without one, nobody can manage Mandate through the API until a restart prints a new
 * bootstrap credential (AdminAuth.bootstrap), and an operator should choose that knowingly
 * (answering a compromise of the only admin credential), not by a slip of the id.
 */
export class AdminCredentials {
  constructor(private readonly d: AdminCredentialsDeps) {}

  async list(): Promise<AdminCredentialView[]> {
    const now = this.d.clock.now();
    return (await this.d.store.listAdminCredentials()).map((c) => adminCredentialJson(c, now));
  }

  async get(id: string): Promise<AdminCredentialView> {
    return adminCredentialJson(await this.record(id), this.d.clock.now());
  }

  /** Returns the credential with its token, the only time the token is shown. */
  async create(input: { name: string; role: AdminRole; expiresAt: number | null }, actor: string): Promise<AdminCredentialView & { token: string }> {
    const now = this.d.clock.now();
    if (input.expiresAt !== null && input.expiresAt <= now) throw new ValidationError('expires is not in the future');
    const created = await this.d.auth.create(input.name, input.role, input.expiresAt);
    this.d.audit.record({
      type: 'admin.credential_created', actor, subject: created.id,
      data: { name: input.name, role: input.role, expires_at: input.expiresAt },
    });
    return { ...adminCredentialJson(created.record, now), token: created.token };
  }

  /**
   * Gives an active credential an end (or moves it). An ended credential (revoked or expired)
   * stays ended: it is never brought back by a later date; create a new one instead.
   */
  async setExpiry(id: string, expiresAt: number, opts: { force: boolean }, actor: string): Promise<AdminCredentialView> {
    const rec = await this.d.store.withLock(ADMIN_CREDENTIALS_LOCK, async () => {
      const now = this.d.clock.now();
      const cur = await this.record(id);
      const status = adminCredentialStatus(cur, now);
      if (status !== 'active') throw new ConflictError(`admin credential ${id} is ${status}: an ended credential stays ended; create a new one`);
      if (expiresAt <= now) throw new ValidationError('expires is not in the future: revoke the credential to end it now');
      await this.guardLastAdmin(cur, now, opts.force, 'give an end to');
      if (!(await this.d.store.setAdminCredentialExpiry(id, expiresAt))) throw new ConflictError(`admin credential ${id} was revoked meanwhile`);
      return { ...cur, expiresAt };
    });
    this.d.audit.record({
      type: 'admin.credential_expiry_set', actor, subject: id,
      data: { name: rec.name, role: rec.role, expires_at: expiresAt, force: opts.force },
    });
    this.announce('expiry_set', rec, actor);
    return adminCredentialJson(rec, this.d.clock.now());
  }

  /** Revokes a credential for good; revoking one already revoked changes nothing and says so. */
  async revoke(id: string, opts: { force: boolean; reason: string | null }, actor: string): Promise<AdminCredentialView & { already_revoked: boolean }> {
    const out = await this.d.store.withLock(ADMIN_CREDENTIALS_LOCK, async () => {
      const now = this.d.clock.now();
      const cur = await this.record(id);
      const status = adminCredentialStatus(cur, now);
      if (status === 'revoked') return { rec: cur, already: true };
      if (status === 'active') await this.guardLastAdmin(cur, now, opts.force, 'revoke');
      if (!(await this.d.store.revokeAdminCredential(id, now))) throw new NotFoundError(`no admin credential "${id}"`);
      return { rec: { ...cur, disabled: true, revokedAt: cur.revokedAt ?? now }, already: false };
    });
    if (!out.already) {
      this.d.audit.record({
        type: 'admin.credential_revoked', actor, subject: id,
        data: { name: out.rec.name, role: out.rec.role, reason: opts.reason, force: opts.force },
      });
      this.announce('revoked', out.rec, actor);
    }
    return { ...adminCredentialJson(out.rec, this.d.clock.now()), already_revoked: out.already };
  }

  private async record(id: string): Promise<AdminCredentialRecord> {
    const rec = await this.d.store.getAdminCredential(id);
    if (!rec) throw new NotFoundError(`no admin credential "${id}"`);
    return rec;
  }

  /** Refuses to end the last active admin-role credential unless forced (see the class comment). */
  private async guardLastAdmin(target: AdminCredentialRecord, now: number, force: boolean, what: string): Promise<void> {
    if (target.role !== 'admin' || force) return;
    const others = (await this.d.store.listAdminCredentials())
      .filter((c) => c.id !== target.id && c.role === 'admin' && adminCredentialStatus(c, now) === 'active');
    if (others.length === 0) {
      throw new ConflictError(
        `${target.id} is the last active admin credential: ${what} it and nobody can manage Mandate until a restart prints a new bootstrap credential. ` +
        'Create another admin credential first, or repeat with force: true',
      );
    }
  }

  /**
   * Tells every instance, so that console sessions opened with the credential end now rather
   * than on their next request. Not awaited: the store already refuses the credential everywhere,
   * so the answer does not wait on the bus (a bus outage delays only the end of open event streams).
   */
  private announce(what: 'revoked' | 'expiry_set', rec: AdminCredentialRecord, actor: string): void {
    const data = { id: rec.id, role: rec.role, status: what === 'revoked' ? 'revoked' : 'active', expires_at: rec.expiresAt, by: actor, at: this.d.clock.now() };
    this.d.bus.publish(`${ADMIN_CREDENTIAL_SUBJECT}.${what}`, data, { timeoutMs: 30_000 }).catch((err: unknown) => {
      this.d.logger.warn({ err, credential: rec.id }, 'admin credential change not published on the bus; sessions end on their next request');
    });
  }
}
