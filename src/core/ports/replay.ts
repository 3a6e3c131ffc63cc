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

/** One one-time record for `ReplayBatchStore.insertOnceMany`. */
export interface ReplayInsert {
  scope: string;
  key: string;
  /** Epoch ms; the record may be taken over after this. */
  expiresAt: number;
}

/** Many one-time records in one statement (group commit), where the store can. */
export interface ReplayBatchStore {
  /**
   * `ReplayStore.insertOnce` for many distinct (scope, key) pairs in one atomic statement:
   * for each record, in order, true when it was inserted (absent, or present but expired),
   * false when an unexpired record already existed. Keys within one call must be distinct.
   */
  insertOnceMany(records: readonly ReplayInsert[]): Promise<boolean[]>;
}
