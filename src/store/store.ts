import { mkdirSync } from 'node:fs';
import { dirname, resolve as resolvePath } from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import pg from 'pg';
import {
  CompiledQuery, Kysely, PostgresDialect, SqliteDialect, SqliteDriver, sql, type DatabaseConnection, type Driver, type Expression,
  type SqlBool, type SqliteDialectConfig,
} from 'kysely';
import { ConfigError, MandateError, NotFoundError, UnavailableError } from '../core/errors.js';
import { chainHash } from '../core/audit-chain.js';
import { isSecretRef } from '../core/secrets.js';
import { systemClock, type Clock } from '../core/clock.js';
import type { MandateConfig } from '../core/config/schema.js';
import type { ReplayStore } from '../core/ports/replay.js';
import type {
  CredentialRecord, GrantRecord, InventoryStore, NhiFilter, NhiRecord, ToolRecord,
} from '../inventory/ports.js';
import type { AuditEvent, AuditFilter, AuditHead, AuditRecord, AuditStore } from '../audit/ports.js';
import type { KeyStore, SigningKeyRecord } from '../keys/ports.js';
import type { AdminCredentialRecord, AdminStore } from '../admin/ports.js';
import type { BrokerBatchStore, BrokerStore, IssuedTokenRecord } from '../broker/ports.js';
import type { ApprovalRecord, ApprovalStatus, EnforcementStore, KillSwitchRecord, RestrictionRecord, RevocationRecord } from '../enforcement/ports.js';
import type { ReplayBatchStore, ReplayInsert } from '../core/index.js';
import type {
  SetBatchWrite, SignalApplicationRecord, SignalRecord, SignalStatus, SignalsBatchStore, SignalsStore, SsfEventRecord, SsfEventStatus, SsfStreamDirection, SsfStreamRecord,
  SsfStreamCredentialRecord, SsfSubjectRecord,
} from '../signals/ports.js';
import type {
  FindingFilter, FindingInput, FindingRecord, FindingStatus, FindingUpsertResult, GovernanceStore, MuteRecord, PlaybookActionRecord,
  ProgrammeSnapshotRecord, RiskScoreRecord, Severity,
} from '../governance/ports.js';
import type { AuditTable, Database } from './database.js';
import { MIGRATIONS } from './migrations/index.js';
import { KeyedMutex } from './mutex.js';
import { translateError, type ErrorContext } from './errors.js';
import { replayUpsertSql } from './replay-sql.js';
import { SqliteWriter, type WriterEvent } from './sqlite-writer.js';
import {
  adminFromRow, adminToRow, approvalFromRow, approvalToRow, auditFromRow, credentialFromRow, credentialToRow, grantFromRow, grantToRow,
  issuedTokenFromRow, issuedTokenToRow, keyFromRow, keyToRow, killSwitchFromRow, killSwitchToRow, nhiFromRow, nhiToRow,
  revocationFromRow, revocationToRow, toolFromRow, toolToRow, signalFromRow, signalToRow, restrictionFromRow, restrictionToRow,
  ssfStreamFromRow, ssfStreamToRow, ssfSubjectFromRow, ssfEventFromRow, findingFromRow, muteFromRow, muteToRow, playbookActionFromRow,
  playbookActionToRow, snapshotFromRow,
} from './rows.js';

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

export type StoreDialect = 'sqlite' | 'postgres';

const MIGRATION_TABLE = 'mandate_schema_migrations';
/** First key of the two-key advisory lock form, so that our locks do not collide with other users of the database. */
const PG_LOCK_NAMESPACE = 'mandate';
const SCHEMA_RE = /^[a-z_][a-z0-9_]{0,62}$/;
const PG_INT8_OID = 20;
const AUDIT_QUERY_DEFAULT_LIMIT = 100;
const AUDIT_QUERY_MAX_LIMIT = 10_000;
/** Default and maximum `limit` of the broker's newest-first listings (issued tokens, approvals). */
const LIST_DEFAULT_LIMIT = 100;
const LIST_MAX_LIMIT = 10_000;
/** Rows per INSERT: far below SQLite's (32766) and PostgreSQL's (65535) bound-parameter limits. */
const INSERT_CHUNK = 500;
/** Rows per multi-row insert of the broker's batches (12 columns × 500 stays under both dialects' parameter limits). */
const BATCH_ROWS = INSERT_CHUNK;

/**
 * One connection per SQLite file per process, shared (reference-counted) by every Store
 * opened on that file here. better-sqlite3 is synchronous: with two connections in one
 * process, one that waits for the write lock (busy_timeout) blocks the event loop, so the
 * other can never finish its transaction and release it. Sharing the connection lets Kysely's
 * connection mutex serialize them instead. The in-process withLock mutex is shared the same way.
 */
interface SqliteFile {
  root: Kysely<Database>;
  locks: KeyedMutex;
  refs: number;
  /** The file's writer thread (audit batches, replay records); none for ':memory:'. */
  writer: SqliteWriter | undefined;
}
const sqliteFiles = new Map<string, SqliteFile>();

/** State shared by a Store and the transaction-bound Stores made from it. */
interface Shared {
  readonly dialect: StoreDialect;
  readonly root: Kysely<Database>;
  readonly clock: Clock;
  /** PostgreSQL: the schema the tables live in (search_path); undefined on SQLite. */
  readonly pgSchema: string | undefined;
  readonly locks: KeyedMutex;
  /** SQLite files: the writer thread that appendChained and insertOnceMany use (sqlite-writer.ts). */
  readonly writer: SqliteWriter | undefined;
  /** Gives the connection(s) back: destroys the pool / closes the file when last. */
  readonly release: () => Promise<void>;
  closed: boolean;
}

/**
 * The one storage implementation behind every capability's port, over SQLite (one instance)
 * or PostgreSQL (several instances). Every method maps driver errors: unique violations to
 * ConflictError, foreign-key violations to NotFoundError, an unreachable or closed database
 * to UnavailableError.
 */
export class Store implements InventoryStore, AuditStore, KeyStore, AdminStore, ReplayStore, ReplayBatchStore, BrokerStore, BrokerBatchStore, EnforcementStore, SignalsStore, SignalsBatchStore, GovernanceStore {
  readonly dialect: StoreDialect;
  /**
   * The query builder. Inside `transaction(fn)`, the Store handed to fn has the Kysely
   * Transaction here, so `tx.db` queries and `tx.upsertNhi(…)` share the transaction.
   */
  readonly db: Kysely<Database>;
  readonly #shared: Shared;
  readonly #inTx: boolean;

  /** @internal Use openStore(). */
  constructor(db: Kysely<Database>, shared: Shared, inTx = false) {
    this.db = db;
    this.#shared = shared;
    this.dialect = shared.dialect;
    this.#inTx = inTx;
  }

