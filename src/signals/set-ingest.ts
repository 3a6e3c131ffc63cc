import { MandateError, UnavailableError, type AuditInput, type ReplayBatchStore } from '../core/index.js';
import type { RevocationRecord } from '../enforcement/index.js';
import type { SignalRecord, SignalsBatchStore, SignalsStore, SsfStreamStatus } from './ports.js';
import type { SignalInput, SignalsTxStore, StagedSignals } from './signals.js';
import { IAT_SKEW_MS, SetError, inboundStreamId } from './set.js';
import type { IngestOutcome, ReceiverConfig, ReceiverDeps, SsfReceiver, VerifiedSet } from './receiver.js';

/** Thrown inside a group commit's transaction to roll it back: these receivers' streams are not enabled. */
class StreamsRefused extends MandateError {
  constructor(readonly refused: Map<string, SetError>) {
    super('ERR_STREAMS_REFUSED', 'streams not enabled');
  }
}

interface Pending {
  r: ReceiverConfig;
  set: VerifiedSet;
  receivedAt: number;
  resolve: (o: IngestOutcome) => void;
  reject: (err: unknown) => void;
}

/**
 * Group commit of verified SETs: the SETs submitted while the commits in flight run go
 * together in the next one (as the broker's ReplayBatcher does for one-time jtis), in one
 * transaction: replay records (`insertOnceMany`, so the dedupe is decided by the database,
 * atomically across instances and across concurrent commits), the signals, and what they
 * cause. Up to `maxInFlight` commits run at once (each on its own connection), so that a SET
 * does not wait for a whole commit before its own starts. One SET whose transaction fails
 * does not take its batch with it: a failed batch is retried one SET per transaction, so only
 * the SET that fails on its own is refused (with a 5xx: nothing recorded, it may come again).
 */
export class SetIngest {
  private queue: Pending[] = [];
  private scheduled = false;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly maxBatch: number;
  private readonly maxInFlight: number;
  private readonly minBeside: number;

  constructor(private readonly rcv: SsfReceiver, private readonly d: ReceiverDeps) {
    this.maxBatch = d.maxBatch ?? 500;
    this.maxInFlight = d.maxCommitsInFlight ?? 2;
    this.minBeside = Math.max(1, d.minBatchBesideCommit ?? 64);
  }

  /**
   * Whether a commit may start now. The first always may. A second, beside it, only for a
   * queue of at least `minBeside` SETs: on one machine a commit costs CPU (the statement, its
   * audit records, its bus entry) more than it waits, so two small commits cost more than one
   * twice their size (bench/revocation: 1,356 → 1,602 SETs/s by push with 32 connections); a
   * queue that long means the commits wait on the database (a remote one, a slow disk), and then
   * a second one in flight pays.
   */
  private mayStart(): boolean {
    if (this.queue.length === 0 || this.inFlight.size >= this.maxInFlight) return false;
    return this.inFlight.size === 0 || this.queue.length >= this.minBeside;
  }

  submit(r: ReceiverConfig, set: VerifiedSet, receivedAt: number): Promise<IngestOutcome> {
    return new Promise<IngestOutcome>((resolve, reject) => {
      this.queue.push({ r, set, receivedAt, resolve, reject });
      this.schedule();
    });
  }

