import type { IncomingMessage } from 'node:http';

/** What the admin API needs from storage. Implemented by store/. */
export type AdminRole = 'admin' | 'approver' | 'viewer';

export interface AdminCredentialRecord {
  id: string;
  name: string;
  role: AdminRole;
  /** sha256 of the secret part, hex; the secret itself is never stored. */
  secretHash: string;
  createdAt: number;
  lastUsedAt: number | null;
  /** Revoked (`revokedAt` says when; rows revoked before it was recorded have it null). Never undone. */
  disabled: boolean;
  /** The end of its validity, epoch ms, or null for none. */
  expiresAt: number | null;
  revokedAt: number | null;
}

export interface AdminStore {
  countAdminCredentials(): Promise<number>;
  insertAdminCredential(rec: AdminCredentialRecord): Promise<void>;
  getAdminCredential(id: string): Promise<AdminCredentialRecord | undefined>;
  listAdminCredentials(): Promise<AdminCredentialRecord[]>;
  touchAdminCredential(id: string, at: number): Promise<void>;
  /** Sets `disabled` and, when not set yet, `revokedAt`; true when the credential exists. */
  revokeAdminCredential(id: string, at: number): Promise<boolean>;
  /** Sets `expiresAt` of a credential that is not revoked; true when one was changed. */
  setAdminCredentialExpiry(id: string, expiresAt: number): Promise<boolean>;
  /**
   * Runs `fn` holding a lock shared by every instance on the same store (PostgreSQL advisory
   * lock; SQLite: one process owns the file): the last-admin check and the change it guards
   * are one step, so two admins revoking each other at once cannot both succeed.
   */
  withLock<T>(name: string, fn: () => Promise<T>): Promise<T>;
}

/**
 * A browser session of the console (src/web/) standing in for the bearer credential. The
 * admin API asks it only when a request carries no `Authorization` header.
 */
export interface AdminSessionResolver {
  /**
   * The admin credential id of the request's session, or undefined when it has none (or an
   * expired one). For a change (`change` true) it throws a 403 unless the request carries the
   * session's CSRF token and comes from Mandate's own origin.
   */
  credentialOf(req: IncomingMessage, change: boolean): string | undefined;
}
