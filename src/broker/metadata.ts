import type { BrokerServices } from './services.js';
import { tokenEndpointOf } from './services.js';
import { CLIENT_ASSERTION_ALGS, CLIENT_AUTH_METHODS } from './client-auth.js';
import { GRANTS } from './grants/table.js';

/** RFC 8414 §2 authorization server metadata, written from the tables the endpoints enforce. */
export function authorizationServerMetadata(s: BrokerServices): Record<string, unknown> {
  const iss = s.issuer();
  const tls = s.config.server.tls;
  return {
    issuer: iss,
    token_endpoint: tokenEndpointOf(s),
    jwks_uri: `${iss}/oauth/jwks`,
    introspection_endpoint: `${iss}/oauth/introspect`,
    revocation_endpoint: `${iss}/oauth/revoke`,
    grant_types_supported: [...GRANTS.keys()],
    response_types_supported: [],
    // Exactly what authenticateClient accepts at each endpoint (CLIENT_AUTH_METHODS).
    token_endpoint_auth_methods_supported: [...CLIENT_AUTH_METHODS.token],
    token_endpoint_auth_signing_alg_values_supported: [...CLIENT_ASSERTION_ALGS],
    introspection_endpoint_auth_methods_supported: [...CLIENT_AUTH_METHODS.introspection],
    introspection_endpoint_auth_signing_alg_values_supported: [...CLIENT_ASSERTION_ALGS],
    revocation_endpoint_auth_methods_supported: [...CLIENT_AUTH_METHODS.revocation],
    revocation_endpoint_auth_signing_alg_values_supported: [...CLIENT_ASSERTION_ALGS],
    dpop_signing_alg_values_supported: [...s.dpop.supportedAlgorithms],
    scopes_supported: [...new Set(s.config.tools.flatMap((t) => t.actions.map((a) => a.name)))].sort(),
    ...(tls && tls.client_auth !== 'none' ? { tls_client_certificate_bound_access_tokens: true, mtls_endpoint_aliases: { token_endpoint: `${iss}/oauth/token`, revocation_endpoint: `${iss}/oauth/revoke`, introspection_endpoint: `${iss}/oauth/introspect` } } : {}),
    authorization_details_types_supported: [],
    service_documentation: 'https://github.com/mandate/mandate#readme',
  };
}
