import { createHash } from 'node:crypto';
import { OAuthError, newId } from '../core/index.js';

export { GRANT, TOKEN_TYPE } from '../core/oauth-names.js';

/** Claims of a Mandate access token (RFC 9068 §2.2 plus RFC 9449/8705 `cnf` and RFC 8693 `act`). */
export interface AccessTokenClaims {
  iss: string;
  sub: string;
  aud: string;
  exp: number;
  iat: number;
  jti: string;
  client_id: string;
  scope: string;
  cnf?: { jkt?: string; 'x5t#S256'?: string };
  act?: Record<string, unknown>;
  /** The token profile (risk tier) that set the lifetime. */
  mandate_tier: string;
  mandate_run_id?: string;
  /** Elevation tokens: the approval they redeem and the argument digest they are bound to. */
  mandate_approval?: string;
  mandate_args_digest?: string;
}

export function parseScope(scope: string | undefined): string[] {
  if (scope === undefined) return [];
  if (!/^[\x21\x23-\x5B\x5D-\x7E]+( [\x21\x23-\x5B\x5D-\x7E]+)*$/.test(scope)) {
    throw new OAuthError('invalid_scope', 'scope must be space-separated scope tokens (RFC 6749 §3.3)');
  }
  return [...new Set(scope.split(' '))];
}

/** base64url SHA-256, as used for argument digests and certificate thumbprints. */
export function sha256b64u(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('base64url');
}

/**
 * Lineage, so that revocation reaches what was derived: a token obtained by RFC 8693 exchange
 * of a Mandate token has the jti `<own id>.<jti of the subject token>`, so a jti names its whole
 * ancestry, nearest first. Every
 * check that knows a token's jti (the proxy's, introspection's, exchange's, on every instance)
 * therefore refuses a token whose ancestor is revoked (RevocationState.check), without a lookup
 * and without waiting for the issued-token records, which are written behind. `newId` never
 * produces the separator (base64url), so the parts cannot be confused.
 */
export const LINEAGE_SEPARATOR = '.';
/**
 * How many exchanges may lie between a token and its first ancestor (RFC 8693 chains of
 * narrowing and delegation). Beyond it exchange is refused: it bounds the jti (at most
 * 6 × 25 + 5 characters, within the admin API's and SSF's jti limits) and the `act` nesting.
 */
export const MAX_EXCHANGE_DEPTH = 5;

/** A fresh jti: with `parentJti`, one that names its parent and, through it, every ancestor. */
export function newJti(parentJti?: string): string {
  const own = newId('at');
  return parentJti === undefined ? own : `${own}${LINEAGE_SEPARATOR}${parentJti}`;
}

/** The jti of the token this one was exchanged from, or undefined for a first token. */
export function parentJtiOf(jti: string): string | undefined {
  const i = jti.indexOf(LINEAGE_SEPARATOR);
  return i < 0 ? undefined : jti.slice(i + 1);
}

/** How many ancestors a token has (0 for a token not obtained by exchange of a Mandate token). */
export function exchangeDepthOf(jti: string): number {
  let n = 0;
  for (let i = jti.indexOf(LINEAGE_SEPARATOR); i >= 0; i = jti.indexOf(LINEAGE_SEPARATOR, i + 1)) n++;
  return n;
}

/** The tool an access token's `aud` names: the tool id of `<issuer>/tools/<id>`, else the audience as it is. */
export function toolIdOf(aud: string, issuer: string): string {
  const prefix = `${issuer}/tools/`;
  return aud.startsWith(prefix) ? aud.slice(prefix.length) : aud;
}
