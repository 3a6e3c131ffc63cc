import type { NhiRecord } from '../../inventory/index.js';
import { ShadowAgentError, type VerifiedWorkload } from '../federation.js';
import type { Refusals } from '../refusals.js';
import type { BrokerServices } from '../services.js';
import type { TokenRequest } from '../request.js';

/** Who is asking, once the request's own authentication and the grant have been checked. */
export interface Subject {
  nhi: NhiRecord;
  clientId: string;
  /** Expiry ceiling from the presented token (ms), when there is one. */
  notAfter?: number;
  /** Scope ceiling: a Mandate token being narrowed cannot widen. */
  scopeCeiling?: string[];
  audienceCeiling?: string;
  /**
   * The key the caller must prove: the `cnf` of the presented token that stands for the caller
   * (the subject token, or with delegation the actor token). The new token is bound to it.
   */
  proof?: { jkt?: string; x5t?: string; of: 'subject_token' | 'actor_token' };
  act?: Record<string, unknown>;
  /** The jti of the Mandate token this one is exchanged from: the new jti names it (lineage, jose/tokens.ts). */
  parentJti?: string;
  runId: string | null;
  via: string;
}

/**
 * A grant: from the request and the authenticated client (undefined for a public client),
 * who the subject is and what ceilings it brings.
 */
export type Grant = (s: BrokerServices, req: TokenRequest, clientId: string | undefined) => Promise<Subject>;

/** The NHI a grant names, active; `refuse` builds the grant's errors (see Refusals). */
export async function activeNhi(s: BrokerServices, id: string, refuse: Refusals): Promise<NhiRecord> {
  const { nhi } = await s.inventory.get(id);
  if (!nhi) throw refuse.invalid(`no NHI ${id.slice(0, 100)} is registered`);
  if (nhi.status !== 'active') throw refuse.disabled(`${id} is disabled`);
  return nhi;
}

/** A federated workload JWT, verified; a trusted issuer's workload no NHI matches is recorded as a shadow agent. */
export async function workload(s: BrokerServices, jwt: string): Promise<VerifiedWorkload> {
  try {
    return await s.federation.verify(jwt);
  } catch (err) {
    if (err instanceof ShadowAgentError) {
      const data = { trust: err.trust, issuer: err.issuer, workload_subject: err.subject };
      s.audit.record({ type: 'shadow_agent', actor: null, subject: null, decision: 'deny', data });
      void s.bus.publish('shadow_agent', { ...data, at: s.clock.now() }).catch(() => {});
    }
    throw err;
  }
}

/** The subject a verified workload names: its NHI, active, and the authenticated client if any. */
export async function fromWorkload(
  s: BrokerServices, w: VerifiedWorkload, clientId: string | undefined, via: string, refuse: Refusals,
): Promise<Subject> {
  const nhi = await activeNhi(s, w.nhiId, refuse);
  if (clientId !== undefined && clientId !== nhi.id) throw refuse.invalid('the authenticated client is not the workload the token names');
  return { nhi, clientId: clientId ?? nhi.id, notAfter: w.expiresAt, runId: w.runId, via };
}
