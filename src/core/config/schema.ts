import { z } from 'zod';
import { SECRET_REF_RE } from '../secrets.js';
import { parseDuration } from '../duration.js';
import { OutboundError, OutboundGuard, cidrProblem } from '../outbound.js';

/**
 * Over 600 lines on purpose: this is the whole of `mandate.yaml` in one place, section after
 * section in the order of the file, so that a reader (and the generated JSON Schema and
 * configuration reference) sees every key, its default and its example together; the
 * cross-section checks at the end need every section in scope.
 *
 * The one schema for `mandate.yaml`. Every object is strict (an unknown key is an error),
 * defaults live here and nowhere else, and every leaf carries an example that the loader
 * quotes when the value is wrong. `scripts/gen-schema.mjs` writes the JSON Schema from it
 * into `schema/mandate.schema.json`, and the tests fail when the two drift apart.
 */

/** Attaches the example quoted in error messages ("write instead: …"). */
function ex<T extends z.ZodType>(schema: T, example: string): T {
  return schema.meta({ example });
}

const slug = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'use lowercase letters, digits, ".", "_" or "-" (at most 63)');

/** A secret is only ever a reference. An inline value is refused, with what to write instead. */
export const secretRef = ex(
  z.string().regex(SECRET_REF_RE, 'an inline secret is refused: write a reference, env:NAME or file:PATH'),
  'env:TICKETS_API_TOKEN',
);

/** `15m`, `24h`, `90s`, `7d`, or a number of seconds; parsed to seconds. */
export const duration = ex(
  z
    .union([z.string(), z.number()])
    .transform((v, ctx) => {
      const s = parseDuration(v);
      if (s === undefined) {
        ctx.addIssue({ code: 'custom', message: `"${String(v)}" is not a duration (e.g. 90s, 15m, 24h, 7d)` });
        return z.NEVER;
      }
      return s;
    }),
  '15m',
);

const httpUrl = z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' });
const isoDate = ex(z.iso.date({ error: 'expected a date, YYYY-MM-DD' }), '2026-12-31');

const jwk = z.record(z.string(), z.unknown());
const jwks = ex(z.strictObject({ keys: z.array(jwk).min(1) }), '{ keys: [ { kty: EC, crv: P-256, x: …, y: … } ]}');

export const serverSchema = z.strictObject({
  host: ex(z.string().min(1).default('127.0.0.1'), '0.0.0.0'),
  port: ex(z.number().int().min(0).max(65535).default(8080), '8080'),
  /** The URL agents and tools use to reach this instance; the OAuth issuer is derived from it. */
  public_url: ex(httpUrl.optional(), 'https://mandate.example.com'),
  tls: z
    .strictObject({
      cert: ex(z.string().min(1), '/etc/mandate/tls.crt'),
      key: secretRef,
      /** CA bundle for client certificates (RFC 8705 mTLS-bound tokens). */
      client_ca: ex(z.string().min(1).optional(), '/etc/mandate/clients-ca.crt'),
      client_auth: ex(z.enum(['none', 'optional', 'required']).default('none'), 'optional'),
    })
    .optional(),
  /** Cap for any request body read by Mandate itself (OAuth, admin, SSF); the proxy has its own per tool. */
  max_body_bytes: ex(z.number().int().positive().default(64 * 1024), '65536'),
  shutdown_grace: duration.prefault(10),
});

export const storeSchema = z.strictObject({
  driver: ex(z.enum(['sqlite', 'postgres']).default('sqlite'), 'postgres'),
  sqlite_path: ex(z.string().min(1).default('.mandate/mandate.db'), '.mandate/mandate.db'),
  /** A `postgres://` URL without a password, or a secret reference to the full URL. */
  postgres_url: ex(z.string().min(1).optional(), 'env:MANDATE_DATABASE_URL'),
  pool_size: z.number().int().min(1).max(200).default(10),
  /**
   * PostgreSQL: send the hot write statements (SET ingest, audit append, signal timeline) as
   * named prepared statements, planned once per connection. Set false behind a connection pooler
   * in transaction mode that does not track prepared statements (PgBouncer before 1.21, or without
   * max_prepared_statements).
   */
  prepared_statements: z.boolean().default(true),
});

