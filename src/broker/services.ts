import type { AuditSink, Bus, Clock, Logger, MandateConfig, ReplayStore } from '../core/index.js';
import type { InventoryStore } from '../inventory/index.js';
import type { KeyManager } from '../keys/index.js';
import type { Approvals, Enforcement, RestrictionLookup } from '../enforcement/index.js';
import type { AccessTokenVerifier, ClientAssertionVerifier, DpopVerifier, JwksFetcher, ReplayBatcher } from '../jose/index.js';
import type { BrokerBatchStore, BrokerStore } from './ports.js';
import type { ToolCatalog } from './tool-catalog.js';
import type { FederationVerifier } from './federation.js';
import type { IssuedTokenWriter } from './issued-tokens.js';
import type { InventoryView } from './inventory-view.js';
import type { TokenSigner } from './signer.js';

/** What the composition root gives the broker. */
export interface BrokerDeps {
  config: Readonly<MandateConfig>;
  /** The issuer URL (RFC 8414 §2): the public URL, known once the server listens (construct the broker after). */
  issuer: () => string;
  keys: KeyManager;
  /** `BrokerBatchStore`'s methods, when present, batch the hot writes (group commit). */
  store: BrokerStore & InventoryStore & ReplayStore & Partial<BrokerBatchStore>;
  /** Revocations and kill switches (refused at issuance; RFC 7009 revocation writes one). */
  enforcement: Enforcement;
  /** Human approval of elevation (actions whose tier needs one). */
  approvals: Approvals;
  /** Access-token verification (subject and actor tokens of token exchange, RFC 7009 revocation). */
  accessTokens: AccessTokenVerifier;
  /** DPoP proofs at the token endpoint (RFC 9449 §5). */
  dpop: DpopVerifier;
  /** JWKS of federated issuers and private_key_jwt clients. */
  fetcher: JwksFetcher;
  /** One-time jtis of client assertions, group-committed to the store. */
  replay: ReplayBatcher;
  bus: Bus;
  audit: AuditSink;
  clock: Clock;
  logger: Logger;
  env?: NodeJS.ProcessEnv;
  /** Step-down / step-up restrictions from signals; none when absent. */
  restrictions?: RestrictionLookup;
}

/**
 * Everything the broker's endpoints and steps read: the dependencies, and the parts the
 * broker builds from them once (broker.ts). One object, so that a step is a plain function.
 */
export interface BrokerServices extends Readonly<BrokerDeps> {
  readonly catalog: ToolCatalog;
  /** NHIs, credentials and grants in memory, invalidated by `inventory.*` events. */
  readonly inventory: InventoryView;
  /** Workload JWTs of trusted issuers (RFC 7523 JWT bearer, RFC 8693 subject and actor tokens). */
  readonly federation: FederationVerifier;
  /** private_key_jwt client assertions (RFC 7523 §2.2). */
  readonly clientAssertions: ClientAssertionVerifier;
  /** Issued-token records, written in batches off the request path. */
  readonly issued: IssuedTokenWriter;
  readonly signer: TokenSigner;
}

/** The token endpoint's URL: what a DPoP proof's `htu` and a client assertion's `aud` name. */
export function tokenEndpointOf(s: Pick<BrokerDeps, 'issuer'>): string {
  return `${s.issuer()}/oauth/token`;
}
