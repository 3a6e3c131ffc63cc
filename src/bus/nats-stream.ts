import { nanos, type NatsConnection } from '@nats-io/transport-node';
import {
  jetstreamManager, DiscardPolicy, JetStreamApiCodes, JetStreamApiError, RetentionPolicy, StorageType, type JetStreamManager,
} from '@nats-io/jetstream';
import { MandateError, UnavailableError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { errInfo } from './nats-errors.js';
import type { NatsLink } from './nats-connection.js';

/** JetStream's code for subjects that another stream on the server already captures. */
const SUBJECTS_OVERLAP = 10065;

export interface NatsStreamOptions {
  stream: string;
  subjectPrefix: string;
  maxAgeMs: number;
  duplicateWindowMs: number;
  requestTimeoutMs: number;
  logger: Logger;
}

/**
 * The bus's JetStream stream, the log every message is stored in: created when missing, its
 * subjects and limits brought in line with the configuration, and recreated when it vanished.
 */
export class NatsStream {
  private jsm: JetStreamManager | undefined;
  private ensuring: Promise<void> | undefined;
  private lastEnsureAt = 0;

  constructor(private readonly o: NatsStreamOptions, private readonly link: NatsLink) {}

  /** Opens the JetStream API on `nc` and makes sure the stream is there. */
  async init(nc: NatsConnection): Promise<void> {
    this.jsm = await jetstreamManager(nc, { timeout: this.o.requestTimeoutMs });
    await this.ensure();
  }

  /** The sequence of the newest message in the stream. */
  async lastSeq(): Promise<number> {
    const info = await this.requireJsm().streams.info(this.o.stream);
    this.link.touch();
    return info.state.last_seq;
  }

  /** After a "no responders" publish while connected the stream may have been deleted: recreate it, at most every 2 s. */
  maybeEnsure(): void {
    if (this.ensuring || Date.now() - this.lastEnsureAt < 2_000 || !this.link.connected) return;
    this.lastEnsureAt = Date.now();
    this.ensuring = this.ensure()
      .catch((err: unknown) => this.o.logger.debug({ err: errInfo(err) }, 'stream check failed'))
      .finally(() => {
        this.ensuring = undefined;
      });
  }

  /** Creates the stream, or brings its subjects and limits in line with the configuration. */
  private async ensure(): Promise<void> {
    const jsm = this.requireJsm();
    const { stream } = this.o;
    const wanted = {
      subjects: [`${this.o.subjectPrefix}.>`],
      max_age: nanos(this.o.maxAgeMs),
      duplicate_window: nanos(Math.min(this.o.duplicateWindowMs, this.o.maxAgeMs)),
    };
    let info;
    try {
      info = await jsm.streams.info(stream);
    } catch (err) {
      if (!(err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound)) throw err;
      try {
        await jsm.streams.add({
          name: stream,
          ...wanted,
          storage: StorageType.File,
          retention: RetentionPolicy.Limits,
          discard: DiscardPolicy.Old,
        });
      } catch (addErr) {
        throw streamError(`cannot create JetStream stream "${stream}" for "${wanted.subjects[0]}"`, addErr);
      }
      this.o.logger.info({ stream, subjects: wanted.subjects }, 'created JetStream stream');
      return;
    }
    const c = info.config;
    const same = c.subjects?.length === 1 && c.subjects[0] === wanted.subjects[0] && c.max_age === wanted.max_age && c.duplicate_window === wanted.duplicate_window;
    if (!same) {
      try {
        await jsm.streams.update(stream, wanted);
      } catch (updateErr) {
        throw streamError(`cannot update JetStream stream "${stream}" to "${wanted.subjects[0]}"`, updateErr);
      }
      this.o.logger.info({ stream, subjects: wanted.subjects }, 'updated JetStream stream subjects and limits');
    }
  }

  private requireJsm(): JetStreamManager {
    if (!this.jsm) throw new UnavailableError('the bus is not started');
    return this.jsm;
  }
}

/** Why the stream could not be made; an overlap says what to change in the config. */
function streamError(what: string, err: unknown): MandateError {
  const overlap = (err instanceof JetStreamApiError && err.code === SUBJECTS_OVERLAP) || /overlap/i.test(errInfo(err).message);
  return new MandateError(
    'ERR_BUS_STREAM',
    overlap
      ? `${what}: another stream on this NATS server captures these subjects (another deployment?); give each deployment its own bus.stream, and leave bus.subject_prefix unset or different`
      : `${what}: ${errInfo(err).message}`,
    { cause: err },
  );
}
