import type { IncomingMessage } from 'node:http';
import { oauth, resolveSecret, secretEquals } from '../core/index.js';
import { credentialActiveAt } from '../inventory/index.js';
import { ClientAssertionVerifier } from '../jose/index.js';
import type { BrokerDeps, BrokerServices } from './services.js';
import { tokenEndpointOf } from './services.js';
import type { InventoryView } from './inventory-view.js';

/** RFC 7591 §2 client authentication method names. */
export type ClientAuthMethod = 'private_key_jwt' | 'client_secret_basic' | 'client_secret_post' | 'none';
export type OAuthEndpoint = 'token' | 'introspection' | 'revocation';

/**
 * The client authentication methods each endpoint accepts: `authenticateClient` enforces this
 * table and the RFC 8414 metadata is written from it, so the two cannot disagree.
 * - token: `none` because token exchange and the JWT bearer grant authenticate through the
 *   token they present (RFC 8693 §2.1 and RFC 7523 §3.1 make client authentication optional);
 *   client_credentials still refuses a request without one (RFC 6749 §4.4.2).
 * - introspection: private_key_jwt only (an NHI's own key; a token is only described to its
 *   own NHI or to a tool, RFC 7662 §4).
 * - revocation: the client that was issued the token authenticates (RFC 7009 §2.1), with any
 *   method it may use at the token endpoint, but never `none`.
 * Client secrets are accepted only for an NHI whose static secret is a recorded, unexpired exception.
 */
export const CLIENT_AUTH_METHODS: Readonly<Record<OAuthEndpoint, readonly ClientAuthMethod[]>> = {
  token: ['private_key_jwt', 'client_secret_basic', 'client_secret_post', 'none'],
  introspection: ['private_key_jwt'],
  revocation: ['private_key_jwt', 'client_secret_basic', 'client_secret_post'],
};
/** The `alg` values a client assertion (private_key_jwt) may use, at every endpoint. */
export const CLIENT_ASSERTION_ALGS: readonly string[] = ['ES256', 'EdDSA', 'RS256', 'PS256'];

/** The private_key_jwt verifier: the client's keys are its `private_key_jwt` credentials (inline JWKS or jwks_uri). */
export function clientAssertionVerifier(d: BrokerDeps, inventory: InventoryView): ClientAssertionVerifier {
  return new ClientAssertionVerifier({
    replay: d.replay, clock: d.clock, algorithms: [...CLIENT_ASSERTION_ALGS],
    // RFC 7523 §3 item 3: the assertion's aud names this server (issuer or token endpoint).
    audiences: [d.issuer(), tokenEndpointOf(d)],
    getClientKeys: async (clientId) => {
      const { credentials } = await inventory.get(clientId);
      const keys = credentials.filter((c) => c.type === 'private_key_jwt').flatMap((c) => ((c.data.jwks as { keys?: Record<string, unknown>[] } | undefined)?.keys ?? []));
      return keys.length ? (keys as never) : undefined;
    },
    getClientJwksUris: async (clientId) => {
      const { credentials } = await inventory.get(clientId);
      return credentials.flatMap((c) => (c.type === 'private_key_jwt' && typeof c.data.jwks_uri === 'string' ? [c.data.jwks_uri] : []));
    },
    fetcher: d.fetcher,
  });
}

/**
 * Client authentication (RFC 6749 §2.3, RFC 7523 §2.2 / §3): private_key_jwt, or a client
 * secret only for an NHI whose static secret is a recorded, unexpired exception; only the
 * methods `endpoint` accepts (CLIENT_AUTH_METHODS, what the metadata lists). None is fine
 * for token exchange and JWT bearer (the assertion authenticates), not for client_credentials.
 * Answers the authenticated client id, or undefined for a public client.
 */
export async function authenticateClient(
  s: BrokerServices, req: IncomingMessage, params: Map<string, string>, endpoint: OAuthEndpoint,
): Promise<string | undefined> {
  const assertion = params.get('client_assertion');
  const basic = parseBasic(req.headers.authorization);
  const postSecret = params.get('client_secret');
  const methods = [assertion !== undefined, basic !== undefined, postSecret !== undefined].filter(Boolean).length;
  if (methods > 1) throw oauth.invalidRequest('use exactly one client authentication method (RFC 6749 §2.3)');
  const method: ClientAuthMethod = assertion !== undefined ? 'private_key_jwt' : basic ? 'client_secret_basic' : postSecret !== undefined ? 'client_secret_post' : 'none';
  const accepted = CLIENT_AUTH_METHODS[endpoint];
  if (!accepted.includes(method)) {
    // RFC 6749 §5.2 invalid_client: "no client authentication included, or unsupported authentication method".
    throw oauth.invalidClient(method === 'none'
      ? `the ${endpoint} endpoint requires client authentication (${accepted.join(', ')})`
      : `${method} is not accepted at the ${endpoint} endpoint (${accepted.join(', ')})`);
  }
  if (assertion !== undefined) {
    const r = await s.clientAssertions.verify(assertion, { clientIdParam: params.get('client_id'), assertionType: params.get('client_assertion_type') });
    return r.clientId;
  }
  if (basic || postSecret !== undefined) {
    const clientId = basic?.id ?? params.get('client_id');
    const secret = basic?.secret ?? postSecret!;
    if (!clientId) throw oauth.invalidClient('client_id is required');
    if (!(await secretMatches(s, clientId, secret))) throw oauth.invalidClient('client authentication failed');
    return clientId;
  }
  // No client authentication: a public client (token exchange and JWT bearer authenticate
  // through their assertion; client_credentials refuses this in its grant).
  return undefined;
}

/** Whether `secret` is the secret of one of the client's active static-secret credentials. */
async function secretMatches(s: BrokerServices, clientId: string, secret: string): Promise<boolean> {
  const now = s.clock.now();
  const creds = (await s.inventory.get(clientId)).credentials.filter(
    (c) => c.type === 'static_secret' && credentialActiveAt(c, now) && typeof c.data.secret_ref === 'string',
  );
  let ok = false;
  for (const c of creds) {
    let expected: string;
    try {
      expected = resolveSecret(c.data.secret_ref as string, s.env ?? process.env);
    } catch {
      continue;
    }
    if (secretEquals(expected, secret)) ok = true;
  }
  return ok;
}

/** `Authorization: Basic` client credentials (RFC 6749 §2.3.1: form-urlencoded then base64). */
function parseBasic(header: string | undefined): { id: string; secret: string } | undefined {
  if (!header || !/^Basic /i.test(header)) return undefined;
  const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  if (i < 0) throw oauth.invalidClient('malformed Basic credentials');
  try {
    return { id: decodeURIComponent(decoded.slice(0, i).replace(/\+/g, ' ')), secret: decodeURIComponent(decoded.slice(i + 1).replace(/\+/g, ' ')) };
  } catch {
    throw oauth.invalidClient('malformed Basic credentials');
  }
}
