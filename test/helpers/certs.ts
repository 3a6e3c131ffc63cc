/**
 * Throw-away X.509 material for mTLS tests (RFC 8705), generated at test time with the
 * openssl CLI into a fresh temp dir: nothing is committed. EC P-256 keys, one-day validity.
 *
 *   ca ──┬── server  (subjectAltName IP:127.0.0.1, DNS:localhost; serverAuth)
 *        └── client  (clientAuth)
 *   rogueCa ── rogueClient  (a different, untrusted CA)
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

const OPENSSL = '/usr/bin/openssl';

export interface CertFiles {
  /** PEM file paths. */
  certPath: string;
  keyPath: string;
  /** PEM contents. */
  cert: string;
  key: string;
}

export interface TestPki {
  dir: string;
  ca: CertFiles;
  server: CertFiles;
  client: CertFiles;
  rogueCa: CertFiles;
  /** Signed by rogueCa, which the server does not trust. */
  rogueClient: CertFiles;
  /** Removes the temp dir. */
  cleanup(): void;
}

function openssl(args: string[], cwd: string): void {
  execFileSync(OPENSSL, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, OPENSSL_CONF: '/dev/null' } });
}

function ecKey(dir: string, name: string): string {
  const path = join(dir, `${name}.key`);
  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', path], dir);
  return path;
}

function files(certPath: string, keyPath: string): CertFiles {
  return { certPath, keyPath, cert: readFileSync(certPath, 'utf8'), key: readFileSync(keyPath, 'utf8') };
}

/** A self-signed CA; its own config file, so the system openssl.cnf plays no part. */
function makeCa(dir: string, name: string, cn: string): CertFiles {
  const keyPath = ecKey(dir, name);
  const cnf = join(dir, `${name}.cnf`);
  writeFileSync(cnf, [
    '[req]', 'distinguished_name = dn', 'prompt = no', 'x509_extensions = v3_ca',
    '[dn]', `CN = ${cn}`,
    '[v3_ca]', 'basicConstraints = critical,CA:TRUE', 'keyUsage = critical,keyCertSign,cRLSign', 'subjectKeyIdentifier = hash',
    '',
  ].join('\n'));
  const certPath = join(dir, `${name}.pem`);
  openssl(['req', '-x509', '-new', '-sha256', '-days', '2', '-key', keyPath, '-config', cnf, '-out', certPath], dir);
  return files(certPath, keyPath);
}

/** A leaf certificate signed by `ca`, with the given v3 extensions. */
function makeLeaf(dir: string, name: string, cn: string, ca: CertFiles, extensions: string[]): CertFiles {
  const keyPath = ecKey(dir, name);
  const reqCnf = join(dir, `${name}.req.cnf`);
  writeFileSync(reqCnf, ['[req]', 'distinguished_name = dn', 'prompt = no', '[dn]', `CN = ${cn}`, ''].join('\n'));
  const csr = join(dir, `${name}.csr`);
  openssl(['req', '-new', '-sha256', '-key', keyPath, '-config', reqCnf, '-out', csr], dir);
  const extFile = join(dir, `${name}.ext`);
  writeFileSync(extFile, [
    'basicConstraints = critical,CA:FALSE', 'subjectKeyIdentifier = hash', 'authorityKeyIdentifier = keyid,issuer', ...extensions, '',
  ].join('\n'));
  const certPath = join(dir, `${name}.pem`);
  openssl([
    'x509', '-req', '-sha256', '-days', '2', '-in', csr, '-CA', ca.certPath, '-CAkey', ca.keyPath,
    '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-extfile', extFile, '-out', certPath,
  ], dir);
  return files(certPath, keyPath);
}

/** Generates the whole set into a new temp dir (a few hundred ms). */
export function generateTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'mandate-pki-'));
  try {
    const ca = makeCa(dir, 'ca', 'Mandate Test CA');
    const server = makeLeaf(dir, 'server', 'localhost', ca, [
      'keyUsage = critical,digitalSignature', 'extendedKeyUsage = serverAuth', 'subjectAltName = IP:127.0.0.1,DNS:localhost',
    ]);
    const client = makeLeaf(dir, 'client', 'deployer', ca, ['keyUsage = critical,digitalSignature', 'extendedKeyUsage = clientAuth']);
    const rogueCa = makeCa(dir, 'rogue-ca', 'Untrusted Test CA');
    const rogueClient = makeLeaf(dir, 'rogue-client', 'deployer', rogueCa, ['keyUsage = critical,digitalSignature', 'extendedKeyUsage = clientAuth']);
    return { dir, ca, server, client, rogueCa, rogueClient, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
