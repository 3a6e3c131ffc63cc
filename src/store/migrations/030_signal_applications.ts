import type { Kysely } from 'kysely';

/**
 * Time to revoke, per instance: one row per (signal, instance) that
 * enforced it. `applied_at` is when that instance's revocation state applied the revocation or
 * kill switch the signal caused (from the bus, or its own reload from the store);
 * `first_denied_at` is when that instance first refused a call because of it (proxies). Either
 * may be written first (two independent writes), hence both nullable. The report joins these
 * rows with `signals.received_at`.
 *
 * Same rules as 001: schema builder only, portable types, `Kysely<any>` on purpose.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('signal_applications')
    .addColumn('signal_id', 'text', (c) => c.notNull())
    .addColumn('instance_id', 'text', (c) => c.notNull())
    .addColumn('role', 'text', (c) => c.notNull())
    .addColumn('applied_at', 'bigint')
    .addColumn('first_denied_at', 'bigint')
    .addPrimaryKeyConstraint('signal_applications_pk', ['signal_id', 'instance_id'])
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('signal_applications').ifExists().execute();
}
