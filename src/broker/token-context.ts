import type { RequestContext, TokenProfile, ToolConfig } from '../core/index.js';
import type { ApprovalRecord, RestrictionLookup } from '../enforcement/index.js';
import type { AccessTokenClaims } from '../jose/index.js';
import type { Subject } from './grants/subject.js';
import type { TokenRequest } from './request.js';
import type { BrokerServices } from './services.js';

/** A key a token is bound to: a DPoP key's thumbprint (RFC 9449) or a certificate's (RFC 8705). */
export interface Binding {
  jkt?: string;
  x5t?: string;
}

/**
 * One token request as it goes through the token endpoint's steps (token-endpoint.ts). Each
 * field is written by the step named beside it and read by the steps after it.
 */
export interface TokenContext {
  readonly services: BrokerServices;
  readonly http: RequestContext;
  readonly maxBodyBytes: number;
  /** parseRequest */
  request?: TokenRequest;
  /** checkSenderProof: the keys the request itself proves. */
  proven?: Binding;
  /** authenticate: the authenticated client; undefined for a public client. */
  clientId?: string;
  /** runGrant */
  subject?: Subject;
  /** chooseBinding: the key the new token is bound to. */
  binding?: Binding;
  /** chooseTarget */
  tool?: ToolConfig;
  /** chooseScope: the instant the token is issued at (grants' expiry, iat, exp). */
  now?: number;
  /** chooseScope: the scope asked for. */
  requested?: string[];
  /** chooseScope, narrowed by applyRestrictions: the scope issued. */
  scope?: string[];
  /** applyRestrictions: the NHI's step-down or step-up, if any. */
  restriction?: NonNullable<ReturnType<RestrictionLookup['restrictionOf']>>;
  /** applyRestrictions: a step-up makes an action of the scope need a human. */
  stepUp?: boolean;
  /** chooseProfile */
  profile?: TokenProfile;
  /** elevation: the digest of the call's arguments, and the approval redeemed, if any. */
  argsDigest?: string;
  approval?: ApprovalRecord;
  /** mint */
  claims?: AccessTokenClaims;
  token?: string;
  /** record: the token response (RFC 6749 §5.1). */
  response?: Record<string, unknown>;
}

/** A step of the token endpoint: it reads what earlier steps wrote, writes its part, or throws an OAuthError. */
export type Step = (t: TokenContext) => void | Promise<void>;

type Having<K extends keyof TokenContext> = TokenContext & { [P in K]-?: NonNullable<TokenContext[P]> };

/** The context, with the fields earlier steps must have written (a step out of order is a programming error). */
export function need<K extends keyof TokenContext>(t: TokenContext, ...keys: K[]): Having<K> {
  for (const k of keys) {
    if (t[k] === undefined) throw new Error(`token endpoint: a step ran before ${k} was set`);
  }
  return t as Having<K>;
}
