/**
 * The OAuth names both sides of the wire spell: the broker reads them, the agent SDK
 * (src/client, which may import this file) sends them. One definition, so the two cannot drift.
 */

/** RFC 8693 §3 token type identifiers. */
export const TOKEN_TYPE = {
  jwt: 'urn:ietf:params:oauth:token-type:jwt',
  accessToken: 'urn:ietf:params:oauth:token-type:access_token',
  idToken: 'urn:ietf:params:oauth:token-type:id_token',
} as const;

/** The grant types the broker supports (RFC 6749 §4.4, RFC 8693 §2.1, RFC 7523 §2.1). */
export const GRANT = {
  tokenExchange: 'urn:ietf:params:oauth:grant-type:token-exchange',
  jwtBearer: 'urn:ietf:params:oauth:grant-type:jwt-bearer',
  clientCredentials: 'client_credentials',
} as const;
