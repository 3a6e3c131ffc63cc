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
import { GENESIS_HASH, openStore, storeOptionsFromConfig, type Store } from '../../src/store/index.js';
import { STORE_DIALECTS, TEST_PG_URL, type StoreDialectCase } from '../helpers/stores.js';

const T0 = 1_700_000_000_000;

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
        assert.deepEqual(status.map((s) => s.name), ['001_initial']);
        assert.ok(status[0]?.executedAt instanceof Date);
        assert.deepEqual(await store.migrate(), []);
        assert.deepEqual(await peer.migrate(), []);
        assert.deepEqual(await store.auditHead(), { seq: 0, hash: GENESIS_HASH });
      });

      it('report pending on an empty database, then apply 001_initial once', async (t) => {
        const fresh = await openUnmigrated(d);
        t.after(fresh.cleanup);
        assert.deepEqual(await fresh.store.migrationStatus(), [{ name: '001_initial', executedAt: null }]);
        if (fresh.peer) {
          // PostgreSQL: two instances migrating at once; Kysely's migration lock lets one do it.
          const other = await fresh.peer();
          t.after(() => other.close());
          const [a, b] = await Promise.all([fresh.store.migrate(), other.migrate()]);
          assert.deepEqual([...a, ...b], ['001_initial']);
        } else {
          assert.deepEqual(await fresh.store.migrate(), ['001_initial']);
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
        assert.deepEqual(await fresh.store.migrationStatus(), [{ name: '001_initial', executedAt: null }]);
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
      it('round-trip, count, touch forward only, disable', async () => {
        assert.equal(await store.countAdminCredentials(), 0);
        const a: AdminCredentialRecord = {
          id: 'adm_1', name: 'bootstrap', role: 'admin', secretHash: 'a'.repeat(64), createdAt: T0, lastUsedAt: null, disabled: false,
        };
        const b: AdminCredentialRecord = { ...a, id: 'adm_2', name: 'alice', role: 'approver', createdAt: T0 + 1, disabled: true };
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

        assert.equal(await store.disableAdminCredential('adm_1'), true);
        assert.equal((await store.getAdminCredential('adm_1'))?.disabled, true);
        assert.equal(await store.disableAdminCredential('nope'), false);
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
  const base: MandateConfig['store'] = { driver: 'sqlite', sqlite_path: '.mandate/mandate.db', pool_size: 10 };
  const resolve = (ref: string) => {
    assert.equal(ref, 'env:MANDATE_DATABASE_URL');
    return 'postgres://u:secret@db:5432/mandate';
  };

  it('maps sqlite', () => {
    assert.deepEqual(storeOptionsFromConfig(base, resolve), { driver: 'sqlite', sqlitePath: '.mandate/mandate.db' });
  });

  it('resolves a secret reference for postgres_url and keeps a plain URL', () => {
    assert.deepEqual(storeOptionsFromConfig({ ...base, driver: 'postgres', postgres_url: 'env:MANDATE_DATABASE_URL', pool_size: 4 }, resolve), {
      driver: 'postgres', url: 'postgres://u:secret@db:5432/mandate', poolSize: 4,
    });
    const plain = storeOptionsFromConfig({ ...base, driver: 'postgres', postgres_url: 'postgres://mandate@db/mandate' }, () => assert.fail('not a ref'));
    assert.deepEqual(plain, { driver: 'postgres', url: 'postgres://mandate@db/mandate', poolSize: 10 });
  });

  it('refuses postgres without a URL', () => {
    assert.throws(() => storeOptionsFromConfig({ ...base, driver: 'postgres' }, resolve), ConfigError);
  });
});
