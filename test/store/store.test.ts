import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { sql } from 'kysely';
import { ConfigError, ConflictError, MandateError, NotFoundError, UnavailableError } from '../../src/core/errors.js';
import { ManualClock } from '../../src/core/clock.js';
import type { MandateConfig } from '../../src/core/config/schema.js';
import type { NhiRecord, ToolRecord, GrantRecord, CredentialRecord } from '../../src/inventory/ports.js';
import type { AuditEvent, AuditRecord } from '../../src/audit/ports.js';
import type { SigningKeyRecord } from '../../src/keys/ports.js';
import type { AdminCredentialRecord } from '../../src/admin/ports.js';
import type { IssuedTokenRecord } from '../../src/broker/ports.js';
import type { ApprovalRecord, KillSwitchRecord, RestrictionRecord, RevocationRecord } from '../../src/enforcement/ports.js';
import type { SignalRecord, SsfEventRecord, SsfStreamRecord } from '../../src/signals/ports.js';
import type { FindingInput, PlaybookActionRecord } from '../../src/governance/ports.js';
import { canonicalJson } from '../../src/core/canonical.js';
import { GENESIS_HASH, MIGRATIONS, openStore, storeOptionsFromConfig, type Store } from '../../src/store/index.js';
import { STORE_DIALECTS, TEST_PG_URL, type StoreDialectCase } from '../helpers/stores.js';

const T0 = 1_700_000_000_000;
const ALL_MIGRATIONS = ['001_initial', '002_broker', '010_signals', '020_governance', '030_signal_applications', '040_risk_scores', '050_issued_token_parent', '051_credential_lifetimes', '055_approval_key'];

function nhi(id: string, over: Partial<NhiRecord> = {}): NhiRecord {
  return {
    id, class: 'agent', owner: 'platform@example.com', system: 'release', environment: 'production', tier: 'write',
    status: 'active', description: null, mayAct: [], source: 'config', createdAt: T0, updatedAt: T0, ...over,
  };
}

function tool(id: string, over: Partial<ToolRecord> = {}): ToolRecord {
  return {
    id, kind: 'http', upstream: `http://127.0.0.1:9001/${id}`, description: null,
    config: { actions: [{ name: 'list', tier: 'read' }], credential: { type: 'bearer', value: 'env:X' } },
    source: 'config', createdAt: T0, updatedAt: T0, ...over,
  };
}

function grant(id: string, nhiId: string, toolId: string, over: Partial<GrantRecord> = {}): GrantRecord {
  return {
    id, nhiId, toolId, actions: ['list'], changeRef: null, source: 'config', expiresAt: null, createdAt: T0, updatedAt: T0,
    lastUsedAt: null, ...over,
  };
}

function token(jti: string, over: Partial<IssuedTokenRecord> = {}): IssuedTokenRecord {
  return {
    jti, nhiId: 'deploy-agent', audience: 'tickets', scope: ['list'], tier: 'read', clientId: null, issuedAt: T0, expiresAt: T0 + 300_000,
    cnfJkt: null, cnfX5t: null, act: null, runId: null, parentJti: null, ...over,
  };
}

function approval(id: string, over: Partial<ApprovalRecord> = {}): ApprovalRecord {
  return {
    id, nhiId: 'deploy-agent', toolId: 'deploys', action: 'deploy', argsDigest: null, status: 'pending', requestedAt: T0,
    expiresAt: T0 + 900_000, decidedBy: null, decidedAt: null, reason: null, redeemedAt: null, details: {}, ...over,
  };
}

/** The test's chain function: sha256 over prevHash and the record's fields in a fixed order. */
function chain(prevHash: string, r: Omit<AuditRecord, 'hash' | 'prevHash'>): string {
  const canon = JSON.stringify([r.seq, r.id, r.ts, r.type, r.actor, r.subject, r.tool, r.decision, r.traceId, sortKeys(r.data)]);
  return createHash('sha256').update(prevHash).update('\n').update(canon).digest('hex');
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object') {
    return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys((v as Record<string, unknown>)[k])]));
  }
  return v;
}

let evCounter = 0;
function event(over: Partial<AuditEvent> = {}): AuditEvent {
  evCounter += 1;
  return {
    id: `evt_${evCounter}_${randomBytes(4).toString('hex')}`, ts: T0 + evCounter, type: 'token.issued', actor: 'deploy-agent',
    subject: 'deploy-agent', tool: null, decision: 'allow', traceId: null, data: { n: evCounter }, ...over,
  };
}

/** Checks the whole stored chain: consecutive seqs from 1, prev_hash links, hashes recomputed. */
async function assertChainIntact(store: Store): Promise<AuditRecord[]> {
  const all = await store.readAudit(1, 100_000);
  let prev = GENESIS_HASH;
  all.forEach((r, i) => {
    assert.equal(r.seq, i + 1, 'seqs are consecutive from 1');
    assert.equal(r.prevHash, prev, `record ${r.seq} links to its predecessor`);
    assert.equal(r.hash, chain(r.prevHash, r), `record ${r.seq} hash recomputes from the stored row`);
    prev = r.hash;
  });
  assert.deepEqual(await store.auditHead(), { seq: all.length, hash: prev });
  return all;
}

/** A store on an empty, unmigrated database of the dialect; cleaned up by the returned close(). */
async function openUnmigrated(d: StoreDialectCase): Promise<{ store: Store; peer?: () => Promise<Store>; cleanup: () => Promise<void> }> {
  if (d.name === 'sqlite') {
    const store = await openStore({ driver: 'sqlite', sqlitePath: ':memory:' });
    return { store, cleanup: () => store.close() };
  }
  const schema = `t_${randomBytes(8).toString('hex')}`;
  const opts = { driver: 'postgres' as const, url: TEST_PG_URL, schema, poolSize: 3 };
  const store = await openStore(opts);
  return {
    store,
    peer: () => openStore(opts),
    cleanup: async () => {
      await sql`drop schema if exists ${sql.id(schema)} cascade`.execute(store.db);
      await store.close();
    },
  };
}

