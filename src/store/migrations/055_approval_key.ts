import type { Kysely } from 'kysely';

/**
 * Approvals are looked up by the call they are for (NHI, tool, action, argument digest): the
 * proxy's gate finds a call's pending, approved or denied request by that key
 * (`Store.findApprovals`), never by scanning an NHI's newest requests, which newer ones could
 * push out of view.
 *
 * Same rules as 001: schema builder only, portable types, `Kysely<any>` on purpose.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.createIndex('approvals_call_idx').on('approvals').columns(['nhi_id', 'tool_id', 'action', 'args_digest', 'requested_at']).execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('approvals_call_idx').ifExists().execute();
}
