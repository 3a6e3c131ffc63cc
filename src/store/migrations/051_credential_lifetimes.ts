import type { Kysely } from 'kysely';

/**
 * Credentials end when they say:
 * - `admin_credentials.expires_at`: the end an operator gave it (null: none);
 *   `admin_credentials.revoked_at`: when it was revoked (`disabled` stays the flag; rows disabled
 *   before this migration keep a null `revoked_at`).
 * - `ssf_stream_credentials`: each outbound SSF stream's own credential, as sha256 of its
 *   secret, one per stream; it goes with its stream (ON DELETE CASCADE, and deleted explicitly
 *   by deleteSsfStream so that no dialect relies on it).
 *
 * Same rules as 001: schema builder only, portable types, `Kysely<any>` on purpose.
 */
export async function up(db: Kysely<any>): Promise<void> {
  const s = db.schema;
  await s.alterTable('admin_credentials').addColumn('expires_at', 'bigint').execute();
  await s.alterTable('admin_credentials').addColumn('revoked_at', 'bigint').execute();
  await s
    .createTable('ssf_stream_credentials')
    .addColumn('stream_id', 'text', (c) => c.primaryKey().references('ssf_streams.id').onDelete('cascade'))
    .addColumn('secret_hash', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  const s = db.schema;
  await s.dropTable('ssf_stream_credentials').ifExists().execute();
  await s.alterTable('admin_credentials').dropColumn('revoked_at').execute();
  await s.alterTable('admin_credentials').dropColumn('expires_at').execute();
}
