/**
 * One base class with a stable `code`, so that callers can `switch` on `err.code`.
 *
 * Three vocabularies are kept apart (as in the MCP SDK): OAuth error codes that go on the
 * HTTP wire (`OAuthError`), JSON-RPC numbers inside MCP, and local codes that are never
 * serialized as they are. Anything that is not meant for the wire becomes `server_error`
 * in the serializers (see `toHttpError`).
 */
/**
 * Every local error code, in one place, with what it means. `MandateError` takes only these, so a
 * new code is added here (and documented) or the build fails. OAuth codes on the wire are the
 * RFCs' (`OAuthError`); JSON-RPC codes are the MCP specification's (proxy/jsonrpc.ts).
 */
export const ERROR_CODES = {
  ERR_CONFIG_INVALID: 'the configuration cannot be used; the message names each key and what to write',
  ERR_VALIDATION: 'input refused at a trust boundary (admin API body, CLI argument)',
  ERR_NOT_FOUND: 'a lookup found nothing',
  ERR_CONFLICT: 'the request conflicts with the current state (duplicate id, not pending any more)',
  ERR_UNAVAILABLE: 'a dependency (store, bus, audit log) is out of reach; callers fail closed',
  ERR_SECRET_REF: 'a secret is not written as a reference (env:NAME or file:PATH)',
  ERR_SECRET_MISSING: 'a secret reference names an unset variable or an unreadable file',
  ERR_OUTBOUND: 'the outbound-URL guard refused or could not complete a fetch',
  ERR_JWT_GUARD: 'a JWS refused before its signature was checked (size, shape, duplicate members, alg)',
  ERR_JWKS: 'a JWKS could not be fetched or read',
  ERR_JWKS_NO_MATCHING_KEY: 'no key of a JWKS matches the token (kid, kty, alg, use)',
  ERR_JWKS_MULTIPLE_MATCHING_KEYS: 'more than one key of a JWKS matches a token without kid',
  ERR_KEK_REQUIRED: 'this instance holds no key-encryption key and was asked to seal or open a secret',
  ERR_KEK_INVALID: 'a key-encryption key is not 32 random bytes, or not allowed here (a development KEK in production)',
  ERR_KEK_MISMATCH: 'the store was sealed with another key-encryption key',
  ERR_KEY_DECRYPT: 'a sealed secret or signing key cannot be opened',
  ERR_KEY_INVALID: 'a stored signing key is malformed',
  ERR_CREDENTIAL_INVALID: 'an admin credential is malformed, unknown, revoked or expired',
  ERR_POLICY_INVALID: 'a Cedar policy fails to parse or to validate against the schema',
  ERR_ARGS_REFUSED: 'call arguments Cedar could misread (entity escapes, too many values) are refused',
  ERR_SET_REFUSED: 'a Security Event Token is refused (RFC 8935 §2.3 error in `err`)',
  ERR_STREAMS_REFUSED: 'a group commit of SETs is rolled back: some receivers\' streams are not enabled',
  ERR_FEDERATION_CANDIDATE: 'one trust entry could not verify a workload token (the furthest failure is reported)',
  ERR_STORE_OPTIONS: 'the store options cannot be used (PostgreSQL schema name)',
  ERR_STORE_USAGE: 'a store method called on the wrong dialect or outside its transaction',
  ERR_STORE_CORRUPT: 'a row the store needs is missing or malformed (was it migrated?)',
  ERR_MIGRATION: 'a migration failed or the store is newer than this build',
  ERR_BUS_CONFIG: 'the bus configuration cannot be used',
  ERR_BUS_SUBJECT: 'a bus subject is not valid',
  ERR_BUS_STREAM: 'the JetStream stream cannot be created or does not fit',
  ERR_BUS_PAYLOAD_TOO_LARGE: "a bus message exceeds the server's max_payload",
  ERR_CLI: 'a CLI usage error (exit code 2)',
  ERR_LINT_USAGE: 'a `mandate lint` usage error',
  ERR_DRILL_ABORT: 'the token-theft drill stopped: a step could not be carried out',
  ERR_PARSE_ARGS: "node:util parseArgs' own code for a bad command line",
  // The agent SDK (src/client): what an agent's code switches on.
  ERR_CLIENT_CONFIG: 'the SDK was configured without something it needs',
  ERR_CLIENT_ARGS: 'an SDK call was given an argument it cannot use',
  ERR_CLIENT_URL: 'a URL given to the SDK is not valid',
  ERR_WORKLOAD_TOKEN: 'the workload identity token cannot be read or is not a JWT',
  ERR_DISCOVERY: 'the broker or a resource\'s metadata cannot be fetched or read',
  ERR_NETWORK: 'a request to the broker or a tool failed on the network',
  ERR_DPOP_ALG: 'a DPoP key of an algorithm the SDK does not support',
  ERR_DPOP_HTU: 'a DPoP proof for a URL that is not absolute',
  ERR_APPROVAL_TIMEOUT: 'a human did not decide an approval within the wait',
  // The proxy's refusals of what it cannot read (their wire form is an OAuth or JSON-RPC error).
  path_refused: 'a request path the proxy will not forward (400 invalid_request)',
  jsonrpc_parse_error: 'an MCP body that is not JSON (-32700)',
  jsonrpc_invalid_request: 'an MCP message that is not a JSON-RPC 2.0 request or notification (-32600)',
  jsonrpc_invalid_params: 'an MCP request whose params the proxy cannot decide on (-32602)',
  jsonrpc_error: 'any other JSON-RPC error code the proxy answers with',
  upstream_response_invalid: 'a tool answered something the proxy cannot read; nothing is forwarded (502)',
} as const;

