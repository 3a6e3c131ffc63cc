import type { Kysely } from 'kysely';

/**
 * What the broker port (src/broker/ports.ts, BrokerStore) needs beyond 001_initial:
 *
 * - `kill_switches`: engaged kill switches, lifted ones kept for the record (lifted_at set);
 *   indexed on lifted_at, because the broker reloads the active ones (lifted_at IS NULL).
 * - `issued_tokens`: indexes for the admin listing, (nhi_id, expires_at) for an NHI's active
 *   tokens and (audience, issued_at) for a tool's tokens, newest first. (001 already has
 *   (nhi_id, issued_at), expires_at and run_id.)
 * - `approvals`: `args_digest` becomes nullable (a request need not name its arguments), and
 *   the NHI index becomes (nhi_id, requested_at) for "an NHI's approvals, newest first".
 *   SQLite cannot drop NOT NULL in place, so the table is rebuilt, the same way on both
 *   dialects: copy the rows aside, drop, create, copy back. No code wrote approvals before this
 *   version, so the copy is normally empty; it is kept anyway, so that no row is ever lost.
 *
 * `revocations` needs nothing: 001 already indexes expires_at (listRevocations, purge).
 *
 * Same rules as 001: schema builder only, portable types, `Kysely<any>` on purpose.
 */
const APPROVAL_COLUMNS = [
  'id', 'nhi_id', 'tool_id', 'action', 'args_digest', 'status', 'requested_at', 'expires_at',
  'decided_by', 'decided_at', 'reason', 'redeemed_at', 'details',
] as const;

const APPROVALS_COPY = 'approvals_002_copy';

export async function up(db: Kysely<any>): Promise<void> {
  const s = db.schema;

  await s
    .createTable('kill_switches')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('scope', 'text', (c) => c.notNull())
    .addColumn('target', 'text')
    .addColumn('reason', 'text', (c) => c.notNull())
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('lifted_at', 'bigint')
    .addColumn('lifted_by', 'text')
    .execute();
  await s.createIndex('kill_switches_lifted_idx').on('kill_switches').column('lifted_at').execute();

  await s.createIndex('issued_tokens_nhi_expires_idx').on('issued_tokens').columns(['nhi_id', 'expires_at']).execute();
  await s.createIndex('issued_tokens_audience_idx').on('issued_tokens').columns(['audience', 'issued_at']).execute();

  // Rebuild approvals with args_digest nullable. Dropping the table drops its indexes, so the
  // new ones can take the same names.
  await s.createTable(APPROVALS_COPY).as(db.selectFrom('approvals').select([...APPROVAL_COLUMNS])).execute();
  await s.dropTable('approvals').execute();
  await s
    .createTable('approvals')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('nhi_id', 'text', (c) => c.notNull())
    .addColumn('tool_id', 'text', (c) => c.notNull())
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('args_digest', 'text')
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('requested_at', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addColumn('decided_by', 'text')
    .addColumn('decided_at', 'bigint')
    .addColumn('reason', 'text')
    .addColumn('redeemed_at', 'bigint')
    .addColumn('details', 'text', (c) => c.notNull().defaultTo('{}'))
    .execute();
  await db
    .insertInto('approvals')
    .columns([...APPROVAL_COLUMNS])
    .expression(db.selectFrom(APPROVALS_COPY).select([...APPROVAL_COLUMNS]))
    .execute();
  await s.dropTable(APPROVALS_COPY).execute();
  await s.createIndex('approvals_status_idx').on('approvals').columns(['status', 'requested_at']).execute();
  await s.createIndex('approvals_nhi_idx').on('approvals').columns(['nhi_id', 'requested_at']).execute();
  await s.createIndex('approvals_expires_idx').on('approvals').column('expires_at').execute();
}

/**
 * Drops what up() added. approvals stays as rebuilt (args_digest nullable): putting NOT NULL
 * back could fail on rows written since, and 001's code never relied on it.
 */
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('issued_tokens_audience_idx').ifExists().execute();
  await db.schema.dropIndex('issued_tokens_nhi_expires_idx').ifExists().execute();
  await db.schema.dropTable('kill_switches').ifExists().execute();
}