  // ---------------------------------------------------------------- lifecycle

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
  async migrate(): Promise<string[]> {
    this.#assertRoot('migrate');
    let failed: string | undefined;
    try {
      return await this.#guard({ what: 'migrate' }, () =>
        this.#shared.root.transaction().execute(async (trx) => {
          if (this.dialect === 'postgres') {
            await sql`select pg_advisory_xact_lock(hashtext(${`${this.#shared.pgSchema ?? ''}:mandate-migrate`}))`.execute(trx);
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
            await sql`insert into ${sql.table(MIGRATION_TABLE)} (name, executed_at) values (${name}, ${this.#shared.clock.now()})`.execute(trx);
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

  async migrationStatus(): Promise<{ name: string; executedAt: Date | null }[]> {
    this.#assertRoot('migrationStatus');
    const rows = await this.#guard({ what: 'migration status' }, async () => {
      try {
        return (await sql<{ name: string; executed_at: number | string }>`select name, executed_at from ${sql.table(MIGRATION_TABLE)}`.execute(this.#shared.root)).rows;
      } catch (err) {
        // No bookkeeping table yet: nothing has been applied.
        if (/no such table|does not exist/.test(String((err as Error).message))) return [];
        throw err;
      }
    });
    const at = new Map(rows.map((r) => [r.name, new Date(Number(r.executed_at))]));
    return Object.keys(MIGRATIONS).sort().map((name) => ({ name, executedAt: at.get(name) ?? null }));
  }

  /** Resolves when the database answers; throws UnavailableError otherwise (and after close). */
  async ping(): Promise<void> {
    await this.#guard({ what: 'ping' }, async () => {
      await sql`select 1`.execute(this.db);
    }).catch((err: unknown) => {
      throw err instanceof UnavailableError ? err : new UnavailableError(`store unavailable (ping): ${String(err)}`, { cause: err });
    });
  }

  /** Closes the connections. Idempotent; afterwards every method throws UnavailableError. */
  async close(): Promise<void> {
    this.#assertRoot('close');
    if (this.#shared.closed) return;
    this.#shared.closed = true;
    await this.#shared.release();
  }

  /**
   * Runs fn in one database transaction and hands it a Store bound to that transaction
   * (`tx.db` is the Kysely Transaction; port methods on `tx` run inside it). Commits when fn
   * resolves, rolls back when it throws. Called on a transaction-bound Store, it joins the
   * running transaction. Inside fn use only `tx`: on SQLite the single connection is held by
   * the transaction, so a query through the outer Store would wait forever.
   */
  async transaction<T>(fn: (tx: Store) => Promise<T>): Promise<T> {
    if (this.#inTx) return fn(this);
    return this.#guardAround({ what: 'transaction' }, (own) =>
      this.db.transaction().execute((trx) => own(() => fn(new Store(trx, this.#shared, true)))),
    );
  }

  // ---------------------------------------------------------------- inventory

  async listNhis(filter: NhiFilter = {}): Promise<NhiRecord[]> {
    return this.#guard({ what: 'list nhis' }, async () => {
      let q = this.db.selectFrom('nhis').selectAll();
      if (filter.class !== undefined) q = q.where('class', '=', filter.class);
      if (filter.owner !== undefined) q = q.where('owner', '=', filter.owner);
      if (filter.environment !== undefined) q = q.where('environment', '=', filter.environment);
      if (filter.tier !== undefined) q = q.where('tier', '=', filter.tier);
      if (filter.status !== undefined) q = q.where('status', '=', filter.status);
      if (filter.credentialType !== undefined) {
        const type = filter.credentialType;
        q = q.where('id', 'in', (eb) => eb.selectFrom('credentials').select('nhi_id').where('type', '=', type));
      }
      if (filter.search !== undefined && filter.search !== '') {
        const pattern = `%${escapeLike(filter.search.toLowerCase())}%`;
        // lower() on both sides: LIKE is case-insensitive on SQLite (ASCII) but not on
        // PostgreSQL. ESCAPE is explicit because SQLite has no default escape character.
        const like = (col: 'id' | 'owner' | 'system' | 'description'): Expression<SqlBool> =>
          sql<SqlBool>`lower(${sql.ref(col)}) like ${pattern} escape '\\'`;
        q = q.where((eb) => eb.or([like('id'), like('owner'), like('system'), like('description')]));
      }
      const rows = await q.orderBy('id').execute();
      return rows.map(nhiFromRow);
    });
  }

  async getNhi(id: string): Promise<NhiRecord | undefined> {
    return this.#guard({ what: `get nhi ${id}` }, async () => {
      const row = await this.db.selectFrom('nhis').selectAll().where('id', '=', id).executeTakeFirst();
      return row && nhiFromRow(row);
    });
  }

  async upsertNhi(nhi: NhiRecord): Promise<void> {
    await this.#guard({ what: `upsert nhi ${nhi.id}` }, async () => {
      const row = nhiToRow(nhi);
      await this.db.insertInto('nhis').values(row).onConflict((oc) => oc.column('id').doUpdateSet(excludedSet(row, ['id']))).execute();
    });
  }

  async listCredentials(nhiId?: string): Promise<CredentialRecord[]> {
    return this.#guard({ what: 'list credentials' }, async () => {
      let q = this.db.selectFrom('credentials').selectAll();
      if (nhiId !== undefined) q = q.where('nhi_id', '=', nhiId);
      const rows = await q.orderBy('nhi_id').orderBy('id').execute();
      return rows.map(credentialFromRow);
    });
  }

  async upsertCredential(cred: CredentialRecord): Promise<void> {
    await this.#guard(
      { what: `upsert credential ${cred.id}`, foreignKey: `nhi ${cred.nhiId} does not exist` },
      async () => {
        const row = credentialToRow(cred);
        await this.db
          .insertInto('credentials')
          .values(row)
          .onConflict((oc) => oc.column('id').doUpdateSet(excludedSet(row, ['id'])))
          .execute();
      },
    );
  }

  async deleteCredential(id: string): Promise<boolean> {
    return this.#guard({ what: `delete credential ${id}` }, async () => {
      const r = await this.db.deleteFrom('credentials').where('id', '=', id).executeTakeFirst();
      return Number(r.numDeletedRows) > 0;
    });
  }

  async listGrants(filter: { nhiId?: string; toolId?: string } = {}): Promise<GrantRecord[]> {
    return this.#guard({ what: 'list grants' }, async () => {
      let q = this.db.selectFrom('grants').selectAll();
      if (filter.nhiId !== undefined) q = q.where('nhi_id', '=', filter.nhiId);
      if (filter.toolId !== undefined) q = q.where('tool_id', '=', filter.toolId);
      const rows = await q.orderBy('nhi_id').orderBy('tool_id').execute();
      return rows.map(grantFromRow);
    });
  }

  async getGrant(id: string): Promise<GrantRecord | undefined> {
    return this.#guard({ what: `get grant ${id}` }, async () => {
      const row = await this.db.selectFrom('grants').selectAll().where('id', '=', id).executeTakeFirst();
      return row && grantFromRow(row);
    });
  }

  async upsertGrant(grant: GrantRecord): Promise<void> {
    await this.#guard(
      {
        what: `upsert grant ${grant.id}`,
        // Only the id conflict is an upsert; another grant for the same pair is a conflict.
        unique: `a grant of tool ${grant.toolId} to nhi ${grant.nhiId} already exists under another id`,
        foreignKey: `nhi ${grant.nhiId} or tool ${grant.toolId} does not exist`,
      },
      async () => {
        const row = grantToRow(grant);
        await this.db.insertInto('grants').values(row).onConflict((oc) => oc.column('id').doUpdateSet(excludedSet(row, ['id']))).execute();
      },
    );
  }

  async deleteGrant(id: string): Promise<boolean> {
    return this.#guard({ what: `delete grant ${id}` }, async () => {
      const r = await this.db.deleteFrom('grants').where('id', '=', id).executeTakeFirst();
      return Number(r.numDeletedRows) > 0;
    });
  }

  /** Moves last_used_at forward only, so that late or concurrent touches never move it back. */
  async touchGrant(id: string, at: number): Promise<void> {
    await this.#guard({ what: `touch grant ${id}` }, async () => {
      await this.db
        .updateTable('grants')
        .set({ last_used_at: at })
        .where('id', '=', id)
        .where((eb) => eb.or([eb('last_used_at', 'is', null), eb('last_used_at', '<', at)]))
        .execute();
    });
  }

  async listTools(): Promise<ToolRecord[]> {
    return this.#guard({ what: 'list tools' }, async () => {
      const rows = await this.db.selectFrom('tools').selectAll().orderBy('id').execute();
      return rows.map(toolFromRow);
    });
  }

  async getTool(id: string): Promise<ToolRecord | undefined> {
    return this.#guard({ what: `get tool ${id}` }, async () => {
      const row = await this.db.selectFrom('tools').selectAll().where('id', '=', id).executeTakeFirst();
      return row && toolFromRow(row);
    });
  }

  async upsertTool(tool: ToolRecord): Promise<void> {
    await this.#guard({ what: `upsert tool ${tool.id}` }, async () => {
      const row = toolToRow(tool);
      await this.db.insertInto('tools').values(row).onConflict((oc) => oc.column('id').doUpdateSet(excludedSet(row, ['id']))).execute();
    });
  }

  /** Deletes the tool and (by cascade) its grants. */
  async deleteTool(id: string): Promise<boolean> {
    return this.#guard({ what: `delete tool ${id}` }, async () => {
      const r = await this.db.deleteFrom('tools').where('id', '=', id).executeTakeFirst();
      return Number(r.numDeletedRows) > 0;
    });
  }

  // ---------------------------------------------------------------- audit

  async appendChained(
    events: AuditEvent[],
    chain: (prevHash: string, rec: Omit<AuditRecord, 'hash' | 'prevHash'>) => string,
  ): Promise<AuditRecord[]> {
    if (events.length === 0) return [];
    const writer = this.#shared.writer;
    if (writer && !this.#inTx && chain === chainHash && events.every(threadWritable)) {
      return this.#guard({ what: 'append audit', unique: 'append audit: an event id is already in the log' }, async () => {
        // On the writer thread (same transaction, same chain, same rows; see sqlite-writer.ts).
        const r = await writer.append(events.map(writerEvent));
        let prevHash = r.prevHash;
        return events.map((ev, i) => {
          const hash = r.hashes[i]!;
          const rec: AuditRecord = {
            seq: r.firstSeq + i, id: ev.id, ts: ev.ts, type: ev.type, actor: ev.actor ?? null, subject: ev.subject ?? null, tool: ev.tool ?? null,
            decision: ev.decision ?? null, traceId: ev.traceId ?? null, data: ev.data, prevHash, hash,
          };
          prevHash = hash;
          return rec;
        });
      });
    }
    return this.#guard({ what: 'append audit', unique: 'append audit: an event id is already in the log' }, () =>
      this.transaction(async (tx) => {
        const trx = tx.db;
        // Take the chain lock before reading the head. PostgreSQL: a row lock on the single
        // head row, held to commit. SQLite: Kysely begins a DEFERRED transaction, so write
        // first: the no-op UPDATE takes the database's write lock (waiting up to
        // busy_timeout), and the head we then read cannot change under us. Reading first and
        // writing later could fail with SQLITE_BUSY instead of waiting.
        let head: { seq: number; hash: string } | undefined;
        if (this.dialect === 'postgres') {
          head = await trx.selectFrom('audit_head').select(['seq', 'hash']).where('id', '=', 1).forUpdate().executeTakeFirst();
        } else {
          await trx.updateTable('audit_head').set((eb) => ({ seq: eb.ref('seq') })).where('id', '=', 1).execute();
          head = await trx.selectFrom('audit_head').select(['seq', 'hash']).where('id', '=', 1).executeTakeFirst();
        }
        if (!head) throw new MandateError('ERR_STORE_CORRUPT', 'audit_head row is missing: was the store migrated?');

        let prevHash = head.hash;
        let seq = Number(head.seq);
        const out: AuditRecord[] = [];
        const texts: string[] = [];
        for (const ev of events) {
          seq += 1;
          // Hash exactly what will be read back: the data after a JSON round trip (undefined
          // dropped, Dates as strings) and absent fields as null. Otherwise a verifier that
          // recomputes the chain from stored rows would disagree with the hash written here.
          // An event from the audit log carries its data's canonical JSON (dataJson, computed
          // once when it was recorded, from data that is already plain JSON): hashed and stored
          // as it is. Other callers' data gets the round trip here.
          const dataJson = typeof ev.dataJson === 'string' ? ev.dataJson : undefined;
          const rec: Omit<AuditRecord, 'hash' | 'prevHash'> = {
            seq,
            id: ev.id,
            ts: ev.ts,
            type: ev.type,
            actor: ev.actor ?? null,
            subject: ev.subject ?? null,
            tool: ev.tool ?? null,
            decision: ev.decision ?? null,
            traceId: ev.traceId ?? null,
            data: dataJson !== undefined ? ev.data : (JSON.parse(JSON.stringify(ev.data ?? {})) as Record<string, unknown>),
          };
          const hash = chain(prevHash, dataJson !== undefined ? { ...rec, dataJson } : rec);
          out.push({ ...rec, prevHash, hash });
          texts.push(dataJson ?? JSON.stringify(rec.data));
          prevHash = hash;
        }
        const rows: AuditTable[] = out.map((r, i) => ({
          seq: r.seq, id: r.id, ts: r.ts, type: r.type, actor: r.actor, subject: r.subject, tool: r.tool,
          decision: r.decision, trace_id: r.traceId, data: texts[i]!, prev_hash: r.prevHash, hash: r.hash,
        }));
        if (this.dialect === 'postgres') {
          // ONE statement for the rows and the new head, the rows as one JSON parameter: no
          // query text per row count, no per-value query tree (the audit log writes two records
          // per accepted SET, a record per proxied call).
          await trx.executeQuery(CompiledQuery.raw(AUDIT_APPEND_SQL, [JSON.stringify(rows), seq, prevHash]));
          return out;
        }
        for (let i = 0; i < rows.length; i += INSERT_CHUNK) {
          await trx.insertInto('audit').values(rows.slice(i, i + INSERT_CHUNK)).execute();
        }
        await trx.updateTable('audit_head').set({ seq, hash: prevHash }).where('id', '=', 1).execute();
        return out;
      }),
    );
  }

  async readAudit(fromSeq: number, limit: number): Promise<AuditRecord[]> {
    return this.#guard({ what: 'read audit' }, async () => {
      if (limit <= 0) return [];
      const rows = await this.db.selectFrom('audit').selectAll().where('seq', '>=', fromSeq).orderBy('seq', 'asc').limit(limit).execute();
      return rows.map(auditFromRow);
    });
  }

  async auditHead(): Promise<AuditHead> {
    return this.#guard({ what: 'audit head' }, async () => {
      const head = await this.db.selectFrom('audit_head').select(['seq', 'hash']).where('id', '=', 1).executeTakeFirst();
      if (!head) throw new MandateError('ERR_STORE_CORRUPT', 'audit_head row is missing: was the store migrated?');
      return { seq: Number(head.seq), hash: head.hash };
    });
  }

  /** Filters combine with AND; `limit` defaults to 100 and is capped at 10000. */
  async queryAudit(filter: AuditFilter): Promise<AuditRecord[]> {
    return this.#guard({ what: 'query audit' }, async () => {
      let q = this.db.selectFrom('audit').selectAll();
      if (filter.type !== undefined) q = q.where('type', '=', filter.type);
      if (filter.actor !== undefined) q = q.where('actor', '=', filter.actor);
      if (filter.subject !== undefined) q = q.where('subject', '=', filter.subject);
      if (filter.tool !== undefined) q = q.where('tool', '=', filter.tool);
      if (filter.decision !== undefined) q = q.where('decision', '=', filter.decision);
      if (filter.traceId !== undefined) q = q.where('trace_id', '=', filter.traceId);
      if (filter.since !== undefined) q = q.where('ts', '>=', filter.since);
      if (filter.until !== undefined) q = q.where('ts', '<=', filter.until);
      const limit = Math.min(Math.max(Math.trunc(filter.limit ?? AUDIT_QUERY_DEFAULT_LIMIT), 0), AUDIT_QUERY_MAX_LIMIT);
      if (limit === 0) return [];
      const rows = await q.orderBy('seq', filter.order === 'asc' ? 'asc' : 'desc').limit(limit).execute();
      return rows.map(auditFromRow);
    });
  }

  // ---------------------------------------------------------------- keys

  async listSigningKeys(): Promise<SigningKeyRecord[]> {
    return this.#guard({ what: 'list signing keys' }, async () => {
      const rows = await this.db.selectFrom('signing_keys').selectAll().orderBy('created_at').orderBy('kid').execute();
      return rows.map(keyFromRow);
    });
  }

  async insertSigningKey(key: SigningKeyRecord): Promise<void> {
    await this.#guard({ what: `insert signing key ${key.kid}`, unique: `signing key ${key.kid} already exists` }, async () => {
      await this.db.insertInto('signing_keys').values(keyToRow(key)).execute();
    });
  }

  /** Sets only the fields present in patch; throws NotFoundError for an unknown kid. */
  async updateSigningKey(kid: string, patch: { retiresAt?: number | null; expiresAt?: number | null }): Promise<void> {
    await this.#guard({ what: `update signing key ${kid}` }, async () => {
      const set: { retires_at?: number | null; expires_at?: number | null } = {};
      if ('retiresAt' in patch && patch.retiresAt !== undefined) set.retires_at = patch.retiresAt;
      if ('expiresAt' in patch && patch.expiresAt !== undefined) set.expires_at = patch.expiresAt;
      if (Object.keys(set).length === 0) {
        const exists = await this.db.selectFrom('signing_keys').select('kid').where('kid', '=', kid).executeTakeFirst();
        if (!exists) throw new NotFoundError(`signing key ${kid} does not exist`);
        return;
      }
      const r = await this.db.updateTable('signing_keys').set(set).where('kid', '=', kid).executeTakeFirst();
      if (Number(r.numUpdatedRows) === 0) throw new NotFoundError(`signing key ${kid} does not exist`);
    });
  }

  /** Deleting an unknown kid is not an error. */
  async deleteSigningKey(kid: string): Promise<void> {
    await this.#guard({ what: `delete signing key ${kid}` }, async () => {
      await this.db.deleteFrom('signing_keys').where('kid', '=', kid).execute();
    });
  }

  /**
   * Runs fn while holding the lock `name`.
   *
   * PostgreSQL: a session advisory lock on a dedicated pooled connection, held while fn runs
   * (fn uses the store's normal methods, i.e. other pooled connections, so a transaction-scoped
   * lock would not cover them), released in finally. If that connection dies, PostgreSQL
   * drops the lock with it. An in-process mutex is taken first so that concurrent callers in
   * this process wait in memory instead of each pinning a pool connection. The key includes
   * the schema, so isolated test schemas never contend. On a transaction-bound Store, the
   * transaction-scoped lock (`pg_advisory_xact_lock`) is used and is held until commit.
   *
   * SQLite: an in-process mutex, shared by every Store on the same file in this process; one
   * process owns a SQLite file (another process would not see it). Not re-entrant.
   */
  async withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const ctx = { what: `lock ${name}` };
    this.#assertOpen(ctx.what);
    return this.#shared.locks.run(name, () => {
      if (this.dialect === 'sqlite') return fn();
      const key = `${this.#shared.pgSchema ?? ''}:${name}`;
      return this.#guardAround(ctx, async (own) => {
        if (this.#inTx) {
          await sql`select pg_advisory_xact_lock(hashtext(${PG_LOCK_NAMESPACE}), hashtext(${key}))`.execute(this.db);
          return own(fn);
        }
        return this.db.connection().execute(async (conn) => {
          await sql`select pg_advisory_lock(hashtext(${PG_LOCK_NAMESPACE}), hashtext(${key}))`.execute(conn);
          try {
            return await own(fn);
          } finally {
            // If this fails the connection is gone, and PostgreSQL has already dropped the lock
            // (possibly while fn ran): the error (UnavailableError) is then the right outcome.
            await sql`select pg_advisory_unlock(hashtext(${PG_LOCK_NAMESPACE}), hashtext(${key}))`.execute(conn);
          }
        });
      });
    });
  }

  // ---------------------------------------------------------------- admin

  async countAdminCredentials(): Promise<number> {
    return this.#guard({ what: 'count admin credentials' }, async () => {
      const r = await this.db.selectFrom('admin_credentials').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow();
      return Number(r.n);
    });
  }

  async insertAdminCredential(rec: AdminCredentialRecord): Promise<void> {
    await this.#guard({ what: `insert admin credential ${rec.id}`, unique: `admin credential ${rec.id} already exists` }, async () => {
      await this.db.insertInto('admin_credentials').values(adminToRow(rec)).execute();
    });
  }

  async getAdminCredential(id: string): Promise<AdminCredentialRecord | undefined> {
    return this.#guard({ what: `get admin credential ${id}` }, async () => {
      const row = await this.db.selectFrom('admin_credentials').selectAll().where('id', '=', id).executeTakeFirst();
      return row && adminFromRow(row);
    });
  }

  async listAdminCredentials(): Promise<AdminCredentialRecord[]> {
    return this.#guard({ what: 'list admin credentials' }, async () => {
      const rows = await this.db.selectFrom('admin_credentials').selectAll().orderBy('created_at').orderBy('id').execute();
      return rows.map(adminFromRow);
    });
  }

  /** Moves last_used_at forward only. */
  async touchAdminCredential(id: string, at: number): Promise<void> {
    await this.#guard({ what: `touch admin credential ${id}` }, async () => {
      await this.db
        .updateTable('admin_credentials')
        .set({ last_used_at: at })
        .where('id', '=', id)
        .where((eb) => eb.or([eb('last_used_at', 'is', null), eb('last_used_at', '<', at)]))
        .execute();
    });
  }

  /** True when the credential exists (it is revoked afterwards, whether or not it was before; the first revocation time is kept). */
  async revokeAdminCredential(id: string, at: number): Promise<boolean> {
    return this.#guard({ what: `revoke admin credential ${id}` }, async () => {
      const r = await this.db.updateTable('admin_credentials')
        .set((eb) => ({ disabled: 1, revoked_at: eb.fn.coalesce('revoked_at', eb.val(at)) }))
        .where('id', '=', id).executeTakeFirst();
      return Number(r.numUpdatedRows) > 0;
    });
  }

  /** True when a credential that is not revoked got the new end. */
  async setAdminCredentialExpiry(id: string, expiresAt: number): Promise<boolean> {
    return this.#guard({ what: `set the expiry of admin credential ${id}` }, async () => {
      const r = await this.db.updateTable('admin_credentials').set({ expires_at: expiresAt })
        .where('id', '=', id).where('disabled', '=', 0).where('revoked_at', 'is', null).executeTakeFirst();
      return Number(r.numUpdatedRows) > 0;
    });
  }

  // ---------------------------------------------------------------- broker

  async recordIssuedToken(t: IssuedTokenRecord): Promise<void> {
    await this.#guard({ what: `record issued token ${t.jti}`, unique: `issued token ${t.jti} already exists` }, async () => {
      await this.db.insertInto('issued_tokens').values(issuedTokenToRow(t)).execute();
    });
  }

  /**
   * Many issued tokens in one multi-row INSERT (the broker writes them in batches, off the
   * request path). ON CONFLICT DO NOTHING: a batch retried after an unacknowledged commit
   * must not fail on the rows it already wrote.
   */
  async recordIssuedTokens(tokens: readonly IssuedTokenRecord[]): Promise<void> {
    if (tokens.length === 0) return;
    await this.#guard({ what: `record ${tokens.length} issued tokens` }, async () => {
      for (let i = 0; i < tokens.length; i += BATCH_ROWS) {
        const rows = tokens.slice(i, i + BATCH_ROWS).map(issuedTokenToRow);
        await this.db.insertInto('issued_tokens').values(rows).onConflict((oc) => oc.column('jti').doNothing()).execute();
      }
    });
  }

  async getIssuedToken(jti: string): Promise<IssuedTokenRecord | undefined> {
    return this.#guard({ what: `get issued token ${jti}` }, async () => {
      const row = await this.db.selectFrom('issued_tokens').selectAll().where('jti', '=', jti).executeTakeFirst();
      return row && issuedTokenFromRow(row);
    });
  }

  /** Newest first (issued_at, then jti, descending); `limit` defaults to 100 and is capped at 10000. */
  async listIssuedTokens(filter: { nhiId?: string; audience?: string; activeAt?: number; limit?: number }): Promise<IssuedTokenRecord[]> {
    return this.#guard({ what: 'list issued tokens' }, async () => {
      const limit = clampLimit(filter.limit);
      if (limit === 0) return [];
      let q = this.db.selectFrom('issued_tokens').selectAll();
      if (filter.nhiId !== undefined) q = q.where('nhi_id', '=', filter.nhiId);
      if (filter.audience !== undefined) q = q.where('audience', '=', filter.audience);
      if (filter.activeAt !== undefined) q = q.where('expires_at', '>', filter.activeAt);
      const rows = await q.orderBy('issued_at', 'desc').orderBy('jti', 'desc').limit(limit).execute();
      return rows.map(issuedTokenFromRow);
    });
  }

  async addRevocation(r: RevocationRecord): Promise<void> {
    await this.#guard({ what: `add revocation ${r.id}`, unique: `revocation ${r.id} already exists` }, async () => {
      await this.db.insertInto('revocations').values(revocationToRow(r)).execute();
    });
  }

  async addRevocations(records: readonly RevocationRecord[]): Promise<void> {
    if (records.length === 0) return;
    await this.#guard({ what: `add ${records.length} revocations`, unique: 'a revocation already exists' }, async () => {
      for (let i = 0; i < records.length; i += BATCH_ROWS) {
        await this.db.insertInto('revocations').values(records.slice(i, i + BATCH_ROWS).map(revocationToRow)).execute();
      }
    });
  }

  /** Not expired at `now`: expires_at null or > now. Oldest first (created_at, then id). */
  async listRevocations(now: number, opts: { createdSince?: number } = {}): Promise<RevocationRecord[]> {
    return this.#guard({ what: 'list revocations' }, async () => {
      let q = this.db
        .selectFrom('revocations')
        .selectAll()
        .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]));
      if (opts.createdSince !== undefined) q = q.where('created_at', '>=', opts.createdSince);
      const rows = await q
        .orderBy('created_at', 'asc')
        .orderBy('id', 'asc')
        .execute();
      return rows.map(revocationFromRow);
    });
  }

  /** Deletes the revocations expired at `now` (expires_at <= now, the complement of listRevocations). */
  async purgeRevocations(now: number): Promise<number> {
    return this.#guard({ what: 'purge revocations' }, async () => {
      const r = await this.db.deleteFrom('revocations').where('expires_at', 'is not', null).where('expires_at', '<=', now).executeTakeFirst();
      return Number(r.numDeletedRows);
    });
  }

  async addKillSwitch(k: KillSwitchRecord): Promise<void> {
    await this.#guard({ what: `add kill switch ${k.id}`, unique: `kill switch ${k.id} already exists` }, async () => {
      await this.db.insertInto('kill_switches').values(killSwitchToRow(k)).execute();
    });
  }

  /** One conditional UPDATE (… AND lifted_at IS NULL): of concurrent lifts, exactly one gets true. */
  async liftKillSwitch(id: string, liftedBy: string, at: number): Promise<boolean> {
    return this.#guard({ what: `lift kill switch ${id}` }, async () => {
      const r = await this.db
        .updateTable('kill_switches')
        .set({ lifted_at: at, lifted_by: liftedBy })
        .where('id', '=', id)
        .where('lifted_at', 'is', null)
        .executeTakeFirst();
      return Number(r.numUpdatedRows) > 0;
    });
  }

  /** Oldest first (created_at, then id); lifted ones too unless `activeOnly`. */
  async listKillSwitches(opts: { activeOnly?: boolean } = {}): Promise<KillSwitchRecord[]> {
    return this.#guard({ what: 'list kill switches' }, async () => {
      let q = this.db.selectFrom('kill_switches').selectAll();
      if (opts.activeOnly) q = q.where('lifted_at', 'is', null);
      const rows = await q.orderBy('created_at', 'asc').orderBy('id', 'asc').execute();
      return rows.map(killSwitchFromRow);
    });
  }

  async createApproval(a: ApprovalRecord): Promise<void> {
    await this.#guard({ what: `create approval ${a.id}`, unique: `approval ${a.id} already exists` }, async () => {
      await this.db.insertInto('approvals').values(approvalToRow(a)).execute();
    });
  }

  async getApproval(id: string): Promise<ApprovalRecord | undefined> {
    return this.#guard({ what: `get approval ${id}` }, async () => {
      const row = await this.db.selectFrom('approvals').selectAll().where('id', '=', id).executeTakeFirst();
      return row && approvalFromRow(row);
    });
  }

  /**
   * Newest first (requested_at, then id, descending); `limit` defaults to 100 and is capped at
   * 10000. `status` matches the stored status: a pending request past its expiry is still
   * stored as pending (nothing rewrites it), so it is listed under `pending`.
   */
  async listApprovals(filter: { status?: ApprovalStatus; nhiId?: string; limit?: number } = {}): Promise<ApprovalRecord[]> {
    return this.#guard({ what: 'list approvals' }, async () => {
      const limit = clampLimit(filter.limit);
      if (limit === 0) return [];
      let q = this.db.selectFrom('approvals').selectAll();
      if (filter.status !== undefined) q = q.where('status', '=', filter.status);
      if (filter.nhiId !== undefined) q = q.where('nhi_id', '=', filter.nhiId);
      const rows = await q.orderBy('requested_at', 'desc').orderBy('id', 'desc').limit(limit).execute();
      return rows.map(approvalFromRow);
    });
  }

  async findApprovals(key: { nhiId: string; toolId: string; action: string; argsDigest: string }, at: number): Promise<ApprovalRecord[]> {
    return this.#guard({ what: 'find approvals' }, async () => {
      const rows = await this.db.selectFrom('approvals').selectAll()
        .where('nhi_id', '=', key.nhiId)
        .where('tool_id', '=', key.toolId)
        .where('action', '=', key.action)
        .where('args_digest', '=', key.argsDigest)
        .where('status', 'in', ['pending', 'approved', 'denied'])
        .where('expires_at', '>', at)
        .orderBy('requested_at', 'desc').orderBy('id', 'desc')
        // A call has one pending request at a time (the gate reuses it), so live rows per key are few.
        .limit(100)
        .execute();
      return rows.map(approvalFromRow);
    });
  }

  /**
   * One conditional UPDATE … WHERE id = ? AND status = 'pending' AND expires_at > decidedAt,
   * RETURNING the row: atomic on both dialects (PostgreSQL re-checks the WHERE against the
   * winner's row under READ COMMITTED; SQLite has a single writer), so of concurrent deciders
   * exactly one gets the record. "Unexpired" is judged at `decidedAt`, the caller's clock.
   */
  async decideApproval(
    id: string,
    d: { status: 'approved' | 'denied'; decidedBy: string; decidedAt: number; reason: string | null },
  ): Promise<ApprovalRecord | undefined> {
    return this.#guard({ what: `decide approval ${id}` }, async () => {
      const row = await this.db
        .updateTable('approvals')
        .set({ status: d.status, decided_by: d.decidedBy, decided_at: d.decidedAt, reason: d.reason ?? null })
        .where('id', '=', id)
        .where('status', '=', 'pending')
        .where('expires_at', '>', d.decidedAt)
        .returningAll()
        .executeTakeFirst();
      return row && approvalFromRow(row);
    });
  }

  /**
   * One conditional UPDATE … WHERE id = ? AND status = 'approved' AND redeemed_at IS NULL AND
   * expires_at > at; true when it changed the row, so exactly one of concurrent callers wins
   * (same reasoning as decideApproval).
   */
  async redeemApproval(id: string, at: number): Promise<boolean> {
    return this.#guard({ what: `redeem approval ${id}` }, async () => {
      const rows = await this.db
        .updateTable('approvals')
        .set({ status: 'redeemed', redeemed_at: at })
        .where('id', '=', id)
        .where('status', '=', 'approved')
        .where('redeemed_at', 'is', null)
        .where('expires_at', '>', at)
        .returning('id')
        .execute();
      return rows.length === 1;
    });
  }

  // ---------------------------------------------------------------- signals

  async insertSignal(sig: SignalRecord): Promise<void> {
    await this.#guard({ what: `insert signal ${sig.id}`, unique: `signal ${sig.id} already exists` }, async () => {
      await this.db.insertInto('signals').values(signalToRow(sig)).execute();
    });
  }

  async insertSignals(sigs: readonly SignalRecord[]): Promise<void> {
    if (sigs.length === 0) return;
    await this.#guard({ what: `insert ${sigs.length} signals`, unique: 'a signal already exists' }, async () => {
      for (let i = 0; i < sigs.length; i += BATCH_ROWS) {
        await this.db.insertInto('signals').values(sigs.slice(i, i + BATCH_ROWS).map(signalToRow)).execute();
      }
    });
  }

  async getSignals(ids: readonly string[]): Promise<SignalRecord[]> {
    if (ids.length === 0) return [];
    return this.#guard({ what: `get ${ids.length} signals` }, async () => {
      const out: SignalRecord[] = [];
      const unique = [...new Set(ids)];
      for (let i = 0; i < unique.length; i += BATCH_ROWS) {
        const rows = await this.db.selectFrom('signals').selectAll().where('id', 'in', unique.slice(i, i + BATCH_ROWS)).execute();
        out.push(...rows.map(signalFromRow));
      }
      return out;
    });
  }

  async knownNhiIds(ids: readonly string[]): Promise<Set<string>> {
    const found = new Set<string>();
    if (ids.length === 0) return found;
    return this.#guard({ what: `look up ${ids.length} nhis` }, async () => {
      const unique = [...new Set(ids)];
      for (let i = 0; i < unique.length; i += BATCH_ROWS) {
        const rows = await this.db.selectFrom('nhis').select('id').where('id', 'in', unique.slice(i, i + BATCH_ROWS)).execute();
        for (const r of rows) found.add(r.id);
      }
      return found;
    });
  }

  async getSignal(id: string): Promise<SignalRecord | undefined> {
    return this.#guard({ what: `get signal ${id}` }, async () => {
      const row = await this.db.selectFrom('signals').selectAll().where('id', '=', id).executeTakeFirst();
      return row && signalFromRow(row);
    });
  }

  /** Newest first (received_at, then id, descending); `limit` defaults to 100 and is capped at 10000. */
  async listSignals(filter: { nhiId?: string; since?: number; limit?: number } = {}): Promise<SignalRecord[]> {
    return this.#guard({ what: 'list signals' }, async () => {
      const limit = clampLimit(filter.limit);
      if (limit === 0) return [];
      let q = this.db.selectFrom('signals').selectAll();
      if (filter.nhiId !== undefined) q = q.where('nhi_id', '=', filter.nhiId);
      if (filter.since !== undefined) q = q.where('received_at', '>=', filter.since);
      const rows = await q.orderBy('received_at', 'desc').orderBy('id', 'desc').limit(limit).execute();
      return rows.map(signalFromRow);
    });
  }

  async updateSignalOutcome(id: string, o: { status: SignalStatus; appliedAt: number | null; error: string | null }): Promise<void> {
    await this.#guard({ what: `update signal ${id}` }, async () => {
      await this.db.updateTable('signals').set({ status: o.status, applied_at: o.appliedAt, error: o.error }).where('id', '=', id).execute();
    });
  }

  /** Upsert that keeps the first applied_at: redeliveries and reloads change nothing. */
  async recordSignalApplied(a: { signalId: string; instanceId: string; role: string; at: number }): Promise<void> {
    await this.#guard({ what: `record signal ${a.signalId} applied` }, async () => {
      await this.db.insertInto('signal_applications')
        .values({ signal_id: a.signalId, instance_id: a.instanceId, role: a.role, applied_at: a.at, first_denied_at: null })
        .onConflict((oc) => oc.columns(['signal_id', 'instance_id']).doUpdateSet({ applied_at: sql`coalesce(signal_applications.applied_at, excluded.applied_at)` }))
        .execute();
    });
  }

  /** Upsert that keeps the first first_denied_at. */
  async recordSignalDenied(a: { signalId: string; instanceId: string; role: string; at: number }): Promise<void> {
    await this.#guard({ what: `record signal ${a.signalId} denial` }, async () => {
      await this.db.insertInto('signal_applications')
        .values({ signal_id: a.signalId, instance_id: a.instanceId, role: a.role, applied_at: null, first_denied_at: a.at })
        .onConflict((oc) => oc.columns(['signal_id', 'instance_id']).doUpdateSet({ first_denied_at: sql`coalesce(signal_applications.first_denied_at, excluded.first_denied_at)` }))
        .execute();
    });
  }

  /**
   * Many applied / first-denial times in one multi-row upsert per chunk, each keeping the first
   * time (coalesce), as recordSignalApplied and recordSignalDenied do one at a time. Rows of
   * the same (signal, instance) are merged first (PostgreSQL refuses to update a row twice in
   * one statement); the earliest time of each kind wins.
   */
  async recordSignalTimes(rows: readonly { signalId: string; instanceId: string; role: string; appliedAt: number | null; firstDeniedAt: number | null }[]): Promise<Map<string, number>> {
    const received = new Map<string, number>();
    if (rows.length === 0) return received;
    const min = (a: number | null, b: number | null) => (a === null ? b : b === null ? a : Math.min(a, b));
    const merged = new Map<string, { signal_id: string; instance_id: string; role: string; applied_at: number | null; first_denied_at: number | null }>();
    for (const r of rows) {
      const k = `${r.signalId}\u0000${r.instanceId}`;
      const m = merged.get(k);
      if (m) {
        m.applied_at = min(m.applied_at, r.appliedAt);
        m.first_denied_at = min(m.first_denied_at, r.firstDeniedAt);
      } else merged.set(k, { signal_id: r.signalId, instance_id: r.instanceId, role: r.role, applied_at: r.appliedAt, first_denied_at: r.firstDeniedAt });
    }
    const all = [...merged.values()];
    await this.#guard({ what: `record ${all.length} signal times` }, async () => {
      if (this.dialect === 'postgres') {
        // One statement, every column one array parameter: the upsert and the signals' arrival times.
        const { rows: back } = await this.db.executeQuery<{ id: string; received_at: string | number }>(CompiledQuery.raw(SIGNAL_TIMES_SQL, [
          all.map((a) => a.signal_id), all.map((a) => a.instance_id), all.map((a) => a.role), all.map((a) => a.applied_at), all.map((a) => a.first_denied_at),
        ]));
        for (const b of back) received.set(b.id, Number(b.received_at));
        return;
      }
      for (let i = 0; i < all.length; i += BATCH_ROWS) {
        await this.db.insertInto('signal_applications').values(all.slice(i, i + BATCH_ROWS))
          .onConflict((oc) => oc.columns(['signal_id', 'instance_id']).doUpdateSet({
            applied_at: sql`coalesce(signal_applications.applied_at, excluded.applied_at)`,
            first_denied_at: sql`coalesce(signal_applications.first_denied_at, excluded.first_denied_at)`,
          }))
          .execute();
      }
      const ids = [...new Set(all.map((a) => a.signal_id))];
      for (let i = 0; i < ids.length; i += BATCH_ROWS) {
        const found = await this.db.selectFrom('signals').select(['id', 'received_at']).where('id', 'in', ids.slice(i, i + BATCH_ROWS)).execute();
        for (const f of found) received.set(f.id, Number(f.received_at));
      }
    });
    return received;
  }

  async listSignalApplications(signalIds: readonly string[]): Promise<SignalApplicationRecord[]> {
    if (signalIds.length === 0) return [];
    return this.#guard({ what: 'list signal applications' }, async () => {
      const rows = await this.db.selectFrom('signal_applications').selectAll().where('signal_id', 'in', [...signalIds])
        .orderBy('signal_id').orderBy('instance_id').execute();
      return rows.map((r) => ({
        signalId: r.signal_id, instanceId: r.instance_id, role: r.role,
        appliedAt: r.applied_at === null ? null : Number(r.applied_at), firstDeniedAt: r.first_denied_at === null ? null : Number(r.first_denied_at),
      }));
    });
  }

  /** One transaction: the NHI's active restrictions are lifted (by the new signal), then the new one is inserted. */
  async addRestriction(r: RestrictionRecord): Promise<void> {
    await this.#guard({ what: `add restriction ${r.id}`, unique: `restriction ${r.id} already exists` }, async () => {
      const write = async (db: Kysely<Database>) => {
        await db.updateTable('restrictions').set({ lifted_at: r.createdAt, lifted_by: `signal:${r.signalId}` })
          .where('nhi_id', '=', r.nhiId).where('lifted_at', 'is', null).execute();
        await db.insertInto('restrictions').values(restrictionToRow(r)).execute();
      };
      if (this.#inTx) await write(this.db);
      else await this.db.transaction().execute(write);
    });
  }

  /** One conditional UPDATE … RETURNING: of concurrent lifts, each active row is lifted once. */
  async liftRestrictions(nhiId: string, liftedBy: string, at: number): Promise<RestrictionRecord[]> {
    return this.#guard({ what: `lift restrictions of ${nhiId}` }, async () => {
      const rows = await this.db.updateTable('restrictions').set({ lifted_at: at, lifted_by: liftedBy })
        .where('nhi_id', '=', nhiId).where('lifted_at', 'is', null).returningAll().execute();
      return rows.map(restrictionFromRow);
    });
  }

  /** Oldest first (created_at, then id). */
  async listRestrictions(opts: { activeOnly?: boolean; nhiId?: string } = {}): Promise<RestrictionRecord[]> {
    return this.#guard({ what: 'list restrictions' }, async () => {
      let q = this.db.selectFrom('restrictions').selectAll();
      if (opts.activeOnly) q = q.where('lifted_at', 'is', null);
      if (opts.nhiId !== undefined) q = q.where('nhi_id', '=', opts.nhiId);
      const rows = await q.orderBy('created_at', 'asc').orderBy('id', 'asc').execute();
      return rows.map(restrictionFromRow);
    });
  }

  async createSsfStream(st: SsfStreamRecord): Promise<void> {
    await this.#guard({ what: `create ssf stream ${st.id}`, unique: `ssf stream ${st.id} already exists` }, async () => {
      await this.db.insertInto('ssf_streams').values(ssfStreamToRow(st)).execute();
    });
  }

  async getSsfStream(id: string): Promise<SsfStreamRecord | undefined> {
    return this.#guard({ what: `get ssf stream ${id}` }, async () => {
      const row = await this.db.selectFrom('ssf_streams').selectAll().where('id', '=', id).executeTakeFirst();
      return row && ssfStreamFromRow(row);
    });
  }

  async listSsfStreams(filter: { direction?: SsfStreamDirection; owner?: string } = {}): Promise<SsfStreamRecord[]> {
    return this.#guard({ what: 'list ssf streams' }, async () => {
      let q = this.db.selectFrom('ssf_streams').selectAll();
      if (filter.direction !== undefined) q = q.where('direction', '=', filter.direction);
      if (filter.owner !== undefined) q = q.where('owner', '=', filter.owner);
      const rows = await q.orderBy('created_at', 'asc').orderBy('id', 'asc').execute();
      return rows.map(ssfStreamFromRow);
    });
  }

  async updateSsfStream(st: SsfStreamRecord): Promise<boolean> {
    return this.#guard({ what: `update ssf stream ${st.id}` }, async () => {
      const r = await this.db.updateTable('ssf_streams')
        .set({ config: JSON.stringify(st.config ?? {}), status: st.status, status_reason: st.statusReason ?? null, updated_at: st.updatedAt })
        .where('id', '=', st.id).executeTakeFirst();
      return Number(r.numUpdatedRows) > 0;
    });
  }

  /** Subjects and events go with it (ON DELETE CASCADE), deleted explicitly too so that no dialect relies on it. */
  async deleteSsfStream(id: string): Promise<boolean> {
    return this.#guard({ what: `delete ssf stream ${id}` }, async () => {
      const del = async (db: Kysely<Database>) => {
        await db.deleteFrom('ssf_subjects').where('stream_id', '=', id).execute();
        await db.deleteFrom('ssf_events').where('stream_id', '=', id).execute();
        await db.deleteFrom('ssf_stream_credentials').where('stream_id', '=', id).execute();
        const r = await db.deleteFrom('ssf_streams').where('id', '=', id).executeTakeFirst();
        return Number(r.numDeletedRows) > 0;
      };
      return this.#inTx ? del(this.db) : this.db.transaction().execute(del);
    });
  }

  async putSsfStreamCredential(c: SsfStreamCredentialRecord): Promise<void> {
    await this.#guard({ what: `set the credential of ssf stream ${c.streamId}` }, async () => {
      await this.db.insertInto('ssf_stream_credentials')
        .values({ stream_id: c.streamId, secret_hash: c.secretHash, created_at: c.createdAt })
        .onConflict((oc) => oc.column('stream_id').doUpdateSet({ secret_hash: c.secretHash, created_at: c.createdAt }))
        .execute();
    });
  }

  async getSsfStreamCredential(streamId: string): Promise<SsfStreamCredentialRecord | undefined> {
    return this.#guard({ what: `get the credential of ssf stream ${streamId}` }, async () => {
      const row = await this.db.selectFrom('ssf_stream_credentials').selectAll().where('stream_id', '=', streamId).executeTakeFirst();
      return row && { streamId: row.stream_id, secretHash: row.secret_hash, createdAt: Number(row.created_at) };
    });
  }

  async addSsfSubject(sub: SsfSubjectRecord): Promise<void> {
    await this.#guard({ what: `add subject to ssf stream ${sub.streamId}` }, async () => {
      await this.db.insertInto('ssf_subjects')
        .values({ stream_id: sub.streamId, subject_key: sub.key, subject: JSON.stringify(sub.subject), nhi_id: sub.nhiId ?? null, created_at: sub.createdAt })
        .onConflict((oc) => oc.columns(['stream_id', 'subject_key']).doNothing())
        .execute();
    });
  }

  async removeSsfSubject(streamId: string, key: string): Promise<boolean> {
    return this.#guard({ what: `remove subject from ssf stream ${streamId}` }, async () => {
      const r = await this.db.deleteFrom('ssf_subjects').where('stream_id', '=', streamId).where('subject_key', '=', key).executeTakeFirst();
      return Number(r.numDeletedRows) > 0;
    });
  }

  async listSsfSubjects(streamId: string): Promise<SsfSubjectRecord[]> {
    return this.#guard({ what: `list subjects of ssf stream ${streamId}` }, async () => {
      const rows = await this.db.selectFrom('ssf_subjects').selectAll().where('stream_id', '=', streamId)
        .orderBy('created_at', 'asc').orderBy('subject_key', 'asc').execute();
      return rows.map(ssfSubjectFromRow);
    });
  }

  /** INSERT … ON CONFLICT (stream_id, jti) DO NOTHING RETURNING: true only for the one that inserted. */
  async enqueueSsfEvent(e: SsfEventRecord): Promise<boolean> {
    return this.#guard({ what: `enqueue ssf event ${e.jti}` }, async () => {
      const rows = await this.db.insertInto('ssf_events')
        .values({
          id: e.id, stream_id: e.streamId, jti: e.jti, set_jwt: e.setJwt, status: e.status, attempts: e.attempts,
          next_attempt_at: e.nextAttemptAt ?? null, last_error: e.lastError ?? null, created_at: e.createdAt,
        })
        .onConflict((oc) => oc.columns(['stream_id', 'jti']).doNothing())
        .returning('id')
        .execute();
      return rows.length === 1;
    });
  }

  async getSsfEvent(id: string): Promise<SsfEventRecord | undefined> {
    return this.#guard({ what: `get ssf event ${id}` }, async () => {
      const row = await this.db.selectFrom('ssf_events').selectAll().where('id', '=', id).executeTakeFirst();
      return row && ssfEventFromRow(row);
    });
  }

  async dueSsfEvents(filter: { streamId?: string; now: number; limit: number }): Promise<SsfEventRecord[]> {
    return this.#guard({ what: 'due ssf events' }, async () => {
      const limit = clampLimit(filter.limit);
      if (limit === 0) return [];
      let q = this.db.selectFrom('ssf_events').selectAll().where('status', '=', 'queued')
        .where((eb) => eb.or([eb('next_attempt_at', 'is', null), eb('next_attempt_at', '<=', filter.now)]));
      if (filter.streamId !== undefined) q = q.where('stream_id', '=', filter.streamId);
      const rows = await q.orderBy('created_at', 'asc').orderBy('id', 'asc').limit(limit).execute();
      return rows.map(ssfEventFromRow);
    });
  }

  /** Compare-and-set on next_attempt_at: concurrent claimers (instances) cannot both win. */
  async claimSsfEvent(id: string, expectedNextAt: number | null, leaseUntil: number): Promise<boolean> {
    return this.#guard({ what: `claim ssf event ${id}` }, async () => {
      const r = await this.db.updateTable('ssf_events').set({ next_attempt_at: leaseUntil })
        .where('id', '=', id).where('status', '=', 'queued')
        .where((eb) => (expectedNextAt === null ? eb('next_attempt_at', 'is', null) : eb('next_attempt_at', '=', expectedNextAt)))
        .executeTakeFirst();
      return Number(r.numUpdatedRows) > 0;
    });
  }

  async updateSsfEvent(id: string, patch: { status: SsfEventStatus; attempts?: number; nextAttemptAt?: number | null; lastError?: string | null }): Promise<void> {
    await this.#guard({ what: `update ssf event ${id}` }, async () => {
      await this.db.updateTable('ssf_events')
        .set({
          status: patch.status,
          ...(patch.attempts !== undefined ? { attempts: patch.attempts } : {}),
          ...(patch.nextAttemptAt !== undefined ? { next_attempt_at: patch.nextAttemptAt } : {}),
          ...(patch.lastError !== undefined ? { last_error: patch.lastError } : {}),
        })
        .where('id', '=', id).execute();
    });
  }

  async settleSsfEvents(streamId: string, jtis: string[], outcome: { status: 'acked' | 'error'; lastError?: string | null }): Promise<number> {
    if (jtis.length === 0) return 0;
    return this.#guard({ what: `settle ssf events of ${streamId}` }, async () => {
      let n = 0;
      for (let i = 0; i < jtis.length; i += INSERT_CHUNK) {
        const r = await this.db.updateTable('ssf_events').set({ status: outcome.status, last_error: outcome.lastError ?? null })
          .where('stream_id', '=', streamId).where('status', '=', 'queued').where('jti', 'in', jtis.slice(i, i + INSERT_CHUNK)).executeTakeFirst();
        n += Number(r.numUpdatedRows);
      }
      return n;
    });
  }

  async listSsfEvents(filter: { streamId?: string; status?: SsfEventStatus; limit?: number }): Promise<SsfEventRecord[]> {
    return this.#guard({ what: 'list ssf events' }, async () => {
      const limit = clampLimit(filter.limit);
      if (limit === 0) return [];
      let q = this.db.selectFrom('ssf_events').selectAll();
      if (filter.streamId !== undefined) q = q.where('stream_id', '=', filter.streamId);
      if (filter.status !== undefined) q = q.where('status', '=', filter.status);
      const rows = await q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(limit).execute();
      return rows.map(ssfEventFromRow);
    });
  }


  // ---------------------------------------------------------------- governance

  /**
   * One transaction: the unresolved finding of (nhi, detection, key) counts the repeat (last
   * seen, count, the higher severity, the newest evidence), unless `lastEvent` shows this event
   * was counted already (an at-least-once redelivery); with none, a new finding is inserted.
   * The count update is conditional on last_event, so two instances counting one event count it once.
   */
  async upsertFinding(f: FindingInput, id: string): Promise<FindingUpsertResult> {
    return this.#guard({ what: `upsert finding ${f.detection} of ${f.nhiId}` }, async () => {
      const run = async (db: Kysely<Database>): Promise<FindingUpsertResult> => {
        const row = await db.selectFrom('detections').selectAll()
          .where('nhi_id', '=', f.nhiId).where('detection', '=', f.detection).where('key', '=', f.key).where('status', '<>', 'resolved')
          .orderBy('first_seen', 'desc').limit(1).executeTakeFirst();
        if (!row) {
          await db.insertInto('detections').values({
            id, nhi_id: f.nhiId, detection: f.detection, key: f.key, severity: f.severity, title: f.title, evidence: JSON.stringify(f.evidence),
            first_seen: f.at, last_seen: f.at, count: 1, status: 'open', status_by: null, status_at: null, status_note: null, last_event: f.eventId,
          }).execute();
          const created = await db.selectFrom('detections').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
          return { finding: findingFromRow(created), outcome: 'created' };
        }
        if (row.last_event === f.eventId) return { finding: findingFromRow(row), outcome: 'duplicate' };
        const severity = SEVERITY_RANK[f.severity] > SEVERITY_RANK[row.severity as Severity] ? f.severity : row.severity;
        const r = await db.updateTable('detections')
          .set((eb) => ({
            count: eb('count', '+', 1), last_seen: Math.max(f.at, Number(row.last_seen)), severity, evidence: JSON.stringify(f.evidence),
            title: f.title, last_event: f.eventId,
          }))
          .where('id', '=', row.id)
          .where((eb) => eb.or([eb('last_event', 'is', null), eb('last_event', '<>', f.eventId)]))
          .executeTakeFirst();
        const after = await db.selectFrom('detections').selectAll().where('id', '=', row.id).executeTakeFirstOrThrow();
        return { finding: findingFromRow(after), outcome: Number(r.numUpdatedRows) > 0 ? 'updated' : 'duplicate' };
      };
      return this.#inTx ? run(this.db) : this.db.transaction().execute(run);
    });
  }

  async getFinding(id: string): Promise<FindingRecord | undefined> {
    return this.#guard({ what: `get finding ${id}` }, async () => {
      const row = await this.db.selectFrom('detections').selectAll().where('id', '=', id).executeTakeFirst();
      return row && findingFromRow(row);
    });
  }

  /** Newest last_seen first (then id); `limit` defaults to 100 and is capped at 10000. */
  async listFindings(filter: FindingFilter = {}): Promise<FindingRecord[]> {
    return this.#guard({ what: 'list findings' }, async () => {
      const limit = clampLimit(filter.limit);
      if (limit === 0) return [];
      let q = this.db.selectFrom('detections').selectAll();
      if (filter.nhiId !== undefined) q = q.where('nhi_id', '=', filter.nhiId);
      if (filter.detection !== undefined) q = q.where('detection', '=', filter.detection);
      if (filter.status !== undefined) q = q.where('status', '=', filter.status);
      if (filter.minSeverity !== undefined) {
        const at = (Object.keys(SEVERITY_RANK) as Severity[]).filter((k) => SEVERITY_RANK[k] >= SEVERITY_RANK[filter.minSeverity!]);
        q = q.where('severity', 'in', at);
      }
      const rows = await q.orderBy('last_seen', 'desc').orderBy('id', 'desc').limit(limit).execute();
      return rows.map(findingFromRow);
    });
  }

  async setFindingStatus(id: string, status: FindingStatus, by: string, at: number, note: string | null): Promise<FindingRecord | undefined> {
    return this.#guard({ what: `set finding ${id} ${status}` }, async () => {
      const r = await this.db.updateTable('detections').set({ status, status_by: by, status_at: at, status_note: note }).where('id', '=', id).executeTakeFirst();
      if (Number(r.numUpdatedRows) === 0) return undefined;
      const row = await this.db.selectFrom('detections').selectAll().where('id', '=', id).executeTakeFirst();
      return row && findingFromRow(row);
    });
  }

  async addMute(m: MuteRecord): Promise<void> {
    await this.#guard({ what: `add mute ${m.id}`, unique: `mute ${m.id} already exists` }, async () => {
      await this.db.insertInto('detection_mutes').values(muteToRow(m)).execute();
    });
  }

  async listMutes(filter: { nhiId?: string; activeAt?: number } = {}): Promise<MuteRecord[]> {
    return this.#guard({ what: 'list mutes' }, async () => {
      let q = this.db.selectFrom('detection_mutes').selectAll();
      if (filter.nhiId !== undefined) q = q.where('nhi_id', '=', filter.nhiId);
      if (filter.activeAt !== undefined) q = q.where('until', '>', filter.activeAt);
      const rows = await q.orderBy('created_at', 'asc').orderBy('id', 'asc').execute();
      return rows.map(muteFromRow);
    });
  }

  async deleteMute(id: string): Promise<boolean> {
    return this.#guard({ what: `delete mute ${id}` }, async () => {
      const r = await this.db.deleteFrom('detection_mutes').where('id', '=', id).executeTakeFirst();
      return Number(r.numDeletedRows) > 0;
    });
  }

  /** INSERT … ON CONFLICT (trigger, playbook) DO NOTHING RETURNING: true only for the one that inserted. */
  async claimPlaybookAction(a: PlaybookActionRecord): Promise<boolean> {
    return this.#guard({ what: `claim playbook action ${a.playbook}` }, async () => {
      const rows = await this.db.insertInto('playbook_actions').values(playbookActionToRow(a))
        .onConflict((oc) => oc.columns(['trigger', 'playbook']).doNothing()).returning('id').execute();
      return rows.length === 1;
    });
  }

  async setPlaybookActionSignal(id: string, signalId: string | null): Promise<void> {
    await this.#guard({ what: `update playbook action ${id}` }, async () => {
      await this.db.updateTable('playbook_actions').set({ signal_id: signalId }).where('id', '=', id).execute();
    });
  }

  async getPlaybookAction(id: string): Promise<PlaybookActionRecord | undefined> {
    return this.#guard({ what: `get playbook action ${id}` }, async () => {
      const row = await this.db.selectFrom('playbook_actions').selectAll().where('id', '=', id).executeTakeFirst();
      return row && playbookActionFromRow(row);
    });
  }

  async listPlaybookActions(filter: { nhiId?: string; limit?: number } = {}): Promise<PlaybookActionRecord[]> {
    return this.#guard({ what: 'list playbook actions' }, async () => {
      const limit = clampLimit(filter.limit);
      if (limit === 0) return [];
      let q = this.db.selectFrom('playbook_actions').selectAll();
      if (filter.nhiId !== undefined) q = q.where('nhi_id', '=', filter.nhiId);
      const rows = await q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(limit).execute();
      return rows.map(playbookActionFromRow);
    });
  }

  /** Conditional on undone_at being null: of concurrent undos, one wins. */
  async markPlaybookActionUndone(id: string, by: string, at: number): Promise<PlaybookActionRecord | undefined> {
    return this.#guard({ what: `undo playbook action ${id}` }, async () => {
      const rows = await this.db.updateTable('playbook_actions').set({ undone_at: at, undone_by: by })
        .where('id', '=', id).where('undone_at', 'is', null).returningAll().execute();
      return rows[0] && playbookActionFromRow(rows[0]);
    });
  }

  async putProgrammeSnapshot(snap: ProgrammeSnapshotRecord): Promise<void> {
    await this.#guard({ what: `put programme snapshot ${snap.day}` }, async () => {
      const row = { day: snap.day, taken_at: snap.takenAt, metrics: JSON.stringify(snap.metrics) };
      await this.db.insertInto('programme_snapshots').values(row).onConflict((oc) => oc.column('day').doUpdateSet(excludedSet(row, ['day']))).execute();
    });
  }

  async listProgrammeSnapshots(sinceDay?: string): Promise<ProgrammeSnapshotRecord[]> {
    return this.#guard({ what: 'list programme snapshots' }, async () => {
      let q = this.db.selectFrom('programme_snapshots').selectAll();
      if (sinceDay !== undefined) q = q.where('day', '>=', sinceDay);
      return (await q.orderBy('day', 'asc').execute()).map(snapshotFromRow);
    });
  }

  /** One statement per row; a row computed earlier than the stored one does not replace it (instances may race). */
  async putRiskScores(rows: readonly RiskScoreRecord[]): Promise<void> {
    if (rows.length === 0) return;
    await this.#guard({ what: `put ${rows.length} risk score(s)` }, async () => {
      const values = rows.map((r) => ({ nhi_id: r.nhiId, score: r.score, computed_at: r.computedAt }));
      await this.db.insertInto('risk_scores').values(values)
        .onConflict((oc) => oc.column('nhi_id')
          .doUpdateSet({ score: sql.ref('excluded.score'), computed_at: sql.ref('excluded.computed_at') })
          .where('risk_scores.computed_at', '<=', sql.ref<number>('excluded.computed_at')))
        .execute();
    });
  }

  async listRiskScores(): Promise<RiskScoreRecord[]> {
    return this.#guard({ what: 'list risk scores' }, async () => {
      const rows = await this.db.selectFrom('risk_scores').selectAll().orderBy('nhi_id', 'asc').execute();
      return rows.map((r) => ({ nhiId: r.nhi_id, score: Number(r.score), computedAt: Number(r.computed_at) }));
    });
  }

  /** Integer division of epoch ms on both dialects (bigint / integer stays an integer). */
  async issuanceByHour(since: number): Promise<Array<{ nhiId: string; hour: number; count: number }>> {
    return this.#guard({ what: 'issuance by hour' }, async () => {
      const hour = sql<number>`issued_at / 3600000`;
      const rows = await this.db.selectFrom('issued_tokens')
        .select(['nhi_id', hour.as('hour'), (eb) => eb.fn.countAll<number>().as('n')])
        .where('issued_at', '>=', since)
        .groupBy(['nhi_id', hour])
        .execute();
      return rows.map((r) => ({ nhiId: r.nhi_id, hour: Number(r.hour), count: Number(r.n) }));
    });
  }

  async denialsByNhi(since: number): Promise<Map<string, number>> {
    return this.#guard({ what: 'denials by nhi' }, async () => {
      const rows = await this.db.selectFrom('audit')
        .select(['subject', (eb) => eb.fn.countAll<number>().as('n')])
        .where('type', 'in', ['token.denied', 'tool.call_denied']).where('ts', '>=', since).where('subject', 'is not', null)
        .groupBy('subject')
        .execute();
      return new Map(rows.map((r) => [r.subject!, Number(r.n)]));
    });
  }

  // ---------------------------------------------------------------- replay

  /**
   * One statement, atomic on both dialects: insert, or, when (scope, key) exists but has
   * expired, take it over. A live record makes the conditional DO UPDATE do nothing, so no row
   * comes back. Under concurrency PostgreSQL serializes the conflicting rows (the losers
   * re-check the WHERE against the winner's row); SQLite has a single writer. RETURNING
   * (rather than the affected-row count) tells whether this call won.
   */
  async insertOnce(scope: string, key: string, expiresAt: number): Promise<boolean> {
    return this.#guard({ what: `replay insert ${scope}` }, async () => {
      const now = this.#shared.clock.now();
      const rows = await this.db
        .insertInto('replay')
        .values({ scope, key, expires_at: expiresAt })
        .onConflict((oc) =>
          oc
            .columns(['scope', 'key'])
            .doUpdateSet((eb) => ({ expires_at: eb.ref('excluded.expires_at') }))
            .where('replay.expires_at', '<=', now),
        )
        .returning('scope')
        .execute();
      return rows.length === 1;
    });
  }

  /**
   * insertOnce for many distinct (scope, key) pairs: one multi-row statement with the same
   * conditional ON CONFLICT … DO UPDATE … WHERE expired, so each row is decided atomically
   * exactly as insertOnce decides it (PostgreSQL serializes conflicting rows across
   * instances; SQLite has one writer). RETURNING names the rows this call won. The keys must
   * be distinct: PostgreSQL refuses to update one row twice in a statement.
   */
  async insertOnceMany(records: readonly ReplayInsert[]): Promise<boolean[]> {
    if (records.length === 0) return [];
    const writer = this.#shared.writer;
    if (writer && !this.#inTx) {
      return this.#guard({ what: `replay insert ${records.length}` }, async () => {
        // The same statement on the writer thread (its commit no longer stops the event loop).
        const flat: unknown[] = [];
        for (const r of records) flat.push(r.scope, r.key, r.expiresAt);
        const won = new Set(await writer.replay(flat, records.length, this.#shared.clock.now()));
        return records.map((r) => won.has(`${r.scope}\u0000${r.key}`));
      });
    }
    return this.#guard({ what: `replay insert ${records.length}` }, async () => {
      const now = this.#shared.clock.now();
      const won = new Set<string>();
      for (let i = 0; i < records.length; i += BATCH_ROWS) {
        const chunk = records.slice(i, i + BATCH_ROWS);
        // The statement Kysely builds for insertOnce, with its text kept per row count (this runs
        // on every DPoP call: building it anew each time was most of the statement's cost).
        const params: unknown[] = [];
        for (const r of chunk) params.push(r.scope, r.key, r.expiresAt);
        params.push(now);
        const { rows: back } = await this.db.executeQuery<{ scope: string; key: string }>(
          CompiledQuery.raw(replayUpsertSql(this.dialect, chunk.length), params),
        );
        for (const b of back) won.add(`${b.scope}\u0000${b.key}`);
      }
      return records.map((r) => won.has(`${r.scope}\u0000${r.key}`));
    });
  }

  /**
   * A group of SETs in ONE statement (PostgreSQL only): when the checks pass (the NHIs exist, the
   * streams are enabled; else nothing is written and undefined returned), data-modifying CTEs insert the replay
   * records (the conditional upsert of `insertOnceMany`, so a record is decided atomically
   * across instances exactly as there), then the signals and revocations of the SETs whose
   * record was inserted (joined on the CTE's RETURNING), with every column passed as one array
   * parameter (`unnest`): one round trip, no BEGIN/COMMIT, no query text built per row count.
   * A statement is atomic: any failure (a duplicate id, a lost connection) writes nothing.
   */
  async recordSetsOnce(w: SetBatchWrite): Promise<boolean[] | undefined> {
    if (w.replay.length === 0) return [];
    if (this.dialect !== 'postgres') throw new MandateError('ERR_STORE_USAGE', 'recordSetsOnce() is for PostgreSQL; use a transaction on SQLite');
    return this.#guard({ what: `record ${w.replay.length} SETs`, unique: 'a signal or revocation already exists' }, async () => {
      const col = <T, V>(rows: readonly T[], f: (r: T) => V): V[] => rows.map(f);
      const sigs = w.signals.map((x) => ({ of: x.of, row: signalToRow(x.rec) }));
      const revs = w.revocations.map((x) => ({ of: x.of, row: revocationToRow(x.rec) }));
      const params: unknown[] = [
        // $1–$4: replay
        col(w.replay, (r) => r.scope), col(w.replay, (r) => r.key), col(w.replay, (r) => r.expiresAt), this.#shared.clock.now(),
        // $5–$20: signals (the SET's index, then the columns)
        col(sigs, (s) => s.of), col(sigs, (s) => s.row.id), col(sigs, (s) => s.row.nhi_id), col(sigs, (s) => s.row.jti), col(sigs, (s) => s.row.run_id),
        col(sigs, (s) => s.row.credential_id), col(sigs, (s) => s.row.reason), col(sigs, (s) => s.row.severity), col(sigs, (s) => s.row.action),
        col(sigs, (s) => s.row.source), col(sigs, (s) => s.row.txn), col(sigs, (s) => s.row.received_at), col(sigs, (s) => s.row.applied_at),
        col(sigs, (s) => s.row.status), col(sigs, (s) => s.row.error), col(sigs, (s) => s.row.data),
        // $21–$29: revocations
        col(revs, (r) => r.of), col(revs, (r) => r.row.id), col(revs, (r) => r.row.kind), col(revs, (r) => r.row.target), col(revs, (r) => r.row.not_before),
        col(revs, (r) => r.row.reason), col(revs, (r) => r.row.signal_id), col(revs, (r) => r.row.created_at), col(revs, (r) => r.row.expires_at),
        // $30, $31: the checks
        [...new Set(w.requireNhis ?? [])], [...new Set(w.requireStreamsEnabled ?? [])],
      ];
      const { rows } = await this.db.executeQuery<{ ok: boolean; won: Array<number | string> | null }>(CompiledQuery.raw(RECORD_SETS_SQL, params));
      const r = rows[0];
      if (!r?.ok) return undefined;
      const won = new Set((r.won ?? []).map(Number));
      return w.replay.map((_, i) => won.has(i));
    });
  }

  /** A record is expired when expires_at <= now (the same rule insertOnce uses). */
  async purgeExpired(now: number): Promise<number> {
    return this.#guard({ what: 'replay purge' }, async () => {
      const r = await this.db.deleteFrom('replay').where('expires_at', '<=', now).executeTakeFirst();
      return Number(r.numDeletedRows);
    });
  }

  // ---------------------------------------------------------------- internals

  #assertOpen(what: string): void {
    if (this.#shared.closed) throw new UnavailableError(`store unavailable (${what}): the store is closed`);
  }

  #assertRoot(what: string): void {
    if (this.#inTx) throw new MandateError('ERR_STORE_USAGE', `${what}() cannot be called inside a transaction`);
  }

  /**
   * Like #guard, for bodies that call back into caller code (transaction, withLock): errors
   * thrown by the caller's callback, run through `own`, pass through untouched, so that an
   * error of theirs that merely looks like a connection error is not relabelled.
   */
  async #guardAround<T>(ctx: ErrorContext, body: (own: <U>(f: () => Promise<U>) => Promise<U>) => Promise<T>): Promise<T> {
    this.#assertOpen(ctx.what);
    const ownErrors = new Set<unknown>();
    const own = async <U>(f: () => Promise<U>): Promise<U> => {
      try {
        return await f();
      } catch (err) {
        ownErrors.add(err);
        throw err;
      }
    };
    try {
      return await body(own);
    } catch (err) {
      throw ownErrors.has(err) ? err : translateError(err, ctx);
    }
  }

  async #guard<T>(ctx: ErrorContext, fn: () => Promise<T>): Promise<T> {
    this.#assertOpen(ctx.what);
    try {
      return await fn();
    } catch (err) {
      throw translateError(err, ctx);
    }
  }
}

