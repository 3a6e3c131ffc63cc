import { OAuthError, type MandateConfig, type TokenProfile, type ToolConfig } from '../core/index.js';

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
