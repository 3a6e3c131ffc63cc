import { useEffect, useState } from 'preact/hooks';

/** One event the server relays from the bus (/ui/events): identifiers, reasons and times only. */
export interface LiveEvent {
  subject: string;
  published_at: number;
  [k: string]: unknown;
}

const listeners = new Set<(e: LiveEvent) => void>();
let source: EventSource | undefined;

const SUBJECTS = [
  'approval.requested', 'approval.approved', 'approval.denied', 'revocation.added', 'kill.added', 'kill.lifted',
  'detection.raised', 'signal.raised', 'admin.credential.revoked', 'admin.credential.expiry_set',
];

/** Opens the event stream (the browser reconnects by itself when it drops). */
export function startLive(onEnded: () => void): void {
  stopLive();
  source = new EventSource('/ui/events');
  for (const s of SUBJECTS) {
    source.addEventListener(s, (m) => {
      const e = JSON.parse((m as MessageEvent<string>).data) as LiveEvent;
      for (const fn of listeners) fn(e);
    });
  }
  source.addEventListener('session.ended', () => {
    stopLive();
    onEnded();
  });
}

export function stopLive(): void {
  source?.close();
  source = undefined;
}

export function onLive(fn: (e: LiveEvent) => void): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** A number that changes whenever an event whose subject starts with one of `prefixes` arrives: a dependency that refetches. */
export function useLive(prefixes: string[]): number {
  const [n, setN] = useState(0);
  useEffect(() => onLive((e) => {
    if (prefixes.some((p) => e.subject.startsWith(p))) setN((x) => x + 1);
  }), [prefixes.join(',')]);
  return n;
}
