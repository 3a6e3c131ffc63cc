/**
 * Both store dialects for tests: `for (const d of STORE_DIALECTS) describe(`… on ${d.name}`, …)`.
 *
 * `open()` returns a NEW, isolated, migrated Store:
 * - sqlite: a fresh file in a temp directory under os.tmpdir();
 * - postgres: a fresh random schema `t_<hex>` in database `test` on 127.0.0.1:5432 (override
 *   with MANDATE_TEST_PG_URL), so test files running in parallel never see each other's rows.
 *
 * Call `store.close()` when done (e.g. in `after`). For stores made here, close() also removes
 * what open() created: the temp directory, or the schema (DROP SCHEMA … CASCADE). It stays
 * idempotent. Set MANDATE_TEST_DIALECTS=sqlite (comma-separated) to run only some dialects.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { openStore, type Store, type StoreOptions } from '../../src/store/index.js';

export interface StoreDialectCase {
  name: 'sqlite' | 'postgres';
  /** A new, isolated, migrated store; close() cleans it up. */
  open(opts?: { clock?: StoreOptions['clock'] }): Promise<Store>;
  /**
   * A second Store on the same database as `of` (as another instance sharing it would be),
   * not migrated and not cleaning anything up on close. For cross-instance tests.
   */
  openPeer(of: Store, opts?: { clock?: StoreOptions['clock'] }): Promise<Store>;
}

export const TEST_PG_URL = process.env.MANDATE_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** Where each store made here lives, for openPeer. */
const origins = new WeakMap<Store, StoreOptions>();

/**
 * Wraps close() so that it also removes what open() created: `before` runs on the open store
 * (drop the schema), `after` once the connections are closed (remove the file). Runs once.
 */
function withCleanup(store: Store, hooks: { before?: (s: Store) => Promise<void>; after?: () => void }): Store {
  const close = store.close.bind(store);
  let done: Promise<void> | undefined;
  store.close = () =>
    (done ??= (async () => {
      try {
        await hooks.before?.(store);
      } finally {
        await close();
        hooks.after?.();
      }
    })());
  return store;
}

async function migrated(store: Store): Promise<Store> {
  try {
    await store.migrate();
    return store;
  } catch (err) {
    await store.close();
    throw err;
  }
}

async function openPeer(of: Store, opts: { clock?: StoreOptions['clock'] } = {}): Promise<Store> {
  const origin = origins.get(of);
  if (!origin) throw new Error('openPeer: not a store opened by STORE_DIALECTS');
  return openStore({ ...origin, ...opts });
}

const sqliteCase: StoreDialectCase = {
  name: 'sqlite',
  async open(opts = {}) {
    const dir = mkdtempSync(join(tmpdir(), 'mandate-store-'));
    const options: StoreOptions = { driver: 'sqlite', sqlitePath: join(dir, 'mandate.db'), ...opts };
    const store = await openStore(options);
    origins.set(store, options);
    withCleanup(store, { after: () => rmSync(dir, { recursive: true, force: true }) });
    return migrated(store);
  },
  openPeer,
};

const postgresCase: StoreDialectCase = {
  name: 'postgres',
  async open(opts = {}) {
    const schema = `t_${randomBytes(8).toString('hex')}`;
    const options: StoreOptions = { driver: 'postgres', url: TEST_PG_URL, schema, poolSize: 5, ...opts };
    const store = await openStore(options);
    origins.set(store, options);
    withCleanup(store, {
      // Best effort: a store whose server is gone cannot drop its schema.
      before: (s) => sql`drop schema if exists ${sql.id(schema)} cascade`.execute(s.db).then(() => undefined, () => undefined),
    });
    return migrated(store);
  },
  openPeer,
};

const wanted = process.env.MANDATE_TEST_DIALECTS?.split(',').map((s) => s.trim()).filter(Boolean);

export const STORE_DIALECTS: StoreDialectCase[] = [sqliteCase, postgresCase].filter(
  (d) => !wanted || wanted.length === 0 || wanted.includes(d.name),
);
