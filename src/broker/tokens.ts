import { createHash } from 'node:crypto';
import { OAuthError, newId, type MandateConfig, type TokenProfile, type ToolConfig } from '../core/index.js';

/** RFC 8693 §3 token type identifiers. */
export const TOKEN_TYPE = {
  jwt: 'urn:ietf:params:oauth:token-type:jwt',
  accessToken: 'urn:ietf:params:oauth:token-type:access_token',
  idToken: 'urn:ietf:params:oauth:token-type:id_token',
} as const;

export const GRANT = {
  tokenExchange: 'urn:ietf:params:oauth:grant-type:token-exchange',
  jwtBearer: 'urn:ietf:params:oauth:grant-type:jwt-bearer',
  clientCredentials: 'client_credentials',
} as const;

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

/**
 * The catalogue of tools and profiles the broker decides with: which tool a `resource` or
 * `audience` names, which tier an action has, and the profile of a set of actions.
 */
export class ToolCatalog {
  private readonly tools = new Map<string, ToolConfig>();
  private readonly rank = new Map<string, number>();
  private readonly profiles = new Map<string, TokenProfile>();

  constructor(
    private readonly config: Readonly<MandateConfig>,
    private readonly issuer: () => string,
  ) {
    for (const t of config.tools) this.tools.set(t.id, t);
    config.tokens.profiles.forEach((p, i) => {
      this.rank.set(p.name, i);
      this.profiles.set(p.name, p);
    });
  }

  /** The resource indicator (RFC 8707) of a tool: its URL at the proxy. */
  resourceOf(toolId: string): string {
    return `${this.issuer()}/tools/${toolId}`;
  }

  tool(id: string): ToolConfig | undefined {
    return this.tools.get(id);
  }

  /**
   * RFC 8707 §2 / RFC 8693 §2.1: `resource` (absolute URI) and `audience` (logical name) must
   * together name exactly one tool; anything else is `invalid_target`.
   */
  resolveTarget(resource: string[], audience: string[]): ToolConfig {
    const named = new Set<string>();
    for (const r of resource) {
      let u: URL;
      try {
        u = new URL(r);
      } catch {
        throw new OAuthError('invalid_target', 'resource must be an absolute URI (RFC 8707 §2)');
      }
      if (u.hash) throw new OAuthError('invalid_target', 'resource must not contain a fragment (RFC 8707 §2)');
      const id = this.toolIdFromResource(r);
      if (!id) throw new OAuthError('invalid_target', 'resource names no tool of this broker');
      named.add(id);
    }
    for (const a of audience) {
      const id = this.tools.has(a) ? a : this.toolIdFromResource(a);
      if (!id) throw new OAuthError('invalid_target', `audience "${a.slice(0, 100)}" names no tool of this broker`);
      named.add(id);
    }
    if (named.size === 0) throw new OAuthError('invalid_target', 'name the tool with resource (RFC 8707) or audience (RFC 8693)');
    if (named.size > 1) throw new OAuthError('invalid_target', 'a token is for exactly one tool: name one resource');
    return this.tools.get([...named][0]!)!;
  }

  private toolIdFromResource(r: string): string | undefined {
    const prefix = `${this.issuer()}/tools/`;
    if (!r.startsWith(prefix)) return undefined;
    const id = r.slice(prefix.length).replace(/\/$/, '');
    return this.tools.has(id) ? id : undefined;
  }

  /** The profile of the most dangerous action among `actions` of `tool`. */
  profileFor(tool: ToolConfig, actions: string[]): TokenProfile {
    let best = -1;
    for (const name of actions) {
      const a = tool.actions.find((x) => x.name === name);
      const r = a ? this.rank.get(a.tier) ?? -1 : -1;
      if (r > best) best = r;
    }
    const p = this.config.tokens.profiles[Math.max(best, 0)];
    return p!;
  }

  /** Actions of `tool` whose tier is `tier` or lower (step-down uses the lowest tier). */
  actionsAtOrBelow(tool: ToolConfig, tier: string): string[] {
    const max = this.rank.get(tier) ?? 0;
    return tool.actions.filter((a) => (this.rank.get(a.tier) ?? 0) <= max).map((a) => a.name);
  }
}

/** Space-separated scope (RFC 6749 §3.3) to a de-duplicated list; the empty string is no scope. */
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
