import { KeyObject } from 'node:crypto';
import { signCompactAsync, type AccessTokenClaims } from '../jose/index.js';
import type { KeyManager } from '../keys/index.js';

/**
 * Signs RFC 9068 access tokens (`typ: at+jwt`) with the current signing key, through a
 * node:crypto KeyObject made once per key, on libuv's thread pool (jose's jws.ts: WebCrypto's
 * path costs more per call; the event loop stays free for the next request).
 */
export class TokenSigner {
  /** The signing key as a node:crypto KeyObject, per CryptoKey (a rotation brings a new one). */
  private readonly signers = new WeakMap<object, KeyObject>();

  constructor(private readonly keys: KeyManager) {}

  sign(claims: AccessTokenClaims): Promise<string> {
    const { kid, alg, key } = this.keys.signingKey();
    let k = this.signers.get(key);
    if (!k) {
      k = KeyObject.from(key as Parameters<typeof KeyObject.from>[0]);
      this.signers.set(key, k);
    }
    return signCompactAsync({ typ: 'at+jwt', alg, kid }, claims as unknown as Record<string, unknown>, alg, k);
  }
}
