/**
 * Security Event Tokens (RFC 8417) as the Shared Signals Framework 1.0 profiles them: event
 * type URIs (CAEP 1.0, RISC 1.0, SSF 1.0), subject identifiers (RFC 9493 and SSF 1.0's
 * `jwt_id`, `saml_assertion_id` and `complex`), and their validation. Pure: no I/O.
 */
import { MandateError, canonicalJson } from '../core/index.js';

/** RFC 8417 §2.3: the explicit type of a SET (the `typ` header); `application/` may be omitted (RFC 7515 §4.1.9). */
export const SET_TYP = 'secevent+jwt';
/** RFC 8935 §2.1: the media type of a pushed SET. */
export const SET_MEDIA_TYPE = 'application/secevent+jwt';
/** SSF 1.0 "Transmitter Configuration Metadata": delivery method URNs. */
export const DELIVERY_PUSH = 'urn:ietf:rfc:8935';
export const DELIVERY_POLL = 'urn:ietf:rfc:8936';

const CAEP = 'https://schemas.openid.net/secevent/caep/event-type/';
const RISC = 'https://schemas.openid.net/secevent/risc/event-type/';
const SSF = 'https://schemas.openid.net/secevent/ssf/event-type/';

export const EVENT = {
  // CAEP 1.0 §3
  sessionRevoked: `${CAEP}session-revoked`,
  tokenClaimsChange: `${CAEP}token-claims-change`,
  credentialChange: `${CAEP}credential-change`,
  assuranceLevelChange: `${CAEP}assurance-level-change`,
  deviceComplianceChange: `${CAEP}device-compliance-change`,
  sessionEstablished: `${CAEP}session-established`,
  sessionPresented: `${CAEP}session-presented`,
  riskLevelChange: `${CAEP}risk-level-change`,
  // RISC 1.0 §2
  accountCredentialChangeRequired: `${RISC}account-credential-change-required`,
  accountPurged: `${RISC}account-purged`,
  accountDisabled: `${RISC}account-disabled`,
  accountEnabled: `${RISC}account-enabled`,
  identifierChanged: `${RISC}identifier-changed`,
  identifierRecycled: `${RISC}identifier-recycled`,
  credentialCompromise: `${RISC}credential-compromise`,
  optIn: `${RISC}opt-in`,
  optOutInitiated: `${RISC}opt-out-initiated`,
  optOutCancelled: `${RISC}opt-out-cancelled`,
  optOutEffective: `${RISC}opt-out-effective`,
  recoveryActivated: `${RISC}recovery-activated`,
  recoveryInformationChanged: `${RISC}recovery-information-changed`,
  sessionsRevoked: `${RISC}sessions-revoked`,
  // SSF 1.0 "Verification" and "Stream Updated Event"
  verification: `${SSF}verification`,
  streamUpdated: `${SSF}stream-updated`,
} as const;

/** Every event type Mandate knows. A received SET with any other type is refused. */
export const KNOWN_EVENTS: ReadonlySet<string> = new Set(Object.values(EVENT));

/** The event types Mandate transmits (SSF 1.0 stream configuration `events_supported`). */
export const EVENTS_SUPPORTED: readonly string[] = [
  EVENT.sessionRevoked, EVENT.tokenClaimsChange, EVENT.credentialChange, EVENT.accountDisabled, EVENT.accountEnabled,
];

/**
 * RFC 9493 §3 subject identifier formats with their required members (and SSF 1.0's `jwt_id`,
 * `saml_assertion_id`). `aliases` and `complex` are checked structurally below.
 */
const FORMAT_MEMBERS: Record<string, readonly string[]> = {
  account: ['uri'], // §3.2.1
  email: ['email'], // §3.2.2
  iss_sub: ['iss', 'sub'], // §3.2.3
  opaque: ['id'], // §3.2.4
  phone_number: ['phone_number'], // §3.2.5
  did: ['url'], // §3.2.6
  uri: ['uri'], // §3.2.7
  jwt_id: ['iss', 'jti'], // SSF 1.0 "JWT ID Subject Identifier Format"
  saml_assertion_id: ['issuer', 'assertion_id'], // SSF 1.0 "SAML Assertion ID Subject Identifier Format"
};

/** SSF 1.0 "Complex Subject Members": the members a complex subject may have. */
const COMPLEX_MEMBERS = ['user', 'device', 'session', 'application', 'tenant', 'org_unit', 'group'] as const;

export type SubjectId = Record<string, unknown> & { format: string };

