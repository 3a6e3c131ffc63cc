/**
 * How a refusal names the signal behind a restriction: its id, what it did and its reason
 * code, printable ASCII only and capped (the reason is a code or an operator's short text; no
 * token, key or credential is ever part of a signal), so the agent can tell an operator which
 * signal to look at.
 */
export function describeSignal(r: { kind: string; signalId: string; reason: string }): string {
  const reason = r.reason.replace(/[^\x20-\x7e]/g, '').replace(/["\\]/g, '').slice(0, 120);
  return `signal ${r.signalId} (${r.kind}${reason ? `: ${reason}` : ''})`;
}