const SEVERITY_RANK: Readonly<Record<Severity, number>> = { low: 0, medium: 1, high: 2, critical: 3 };

/** `SET col = excluded.col` for every column of row except the key: "replace by id". */
function excludedSet<R extends object>(row: R, key: readonly (keyof R & string)[]): Record<string, unknown> {
  const set: Record<string, unknown> = {};
  for (const col of Object.keys(row)) {
    if (!key.includes(col as keyof R & string)) set[col] = sql.ref(`excluded.${col}`);
  }
  return set;
}

/** A listing's `limit`: default when absent, truncated, within [0, LIST_MAX_LIMIT]. */
function clampLimit(limit: number | undefined): number {
  if (limit === undefined || Number.isNaN(limit)) return LIST_DEFAULT_LIMIT;
  return Math.min(Math.max(Math.trunc(limit), 0), LIST_MAX_LIMIT);
}

/** Escapes LIKE wildcards so that a search for "a_b" or "50%" matches literally. */
function escapeLike(s: string): string {
  return s.replace(/[\\%_]/g, (c) => `\\${c}`);
}

/**
 * int8 (BIGINT, and COUNT(*)) comes back from pg as a string by default, because it can
 * exceed 2^53. Every BIGINT here is an epoch-ms timestamp or a counter, far below 2^53, so
 * this pool parses it to a number. Scoped to the pool through the `types` option: the global
 * pg.types registry is left alone for any other pg user in the process.
 */