  /** Resolves once everything submitted so far is decided. */
  async drain(): Promise<void> {
    while (this.queue.length > 0 || this.inFlight.size > 0) {
      if (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
      else this.flush();
    }
  }

  private schedule(): void {
    if (this.scheduled || !this.mayStart()) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    if (!this.mayStart()) return;
    const batch = this.queue.slice(0, this.maxBatch);
    this.queue = this.queue.slice(batch.length);
    const run: Promise<void> = this.commit(batch).finally(() => {
      this.inFlight.delete(run);
      if (this.queue.length > 0) this.schedule();
    });
    this.inFlight.add(run);
  }

  private async commit(batch: Pending[]): Promise<void> {
    try {
      await this.write(batch);
    } catch (err) {
      if (batch.length === 1) {
        batch[0]!.reject(err);
        return;
      }
      this.d.logger.warn({ err, sets: batch.length }, 'SET batch not recorded; recording its SETs one by one');
      for (const p of batch) await this.write([p]).catch((e: unknown) => p.reject(e));
    }
  }

  /** One write for `batch` (the planned write, else one transaction); settles every Pending of it, or throws having settled none. */
  private async write(batch: Pending[]): Promise<void> {
    const names = [...new Set(batch.map((p) => p.r.name))];
    const candidates = new Set<string>();
    for (const p of batch) this.rcv.nhiCandidates(p.r, p.set, candidates);
    // One per (receiver, jti) goes to the database; copies in the same batch follow its outcome.
    const firsts = new Map<string, Pending>();
    const copies: Pending[] = [];
    for (const p of batch) {
      const k = `${p.r.name}\u0000${p.set.jti}`;
      if (firsts.has(k)) copies.push(p);
      else firsts.set(k, p);
    }
    const uniq = [...firsts.values()];
    let result: { won: boolean[]; staged: StagedSignals | undefined; keep: ReadonlySet<string> | undefined; audits: AuditInput[] } | undefined;
    try {
      result = await this.writePlanned(uniq, names, candidates);
      result ??= await this.writeInTransaction(uniq, names, candidates);
    } catch (err) {
      if (!(err instanceof StreamsRefused)) throw err;
      // Rare (an operator paused a receiver): refuse its SETs, record the others of the batch.
      const rest = batch.filter((p) => !err.refused.has(p.r.name));
      for (const p of batch) {
        const no = err.refused.get(p.r.name);
        if (no) p.reject(no);
      }
      if (rest.length > 0) await this.write(rest);
      return;
    }
    const { won, staged, keep, audits } = result;
    // Committed: on record. Apply, audit and publish (not awaited: the bus is the fast path).
    staged?.commit(keep).catch((err: unknown) => this.d.logger.error({ err }, 'signal commit step failed'));
    for (const a of audits) this.d.audit.record(a);
    uniq.forEach((p, i) => p.resolve(won[i] ? 'accepted' : 'duplicate'));
    for (const p of copies) p.resolve('duplicate');
  }

  /** A paused or disabled stream takes nothing: thrown inside the transaction, which rolls back. */
  private refusals(names: readonly string[], statuses: ReadonlyArray<SsfStreamStatus | undefined>): void {
    const refused = new Map<string, SetError>();
    names.forEach((n, i) => {
      const st = statuses[i];
      if (st && st !== 'enabled') refused.set(n, new SetError('access_denied', `the stream is ${st}`));
    });
    if (refused.size > 0) throw new StreamsRefused(refused);
  }

  /**
   * When every signal of the batch is a revocation (or recorded only): the batch is planned and
   * handed to the store as ONE write (`recordSets`), which checks that the receivers' streams are
   * enabled and that the subjects' NHIs not remembered exist, and only then writes the replay
   * records and, for the SETs that won them, the signals and revocations. The store does it in
   * the fewest round trips it can (on PostgreSQL one statement, where the transaction took five:
   * BEGIN, replay, signals, revocations, COMMIT, plus a read of the NHIs for the first SET about
   * an NHI and, every second, of the streams' status; each is CPU at the signals instance and
   * time before the revocation reaches the bus). The signals are planned (the NHIs assumed to exist)
   * and staged for every SET first, through a store that only collects the rows; a SET that lost
   * its replay record (a copy accepted elsewhere) has none of its rows written, and `keep` leaves it
   * out of the commit. When a check fails nothing is written and undefined is returned, as for a
   * batch with anything else (a kill switch, a restriction): the transaction path then decides
   * (unmapped subjects, a paused stream) as it always did.
   */
  private async writePlanned(uniq: Pending[], names: readonly string[], candidates: ReadonlySet<string>) {
    const { store } = this.d;
    const { ask } = this.rcv.rememberedNhis(candidates);
    const assumed = new Set(candidates);
    const inputs: SignalInput[] = [];
    const setOf: number[] = [];
    const auditsOf: AuditInput[][] = [];
    for (let i = 0; i < uniq.length; i++) {
      const p = uniq[i]!;
      const plan = this.rcv.plan(p.r, p.set, p.receivedAt, assumed);
      for (const input of plan.inputs) {
        if (!input.recordOnly && input.action !== 'revoke_tokens') return undefined;
        inputs.push(input);
        setOf.push(i);
      }
      auditsOf.push(plan.audits);
    }
    const sink = new CollectingStore(store);
    const staged = inputs.length ? await this.d.signals.stage(sink, inputs) : undefined;
    if (sink.needsTransaction) return undefined;
    const setOfSignal = new Map<string, number>();
    staged?.records.forEach((rec, k) => setOfSignal.set(rec.id, setOf[k]!));
    const revocations: Array<{ of: number; rec: RevocationRecord }> = [];
    for (const rec of sink.revocations) {
      const of = rec.signalId ? setOfSignal.get(rec.signalId) : undefined;
      if (of === undefined) return undefined; // not one of this batch's signals: let the transaction path write it
      revocations.push({ of, rec });
    }
    const won = await store.recordSets({
      replay: uniq.map((p) => ({ scope: `ssf-set:${p.r.name}`, key: p.set.jti, expiresAt: p.set.iat * 1000 + p.r.max_age * 1000 + IAT_SKEW_MS })),
      signals: sink.signals.map((rec) => ({ of: setOfSignal.get(rec.id)!, rec })),
      revocations,
      requireNhis: ask,
      requireStreamsEnabled: names.map(inboundStreamId),
    });
    if (won === undefined) {
      // An NHI is unknown or a stream not enabled: the transaction path reads both afresh.
      this.rcv.forgetStatuses(names);
      return undefined;
    }
    this.rcv.rememberNhis(ask);
    const allWon = won.every(Boolean);
    const keep = allWon || !staged ? undefined : new Set(staged.records.filter((_, k) => won[setOf[k]!]).map((r) => r.id));
    const audits = auditsOf.flatMap((a, i) => (won[i] ? a : []));
    return { won, staged, keep, audits };
  }

  /** One transaction: replay records, then the signals of the SETs that won them and what they cause. */
  private async writeInTransaction(uniq: Pending[], names: readonly string[], candidates: Set<string>) {
    return this.d.store.transaction(async (tx) => {
      const won = await tx.insertOnceMany(uniq.map((p) => ({
        scope: `ssf-set:${p.r.name}`, key: p.set.jti, expiresAt: p.set.iat * 1000 + p.r.max_age * 1000 + IAT_SKEW_MS,
      })));
      // On the transaction's connection (the pool is shared with the audit log, whose writes wait
      // on the chain lock; a store may have one connection, which the transaction holds), unless
      // recently read: the local streams' status and the subjects' NHIs.
      const statuses = await this.rcv.streamStatuses(tx, names);
      const known = await this.rcv.knownNhis(tx, candidates);
      // A paused or disabled stream takes nothing: roll back (its SETs' replay records with it).
      this.refusals(names, statuses);
      const inputs: SignalInput[] = [];
      const audits: AuditInput[] = [];
      uniq.forEach((p, i) => {
        if (!won[i]) return;
        const plan = this.rcv.plan(p.r, p.set, p.receivedAt, known);
        inputs.push(...plan.inputs);
        audits.push(...plan.audits);
      });
      const staged = inputs.length ? await this.d.signals.stage(tx, inputs) : undefined;
      return { won, staged, keep: undefined, audits };
    });
  }
}

/**
 * The store `Signals.stage` writes through on the planned path: reads go to the store,
 * the signal and revocation rows are collected for `recordSets`, and any other write (a kill
 * switch, a restriction) marks the batch as needing a transaction (staging has no effect until
 * `commit()`, so the batch is then simply staged again in one).
 */
class CollectingStore implements SignalsTxStore {
  readonly signals: SignalRecord[] = [];
  readonly revocations: RevocationRecord[] = [];
  needsTransaction = false;

  constructor(private readonly reads: Pick<SignalsTxStore, 'getIssuedToken'>) {}

  getIssuedToken(jti: string): ReturnType<SignalsTxStore['getIssuedToken']> {
    return this.reads.getIssuedToken(jti);
  }

  async insertSignals(s: readonly SignalRecord[]): Promise<void> {
    this.signals.push(...s);
  }

  async addRevocations(r: readonly RevocationRecord[]): Promise<void> {
    this.revocations.push(...r);
  }

  async addKillSwitch(): Promise<void> {
    this.needsTransaction = true;
  }

  async addRestriction(): Promise<void> {
    this.needsTransaction = true;
  }
}

