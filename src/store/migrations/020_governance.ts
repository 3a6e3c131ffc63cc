import type { Kysely } from 'kysely';

/**
 * What the governance port (src/governance/ports.ts, GovernanceStore) needs beyond 001 and 010:
 *
 * - `detections` (the findings): `key` (what exactly repeats, so a repeat of one detection for one
 *   NHI and key updates the row instead of adding one), a `title`, who changed the status, when and
 *   why, and `last_event` (the last bus message or sweep round counted, so a redelivered event is
 *   not counted twice). Indexed on (nhi_id, detection, key, status) for the upsert.
 * - `detection_mutes`: a detection muted for one NHI until an end date.
 * - `playbook_actions`: every automatic action (or dry-run) with what triggered it; (trigger,
 *   playbook) is unique so that of several instances hearing one finding, one acts.
 * - `programme_snapshots`: one row of programme metrics per day, for the trend over weeks.
 *
 * Same rules as 001: schema builder only, portable types, `Kysely<any>` on purpose.
 */
export async function up(db: Kysely<any>): Promise<void> {
  const s = db.schema;
  await s.alterTable('detections').addColumn('key', 'text', (c) => c.notNull().defaultTo('')).execute();
  await s.alterTable('detections').addColumn('title', 'text', (c) => c.notNull().defaultTo('')).execute();
  await s.alterTable('detections').addColumn('status_by', 'text').execute();
  await s.alterTable('detections').addColumn('status_at', 'bigint').execute();
  await s.alterTable('detections').addColumn('status_note', 'text').execute();
  await s.alterTable('detections').addColumn('last_event', 'text').execute();
  await s.createIndex('detections_upsert_idx').on('detections').columns(['nhi_id', 'detection', 'key', 'status']).execute();

  await s
    .createTable('detection_mutes')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('nhi_id', 'text', (c) => c.notNull())
    .addColumn('detection', 'text', (c) => c.notNull())
    .addColumn('until', 'bigint', (c) => c.notNull())
    .addColumn('reason', 'text', (c) => c.notNull())
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();
  await s.createIndex('detection_mutes_nhi_idx').on('detection_mutes').columns(['nhi_id', 'until']).execute();

  await s
    .createTable('playbook_actions')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('playbook', 'text', (c) => c.notNull())
    .addColumn('trigger', 'text', (c) => c.notNull())
    .addColumn('finding_id', 'text')
    .addColumn('nhi_id', 'text', (c) => c.notNull())
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('dry_run', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('signal_id', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('undone_at', 'bigint')
    .addColumn('undone_by', 'text')
    .addUniqueConstraint('playbook_actions_trigger_uq', ['trigger', 'playbook'])
    .execute();
  await s.createIndex('playbook_actions_nhi_idx').on('playbook_actions').columns(['nhi_id', 'created_at']).execute();

  await s
    .createTable('programme_snapshots')
    .addColumn('day', 'text', (c) => c.primaryKey())
    .addColumn('taken_at', 'bigint', (c) => c.notNull())
    .addColumn('metrics', 'text', (c) => c.notNull().defaultTo('{}'))
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  const s = db.schema;
  await s.dropTable('programme_snapshots').ifExists().execute();
  await s.dropTable('playbook_actions').ifExists().execute();
  await s.dropTable('detection_mutes').ifExists().execute();
  await s.dropIndex('detections_upsert_idx').ifExists().execute();
  for (const c of ['last_event', 'status_note', 'status_at', 'status_by', 'title', 'key']) await s.alterTable('detections').dropColumn(c).execute();
}
