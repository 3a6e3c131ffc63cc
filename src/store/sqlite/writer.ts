import { Worker } from 'node:worker_threads';
import { MandateError, UnavailableError } from '../../core/errors.js';
import type { AuditColumns } from '../../core/audit-chain.js';

/**
 * A SQLite file's writer thread, for the two writes on a request's path: the audit log's
 * batches (`Store.appendChained`) and the one-time `jti` records (`Store.insertOnceMany`, DPoP
 * proofs and client assertions). better-sqlite3 is synchronous, so on the main connection each
 * such transaction, its commit's fsync included, stopped the event loop (bench/proxy: ~0.05 ms
 * of the main thread per proxied call, and the p99 stalls). The thread has its own connection
 * to the same file (WAL: readers on the main connection are not blocked, and see a batch once
 * it is committed); the caller's promise settles once the thread's COMMIT returned, so nothing
 * changes in what "written" means. One thread per file, started on first use, requests in order.
 *
 * Two connections mean two writers: the thread's transactions are BEGIN IMMEDIATE, and so are
 * the main connection's (see `openSqlite`), so neither reads a snapshot it then cannot upgrade
 * (SQLITE_BUSY_SNAPSHOT); one waits for the other's commit (busy_timeout).
 */

/** An audit event as the thread writes it: the columns, with the data's canonical JSON. */
export interface WriterEvent extends AuditColumns {
  dataJson: string;
}

export interface AppendResult {
  /** seq of the first event. */
  firstSeq: number;
  /** The head's hash before the batch (the first event's prevHash). */
  prevHash: string;
  /** Each event's hash, in order. */
  hashes: string[];
}

export type WriterRequest =
  | { id: number; op: 'append'; events: WriterEvent[] }
  | { id: number; op: 'replay'; flat: unknown[]; n: number; now: number }
  | { id: number; op: 'close' };

export type WriterReply =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: { message: string; code: string | undefined } };

interface Pending {
  resolve: (v: unknown) => void;
  reject: (err: unknown) => void;
}

export class SqliteWriter {
  private worker: Worker | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;

  constructor(private readonly file: string) {}

  /** Appends the events to the hash chain in one transaction. */
  append(events: WriterEvent[]): Promise<AppendResult> {
    return this.call({ id: 0, op: 'append', events }) as Promise<AppendResult>;
  }

  /** The replay upsert for `n` records (`flat`: scope, key, expiresAt per record); the `scope NUL key` pairs this call won. */
  replay(flat: unknown[], n: number, now: number): Promise<string[]> {
    return this.call({ id: 0, op: 'replay', flat, n, now }) as Promise<string[]>;
  }

  /** Lets the requests sent so far finish, then closes the thread's connection and ends it. */
  async close(): Promise<void> {
    this.closed = true;
    const w = this.worker;
    if (!w) return;
    const exited = new Promise<void>((r) => w.once('exit', () => r()));
    w.ref();
    await this.send(w, { id: 0, op: 'close' }).catch(() => {});
    await exited;
  }

  private call(req: WriterRequest): Promise<unknown> {
    if (this.closed) return Promise.reject(new UnavailableError('store unavailable: the store is closed'));
    return this.send(this.thread(), req);
  }

  private send(w: Worker, req: WriterRequest): Promise<unknown> {
    const id = this.nextId++;
    req.id = id;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      // Keep the process alive only while something waits for the thread.
      if (this.pending.size === 1) w.ref();
      w.postMessage(req);
    });
  }

  private thread(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(new URL('./writer-worker.js', import.meta.url), { workerData: { file: this.file } });
    w.unref();
    w.on('message', (m: WriterReply) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      // Once closing, the thread stays referenced until it has exited (close() waits for that).
      if (this.pending.size === 0 && !this.closed) w.unref();
      if (m.ok) p.resolve(m.result);
      else p.reject(errorFrom(m.error));
    });
    const fail = (why: string) => {
      if (this.worker === w) this.worker = undefined;
      // Whatever was in flight may or may not have committed: the callers treat it as a failed
      // write (the audit log reconciles before retrying; a replay record is decided again).
      const err = new UnavailableError(`store unavailable: the SQLite writer thread stopped (${why})`);
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
    w.on('error', (err) => fail(err instanceof Error ? err.message : String(err)));
    w.on('exit', (code) => fail(`exit code ${code}`));
    this.worker = w;
    return w;
  }
}

/** The thread's error as the main connection's would have been: same `code`, so translateError maps it alike. */
function errorFrom(e: { message: string; code: string | undefined }): Error {
  if (e.code === 'ERR_STORE_CORRUPT') return new MandateError('ERR_STORE_CORRUPT', e.message);
  return Object.assign(new Error(e.message), e.code !== undefined ? { code: e.code } : {});
}
