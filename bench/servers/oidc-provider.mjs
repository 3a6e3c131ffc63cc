// node-oidc-provider (the baseline) for the broker benchmark, in its own process:
// client_credentials + private_key_jwt + DPoP, RFC 8707 resource indicators, JWT (RFC 9068)
// access tokens signed ES256, the default in-memory adapter. Prints one JSON line on stdout
// when it listens; SIGTERM closes it gracefully (so that --cpu-prof writes its profile).
import { createServer } from 'node:http';
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const clientJwk = JSON.parse(process.env.BENCH_CLIENT_JWK ?? 'null');
if (!clientJwk) throw new Error('BENCH_CLIENT_JWK (a public JWK) is required');
const CLIENT_ID = process.env.BENCH_CLIENT_ID ?? 'bench';
const RESOURCE = 'https://tool.example';
const SCOPE = 'list_tickets';

const signing = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });

// Listen first: the issuer names the port.
const server = createServer();
server.keepAliveTimeout = 5_000;
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: CLIENT_ID,
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'ES256',
    id_token_signed_response_alg: 'ES256', // the only signing key is ES256 (no ID tokens are issued here)
    jwks: { keys: [clientJwk] },
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
  }],
  jwks: { keys: [{ ...signing, kid: 'bench-signing', alg: 'ES256', use: 'sig' }] },
  scopes: ['openid', SCOPE],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    dPoP: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => RESOURCE,
      getResourceServerInfo: () => ({ scope: SCOPE, accessTokenFormat: 'jwt', accessTokenTTL: 600, jwt: { sign: { alg: 'ES256' } } }),
      useGrantedResource: () => true,
    },
  },
});
// Keep the console quiet: no per-request logging is configured; errors go to stderr only.
provider.on('server_error', (_ctx, err) => console.error('server_error', err));
server.on('request', provider.callback());

let closing = false;
function shutdown() {
  if (closing) return;
  closing = true;
  server.close(() => process.exit(0));
  server.closeAllConnections?.();
  setTimeout(() => process.exit(0), 5_000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

process.stdout.write(`${JSON.stringify({
  server: 'oidc-provider', url: issuer, issuer, token_endpoint: `${issuer}/token`,
  client_id: CLIENT_ID, resource: RESOURCE, scope: SCOPE,
})}\n`);