/** Why a subject identifier is malformed, or undefined when it is well formed. */
export function subjectProblem(v: unknown, depth = 0): string | undefined {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return 'a subject identifier is a JSON object (RFC 9493 §3)';
  const o = v as Record<string, unknown>;
  if (typeof o.format !== 'string' || o.format === '') return 'a subject identifier needs a "format" (RFC 9493 §3)';
  if (o.format === 'aliases') {
    // RFC 9493 §3.2.8: a non-empty array of identifiers, none of them aliases itself.
    if (depth > 0) return 'aliases cannot nest';
    if (!Array.isArray(o.identifiers) || o.identifiers.length === 0) return 'an aliases identifier needs a non-empty "identifiers" array (RFC 9493 §3.2.8)';
    for (const id of o.identifiers) {
      if ((id as { format?: unknown })?.format === 'aliases') return 'aliases cannot nest (RFC 9493 §3.2.8)';
      const p = subjectProblem(id, depth + 1);
      if (p) return p;
    }
    return undefined;
  }
  if (o.format === 'complex') {
    if (depth > 0) return 'a complex subject cannot nest';
    const present = COMPLEX_MEMBERS.filter((m) => o[m] !== undefined);
    if (present.length === 0) return 'a complex subject needs at least one of user, device, session, application, tenant, org_unit, group (SSF 1.0)';
    for (const k of Object.keys(o)) if (k !== 'format' && !(COMPLEX_MEMBERS as readonly string[]).includes(k)) return `a complex subject has no member "${k.slice(0, 40)}"`;
    for (const m of present) {
      const p = subjectProblem(o[m], depth + 1);
      if (p) return `${m}: ${p}`;
    }
    return undefined;
  }
  const need = FORMAT_MEMBERS[o.format];
  if (!need) return `unknown subject identifier format "${o.format.slice(0, 40)}"`;
  for (const m of need) if (typeof o[m] !== 'string' || o[m] === '') return `format ${o.format} needs a string "${m}" (RFC 9493 §3.2)`;
  if (o.format === 'email' && !/^[^@\s]+@[^@\s]+$/.test(o.email as string)) return 'not an email address (RFC 9493 §3.2.2)';
  if (o.format === 'account' && !/^acct:/.test(o.uri as string)) return 'an account uri starts with acct: (RFC 9493 §3.2.1)';
  return undefined;
}

/**
 * RFC 7519 §4.1.4: "the current date/time MUST be before the expiration date/time listed in the
 * exp claim", with "some small leeway" (`skewMs`, the receiver's iat skew). A SET need not carry
 * `exp` (RFC 8417 §2.2); one that does is refused once it has passed, and one whose `exp` is not
 * a NumericDate is malformed. Why the SET is refused, or undefined.
 */
export function setExpiryProblem(exp: unknown, nowMs: number, skewMs: number): string | undefined {
  if (exp === undefined) return undefined;
  if (typeof exp !== 'number' || !Number.isFinite(exp)) return 'the SET "exp" is not a NumericDate (RFC 7519 §4.1.4)';
  if (exp * 1000 + skewMs <= nowMs) return 'the SET has expired: its "exp" is in the past (RFC 7519 §4.1.4)';
  return undefined;
}

/** Leeway for a SET's `iat` and `exp` (RFC 7519 §4.1.4 "some small leeway"): clocks of transmitter and receiver differ. */
export const IAT_SKEW_MS = 60_000;

/** The id of the local stream record that holds a configured receiver's status (enabled, paused, disabled). */
export const inboundStreamId = (name: string): string => `rcv_${name}`;

/** Canonical JSON (keys sorted, core/canonical.ts): the identity of a subject within a stream. */
export { canonicalJson };

/** RFC 8935 §2.3 / §2.4 error codes for a refused SET. */
export type SetErrorCode = 'invalid_request' | 'invalid_key' | 'invalid_issuer' | 'invalid_audience' | 'authentication_failed' | 'access_denied';

/** A refused SET; the wire form is `{ err, description }` (RFC 8935 §2.3). */
export class SetError extends MandateError {
  constructor(
    readonly err: SetErrorCode,
    readonly description: string,
  ) {
    super('ERR_SET_REFUSED', description);
  }
  /** HTTP status: 401 when the request is not authenticated, 403 when refused, 400 otherwise (RFC 8935 §2.3). */
  get status(): number {
    return this.err === 'access_denied' ? 403 : 400;
  }
}
