/**
 * One base class with a stable `code`, so that callers can `switch` on `err.code`.
 *
 * Three vocabularies are kept apart (as in the MCP SDK): OAuth error codes that go on the
 * HTTP wire (`OAuthError`), JSON-RPC numbers inside MCP, and local codes that are never
 * serialized as they are. Anything that is not meant for the wire becomes `server_error`
 * in the serializers (see `toHttpError`).
 */
export class MandateError extends Error {
  /** A stable, machine-readable code, e.g. `ERR_CONFIG_INVALID`. */
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
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
