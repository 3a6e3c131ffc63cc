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
