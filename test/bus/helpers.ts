import { randomBytes } from 'node:crypto';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import type { BusMessage } from '../../src/core/ports/bus.js';

/** Polls `cond` every 10 ms; rejects with `label` after `timeoutMs` so no test can hang. */
export async function waitFor(cond: () => boolean, timeoutMs: number, label: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${label}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A handler that records what it got. */
export function collector(): { msgs: BusMessage[]; handler: (m: BusMessage) => void } {
  const msgs: BusMessage[] = [];
  return { msgs, handler: (m) => void msgs.push(m) };
}

/** Random names so concurrent test files never share a stream or subjects. */
export function uniqueNames(): { stream: string; prefix: string } {
  const r = randomBytes(6).toString('hex');
  return { stream: `TEST_BUS_${r}`, prefix: `tbus${r}` };
}

/** Deletes a test stream with a throwaway connection; best effort, bounded. */
export async function deleteStream(server: string, stream: string): Promise<void> {
  const nc = await connect({ servers: server, timeout: 3_000, maxReconnectAttempts: 0 });
  try {
    const jsm = await jetstreamManager(nc, { timeout: 3_000 });
    await jsm.streams.delete(stream).catch(() => false);
  } finally {
    await nc.close();
  }
}
