import { parentPort, workerData } from 'node:worker_threads';
import SqliteDatabase from 'better-sqlite3';
import { chainHash } from '../../core/audit-chain.js';
import { replayUpsertSql } from '../replay-sql.js';
import type { WriterReply, WriterRequest, AppendResult } from './writer.js';

/**
 * The SQLite writer thread (see writer.ts): its own connection to the store's file, so
 * that the audit log's batches and the replay records are written, and committed (fsync),
 * beside the event loop instead of on it. better-sqlite3 is synchronous; here that blocks only
 * this thread. Each request is one transaction (or one atomic statement); requests run one at a
 * time, in the order they were sent.
 */

const { file } = workerData as { file: string };
const db = new SqliteDatabase(file, { timeout: 5000 });
db.pragma('busy_timeout = 5000');
db.pragma('foreign_keys = ON');

const statements = new Map<string, SqliteDatabase.Statement>();
function stmt(sql: string): SqliteDatabase.Statement {
  let s = statements.get(sql);
  if (s === undefined) {
    s = db.prepare(sql);
    statements.set(sql, s);
    if (statements.size > 128) statements.delete(statements.keys().next().value!);
  }
  return s;
}

/** Rows per INSERT, as the Store's (12 columns × 500 stays under SQLite's parameter limit). */
const CHUNK = 500;
const AUDIT_COLUMNS = '"seq", "id", "ts", "type", "actor", "subject", "tool", "decision", "trace_id", "data", "prev_hash", "hash"';
const auditInsert = new Map<number, string>();
function auditInsertSql(n: number): string {
  let text = auditInsert.get(n);
  if (text === undefined) {
    text = `insert into "audit" (${AUDIT_COLUMNS}) values ${Array(n).fill('(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)').join(', ')}`;
    if (auditInsert.size < 1024) auditInsert.set(n, text);
  }
  return text;
}

const NO_DATA: Record<string, unknown> = {};

/**
 * Store.appendChained on this connection: BEGIN IMMEDIATE takes the write lock first (waiting
 * up to busy_timeout for another writer), so the head read under it cannot change; the chain is
 * computed from that head; rows and the new head are written; COMMIT. Any error rolls it all back.
 */
const append = db.transaction((events: Extract<WriterRequest, { op: 'append' }>['events']): AppendResult => {
  const head = stmt('select "seq", "hash" from "audit_head" where "id" = ?').get(1) as { seq: number | bigint; hash: string } | undefined;
  if (!head) throw Object.assign(new Error('audit_head row is missing: was the store migrated?'), { code: 'ERR_STORE_CORRUPT' });
  const firstSeq = Number(head.seq) + 1;
  let seq = firstSeq - 1;
  let prev = head.hash;
  const hashes: string[] = [];
  const params: unknown[] = [];
  for (const ev of events) {
    seq += 1;
    const hash = chainHash(prev, {
      seq, id: ev.id, ts: ev.ts, type: ev.type, actor: ev.actor, subject: ev.subject, tool: ev.tool, decision: ev.decision,
      traceId: ev.traceId, data: NO_DATA, dataJson: ev.dataJson,
    });
    params.push(seq, ev.id, ev.ts, ev.type, ev.actor, ev.subject, ev.tool, ev.decision, ev.traceId, ev.dataJson, prev, hash);
    hashes.push(hash);
    prev = hash;
  }
  const per = 12;
  for (let i = 0; i < events.length; i += CHUNK) {
    const n = Math.min(CHUNK, events.length - i);
    stmt(auditInsertSql(n)).run(...params.slice(i * per, (i + n) * per));
  }
  stmt('update "audit_head" set "seq" = ?, "hash" = ? where "id" = ?').run(seq, prev, 1);
  return { firstSeq, prevHash: head.hash, hashes };
});

/** Store.insertOnceMany's statement on this connection (one atomic statement per chunk); the (scope, key) pairs won. */
function replay(flat: unknown[], n: number, now: number): string[] {
  const won: string[] = [];
  for (let i = 0; i < n; i += CHUNK) {
    const m = Math.min(CHUNK, n - i);
    const rows = stmt(replayUpsertSql('sqlite', m)).all(...flat.slice(i * 3, (i + m) * 3), now) as Array<{ scope: string; key: string }>;
    for (const r of rows) won.push(`${r.scope}\u0000${r.key}`);
  }
  return won;
}

const port = parentPort!;
port.on('message', (req: WriterRequest) => {
  let reply: WriterReply;
  try {
    switch (req.op) {
      case 'append':
        reply = { id: req.id, ok: true, result: append.immediate(req.events) };
        break;
      case 'replay':
        reply = { id: req.id, ok: true, result: replay(req.flat, req.n, req.now) };
        break;
      case 'close':
        db.close();
        port.postMessage({ id: req.id, ok: true, result: null } satisfies WriterReply);
        port.close();
        return;
    }
  } catch (err) {
    const e = err as { message?: unknown; code?: unknown };
    reply = { id: req.id, ok: false, error: { message: String(e?.message ?? err), code: typeof e?.code === 'string' ? e.code : undefined } };
  }
  port.postMessage(reply);
});
