import type { PoolClient } from 'pg';

/**
 * The PostgreSQL-only statements of the hot write paths (SET ingest, the audit log, the signal
 * timeline), each one constant text whatever the number of rows (the rows travel as JSON or array
 * parameters), and the client patch that sends them as named prepared statements.
 */

/**
 * `appendChained` on PostgreSQL, inside its transaction (after the head's row lock): the batch's
 * rows from one JSON parameter and the new head, in one statement (a data-modifying CTE always
 * runs to completion, referenced or not).
 */
export const AUDIT_APPEND_SQL = `with "ins" as (
  insert into "audit" ("seq", "id", "ts", "type", "actor", "subject", "tool", "decision", "trace_id", "data", "prev_hash", "hash")
  select "seq", "id", "ts", "type", "actor", "subject", "tool", "decision", "trace_id", "data", "prev_hash", "hash" from json_populate_recordset(null::"audit", $1::json)
  returning 1
)
update "audit_head" set "seq" = $2, "hash" = $3 where "id" = 1`;

/**
 * `recordSignalTimes` on PostgreSQL: the upsert (first time of each kind wins) and the arrival
 * times of its signals, one primary-key probe per id (a lateral lookup): with `id = any($1)` the
 * planner scanned the whole `signals` table for a batch of ~100 ids up to tens of thousands of
 * rows (2.3 ms at 10 000 rows against 0.7 ms by the index, measured), at every instance's
 * timeline write, ten times a second under SET ingest, growing with the table.
 */
export const SIGNAL_TIMES_SQL = `with "up" as (
  insert into "signal_applications" ("signal_id", "instance_id", "role", "applied_at", "first_denied_at")
  select * from unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
  on conflict ("signal_id", "instance_id") do update set
    "applied_at" = coalesce("signal_applications"."applied_at", "excluded"."applied_at"),
    "first_denied_at" = coalesce("signal_applications"."first_denied_at", "excluded"."first_denied_at")
  returning 1
)
select "u"."id", "s"."received_at" from unnest($1::text[]) as "u"("id")
  cross join lateral (select "received_at" from "signals" where "signals"."id" = "u"."id" limit 1) as "s"`;

/** `recordSetsOnce`: its parameters are arrays, so the text is the same for any number of rows. */
export const RECORD_SETS_SQL = `with "chk" as (
  select (select count(*) from "nhis" where "id" = any($30::text[])) = cardinality($30::text[])
    and not exists (select 1 from "ssf_streams" where "id" = any($31::text[]) and "status" <> 'enabled') as "ok"
), "input" as (
  select "i" - 1 as "i", "scope", "key", "expires_at" from unnest($1::text[], $2::text[], $3::bigint[]) with ordinality as t("scope", "key", "expires_at", "i")
  where (select "ok" from "chk")
), "won" as (
  insert into "replay" ("scope", "key", "expires_at") select "scope", "key", "expires_at" from "input"
  on conflict ("scope", "key") do update set "expires_at" = "excluded"."expires_at" where "replay"."expires_at" <= $4
  returning "scope", "key"
), "won_at" as (
  select "input"."i" from "input" join "won" on "won"."scope" = "input"."scope" and "won"."key" = "input"."key"
), "sig" as (
  insert into "signals" ("id", "nhi_id", "jti", "run_id", "credential_id", "reason", "severity", "action", "source", "txn", "received_at", "applied_at", "status", "error", "data")
  select "id", "nhi_id", "jti", "run_id", "credential_id", "reason", "severity", "action", "source", "txn", "received_at", "applied_at", "status", "error", "data"
  from unnest($5::int[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::bigint[], $17::bigint[], $18::text[], $19::text[], $20::text[])
    as s("of", "id", "nhi_id", "jti", "run_id", "credential_id", "reason", "severity", "action", "source", "txn", "received_at", "applied_at", "status", "error", "data")
  where s."of" in (select "i" from "won_at")
  returning 1
), "rev" as (
  insert into "revocations" ("id", "kind", "target", "not_before", "reason", "signal_id", "created_at", "expires_at")
  select "id", "kind", "target", "not_before", "reason", "signal_id", "created_at", "expires_at"
  from unnest($21::int[], $22::text[], $23::text[], $24::text[], $25::bigint[], $26::text[], $27::text[], $28::bigint[], $29::bigint[])
    as r("of", "id", "kind", "target", "not_before", "reason", "signal_id", "created_at", "expires_at")
  where r."of" in (select "i" from "won_at")
  returning 1
)
select (select "ok" from "chk") as "ok", (select array_agg("i") from "won_at") as "won"`;

/**
 * The statements of the hot write paths (SET ingest, the audit log, the signal timeline) by
 * their constant text, and the name each is prepared under. Kysely sends every query unnamed,
 * so PostgreSQL parses and plans it on every call: 0.3 ms of planning per SET batch for the
 * ingest statement alone (pg_stat_statements, bench/revocation). Named, each is parsed once per
 * connection and its plan cached there (node-postgres keeps track of what a connection has
 * prepared). Only constant texts: a text built per row count would leave a statement behind
 * for every count.
 */
const PREPARED_STATEMENTS: ReadonlyMap<string, string> = new Map([
  [RECORD_SETS_SQL, 'mandate_record_sets_v1'],
  [AUDIT_APPEND_SQL, 'mandate_audit_append_v1'],
  [SIGNAL_TIMES_SQL, 'mandate_signal_times_v1'],
]);

/** On each new pool connection: queries with one of PREPARED_STATEMENTS' texts go as that named statement. */
export function preparesHotStatements(client: PoolClient): void {
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  (client as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
    const [text, values] = args;
    const name = typeof text === 'string' && args.length <= 2 ? PREPARED_STATEMENTS.get(text) : undefined;
    return name === undefined ? query(...args) : query({ name, text, values });
  };
}

