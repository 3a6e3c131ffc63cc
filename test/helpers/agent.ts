import { randomUUID } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair, calculateJwkThumbprint, type CryptoKey, type JWK } from 'jose';

/** An NHI with a private_key_jwt key, as the tests' agents are. */
export interface TestAgent {
  id: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
  /** The private JWK, for the SDK's `auth: { type: 'private_key_jwt', privateJwk }`. */
  privateJwk: JWK;
}

export interface TestDpopKey {
  privateKey: CryptoKey;
  publicJwk: JWK;
  jkt: string;
}

export const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

export async function testAgent(id: string): Promise<TestAgent> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const kid = `${id}-1`;
  return {
    id, privateKey,
    publicJwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' },
    privateJwk: { ...(await exportJWK(privateKey)), kid, alg: 'ES256', use: 'sig' },
  };
}

/** The config entry of an agent NHI with its private_key_jwt key. */
export function agentNhi(a: TestAgent, extra: Record<string, unknown> = {}) {
  return {
    id: a.id, class: 'agent' as const, owner: 'team@example.com', system: 'tests', tier: 'write' as const,
    credentials: [{ type: 'private_key_jwt' as const, jwks: { keys: [a.publicJwk as Record<string, unknown>] } }],
    ...extra,
  };
}

/** A client assertion per RFC 7523 §3, signed by the agent. */
export async function clientAssertion(a: TestAgent, aud: string): Promise<string> {
  return new SignJWT({ jti: randomUUID() })
    .setProtectedHeader({ alg: 'ES256', kid: a.publicJwk.kid! })
    .setIssuer(a.id).setSubject(a.id).setAudience(aud).setIssuedAt().setExpirationTime('60s')
    .sign(a.privateKey);
}

export async function testDpopKey(): Promise<TestDpopKey> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const publicJwk = await exportJWK(publicKey);
  return { privateKey, publicJwk, jkt: await calculateJwkThumbprint(publicJwk) };
}

/** A DPoP proof per RFC 9449 §4.2; `extra` adds or overrides claims (`ath`, `nonce`, `iat`). */
export async function dpopProof(key: TestDpopKey, htm: string, htu: string, extra: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT({ jti: randomUUID(), htm, htu, iat: Math.floor(Date.now() / 1000), ...extra })
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: key.publicJwk })
    .sign(key.privateKey);
}

/**
 * client_credentials with private_key_jwt at the broker; with `dpop`, the token is bound to
 * that key. Returns the token response (throws on an error response). `at`: where to reach the
 * broker when that is not its public issuer URL (one instance of many behind one issuer name);
 * the assertion's `aud` and the proof's `htu` stay the issuer's.
 */
export async function clientCredentialsToken(
  issuer: string, a: TestAgent, resource: string, scope: string, dpop?: TestDpopKey, extra: Record<string, string> = {}, at = issuer,
): Promise<{ access_token: string; token_type: string; scope: string; [k: string]: unknown }> {
  const endpoint = `${issuer}/oauth/token`;
  const body = new URLSearchParams({
    grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: await clientAssertion(a, issuer),
    resource, scope, ...extra,
  });
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
  if (dpop) headers.dpop = await dpopProof(dpop, 'POST', endpoint);
  const res = await fetch(`${at}/oauth/token`, { method: 'POST', headers, body });
  const json = (await res.json()) as Record<string, unknown>;
  if (res.status !== 200) throw new Error(`token request failed: ${res.status} ${JSON.stringify(json)}`);
  return json as never;
}
