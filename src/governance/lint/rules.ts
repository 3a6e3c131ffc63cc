import { MandateError } from '../../core/errors.js';

/**
 * The rule ids of `mandate lint`. They are stable: CI configurations, SARIF baselines in code
 * scanning and suppressions refer to them, so a rule is renamed only with a new id.
 */
export type LintRuleId =
  | 'static-secret-without-exception'
  | 'exception-expired'
  | 'profile-ttl-too-long'
  | 'trust-issuer-only'
  | 'refresh-tokens'
  | 'inline-secret'
  | 'committed-secret'
  | 'committed-private-key'
  | 'config-invalid';

export type LintLevel = 'error' | 'warning';

/** One problem. `message` never carries a secret value: findings end up in CI logs and code-scanning UIs. */
export interface Finding {
  ruleId: LintRuleId;
  level: LintLevel;
  message: string;
  /** The file as the user named it (relative to the working directory when it lies below it). */
  file: string;
  /** 1-based. */
  line: number;
  /** 1-based. */
  column: number;
  /** The config key the finding is about, e.g. `nhis[0].credentials[1].exception` (config rules only). */
  key?: string;
  /** Extra facts, e.g. `secretlintRuleId` for committed-secret, `keyType` for committed-private-key. */
  properties?: Record<string, string>;
}

export interface LintRule {
  id: LintRuleId;
  level: LintLevel;
  short: string;
  full: string;
}

/**
 * Where the rules are documented. Mandate has no public home page yet, so this points at the
 * docs in the repository layout; change it here when it has one (SARIF needs an absolute URI).
 */
export const LINT_DOCS_URL = 'https://github.com/mandate-nhi/mandate/blob/main/docs/ci-lint.md';

export const LINT_RULES: readonly LintRule[] = [
  {
    id: 'static-secret-without-exception',
    level: 'error',
    short: 'A static secret without an exception (ticket and end date)',
    full: 'An NHI credential of type static_secret must carry exception: { ticket, expires }. Prefer a federated or private_key_jwt credential.',
  },
  {
    id: 'exception-expired',
    level: 'error',
    short: 'A static-secret exception past its end date',
    full: 'The exception that allows a static secret ended (its expires date is before today): retire the secret or renew the exception with a new ticket.',
  },
  {
    id: 'profile-ttl-too-long',
    level: 'error',
    short: 'A token profile longer than tokens.max_ttl',
    full: 'A token profile may not live longer than the organisation ceiling tokens.max_ttl (1h by default).',
  },
  {
    id: 'trust-issuer-only',
    level: 'error',
    short: 'A trust entry that pins only an issuer',
    full: 'A trust entry needs at least one claim condition besides the issuer (a condition of only "*" does not count): an issuer alone admits every workload it serves.',
  },
  {
    id: 'refresh-tokens',
    level: 'error',
    short: 'Refresh tokens for machines',
    full: 'tokens.refresh_tokens must be false or absent: machines re-federate with their workload identity instead of holding a refresh token.',
  },
  {
    id: 'inline-secret',
    level: 'error',
    short: 'An inline secret in the config',
    full: 'A secret in mandate.yaml must be a reference (env:NAME or file:PATH). An inline value is in the repository history: replace it with a reference and rotate it.',
  },
  {
    id: 'committed-secret',
    level: 'error',
    short: 'A secret committed in a source file',
    full: 'secretlint (recommended preset) found a credential in a scanned file. Remove it, rotate it, and load it from the environment or a secret store.',
  },
  {
    id: 'committed-private-key',
    level: 'error',
    short: 'A private key committed in a file',
    full: 'A scanned file holds a private key, confirmed by parsing it (a PEM block of any private-key label, OpenSSH, OpenPGP, or base64 DER; encrypted or not), whatever its layout. Remove it and rotate it: it stays in the repository history. Generate test keys at test time.',
  },
  {
    id: 'config-invalid',
    level: 'error',
    short: 'The config does not validate',
    full: 'mandate.yaml does not parse or does not validate against the config schema; Mandate would refuse to start with it.',
  },
];

export function ruleOf(id: LintRuleId): LintRule {
  return LINT_RULES.find((r) => r.id === id)!;
}

/** A usage problem (unknown git ref, unreadable path): the CLI exits 2 rather than 1. */
export class LintUsageError extends MandateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_LINT_USAGE', message, options);
  }
}
