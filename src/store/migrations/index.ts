import type { Migration, MigrationProvider } from 'kysely';
import * as m001 from './001_initial.js';

/**
 * Every migration, by name. Kysely runs them in name order, so names start with a
 * zero-padded version. Listed statically (no filesystem globbing) so that they work from
 * dist/ and from a bundled package alike. Never edit a migration once released: add one.
 */
export const MIGRATIONS: Readonly<Record<string, Migration>> = Object.freeze({
  '001_initial': m001,
});

export class StaticMigrationProvider implements MigrationProvider {
  constructor(private readonly migrations: Readonly<Record<string, Migration>> = MIGRATIONS) {}
  async getMigrations(): Promise<Record<string, Migration>> {
    return { ...this.migrations };
  }
}