export const busSchema = z.strictObject({
  driver: ex(z.enum(['memory', 'nats']).default('memory'), 'nats'),
  nats_servers: ex(z.array(z.string().min(1)).min(1).default(['nats://127.0.0.1:4222']), '[nats://127.0.0.1:4222]'),
  nats_credentials: secretRef.optional(),
  /**
   * JetStream stream that holds Mandate's events. Two deployments on one NATS server need two
   * streams: each captures its own subjects (see subject_prefix), and sees nothing of the other.
   */
  stream: ex(z.string().regex(/^[A-Za-z0-9_-]+$/).default('MANDATE'), 'MANDATE'),
  /**
   * Every subject is `<subject_prefix>.…` and the stream captures `<subject_prefix>.>`. Default:
   * the stream's name in lower case (`MANDATE` → `mandate`), so that a deployment with its own
   * stream has its own subjects. Two streams on one server cannot share a prefix (NATS refuses
   * overlapping subjects); set it only to keep subjects a server's permissions already name.
   */
  subject_prefix: ex(z.string().regex(/^[a-z0-9_-]+$/, 'use lowercase letters, digits, "_" or "-"').optional(), 'mandate'),
  /** An instance cut off from the bus longer than this denies (fail closed). */
  staleness_bound: duration.prefault(15),
});

export const keysSchema = z.strictObject({
  algorithm: ex(z.enum(['ES256', 'EdDSA']).default('ES256'), 'ES256'),
  /** Key-encryption key (32 bytes, base64 or hex) that encrypts signing keys at rest. */
  kek: secretRef.optional(),
  rotation_interval: duration.prefault('30d'),
  /** A new key is published this long before it signs, so verifiers fetch it in time. */
  pre_publish: duration.prefault('1h'),
});

export const tokenProfileSchema = z.strictObject({
  name: ex(slug, 'write'),
  description: z.string().optional(),
  ttl: duration,
  binding: ex(z.enum(['required', 'optional']).default('required'), 'required'),
  approval: ex(z.boolean().default(false), 'true'),
});

export const tokensSchema = z.strictObject({
  /** The organisation's ceiling: no profile may be longer. */
  max_ttl: duration.prefault('1h'),
  /** Ordered from least to most dangerous; an action names one by `tier`. */
  profiles: z.array(tokenProfileSchema).min(1).prefault([
    { name: 'read', ttl: '10m', description: 'reads; no side effects' },
    { name: 'write', ttl: '5m', description: 'creates or changes data' },
    { name: 'destructive', ttl: '2m', approval: true, description: 'deletes, deploys, pays: a human approves each call' },
  ]),
  /** Machines re-federate; refresh tokens are never issued to them. */
  refresh_tokens: ex(z.literal(false, { error: 'refresh tokens are never issued to machines: remove the key or write false' }).default(false), 'false'),
  /** DPoP proof `iat` window and replay retention. */
  dpop_proof_max_age: duration.prefault(60),
  /**
   * `required`: every DPoP proof at the token endpoint must carry a server nonce (RFC 9449 §8);
   * a proof without one gets `use_dpop_nonce` and a `DPoP-Nonce` header, and the client retries.
   * Bounds how long a proof made in advance stays usable. `optional`: a nonce is checked when present.
   */
  dpop_nonce: ex(z.enum(['required', 'optional']).default('optional'), 'required'),
});

