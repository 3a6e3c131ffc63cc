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
  disabled: boolean;
}

export interface AdminStore {
  countAdminCredentials(): Promise<number>;
  insertAdminCredential(rec: AdminCredentialRecord): Promise<void>;
  getAdminCredential(id: string): Promise<AdminCredentialRecord | undefined>;
  listAdminCredentials(): Promise<AdminCredentialRecord[]>;
  touchAdminCredential(id: string, at: number): Promise<void>;
  disableAdminCredential(id: string): Promise<boolean>;
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
