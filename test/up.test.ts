import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { MandateClient, ApprovalRequiredError } from '../src/client/index.js';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { once } from 'node:events';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const BIN = resolve('bin/mandate.js');

/**
 * What `npm start` runs (`mandate up`), as a separate process in an empty directory: the
 * all-in-one with the demo answers /healthz, prints the one-time credential and shuts down
 * cleanly on SIGTERM.
 */
describe('mandate up (npm start)', () => {
  it('serves the demo, answers /healthz and shuts down on SIGTERM', async (t) => {
    const cwd = mkdtempSync(join(tmpdir(), 'mandate-up-'));
    const child = spawn(process.execPath, [BIN, 'up', '--port', '0'], { cwd, env: { ...process.env, MANDATE_LOG_LEVEL: 'warn', NODE_ENV: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    t.after(() => child.kill('SIGKILL'));
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const url = await new Promise<string>((resolveUrl, reject) => {
      const timer = setTimeout(() => reject(new Error(`no start within 20 s: ${stdout} ${stderr}`)), 20_000);
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
        const m = /Mandate is up at (http:\/\/[^\s]+)/.exec(stdout);
        if (m) {
          clearTimeout(timer);
          resolveUrl(m[1]!);
        }
      });
      child.once('exit', (code) => reject(new Error(`exited ${code}: ${stderr}`)));
    });
    const h = await fetch(`${url}/healthz`);
    assert.equal(h.status, 200);
    assert.match(stderr, /One-time admin credential/);
    assert.match(stderr, /INSECURE: signing keys are encrypted with a DEVELOPMENT key-encryption key/);
    const token = /MANDATE_TOKEN=(mdt\.\S+)/.exec(stderr)?.[1];
    assert.ok(token);
    const nhis = await fetch(`${url}/admin/v1/nhis`, { headers: { authorization: `Bearer ${token}` } });
    const body = (await nhis.json()) as { nhis: { id: string }[] };
    assert.deepEqual(body.nhis.map((n) => n.id), ['demo-agent']);
    const tools = await fetch(`${url}/admin/v1/tools`, { headers: { authorization: `Bearer ${token}` } });
    assert.deepEqual(((await tools.json()) as { tools: { id: string }[] }).tools.map((x) => x.id).sort(), ['docs', 'drill', 'drill-other', 'tickets']);
    assert.match(stdout, /Try this next/);
    assert.equal(statSync(join(cwd, '.mandate', 'demo-agent.private.jwk')).mode & 0o077, 0, 'agent key readable by its owner only');
    // The README's SDK example: the demo agent gets a DPoP-bound token with its key file.
    const client = new MandateClient({
      issuer: url, clientId: 'demo-agent',
      auth: { type: 'private_key_jwt', privateJwk: JSON.parse(readFileSync(join(cwd, '.mandate', 'demo-agent.private.jwk'), 'utf8')) },
    });
    const tok = await client.getToken('tickets', ['list_tickets']);
    assert.equal(tok.tokenType, 'DPoP');
    await assert.rejects(client.getToken('tickets', ['delete_ticket'], { argsDigest: client.argsDigest({ params: { id: '1' }, query: {} }) }), ApprovalRequiredError);
    // The README's proxy examples: an HTTP tool call and an MCP client, through /tools/<tool>.
    const res = await client.fetch('tickets', ['list_tickets'], '/tickets');
    assert.equal(res.status, 200);
    assert.ok(((await res.json()) as { count: number }).count >= 1);
    assert.equal((await client.fetch('tickets', ['list_tickets'], '/admin')).status, 403);
    const transport = new StreamableHTTPClientTransport(new URL(`${url}/tools/docs`), {
      fetch: (u, init) => client.fetch('docs', ['search_docs'], String(u), init as RequestInit),
    });
    const mcp = new Client({ name: 'my-agent', version: '1.0.0' });
    await mcp.connect(transport);
    assert.deepEqual((await mcp.listTools()).tools.map((x) => x.name), ['search_docs']);
    await mcp.close();
    child.kill('SIGTERM');
    const [code] = (await once(child, 'exit')) as [number];
    assert.equal(code, 0);
    assert.equal(stdout.includes(token), false, 'the credential goes to stderr once, not into the log stream');
  });
});
