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

/** `key`: every token signed by the key `target` (a kid), retired at once (`mandate keys retire --now`). */
export type RevocationKind = 'token' | 'nhi' | 'tool' | 'global' | 'key';

export interface RevocationRecord {
  id: string;
  kind: RevocationKind;
  /** jti (token), NHI id (nhi), tool id (tool), kid (key); null for global. */
  target: string | null;
  /** Tokens issued before this instant are revoked (nhi, tool, global); null for kind token. */
  notBefore: number | null;
  reason: string | null;
  signalId: string | null;
  createdAt: number;
  /** After this the record may be forgotten (a token revocation: the token's own expiry). */
  expiresAt: number | null;
}

export type KillScope = 'nhi' | 'tool' | 'global';

/** A kill switch refuses issuance and every call in its scope until it is lifted. */
export interface KillSwitchRecord {
  id: string;
  scope: KillScope;
  /** NHI or tool id; null for global. */
  target: string | null;
  reason: string;
  createdBy: string;
  createdAt: number;
  liftedAt: number | null;
  liftedBy: string | null;
}

export type ApprovalStatus = 'pending' | 'approved' | 'denied' | 'expired' | 'redeemed';

export interface ApprovalRecord {
  id: string;
  nhiId: string;
  toolId: string;
  action: string;
  /** base64url SHA-256 of the canonical arguments, when the request named them. */
  argsDigest: string | null;
  status: ApprovalStatus;
  requestedAt: number;
  expiresAt: number;
  decidedBy: string | null;
  decidedAt: number | null;
  reason: string | null;
  redeemedAt: number | null;
  /** Non-secret context for the approver: the requesting client, the run id, the `act` chain. */
  details: Record<string, unknown>;
}

export interface BrokerStore {
  recordIssuedToken(t: IssuedTokenRecord): Promise<void>;
  getIssuedToken(jti: string): Promise<IssuedTokenRecord | undefined>;
  /** Newest first. `activeAt`: only tokens with expiresAt > activeAt. */
  listIssuedTokens(filter: { nhiId?: string; audience?: string; activeAt?: number; limit?: number }): Promise<IssuedTokenRecord[]>;

  addRevocation(r: RevocationRecord): Promise<void>;
  /**
   * Revocations not yet expired at `now` (expiresAt null or > now), oldest first; with
   * `createdSince`, only those whose createdAt is at or after it.
   */
  listRevocations(now: number, opts?: { createdSince?: number }): Promise<RevocationRecord[]>;
  purgeRevocations(now: number): Promise<number>;

  addKillSwitch(k: KillSwitchRecord): Promise<void>;
  /** Lifts an active kill switch; false when it does not exist or is already lifted. */
  liftKillSwitch(id: string, liftedBy: string, at: number): Promise<boolean>;
  listKillSwitches(opts?: { activeOnly?: boolean }): Promise<KillSwitchRecord[]>;

  createApproval(a: ApprovalRecord): Promise<void>;
  getApproval(id: string): Promise<ApprovalRecord | undefined>;
  /** Newest first. */
  listApprovals(filter?: { status?: ApprovalStatus; nhiId?: string; limit?: number }): Promise<ApprovalRecord[]>;
  /**
   * The live approvals of exactly one call (NHI, tool, action, argument digest): pending,
   * approved or denied, unexpired at `at`, newest first. Looked up by that key, not found in a
   * listing, so that requests for other calls, however many, never hide a denial or a pending one.
   */
  findApprovals(key: { nhiId: string; toolId: string; action: string; argsDigest: string }, at: number): Promise<ApprovalRecord[]>;
  /**
   * Atomically moves a *pending*, unexpired approval to approved or denied. Returns the
   * updated record, or undefined when it was not pending (already decided, expired, unknown).
   */
  decideApproval(id: string, d: { status: 'approved' | 'denied'; decidedBy: string; decidedAt: number; reason: string | null }): Promise<ApprovalRecord | undefined>;
  /**
   * Atomically moves an *approved*, unexpired (expiresAt > at), unredeemed approval to
   * redeemed. Exactly one of many concurrent callers gets true (single use).
   */
  redeemApproval(id: string, at: number): Promise<boolean>;
}

/** One one-time record for `ReplayBatchStore.insertOnceMany`. */
export interface ReplayInsert {
  scope: string;
  key: string;
  /** Epoch ms; the record may be taken over after this. */
  expiresAt: number;
}

/**
 * Batched forms of the broker's hot writes, so that many requests share one statement (group
 * commit). Implemented by store/; the broker falls back to the single-record methods when a
 * store lacks them.
 */
export interface BrokerBatchStore {
  /**
   * `ReplayStore.insertOnce` for many distinct (scope, key) pairs in one atomic statement:
   * for each record, in order, true when it was inserted (absent, or present but expired),
   * false when an unexpired record already existed. Keys within one call must be distinct.
   */
  insertOnceMany(records: readonly ReplayInsert[]): Promise<boolean[]>;
  /** Records many issued tokens in one statement; a jti already recorded is left as it is (a retried batch). */
  recordIssuedTokens(tokens: readonly IssuedTokenRecord[]): Promise<void>;
  /** Many revocations in multi-row INSERTs (a batch of signals, in the caller's transaction). */
  addRevocations(records: readonly RevocationRecord[]): Promise<void>;
}

/**
 * A step-down / step-up in force for an NHI (continuous access evaluation). The
 * signals capability keeps them (RestrictionState); app.ts hands that object to the broker and
 * the proxy through this port, so neither imports signals.
 */
export interface RestrictionLookup {
  /** O(1); undefined when the NHI is not restricted. */
  restrictionOf(nhiId: string): { kind: 'step_down' | 'step_up'; fallbackTier: string; signalId: string; reason: string } | undefined;
}
