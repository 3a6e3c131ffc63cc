import { ConfigError } from '../core/errors.js';
import { isSecretRef } from '../core/secrets.js';
import { systemClock, type Clock } from '../core/clock.js';
import type { MandateConfig } from '../core/config/schema.js';
import { Store } from './store.js';
import { openSqlite } from './sqlite/open.js';
import { openPostgres } from './postgres/pool.js';

export type StoreOptions =
  | {
      driver: 'sqlite';
      /** A file path (its parent directory is created) or ':memory:'. */
      sqlitePath: string;
      /** Time for replay expiry (insertOnce); defaults to the system clock. */
      clock?: Clock;
    }
  | {
      driver: 'postgres';
      url: string;
      /** Pool size (default 10). */
      poolSize?: number;
      /** The hot write statements as named prepared statements (default true; see store.prepared_statements). */
      preparedStatements?: boolean;
      /** Use this PostgreSQL schema (created if missing) through search_path; for isolation. */
      schema?: string;
      clock?: Clock;
    };

/** Connects (without migrating). Throws UnavailableError when the database cannot be reached. */
export async function openStore(opts: StoreOptions): Promise<Store> {
  const clock = opts.clock ?? systemClock;
  const shared = opts.driver === 'sqlite' ? openSqlite(opts.sqlitePath, clock) : await openPostgres(opts, clock);
  return new Store({ db: shared.root, shared, inTx: false });
}

/**
 * Store options from the `store:` config section. `postgres_url` may be a secret reference
 * (env:/file:), resolved with `resolve`; a plain URL is used as written.
 */
export function storeOptionsFromConfig(cfg: MandateConfig['store'], resolve: (ref: string) => string): StoreOptions {
  if (cfg.driver === 'sqlite') return { driver: 'sqlite', sqlitePath: cfg.sqlite_path };
  if (cfg.postgres_url === undefined) {
    throw new ConfigError(['store.postgres_url: required when store.driver is postgres; write instead: env:MANDATE_DATABASE_URL']);
  }
  const url = isSecretRef(cfg.postgres_url) ? resolve(cfg.postgres_url) : cfg.postgres_url;
  return { driver: 'postgres', url, poolSize: cfg.pool_size, preparedStatements: cfg.prepared_statements };
}
