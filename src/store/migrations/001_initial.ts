import { sql, type Kysely } from 'kysely';
import { GENESIS_HASH } from '../database.js';

/**
 * The initial schema. Written only with Kysely's schema builder and portable types (text,
 * bigint, integer) so that the same migration runs on SQLite and PostgreSQL. Migrations take
 * `Kysely<any>` on purpose: they describe the schema as it was at that version, not as
 * `Database` describes it today.
 */
export async function up(db: Kysely<any>): Promise<void> {
  const s = db.schema;

  await s
    .createTable('nhis')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('class', 'text', (c) => c.notNull())
    .addColumn('owner', 'text', (c) => c.notNull())
    .addColumn('system', 'text', (c) => c.notNull())
    .addColumn('environment', 'text', (c) => c.notNull())
    .addColumn('tier', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('description', 'text')
    .addColumn('may_act', 'text', (c) => c.notNull().defaultTo('[]'))
    .addColumn('source', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
  await s.createIndex('nhis_owner_idx').on('nhis').column('owner').execute();
  await s.createIndex('nhis_status_idx').on('nhis').column('status').execute();

  await s
    .createTable('tools')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('upstream', 'text', (c) => c.notNull())
    .addColumn('description', 'text')
    .addColumn('config', 'text', (c) => c.notNull().defaultTo('{}'))
    .addColumn('source', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();

  // Credentials and grants belong to an NHI (and a tool): they go with it.
  await s
    .createTable('credentials')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('nhi_id', 'text', (c) => c.notNull().references('nhis.id').onDelete('cascade'))
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('trust', 'text')
    .addColumn('subject', 'text')
    .addColumn('data', 'text', (c) => c.notNull().defaultTo('{}'))
    .addColumn('exception_ticket', 'text')
    .addColumn('exception_expires_at', 'bigint')
    .addColumn('source', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint')
    .addColumn('last_rotated_at', 'bigint')
    .execute();
  await s.createIndex('credentials_nhi_idx').on('credentials').column('nhi_id').execute();
  // Federation looks a credential up by (trust entry, subject).
  await s.createIndex('credentials_trust_subject_idx').on('credentials').columns(['trust', 'subject']).execute();

  await s
    .createTable('grants')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('nhi_id', 'text', (c) => c.notNull().references('nhis.id').onDelete('cascade'))
    .addColumn('tool_id', 'text', (c) => c.notNull().references('tools.id').onDelete('cascade'))
    .addColumn('actions', 'text', (c) => c.notNull().defaultTo('[]'))
    .addColumn('change_ref', 'text')
    .addColumn('source', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'bigint')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addColumn('last_used_at', 'bigint')
    .addUniqueConstraint('grants_nhi_tool_uq', ['nhi_id', 'tool_id'])
    .execute();
  await s.createIndex('grants_tool_idx').on('grants').column('tool_id').execute();

  await s
    .createTable('trust')
    .addColumn('name', 'text', (c) => c.primaryKey())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('issuer', 'text', (c) => c.notNull())
    .addColumn('config', 'text', (c) => c.notNull().defaultTo('{}'))
    .addColumn('source', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
  await s.createIndex('trust_issuer_idx').on('trust').column('issuer').execute();

  await s
    .createTable('signing_keys')
    .addColumn('kid', 'text', (c) => c.primaryKey())
    .addColumn('alg', 'text', (c) => c.notNull())
    .addColumn('public_jwk', 'text', (c) => c.notNull())
    .addColumn('private_enc', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('activates_at', 'bigint', (c) => c.notNull())
    .addColumn('retires_at', 'bigint')
    .addColumn('expires_at', 'bigint')
    .execute();

  await s
    .createTable('issued_tokens')
    .addColumn('jti', 'text', (c) => c.primaryKey())
    .addColumn('nhi_id', 'text', (c) => c.notNull())
    .addColumn('audience', 'text', (c) => c.notNull())
    .addColumn('scope', 'text', (c) => c.notNull())
    .addColumn('tier', 'text', (c) => c.notNull())
    .addColumn('client_id', 'text')
    .addColumn('issued_at', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addColumn('cnf_jkt', 'text')
    .addColumn('cnf_x5t', 'text')
    .addColumn('act', 'text')
    .addColumn('run_id', 'text')
    .execute();
  await s.createIndex('issued_tokens_nhi_idx').on('issued_tokens').columns(['nhi_id', 'issued_at']).execute();
  await s.createIndex('issued_tokens_expires_idx').on('issued_tokens').column('expires_at').execute();
  await s.createIndex('issued_tokens_run_idx').on('issued_tokens').column('run_id').execute();

  await s
    .createTable('revocations')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('target', 'text')
    .addColumn('not_before', 'bigint')
    .addColumn('reason', 'text')
    .addColumn('signal_id', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint')
    .execute();
  await s.createIndex('revocations_kind_target_idx').on('revocations').columns(['kind', 'target']).execute();
  await s.createIndex('revocations_created_idx').on('revocations').column('created_at').execute();
  await s.createIndex('revocations_expires_idx').on('revocations').column('expires_at').execute();

  await s
    .createTable('approvals')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('nhi_id', 'text', (c) => c.notNull())
    .addColumn('tool_id', 'text', (c) => c.notNull())
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('args_digest', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('requested_at', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addColumn('decided_by', 'text')
    .addColumn('decided_at', 'bigint')
    .addColumn('reason', 'text')
    .addColumn('redeemed_at', 'bigint')
    .addColumn('details', 'text', (c) => c.notNull().defaultTo('{}'))
    .execute();
  await s.createIndex('approvals_status_idx').on('approvals').columns(['status', 'requested_at']).execute();
  await s.createIndex('approvals_nhi_idx').on('approvals').column('nhi_id').execute();
  await s.createIndex('approvals_expires_idx').on('approvals').column('expires_at').execute();

  await s
    .createTable('audit')
    .addColumn('seq', 'bigint', (c) => c.primaryKey())
    .addColumn('id', 'text', (c) => c.notNull().unique())
    .addColumn('ts', 'bigint', (c) => c.notNull())
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('actor', 'text')
    .addColumn('subject', 'text')
    .addColumn('tool', 'text')
    .addColumn('decision', 'text')
    .addColumn('trace_id', 'text')
    .addColumn('data', 'text', (c) => c.notNull().defaultTo('{}'))
    .addColumn('prev_hash', 'text', (c) => c.notNull())
    .addColumn('hash', 'text', (c) => c.notNull())
    .execute();
  for (const col of ['ts', 'type', 'actor', 'subject', 'tool', 'trace_id']) {
    await s.createIndex(`audit_${col}_idx`).on('audit').column(col).execute();
  }

  // One row, so that appendChained can lock "the head" (SELECT … FOR UPDATE on PostgreSQL).
  await s
    .createTable('audit_head')
    .addColumn('id', 'integer', (c) => c.primaryKey())
    .addColumn('seq', 'bigint', (c) => c.notNull())
    .addColumn('hash', 'text', (c) => c.notNull())
    .addCheckConstraint('audit_head_one_row', sql`id = 1`)
    .execute();
  await db.insertInto('audit_head').values({ id: 1, seq: 0, hash: GENESIS_HASH }).execute();

  await s
    .createTable('ssf_streams')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('direction', 'text', (c) => c.notNull())
    .addColumn('config', 'text', (c) => c.notNull().defaultTo('{}'))
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();

  await s
    .createTable('ssf_events')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('stream_id', 'text', (c) => c.notNull().references('ssf_streams.id').onDelete('cascade'))
    .addColumn('jti', 'text', (c) => c.notNull())
    .addColumn('set_jwt', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('next_attempt_at', 'bigint')
    .addColumn('last_error', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    // A SET is delivered / accepted once per stream.
    .addUniqueConstraint('ssf_events_stream_jti_uq', ['stream_id', 'jti'])
    .execute();
  await s.createIndex('ssf_events_due_idx').on('ssf_events').columns(['status', 'next_attempt_at']).execute();

  await s
    .createTable('signals')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('nhi_id', 'text')
    .addColumn('jti', 'text')
    .addColumn('run_id', 'text')
    .addColumn('reason', 'text', (c) => c.notNull())
    .addColumn('severity', 'text', (c) => c.notNull())
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('source', 'text', (c) => c.notNull())
    .addColumn('received_at', 'bigint', (c) => c.notNull())
    .addColumn('data', 'text', (c) => c.notNull().defaultTo('{}'))
    .execute();
  await s.createIndex('signals_nhi_idx').on('signals').columns(['nhi_id', 'received_at']).execute();
  await s.createIndex('signals_received_idx').on('signals').column('received_at').execute();

  await s
    .createTable('detections')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('nhi_id', 'text', (c) => c.notNull())
    .addColumn('detection', 'text', (c) => c.notNull())
    .addColumn('severity', 'text', (c) => c.notNull())
    .addColumn('evidence', 'text', (c) => c.notNull().defaultTo('{}'))
    .addColumn('first_seen', 'bigint', (c) => c.notNull())
    .addColumn('last_seen', 'bigint', (c) => c.notNull())
    .addColumn('count', 'integer', (c) => c.notNull().defaultTo(1))
    .addColumn('status', 'text', (c) => c.notNull())
    .execute();
  await s.createIndex('detections_nhi_detection_idx').on('detections').columns(['nhi_id', 'detection']).execute();
  await s.createIndex('detections_status_idx').on('detections').columns(['status', 'last_seen']).execute();

  await s
    .createTable('admin_credentials')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('role', 'text', (c) => c.notNull())
    .addColumn('secret_hash', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('last_used_at', 'bigint')
    .addColumn('disabled', 'integer', (c) => c.notNull().defaultTo(0))
    .execute();

  await s
    .createTable('replay')
    .addColumn('scope', 'text', (c) => c.notNull())
    .addColumn('key', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('replay_pk', ['scope', 'key'])
    .execute();
  await s.createIndex('replay_expires_idx').on('replay').column('expires_at').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  // Children before parents (foreign keys).
  for (const t of [
    'replay', 'admin_credentials', 'detections', 'signals', 'ssf_events', 'ssf_streams', 'audit_head', 'audit',
    'approvals', 'revocations', 'issued_tokens', 'signing_keys', 'trust', 'grants', 'credentials', 'tools', 'nhis',
  ]) {
    await db.schema.dropTable(t).ifExists().execute();
  }
}