for (const d of STORE_DIALECTS) {
  describe(`store on ${d.name}`, () => {
    const clock = new ManualClock(T0);
    let store: Store;
    /** A second instance on the same database (another process, as far as locks go). */
    let peer: Store;

    before(async () => {
      store = await d.open({ clock });
      peer = await d.openPeer(store, { clock });
    });
    after(async () => {
      await peer?.close();
      await store?.close();
    });

    describe('migrations', () => {
      it('are applied by open() and a second migrate() applies nothing', async () => {
        const status = await store.migrationStatus();
        assert.deepEqual(status.map((s) => s.name), ALL_MIGRATIONS);
        assert.ok(status.every((s) => s.executedAt instanceof Date));
        assert.deepEqual(await store.migrate(), []);
        assert.deepEqual(await peer.migrate(), []);
        assert.deepEqual(await store.auditHead(), { seq: 0, hash: GENESIS_HASH });
      });

      it('report pending on an empty database, then apply every migration once', async (t) => {
        const fresh = await openUnmigrated(d);
        t.after(fresh.cleanup);
        assert.deepEqual(await fresh.store.migrationStatus(), ALL_MIGRATIONS.map((name) => ({ name, executedAt: null })));
        if (fresh.peer) {
          // PostgreSQL: two instances migrating at once; Kysely's migration lock lets one do it.
          const other = await fresh.peer();
          t.after(() => other.close());
          const [a, b] = await Promise.all([fresh.store.migrate(), other.migrate()]);
          assert.deepEqual([...a, ...b], ALL_MIGRATIONS);
        } else {
          assert.deepEqual(await fresh.store.migrate(), ALL_MIGRATIONS);
        }
        assert.deepEqual(await fresh.store.migrate(), []);
        assert.deepEqual(await fresh.store.auditHead(), { seq: 0, hash: GENESIS_HASH });
      });

      it('a failing migration throws a MandateError naming it, and is rolled back', async (t) => {
        const fresh = await openUnmigrated(d);
        t.after(fresh.cleanup);
        // The last table 001_initial creates already exists: everything before it must roll back.
        await fresh.store.db.schema.createTable('replay').addColumn('x', 'text').execute();
        await assert.rejects(fresh.store.migrate(), (err: unknown) => {
          assert.ok(err instanceof MandateError);
          assert.equal(err.code, 'ERR_MIGRATION');
          assert.match(err.message, /001_initial/);
          return true;
        });
        await assert.rejects(sql`select count(*) from nhis`.execute(fresh.store.db));
        assert.deepEqual(await fresh.store.migrationStatus(), ALL_MIGRATIONS.map((name) => ({ name, executedAt: null })));
      });

      it('002_broker upgrades a 001 database: approvals keep their rows, args_digest becomes nullable', async (t) => {
        const fresh = await openUnmigrated(d);
        t.after(fresh.cleanup);
        // A database as 001_initial left it (the runner's bookkeeping table and row included).
        await fresh.store.db.transaction().execute(async (trx) => {
          await sql`create table mandate_schema_migrations (name text primary key, executed_at bigint not null)`.execute(trx);
          await MIGRATIONS['001_initial']!.up(trx as never);
          await sql`insert into mandate_schema_migrations (name, executed_at) values ('001_initial', ${T0})`.execute(trx);
        });
        const old = approval('apr-001', { argsDigest: 'digest-1', status: 'approved', decidedBy: 'admin:alice', decidedAt: T0 + 1, details: { run_id: 'r1' } });
        await sql`insert into approvals (id, nhi_id, tool_id, action, args_digest, status, requested_at, expires_at, decided_by, decided_at, reason, redeemed_at, details)
          values (${old.id}, ${old.nhiId}, ${old.toolId}, ${old.action}, ${old.argsDigest}, ${old.status}, ${old.requestedAt}, ${old.expiresAt},
                  ${old.decidedBy}, ${old.decidedAt}, ${old.reason}, ${old.redeemedAt}, ${JSON.stringify(old.details)})`.execute(fresh.store.db);
        await assert.rejects(
          sql`insert into approvals (id, nhi_id, tool_id, action, args_digest, status, requested_at, expires_at, details)
            values ('apr-null', 'n', 't', 'a', null, 'pending', 1, 2, '{}')`.execute(fresh.store.db),
          'args_digest is NOT NULL under 001',
        );

        assert.deepEqual(await fresh.store.migrate(), ALL_MIGRATIONS.slice(1));
        assert.deepEqual(await fresh.store.getApproval('apr-001'), old);
        await fresh.store.createApproval(approval('apr-null'));
        assert.equal((await fresh.store.getApproval('apr-null'))?.argsDigest, null);
        assert.equal(await fresh.store.redeemApproval('apr-001', T0 + 2), true, 'the copied row is usable');
        await fresh.store.addKillSwitch({ id: 'k', scope: 'global', target: null, reason: 'r', createdBy: 'a', createdAt: T0, liftedAt: null, liftedBy: null });
        assert.equal((await fresh.store.listKillSwitches()).length, 1);
      });
    });

    describe('inventory', () => {
      it('NHIs round-trip, replace by id and filter', async () => {
        const a = nhi('deploy-agent', { description: 'Deploys the Release', mayAct: ['orchestrator'], tier: 'write' });
        const b = nhi('scanner', { class: 'workload', owner: 'sec@example.com', environment: 'staging', tier: 'read', system: 'vuln_scan' });
        const c = nhi('old-runner', { class: 'runner', status: 'disabled', tier: 'admin', source: 'api', system: 'ci%50' });
        for (const n of [a, b, c]) await store.upsertNhi(n);

        assert.deepEqual(await store.getNhi('deploy-agent'), a);
        assert.equal(await store.getNhi('nope'), undefined);
        assert.deepEqual((await store.listNhis()).map((n) => n.id), ['deploy-agent', 'old-runner', 'scanner']);

        const a2 = { ...a, tier: 'admin' as const, description: null, mayAct: [], updatedAt: T0 + 5 };
        await store.upsertNhi(a2);
        assert.deepEqual(await store.getNhi('deploy-agent'), a2);
        await store.upsertNhi(a);

        const ids = async (f: Parameters<Store['listNhis']>[0]) => (await store.listNhis(f)).map((n) => n.id);
        assert.deepEqual(await ids({ class: 'workload' }), ['scanner']);
        assert.deepEqual(await ids({ owner: 'platform@example.com' }), ['deploy-agent', 'old-runner']);
        assert.deepEqual(await ids({ environment: 'staging' }), ['scanner']);
        assert.deepEqual(await ids({ tier: 'admin' }), ['old-runner']);
        assert.deepEqual(await ids({ status: 'disabled' }), ['old-runner']);
        assert.deepEqual(await ids({ status: 'active', class: 'agent' }), ['deploy-agent']);
        // search: case-insensitive substring of id, owner, system or description
        assert.deepEqual(await ids({ search: 'DEPLOY' }), ['deploy-agent']);
        assert.deepEqual(await ids({ search: 'the release' }), ['deploy-agent']);
        assert.deepEqual(await ids({ search: 'SEC@' }), ['scanner']);
        assert.deepEqual(await ids({ search: 'vuln' }), ['scanner']);
        // LIKE wildcards in the search are literal
        assert.deepEqual(await ids({ search: '%50' }), ['old-runner']);
        assert.deepEqual(await ids({ search: 'n_s' }), ['scanner']); // vul"n_s"can, not "n?s"
        assert.deepEqual(await ids({ search: '_' }), ['scanner']);
        assert.deepEqual(await ids({ search: 'zzz' }), []);
      });

      it('credentials round-trip, replace, delete, and need their NHI', async () => {
        const fed: CredentialRecord = {
          id: 'cred-fed', nhiId: 'deploy-agent', type: 'federated', trust: 'github-actions', subject: 'repo:acme/x:ref:refs/heads/main',
          data: {}, exceptionTicket: null, exceptionExpiresAt: null, source: 'config', createdAt: T0, expiresAt: null, lastRotatedAt: null,
        };
        const sec: CredentialRecord = {
          id: 'cred-sec', nhiId: 'scanner', type: 'static_secret', trust: null, subject: null, data: { secret: 'env:SCANNER_SECRET' },
          exceptionTicket: 'SEC-1', exceptionExpiresAt: T0 + 1000, source: 'api', createdAt: T0, expiresAt: T0 + 2000, lastRotatedAt: T0 - 5,
        };
        await store.upsertCredential(fed);
        await store.upsertCredential(sec);
        assert.deepEqual(await store.listCredentials('deploy-agent'), [fed]);
        assert.deepEqual(await store.listCredentials(), [fed, sec]);
        // NHIs by the type of credential they hold
        const ids = async (f: Parameters<Store['listNhis']>[0]) => (await store.listNhis(f)).map((n) => n.id);
        assert.deepEqual(await ids({ credentialType: 'static_secret' }), ['scanner']);
        assert.deepEqual(await ids({ credentialType: 'federated' }), ['deploy-agent']);
        assert.deepEqual(await ids({ credentialType: 'private_key_jwt' }), []);
        assert.deepEqual(await ids({ credentialType: 'static_secret', environment: 'production' }), []);

        const sec2 = { ...sec, data: { secret: 'env:OTHER', nested: { a: [1, 2] } }, lastRotatedAt: T0 + 10 };
        await store.upsertCredential(sec2);
        assert.deepEqual(await store.listCredentials('scanner'), [sec2]);

        await assert.rejects(store.upsertCredential({ ...fed, id: 'cred-x', nhiId: 'ghost' }), NotFoundError);
        assert.equal(await store.deleteCredential('cred-sec'), true);
        assert.equal(await store.deleteCredential('cred-sec'), false);
        assert.deepEqual(await store.listCredentials('scanner'), []);
      });

      it('tools round-trip with their JSON config', async () => {
        const t1 = tool('tickets', { description: 'Ticket API' });
        const t2 = tool('deploys', { kind: 'mcp', config: { actions: [], nested: { deep: [true, null, 1.5, 'x'] } } });
        await store.upsertTool(t1);
        await store.upsertTool(t2);
        assert.deepEqual(await store.getTool('tickets'), t1);
        assert.deepEqual(await store.listTools(), [t2, t1]);
        const t1b = { ...t1, upstream: 'http://127.0.0.1:9002', updatedAt: T0 + 1 };
        await store.upsertTool(t1b);
        assert.deepEqual(await store.getTool('tickets'), t1b);
        assert.equal(await store.getTool('nope'), undefined);
      });

      it('grants: replace by id, (nhi, tool) unique, touch, delete, cascade with the tool', async () => {
        const g1 = grant('g1', 'deploy-agent', 'tickets', { changeRef: 'PR-1', expiresAt: T0 + 99 });
        const g2 = grant('g2', 'scanner', 'tickets');
        const g3 = grant('g3', 'deploy-agent', 'deploys', { actions: ['deploy', 'rollback'] });
        for (const g of [g1, g2, g3]) await store.upsertGrant(g);

        assert.deepEqual(await store.getGrant('g1'), g1);
        assert.equal(await store.getGrant('nope'), undefined);
        assert.deepEqual((await store.listGrants()).map((g) => g.id), ['g3', 'g1', 'g2']);
        assert.deepEqual((await store.listGrants({ nhiId: 'deploy-agent' })).map((g) => g.id), ['g3', 'g1']);
        assert.deepEqual((await store.listGrants({ toolId: 'tickets' })).map((g) => g.id), ['g1', 'g2']);
        assert.deepEqual(await store.listGrants({ nhiId: 'scanner', toolId: 'tickets' }), [g2]);

        const g1b = { ...g1, actions: ['list', 'create'], changeRef: 'PR-2', updatedAt: T0 + 3 };
        await store.upsertGrant(g1b);
        assert.deepEqual(await store.getGrant('g1'), g1b);

        await assert.rejects(store.upsertGrant(grant('g1-dup', 'deploy-agent', 'tickets')), ConflictError);
        await assert.rejects(store.upsertGrant(grant('g-ghost', 'ghost', 'tickets')), NotFoundError);
        await assert.rejects(store.upsertGrant(grant('g-ghost', 'scanner', 'ghost')), NotFoundError);

        await store.touchGrant('g1', T0 + 50);
        await store.touchGrant('g1', T0 + 40); // late touch: never moves back
        assert.equal((await store.getGrant('g1'))?.lastUsedAt, T0 + 50);
        await store.touchGrant('nope', T0); // unknown id: no error

        assert.equal(await store.deleteGrant('g2'), true);
        assert.equal(await store.deleteGrant('g2'), false);

        assert.equal(await store.deleteTool('deploys'), true);
        assert.equal(await store.deleteTool('deploys'), false);
        assert.equal(await store.getGrant('g3'), undefined, "the tool's grants go with it");
        assert.deepEqual((await store.listGrants()).map((g) => g.id), ['g1']);
      });

      it('a transaction commits, or rolls back when fn throws', async () => {
        await assert.rejects(
          store.transaction(async (tx) => {
            await tx.upsertNhi(nhi('tx-rolled-back'));
            assert.ok(await tx.getNhi('tx-rolled-back'), 'visible inside the transaction');
            throw new Error('boom');
          }),
          /boom/,
        );
        assert.equal(await store.getNhi('tx-rolled-back'), undefined);

        const n = await store.transaction(async (tx) => {
          await tx.upsertNhi(nhi('tx-committed'));
          await tx.upsertTool(tool('tx-tool'));
          await tx.upsertGrant(grant('tx-grant', 'tx-committed', 'tx-tool'));
          // Nested transaction() joins the running one.
          return tx.transaction(async (inner) => (await inner.listGrants({ nhiId: 'tx-committed' })).length);
        });
        assert.equal(n, 1);
        assert.ok(await store.getGrant('tx-grant'));
      });
    });

    describe('keys', () => {
      it('signing keys round-trip, update partially, refuse duplicates, delete', async () => {
        const k1: SigningKeyRecord = {
          kid: 'k1', alg: 'ES256', publicJwk: { kty: 'EC', crv: 'P-256', x: 'xx', y: 'yy', kid: 'k1', alg: 'ES256', use: 'sig' },
          privateEnc: 'v1.enc.blob', createdAt: T0, activatesAt: T0 + 3600_000, retiresAt: null, expiresAt: null,
        };
        const k2: SigningKeyRecord = { ...k1, kid: 'k2', alg: 'EdDSA', publicJwk: { kty: 'OKP', crv: 'Ed25519', x: 'zz' }, createdAt: T0 + 1 };
        await store.insertSigningKey(k2);
        await store.insertSigningKey(k1);
        assert.deepEqual(await store.listSigningKeys(), [k1, k2]);
        await assert.rejects(store.insertSigningKey(k1), ConflictError);

        await store.updateSigningKey('k1', { retiresAt: T0 + 10 });
        assert.deepEqual((await store.listSigningKeys())[0], { ...k1, retiresAt: T0 + 10 });
        await store.updateSigningKey('k1', { expiresAt: T0 + 20 });
        assert.deepEqual((await store.listSigningKeys())[0], { ...k1, retiresAt: T0 + 10, expiresAt: T0 + 20 });
        await store.updateSigningKey('k1', { retiresAt: null, expiresAt: null });
        assert.deepEqual((await store.listSigningKeys())[0], k1);
        await assert.rejects(store.updateSigningKey('nope', { retiresAt: 1 }), NotFoundError);

        await store.deleteSigningKey('k1');
        await store.deleteSigningKey('k1');
        assert.deepEqual(await store.listSigningKeys(), [k2]);
      });

      it('withLock excludes concurrent holders, across instances', async () => {
        let inside = 0;
        let maxInside = 0;
        const order: number[] = [];
        const results = await Promise.all(
          Array.from({ length: 6 }, (_, i) =>
            (i % 2 === 0 ? store : peer).withLock('rotate', async () => {
              inside += 1;
              maxInside = Math.max(maxInside, inside);
              order.push(i);
              await store.auditHead(); // fn may use the store's normal methods
              await sleep(15);
              inside -= 1;
              return i * 10;
            }),
          ),
        );
        assert.deepEqual(results, [0, 10, 20, 30, 40, 50]);
        assert.equal(maxInside, 1);
        assert.equal(order.length, 6);
      });

      it('withLock releases the lock when fn throws; different names do not exclude', async () => {
        await assert.rejects(store.withLock('rotate', async () => { throw new Error('fn failed'); }), /fn failed/);
        assert.equal(await peer.withLock('rotate', async () => 'again'), 'again');

        // Holder of "a" waits until "b" is held too: only possible if they do not exclude.
        let bEntered!: () => void;
        const bIn = new Promise<void>((r) => (bEntered = r));
        let release!: () => void;
        const gate = new Promise<void>((r) => (release = r));
        const timer = new AbortController();
        const a = store.withLock('a', async () => {
          const timeout = sleep(5000, undefined, { signal: timer.signal }).then(() => {
            throw new Error('lock b was blocked by lock a');
          });
          timeout.catch(() => {}); // aborted below once b is in
          await Promise.race([bIn, timeout]);
          timer.abort();
          return 'a';
        });
        const b = peer.withLock('b', async () => {
          bEntered();
          await gate;
          return 'b';
        });
        assert.equal(await a, 'a');
        release();
        assert.equal(await b, 'b');
      });
    });

    describe('admin credentials', () => {
      it('round-trip, count, touch forward only, expiry, revoke', async () => {
        assert.equal(await store.countAdminCredentials(), 0);
        const a: AdminCredentialRecord = {
          id: 'adm_1', name: 'bootstrap', role: 'admin', secretHash: 'a'.repeat(64), createdAt: T0, lastUsedAt: null, disabled: false,
          expiresAt: null, revokedAt: null,
        };
        const b: AdminCredentialRecord = { ...a, id: 'adm_2', name: 'alice', role: 'approver', createdAt: T0 + 1, disabled: true, expiresAt: T0 + 5000, revokedAt: T0 + 2 };
        await store.insertAdminCredential(a);
        await store.insertAdminCredential(b);
        await assert.rejects(store.insertAdminCredential(a), ConflictError);
        assert.equal(await store.countAdminCredentials(), 2);
        assert.deepEqual(await store.getAdminCredential('adm_1'), a);
        assert.deepEqual(await store.getAdminCredential('adm_2'), b);
        assert.equal(await store.getAdminCredential('nope'), undefined);
        assert.deepEqual(await store.listAdminCredentials(), [a, b]);

        await store.touchAdminCredential('adm_1', T0 + 100);
        await store.touchAdminCredential('adm_1', T0 + 50);
        assert.equal((await store.getAdminCredential('adm_1'))?.lastUsedAt, T0 + 100);

        assert.equal(await store.setAdminCredentialExpiry('adm_1', T0 + 9000), true);
        assert.equal((await store.getAdminCredential('adm_1'))?.expiresAt, T0 + 9000);
        assert.equal(await store.setAdminCredentialExpiry('adm_2', T0 + 9000), false, 'a revoked credential gets no new end');
        assert.equal((await store.getAdminCredential('adm_2'))?.expiresAt, T0 + 5000);
        assert.equal(await store.setAdminCredentialExpiry('nope', T0), false);

        assert.equal(await store.revokeAdminCredential('adm_1', T0 + 200), true);
        assert.equal(await store.revokeAdminCredential('adm_1', T0 + 300), true);
        const revoked = await store.getAdminCredential('adm_1');
        assert.equal(revoked?.disabled, true);
        assert.equal(revoked?.revokedAt, T0 + 200, 'the first revocation time is kept');
        assert.equal(await store.revokeAdminCredential('nope', T0), false);
      });
    });

    describe('audit', () => {
      it('appendChained gives consecutive seqs and chains prev_hash -> hash', async () => {
        assert.deepEqual(await store.appendChained([], chain), []);
        const evs = [
          event({ type: 'token.issued', traceId: '4bf92f3577b34da6a3ce929d0e0e4736', data: { scope: 'tickets:list', n: { deep: [1] } } }),
          event({ type: 'tool.call_denied', tool: 'tickets', decision: 'deny', subject: 'scanner' }),
          // undefined inside data does not survive storage, so it must not be hashed either
          event({ type: 'nhi.updated', actor: 'admin:adm_1', decision: null, data: { gone: undefined, kept: 1 } }),
        ];
        const recs = await store.appendChained(evs, chain);
        assert.deepEqual(recs.map((r) => r.seq), [1, 2, 3]);
        assert.equal(recs[0]?.prevHash, GENESIS_HASH);
        assert.equal(recs[1]?.prevHash, recs[0]?.hash);
        assert.equal(recs[2]?.prevHash, recs[1]?.hash);
        assert.deepEqual(recs[2]?.data, { kept: 1 });
        assert.deepEqual(await store.auditHead(), { seq: 3, hash: recs[2]?.hash });

        const more = await store.appendChained([event()], chain);
        assert.equal(more[0]?.seq, 4);
        assert.equal(more[0]?.prevHash, recs[2]?.hash);

        const stored = await assertChainIntact(store);
        assert.deepEqual(stored, [...recs, ...more], 'what was returned is what is stored');
        assert.deepEqual((await store.readAudit(2, 2)).map((r) => r.seq), [2, 3]);
        assert.deepEqual(await store.readAudit(99, 10), []);
      });

      it('queryAudit filters, orders and limits', async () => {
        const q = async (f: Parameters<Store['queryAudit']>[0]) => (await store.queryAudit(f)).map((r) => r.seq);
        assert.deepEqual(await q({}), [4, 3, 2, 1]);
        assert.deepEqual(await q({ order: 'asc', limit: 2 }), [1, 2]);
        assert.deepEqual(await q({ type: 'tool.call_denied' }), [2]);
        assert.deepEqual(await q({ tool: 'tickets', decision: 'deny' }), [2]);
        assert.deepEqual(await q({ subject: 'scanner' }), [2]);
        assert.deepEqual(await q({ actor: 'admin:adm_1' }), [3]);
        assert.deepEqual(await q({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736' }), [1]);
        const [r1, r2, r3] = await store.readAudit(1, 3);
        assert.deepEqual(await q({ since: r2!.ts, until: r3!.ts }), [3, 2]);
        assert.deepEqual(await q({ until: r1!.ts }), [1]);
        assert.deepEqual(await q({ type: 'nope' }), []);
      });

      it('concurrent appendChained calls (two instances) make one unbroken chain', async () => {
        const before = (await store.auditHead()).seq;
        const batches = Array.from({ length: 20 }, (_, i) => Array.from({ length: (i % 3) + 1 }, () => event({ data: { batch: i } })));
        const results = await Promise.all(batches.map((b, i) => (i % 2 === 0 ? store : peer).appendChained(b, chain)));
        const total = batches.reduce((n, b) => n + b.length, 0);
        // Each call got a contiguous block of seqs.
        for (const recs of results) {
          recs.forEach((r, j) => j > 0 && assert.equal(r.seq, recs[j - 1]!.seq + 1));
        }
        const seqs = results.flat().map((r) => r.seq).sort((a, b) => a - b);
        assert.equal(new Set(seqs).size, total, 'no duplicate seq');
        assert.deepEqual(seqs, Array.from({ length: total }, (_, i) => before + i + 1));
        const all = await assertChainIntact(store);
        assert.equal(all.length, before + total);
      });

      it('a duplicate event id fails the whole batch and leaves the chain unchanged', async () => {
        const head = await store.auditHead();
        const [first] = await store.readAudit(1, 1);
        await assert.rejects(store.appendChained([event(), { ...event(), id: first!.id }], chain), ConflictError);
        assert.deepEqual(await store.auditHead(), head);
        await assertChainIntact(store);
      });

      it('a large batch with awkward text (quotes, backslashes, newlines, non-BMP, JSON-looking, NULL columns) is stored exactly as hashed', async () => {
        // On PostgreSQL the batch is one statement fed by a JSON parameter: every column must come back byte for byte.
        const odd = ['he said "hi"\\n', 'back\\slash \\"q\\"', 'line1\nline2\r\n\ttab', 'émoji 😀 𝄞 中文', '{"not":"json"}', '[1,2]', 'null', '', ' ', "it's", '\\u0041'];
        const evs = Array.from({ length: 1200 }, (_, i) => event({
          type: `odd.${i % 3}`, actor: odd[i % odd.length]!, subject: i % 4 === 0 ? null : odd[(i + 1) % odd.length]!, tool: i % 5 === 0 ? odd[(i + 2) % odd.length]! : null,
          decision: i % 2 ? 'deny' : null, traceId: i % 7 === 0 ? null : randomBytes(16).toString('hex'),
          data: { s: odd[(i + 3) % odd.length], nested: { arr: [odd[i % odd.length], i, null, true], big: 2 ** 52 + i, neg: -(i + 1) / 4 } },
        }));
        // The audit log's events carry their data's canonical JSON (dataJson), hashed and stored as it is.
        const withJson = evs.map((e, i) => (i % 2 === 0 ? { ...e, dataJson: canonicalJson(e.data) } : e));
        const recs = await store.appendChained(withJson, chain);
        assert.equal(recs.length, 1200);
        const stored = await assertChainIntact(store);
        const back = stored.slice(-1200);
        assert.deepEqual(back, recs, 'read back exactly as returned');
        back.forEach((r, i) => {
          const e = evs[i]!;
          assert.deepEqual([r.id, r.ts, r.type, r.actor, r.subject, r.tool, r.decision, r.traceId], [e.id, e.ts, e.type, e.actor, e.subject, e.tool, e.decision, e.traceId]);
          assert.deepEqual(r.data, e.data);
        });
      });
    });

    describe('broker', () => {
      it('issued tokens round-trip and refuse a duplicate jti', async () => {
        const full = token('jti-full', {
          scope: ['deploy', 'rollback'], tier: 'admin', clientId: 'ci-runner', cnfJkt: 'jkt-thumb', cnfX5t: null,
          act: { sub: 'orchestrator', act: { sub: 'human:alice' } }, runId: 'run-42', parentJti: 'at_parent.at_grandparent',
        });
        const bare = token('jti-bare', { scope: [], cnfX5t: 'x5t-thumb' });
        await store.recordIssuedToken(full);
        await store.recordIssuedToken(bare);
        assert.deepEqual(await store.getIssuedToken('jti-full'), full);
        assert.deepEqual(await peer.getIssuedToken('jti-bare'), bare);
        assert.equal(await store.getIssuedToken('nope'), undefined);
        await assert.rejects(store.recordIssuedToken({ ...bare, nhiId: 'other' }), ConflictError);
      });

      it('listIssuedTokens filters by NHI, audience and activity, newest first, with a limit', async () => {
        const toks = [
          token('it-1', { nhiId: 'lister', audience: 'tickets', issuedAt: T0 + 10, expiresAt: T0 + 100 }),
          token('it-2', { nhiId: 'lister', audience: 'deploys', issuedAt: T0 + 30, expiresAt: T0 + 300 }),
          token('it-3', { nhiId: 'lister', audience: 'tickets', issuedAt: T0 + 20, expiresAt: T0 + 200 }),
          token('it-4', { nhiId: 'lister-2', audience: 'tickets', issuedAt: T0 + 40, expiresAt: T0 + 400 }),
          // same issuedAt as it-4: ties are broken by jti, descending
          token('it-5', { nhiId: 'lister-2', audience: 'tickets', issuedAt: T0 + 40, expiresAt: T0 + 50 }),
        ];
        for (const t of toks) await store.recordIssuedToken(t);
        const jtis = async (f: Parameters<Store['listIssuedTokens']>[0]) => (await store.listIssuedTokens(f)).map((t) => t.jti);

        assert.deepEqual(await jtis({ nhiId: 'lister' }), ['it-2', 'it-3', 'it-1']);
        assert.deepEqual(await jtis({ nhiId: 'lister-2' }), ['it-5', 'it-4']);
        assert.deepEqual(await jtis({ nhiId: 'lister', audience: 'tickets' }), ['it-3', 'it-1']);
        assert.deepEqual((await jtis({ audience: 'tickets' })).filter((j) => j.startsWith('it-')), ['it-5', 'it-4', 'it-3', 'it-1']);
        // activeAt: expiresAt > activeAt (a token expiring exactly then is not active)
        assert.deepEqual(await jtis({ nhiId: 'lister', activeAt: T0 + 200 }), ['it-2']);
        assert.deepEqual(await jtis({ nhiId: 'lister', activeAt: T0 + 199 }), ['it-2', 'it-3']);
        assert.deepEqual((await jtis({ audience: 'tickets', activeAt: T0 + 100 })).filter((j) => j.startsWith('it-')), ['it-4', 'it-3']);
        assert.deepEqual(await jtis({ nhiId: 'lister', activeAt: T0 + 300 }), []);
        assert.deepEqual(await jtis({ nhiId: 'lister', limit: 2 }), ['it-2', 'it-3']);
        assert.deepEqual(await jtis({ nhiId: 'lister', limit: 0 }), []);
        assert.deepEqual(await jtis({ nhiId: 'nobody' }), []);
        assert.deepEqual(await store.listIssuedTokens({ nhiId: 'lister', audience: 'deploys' }), [toks[1]]);

        // Unfiltered: everything, newest first.
        const all = await store.listIssuedTokens({});
        assert.ok(all.length >= toks.length);
        for (let i = 1; i < all.length; i++) assert.ok(all[i - 1]!.issuedAt >= all[i]!.issuedAt, 'newest first');
        assert.equal((await store.listIssuedTokens({ limit: 1 })).length, 1);
      });

      it('revocations round-trip; listRevocations excludes expired ones, oldest first; purge removes exactly those', async () => {
        const now = T0 + 1_000_000;
        const revs: RevocationRecord[] = [
          { id: 'rev-token', kind: 'token', target: 'jti-full', notBefore: null, reason: 'leaked', signalId: 'sig-1', createdAt: T0 + 3, expiresAt: now + 1 },
          { id: 'rev-nhi', kind: 'nhi', target: 'deploy-agent', notBefore: T0 + 2, reason: null, signalId: null, createdAt: T0 + 2, expiresAt: now + 60_000 },
          { id: 'rev-global', kind: 'global', target: null, notBefore: T0 + 1, reason: 'incident', signalId: null, createdAt: T0 + 1, expiresAt: null },
          { id: 'rev-old', kind: 'tool', target: 'tickets', notBefore: T0, reason: 'x', signalId: null, createdAt: T0, expiresAt: now - 1 },
          { id: 'rev-edge', kind: 'token', target: 'jti-bare', notBefore: null, reason: null, signalId: null, createdAt: T0 + 4, expiresAt: now },
        ];
        for (const r of revs) await store.addRevocation(r);
        await assert.rejects(store.addRevocation(revs[0]!), ConflictError);

        const live = [revs[2], revs[1], revs[0]];
        assert.deepEqual(await store.listRevocations(now), live, 'expiresAt <= now is expired');
        assert.deepEqual(await peer.listRevocations(T0), [revs[3], revs[2], revs[1], revs[0], revs[4]]);
        // The reload's recent read: created at or after createdSince, still unexpired only.
        assert.deepEqual(await store.listRevocations(now, { createdSince: T0 + 2 }), [revs[1], revs[0]]);
        assert.deepEqual(await store.listRevocations(T0, { createdSince: T0 + 3 }), [revs[0], revs[4]]);
        assert.deepEqual(await store.listRevocations(now, { createdSince: T0 + 5 }), []);

        assert.equal(await store.purgeRevocations(now), 2, 'rev-old and rev-edge');
        assert.equal(await store.purgeRevocations(now), 0);
        assert.deepEqual(await store.listRevocations(T0), live, 'purge leaves unexpired and never-expiring ones');
        assert.equal(await store.purgeRevocations(now + 60_000), 2);
        assert.deepEqual(await store.listRevocations(T0), [revs[2]], 'a revocation without expiry is never purged');
        assert.equal(await store.purgeRevocations(Number.MAX_SAFE_INTEGER), 0);
      });

      it('kill switches: add, list (active only or all), lift exactly once', async () => {
        const k1: KillSwitchRecord = { id: 'kill-1', scope: 'nhi', target: 'deploy-agent', reason: 'runaway', createdBy: 'admin:alice', createdAt: T0 + 1, liftedAt: null, liftedBy: null };
        const k2: KillSwitchRecord = { id: 'kill-2', scope: 'global', target: null, reason: 'incident', createdBy: 'admin:bob', createdAt: T0 + 2, liftedAt: null, liftedBy: null };
        const k3: KillSwitchRecord = { id: 'kill-3', scope: 'tool', target: 'deploys', reason: 'upstream bug', createdBy: 'admin:bob', createdAt: T0, liftedAt: null, liftedBy: null };
        for (const k of [k1, k2, k3]) await store.addKillSwitch(k);
        await assert.rejects(store.addKillSwitch(k1), ConflictError);
        assert.deepEqual(await store.listKillSwitches(), [k3, k1, k2]);
        assert.deepEqual(await store.listKillSwitches({ activeOnly: true }), [k3, k1, k2]);

        assert.equal(await store.liftKillSwitch('kill-1', 'admin:carol', T0 + 10), true);
        assert.equal(await store.liftKillSwitch('kill-1', 'admin:dave', T0 + 20), false, 'already lifted');
        assert.equal(await store.liftKillSwitch('nope', 'admin:carol', T0 + 10), false);
        const lifted = { ...k1, liftedAt: T0 + 10, liftedBy: 'admin:carol' };
        assert.deepEqual(await peer.listKillSwitches(), [k3, lifted, k2], 'the first lift stands');
        assert.deepEqual(await store.listKillSwitches({ activeOnly: true }), [k3, k2]);
        assert.deepEqual(await store.listKillSwitches({ activeOnly: false }), [k3, lifted, k2]);

        // Concurrent lifts, across instances: one wins.
        const wins = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? store : peer).liftKillSwitch('kill-2', `admin:${i}`, T0 + 30 + i)));
        assert.equal(wins.filter(Boolean).length, 1);
        const winner = wins.indexOf(true);
        const k2Now = (await store.listKillSwitches()).find((k) => k.id === 'kill-2');
        assert.deepEqual(k2Now, { ...k2, liftedAt: T0 + 30 + winner, liftedBy: `admin:${winner}` });
        assert.deepEqual(await store.listKillSwitches({ activeOnly: true }), [k3]);
      });

      it('approvals round-trip, refuse a duplicate id, and list newest first with filters', async () => {
        const a1 = approval('apr-1', { nhiId: 'lister', argsDigest: 'q1pG0x-digest', details: { client_id: 'ci', run_id: null, act: { sub: 'x' } }, requestedAt: T0 + 1 });
        const a2 = approval('apr-2', { nhiId: 'lister', requestedAt: T0 + 3, status: 'denied', decidedBy: 'admin:alice', decidedAt: T0 + 4, reason: 'no' });
        const a3 = approval('apr-3', { nhiId: 'lister-2', requestedAt: T0 + 2 });
        for (const a of [a1, a2, a3]) await store.createApproval(a);
        await assert.rejects(store.createApproval(a1), ConflictError);
        assert.deepEqual(await store.getApproval('apr-1'), a1);
        assert.deepEqual(await peer.getApproval('apr-2'), a2);
        assert.equal(await store.getApproval('nope'), undefined);

        const ids = async (f?: Parameters<Store['listApprovals']>[0]) => (await store.listApprovals(f)).map((a) => a.id);
        assert.deepEqual(await ids(), ['apr-2', 'apr-3', 'apr-1']);
        assert.deepEqual(await ids({ nhiId: 'lister' }), ['apr-2', 'apr-1']);
        assert.deepEqual(await ids({ status: 'pending' }), ['apr-3', 'apr-1']);
        assert.deepEqual(await ids({ status: 'pending', nhiId: 'lister' }), ['apr-1']);
        assert.deepEqual(await ids({ status: 'denied' }), ['apr-2']);
        assert.deepEqual(await ids({ status: 'redeemed' }), []);
        assert.deepEqual(await ids({ limit: 2 }), ['apr-2', 'apr-3']);
        assert.deepEqual(await store.listApprovals({ nhiId: 'lister-2' }), [a3]);
      });

      it('findApprovals finds the live requests of exactly one call, however many newer ones exist for others', async () => {
        const key = { nhiId: 'finder', toolId: 'deploys', action: 'deploy', argsDigest: 'digest-victim' };
        const denied = approval('apr-f1', { ...key, status: 'denied', requestedAt: T0 + 1, decidedBy: 'admin:a', decidedAt: T0 + 2, reason: 'no' });
        const redeemed = approval('apr-f2', { ...key, status: 'redeemed', requestedAt: T0 + 3, redeemedAt: T0 + 4 });
        const expired = approval('apr-f3', { ...key, requestedAt: T0 + 5, expiresAt: T0 + 6 });
        const pending = approval('apr-f4', { ...key, requestedAt: T0 + 7 });
        for (const a of [denied, redeemed, expired, pending]) await store.createApproval(a);
        for (let i = 0; i < 30; i++) await store.createApproval(approval(`apr-fn${i}`, { ...key, argsDigest: `noise-${i}`, requestedAt: T0 + 10 + i }));
        await store.createApproval(approval('apr-f5', { ...key, action: 'rollback', requestedAt: T0 + 50 }));
        await store.createApproval(approval('apr-f6', { ...key, toolId: 'other', requestedAt: T0 + 51 }));
        await store.createApproval(approval('apr-f7', { ...key, nhiId: 'finder-2', requestedAt: T0 + 52 }));
        assert.deepEqual((await store.findApprovals(key, T0 + 100)).map((a) => a.id), ['apr-f4', 'apr-f1'], 'pending and denied, newest first; not redeemed or expired');
        assert.deepEqual(await peer.findApprovals(key, T0 + 100), [pending, denied]);
        assert.deepEqual(await store.findApprovals({ ...key, argsDigest: 'none' }, T0 + 100), []);
      });

      it('decideApproval decides only a pending, unexpired approval, once', async () => {
        const a = approval('apr-d1', { expiresAt: T0 + 1000 });
        await store.createApproval(a);
        const decided = await store.decideApproval('apr-d1', { status: 'approved', decidedBy: 'admin:alice', decidedAt: T0 + 10, reason: 'ok' });
        const expected = { ...a, status: 'approved' as const, decidedBy: 'admin:alice', decidedAt: T0 + 10, reason: 'ok' };
        assert.deepEqual(decided, expected, 'returns the updated record');
        assert.deepEqual(await store.getApproval('apr-d1'), expected);
        assert.equal(await store.decideApproval('apr-d1', { status: 'denied', decidedBy: 'admin:bob', decidedAt: T0 + 11, reason: null }), undefined, 'already decided');
        assert.deepEqual(await store.getApproval('apr-d1'), expected, 'unchanged');

        await store.createApproval(approval('apr-d2', { expiresAt: T0 + 1000 }));
        const denied = await peer.decideApproval('apr-d2', { status: 'denied', decidedBy: 'admin:bob', decidedAt: T0 + 5, reason: null });
        assert.equal(denied?.status, 'denied');
        assert.equal(denied?.reason, null);
        assert.equal(await store.decideApproval('apr-d2', { status: 'approved', decidedBy: 'admin:alice', decidedAt: T0 + 6, reason: null }), undefined);

        // Expired: expiresAt <= decidedAt.
        await store.createApproval(approval('apr-d3', { expiresAt: T0 + 1000 }));
        assert.equal(await store.decideApproval('apr-d3', { status: 'approved', decidedBy: 'admin:alice', decidedAt: T0 + 1000, reason: null }), undefined);
        assert.equal((await store.getApproval('apr-d3'))?.status, 'pending');
        assert.equal((await store.decideApproval('apr-d3', { status: 'approved', decidedBy: 'admin:alice', decidedAt: T0 + 999, reason: null }))?.status, 'approved');

        assert.equal(await store.decideApproval('nope', { status: 'approved', decidedBy: 'admin:alice', decidedAt: T0, reason: null }), undefined);
      });

      it('decideApproval: of 50 concurrent deciders (two instances) exactly one wins', async () => {
        await store.createApproval(approval('apr-race-d', { expiresAt: T0 + 1000 }));
        const results = await Promise.all(Array.from({ length: 50 }, (_, i) =>
          (i % 2 === 0 ? store : peer).decideApproval('apr-race-d', {
            status: i % 3 === 0 ? 'denied' : 'approved', decidedBy: `admin:${i}`, decidedAt: T0 + 10 + i, reason: `r${i}`,
          })));
        const winners = results.flatMap((r, i) => (r ? [i] : []));
        assert.equal(winners.length, 1);
        const w = winners[0]!;
        const stored = await store.getApproval('apr-race-d');
        assert.deepEqual(stored, results[w]);
        assert.equal(stored?.decidedBy, `admin:${w}`);
        assert.equal(stored?.status, w % 3 === 0 ? 'denied' : 'approved');
      });

      it('redeemApproval: of 50 concurrent callers (two instances) exactly one redeems an approved approval', async () => {
        await store.createApproval(approval('apr-race-r', { expiresAt: T0 + 1000 }));
        assert.ok(await store.decideApproval('apr-race-r', { status: 'approved', decidedBy: 'admin:alice', decidedAt: T0 + 1, reason: null }));
        const results = await Promise.all(Array.from({ length: 50 }, (_, i) => (i % 2 === 0 ? store : peer).redeemApproval('apr-race-r', T0 + 100 + i)));
        assert.equal(results.filter(Boolean).length, 1);
        const w = results.indexOf(true);
        const stored = await peer.getApproval('apr-race-r');
        assert.equal(stored?.status, 'redeemed');
        assert.equal(stored?.redeemedAt, T0 + 100 + w);
        assert.equal(stored?.decidedBy, 'admin:alice', 'the decision is kept');
        assert.equal(await store.redeemApproval('apr-race-r', T0 + 200), false, 'single use');
      });

      it('redeemApproval refuses a pending, denied, expired or unknown approval', async () => {
        await store.createApproval(approval('apr-r-pending', { expiresAt: T0 + 1000 }));
        assert.equal(await store.redeemApproval('apr-r-pending', T0 + 1), false, 'not approved yet');
        assert.equal((await store.getApproval('apr-r-pending'))?.status, 'pending');

        await store.createApproval(approval('apr-r-denied', { expiresAt: T0 + 1000 }));
        await store.decideApproval('apr-r-denied', { status: 'denied', decidedBy: 'admin:alice', decidedAt: T0 + 1, reason: null });
        assert.equal(await store.redeemApproval('apr-r-denied', T0 + 2), false);
        assert.equal((await store.getApproval('apr-r-denied'))?.status, 'denied');

        await store.createApproval(approval('apr-r-expired', { expiresAt: T0 + 1000 }));
        await store.decideApproval('apr-r-expired', { status: 'approved', decidedBy: 'admin:alice', decidedAt: T0 + 1, reason: null });
        assert.equal(await store.redeemApproval('apr-r-expired', T0 + 1000), false, 'expiresAt <= at');
        assert.equal(await store.redeemApproval('apr-r-expired', T0 + 5000), false);
        const still = await store.getApproval('apr-r-expired');
        assert.equal(still?.status, 'approved');
        assert.equal(still?.redeemedAt, null);
        assert.equal(await store.redeemApproval('apr-r-expired', T0 + 999), true, 'just before expiry it still works');

        // A row stored as 'expired' (status set elsewhere) is not redeemable either.
        await store.createApproval(approval('apr-r-marked', { status: 'expired', expiresAt: T0 + 1000 }));
        assert.equal(await store.redeemApproval('apr-r-marked', T0 + 1), false);

        assert.equal(await store.redeemApproval('nope', T0), false);
      });
    });

    describe('signals', () => {
      const sig = (id: string, over: Partial<SignalRecord> = {}): SignalRecord => ({
        id, nhiId: 'deploy-agent', jti: null, runId: null, credentialId: null, reason: 'caep.session_revoked', severity: 'high',
        action: 'revoke_tokens', source: 'ssf:idp', txn: 'txn-1', receivedAt: T0, appliedAt: null, status: 'recorded', error: null,
        data: { set_jti: 'abc' }, ...over,
      });
      const rst = (id: string, over: Partial<RestrictionRecord> = {}): RestrictionRecord => ({
        id, nhiId: 'nhi-r', kind: 'step_down', fallbackTier: 'read', signalId: 'sig-x', reason: 'risk', createdAt: T0, liftedAt: null, liftedBy: null, ...over,
      });
      const stream = (id: string, over: Partial<SsfStreamRecord> = {}): SsfStreamRecord => ({
        id, direction: 'out', owner: 'cred-1', config: { aud: 'rcv', events_requested: ['e'], delivery: { method: 'urn:ietf:rfc:8936' } },
        status: 'enabled', statusReason: null, createdAt: T0, updatedAt: T0, ...over,
      });
      const ev = (id: string, streamId: string, jti: string, over: Partial<SsfEventRecord> = {}): SsfEventRecord => ({
        id, streamId, jti, setJwt: `set.${jti}`, status: 'queued', attempts: 0, nextAttemptAt: null, lastError: null, createdAt: T0, ...over,
      });

      it('signals round-trip, list newest first, and record their outcome (time to apply)', async () => {
        await store.insertSignal(sig('sig-1'));
        await store.insertSignal(sig('sig-2', { receivedAt: T0 + 10, nhiId: 'other', jti: 'j', runId: 'r', credentialId: 'c', txn: null }));
        assert.deepEqual(await store.getSignal('sig-1'), sig('sig-1'));
        assert.deepEqual((await store.listSignals()).map((x) => x.id).slice(0, 2), ['sig-2', 'sig-1']);
        assert.deepEqual((await store.listSignals({ nhiId: 'other' })).map((x) => x.id), ['sig-2']);
        assert.deepEqual((await store.listSignals({ since: T0 + 5 })).map((x) => x.id), ['sig-2']);
        await store.updateSignalOutcome('sig-1', { status: 'applied', appliedAt: T0 + 42, error: null });
        const got = await store.getSignal('sig-1');
        assert.equal(got?.status, 'applied');
        assert.equal(got?.appliedAt, T0 + 42);
        await assert.rejects(store.insertSignal(sig('sig-1')), ConflictError);
      });

      it('recordSetsOnce (PostgreSQL): one statement; a SET whose replay record exists writes none of its rows; any failure writes nothing', async () => {
        if (d.name !== 'postgres') {
          await assert.rejects(store.recordSetsOnce({ replay: [{ scope: 's', key: 'k', expiresAt: T0 }], signals: [], revocations: [] }), MandateError);
          return;
        }
        const k = randomBytes(4).toString('hex');
        const rev = (id: string, signalId: string): RevocationRecord => ({ id, kind: 'nhi', target: `nhi-${id}`, notBefore: T0, reason: 'r', signalId, createdAt: T0, expiresAt: T0 + 60_000 });
        const exp = clock.now() + 365 * 86_400_000; // beyond the replay tests' clock
        // The second SET's record is already there (accepted before, maybe by another instance).
        assert.equal(await peer.insertOnce('ssf-set:t', `b-${k}`, exp), true);
        const won = await store.recordSetsOnce({
          replay: [{ scope: 'ssf-set:t', key: `a-${k}`, expiresAt: exp }, { scope: 'ssf-set:t', key: `b-${k}`, expiresAt: exp }, { scope: 'ssf-set:t', key: `c-${k}`, expiresAt: exp }],
          signals: [
            { of: 0, rec: sig(`sa-${k}`, { status: 'applied', appliedAt: T0 + 3, data: { set_jti: `a-${k}`, quote: 'it\'s "x" {,}' } }) },
            { of: 1, rec: sig(`sb-${k}`) },
            { of: 2, rec: sig(`sc-${k}`, { nhiId: null, status: 'unmapped', txn: null }) },
          ],
          revocations: [{ of: 0, rec: rev(`ra-${k}`, `sa-${k}`) }, { of: 1, rec: rev(`rb-${k}`, `sb-${k}`) }],
        });
        assert.deepEqual(won, [true, false, true]);
        assert.deepEqual(await store.getSignal(`sa-${k}`), sig(`sa-${k}`, { status: 'applied', appliedAt: T0 + 3, data: { set_jti: `a-${k}`, quote: 'it\'s "x" {,}' } }));
        assert.equal((await store.getSignal(`sc-${k}`))?.status, 'unmapped');
        assert.equal(await store.getSignal(`sb-${k}`), undefined, 'a replayed SET writes no signal');
        const revs = (await store.listRevocations(T0)).map((r) => r.id);
        assert.ok(revs.includes(`ra-${k}`));
        assert.ok(!revs.includes(`rb-${k}`), 'nor a revocation');
        // A failure (here a signal id that exists) writes nothing, not even the replay records.
        await assert.rejects(store.recordSetsOnce({
          replay: [{ scope: 'ssf-set:t', key: `d-${k}`, expiresAt: exp }],
          signals: [{ of: 0, rec: sig(`sa-${k}`) }],
          revocations: [{ of: 0, rec: rev(`rd-${k}`, `sa-${k}`) }],
        }), ConflictError);
        assert.equal(await store.insertOnce('ssf-set:t', `d-${k}`, exp), true, 'the failed statement left no replay record');
        assert.ok(!(await store.listRevocations(T0)).some((r) => r.id === `rd-${k}`));
        // The checks: an NHI that does not exist, or a stream that is not enabled: nothing written, undefined.
        await store.upsertNhi(nhi(`nhi-${k}`));
        await store.createSsfStream(stream(`rcv-${k}`, { direction: 'in', owner: null, status: 'paused' }));
        const one = (key: string) => ({ replay: [{ scope: 'ssf-set:t', key, expiresAt: exp }], signals: [{ of: 0, rec: sig(`s${key}`) }], revocations: [] });
        assert.equal(await store.recordSetsOnce({ ...one(`e-${k}`), requireNhis: [`nhi-${k}`, `nobody-${k}`] }), undefined);
        assert.equal(await store.recordSetsOnce({ ...one(`e-${k}`), requireStreamsEnabled: [`rcv-${k}`] }), undefined);
        assert.equal(await store.getSignal(`se-${k}`), undefined);
        assert.deepEqual(await store.recordSetsOnce({ ...one(`e-${k}`), requireNhis: [`nhi-${k}`, `nhi-${k}`], requireStreamsEnabled: [`no-such-stream-${k}`] }), [true]);
        assert.equal((await store.getSignal(`se-${k}`))?.id, `se-${k}`);
      });

      it('the hot write statements (SET ingest, audit append, signal timeline) are named prepared statements on PostgreSQL', async () => {
        if (d.name !== 'postgres') return;
        // A store of its own with two connections: two writes at once use both, and two reads at
        // once (each waiting 50 ms) then look at both connections' prepared statements.
        const schema = `t_${randomBytes(8).toString('hex')}`;
        // store.prepared_statements: false (a pooler in transaction mode): the same statements, unnamed.
        const plain = await openStore({ driver: 'postgres', url: TEST_PG_URL, schema, poolSize: 2, preparedStatements: false });
        try {
          await plain.migrate();
          const r = await plain.recordSetsOnce({ replay: [{ scope: 'ssf-set:p', key: `plain-${schema}`, expiresAt: Date.now() + 86_400_000 }], signals: [{ of: 0, rec: sig(`plain-${schema}`) }], revocations: [] });
          assert.deepEqual(r, [true]);
          const names = (await sql<{ name: string }>`select name from pg_prepared_statements`.execute(plain.db)).rows.map((x) => x.name);
          assert.ok(!names.some((n) => n.startsWith('mandate_')), `nothing prepared: ${names.join(', ')}`);
        } finally {
          await plain.close();
        }
        const own = await openStore({ driver: 'postgres', url: TEST_PG_URL, schema, poolSize: 2 });
        try {
          await own.migrate();
          const k = randomBytes(4).toString('hex');
          const exp = Date.now() + 365 * 86_400_000;
          const one = (key: string) => own.recordSetsOnce({ replay: [{ scope: 'ssf-set:p', key, expiresAt: exp }], signals: [{ of: 0, rec: sig(`sp${key}`) }], revocations: [] });
          await Promise.all([one(`a-${k}`), one(`b-${k}`)]);
          const times = (instanceId: string) => own.recordSignalTimes([{ signalId: `spa-${k}`, instanceId, role: 'proxy', appliedAt: T0, firstDeniedAt: null }]);
          await Promise.all([times('i1'), times('i2')]);
          const names = async () => (await sql<{ name: string }>`select name from pg_prepared_statements, pg_sleep(0.05) order by name`.execute(own.db)).rows.map((r) => r.name);
          const [a, b] = await Promise.all([names(), names()]);
          for (const list of [a!, b!]) {
            assert.ok(list.includes('mandate_record_sets_v1'), `prepared: ${list.join(', ')}`);
            assert.ok(list.includes('mandate_signal_times_v1'), `prepared: ${list.join(', ')}`);
          }
          // Prepared or not, the statement does the same: the same jti again is a replay.
          assert.deepEqual(await one(`a-${k}`), [false]);
        } finally {
          await sql`drop schema if exists ${sql.id(schema)} cascade`.execute(own.db).catch(() => undefined);
          await own.close();
        }
      });

      it('signal applications: first applied / first denial per (signal, instance) win, in either order, across instances', async () => {
        await Promise.all([
          store.recordSignalApplied({ signalId: 'sig-a', instanceId: 'i1', role: 'proxy', at: T0 + 5 }),
          peer.recordSignalApplied({ signalId: 'sig-a', instanceId: 'i1', role: 'proxy', at: T0 + 6 }),
        ]);
        await store.recordSignalApplied({ signalId: 'sig-a', instanceId: 'i1', role: 'proxy', at: T0 + 9 });
        await store.recordSignalDenied({ signalId: 'sig-a', instanceId: 'i1', role: 'proxy', at: T0 + 7 });
        await store.recordSignalDenied({ signalId: 'sig-a', instanceId: 'i1', role: 'proxy', at: T0 + 8 });
        // A denial written before the application (two independent background writes).
        await store.recordSignalDenied({ signalId: 'sig-a', instanceId: 'i2', role: 'proxy', at: T0 + 4 });
        await store.recordSignalApplied({ signalId: 'sig-a', instanceId: 'i2', role: 'proxy', at: T0 + 3 });
        await store.recordSignalApplied({ signalId: 'sig-b', instanceId: 'i1', role: 'broker', at: T0 + 1 });
        const rows = await store.listSignalApplications(['sig-a']);
        assert.equal(rows.length, 2);
        assert.ok(rows[0]!.appliedAt === T0 + 5 || rows[0]!.appliedAt === T0 + 6);
        assert.deepEqual(rows.map((r) => [r.instanceId, r.firstDeniedAt]), [['i1', T0 + 7], ['i2', T0 + 4]]);
        assert.equal(rows[1]!.appliedAt, T0 + 3);
        assert.deepEqual(await store.listSignalApplications([]), []);
        assert.equal((await store.listSignalApplications(['sig-a', 'sig-b'])).length, 3);
      });

      it('batches (group commit): many signals and revocations in one transaction, read back by id; a batch with a taken id writes nothing', async () => {
        const many = Array.from({ length: 620 }, (_, i) => sig(`sig-batch-${i}`, { receivedAt: T0 + i, status: 'applied', appliedAt: T0 + i + 1 }));
        const revs: RevocationRecord[] = many.map((x, i) => ({ id: `rev-batch-${i}`, kind: 'nhi', target: `n-${i}`, notBefore: T0, reason: 'r', signalId: x.id, createdAt: T0, expiresAt: null }));
        await store.transaction(async (tx) => {
          await tx.insertSignals(many);
          await tx.addRevocations(revs);
        });
        const back = await peer.getSignals([...many.map((x) => x.id), 'sig-batch-0', 'no-such-signal']);
        assert.equal(back.length, many.length, 'each once, unknown ids left out');
        assert.deepEqual(back.find((x) => x.id === 'sig-batch-7'), many[7]);
        const live = await peer.listRevocations(T0);
        assert.equal(live.filter((r) => r.id.startsWith('rev-batch-')).length, revs.length);
        // One conflicting row: the whole transaction rolls back, nothing of it is written.
        await assert.rejects(store.transaction(async (tx) => {
          await tx.insertSignals([sig('sig-batch-new'), sig('sig-batch-3')]);
        }), ConflictError);
        assert.equal(await store.getSignal('sig-batch-new'), undefined);
        assert.deepEqual(await store.getSignals([]), []);
      });

      it('knownNhiIds: which ids are NHIs, in one query', async () => {
        await store.upsertNhi(nhi('known-nhi-1'));
        assert.deepEqual([...(await peer.knownNhiIds(['known-nhi-1', 'unknown-nhi', 'known-nhi-1']))], ['known-nhi-1']);
        assert.deepEqual([...(await store.knownNhiIds([]))], []);
      });

      it('recordSignalTimes: many rows in one upsert, each time the first one recorded wins; repeated keys merged', async () => {
        await store.recordSignalTimes([
          { signalId: 'sig-t', instanceId: 'i1', role: 'proxy', appliedAt: T0 + 5, firstDeniedAt: null },
          { signalId: 'sig-t', instanceId: 'i1', role: 'proxy', appliedAt: null, firstDeniedAt: T0 + 9 },
          { signalId: 'sig-t', instanceId: 'i1', role: 'proxy', appliedAt: T0 + 4, firstDeniedAt: T0 + 8 },
          { signalId: 'sig-t', instanceId: 'i2', role: 'broker', appliedAt: T0 + 6, firstDeniedAt: null },
        ]);
        await peer.recordSignalTimes([{ signalId: 'sig-t', instanceId: 'i1', role: 'proxy', appliedAt: T0 + 1, firstDeniedAt: T0 + 1 }]);
        await store.recordSignalDenied({ signalId: 'sig-t', instanceId: 'i2', role: 'broker', at: T0 + 7 });
        const rows = await store.listSignalApplications(['sig-t']);
        assert.deepEqual(rows.map((r) => [r.instanceId, r.role, r.appliedAt, r.firstDeniedAt]), [['i1', 'proxy', T0 + 4, T0 + 8], ['i2', 'broker', T0 + 6, T0 + 7]]);
        assert.equal((await store.recordSignalTimes([])).size, 0);
        // The arrival times of the rows' signals that exist come back (PostgreSQL: the same statement).
        await store.insertSignal(sig('sig-t2', { receivedAt: T0 + 77 }));
        const back = await store.recordSignalTimes([
          { signalId: 'sig-t2', instanceId: 'i1', role: 'proxy', appliedAt: T0 + 80, firstDeniedAt: null },
          { signalId: 'sig-none', instanceId: 'i1', role: 'proxy', appliedAt: T0 + 80, firstDeniedAt: null },
          { signalId: 'sig-t2', instanceId: 'i2', role: 'broker', appliedAt: T0 + 81, firstDeniedAt: null },
        ]);
        assert.deepEqual([...back], [['sig-t2', T0 + 77]]);
      });

      it('a new restriction supersedes the active one; lifting is atomic across instances', async () => {
        await store.addRestriction(rst('rst-1'));
        await store.addRestriction(rst('rst-2', { kind: 'step_up', createdAt: T0 + 5, signalId: 'sig-y' }));
        const active = await store.listRestrictions({ activeOnly: true, nhiId: 'nhi-r' });
        assert.deepEqual(active.map((r) => r.id), ['rst-2']);
        const old = (await store.listRestrictions({ nhiId: 'nhi-r' })).find((r) => r.id === 'rst-1');
        assert.equal(old?.liftedBy, 'signal:sig-y');
        const [a, b] = await Promise.all([store.liftRestrictions('nhi-r', 'admin:a', T0 + 9), peer.liftRestrictions('nhi-r', 'admin:b', T0 + 9)]);
        assert.equal(a.length + b.length, 1, 'exactly one lift wins');
        assert.deepEqual(await store.listRestrictions({ activeOnly: true, nhiId: 'nhi-r' }), []);
        assert.deepEqual(await store.liftRestrictions('nhi-r', 'admin:a', T0 + 10), []);
      });

      it('streams, subjects and the SET queue: enqueue once, claim once, settle, dead letters, cascade on delete', async () => {
        await store.createSsfStream(stream('str-1'));
        await store.createSsfStream(stream('str-2', { owner: 'cred-2' }));
        await store.createSsfStream(stream('rcv_x', { direction: 'in', owner: null }));
        assert.deepEqual(await store.getSsfStream('str-1'), stream('str-1'));
        assert.deepEqual((await store.listSsfStreams({ direction: 'out', owner: 'cred-2' })).map((x) => x.id), ['str-2']);
        assert.equal(await store.updateSsfStream(stream('str-1', { status: 'paused', statusReason: 'maintenance', updatedAt: T0 + 1 })), true);
        assert.equal((await store.getSsfStream('str-1'))?.statusReason, 'maintenance');
        assert.equal(await store.updateSsfStream(stream('nope')), false);

        const sub = { streamId: 'str-1', key: '{"format":"opaque","id":"a"}', subject: { format: 'opaque', id: 'a' }, nhiId: 'a', createdAt: T0 };
        await store.addSsfSubject(sub);
        await store.addSsfSubject(sub); // idempotent
        assert.deepEqual(await store.listSsfSubjects('str-1'), [sub]);
        assert.equal(await store.removeSsfSubject('str-1', sub.key), true);
        assert.equal(await store.removeSsfSubject('str-1', sub.key), false);

        const inserted = await Promise.all([store.enqueueSsfEvent(ev('sev-1', 'str-1', 'j1')), peer.enqueueSsfEvent(ev('sev-1b', 'str-1', 'j1'))]);
        assert.equal(inserted.filter(Boolean).length, 1, 'one SET per (stream, jti)');
        await store.enqueueSsfEvent(ev('sev-2', 'str-1', 'j2', { createdAt: T0 + 1, nextAttemptAt: T0 + 100 }));
        await store.enqueueSsfEvent(ev('sev-3', 'str-2', 'j1'));
        assert.equal((await store.dueSsfEvents({ streamId: 'str-1', now: T0, limit: 10 })).length, 1);
        assert.equal((await store.dueSsfEvents({ streamId: 'str-1', now: T0 + 100, limit: 10 })).length, 2);
        assert.equal((await store.dueSsfEvents({ now: T0 + 100, limit: 10 })).length, 3);

        const claims = await Promise.all([store.claimSsfEvent('sev-2', T0 + 100, T0 + 500), peer.claimSsfEvent('sev-2', T0 + 100, T0 + 600)]);
        assert.equal(claims.filter(Boolean).length, 1, 'exactly one claimer wins');
        assert.equal((await store.dueSsfEvents({ streamId: 'str-1', now: T0 + 200, limit: 10 })).length, 1);

        await store.updateSsfEvent('sev-2', { status: 'dead', attempts: 6, nextAttemptAt: null, lastError: 'HTTP 503' });
        const dead = await store.listSsfEvents({ status: 'dead' });
        assert.deepEqual(dead.map((e) => [e.id, e.attempts, e.lastError]), [['sev-2', 6, 'HTTP 503']]);
        assert.equal((await store.getSsfEvent('sev-2'))?.status, 'dead');

        const firstId = inserted[0] ? 'sev-1' : 'sev-1b';
        assert.equal(await store.settleSsfEvents('str-1', ['j1', 'j2', 'unknown'], { status: 'acked' }), 1, 'only queued events are settled');
        assert.equal((await store.getSsfEvent(firstId))?.status, 'acked');
        assert.equal(await store.settleSsfEvents('str-1', [], { status: 'acked' }), 0);

        await store.putSsfStreamCredential({ streamId: 'str-1', secretHash: 'a'.repeat(64), createdAt: T0 });
        await store.putSsfStreamCredential({ streamId: 'str-1', secretHash: 'b'.repeat(64), createdAt: T0 + 1 });
        assert.deepEqual(await store.getSsfStreamCredential('str-1'), { streamId: 'str-1', secretHash: 'b'.repeat(64), createdAt: T0 + 1 }, 'replaced, one per stream');
        assert.equal(await store.getSsfStreamCredential('str-2'), undefined);

        assert.equal(await store.deleteSsfStream('str-1'), true);
        assert.equal(await store.deleteSsfStream('str-1'), false);
        assert.deepEqual(await store.listSsfEvents({ streamId: 'str-1' }), []);
        assert.equal(await store.getSsfStreamCredential('str-1'), undefined, 'the credential goes with its stream');
        assert.equal((await store.listSsfEvents({ streamId: 'str-2' })).length, 1);
      });
    });

    describe('governance', () => {
      const input = (over: Partial<FindingInput> = {}): FindingInput => ({
        nhiId: 'gov-nhi', detection: 'out_of_bounds', key: 'undeclared:tickets', severity: 'medium', title: 't', evidence: { n: 1 },
        at: T0, eventId: 'ev-1', ...over,
      });
      const action = (id: string, over: Partial<PlaybookActionRecord> = {}): PlaybookActionRecord => ({
        id, playbook: 'pb', trigger: 'finding:f1', findingId: 'f1', nhiId: 'gov-nhi', action: 'step_down', dryRun: false, signalId: null,
        createdAt: T0, undoneAt: null, undoneBy: null, ...over,
      });

      it('a repeat of (nhi, detection, key) counts on one finding; a redelivered event is counted once; after resolve a new one starts', async () => {
        const a = await store.upsertFinding(input(), 'fnd-1');
        assert.equal(a.outcome, 'created');
        assert.equal(a.finding.count, 1);
        assert.equal(a.finding.status, 'open');
        assert.deepEqual(a.finding.evidence, { n: 1 });
        assert.equal((await store.upsertFinding(input(), 'fnd-x')).outcome, 'duplicate', 'same event id');
        // Two instances counting the same event at once: one counts it.
        const [b, c] = await Promise.all([
          store.upsertFinding(input({ eventId: 'ev-2', at: T0 + 5, severity: 'high', evidence: { n: 2 } }), 'fnd-y'),
          peer.upsertFinding(input({ eventId: 'ev-2', at: T0 + 5, severity: 'high', evidence: { n: 2 } }), 'fnd-z'),
        ]);
        assert.deepEqual([b.outcome, c.outcome].sort(), ['duplicate', 'updated']);
        const f = (await store.getFinding('fnd-1'))!;
        assert.equal(f.count, 2);
        assert.equal(f.lastSeen, T0 + 5);
        assert.equal(f.firstSeen, T0);
        assert.equal(f.severity, 'high', 'the higher severity stays');
        assert.deepEqual(f.evidence, { n: 2 });
        assert.equal((await store.upsertFinding(input({ eventId: 'ev-3', severity: 'low' }), 'fnd-w')).finding.severity, 'high');
        assert.equal((await store.upsertFinding(input({ key: 'other' , eventId: 'ev-4' }), 'fnd-2')).outcome, 'created');

        const acked = await store.setFindingStatus('fnd-1', 'acknowledged', 'admin:a', T0 + 10, 'looking');
        assert.equal(acked?.status, 'acknowledged');
        assert.equal(acked?.statusNote, 'looking');
        assert.equal((await store.upsertFinding(input({ eventId: 'ev-5' }), 'fnd-v')).finding.id, 'fnd-1', 'acknowledged still counts');
        await store.setFindingStatus('fnd-1', 'resolved', 'admin:a', T0 + 20, null);
        const again = await store.upsertFinding(input({ eventId: 'ev-6', at: T0 + 30 }), 'fnd-3');
        assert.equal(again.outcome, 'created');
        assert.equal(again.finding.id, 'fnd-3');
        assert.equal(await store.setFindingStatus('nope', 'resolved', 'a', T0, null), undefined);

        assert.deepEqual((await store.listFindings({ nhiId: 'gov-nhi' })).map((x) => x.id), ['fnd-3', 'fnd-1', 'fnd-2'], 'newest last seen first');
        assert.deepEqual((await store.listFindings({ nhiId: 'gov-nhi', status: 'resolved' })).map((x) => x.id), ['fnd-1']);
        assert.deepEqual((await store.listFindings({ nhiId: 'gov-nhi', minSeverity: 'high' })).map((x) => x.id), ['fnd-1']);
        assert.deepEqual((await store.listFindings({ nhiId: 'gov-nhi', detection: 'stolen_token' })), []);
        assert.equal((await store.listFindings({ nhiId: 'gov-nhi', limit: 1 })).length, 1);
      });

      it('mutes: active ones by end date, deleted once', async () => {
        await store.addMute({ id: 'mute-1', nhiId: 'gov-nhi', detection: 'minting_rate', until: T0 + 100, reason: 'r', createdBy: 'admin:a', createdAt: T0 });
        await store.addMute({ id: 'mute-2', nhiId: 'gov-nhi', detection: 'new_grant', until: T0 + 10, reason: 'r', createdBy: 'admin:a', createdAt: T0 + 1 });
        assert.deepEqual((await store.listMutes({ activeAt: T0 + 50 })).map((m) => m.id), ['mute-1']);
        assert.deepEqual((await store.listMutes({ nhiId: 'gov-nhi' })).map((m) => m.id), ['mute-1', 'mute-2']);
        assert.equal((await store.listMutes({ activeAt: T0 }))[0]!.until, T0 + 100);
        assert.equal(await store.deleteMute('mute-2'), true);
        assert.equal(await store.deleteMute('mute-2'), false);
      });

      it('playbook actions: one per (trigger, playbook) across instances; undone once', async () => {
        const claims = await Promise.all([store.claimPlaybookAction(action('pba-1')), peer.claimPlaybookAction(action('pba-2'))]);
        assert.deepEqual(claims.sort(), [false, true]);
        assert.equal(await store.claimPlaybookAction(action('pba-3', { playbook: 'other', dryRun: true })), true);
        const winner = claims[0] ? 'pba-1' : (await store.getPlaybookAction('pba-1')) ? 'pba-1' : 'pba-2';
        await store.setPlaybookActionSignal(winner, 'sig-9');
        assert.equal((await store.getPlaybookAction(winner))?.signalId, 'sig-9');
        assert.equal((await store.getPlaybookAction('pba-3'))?.dryRun, true);
        assert.equal((await store.listPlaybookActions({ nhiId: 'gov-nhi' })).length, 2);
        const [u1, u2] = await Promise.all([store.markPlaybookActionUndone(winner, 'admin:a', T0 + 5), peer.markPlaybookActionUndone(winner, 'admin:b', T0 + 5)]);
        assert.equal([u1, u2].filter(Boolean).length, 1);
        assert.equal((await store.getPlaybookAction(winner))?.undoneAt, T0 + 5);
      });

      it('programme snapshots: one per day, replaced, oldest first', async () => {
        await store.putProgrammeSnapshot({ day: '2026-01-02', takenAt: T0, metrics: { nhis: 1 } });
        await store.putProgrammeSnapshot({ day: '2026-01-01', takenAt: T0, metrics: { nhis: 0 } });
        await store.putProgrammeSnapshot({ day: '2026-01-02', takenAt: T0 + 1, metrics: { nhis: 2 } });
        assert.deepEqual(await store.listProgrammeSnapshots(), [
          { day: '2026-01-01', takenAt: T0, metrics: { nhis: 0 } },
          { day: '2026-01-02', takenAt: T0 + 1, metrics: { nhis: 2 } },
        ]);
        assert.equal((await store.listProgrammeSnapshots('2026-01-02')).length, 1);
      });

      it('risk scores: upserted per NHI, an older computation never replaces a newer one', async () => {
        await store.putRiskScores([{ nhiId: 'rs-b', score: 40, computedAt: T0 }, { nhiId: 'rs-a', score: 10, computedAt: T0 }]);
        await store.putRiskScores([{ nhiId: 'rs-a', score: 85, computedAt: T0 + 10 }]);
        await store.putRiskScores([{ nhiId: 'rs-a', score: 20, computedAt: T0 + 5 }]);
        await store.putRiskScores([]);
        const rows = (await store.listRiskScores()).filter((r) => r.nhiId.startsWith('rs-'));
        assert.deepEqual(rows, [{ nhiId: 'rs-a', score: 85, computedAt: T0 + 10 }, { nhiId: 'rs-b', score: 40, computedAt: T0 }]);
      });

      it('issuance per NHI and hour from issued tokens; denials per NHI from the audit log', async () => {
        const H = 3_600_000;
        const base = Math.floor(T0 / H) * H + 100 * 24 * H;
        await store.recordIssuedTokens([
          token('gov-t1', { nhiId: 'gov-mint', issuedAt: base + 1 }), token('gov-t2', { nhiId: 'gov-mint', issuedAt: base + 2 }),
          token('gov-t3', { nhiId: 'gov-mint', issuedAt: base + H }), token('gov-t4', { nhiId: 'gov-old', issuedAt: base - 1 }),
        ]);
        const rows = (await store.issuanceByHour(base)).filter((r) => r.nhiId.startsWith('gov-')).sort((a, b) => a.hour - b.hour);
        assert.deepEqual(rows, [{ nhiId: 'gov-mint', hour: base / H, count: 2 }, { nhiId: 'gov-mint', hour: base / H + 1, count: 1 }]);
        const far = T0 + 1000 * 24 * H;
        const au = (id: string, type: string, subject: string | null, ts: number) =>
          ({ id, ts, type, actor: subject, subject, tool: null, decision: 'deny', traceId: null, data: {} });
        await store.appendChained([
          au('gov-a1', 'token.denied', 'gov-deny', far), au('gov-a2', 'tool.call_denied', 'gov-deny', far + 1),
          au('gov-a3', 'tool.called', 'gov-deny', far + 2), au('gov-a4', 'tool.call_denied', 'gov-deny', far - 1),
          au('gov-a5', 'tool.call_denied', null, far),
        ], chain);
        assert.deepEqual([...await store.denialsByNhi(far)], [['gov-deny', 2]]);
      });
    });

    describe('replay', () => {
      it('insertOnce is true exactly once for 50 concurrent callers, and again after expiry', async () => {
        const key = `jti-${randomBytes(6).toString('hex')}`;
        const exp = clock.now() + 60_000;
        const race = async (expiresAt: number) => {
          const r = await Promise.all(Array.from({ length: 50 }, (_, i) => (i % 2 === 0 ? store : peer).insertOnce('dpop', key, expiresAt)));
          return r.filter(Boolean).length;
        };
        assert.equal(await race(exp), 1);
        assert.equal(await store.insertOnce('dpop', key, exp), false);
        assert.equal(await store.insertOnce('client_assertion', key, exp), true, 'scopes are separate');

        clock.set(exp - 1);
        assert.equal(await store.insertOnce('dpop', key, exp + 60_000), false, 'not yet expired');
        clock.set(exp); // expires_at <= now: expired, may be reused
        assert.equal(await race(exp + 60_000), 1);
        assert.equal(await peer.insertOnce('dpop', key, exp + 60_000), false);

        // purgeExpired removes exactly the expired records
        await store.insertOnce('purge', 'old', clock.now() - 1);
        await store.insertOnce('purge', 'new', clock.now() + 1);
        assert.equal(await store.purgeExpired(clock.now()), 2); // purge/old and client_assertion/key
        assert.equal(await store.insertOnce('purge', 'new', clock.now() + 5), false);
        assert.equal(await store.insertOnce('purge', 'old', clock.now() + 5), true);
        clock.set(T0);
      });
    });

    describe('availability', () => {
      it('ping succeeds while open and fails with UnavailableError after close', async () => {
        const s = await d.open();
        await s.ping();
        assert.equal(s.dialect, d.name);
        await s.close();
        await assert.rejects(s.ping(), UnavailableError);
        await assert.rejects(s.listNhis(), UnavailableError);
        await assert.rejects(s.withLock('x', async () => 1), UnavailableError);
        await s.close(); // idempotent
      });

      if (d.name === 'postgres') {
        it('openStore fails with UnavailableError when the server is unreachable', async () => {
          await assert.rejects(openStore({ driver: 'postgres', url: 'postgres://postgres@127.0.0.1:1/test' }), UnavailableError);
        });

        it('the schema option wins over an options parameter in the URL, which is kept', async (t) => {
          const schema = `t_${randomBytes(8).toString('hex')}`;
          const s = await openStore({ driver: 'postgres', url: `${TEST_PG_URL}?options=-c%20statement_timeout%3D4321`, schema, poolSize: 2 });
          t.after(async () => {
            await sql`drop schema if exists ${sql.id(schema)} cascade`.execute(s.db);
            await s.close();
          });
          const r = await sql<{ sp: string; st: string }>`select current_schema() as sp, current_setting('statement_timeout') as st`.execute(s.db);
          assert.deepEqual(r.rows[0], { sp: schema, st: '4321ms' });
        });

        it('BIGINT comes back as a number without touching the global pg type parsers', async () => {
          const r = await sql<{ n: number; c: number }>`select 9007199254740991::bigint as n, count(*) as c from audit`.execute(store.db);
          assert.equal(r.rows[0]?.n, Number.MAX_SAFE_INTEGER);
          assert.equal(typeof r.rows[0]?.c, 'number');
          assert.equal(pg.types.getTypeParser(20)('42'), '42', 'the process-wide int8 parser is unchanged');
        });
      }
    });
  });
}

