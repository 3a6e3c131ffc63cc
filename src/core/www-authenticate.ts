/**
 * `WWW-Authenticate` challenges (RFC 9110 §11.6.1), written in one place: a scheme, then its
 * auth-params as quoted strings. A value never carries `"` or `\` (they are dropped rather than
 * escaped, so that no client's parser can read a parameter boundary into a description), and
 * parameters whose value is undefined are left out. Several challenges are joined with ", ".
 *
 *   challenge('Bearer', { error: 'invalid_token', error_description: '…', resource_metadata: url })  // RFC 6750 §3, RFC 9728 §5.1
 *   challenge('DPoP', { error: 'use_dpop_nonce', algs: 'ES256 EdDSA' })                            // RFC 9449 §7.1, §8
 */
export function challenge(scheme: 'Bearer' | 'DPoP' | 'Basic', params: Readonly<Record<string, string | undefined>>): string {
  const parts = Object.entries(params)
    .filter((e): e is [string, string] => e[1] !== undefined)
    .map(([k, v]) => `${k}="${v.replace(/["\\]/g, '')}"`);
  return parts.length ? `${scheme} ${parts.join(', ')}` : scheme;
}

/** More than one challenge in one header (RFC 9110 §11.6.1: a comma-separated list). */
export function challenges(...list: string[]): string {
  return list.join(', ');
}