export const trustSchema = z.strictObject({
  name: ex(slug, 'github-actions'),
  kind: ex(z.enum(['github_actions', 'gitlab', 'kubernetes', 'spiffe', 'oidc']).default('oidc'), 'github_actions'),
  issuer: ex(z.string().min(1), 'https://token.actions.githubusercontent.com'),
  /** Take `jwks_uri` from the issuer's OpenID discovery document. */
  discovery: z.boolean().default(false),
  jwks_uri: ex(httpUrl.optional(), 'https://token.actions.githubusercontent.com/.well-known/jwks'),
  jwks: jwks.optional(),
  algorithms: ex(z.array(z.enum(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'])).min(1), '[RS256]'),
  audience: ex(z.string().min(1), 'https://mandate.example.com'),
  /** Claim conditions, exact or anchored glob (`*`); at least one is required. */
  claims: ex(z.record(z.string(), z.string()).default({}), '{ repository_owner: acme }'),
  /** The claim that names the workload; matched against an NHI's federated credential. */
  subject_claim: ex(z.string().default('sub'), 'sub'),
  max_token_age: duration.prefault('1h'),
});

export const credentialSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('federated'),
    trust: ex(slug, 'github-actions'),
    /** Value of the trust entry's `subject_claim`, exact or anchored glob. */
    subject: ex(z.string().min(1), 'repo:acme/deploy:ref:refs/heads/main'),
    created: isoDate.optional(),
    /** The last day it is accepted (to its end, UTC); after it, a workload token matching it no longer names this NHI. */
    expires: isoDate.optional(),
  }),
  z.strictObject({
    type: z.literal('private_key_jwt'),
    jwks: jwks.optional(),
    jwks_uri: httpUrl.optional(),
    created: isoDate.optional(),
    expires: isoDate.optional(),
    last_rotated: isoDate.optional(),
  }),
  z.strictObject({
    type: z.literal('static_secret'),
    secret: secretRef,
    /** A static secret exists only as an exception, with a ticket and an end date. */
    exception: ex(
      z.strictObject({ ticket: ex(z.string().min(1), 'SEC-1234'), expires: isoDate, reason: z.string().optional() }),
      '{ ticket: SEC-1234, expires: 2026-12-31 }',
    ),
    created: isoDate.optional(),
    last_rotated: isoDate.optional(),
  }),
]);

export const nhiSchema = z.strictObject({
  id: ex(slug, 'deploy-agent'),
  class: ex(z.enum(['agent', 'workload', 'runner', 'tool']), 'agent'),
  owner: ex(z.string().min(1), 'platform-team@example.com'),
  system: ex(z.string().min(1), 'release-pipeline'),
  environment: ex(z.string().min(1).default('production'), 'production'),
  tier: ex(z.enum(['read', 'write', 'admin']), 'write'),
  status: ex(z.enum(['active', 'disabled']).default('active'), 'active'),
  description: z.string().optional(),
  credentials: z.array(credentialSchema).default([]),
  /** NHIs allowed to act for this one (RFC 8693 delegation, `act`). */
  may_act: ex(z.array(slug).default([]), '[orchestrator-agent]'),
});

export const toolCredentialSchema = z.strictObject({
  type: ex(z.enum(['bearer', 'header', 'basic', 'query']), 'bearer'),
  value: secretRef,
  /** Header name (type header) or query parameter (type query). */
  name: ex(z.string().min(1).optional(), 'X-Api-Key'),
  /** User name for type basic; the password is `value`. */
  username: z.string().optional(),
});

