import { resolveSecret, type ActionConfig, type MandateConfig, type ToolConfig } from '../core/index.js';
import { ActionMatcher } from './actions.js';
import { responseHeaders, type InjectedCredential } from './headers.js';
import { TokenBucketLimiter } from './rate-limit.js';
import { SecretScrubber } from './scrub.js';

/** A declared tool as the proxy serves it: its actions, credential, scrubber and rate limiter, built once. */
export interface ToolRuntime {
  tool: ToolConfig;
  /** The tool's resource URL (resourceOf), filled on its first call (the issuer may be known only then). */
  resource: string;
  matcher: ActionMatcher;
  credential: InjectedCredential | undefined;
  /** Fills the credential's forms in response bodies; undefined without a credential or with `scrub_response_secrets: false`. */
  scrubber: SecretScrubber | undefined;
  limiter: TokenBucketLimiter | undefined;
  approvalTiers: ReadonlySet<string>;
  /** The tool's response headers as the agent gets them (responseHeaders with its credential). */
  responseHeaders: (upstream: Record<string, string | string[] | undefined>) => Record<string, string | string[]>;
  /** Per HTTP action: `path?rawQuery` → argsDigest of its `{ params, query }` (see httpArgsDigest in http-call.ts). */
  argsDigests: Map<ActionConfig, Map<string, string>>;
}

/** Every declared tool, ready for calls. */
export function toolRuntimes(config: Readonly<MandateConfig>, env: NodeJS.ProcessEnv): ToolRuntime[] {
  const approvalTiers = new Set(config.tokens.profiles.filter((p) => p.approval).map((p) => p.name));
  return config.tools.map((tool) => {
    const c = tool.credential;
    // Resolved once at start: a missing secret fails start-up, not the first call.
    const credential: InjectedCredential | undefined = c
      ? { type: c.type, value: resolveSecret(c.value, env), ...(c.name ? { name: c.name } : {}), ...(c.username ? { username: c.username } : {}) }
      : undefined;
    return {
      tool,
      resource: '',
      matcher: new ActionMatcher(tool.actions),
      credential,
      scrubber: credential && tool.scrub_response_secrets ? new SecretScrubber(credential) : undefined,
      limiter: tool.rate_limit
        ? new TokenBucketLimiter({ perSecond: tool.rate_limit.per_second, burst: tool.rate_limit.burst, maxKeys: config.proxy.rate_limit_keys })
        : undefined,
      approvalTiers,
      responseHeaders: (upstream) => responseHeaders(upstream, credential ? { credential } : {}),
      argsDigests: new Map(),
    };
  });
}

/** The resource URL of a tool (RFC 8707 / RFC 9728 `resource`). */
export function resourceOf(issuer: string, toolId: string): string {
  return `${issuer}/tools/${toolId}`;
}
