import type { Kysely } from 'kysely';

/**
 * What the signals port (src/signals/ports.ts, SignalsStore) needs beyond 001_initial:
 *
 * - `signals`: the subject's credential, the RFC 8417 `txn` carried through, the outcome
 *   (`status`, `error`) and `applied_at`, so that time to revoke (applied_at − received_at) is
 *   on record for every signal.
 * - `restrictions`: step-down / step-up per NHI, kept after they are lifted (lifted_at set);
 *   indexed on (nhi_id, lifted_at) for "the NHI's active restriction" and lifted_at for the reload.
 * - `ssf_streams`: the admin credential that owns an outbound stream (a receiver sees only its
 *   own streams) and the reason given with the status (SSF 1.0 stream status `reason`).
 * - `ssf_subjects`: subjects added to a stream (SSF 1.0 "Adding a Subject to a Stream"), one row
 *   per (stream, canonical subject), with the NHI it names when it names one.
 * - `ssf_events`: an index for the delivery loop (stream, status, next_attempt_at).
 *
 * Same rules as 001: schema builder only, portable types, `Kysely<any>` on purpose.
 */
export async function up(db: Kysely<any>): Promise<void> {
  const s = db.schema;

  await s.alterTable('signals').addColumn('credential_id', 'text').execute();
  await s.alterTable('signals').addColumn('txn', 'text').execute();
  await s.alterTable('signals').addColumn('status', 'text', (c) => c.notNull().defaultTo('recorded')).execute();
  await s.alterTable('signals').addColumn('applied_at', 'bigint').execute();
  await s.alterTable('signals').addColumn('error', 'text').execute();

  await s
    .createTable('restrictions')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('nhi_id', 'text', (c) => c.notNull())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('fallback_tier', 'text', (c) => c.notNull())
    .addColumn('signal_id', 'text', (c) => c.notNull())
    .addColumn('reason', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('lifted_at', 'bigint')
    .addColumn('lifted_by', 'text')
    .execute();
  await s.createIndex('restrictions_nhi_idx').on('restrictions').columns(['nhi_id', 'lifted_at']).execute();
  await s.createIndex('restrictions_lifted_idx').on('restrictions').column('lifted_at').execute();

  await s.alterTable('ssf_streams').addColumn('owner', 'text').execute();
  await s.alterTable('ssf_streams').addColumn('status_reason', 'text').execute();
  await s.createIndex('ssf_streams_owner_idx').on('ssf_streams').columns(['direction', 'owner']).execute();

  await s
    .createTable('ssf_subjects')
    .addColumn('stream_id', 'text', (c) => c.notNull().references('ssf_streams.id').onDelete('cascade'))
    .addColumn('subject_key', 'text', (c) => c.notNull())
    .addColumn('subject', 'text', (c) => c.notNull())
    .addColumn('nhi_id', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('ssf_subjects_pk', ['stream_id', 'subject_key'])
    .execute();

  await s.createIndex('ssf_events_stream_due_idx').on('ssf_events').columns(['stream_id', 'status', 'next_attempt_at']).execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  const s = db.schema;
  await s.dropIndex('ssf_events_stream_due_idx').ifExists().execute();
  await s.dropTable('ssf_subjects').ifExists().execute();
  await s.dropIndex('ssf_streams_owner_idx').ifExists().execute();
  await s.alterTable('ssf_streams').dropColumn('status_reason').execute();
  await s.alterTable('ssf_streams').dropColumn('owner').execute();
  await s.dropTable('restrictions').ifExists().execute();
  for (const c of ['error', 'applied_at', 'status', 'txn', 'credential_id']) await s.alterTable('signals').dropColumn(c).execute();
}