export const actionSchema = z.strictObject({
  /** For MCP tools, the MCP tool name as `tools/call` sends it. */
  name: ex(z.string().regex(/^[A-Za-z0-9_.-]{1,128}$/, 'use letters, digits, "_", "." or "-"'), 'create_ticket'),
  method: ex(z.enum(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']).optional(), 'POST'),
  /** Path template below the tool's upstream, e.g. `/tickets/{id}`. */
  path: ex(z.string().regex(/^\/[A-Za-z0-9._~\-/{}]*$/, 'a path template such as /tickets/{id}').optional(), '/tickets/{id}'),
  tier: ex(slug, 'write'),
  description: z.string().optional(),
});

export const toolSchema = z.strictObject({
  id: ex(slug, 'tickets'),
  kind: ex(z.enum(['http', 'mcp']), 'http'),
  upstream: ex(httpUrl, 'http://127.0.0.1:9001'),
  description: z.string().optional(),
  credential: toolCredentialSchema.optional(),
  actions: z.array(actionSchema).min(1),
  /** Upstream timeout: for the response headers, and between two chunks of the body. */
  timeout: duration.prefault(30),
  /** Cap of a request body sent to this tool; a larger one is refused with 413 before it reaches the tool. */
  max_body_bytes: z.number().int().positive().default(1024 * 1024),
  /** Cap of a response body from this tool; a larger one is cut off (502 when known before the first byte). */
  max_response_bytes: z.number().int().positive().default(16 * 1024 * 1024),
  /**
   * Replace the tool's credential in every response body the agent gets: each
   * form of the secret it was sent (as is, percent-, JSON- or HTML-escaped, base64 for basic)
   * becomes filler of the same length; the proxy asks the tool for unencoded bodies (and sends no
   * Range) and refuses an encoded one (502). Turn off only for a tool whose bodies must pass byte
   * for byte, or that compresses whatever it is asked: what it echoes of its credential then
   * reaches the agent (docs/security.md, "The tool's credential").
   */
  scrub_response_secrets: ex(z.boolean().default(true), 'false'),
  /** Token bucket per NHI on this tool: 429 with Retry-After when empty. */
  rate_limit: ex(z.strictObject({ per_second: z.number().positive(), burst: z.number().int().positive() }), '{ per_second: 10, burst: 20 }').optional(),
  /** Host names routed to this tool as a whole (besides /tools/<id>/…), e.g. a tool's own DNS name pointing at the proxy. */
  hosts: ex(z.array(z.string().regex(/^[a-z0-9.-]+(:[0-9]{1,5})?$/, 'a lowercase host name, optionally with a port')).default([]), '[tickets.tools.example.com]'),
});

export const grantSchema = z.strictObject({
  nhi: ex(slug, 'deploy-agent'),
  tool: ex(slug, 'tickets'),
  actions: ex(z.array(z.string().min(1)).min(1), '[list_tickets, create_ticket]'),
  /** The change (PR, ticket) that approved this grant. */
  change_ref: ex(z.string().optional(), 'PR-482'),
  expires: isoDate.optional(),
});

export const policySchema = z.strictObject({
  /** Cedar policy files, relative to the working directory of the process (docs/architecture.md, "Policy (Cedar)"). */
  files: ex(z.array(z.string().min(1)).default([]), '[policies/base.cedar]'),
  /** Add `permit(principal, action, resource)`, so that what a token's scope allows is allowed unless a `forbid` says otherwise; false: Cedar's default deny. */
  base_permit: ex(z.boolean().default(true), 'true'),
});

/** What a received event may ask for (src/signals), or `ignore`. */
const signalActionOrIgnore = ex(z.enum(['revoke_tokens', 'step_down', 'step_up', 'disable', 'block', 'ignore']), 'revoke_tokens');

export const signalsSchema = z.strictObject({
  /** The token profile a step-down or step-up falls back to; default: the least dangerous profile. */
  fallback_tier: ex(slug.optional(), 'read'),
  transmitter: z
    .strictObject({
      enabled: z.boolean().default(true),
      /** RFC 8935 push: attempts per SET before it becomes a dead letter. */
      push_max_attempts: ex(z.number().int().min(1).max(50).default(6), '6'),
      /** First retry delay; doubled after each failure (exponential backoff), up to push_max_backoff. */
      push_initial_backoff: duration.prefault('1s'),
      push_max_backoff: duration.prefault('5m'),
      /** Whole-request timeout of one push. */
      push_timeout: duration.prefault('10s'),
      /** RFC 8936 long poll: the longest a poll without returnImmediately waits for events. */
      poll_max_wait: duration.prefault('30s'),
      /** A polled, unacknowledged SET is handed out again after this long. */
      poll_redelivery: duration.prefault('30s'),
    })
    .prefault({}),
  receivers: z
    .array(
      z.strictObject({
        name: slug,
        issuer: z.string().min(1),
        jwks_uri: httpUrl.optional(),
        jwks: jwks.optional(),
        audience: z.string().min(1),
        delivery: ex(z.enum(['push', 'poll']), 'push'),
        poll_url: httpUrl.optional(),
        poll_interval: duration.prefault(5),
        /** Credential presented when polling, or expected on push (`Authorization`). */
        authorization: secretRef.optional(),
        /** Pinned signature algorithms (asymmetric only). */
        algorithms: ex(z.array(z.enum(['ES256', 'ES384', 'ES512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'EdDSA'])).min(1)
          .default(['ES256', 'RS256', 'PS256', 'EdDSA']), '[ES256]'),
        /** A SET whose `iat` is older than this is refused (and its jti is remembered this long). */
        max_age: duration.prefault('10m'),
        /** Maps `email` and `iss_sub` subjects to NHIs (an `opaque` id is the NHI id itself). */
        subjects: z
          .array(
            z.union([
              z.strictObject({ email: ex(z.string().min(3), 'deploy-bot@example.com'), nhi: z.string().min(1) }),
              z.strictObject({ iss: z.string().min(1), sub: z.string().min(1), nhi: z.string().min(1) }),
            ]),
          )
          .default([]),
        /** Event type URI → action; replaces the default mapping for that event type. */
        event_actions: z.record(z.string().min(1), signalActionOrIgnore).default({}),
      }),
    )
    .default([]),
});

export const proxySchema = z.strictObject({
  /** Allowed clock difference for `exp`/`nbf`/`iat` of access tokens and DPoP proofs. */
  clock_skew: duration.prefault(5),
  /** Access tokens whose signature verified, remembered (by their text) until the JWKS changes; their claims are checked on every call. */
  token_cache_size: z.number().int().min(0).max(1_000_000).default(10_000),
  /** At most this many (NHI, tool) rate-limit buckets are kept; the least recently used go first. */
  rate_limit_keys: z.number().int().min(100).max(1_000_000).default(100_000),
  /**
   * The broker's JWKS (`{issuer}/oauth/jwks` of a broker instance) for a proxy-only instance
   * (`serve --role proxy`): access tokens are verified against it, fetched over HTTPS (plain
   * http only to a loopback address outside production), cached, refetched at most once per
   * cooldown for an unknown `kid`, size-capped and with a timeout. Such an instance holds no
   * key-encryption key (`keys.kek` is not read) and signs nothing. Unset: the keys in the store,
   * decrypted with the KEK.
   */
  jwks_uri: ex(z.string().url().optional(), 'https://mandate.example.com/oauth/jwks'),
  /**
   * How long a call waits for its audit record (`tool.call_started`) to be committed before it is
   * forwarded. Past it, or at once while the audit log's store is failing or its queue is full,
   * the call is refused with 503 and never reaches the tool: no audit, no request.
   */
  audit_timeout: duration.prefault(5),
});


const severity = ex(z.enum(['low', 'medium', 'high', 'critical']), 'high');

/** Detections, risk scores, playbooks and programme metrics (src/governance). */
export const governanceSchema = z.strictObject({
  /** Run the detections (bus consumers), the periodic sweep and the playbooks on roles all and signals. */
  enabled: ex(z.boolean().default(true), 'true'),
  /** How often the inventory sweep (stale credentials, programme snapshot, score playbooks) runs. */
  sweep_interval: duration.prefault('1h'),
  minting_rate: z
    .strictObject({
      /** Days of history per hour-of-day bucket. */
      baseline_days: ex(z.number().int().min(2).max(90).default(14), '14'),
      /** Nothing fires until the NHI has been seen minting for this many days (cold start). */
      min_baseline_days: ex(z.number().int().min(1).max(60).default(3), '3'),
      /** A spike needs at least this many tokens in the hour. */
      min_count: ex(z.number().int().min(1).default(10), '10'),
      /** Fire above median + mad_factor × MAD (scaled, at least 1) of the same hour on earlier days. */
      mad_factor: ex(z.number().positive().default(5), '5'),
      /** Also fire on minting at an hour of day the NHI never used in the baseline. */
      new_hour: ex(z.boolean().default(true), 'true'),
    })
    .prefault({}),
  unusual_scope: z
    .strictObject({
      /** New scopes are only unusual once the NHI has been minting for this long. */
      learning_period: duration.prefault('1d'),
    })
    .prefault({}),
  out_of_bounds: z
    .strictObject({
      /** A run of this many denials (broker and proxy) within `window` is a finding. */
      denials: ex(z.number().int().min(1).default(5), '5'),
      window: duration.prefault('10m'),
    })
    .prefault({}),
  stolen_token: z
    .strictObject({
      /** How long a token's keys and client addresses are remembered (about the longest token TTL). */
      window: duration.prefault('1h'),
    })
    .prefault({}),
  credentials: z
    .strictObject({
      /** A private key or static secret not rotated for this long is stale. */
      rotation_max_age: duration.prefault('90d'),
      /** Any stored credential older than this is long-lived (federation mints short-lived tokens instead). */
      max_lifetime: duration.prefault('24h'),
    })
    .prefault({}),
  risk: z
    .strictObject({
      /** A grant unused for this long is standing privilege. */
      unused_grant_after: duration.prefault('30d'),
      /** Denials in this window count towards the score. */
      denial_window: duration.prefault('24h'),
    })
    .prefault({}),
  /** Every playbook's actions are only recorded, not taken. */
  dry_run: ex(z.boolean().default(false), 'true'),
  playbooks: z
    .array(
      z.strictObject({
        name: slug,
        /** Trigger on a finding of this detection (any when absent) at or above min_severity. */
        detection: ex(z.enum(['minting_rate', 'new_grant', 'unusual_scope', 'out_of_bounds', 'stolen_token', 'shadow_agent', 'stale_credential']).optional(), 'stolen_token'),
        min_severity: severity.optional(),
        /** Or trigger when an NHI's risk score reaches this. */
        score_at_least: ex(z.number().int().min(1).max(100).optional(), '80'),
        action: ex(z.enum(['revoke_tokens', 'step_down', 'step_up', 'disable']), 'revoke_tokens'),
        /** Record what would be done, do nothing. */
        dry_run: ex(z.boolean().default(false), 'true'),
      }),
    )
    .default([]),
});

/** Requests Mandate makes to URLs it is given (src/core/outbound.ts; docs/security.md, "Outbound requests (SSRF)"). */
export const outboundSchema = z.strictObject({
  /**
   * Non-public addresses Mandate may connect to: an issuer, a JWKS, an SSF receiver or
   * transmitter, or the broker (`proxy.jwks_uri`) on the internal network. Loopback, private,
   * CGNAT, link-local and other special-purpose ranges are refused unless named here; the
   * unspecified, multicast and broadcast addresses and cloud metadata services never are.
   * For local development with issuers on 127.0.0.1: `[127.0.0.0/8, "::1/128"]`.
   */
  allow_private_cidrs: ex(
    z.array(z.string().superRefine((v, ctx) => {
      const problem = cidrProblem(v);
      if (problem) ctx.addIssue({ code: 'custom', message: `${problem} (write a CIDR such as 10.20.0.0/16 or fd12:3456::/48)` });
    })).default([]),
    '[10.20.0.0/16, "fd12:3456::/48"]',
  ),
});

export const adminSchema = z.strictObject({
  /** Print a one-time admin credential when the store holds no active one: on the first start, and on a start after the last was revoked or ended (kept only as a hash). */
  bootstrap: z.boolean().default(true),
});

export const uiSchema = z.strictObject({
  /** Serve the operator's console at /ui/ (on every role that serves the admin API). */
  enabled: ex(z.boolean().default(true), 'true'),
  /** A console session unused this long is signed out. */
  idle_timeout: duration.prefault('15m'),
  /** A console session ends this long after sign-in, however active. */
  max_session: duration.prefault('12h'),
});

export const configSchema = z
  .strictObject({
    server: serverSchema.prefault({}),
    store: storeSchema.prefault({}),
    bus: busSchema.prefault({}),
    keys: keysSchema.prefault({}),
    tokens: tokensSchema.prefault({}),
    trust: z.array(trustSchema).default([]),
    nhis: z.array(nhiSchema).default([]),
    tools: z.array(toolSchema).default([]),
    grants: z.array(grantSchema).default([]),
    policy: policySchema.prefault({}),
    signals: signalsSchema.prefault({}),
    proxy: proxySchema.prefault({}),
    governance: governanceSchema.prefault({}),
    admin: adminSchema.prefault({}),
    ui: uiSchema.prefault({}),
    outbound: outboundSchema.prefault({}),
    log: z.strictObject({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') }).prefault({}),
  })
  .superRefine((c, ctx) => crossCheck(c, ctx));

export type MandateConfigInput = z.input<typeof configSchema>;
export type MandateConfig = z.output<typeof configSchema>;
export type ToolConfig = MandateConfig['tools'][number];
export type ActionConfig = ToolConfig['actions'][number];
export type NhiConfig = MandateConfig['nhis'][number];
export type CredentialConfig = NhiConfig['credentials'][number];
export type GrantConfig = MandateConfig['grants'][number];
export type TrustConfig = MandateConfig['trust'][number];
export type TokenProfile = MandateConfig['tokens']['profiles'][number];

/** Rules that span keys: references resolve, names are unique, nothing pins only an issuer. */
function crossCheck(c: MandateConfig, ctx: z.RefinementCtx): void {
  const issue = (path: (string | number)[], message: string) => ctx.addIssue({ code: 'custom', path, message });
  const unique = <T>(items: T[], key: (t: T) => string, at: string[]) => {
    const seen = new Set<string>();
    items.forEach((t, i) => {
      const k = key(t);
      if (seen.has(k)) issue([...at, i], `duplicate "${k}": each must be unique`);
      seen.add(k);
    });
  };
  unique(c.tokens.profiles, (p) => p.name, ['tokens', 'profiles']);
  unique(c.trust, (t) => t.name, ['trust']);
  unique(c.nhis, (n) => n.id, ['nhis']);
  unique(c.tools, (t) => t.id, ['tools']);
  unique(c.tools.flatMap((t) => t.hosts.map((h) => ({ h }))), (x) => x.h, ['tools']);

  const tiers = new Set(c.tokens.profiles.map((p) => p.name));
  c.tokens.profiles.forEach((p, i) => {
    if (p.ttl > c.tokens.max_ttl) issue(['tokens', 'profiles', i, 'ttl'], `longer than tokens.max_ttl (${c.tokens.max_ttl}s)`);
    if (p.ttl <= 0) issue(['tokens', 'profiles', i, 'ttl'], 'must be positive');
  });

  if (c.store.driver === 'postgres' && !c.store.postgres_url) issue(['store', 'postgres_url'], 'required when store.driver is postgres');
  if (c.store.postgres_url && !SECRET_REF_RE.test(c.store.postgres_url)) {
    try {
      const u = new URL(c.store.postgres_url);
      // node-postgres also reads connection parameters from the query string (?password=…).
      if (u.password || u.searchParams.has('password')) issue(['store', 'postgres_url'], 'an inline password is refused: write env:NAME or file:PATH for the whole URL');
    } catch {
      issue(['store', 'postgres_url'], 'expected a postgres:// URL or a secret reference');
    }
  }
  if (c.server.tls && c.server.tls.client_auth !== 'none' && !c.server.tls.client_ca) {
    issue(['server', 'tls', 'client_ca'], 'required when client_auth is optional or required');
  }

  unique(c.signals.receivers, (r) => r.name, ['signals', 'receivers']);
  c.signals.receivers.forEach((r, i) => {
    if ((r.jwks === undefined) === (r.jwks_uri === undefined)) issue(['signals', 'receivers', i], 'give exactly one of jwks or jwks_uri');
    if (r.delivery === 'poll' && !r.poll_url) issue(['signals', 'receivers', i, 'poll_url'], 'required when delivery is poll');
  });
  if (c.signals.fallback_tier !== undefined && !c.tokens.profiles.some((p) => p.name === c.signals.fallback_tier)) {
    issue(['signals', 'fallback_tier'], `no token profile named "${c.signals.fallback_tier}"`);
  }

  unique(c.governance.playbooks, (p) => p.name, ['governance', 'playbooks']);
  c.governance.playbooks.forEach((p, i) => {
    const onFinding = p.detection !== undefined || p.min_severity !== undefined;
    if (onFinding === (p.score_at_least !== undefined)) {
      issue(['governance', 'playbooks', i], 'give a finding trigger (detection and/or min_severity) or score_at_least, not both');
    }
  });

  const trustNames = new Set(c.trust.map((t) => t.name));
  c.trust.forEach((t, i) => {
    // RFC 8725 §3.8 and the GitHub/GitLab OIDC guidance: an issuer alone admits every
    // workload it serves (every repository on github.com), so a condition is required.
    if (Object.keys(t.claims).length === 0) {
      issue(['trust', i, 'claims'], 'a trust entry that pins only the issuer is refused: add at least one claim condition, e.g. { repository_owner: acme }');
    }
    const sources = [t.discovery, t.jwks_uri !== undefined, t.jwks !== undefined].filter(Boolean).length;
    if (sources !== 1) issue(['trust', i], 'give exactly one key source: discovery: true, jwks_uri or jwks');
  });

  // A URL Mandate fetches whose host is a literal address that the outbound guard would refuse
  // fails here, naming the key, rather than at the first fetch (host names are checked when resolved).
  const outboundIssue = (path: (string | number)[], url: string | undefined) => {
    if (url === undefined) return;
    try {
      outboundUrlCheck(c.outbound.allow_private_cidrs).parse(url);
    } catch (err) {
      if (err instanceof OutboundError) issue(path, err.message);
      else throw err;
    }
  };
  c.trust.forEach((t, i) => {
    outboundIssue(['trust', i, 'jwks_uri'], t.jwks_uri);
    if (t.discovery) outboundIssue(['trust', i, 'issuer'], t.issuer);
  });
  c.nhis.forEach((n, i) => n.credentials.forEach((cr, j) => {
    if (cr.type === 'private_key_jwt') outboundIssue(['nhis', i, 'credentials', j, 'jwks_uri'], cr.jwks_uri);
  }));
  c.signals.receivers.forEach((r, i) => {
    outboundIssue(['signals', 'receivers', i, 'jwks_uri'], r.jwks_uri);
    outboundIssue(['signals', 'receivers', i, 'poll_url'], r.poll_url);
  });
  outboundIssue(['proxy', 'jwks_uri'], c.proxy.jwks_uri);

  c.nhis.forEach((n, i) => {
    n.credentials.forEach((cr, j) => {
      if (cr.type === 'federated' && !trustNames.has(cr.trust)) {
        issue(['nhis', i, 'credentials', j, 'trust'], `no trust entry named "${cr.trust}"`);
      }
      if (cr.type === 'private_key_jwt' && (cr.jwks === undefined) === (cr.jwks_uri === undefined)) {
        issue(['nhis', i, 'credentials', j], 'give exactly one of jwks or jwks_uri');
      }
    });
  });

  const tools = new Map(c.tools.map((t) => [t.id, t]));
  c.tools.forEach((t, i) => {
    const names = new Set<string>();
    t.actions.forEach((a, j) => {
      // Names are compared case-insensitively so that look-alikes by case cannot coexist.
      const key = a.name.toLowerCase();
      if (names.has(key)) issue(['tools', i, 'actions', j, 'name'], `duplicate action "${a.name}" (names are compared ignoring case)`);
      names.add(key);
      if (!tiers.has(a.tier)) issue(['tools', i, 'actions', j, 'tier'], `no token profile named "${a.tier}" (have: ${[...tiers].join(', ')})`);
      if (t.kind === 'http' && (!a.method || !a.path)) issue(['tools', i, 'actions', j], 'an http action needs method and path');
      if (t.kind === 'mcp' && (a.method || a.path)) issue(['tools', i, 'actions', j], 'an mcp action is named by its MCP tool name: remove method and path');
    });
    if (t.credential && (t.credential.type === 'header' || t.credential.type === 'query') && !t.credential.name) {
      issue(['tools', i, 'credential', 'name'], `required for type ${t.credential.type}`);
    }
    if (t.credential?.type === 'basic' && !t.credential.username) issue(['tools', i, 'credential', 'username'], 'required for type basic');
  });

  const nhiIds = new Set(c.nhis.map((n) => n.id));
  c.grants.forEach((g, i) => {
    if (!nhiIds.has(g.nhi)) issue(['grants', i, 'nhi'], `no NHI with id "${g.nhi}"`);
    const tool = tools.get(g.tool);
    if (!tool) {
      issue(['grants', i, 'tool'], `no tool with id "${g.tool}"`);
      return;
    }
    const actions = new Set(tool.actions.map((a) => a.name));
    g.actions.forEach((a, j) => {
      if (a !== '*' && !actions.has(a)) issue(['grants', i, 'actions', j], `tool "${g.tool}" has no action "${a}"`);
    });
  });
  c.nhis.forEach((n, i) =>
    n.may_act.forEach((a, j) => {
      if (!nhiIds.has(a)) issue(['nhis', i, 'may_act', j], `no NHI with id "${a}"`);
    }),
  );
}

/**
 * The checks of OutboundGuard.parse that hold in every mode: userinfo and literal addresses.
 * (Whether plain http is allowed depends on NODE_ENV, which the schema does not see: it is
 * checked when the URL is fetched.)
 */
function outboundUrlCheck(allowPrivateCidrs: readonly string[]): OutboundGuard {
  const valid = allowPrivateCidrs.every((c) => cidrProblem(c) === undefined);
  return new OutboundGuard({ allowPrivateCidrs: valid ? allowPrivateCidrs : [], allowLoopbackHttp: true });
}
