import { randomBytes } from 'node:crypto';
import { OAuthError, bearerCredential, hashSecret, secretMatchesHash, type Clock } from '../core/index.js';
import type { AdminCredentialRecord, AdminRole, AdminStore } from './ports.js';

/** Roles in increasing power: a viewer reads, an approver also decides approvals, an admin changes things. */
export const ROLE_RANK: Record<AdminRole, number> = { viewer: 1, approver: 2, admin: 3 };

export interface AdminPrincipal {
  id: string;
  name: string;
  role: AdminRole;
  /** When the credential stops working, epoch ms, or null for never (console sessions end with it). */
  expiresAt?: number | null;
}

export type AdminCredentialStatus = 'active' | 'expired' | 'revoked';

/** Admin credentials look like `mdt.<id>.<secret>`; only sha256(secret) is stored (hashSecret). */
const TOKEN_RE = /^mdt\.([0-9a-f]{16})\.([A-Za-z0-9_-]{43})$/;
/**
 * The lock, shared by every instance on the store, under which a decision about who can still
 * administer Mandate and the write it leads to are one step: the last-admin guard with the
 * revocation or end it allows (AdminCredentials), the bootstrap check with the credential it mints.
 */
export const ADMIN_CREDENTIALS_LOCK = 'admin-credentials';

/**
 * Where a credential stands at `now`. Revocation is final; an expired credential is as dead as
 * a revoked one (an end date is never moved back to life: see AdminCredentials.setExpiry).
 */
export function adminCredentialStatus(rec: Pick<AdminCredentialRecord, 'disabled' | 'revokedAt' | 'expiresAt'>, now: number): AdminCredentialStatus {
  if (rec.disabled || rec.revokedAt !== null) return 'revoked';
  if (rec.expiresAt !== null && now >= rec.expiresAt) return 'expired';
  return 'active';
}

/**
 * Checks admin credentials. Nothing is cached: every request reads the credential from the
 * store (the truth shared by every instance), so a revocation or an expiry is refused by every
 * instance on its very next request, without waiting for a bus message or a cache to age.
 */
export class AdminAuth {
  constructor(
    private readonly store: AdminStore,
    private readonly clock: Clock,
  ) {}

  /**
   * Creates one admin credential and returns it, to be printed once, when no admin-role
   * credential can be used: on the first start, and after the last one was revoked with
   * `force` or has expired (the way back in, for whoever can read the server's own output).
   * It is never stored in clear and cannot be shown again.
   *
   * The check and the mint hold the store's lock: instances starting together on one store see
   * each other's credential, so exactly one of them mints and prints one.
   */
  async bootstrap(): Promise<{ token: string; reason: 'first_start' | 'no_active_admin' } | undefined> {
    return this.store.withLock(ADMIN_CREDENTIALS_LOCK, async () => {
      if ((await this.store.countAdminCredentials()) === 0) return { token: (await this.create('bootstrap', 'admin')).token, reason: 'first_start' };
      const now = this.clock.now();
      const usable = (await this.store.listAdminCredentials()).some((c) => c.role === 'admin' && adminCredentialStatus(c, now) === 'active');
      if (usable) return undefined;
      return { token: (await this.create('bootstrap', 'admin')).token, reason: 'no_active_admin' };
    });
  }

  async create(name: string, role: AdminRole, expiresAt: number | null = null): Promise<{ id: string; token: string; record: AdminCredentialRecord }> {
    const id = randomBytes(8).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    const record: AdminCredentialRecord = {
      id, name, role, secretHash: hashSecret(secret), createdAt: this.clock.now(), lastUsedAt: null, disabled: false, expiresAt, revokedAt: null,
    };
    await this.store.insertAdminCredential(record);
    return { id, token: `mdt.${id}.${secret}`, record };
  }

  /**
   * Checks `Authorization: Bearer mdt.…`. Any failure (malformed, unknown id, wrong secret,
   * revoked, expired) is the same 401, so nothing is learned from it.
   */
  async authenticate(header: string | string[] | undefined): Promise<AdminPrincipal> {
    const t = TOKEN_RE.exec(bearerCredential(header) ?? '');
    if (!t) throw refused();
    const rec: AdminCredentialRecord | undefined = await this.store.getAdminCredential(t[1]!);
    const ok = secretMatchesHash(t[2]!, rec?.secretHash);
    const now = this.clock.now();
    if (!rec || !ok || adminCredentialStatus(rec, now) !== 'active') throw refused();
    await this.store.touchAdminCredential(rec.id, now);
    return principal(rec);
  }

  /**
   * The principal of a credential a console session was opened with: read again on every
   * request, so that revoking the credential, or its expiry, ends its sessions at once.
   */
  async principalOf(id: string): Promise<AdminPrincipal> {
    const rec = await this.store.getAdminCredential(id);
    if (!rec || adminCredentialStatus(rec, this.clock.now()) !== 'active') throw refused();
    return principal(rec);
  }
}

function principal(rec: AdminCredentialRecord): AdminPrincipal {
  return { id: rec.id, name: rec.name, role: rec.role, expiresAt: rec.expiresAt };
}

function refused(): OAuthError {
  return new OAuthError('invalid_token', 'a valid admin credential is required', 401);
}
