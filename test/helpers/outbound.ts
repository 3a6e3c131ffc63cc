import { OutboundGuard, type OutboundOptions } from '../../src/core/outbound.js';

/**
 * The documented allowance for peers on this machine (docs/security.md, "Outbound requests
 * (SSRF)"): loopback named in `outbound.allow_private_cidrs`, as a developer would configure it.
 */
export const LOOPBACK_CIDRS: readonly string[] = ['127.0.0.0/8', '::1/128'];

/** The guard a development instance with `outbound.allow_private_cidrs: LOOPBACK_CIDRS` has: plain http to loopback too. */
export function devOutbound(extra: OutboundOptions = {}): OutboundGuard {
  return new OutboundGuard({ allowLoopbackHttp: true, allowPrivateCidrs: LOOPBACK_CIDRS, ...extra });
}
