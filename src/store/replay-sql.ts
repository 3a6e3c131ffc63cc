import type { StoreDialect } from './context.js';

const replaySql = new Map<string, string>();

/**
 * `insert into replay … on conflict (scope, key) do update … where expired returning scope, key`
 * for `n` rows, exactly the text Kysely compiles for the builder form of insertOnce (parameters:
 * scope, key, expires_at per row, then now); one text per dialect and row count, kept. Shared by
 * replay.ts and the SQLite writer thread (sqlite/writer-worker.ts), which is why it is a file of
 * its own: the thread loads it without Kysely and the rest of the store.
 */
export function replayUpsertSql(dialect: StoreDialect, n: number): string {
  const cacheKey = `${dialect}:${n}`;
  let text = replaySql.get(cacheKey);
  if (text === undefined) {
    let k = 0;
    const p = () => (dialect === 'postgres' ? `$${++k}` : '?');
    const rows: string[] = [];
    for (let i = 0; i < n; i++) rows.push(`(${p()}, ${p()}, ${p()})`);
    text = `insert into "replay" ("scope", "key", "expires_at") values ${rows.join(', ')} on conflict ("scope", "key") do update set "expires_at" = "excluded"."expires_at" where "replay"."expires_at" <= ${p()} returning "scope", "key"`;
    if (replaySql.size < 1024) replaySql.set(cacheKey, text);
  }
  return text;
}
