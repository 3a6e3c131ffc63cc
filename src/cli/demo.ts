import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { exportJWK, generateKeyPair } from 'jose';
import { buildConfig, type MandateConfig, type MandateConfigInput } from '../core/index.js';
import { startDemoHttpTool, startDemoMcpTool } from '../demo/index.js';

export interface Demo {
  config: Readonly<MandateConfig>;
  /** The environment the app must resolve the demo's secret references from. */
  env: NodeJS.ProcessEnv;
  tryThis(url: string): string;
  close(): Promise<void>;
}

/**
 * The demo behind `mandate up` with no config: a "tickets" HTTP API and a "docs" MCP server
 * served locally, one agent with a private_key_jwt key kept under .mandate/, and grants.
 * The tools' real credentials are random per run and live only in this process's memory
 * (referenced as env:DEMO_*), so the agent never sees them: the proxy injects them.
 */
export async function startDemo(opts: { env: NodeJS.ProcessEnv; dataDir: string }): Promise<Demo> {
  mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
  const ticketsToken = randomBytes(24).toString('base64url');
  const docsToken = randomBytes(24).toString('base64url');
  const http = await startDemoHttpTool({ expectedCredential: ticketsToken });
  const mcp = await startDemoMcpTool({ expectedCredential: docsToken });
  const agentKeyPath = join(opts.dataDir, 'demo-agent.private.jwk');
  const publicJwk = await demoAgentKey(agentKeyPath);

  const input: MandateConfigInput = {
    store: { driver: 'sqlite', sqlite_path: join(opts.dataDir, 'mandate.db') },
    bus: { driver: 'memory' },
    nhis: [
      {
        id: 'demo-agent', class: 'agent', owner: 'you@example.com', system: 'mandate-demo', environment: 'dev', tier: 'write',
        description: 'The demo agent: authenticates with private_key_jwt (key in .mandate/demo-agent.private.jwk).',
        credentials: [{ type: 'private_key_jwt', jwks: { keys: [publicJwk] } }],
      },
    ],
    tools: [
      {
        id: 'tickets', kind: 'http', upstream: http.url, description: 'Demo ticketing API',
        credential: { type: 'bearer', value: 'env:DEMO_TICKETS_TOKEN' },
        actions: [
          { name: 'list_tickets', method: 'GET', path: '/tickets', tier: 'read' },
          { name: 'get_ticket', method: 'GET', path: '/tickets/{id}', tier: 'read' },
          { name: 'create_ticket', method: 'POST', path: '/tickets', tier: 'write' },
          { name: 'delete_ticket', method: 'DELETE', path: '/tickets/{id}', tier: 'destructive' },
        ],
      },
      {
        id: 'docs', kind: 'mcp', upstream: mcp.url, description: 'Demo documentation MCP server',
        credential: { type: 'bearer', value: 'env:DEMO_DOCS_TOKEN' },
        actions: [
          { name: 'search_docs', tier: 'read' },
          { name: 'create_page', tier: 'write' },
          { name: 'delete_space', tier: 'destructive' },
        ],
      },
      // For `mandate drill token-theft` (docs/drill.md): two harmless tools the drill's own NHI calls
      // (a read-only GET), so the drill needs nothing declared by hand against the demo.
      ...(['drill', 'drill-other'] as const).map((id) => ({
        id, kind: 'http' as const, upstream: http.url, description: 'Token-theft drill target (read-only)',
        credential: { type: 'bearer' as const, value: 'env:DEMO_TICKETS_TOKEN' },
        actions: [{ name: 'ping', method: 'GET' as const, path: '/tickets', tier: 'read' }],
      })),
    ],
    governance: {
      // A stolen token (a bound token replayed with another key, without its proof, at another tool) revokes the NHI's tokens.
      playbooks: [{ name: 'contain-stolen-tokens', detection: 'stolen_token', action: 'revoke_tokens' }],
    },
    grants: [
      { nhi: 'demo-agent', tool: 'tickets', actions: ['list_tickets', 'get_ticket', 'create_ticket', 'delete_ticket'], change_ref: 'demo' },
      { nhi: 'demo-agent', tool: 'docs', actions: ['search_docs', 'create_page', 'delete_space'], change_ref: 'demo' },
    ],
  };
  const env = { ...opts.env, DEMO_TICKETS_TOKEN: ticketsToken, DEMO_DOCS_TOKEN: docsToken };
  const config = buildConfig(input, { env, source: 'demo' });
  return {
    config,
    env,
    tryThis: (url) =>
      [
        '',
        `Mandate is up at ${url} (demo: SQLite in ${opts.dataDir}/, in-process bus)`,
        '',
        'Try this next:',
        `  open ${url}/ui/                          # the console: sign in with the admin credential above`,
        `  curl ${url}/healthz                      # 200 when the process answers`,
        `  curl ${url}/readyz                       # store and bus reachable`,
        `  curl ${url}/oauth/jwks                   # the broker's signing keys`,
        `  export MANDATE_URL=${url} MANDATE_TOKEN=<the one-time credential printed above>`,
        '  npx mandate nhi list                     # the inventory: demo-agent',
        '  npx mandate nhi show demo-agent          # its credentials and grants',
        '  npx mandate tool list                    # tickets (HTTP), docs (MCP), drill tools',
        '  npx mandate drill token-theft            # a stolen token: detected, revoked, refused (docs/drill.md)',
        '  npx mandate audit verify                 # the hash-chained audit log',
        `  curl -i ${url}/tools/tickets/tickets     # the proxy: 401 without a token (README: calling tools)`,
        `  curl ${url}/.well-known/oauth-protected-resource/tools/tickets   # where agents get tokens (RFC 9728)`,
        '',
        `Demo tools (their real credentials stay inside Mandate): tickets ${http.url}, docs ${mcp.url}`,
        'Stop with Ctrl-C. Start from scratch: rm -rf .mandate',
        '',
      ].join('\n'),
    close: async () => {
      await Promise.all([http.close(), mcp.close()]);
    },
  };
}

/** The demo agent's key pair, made once and kept (mode 0600) so restarts keep the same identity. */
async function demoAgentKey(path: string): Promise<Record<string, unknown>> {
  if (existsSync(path)) {
    const { d: _private, ...pub } = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    return pub;
  }
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = { ...(await exportJWK(privateKey)), alg: 'ES256', use: 'sig', kid: `demo-agent-${randomBytes(4).toString('hex')}` };
  writeFileSync(path, JSON.stringify(jwk, null, 2), { mode: 0o600 });
  const { d: _private, ...pub } = jwk;
  return pub;
}
