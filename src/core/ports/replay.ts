/** Shared one-time-use records (DPoP `jti`, client assertion `jti`, one-time approvals). */
export interface ReplayStore {
  /**
   * Atomically records `key` in `scope` until `expiresAt` (epoch ms). Returns true the first
   * time, false when it is already recorded and not yet expired: safe across instances.
   */
  insertOnce(scope: string, key: string, expiresAt: number): Promise<boolean>;
  /** Deletes expired records; returns how many. */
  purgeExpired(now: number): Promise<number>;
}
