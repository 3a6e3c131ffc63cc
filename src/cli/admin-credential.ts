import { parseArgs } from 'node:util';
import { parseDuration } from '../core/index.js';
import { AdminClient, CliError, EXIT } from './admin-client.js';
import { isoTime, table } from './format.js';

type Out = { log: (s: string) => void; err: (s: string) => void };

export const ADMIN_CREDENTIAL_USAGE = `Admin credentials (over the admin API; role admin):
  mandate admin-credential list
  mandate admin-credential create --name N --role admin|approver|viewer [--expires WHEN | --expires-in DURATION]
                                               the token is printed once, never again
  mandate admin-credential expire ID --expires WHEN | --expires-in DURATION [--force]
  mandate admin-credential revoke ID [--reason R] [--force]
                                               refused in force everywhere at once; --force: also the last active admin credential
  WHEN: YYYY-MM-DD (the end of that day, UTC) or an RFC 3339 date-time (2026-01-31T18:00:00Z); DURATION: 90m, 8h, 30d`;

const OPTIONS = {
  json: { type: 'boolean' }, url: { type: 'string' }, token: { type: 'string' }, config: { type: 'string' },
  name: { type: 'string' }, role: { type: 'string' }, expires: { type: 'string' }, 'expires-in': { type: 'string' },
  reason: { type: 'string' }, force: { type: 'boolean' },
} as const;

interface CredentialJson { id: string; name: string; role: string; status: string; created_at: number; expires_at: number | null; revoked_at: number | null; last_used_at: number | null }

/** `--expires WHEN` as the API takes it, or `--expires-in 8h` turned into that instant now. */
function expiresOf(v: { expires?: string; 'expires-in'?: string }, required: boolean): string | undefined {
  if (v.expires !== undefined && v['expires-in'] !== undefined) throw new CliError('give --expires or --expires-in, not both', EXIT.usage);
  if (v['expires-in'] !== undefined) {
    const s = parseDuration(v['expires-in']);
    if (s === undefined || s <= 0) throw new CliError(`--expires-in must be a duration such as 90m, 8h or 30d, not "${v['expires-in']}"`, EXIT.usage);
    return new Date(Date.now() + s * 1000).toISOString();
  }
  if (v.expires === undefined && required) throw new CliError('give --expires WHEN or --expires-in DURATION', EXIT.usage);
  return v.expires;
}

const row = (c: CredentialJson) => ({
  ...c, created_at: isoTime(c.created_at), expires_at: isoTime(c.expires_at), revoked_at: isoTime(c.revoked_at), last_used_at: isoTime(c.last_used_at),
});

/** `mandate admin-credential list|create|expire|revoke`. */
export async function adminCredentialCommand(verb: string | undefined, argv: string[], out: Out, env: NodeJS.ProcessEnv): Promise<number> {
  const { values: v, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  const client = new AdminClient(v.url ?? env.MANDATE_URL ?? 'http://127.0.0.1:8080', v.token ?? env.MANDATE_TOKEN);
  const print = (body: unknown, human: () => string) => out.log(v.json ? JSON.stringify(body, null, 2) : human());
  const id = () => {
    if (!positionals[0]) throw new CliError(`"admin-credential ${verb}" needs a credential id (see: mandate admin-credential list)`, EXIT.usage);
    return encodeURIComponent(positionals[0]);
  };
  switch (verb) {
    case 'list': {
      const r = (await client.call('GET', '/admin-credentials')) as { credentials: CredentialJson[] };
      print(r, () => table(r.credentials.map(row), ['id', 'name', 'role', 'status', 'created_at', 'expires_at', 'revoked_at', 'last_used_at']));
      return EXIT.ok;
    }
    case 'create': {
      if (!v.name || !v.role) throw new CliError('--name and --role are required for "admin-credential create"', EXIT.usage);
      const expires = expiresOf(v, false);
      const r = (await client.call('POST', '/admin-credentials', { body: { name: v.name, role: v.role, ...(expires ? { expires } : {}) } })) as CredentialJson & { token: string };
      print(r, () => `created ${r.role} credential ${r.id}${r.expires_at ? `, valid until ${isoTime(r.expires_at)}` : ''} (shown once):\n  ${r.token}`);
      return EXIT.ok;
    }
    case 'expire': {
      const path = `/admin-credentials/${id()}/expire`;
      const r = (await client.call('POST', path, { body: { expires: expiresOf(v, true), ...(v.force ? { force: true } : {}) } })) as CredentialJson;
      print(r, () => `${r.id} (${r.name}, ${r.role}) ends at ${isoTime(r.expires_at)}`);
      return EXIT.ok;
    }
    case 'revoke': {
      const path = `/admin-credentials/${id()}/revoke`;
      const r = (await client.call('POST', path, { body: { ...(v.reason ? { reason: v.reason } : {}), ...(v.force ? { force: true } : {}) } })) as CredentialJson & { already_revoked: boolean };
      print(r, () => (r.already_revoked ? `${r.id} (${r.name}) was already revoked` : `revoked ${r.id} (${r.name}, ${r.role}): refused from now on, on every instance`));
      return EXIT.ok;
    }
    default:
      throw new CliError(`unknown command "admin-credential${verb ? ` ${verb}` : ''}"\n\n${ADMIN_CREDENTIAL_USAGE}`, EXIT.usage);
  }
}
