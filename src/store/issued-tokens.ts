import type { IssuedTokenRecord } from '../broker/ports.js';
import { BATCH_ROWS, clampLimit, guard, type StoreContext } from './context.js';
import { issuedTokenFromRow, issuedTokenToRow } from './rows.js';

/** The tokens the broker issued (BrokerStore, BrokerBatchStore). */

export async function recordIssuedToken(c: StoreContext, t: IssuedTokenRecord): Promise<void> {
  await guard(c, { what: `record issued token ${t.jti}`, unique: `issued token ${t.jti} already exists` }, async () => {
    await c.db.insertInto('issued_tokens').values(issuedTokenToRow(t)).execute();
  });
}

/**
 * Many issued tokens in one multi-row INSERT (the broker writes them in batches, off the
 * request path). ON CONFLICT DO NOTHING: a batch retried after an unacknowledged commit
 * must not fail on the rows it already wrote.
 */
export async function recordIssuedTokens(c: StoreContext, tokens: readonly IssuedTokenRecord[]): Promise<void> {
  if (tokens.length === 0) return;
  await guard(c, { what: `record ${tokens.length} issued tokens` }, async () => {
    for (let i = 0; i < tokens.length; i += BATCH_ROWS) {
      const rows = tokens.slice(i, i + BATCH_ROWS).map(issuedTokenToRow);
      await c.db.insertInto('issued_tokens').values(rows).onConflict((oc) => oc.column('jti').doNothing()).execute();
    }
  });
}

export async function getIssuedToken(c: StoreContext, jti: string): Promise<IssuedTokenRecord | undefined> {
  return guard(c, { what: `get issued token ${jti}` }, async () => {
    const row = await c.db.selectFrom('issued_tokens').selectAll().where('jti', '=', jti).executeTakeFirst();
    return row && issuedTokenFromRow(row);
  });
}

/** Newest first (issued_at, then jti, descending); `limit` defaults to 100 and is capped at 10000. */
export async function listIssuedTokens(c: StoreContext, filter: { nhiId?: string; audience?: string; activeAt?: number; limit?: number }): Promise<IssuedTokenRecord[]> {
  return guard(c, { what: 'list issued tokens' }, async () => {
    const limit = clampLimit(filter.limit);
    if (limit === 0) return [];
    let q = c.db.selectFrom('issued_tokens').selectAll();
    if (filter.nhiId !== undefined) q = q.where('nhi_id', '=', filter.nhiId);
    if (filter.audience !== undefined) q = q.where('audience', '=', filter.audience);
    if (filter.activeAt !== undefined) q = q.where('expires_at', '>', filter.activeAt);
    const rows = await q.orderBy('issued_at', 'desc').orderBy('jti', 'desc').limit(limit).execute();
    return rows.map(issuedTokenFromRow);
  });
}