const pgTypes: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    if (oid === PG_INT8_OID && format !== 'binary') return (v: string) => Number(v);
    return (pg.types.getTypeParser as (oid: number, format?: 'text' | 'binary') => unknown)(oid, format);
  }) as pg.CustomTypesConfig['getTypeParser'],
};

/**
 * Every pooled connection starts with the schema as its only search_path entry (a startup
 * `options` parameter), so unqualified table names, migrations included, resolve there and never
 * fall back to public. pg lets an `options` parameter in the URL override the config field, so an
 * existing one is moved out of the URL and merged.
 */
function withSearchPath(url: string, schema: string): { connectionString: string; options: string } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { connectionString: url, options: `-c search_path=${schema}` };
  }
  const existing = u.searchParams.get('options');
  u.searchParams.delete('options');
  return { connectionString: u.toString(), options: [existing, `-c search_path=${schema}`].filter(Boolean).join(' ') };
}

/** Connects (without migrating). Throws UnavailableError when the database cannot be reached. */
export async function openStore(opts: StoreOptions): Promise<Store> {
  const clock = opts.clock ?? systemClock;
  if (opts.driver === 'sqlite') return openSqlite(opts.sqlitePath, clock);
  return openPostgres(opts, clock);
}

/**
 * `appendChained` on PostgreSQL, inside its transaction (after the head's row lock): the batch's
 * rows from one JSON parameter and the new head, in one statement (a data-modifying CTE always
 * runs to completion, referenced or not).
 */
