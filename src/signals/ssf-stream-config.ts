import { z } from 'zod';
import { OutboundError, ValidationError } from '../core/index.js';
import type { SsfStreamRecord } from './ports.js';
import { DELIVERY_POLL, DELIVERY_PUSH, EVENTS_SUPPORTED } from './set.js';
import type { TransmitterDeps } from './transmitter.js';

/**
 * A transmitter stream's configuration (SSF 1.0 "Stream Configuration"): what a receiver may
 * set, how it is stored (the push credential sealed under the KEK), and the push URL checks
 * made when it is set.
 */

/** Stream configuration as stored (SSF 1.0 "Stream Configuration"; read-only members are computed). */
export interface StoredConfig {
  iss: string;
  aud: string | string[];
  events_requested: string[];
  /**
   * `authorization_header_sealed`: the receiver's push credential under the KEK. A plain
   * `authorization_header` is only read (rows written before it was sealed) and sealed on the next update.
   */
  delivery: { method: string; endpoint_url?: string; authorization_header?: string; authorization_header_sealed?: string };
  description?: string;
}

/** A stored stream's configuration. */
export const configOf = (s: SsfStreamRecord): StoredConfig => s.config as unknown as StoredConfig;

/** AAD of a stream's sealed push credential: a ciphertext copied onto another stream does not open there. */
export const pushAuthAad = (streamId: string): string => `mandate/ssf-push-authorization/${streamId}`;

const deliverySchema = z.object({
  method: z.enum([DELIVERY_PUSH, DELIVERY_POLL]),
  endpoint_url: z.string().max(2000).optional(),
  authorization_header: z.string().max(4000).optional(),
});
/** Receiver-supplied members (SSF 1.0: events_requested, delivery, description; `aud` as an extension). */
export const configInput = z.object({
  events_requested: z.array(z.string().max(500)).max(100).optional(),
  delivery: deliverySchema.optional(),
  description: z.string().max(500).optional(),
  aud: z.union([z.string().min(1).max(500), z.array(z.string().min(1).max(500)).min(1).max(10)]).optional(),
});
export type ConfigInput = z.output<typeof configInput>;

export class StreamConfigs {
  constructor(private readonly d: Pick<TransmitterDeps, 'issuer' | 'secrets' | 'outbound' | 'config' | 'logger'>) {}

  /** `receiverName` names the default `aud` of a new stream (the creating credential's name). */
  build(id: string, body: ConfigInput, base: StoredConfig | undefined, receiverName: string): StoredConfig {
    const iss = this.d.issuer();
    const delivery = body.delivery ?? base?.delivery ?? { method: DELIVERY_POLL };
    let out: StoredConfig['delivery'];
    if (delivery.method === DELIVERY_PUSH) {
      if (!delivery.endpoint_url) throw new ValidationError('delivery.endpoint_url is required for push (RFC 8935)');
      this.checkPushUrl(delivery.endpoint_url);
      // A header given now is sealed; an update that names no delivery keeps the stored one.
      const given = body.delivery?.authorization_header;
      const kept = body.delivery === undefined ? base?.delivery : undefined;
      const sealed = given
        ? this.d.secrets.seal(Buffer.from(given, 'utf8'), pushAuthAad(id))
        : kept?.authorization_header_sealed ?? (kept?.authorization_header ? this.d.secrets.seal(Buffer.from(kept.authorization_header, 'utf8'), pushAuthAad(id)) : undefined);
      out = { method: DELIVERY_PUSH, endpoint_url: delivery.endpoint_url, ...(sealed ? { authorization_header_sealed: sealed } : {}) };
    } else {
      // RFC 8936: the transmitter supplies the poll endpoint.
      out = { method: DELIVERY_POLL, endpoint_url: `${iss}/ssf/poll/${encodeURIComponent(id)}` };
    }
    return {
      iss,
      aud: base?.aud ?? body.aud ?? `${iss}/ssf/receivers/${encodeURIComponent(receiverName)}`,
      events_requested: body.events_requested ?? base?.events_requested ?? [...EVENTS_SUPPORTED],
      delivery: out,
      ...((body.description ?? base?.description) !== undefined ? { description: body.description ?? base?.description } : {}),
    };
  }

  /** The checks that need no DNS (https, no userinfo, a literal address allowed): a 400 at once. */
  private checkPushUrl(url: string): void {
    try {
      this.d.outbound.parse(url);
    } catch (err) {
      if (err instanceof OutboundError) throw new ValidationError(`delivery.endpoint_url is refused: ${err.message}`);
      throw err;
    }
  }

  /**
   * A push URL given in this request, with its host name resolved and every address checked:
   * refused with 400 when the guard would refuse it now. Delivery checks it again on every push
   * (DNS answers change), so this is the early, clear answer, not the only check.
   */
  async checkPushDestination(body: ConfigInput): Promise<void> {
    const d = body.delivery;
    if (d?.method !== DELIVERY_PUSH || !d.endpoint_url) return;
    try {
      await this.d.outbound.check(d.endpoint_url, AbortSignal.timeout(this.d.config.push_timeout * 1000));
    } catch (err) {
      if (err instanceof OutboundError) {
        this.d.logger.warn({ host: err.host, address: err.address, kind: err.kind, reason: err.reason }, 'SSF push endpoint refused');
        throw new ValidationError(`delivery.endpoint_url is refused: ${err.message}`);
      }
      throw err;
    }
  }
}

/** The configuration on the wire: read-only members computed, the receiver's authorization header never echoed. */
export function streamJson(s: SsfStreamRecord): Record<string, unknown> {
  const c = configOf(s);
  return {
    stream_id: s.id, iss: c.iss, aud: c.aud, events_supported: [...EVENTS_SUPPORTED], events_requested: c.events_requested,
    events_delivered: c.events_requested.filter((e) => EVENTS_SUPPORTED.includes(e)),
    delivery: { method: c.delivery.method, endpoint_url: c.delivery.endpoint_url },
    ...(c.description !== undefined ? { description: c.description } : {}),
  };
}
