import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { sha256b64u } from './tokens.js';

/** RFC 8705 §3.1: x5t#S256 of the verified client certificate, when TLS client auth is on. */
export function peerCertThumbprint(req: IncomingMessage): string | undefined {
  const sock = req.socket as TLSSocket;
  if (typeof sock.getPeerCertificate !== 'function' || !sock.authorized) return undefined;
  const cert = sock.getPeerCertificate();
  return cert?.raw ? sha256b64u(cert.raw) : undefined;
}
