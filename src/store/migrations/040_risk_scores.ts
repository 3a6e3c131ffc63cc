import type { Kysely } from 'kysely';

/**
 * Risk scores as governance last computed them: one row per NHI. The proxy's policy
 * context (`context.risk_score`) reads them from memory, loaded from this table at start and
 * every few seconds, and updated from `risk.changed` on the bus in between; so an instance
 * without governance in-process (role proxy) sees the scores that roles all / signals compute.
 *
 * Same rules as 001: schema builder only, portable types, `Kysely<any>` on purpose.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('risk_scores')
    .addColumn('nhi_id', 'text', (c) => c.primaryKey())
    .addColumn('score', 'integer', (c) => c.notNull())
    .addColumn('computed_at', 'bigint', (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('risk_scores').ifExists().execute();
}
