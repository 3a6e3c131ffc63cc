import { sendJson, type Router } from '../core/index.js';
import type { RevocationState } from '../enforcement/index.js';
import type { AccessTokenVerifier, DpopVerifier, JwksFetcher } from '../jose/index.js';
import { clientAssertionVerifier } from './client-auth.js';
import { FederationVerifier, nhiMatcher } from './federation.js';
import { handleIntrospect } from './introspection.js';
import { InventoryView } from './inventory-view.js';
import { IssuedTokenWriter } from './issued-tokens.js';
import { authorizationServerMetadata } from './metadata.js';
import { handleRevoke } from './revocation.js';
import { tokenEndpointOf, type BrokerDeps, type BrokerServices } from './services.js';
import { TokenSigner } from './signer.js';
import { handleToken } from './token-endpoint.js';
import { ToolCatalog } from './tool-catalog.js';

export type { BrokerDeps } from './services.js';

/**
 * The token broker: an OAuth 2.0 authorization server for machines. It wires its parts once
 * (BrokerServices) and mounts the endpoints: the token endpoint (token-endpoint.ts, a list of
 * named steps; one file per grant under grants/), introspection (RFC 7662), revocation
 * (RFC 7009) and the RFC 8414 metadata.
 */
export class Broker {
  readonly catalog: ToolCatalog;
  readonly revocations: RevocationState;
  readonly accessTokens: AccessTokenVerifier;
  readonly dpop: DpopVerifier;
  readonly fetcher: JwksFetcher;
  private readonly services: BrokerServices;

  constructor(d: BrokerDeps) {
    this.catalog = new ToolCatalog(d.config, d.issuer);
    this.revocations = d.enforcement.revocations;
    this.accessTokens = d.accessTokens;
    this.dpop = d.dpop;
    this.fetcher = d.fetcher;
    const issued = new IssuedTokenWriter({ store: d.store, logger: d.logger });
    const inventory = new InventoryView({ store: d.store, bus: d.bus, clock: d.clock, logger: d.logger });
    // A revocation of a token issued moments ago finds its expiry before its record is written.
    d.enforcement.readPendingTokens((jti) => issued.pending(jti));
    this.services = {
      ...d,
      catalog: this.catalog,
      inventory,
      issued,
      federation: new FederationVerifier({
        trust: d.config.trust, fetcher: d.fetcher, clock: d.clock,
        findNhis: nhiMatcher(() => d.store.listCredentials(), d.clock),
      }),
      clientAssertions: clientAssertionVerifier(d, inventory),
      signer: new TokenSigner(d.keys),
    };
  }

  async start(): Promise<void> {
    await this.services.inventory.start();
  }

  async stop(): Promise<void> {
    await this.services.inventory.stop();
    await this.services.replay.drain().catch(() => {});
    await this.services.issued.close();
  }

  /** Writes queued issued-token records now (they are otherwise written within 50 ms). */
  async flush(): Promise<void> {
    await this.services.issued.flush();
  }

  tokenEndpoint(): string {
    return tokenEndpointOf(this.services);
  }

  /** RFC 8414 §2 metadata. */
  metadata(): Record<string, unknown> {
    return authorizationServerMetadata(this.services);
  }

  mount(router: Router, maxBodyBytes: number): void {
    router.get('/.well-known/oauth-authorization-server', (ctx) => sendJson(ctx.res, 200, this.metadata(), { 'cache-control': 'public, max-age=300' }));
    router.post('/oauth/token', (ctx) => handleToken(this.services, ctx, maxBodyBytes));
    router.post('/oauth/introspect', (ctx) => handleIntrospect(this.services, ctx, maxBodyBytes));
    router.post('/oauth/revoke', (ctx) => handleRevoke(this.services, ctx, maxBodyBytes));
  }
}