const AUDIT_APPEND_SQL = `with "ins" as (
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
const SIGNAL_TIMES_SQL = `with "up" as (
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
const RECORD_SETS_SQL = `with "chk" as (
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
 * better-sqlite3 behind Kysely, with its prepared statements kept by SQL text. Kysely's SQLite
 * driver prepares every query anew; compiling the same few statements again on every request
 * was a visible part of the token endpoint's CPU (bench/broker). Statements are reusable
 * (better-sqlite3 binds parameters per call); the cache is bounded, oldest out first, because
 * multi-row inserts make one SQL text per row count. Nothing in the store streams rows
 * (`stream()`), so a cached statement is never busy when it is taken again.
 */
function cachingStatements(db: SqliteDatabase.Database, max = 256): { close(): void; prepare(sql: string): SqliteDatabase.Statement } {
  const cache = new Map<string, SqliteDatabase.Statement>();
  return {
    close: () => {
      cache.clear();
      db.close();
    },
    prepare: (sql: string) => {
      let stmt = cache.get(sql);
      if (stmt === undefined) {
        stmt = db.prepare(sql);
        cache.set(sql, stmt);
        if (cache.size > max) cache.delete(cache.keys().next().value!);
      }
      return stmt;
    },
  };
}

/**
 * Kysely's SQLite dialect with BEGIN IMMEDIATE instead of BEGIN (deferred). A file has two
 * connections in this process, the main one and the writer thread's (sqlite-writer.ts): a
 * deferred transaction that read before the thread committed could not write afterwards
 * (SQLITE_BUSY_SNAPSHOT, without waiting). Taking the write lock first makes it wait for the
 * thread's commit (busy_timeout) instead, as appendChained always did.
 */
class ImmediateSqliteDialect extends SqliteDialect {
  readonly #config: SqliteDialectConfig;
  constructor(config: SqliteDialectConfig) {
    super(config);
    this.#config = config;
  }
  override createDriver(): Driver {
    return new ImmediateSqliteDriver(this.#config);
  }
}

class ImmediateSqliteDriver extends SqliteDriver {
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin immediate'));
  }
}

/** Whether the writer thread can write this event exactly as the main path would (it hashes and stores dataJson). */
function threadWritable(ev: AuditEvent): boolean {
  return typeof ev.dataJson === 'string' && typeof ev.id === 'string' && typeof ev.type === 'string' && Number.isFinite(ev.ts);
}

function writerEvent(ev: AuditEvent): WriterEvent {
  return {
    id: ev.id, ts: ev.ts, type: ev.type, actor: ev.actor ?? null, subject: ev.subject ?? null, tool: ev.tool ?? null,
    decision: ev.decision ?? null, traceId: ev.traceId ?? null, dataJson: ev.dataJson!,
  };
}

function openSqlite(path: string, clock: Clock): Store {
  const memory = path === ':memory:' || path === '';
  const file = memory ? undefined : resolvePath(path);
  let entry = file !== undefined ? sqliteFiles.get(file) : undefined;
  if (!entry) {
    let sqlite: SqliteDatabase.Database;
    try {
      if (file !== undefined) mkdirSync(dirname(file), { recursive: true });
      // timeout is better-sqlite3's busy_timeout: wait up to 5 s for another process's writer.
      sqlite = new SqliteDatabase(file ?? ':memory:', { timeout: 5000 });
      if (file !== undefined) sqlite.pragma('journal_mode = WAL');
      sqlite.pragma('foreign_keys = ON');
      sqlite.pragma('busy_timeout = 5000');
    } catch (err) {
      throw new UnavailableError(`store unavailable: cannot open SQLite database ${path}: ${String(err)}`, { cause: err });
    }
    entry = {
      // A file has a second connection, the writer thread's: transactions take the write lock when they begin.
      root: new Kysely<Database>({ dialect: file !== undefined ? new ImmediateSqliteDialect({ database: cachingStatements(sqlite) }) : new SqliteDialect({ database: cachingStatements(sqlite) }) }),
      locks: new KeyedMutex(),
      refs: 0,
      writer: file !== undefined ? new SqliteWriter(file) : undefined,
    };
    if (file !== undefined) sqliteFiles.set(file, entry);
  }
  const shared = entry;
  shared.refs += 1;
  const release = async () => {
    shared.refs -= 1;
    if (shared.refs > 0) return;
    if (file !== undefined && sqliteFiles.get(file) === shared) sqliteFiles.delete(file);
    await shared.writer?.close();
    await shared.root.destroy();
  };
  return new Store(shared.root, { dialect: 'sqlite', root: shared.root, clock, pgSchema: undefined, locks: shared.locks, writer: shared.writer, release, closed: false });
}

async function openPostgres(opts: Extract<StoreOptions, { driver: 'postgres' }>, clock: Clock): Promise<Store> {
  if (opts.schema !== undefined && !SCHEMA_RE.test(opts.schema)) {
    throw new MandateError('ERR_STORE_OPTIONS', `invalid PostgreSQL schema name "${opts.schema}": use [a-z_][a-z0-9_]*`);
  }
  const pool = new pg.Pool({
    connectionString: opts.url,
    // At least 2: withLock pins one connection for the lock while fn queries on another.
    max: Math.max(2, opts.poolSize ?? 10),
    types: pgTypes,
    // Fail fast (and closed) instead of waiting forever for an unreachable server or a free client.
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
    application_name: 'mandate',
    ...(opts.schema !== undefined ? withSearchPath(opts.url, opts.schema) : {}),
  });
  // A client that loses its connection emits 'error'. The pool listens (and re-emits on itself)
  // only while the client is idle; a client checked out (a transaction between statements, the
  // connection that holds a withLock advisory lock) has no listener of its own, so the event was
  // an uncaught exception that ended the process at a PostgreSQL restart. Every client gets one
  // for its whole life: its work fails on its own (the next statement says the client is not
  // queryable, which is UnavailableError, 503), the pool drops it at release (it is no longer
  // queryable), and the next checkout connects afresh.
  pool.on('error', () => {});
  pool.on('connect', (client) => {
    client.on('error', () => {});
  });
  if (opts.preparedStatements !== false) pool.on('connect', preparesHotStatements);
  const root = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  try {
    if (opts.schema !== undefined) {
      try {
        await sql`create schema if not exists ${sql.id(opts.schema)}`.execute(root);
      } catch (err) {
        // Two openers racing on CREATE SCHEMA IF NOT EXISTS can still hit the unique index.
        if ((err as { code?: string }).code !== '23505') throw err;
      }
    }
    const r = await sql<{ schema: string | null }>`select current_schema() as schema`.execute(root);
    const pgSchema = opts.schema ?? r.rows[0]?.schema ?? 'public';
    return new Store(root, { dialect: 'postgres', root, clock, pgSchema, locks: new KeyedMutex(), writer: undefined, release: () => root.destroy(), closed: false });
  } catch (err) {
    await root.destroy().catch(() => {});
    const mapped = translateError(err, { what: 'connect' });
    throw mapped instanceof UnavailableError ? mapped : new UnavailableError(`store unavailable (connect): ${String(err)}`, { cause: err });
  }
}

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
function preparesHotStatements(client: pg.PoolClient): void {
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  (client as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
    const [text, values] = args;
    const name = typeof text === 'string' && args.length <= 2 ? PREPARED_STATEMENTS.get(text) : undefined;
    return name === undefined ? query(...args) : query({ name, text, values });
  };
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
