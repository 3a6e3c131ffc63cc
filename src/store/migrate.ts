import { sql, type Kysely } from 'kysely';
import { MandateError, UnavailableError } from '../core/errors.js';
import { MIGRATIONS } from './migrations/index.js';
import { translateError } from './errors.js';
import { assertRoot, guard, type StoreContext } from './context.js';

/** The schema's migrations: applying them, and which are applied. */

const MIGRATION_TABLE = 'mandate_schema_migrations';

/**
 * Applies pending migrations; returns the names applied (empty when up to date). One run is
 * one transaction on both dialects, so when a migration fails none of the run's migrations
 * stay applied, and the thrown MandateError (ERR_MIGRATION) names it. Concurrent callers
 * (several instances starting) are serialized: an advisory transaction lock on PostgreSQL,
 * SQLite's single writer.
 *
 * Why not Kysely's Migrator: it decides what exists by introspecting every schema in the
 * database, which fails ("schema … does not exist") while another schema is being dropped,
 * and cannot be scoped to one schema. This runner only reads its own bookkeeping table.
 */
export async function migrate(c: StoreContext): Promise<string[]> {
  assertRoot(c, 'migrate');
  let failed: string | undefined;
  try {
    return await guard(c, { what: 'migrate' }, () =>
      c.shared.root.transaction().execute(async (trx) => {
        if (c.shared.dialect === 'postgres') {
          await sql`select pg_advisory_xact_lock(hashtext(${`${c.shared.pgSchema ?? ''}:mandate-migrate`}))`.execute(trx);
        }
        await sql`create table if not exists ${sql.table(MIGRATION_TABLE)} (name text primary key, executed_at bigint not null)`.execute(trx);
        const done = new Set(
          (await sql<{ name: string }>`select name from ${sql.table(MIGRATION_TABLE)}`.execute(trx)).rows.map((r) => r.name),
        );
        const applied: string[] = [];
        for (const name of Object.keys(MIGRATIONS).sort()) {
          if (done.has(name)) continue;
          failed = name;
          await MIGRATIONS[name]!.up(trx as unknown as Kysely<unknown>);
          await sql`insert into ${sql.table(MIGRATION_TABLE)} (name, executed_at) values (${name}, ${c.shared.clock.now()})`.execute(trx);
          applied.push(name);
        }
        failed = undefined;
        return applied;
      }),
    );
  } catch (error) {
    const mapped = error instanceof UnavailableError ? error : translateError(error, { what: 'migrate' });
    if (mapped instanceof UnavailableError) throw mapped;
    const detail = error instanceof Error ? error.message : String(error);
    throw new MandateError(
      'ERR_MIGRATION',
      failed ? `migration ${failed} failed (the run was rolled back): ${detail}` : `migrations could not run: ${detail}`,
      { cause: error },
    );
  }
}

export async function migrationStatus(c: StoreContext): Promise<{ name: string; executedAt: Date | null }[]> {
  assertRoot(c, 'migrationStatus');
  const rows = await guard(c, { what: 'migration status' }, async () => {
    try {
      return (await sql<{ name: string; executed_at: number | string }>`select name, executed_at from ${sql.table(MIGRATION_TABLE)}`.execute(c.shared.root)).rows;
    } catch (err) {
      // No bookkeeping table yet: nothing has been applied.
      if (/no such table|does not exist/.test(String((err as Error).message))) return [];
      throw err;
    }
  });
  const at = new Map(rows.map((r) => [r.name, new Date(Number(r.executed_at))]));
  return Object.keys(MIGRATIONS).sort().map((name) => ({ name, executedAt: at.get(name) ?? null }));
}
