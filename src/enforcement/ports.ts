/**
 * What enforcement keeps: revocations, kill switches, approvals and restrictions (step-down /
 * step-up). Timestamps are epoch ms. Implemented by store/.
 */

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

export type RestrictionKind = 'step_down' | 'step_up';

/** A step-down or step-up in force for an NHI until an operator lifts it. */
export interface RestrictionRecord {
  id: string;
  nhiId: string;
  kind: RestrictionKind;
  /** The token profile (tier) the NHI falls back to while restricted. */
  fallbackTier: string;
  signalId: string;
  reason: string;
  createdAt: number;
  liftedAt: number | null;
  liftedBy: string | null;
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

/** Enforcement's records in the store. */
export interface EnforcementStore {
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
  /** Many revocations in multi-row INSERTs (a batch of signals, in the caller's transaction). */
  addRevocations(records: readonly RevocationRecord[]): Promise<void>;

  /** Lifts any active restriction of the same NHI (superseded by `r.signalId`), then inserts `r`, in one transaction. */
  addRestriction(r: RestrictionRecord): Promise<void>;
  /** Lifts the NHI's active restrictions; returns the lifted records (empty when none was active). */
  liftRestrictions(nhiId: string, liftedBy: string, at: number): Promise<RestrictionRecord[]>;
  /** Oldest first. */
  listRestrictions(opts?: { activeOnly?: boolean; nhiId?: string }): Promise<RestrictionRecord[]>;
}

/** What revoking one token needs to know of it: whose it is and until when it lives (from the broker's records). */
export interface IssuedTokenFacts {
  nhiId: string;
  expiresAt: number;
}

export interface IssuedTokenLookup {
  getIssuedToken(jti: string): Promise<IssuedTokenFacts | undefined>;
}
