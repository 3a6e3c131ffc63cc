import { AdminClient } from '../admin-client.js';
import { parse, str } from '../args.js';
import { adminNoun } from '../admin-noun.js';
import type { Ctx } from '../command.js';
import { CliError, EXIT } from '../errors.js';

const REVOKE_OPTIONS = { jti: { type: 'string' }, nhi: { type: 'string' }, tool: { type: 'string' }, all: { type: 'boolean' }, reason: { type: 'string' } } as const;

/**
 * `mandate revoke …` and `mandate kill …` (engaging a kill switch): exactly one target, a token
 * (revoke only), an NHI, a tool or everything.
 */
export async function revokeOrKill(noun: 'revoke' | 'kill', argv: string[], ctx: Ctx): Promise<number> {
  const { values: v } = parse(argv, REVOKE_OPTIONS);
  const targets = (['jti', 'nhi', 'tool', 'all'] as const).filter((k) => v[k] !== undefined);
  if (targets.length !== 1 || (noun === 'kill' && targets[0] === 'jti')) {
    throw new CliError(noun === 'revoke' ? 'give exactly one of --jti, --nhi, --tool, --all' : 'give exactly one of --nhi, --tool, --all', EXIT.usage);
  }
  const t = targets[0]!;
  const reason = str(v, 'reason');
  if (noun === 'kill' && !reason) throw new CliError('--reason is required for kill', EXIT.usage);
  const body = noun === 'revoke'
    ? { ...(t === 'all' ? { all: true } : { [t]: v[t] }), ...(reason ? { reason } : {}) }
    : { scope: t === 'all' ? 'global' : t, ...(t === 'all' ? {} : { target: v[t] }), reason };
  const client = AdminClient.from({ url: str(v, 'url'), token: str(v, 'token') }, ctx.env);
  const r = (await client.call('POST', noun === 'revoke' ? '/revocations' : '/kill', { body })) as Record<string, unknown>;
  ctx.out.log(v.json === true ? JSON.stringify(r, null, 2) : noun === 'revoke' ? `revoked ${JSON.stringify(r.revoked)}` : `kill switch ${String(r.id)} engaged (${t === 'all' ? 'global' : `${t} ${String(v[t])}`}); lift with: mandate kill lift ${String(r.id)}`);
  return EXIT.ok;
}

/** `mandate revoke`: revoke issued tokens now, everywhere. */
export const revoke = adminNoun({
  name: 'revoke',
  summary: "revoke issued tokens: one, an NHI's, a tool's or all (over the admin API)",
  usage: '  mandate revoke --jti JTI | --nhi ID | --tool ID | --all  [--reason R]',
  verbs: {},
  otherwise: (argv, ctx) => revokeOrKill('revoke', argv, ctx),
});
