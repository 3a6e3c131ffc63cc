import { createHash, randomBytes } from 'node:crypto';
import { OAuthError, secretEquals, type Clock } from '../core/index.js';
import type { AdminCredentialRecord, AdminRole, AdminStore } from './ports.js';

/** Roles in increasing power: a viewer reads, an approver also decides approvals, an admin changes things. */
export const ROLE_RANK: Record<AdminRole, number> = { viewer: 1, approver: 2, admin: 3 };

export interface AdminPrincipal {
  id: string;
  name: string;
  role: AdminRole;
}

/** Admin credentials look like `mdt.<id>.<secret>`; only sha256(secret) is stored. */
const TOKEN_RE = /^mdt\.([0-9a-f]{16})\.([A-Za-z0-9_-]{43})$/;

export class AdminAuth {
  constructor(
    private readonly store: AdminStore,
    private readonly clock: Clock,
  ) {}

  /**
   * On the first start (no admin credential at all) creates one and returns it, to be printed
   * once. It is never stored in clear and cannot be shown again.
   */
  async bootstrap(): Promise<string | undefined> {
    if ((await this.store.countAdminCredentials()) > 0) return undefined;
    return (await this.create('bootstrap', 'admin')).token;
  }

  async create(name: string, role: AdminRole): Promise<{ id: string; token: string }> {
    const id = randomBytes(8).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    await this.store.insertAdminCredential({
      id,
      name,
      role,
      secretHash: hashSecret(secret),
      createdAt: this.clock.now(),
      lastUsedAt: null,
      disabled: false,
    });
    return { id, token: `mdt.${id}.${secret}` };
  }

  /** Checks `Authorization: Bearer mdt.…`; any failure is the same 401 so nothing is learned from it. */
  async authenticate(header: string | string[] | undefined): Promise<AdminPrincipal> {
    const fail = () => new OAuthError('invalid_token', 'a valid admin credential is required', 401);
    if (typeof header !== 'string') throw fail();
    const m = /^Bearer ([^\s]+)$/i.exec(header.trim());
    const t = m ? TOKEN_RE.exec(m[1]!) : null;
    if (!t) throw fail();
    const rec: AdminCredentialRecord | undefined = await this.store.getAdminCredential(t[1]!);
    // Compare even when the id is unknown, so timing does not reveal which ids exist.
    const ok = secretEquals(hashSecret(t[2]!), rec?.secretHash ?? '0'.repeat(64));
    if (!rec || !ok || rec.disabled) throw fail();
    await this.store.touchAdminCredential(rec.id, this.clock.now());
    return { id: rec.id, name: rec.name, role: rec.role };
  }

  /**
   * The principal of a credential a console session was opened with: read again on every
   * request, so that disabling the credential ends its sessions at once.
   */
  async principalOf(id: string): Promise<AdminPrincipal> {
    const rec = await this.store.getAdminCredential(id);
    if (!rec || rec.disabled) throw new OAuthError('invalid_token', 'a valid admin credential is required', 401);
    return { id: rec.id, name: rec.name, role: rec.role };
  }
}

function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}