/**
 * A local code from the catalogue, or `ERR_OAUTH_<ERROR>` for an OAuth error, whose wire codes
 * are the RFCs' own (RFC 6749 §5.2, RFC 6750 §3.1, RFC 9449 §7, RFC 8693 §2.2.2, RFC 7009 §2.2.1).
 */
export type ErrorCode = keyof typeof ERROR_CODES | `ERR_OAUTH_${string}`;

export class MandateError extends Error {
  /** A stable, machine-readable code, e.g. `ERR_CONFIG_INVALID`. */
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** Configuration that cannot be used. The message names the key and what to write. */
export class ConfigError extends MandateError {
  readonly issues: readonly string[];
  constructor(issues: readonly string[]) {
    super('ERR_CONFIG_INVALID', `invalid configuration:\n  - ${issues.join('\n  - ')}`);
    this.issues = issues;
  }
}

/** A dependency (store, bus) is not reachable; callers fail closed. */
export class UnavailableError extends MandateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_UNAVAILABLE', message, options);
  }
}

/** A lookup that found nothing. */
export class NotFoundError extends MandateError {
  constructor(message: string) {
    super('ERR_NOT_FOUND', message);
  }
}

/** A request that conflicts with the current state (duplicate id, stale version). */
export class ConflictError extends MandateError {
  constructor(message: string) {
    super('ERR_CONFLICT', message);
  }
}

/** Input that fails validation at a trust boundary (admin API body, CLI argument). */
export class ValidationError extends MandateError {
  readonly details: readonly string[];
  constructor(message: string, details: readonly string[] = []) {
    super('ERR_VALIDATION', message);
    this.details = details;
  }
}

/**
 * An OAuth 2.0 error as the RFCs spell it on the wire (RFC 6749 §5.2, RFC 6750 §3.1,
 * RFC 9449 §7, RFC 8693 §2.2.2, RFC 7009 §2.2.1). `status` is the HTTP status.
 */
export class OAuthError extends MandateError {
  readonly error: string;
  readonly status: number;
  readonly extra: Readonly<Record<string, unknown>>;
  constructor(error: string, description: string, status = 400, extra: Record<string, unknown> = {}) {
    super(`ERR_OAUTH_${error.toUpperCase()}`, description);
    this.error = error;
    this.status = status;
    this.extra = extra;
  }
}

/** Builds an OAuthError from its RFC code, the way node-oidc-provider does with `E(code)`. */
export const oauth = {
  invalidRequest: (d: string) => new OAuthError('invalid_request', d),
  invalidClient: (d: string) => new OAuthError('invalid_client', d, 401),
  invalidGrant: (d: string) => new OAuthError('invalid_grant', d),
  unauthorizedClient: (d: string) => new OAuthError('unauthorized_client', d),
  unsupportedGrantType: (d: string) => new OAuthError('unsupported_grant_type', d),
  invalidScope: (d: string) => new OAuthError('invalid_scope', d),
  invalidTarget: (d: string) => new OAuthError('invalid_target', d),
  invalidToken: (d: string) => new OAuthError('invalid_token', d, 401),
  insufficientScope: (d: string) => new OAuthError('insufficient_scope', d, 403),
  invalidDpopProof: (d: string) => new OAuthError('invalid_dpop_proof', d),
  useDpopNonce: (d: string) => new OAuthError('use_dpop_nonce', d),
  accessDenied: (d: string, extra: Record<string, unknown> = {}) => new OAuthError('access_denied', d, 403, extra),
  serverError: (d = 'internal server error') => new OAuthError('server_error', d, 500),
  temporarilyUnavailable: (d: string) => new OAuthError('temporarily_unavailable', d, 503),
} as const;

/** The HTTP status and JSON body for any thrown value. Unknown errors never leak details. */
export function toHttpError(err: unknown): { status: number; body: Record<string, unknown> } {
  if (err instanceof OAuthError) {
    return { status: err.status, body: { error: err.error, error_description: err.message, ...err.extra } };
  }
  if (err instanceof ValidationError) {
    return { status: 400, body: { error: 'invalid_request', error_description: err.message, details: err.details } };
  }
  if (err instanceof NotFoundError) return { status: 404, body: { error: 'not_found', error_description: err.message } };
  if (err instanceof ConflictError) return { status: 409, body: { error: 'conflict', error_description: err.message } };
  if (err instanceof UnavailableError) {
    return { status: 503, body: { error: 'temporarily_unavailable', error_description: err.message } };
  }
  return { status: 500, body: { error: 'server_error', error_description: 'internal server error' } };
}
