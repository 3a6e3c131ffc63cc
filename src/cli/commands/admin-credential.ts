import { parseDuration } from '../../core/index.js';
import { adminNoun, type Invocation } from '../admin-noun.js';
import type { Options } from '../args.js';
import { CliError, EXIT } from '../errors.js';
import { isoTime, table } from '../format.js';

export const ADMIN_CREDENTIAL_USAGE = `Admin credentials (over the admin API; role admin):
  mandate admin-credential list
  mandate admin-credential create --name N --role admin|approver|viewer [--expires WHEN | --expires-in DURATION]
                                               the token is printed once, never again
  mandate admin-credential expire ID --expires WHEN | --expires-in DURATION [--force]
  mandate admin-credential revoke ID [--reason R] [--force]
                                               refused in force everywhere at once; --force: also the last active admin credential
  WHEN: YYYY-MM-DD (the end of that day, UTC) or an RFC 3339 date-time (2026-01-31T18:00:00Z); DURATION: 90m, 8h, 30d`;

const OPTIONS: Options = {
  name: { type: 'string' }, role: { type: 'string' }, expires: { type: 'string' }, 'expires-in': { type: 'string' },
  reason: { type: 'string' }, force: { type: 'boolean' },
};

interface CredentialJson { id: string; name: string; role: string; status: string; created_at: number; expires_at: number | null; revoked_at: number | null; last_used_at: number | null }

/** `--expires WHEN` as the API takes it, or `--expires-in 8h` turned into that instant now. */
function expiresOf(i: Invocation, required: boolean): string | undefined {
  const expires = i.s('expires');
  const expiresIn = i.s('expires-in');
  if (expires !== undefined && expiresIn !== undefined) throw new CliError('give --expires or --expires-in, not both', EXIT.usage);
  if (expiresIn !== undefined) {
    const s = parseDuration(expiresIn);
    if (s === undefined || s <= 0) throw new CliError(`--expires-in must be a duration such as 90m, 8h or 30d, not "${expiresIn}"`, EXIT.usage);
    return new Date(Date.now() + s * 1000).toISOString();
  }
  if (expires === undefined && required) throw new CliError('give --expires WHEN or --expires-in DURATION', EXIT.usage);
  return expires;
}

const row = (c: CredentialJson) => ({
  ...c, created_at: isoTime(c.created_at), expires_at: isoTime(c.expires_at), revoked_at: isoTime(c.revoked_at), last_used_at: isoTime(c.last_used_at),
});

/** `"admin-credential <verb>" needs a credential id`, or the id, encoded for a path. */
function id({ verb, positionals }: Invocation): string {
  if (!positionals[0]) throw new CliError(`"admin-credential ${String(verb)}" needs a credential id (see: mandate admin-credential list)`, EXIT.usage);
  return encodeURIComponent(positionals[0]);
}

/** `mandate admin-credential list|create|expire|revoke`. */
export const adminCredential = adminNoun({
  name: 'admin-credential',
  summary: 'the credentials of the admin API and console: list, create, expire, revoke',
  usage: ADMIN_CREDENTIAL_USAGE,
  options: OPTIONS,
  unknownUsage: ADMIN_CREDENTIAL_USAGE,
  verbs: {
    list: async ({ client, print }) => {
      const r = (await client.call('GET', '/admin-credentials')) as { credentials: CredentialJson[] };
      print(r, () => table(r.credentials.map(row), ['id', 'name', 'role', 'status', 'created_at', 'expires_at', 'revoked_at', 'last_used_at']));
      return EXIT.ok;
    },
    create: async (i) => {
      const name = i.s('name');
      const role = i.s('role');
      if (!name || !role) throw new CliError('--name and --role are required for "admin-credential create"', EXIT.usage);
      const expires = expiresOf(i, false);
      const r = (await i.client.call('POST', '/admin-credentials', { body: { name, role, ...(expires ? { expires } : {}) } })) as CredentialJson & { token: string };
      i.print(r, () => `created ${r.role} credential ${r.id}${r.expires_at ? `, valid until ${isoTime(r.expires_at)}` : ''} (shown once):\n  ${r.token}`);
      return EXIT.ok;
    },
    expire: async (i) => {
      const path = `/admin-credentials/${id(i)}/expire`;
      const r = (await i.client.call('POST', path, { body: { expires: expiresOf(i, true), ...(i.values.force ? { force: true } : {}) } })) as CredentialJson;
      i.print(r, () => `${r.id} (${r.name}, ${r.role}) ends at ${isoTime(r.expires_at)}`);
      return EXIT.ok;
    },
    revoke: async (i) => {
      const path = `/admin-credentials/${id(i)}/revoke`;
      const reason = i.s('reason');
      const r = (await i.client.call('POST', path, { body: { ...(reason ? { reason } : {}), ...(i.values.force ? { force: true } : {}) } })) as CredentialJson & { already_revoked: boolean };
      i.print(r, () => (r.already_revoked ? `${r.id} (${r.name}) was already revoked` : `revoked ${r.id} (${r.name}, ${r.role}): refused from now on, on every instance`));
      return EXIT.ok;
    },
  },
});