describe('storeOptionsFromConfig', () => {
  const base: MandateConfig['store'] = { driver: 'sqlite', sqlite_path: '.mandate/mandate.db', pool_size: 10, prepared_statements: true };
  const resolve = (ref: string) => {
    assert.equal(ref, 'env:MANDATE_DATABASE_URL');
    return 'postgres://u:secret@db:5432/mandate';
  };

  it('maps sqlite', () => {
    assert.deepEqual(storeOptionsFromConfig(base, resolve), { driver: 'sqlite', sqlitePath: '.mandate/mandate.db' });
  });

  it('resolves a secret reference for postgres_url and keeps a plain URL', () => {
    assert.deepEqual(storeOptionsFromConfig({ ...base, driver: 'postgres', postgres_url: 'env:MANDATE_DATABASE_URL', pool_size: 4 }, resolve), {
      driver: 'postgres', url: 'postgres://u:secret@db:5432/mandate', poolSize: 4, preparedStatements: true,
    });
    const plain = storeOptionsFromConfig({ ...base, driver: 'postgres', postgres_url: 'postgres://mandate@db/mandate' }, () => assert.fail('not a ref'));
    assert.deepEqual(plain, { driver: 'postgres', url: 'postgres://mandate@db/mandate', poolSize: 10, preparedStatements: true });
    // Behind a pooler in transaction mode that does not keep prepared statements.
    const pooled = storeOptionsFromConfig({ ...base, driver: 'postgres', postgres_url: 'postgres://mandate@db/mandate', prepared_statements: false }, () => assert.fail('not a ref'));
    assert.equal((pooled as { preparedStatements?: boolean }).preparedStatements, false);
  });

  it('refuses postgres without a URL', () => {
    assert.throws(() => storeOptionsFromConfig({ ...base, driver: 'postgres' }, resolve), ConfigError);
  });
});
