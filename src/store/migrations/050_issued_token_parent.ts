import type { Kysely } from 'kysely';

/**
 * Each issued token records the token it was exchanged from (the RFC 8693 subject token's jti),
 * for listing and for an operator tracing a lineage. Bookkeeping only: revocation never reads
 * it (a derived token's jti names its ancestors, see src/jose/tokens.ts, so no check waits for
 * these rows, which are written behind in batches). Not indexed: nothing queries by it yet, and every issuance would pay for one.
 *
 * Same rules as 001: schema builder only, portable types, `Kysely<any>` on purpose.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('issued_tokens').addColumn('parent_jti', 'text').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('issued_tokens').dropColumn('parent_jti').execute();
}
