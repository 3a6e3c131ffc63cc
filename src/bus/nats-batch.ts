import type { JsMsg } from '@nats-io/jetstream';
import { MandateError } from '../core/errors.js';
import type { BusMessage } from '../core/ports/bus.js';
import { encodeData } from './util.js';

/**
 * The stream entry that carries several messages (`publishMany`): the header
 * `Mandate-Batch: <count>` and a JSON array of `[id, data]` pairs as its payload. Written by
 * the publisher, read back into separate messages by every subscriber.
 */

/** Marks a stream entry that carries several messages (`publishMany`): its value is their count. */
export const BATCH_HEADER = 'Mandate-Batch';
/** Room left in max_payload for the JSON brackets and what the server counts besides the payload. */
const BATCH_HEADROOM_BYTES = 1024;

/** One batch entry to publish: its payload, its `Nats-Msg-Id` and how many items it holds. */
export interface BatchEntry {
  payload: string;
  id: string;
  count: number;
}

/**
 * The items as few entries as `maxPayload` allows. An entry's id is made of its first item's id
 * and its count, so the same items published again (a caller's retry) are stored once.
 */
export function packBatch(items: ReadonlyArray<{ data: unknown; id: string }>, maxPayload: number | undefined): BatchEntry[] {
  const max = (maxPayload ?? 1024 * 1024) - BATCH_HEADROOM_BYTES;
  const entries: Array<{ parts: string[]; firstId: string; bytes: number }> = [];
  let cur: { parts: string[]; firstId: string; bytes: number } | undefined;
  for (const it of items) {
    const part = `[${JSON.stringify(it.id)},${encodeData(it.data)}]`;
    const bytes = Buffer.byteLength(part) + 1;
    if (bytes + 2 > max) throw new MandateError('ERR_BUS_PAYLOAD_TOO_LARGE', `bus message of ${bytes} bytes exceeds the server's max_payload (${max + BATCH_HEADROOM_BYTES})`);
    if (!cur || cur.bytes + bytes > max) entries.push((cur = { parts: [], firstId: it.id, bytes: 2 }));
    cur.parts.push(part);
    cur.bytes += bytes;
  }
  return entries.map((e) => ({ payload: `[${e.parts.join(',')}]`, id: `${e.firstId}+${e.parts.length}`, count: e.parts.length }));
}

/**
 * The items of a batch entry, in order, each with its own id and the entry's seq and time;
 * undefined when the payload is not what `packBatch` writes.
 */
export function unpackBatch(m: JsMsg, subject: string, seq: number): BusMessage[] | undefined {
  let items: unknown;
  try {
    items = m.json<unknown>();
  } catch {
    items = undefined;
  }
  if (!Array.isArray(items) || !items.every((x) => Array.isArray(x) && x.length === 2 && typeof x[0] === 'string')) return undefined;
  let publishedAt: number | undefined;
  const at = (): number => (publishedAt ??= Number(m.timestampNanos / 1_000_000n));
  return (items as Array<[string, unknown]>).map(([id, data]) => ({
    seq, subject, data, id,
    get publishedAt() {
      return at();
    },
  }));
}
