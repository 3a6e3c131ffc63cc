/** What the broker needs from storage. Timestamps are epoch ms. Implemented by store/. */

export interface IssuedTokenRecord {
  jti: string;
  nhiId: string;
  /** The one tool the token is for (RFC 8707 resource / `aud`). */
  audience: string;
  /** Granted actions (the token's `scope`). */
  scope: string[];
  /** Risk tier (token profile) that decided the TTL. */
  tier: string;
  clientId: string | null;
  issuedAt: number;
  expiresAt: number;
  /** RFC 9449 §6.1 JWK SHA-256 thumbprint of the DPoP key. */
  cnfJkt: string | null;
  /** RFC 8705 §3.1 certificate SHA-256 thumbprint. */
  cnfX5t: string | null;
  /** RFC 8693 §4.1 `act` (delegation chain). */
  act: Record<string, unknown> | null;
  runId: string | null;
  /**
   * The jti of the Mandate token this one was exchanged from (RFC 8693 subject token), or null.
   * Bookkeeping for listing: revocation does not read it (the jti itself names its ancestors).
   */
  parentJti: string | null;
}

export interface BrokerStore {
  recordIssuedToken(t: IssuedTokenRecord): Promise<void>;
  getIssuedToken(jti: string): Promise<IssuedTokenRecord | undefined>;
  /** Newest first. `activeAt`: only tokens with expiresAt > activeAt. */
  listIssuedTokens(filter: { nhiId?: string; audience?: string; activeAt?: number; limit?: number }): Promise<IssuedTokenRecord[]>;

}

/**
 * Batched forms of the broker's hot writes, so that many requests share one statement (group
 * commit). Implemented by store/; the broker falls back to the single-record methods when a
 * store lacks them.
 */
export interface BrokerBatchStore {
  /** Records many issued tokens in one statement; a jti already recorded is left as it is (a retried batch). */
  recordIssuedTokens(tokens: readonly IssuedTokenRecord[]): Promise<void>;
}

