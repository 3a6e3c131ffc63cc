import { MandateError, type ErrorCode } from '../core/errors.js';

/**
 * Errors the client throws. Every one has a stable `code` (from `MandateError`), so callers can
 * `switch (err.code)`; the ones that come from an OAuth error answer (broker or proxy) are
 * `BrokerError`s and also carry the wire `error`, its description and the HTTP status.
 *
 * Messages never contain tokens, assertions or keys.
 */
export class MandateClientError extends MandateError {
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** An OAuth error answer (RFC 6749 §5.2 and friends) that has no more specific class below. */
export class BrokerError extends MandateClientError {
  /** The OAuth error code as sent, e.g. `invalid_scope`. */
  readonly error: string;
  readonly description: string;
  /** The HTTP status of the answer. */
  readonly status: number;
  /** The whole JSON error body (it holds no secrets). */
  readonly body: Readonly<Record<string, unknown>>;
  constructor(error: string, description: string, status: number, body: Record<string, unknown> = {}) {
    super(`ERR_OAUTH_${error.toUpperCase()}`, description ? `${error}: ${description}` : error);
    this.error = error;
    this.description = description;
    this.status = status;
    this.body = body;
  }
}

/**
 * `approval_required`: the action's tier needs a human. Show `approvalUri` to whoever decides,
 * then call `getToken` again with `{ approvalId }` (or use `waitForApproval`).
 */
export class ApprovalRequiredError extends BrokerError {
  readonly approvalId: string;
  readonly approvalUri: string | undefined;
  /** Seconds the approval request stays open. */
  readonly expiresIn: number | undefined;
  constructor(description: string, status: number, body: Record<string, unknown>) {
    super('approval_required', description, status, body);
    this.approvalId = typeof body.approval_id === 'string' ? body.approval_id : '';
    this.approvalUri = typeof body.approval_uri === 'string' ? body.approval_uri : undefined;
    this.expiresIn = typeof body.expires_in === 'number' ? body.expires_in : undefined;
  }
}

/** `authorization_pending`: nobody has decided on the approval yet; ask again later. */
export class AuthorizationPendingError extends BrokerError {
  constructor(description: string, status: number, body: Record<string, unknown>) {
    super('authorization_pending', description, status, body);
  }
}

/** `access_denied`: the approval was denied, the NHI is disabled, or a kill switch is engaged. */
export class AccessDeniedError extends BrokerError {
  constructor(description: string, status: number, body: Record<string, unknown>) {
    super('access_denied', description, status, body);
  }
}

/** `expired_token` at the token endpoint: the approval request expired before anyone approved it. */
export class ApprovalExpiredError extends BrokerError {
  constructor(description: string, status: number, body: Record<string, unknown>) {
    super('expired_token', description, status, body);
  }
}

/**
 * The access token was revoked: the proxy said `invalid_token` and that it was revoked, or it
 * refused a freshly issued token as well.
 */
export class TokenRevokedError extends BrokerError {
  constructor(description: string, status: number, body: Record<string, unknown> = {}) {
    super('invalid_token', description, status, body);
  }
}

/** `waitForApproval` gave up before anyone decided. */
export class ApprovalTimeoutError extends MandateClientError {
  readonly approvalId: string;
  constructor(approvalId: string, timeoutMs: number) {
    super('ERR_APPROVAL_TIMEOUT', `approval ${approvalId} was not decided within ${Math.round(timeoutMs / 1000)} s`);
    this.approvalId = approvalId;
  }
}

/** The typed error for an OAuth error body. */
export function oauthErrorFrom(status: number, body: Record<string, unknown>): BrokerError {
  const error = typeof body.error === 'string' && body.error ? body.error : 'invalid_response';
  const description = typeof body.error_description === 'string' ? body.error_description.slice(0, 1000) : '';
  switch (error) {
    case 'approval_required':
      return new ApprovalRequiredError(description, status, body);
    case 'authorization_pending':
      return new AuthorizationPendingError(description, status, body);
    case 'access_denied':
      return new AccessDeniedError(description, status, body);
    case 'expired_token':
      return new ApprovalExpiredError(description, status, body);
    case 'invalid_token':
      return /revoked/i.test(description) ? new TokenRevokedError(description, status, body) : new BrokerError(error, description, status, body);
    default:
      return new BrokerError(error, description, status, body);
  }
}
