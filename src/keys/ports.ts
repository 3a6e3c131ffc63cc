/** What key management needs from storage. Implemented by store/. */
export interface SigningKeyRecord {
  kid: string;
  alg: 'ES256' | 'EdDSA';
  /** Public JWK (with kid, alg, use). */
  publicJwk: Record<string, unknown>;
  /** The private JWK encrypted under the KEK (see keys/kek.ts); never stored in clear. */
  privateEnc: string;
  createdAt: number;
  /** Published from createdAt; signs from activatesAt. */
  activatesAt: number;
  /** Stops signing (null while current). */
  retiresAt: number | null;
  /** Leaves the JWKS (null while signing). */
  expiresAt: number | null;
}

export interface KeyStore {
  listSigningKeys(): Promise<SigningKeyRecord[]>;
  insertSigningKey(key: SigningKeyRecord): Promise<void>;
  updateSigningKey(kid: string, patch: { retiresAt?: number | null; expiresAt?: number | null }): Promise<void>;
  deleteSigningKey(kid: string): Promise<void>;
  /**
   * Runs fn while holding a lock named `name` across every instance sharing the store
   * (PostgreSQL advisory lock; SQLite's single writer). Used so that only one instance rotates.
   */
  withLock<T>(name: string, fn: () => Promise<T>): Promise<T>;
}
