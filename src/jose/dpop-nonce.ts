import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Clock } from '../core/index.js';

/**
 * Server-provided DPoP nonces (RFC 9449 §8) that need no shared state: a nonce is the number
 * of the current time window and an HMAC-SHA256 of it under a secret every instance shares
 * (derived from the KEK), so any instance accepts a nonce any other one handed out.
 *
 * Format: `<window>.<base64url(HMAC-SHA256(secret, "mandate-dpop-nonce:" + window))>`; only
 * characters of NQCHAR (RFC 9449 §8.1). A nonce is accepted during its own window and the next
 * one, so it lives between `windowS` and `2 × windowS` seconds. It is the same for every client
 * during a window: it bounds how long a proof made in advance is usable, it is not a
 * per-client challenge.
 */
export class DpopNonces {
  private readonly secret: Buffer;
  private readonly windowMs: number;

  constructor(
    secret: Uint8Array,
    private readonly clock: Clock,
    opts: { windowS?: number } = {},
  ) {
    if (!(secret instanceof Uint8Array) || secret.length < 16) throw new TypeError('DpopNonces: the secret must be at least 16 bytes');
    const windowS = opts.windowS ?? 300;
    if (!Number.isFinite(windowS) || windowS < 1) throw new TypeError('DpopNonces: windowS must be at least 1');
    this.secret = Buffer.from(secret);
    this.windowMs = windowS * 1000;
  }

  /** The nonce of the current window, for the `DPoP-Nonce` response header. */
  current(): string {
    const w = this.window();
    return `${w}.${this.mac(w).toString('base64url')}`;
  }

  /** True for a nonce of the current or the previous window made with this secret. */
  isValid(nonce: unknown): boolean {
    if (typeof nonce !== 'string' || nonce.length > 64) return false;
    const m = /^(\d{1,15})\.([A-Za-z0-9_-]{43})$/.exec(nonce);
    if (!m) return false;
    const w = Number(m[1]);
    const now = this.window();
    if (w !== now && w !== now - 1) return false;
    // Compared as text, so that a non-canonical base64url spelling of the same MAC is refused too.
    const given = Buffer.from(m[2]!, 'ascii');
    const expected = Buffer.from(this.mac(w).toString('base64url'), 'ascii');
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  private window(): number {
    return Math.floor(this.clock.now() / this.windowMs);
  }

  private mac(window: number): Buffer {
    return createHmac('sha256', this.secret).update(`mandate-dpop-nonce:${window}`).digest();
  }
}
