import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createPrivateKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import fc from 'fast-check';
import { findPrivateKeys } from '../../src/governance/lint/private-keys.js';
import { scanFiles, type Finding } from '../../src/governance/lint/index.js';
import { sarifStructureProblems } from './sarif-check.js';

// Every key here is generated when the test runs: this repository commits none (its own
// `mandate lint --scan` test holds it to that).

const BIN = resolve('bin/mandate.js');

/** A private key as a tool wrote it. `text` is the whole output (openssl ecparam writes an EC PARAMETERS block first). */
interface Sample {
  name: string;
  text: string;
  /** The line of the key's BEGIN in `text`. */
  line: number;
  keyType: string;
  encrypted: boolean;
}

const PASSPHRASE = 'correct horse battery staple';

/** node:crypto: every key type it generates, in each form it exports (PKCS#1/SEC1, PKCS#8, encrypted PKCS#8, legacy PEM encryption). */
function nodeSamples(): Sample[] {
  const out: Sample[] = [];
  const add = (name: string, key: KeyObject, keyType: string, forms: ('pkcs1' | 'sec1' | 'pkcs8')[]) => {
    for (const type of forms) {
      out.push({ name: `node ${name} ${type}`, text: key.export({ type, format: 'pem' }) as string, line: 1, keyType, encrypted: false });
    }
    out.push({ name: `node ${name} encrypted pkcs8`, text: key.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: PASSPHRASE }) as string, line: 1, keyType: 'encrypted PKCS#8', encrypted: true });
    const legacy = forms.find((f) => f !== 'pkcs8');
    if (legacy) {
      // PKCS#1/SEC1 with a cipher: OpenSSL's legacy encryption, Proc-Type/DEK-Info headers.
      out.push({ name: `node ${name} ${legacy} Proc-Type`, text: key.export({ type: legacy, format: 'pem', cipher: 'aes-128-cbc', passphrase: PASSPHRASE }) as string, line: 1, keyType: 'encrypted with AES-128-CBC', encrypted: true });
    }
  };
  add('rsa', generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey, 'RSA 2048-bit', ['pkcs1', 'pkcs8']);
  add('rsa-pss', generateKeyPairSync('rsa-pss', { modulusLength: 2048 }).privateKey, 'RSA-PSS 2048-bit', ['pkcs8']);
  for (const [curve, name] of [['P-256', 'P-256'], ['P-384', 'P-384'], ['P-521', 'P-521'], ['secp256k1', 'secp256k1']] as const) {
    add(`ec ${curve}`, generateKeyPairSync('ec', { namedCurve: curve }).privateKey, `EC ${name}`, ['sec1', 'pkcs8']);
  }
  add('ed25519', generateKeyPairSync('ed25519').privateKey, 'Ed25519', ['pkcs8']);
  add('ed448', generateKeyPairSync('ed448').privateKey, 'Ed448', ['pkcs8']);
  add('x25519', generateKeyPairSync('x25519').privateKey, 'X25519', ['pkcs8']);
  add('x448', generateKeyPairSync('x448').privateKey, 'X448', ['pkcs8']);
  add('dsa', generateKeyPairSync('dsa', { modulusLength: 2048, divisorLength: 256 }).privateKey, 'DSA 2048-bit', ['pkcs8']);
  // @types/node has no overload for 'dh', which node:crypto generates.
  const generateDh = generateKeyPairSync as unknown as (type: 'dh', options: { group: string }) => { privateKey: KeyObject };
  add('dh', generateDh('dh', { group: 'modp14' }).privateKey, 'DH', ['pkcs8']);
  return out;
}

/** Whether a binary is on this machine (the samples it makes are skipped, and said so, when not). */
function has(bin: string, ...args: string[]): boolean {
  return !spawnSync(bin, args, { stdio: 'ignore' }).error;
}
const HAS = { openssl: has('openssl', 'version'), sshKeygen: has('ssh-keygen', '-?'), gpg: has('gpg', '--version') && has('gpgconf', '--version') };

function run(bin: string, args: string[], env?: NodeJS.ProcessEnv): string {
  return execFileSync(bin, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...(env ? { env: { ...process.env, ...env } } : {}) });
}

/** The outputs of the tools people generate keys with: openssl, ssh-keygen, gpg. */
function toolSamples(dir: string): Sample[] {
  const out: Sample[] = [];
  const file = (name: string) => join(dir, name);
  if (HAS.openssl) {
    run('openssl', ['ecparam', '-genkey', '-name', 'prime256v1', '-out', file('ec.pem')]);
    out.push({ name: 'openssl ecparam -genkey (EC PARAMETERS first)', text: readFileSync(file('ec.pem'), 'utf8'), line: 4, keyType: 'EC P-256', encrypted: false });
    run('openssl', ['ecparam', '-genkey', '-noout', '-name', 'secp384r1', '-out', file('ec384.pem')]);
    out.push({ name: 'openssl ecparam -genkey -noout P-384', text: readFileSync(file('ec384.pem'), 'utf8'), line: 1, keyType: 'EC P-384', encrypted: false });
    out.push({ name: 'openssl genrsa', text: run('openssl', ['genrsa', '2048']), line: 1, keyType: 'RSA 2048-bit', encrypted: false });
    out.push({ name: 'openssl genrsa -traditional', text: run('openssl', ['genrsa', '-traditional', '2048']), line: 1, keyType: 'RSA 2048-bit', encrypted: false });
    out.push({ name: 'openssl genrsa -aes256 -traditional (Proc-Type)', text: run('openssl', ['genrsa', '-traditional', '-aes256', '-passout', `pass:${PASSPHRASE}`, '2048']), line: 1, keyType: 'encrypted with AES-256-CBC', encrypted: true });
    out.push({ name: 'openssl genrsa -aes256 (encrypted PKCS#8)', text: run('openssl', ['genrsa', '-aes256', '-passout', `pass:${PASSPHRASE}`, '2048']), line: 1, keyType: 'encrypted PKCS#8', encrypted: true });
    run('openssl', ['genpkey', '-algorithm', 'ed25519', '-out', file('ed.pem')]);
    out.push({ name: 'openssl genpkey ed25519', text: readFileSync(file('ed.pem'), 'utf8'), line: 1, keyType: 'Ed25519', encrypted: false });
    out.push({ name: 'openssl pkcs8 -v1 PBE-SHA1-3DES (PKCS#12 PBE)', text: run('openssl', ['pkcs8', '-topk8', '-in', file('ed.pem'), '-v1', 'PBE-SHA1-3DES', '-passout', `pass:${PASSPHRASE}`]), line: 1, keyType: 'encrypted PKCS#8', encrypted: true });
    run('openssl', ['dsaparam', '-genkey', '-out', file('dsa.pem'), '2048']);
    out.push({ name: 'openssl pkey -traditional (DSA PRIVATE KEY)', text: run('openssl', ['pkey', '-in', file('dsa.pem'), '-traditional']), line: 1, keyType: 'DSA 2048-bit', encrypted: false });
  }
  if (HAS.sshKeygen) {
    const ssh = (name: string, type: string[], passphrase: string, extra: string[], keyType: string, encrypted: boolean) => {
      run('ssh-keygen', ['-q', ...type, '-N', passphrase, ...extra, '-C', 'lint-test', '-f', file(name)]);
      out.push({ name: `ssh-keygen ${type.join(' ')}${passphrase ? ' with a passphrase' : ''} ${extra.join(' ')}`.trim(), text: readFileSync(file(name), 'utf8'), line: 1, keyType, encrypted });
    };
    ssh('id_ed25519', ['-t', 'ed25519'], '', [], 'OpenSSH ssh-ed25519', false);
    ssh('id_rsa', ['-t', 'rsa', '-b', '2048'], '', [], 'OpenSSH ssh-rsa', false);
    ssh('id_ecdsa', ['-t', 'ecdsa', '-b', '384'], '', [], 'OpenSSH ecdsa-sha2-nistp384', false);
    ssh('id_ed25519_enc', ['-t', 'ed25519'], PASSPHRASE, [], 'OpenSSH ssh-ed25519, encrypted with aes256-ctr', true);
    ssh('id_gcm', ['-t', 'ed25519'], PASSPHRASE, ['-Z', 'aes256-gcm@openssh.com'], 'OpenSSH ssh-ed25519, encrypted with aes256-gcm@openssh.com', true);
    ssh('id_chacha', ['-t', 'ecdsa'], PASSPHRASE, ['-Z', 'chacha20-poly1305@openssh.com'], 'OpenSSH ecdsa-sha2-nistp256, encrypted with chacha20-poly1305@openssh.com', true);
    // -m PEM: ssh-keygen's other format, OpenSSL's traditional PEM.
    ssh('id_rsa_pem', ['-t', 'rsa', '-b', '2048'], '', ['-m', 'PEM'], 'RSA 2048-bit', false);
  }
  if (HAS.gpg) {
    const home = file('gnupg');
    mkdirSync(home, { mode: 0o700 });
    const env = { GNUPGHOME: home };
    const gpg = (...args: string[]) => run('gpg', ['--batch', '--pinentry-mode', 'loopback', ...args], env);
    try {
      gpg('--passphrase', '', '--quick-gen-key', 'Lint Test <plain@example.com>', 'ed25519', 'default', 'never');
      gpg('--passphrase', PASSPHRASE, '--quick-gen-key', 'Lint Test <protected@example.com>', 'ed25519', 'default', 'never');
      out.push({ name: 'gpg --export-secret-keys --armor', text: gpg('--passphrase', '', '--armor', '--export-secret-keys', 'plain@example.com'), line: 1, keyType: 'OpenPGP v4', encrypted: false });
      out.push({ name: 'gpg --export-secret-keys --armor with a passphrase', text: gpg('--passphrase', PASSPHRASE, '--armor', '--export-secret-keys', 'protected@example.com'), line: 1, keyType: 'OpenPGP v4, encrypted', encrypted: true });
    } finally {
      // The agent gpg started for this home, and only it.
      spawnSync('gpgconf', ['--kill', 'gpg-agent'], { env: { ...process.env, ...env }, stdio: 'ignore' });
    }
  }
  return out;
}

/** The key block of a sample (its BEGIN to its END), without what a tool wrote around it. */
function keyBlock(sample: Sample): string {
  const m = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----[\s\S]*?-----END [A-Z0-9 ]*-----/.exec(sample.text);
  assert.ok(m, sample.name);
  return m[0];
}

/** The base64 of a key block, for checking that no output carries any of it. */
function secretLines(block: string): string[] {
  return block.split(/\r?\n/).filter((l) => l.length >= 16 && /^[A-Za-z0-9+/=]+$/.test(l));
}

const CONTAINERS = ['raw', 'yaml |', 'yaml |-', 'yaml >', 'json', 'json in json', 'xml', 'html', 'one line', 'comment', 'slash comment', 'block comment', 'quote', 'js concatenation', 'python literal', 'json array'] as const;
type Container = (typeof CONTAINERS)[number];
/**
 * Containers that put decoration on each line: their base64 is wrapped at a multiple of 4, as
 * every tool wraps (64, 76), so that no line is a lone `+` or `/`, which reads as an operator.
 */
const DECORATED: readonly Container[] = ['comment', 'slash comment', 'block comment', 'quote', 'js concatenation', 'python literal', 'json array'];

interface Layout {
  container: Container;
  indent: number;
  tabs: boolean;
  eol: '\n' | '\r\n' | '\r';
  trailing: string;
  /** Base64 line width; 0 keeps the tool's. */
  wrap: number;
  /** Unrelated lines before the key. */
  before: number;
}

/**
 * A key block laid out as it gets committed, and where its BEGIN is (1-based line and column).
 * The block's base64 is re-wrapped; its headers (Proc-Type, DEK-Info, armor headers), the blank
 * line after them and an armor checksum are kept as they are.
 */
function layOut(block: string, l: Layout): { text: string; line: number; column: number } {
  const lines = block.split(/\r?\n/);
  const begin = lines[0]!;
  const end = lines[lines.length - 1]!;
  const inner = lines.slice(1, -1);
  const headers: string[] = [];
  while (inner.length && /^[A-Za-z-]+: /.test(inner[0]!)) headers.push(inner.shift()!);
  const blank = inner[0] === '';
  if (blank) inner.shift();
  const checksum = inner.length > 1 && /^=[A-Za-z0-9+/]{4}$/.test(inner[inner.length - 1]!) ? inner.pop()! : undefined;
  const data = inner.join('');
  const wrapped = l.wrap > 0 ? (data.match(new RegExp(`.{1,${l.wrap}}`, 'g')) ?? []) : inner;
  const keyLines = [begin, ...headers, ...(blank ? [''] : []), ...wrapped, ...(checksum ? [checksum] : []), end];

  const pad = l.tabs && !l.container.startsWith('yaml') ? '\t'.repeat(l.indent) : ' '.repeat(l.indent);
  const pre = Array.from({ length: l.before }, (_, i) => `# unrelated line ${i}: not a key`);
  const out = (body: string[], line: number, column: number) => ({ text: [...pre, ...body, ''].join(l.eol), line: l.before + line, column });
  switch (l.container) {
    case 'raw':
      return out(keyLines.map((k) => `${pad}${k}${l.trailing}`), 1, pad.length + 1);
    case 'yaml |':
    case 'yaml |-':
    case 'yaml >': {
      const yamlPad = ' '.repeat(Math.max(1, l.indent));
      return out([`tls:`, `  key: ${l.container.slice(5)}`, ...keyLines.map((k) => (k === '' ? '' : `  ${yamlPad}${k}${l.trailing}`))], 3, yamlPad.length + 3);
    }
    case 'json': {
      const line = `${pad}{"id":"signer","private_key":${JSON.stringify(keyLines.join(l.eol) + l.eol)}}`;
      return out([line], 1, line.indexOf('-----BEGIN') + 1);
    }
    case 'json in json': {
      const line = `${pad}${JSON.stringify({ config: JSON.stringify({ private_key: keyLines.join('\n') }) })}`;
      return out([line], 1, line.indexOf('-----BEGIN') + 1);
    }
    case 'xml':
      return out([`${pad}<key>${keyLines.join(`&#13;${l.eol}`)}</key>`], 1, pad.length + 6);
    case 'html':
      return out([`${pad}<pre>${keyLines.join('<br>')}</pre>`], 1, pad.length + 6);
    case 'json array': {
      // The lines of a key as a JSON array of strings, on one line.
      const line = `${pad}{"private_key_lines":${JSON.stringify(keyLines)}}`;
      return out([line], 1, line.indexOf('-----BEGIN') + 1);
    }
    case 'one line': {
      // A key pasted into one line, its line breaks turned into spaces (an env variable).
      // Only a block without headers survives it: RFC 1421 headers end at a line break.
      if (headers.length > 0 || blank || checksum) return layOut(block, { ...l, container: 'raw' });
      return out([`${pad}SIGNING_KEY=${keyLines.join(' ')}${l.trailing}`], 1, pad.length + 13);
    }
    case 'comment':
      return out(keyLines.map((k) => `${pad}# ${k}${l.trailing}`), 1, pad.length + 3);
    case 'slash comment':
      return out(keyLines.map((k) => `${pad}// ${k}${l.trailing}`), 1, pad.length + 4);
    case 'block comment':
      return out(['/**', ...keyLines.map((k) => `${pad} * ${k}${l.trailing}`), `${pad} */`], 2, pad.length + 4);
    case 'quote':
      return out(keyLines.map((k) => `${pad}> ${k}${l.trailing}`), 1, pad.length + 3);
    case 'js concatenation':
      return out(['const signingKey =', ...keyLines.map((k) => `${pad}"${k}\\n" +${l.trailing}`), `${pad}"";`], 2, pad.length + 2);
    case 'python literal':
      return out(['SIGNING_KEY = (', ...keyLines.map((k) => `${pad}"${k}\\n"${l.trailing}`), ')'], 2, pad.length + 2);
  }
}

const FIXED_LAYOUTS: { name: string; ext: string; layout: Layout }[] = [
  { name: 'as the tool wrote it', ext: 'pem', layout: { container: 'raw', indent: 0, tabs: false, eol: '\n', trailing: '', wrap: 0, before: 0 } },
  { name: 'CRLF', ext: 'key', layout: { container: 'raw', indent: 0, tabs: false, eol: '\r\n', trailing: '', wrap: 0, before: 2 } },
  { name: 'trailing spaces, tab-indented', ext: 'txt', layout: { container: 'raw', indent: 2, tabs: true, eol: '\n', trailing: '   ', wrap: 0, before: 1 } },
  { name: 'YAML |', ext: 'yaml', layout: { container: 'yaml |', indent: 4, tabs: false, eol: '\n', trailing: '', wrap: 0, before: 3 } },
  { name: 'YAML |-, CRLF', ext: 'yml', layout: { container: 'yaml |-', indent: 2, tabs: false, eol: '\r\n', trailing: '', wrap: 0, before: 0 } },
  { name: 'YAML >, rewrapped at 76', ext: 'yaml', layout: { container: 'yaml >', indent: 6, tabs: false, eol: '\n', trailing: ' ', wrap: 76, before: 1 } },
  { name: 'JSON string with \\n escapes', ext: 'json', layout: { container: 'json', indent: 0, tabs: false, eol: '\n', trailing: '', wrap: 0, before: 0 } },
  { name: 'JSON string with \\r\\n escapes', ext: 'json', layout: { container: 'json', indent: 2, tabs: false, eol: '\r\n', trailing: '', wrap: 0, before: 1 } },
  { name: 'JSON in a JSON string', ext: 'json', layout: { container: 'json in json', indent: 0, tabs: false, eol: '\n', trailing: '', wrap: 0, before: 0 } },
  { name: 'XML with &#13; references', ext: 'xml', layout: { container: 'xml', indent: 2, tabs: false, eol: '\n', trailing: '', wrap: 0, before: 1 } },
  { name: 'HTML with <br>', ext: 'html', layout: { container: 'html', indent: 0, tabs: false, eol: '\n', trailing: '', wrap: 0, before: 1 } },
  { name: 'JSON array of lines', ext: 'json', layout: { container: 'json array', indent: 2, tabs: false, eol: '\n', trailing: '', wrap: 64, before: 0 } },
  { name: 'one line, spaces for line breaks', ext: 'env', layout: { container: 'one line', indent: 0, tabs: false, eol: '\n', trailing: '', wrap: 0, before: 1 } },
  { name: 'shell comment', ext: 'sh', layout: { container: 'comment', indent: 0, tabs: false, eol: '\n', trailing: '', wrap: 64, before: 1 } },
  { name: '// comment', ext: 'go', layout: { container: 'slash comment', indent: 1, tabs: true, eol: '\n', trailing: '', wrap: 64, before: 1 } },
  { name: 'JSDoc block comment', ext: 'ts', layout: { container: 'block comment', indent: 0, tabs: false, eol: '\n', trailing: '', wrap: 64, before: 0 } },
  { name: 'Markdown quote', ext: 'md', layout: { container: 'quote', indent: 0, tabs: false, eol: '\n', trailing: '', wrap: 76, before: 2 } },
  { name: 'JavaScript string concatenation', ext: 'js', layout: { container: 'js concatenation', indent: 2, tabs: false, eol: '\n', trailing: '', wrap: 64, before: 0 } },
  { name: 'Python string literals', ext: 'py', layout: { container: 'python literal', indent: 4, tabs: false, eol: '\r\n', trailing: '', wrap: 64, before: 2 } },
  { name: 'one line, no file extension', ext: '', layout: { container: 'raw', indent: 0, tabs: false, eol: '\n', trailing: '', wrap: 100_000, before: 0 } },
];

/** Text that looks like a private key and is not one: never reported, by either rule. */
function lookAlikes(sample: Sample): Record<string, string> {
  return {
    'docs/pem-example.md': [
      '# Configuring the signing key', '', 'Put the key in `key.pem`:', '', '```',
      '-----BEGIN PRIVATE KEY-----', 'MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7...', '...', '-----END PRIVATE KEY-----', '```', '',
      'or, for an EC key, `-----BEGIN EC PRIVATE KEY-----` ... `-----END EC PRIVATE KEY-----`.', '',
    ].join('\n'),
    'docs/placeholder.yaml': 'tls:\n  key: |\n    -----BEGIN RSA PRIVATE KEY-----\n    <paste your key here>\n    -----END RSA PRIVATE KEY-----\n',
    'docs/public.pem': publicMaterial.publicPem,
    'docs/cert.pem': publicMaterial.certificate,
    'docs/public.json': JSON.stringify({ kid: 'k1', public_key: publicMaterial.publicPem, x5c: publicMaterial.certificate }),
    'docs/ssh.pub': publicMaterial.sshPublic,
    // A key's first line alone is not the key.
    'src/first-line.ts': `const prefix = "${secretLines(keyBlock(sample))[0]}";\n`,
    'src/parse.ts': "const BEGIN = '-----BEGIN PRIVATE KEY-----';\nconst END = '-----END PRIVATE KEY-----';\nexport const isPem = (s: string) => s.startsWith(BEGIN) && s.trimEnd().endsWith(END);\n",
  };
}

/** Public keys and a certificate, made when the test runs (a real X.509 certificate when openssl is here). */
function makePublicMaterial(dir: string): { publicPem: string; certificate: string; sshPublic: string } {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const publicPem = publicKey.export({ type: 'spki', format: 'pem' }) as string;
  let certificate = publicPem.replace(/PUBLIC KEY/g, 'CERTIFICATE');
  if (HAS.openssl) {
    writeFileSync(join(dir, 'cert-key.pem'), privateKey.export({ type: 'pkcs8', format: 'pem' }));
    certificate = run('openssl', ['req', '-x509', '-key', join(dir, 'cert-key.pem'), '-subj', '/CN=lint-test', '-days', '1']);
  }
  const sshPublic = HAS.sshKeygen ? readFileSync(join(dir, 'id_ed25519.pub'), 'utf8') : '';
  return { publicPem, certificate, sshPublic };
}

let publicMaterial: { publicPem: string; certificate: string; sshPublic: string };
let samples: Sample[];
let toolDir: string;
before(() => {
  toolDir = mkdtempSync(join(tmpdir(), 'mandate-lint-keys-'));
  samples = [...nodeSamples(), ...toolSamples(toolDir)];
  publicMaterial = makePublicMaterial(toolDir);
  const missing = Object.entries(HAS).filter(([, ok]) => !ok).map(([bin]) => bin);
  if (missing.length) console.log(`# lint-private-keys: ${missing.join(', ')} not installed; their samples are skipped`);
});
after(() => rmSync(toolDir, { recursive: true, force: true }));

describe('findPrivateKeys: every key type, every layout', () => {
  it('the samples are real keys (the oracle: OpenSSL or the tool itself made them)', () => {
    assert.ok(samples.length >= 30, `${samples.length} samples`);
    // OpenSSL reads all but the OpenSSH and OpenPGP formats (ssh-keygen and gpg made those).
    for (const s of samples.filter((x) => !x.keyType.startsWith('Open'))) {
      assert.doesNotThrow(() => createPrivateKey(s.encrypted ? { key: keyBlock(s), passphrase: PASSPHRASE } : keyBlock(s)), s.name);
    }
  });

  it('finds each key, as its tool wrote it, at its BEGIN line, and says what it is', () => {
    for (const s of samples) {
      const hits = findPrivateKeys(s.text);
      assert.equal(hits.length, 1, s.name);
      const [hit] = hits;
      assert.deepEqual({ line: hit!.line, column: hit!.column, keyType: hit!.keyType, encrypted: hit!.encrypted, encoding: hit!.encoding }, { line: s.line, column: 1, keyType: s.keyType, encrypted: s.encrypted, encoding: 'pem' }, s.name);
      assert.equal(hit!.endLine, s.text.split('\n').findIndex((l) => l.startsWith('-----END') && !l.includes('PARAMETERS')) + 1, s.name);
    }
  });

  it('finds each key in every committed layout (YAML block scalars, JSON escapes, CRLF, trailing spaces, XML, comments, string literals)', () => {
    for (const s of samples) {
      for (const { name, layout } of FIXED_LAYOUTS) {
        const { text, line, column } = layOut(keyBlock(s), layout);
        const hits = findPrivateKeys(text);
        assert.deepEqual(hits.map((h) => [h.line, h.column, h.keyType]), [[line, column, s.keyType]], `${s.name}, ${name}`);
      }
    }
  });

  it('finds a key base64-encoded once more (Kubernetes Secret, kubeconfig) and a bare base64 DER key (an env file)', () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const ed = generateKeyPairSync('ed25519').privateKey;
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    const pem = ec.export({ type: 'sec1', format: 'pem' }) as string;
    const secret = `apiVersion: v1\nkind: Secret\ntype: kubernetes.io/tls\ndata:\n  tls.crt: ${Buffer.from('not a key').toString('base64')}\n  tls.key: ${Buffer.from(pem).toString('base64')}\n`;
    assert.deepEqual(findPrivateKeys(secret).map((h) => [h.line, h.column, h.keyType, h.encoding, h.pemLabel]), [[6, 12, 'EC P-256', 'base64-pem', 'EC PRIVATE KEY']]);
    // `base64` wraps at 76 columns: the wrapped form is read across its line breaks.
    const wrapped = `key: |\n${Buffer.from(rsa.export({ type: 'pkcs8', format: 'pem' }) as string).toString('base64').match(/.{1,76}/g)!.map((l) => `  ${l}`).join('\r\n')}\r\n`;
    assert.deepEqual(findPrivateKeys(wrapped).map((h) => [h.line, h.column, h.keyType, h.encoding]), [[2, 3, 'RSA 2048-bit', 'base64-pem']]);
    const der = (k: KeyObject, type: 'pkcs8' | 'sec1') => (k.export({ type, format: 'der' }) as Buffer).toString('base64');
    const env = `# service\nJWT_SIGNING_KEY=${der(rsa, 'pkcs8')}\nED_KEY="${der(ed, 'pkcs8')}"\nEC_KEY: '${der(ec, 'sec1')}'\nENC=${(ed.export({ type: 'pkcs8', format: 'der', cipher: 'aes-256-cbc', passphrase: PASSPHRASE }) as Buffer).toString('base64')}\n`;
    assert.deepEqual(findPrivateKeys(env).map((h) => [h.line, h.column, h.keyType, h.encoding]), [
      [2, 17, 'RSA 2048-bit', 'base64-der'], [3, 9, 'Ed25519', 'base64-der'], [4, 10, 'EC P-256', 'base64-der'], [5, 5, 'encrypted PKCS#8', 'base64-der'],
    ]);
    // A public key as base64 DER, and the base64 of a public-key PEM, are not keys.
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    assert.deepEqual(findPrivateKeys(`PUB=${(publicKey.export({ type: 'spki', format: 'der' }) as Buffer).toString('base64')}\nPEM=${Buffer.from(publicKey.export({ type: 'spki', format: 'pem' }) as string).toString('base64')}\n`), []);
  });

  it('finds a private JSON Web Key (a private_key_jwt client\'s JWKS), not a public one', () => {
    const pairs = [
      generateKeyPairSync('rsa', { modulusLength: 2048 }), generateKeyPairSync('ec', { namedCurve: 'P-384' }),
      generateKeyPairSync('ed25519'), generateKeyPairSync('x448'),
    ];
    const jwks = { keys: pairs.map((p, i) => ({ kid: `k${i}`, use: 'sig', ...p.privateKey.export({ format: 'jwk' }) })) };
    const pretty = JSON.stringify(jwks, null, 2);
    const hits = findPrivateKeys(pretty);
    assert.deepEqual(hits.map((h) => [h.keyType, h.encoding]), [['RSA 2048-bit', 'jwk'], ['EC P-384', 'jwk'], ['Ed25519', 'jwk'], ['X448', 'jwk']]);
    // At each key's opening brace.
    const lines = pretty.split('\n');
    for (const h of hits) assert.equal(lines[h.line - 1]![h.column - 1], '{');
    assert.equal(findPrivateKeys(JSON.stringify(jwks)).length, 4);
    const publicJwks = { keys: pairs.map((p, i) => ({ kid: `k${i}`, ...p.publicKey.export({ format: 'jwk' }) })) };
    assert.deepEqual(findPrivateKeys(JSON.stringify(publicJwks, null, 2)), []);
    // Placeholders and another key's private part: createPrivateKey alone takes some of these
    // for an EC or RSA JWK; they are not keys.
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
    for (const [i, pub] of publicJwks.keys.entries()) {
      for (const d of ['...', 'REDACTED', '', 'AAAA', pairs[(i + 1) % pairs.length]!.privateKey.export({ format: 'jwk' }).d!]) {
        const rsaParts = pub.kty === 'RSA' ? { p: d, q: d, dp: d, dq: d, qi: d } : {};
        assert.deepEqual(findPrivateKeys(JSON.stringify({ ...pub, d, ...rsaParts })), [], `${pub.kty} d=${d.slice(0, 8)}`);
      }
    }
    assert.deepEqual(findPrivateKeys(JSON.stringify({ ...publicJwks.keys[0], d: other.d, p: other.p, q: other.q, dp: other.dp, dq: other.dq, qi: other.qi })), []);
  });

  it('several keys in one file are each found, once', () => {
    const a = samples.find((s) => s.name === 'node ec P-256 sec1')!;
    const b = samples.find((s) => s.name === 'node ed25519 encrypted pkcs8')!;
    const text = `first:\n${keyBlock(a)}\nsecond: ${JSON.stringify(keyBlock(b))}\nthird:\n${keyBlock(a).replace(/\n/g, '\r\n')}\n`;
    assert.deepEqual(findPrivateKeys(text).map((h) => [h.line, h.keyType]), [[2, 'EC P-256'], [7, 'encrypted PKCS#8'], [9, 'EC P-256']]);
  });

  it('look-alikes are not keys: placeholders, public keys, certificates, a key relabelled, a truncated key, a broken OpenSSH key', () => {
    const s = samples.find((x) => x.name === 'node rsa pkcs8')!;
    for (const [file, text] of Object.entries(lookAlikes(s))) assert.deepEqual(findPrivateKeys(text), [], file);
    const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const relabel = (pem: string, label: string) => pem.replace(/-----(BEGIN|END) [A-Z ]+-----/g, `-----$1 ${label}-----`);
    assert.deepEqual(findPrivateKeys(relabel(publicKey.export({ type: 'spki', format: 'pem' }) as string, 'PRIVATE KEY')), []);
    assert.deepEqual(findPrivateKeys(relabel(publicKey.export({ type: 'pkcs1', format: 'pem' }) as string, 'RSA PRIVATE KEY')), []);
    const block = keyBlock(s).split('\n');
    assert.deepEqual(findPrivateKeys([...block.slice(0, 6), block[block.length - 1]].join('\n')), [], 'truncated');
    const ssh = samples.find((x) => x.name === 'ssh-keygen -t ed25519');
    if (ssh) {
      // PROTOCOL.key: magic, "none", "none", "", 1, the public key, then the private section,
      // which opens with two equal check integers. Unequal, it is not what ssh-keygen writes.
      const der = Buffer.from(keyBlock(ssh).split('\n').slice(1, -1).join(''), 'base64');
      const publicKeyAt = 15 + 4 + 4 + 4 + 4 + 4 + 4;
      const checkint2 = publicKeyAt + 4 + der.readUInt32BE(publicKeyAt) + 4 + 4;
      assert.equal(der.readUInt32BE(checkint2 - 4), der.readUInt32BE(checkint2));
      der[checkint2] = der[checkint2]! ^ 0xff;
      assert.deepEqual(findPrivateKeys(`-----BEGIN OPENSSH PRIVATE KEY-----\n${der.toString('base64')}\n-----END OPENSSH PRIVATE KEY-----\n`), []);
    }
    // Legacy encryption headers over a body that is not whole cipher blocks.
    assert.deepEqual(findPrivateKeys(`-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,${'A'.repeat(32)}\n\n${randomBytes(100).toString('base64')}\n-----END RSA PRIVATE KEY-----\n`), []);
  });

  it('property: a real key in any layout (indentation, line ends, wrapping, container, trailing spaces) is always found, where it is', () => {
    const pool = samples.map((s) => ({ s, block: keyBlock(s) }));
    const layout = fc.record({
      container: fc.constantFrom(...CONTAINERS),
      indent: fc.integer({ min: 0, max: 16 }),
      tabs: fc.boolean(),
      eol: fc.constantFrom<Layout['eol']>('\n', '\r\n', '\r'),
      trailing: fc.constantFrom('', ' ', '  ', '\t', ' \t '),
      wrap: fc.integer({ min: 0, max: 200 }),
      before: fc.integer({ min: 0, max: 5 }),
    });
    fc.assert(
      fc.property(fc.integer({ min: 0, max: pool.length - 1 }), layout, (i, l) => {
        const { s, block } = pool[i]!;
        const wrap = DECORATED.includes(l.container) ? Math.max(4, l.wrap - (l.wrap % 4)) : l.wrap;
        const { text, line, column } = layOut(block, { ...l, wrap });
        const hits = findPrivateKeys(text);
        assert.deepEqual(hits.map((h) => [h.line, h.column, h.keyType]), [[line, column, s.keyType]]);
      }),
      { numRuns: 400 },
    );
  });

  it('property (differential, OpenSSL the oracle): a PEM block createPrivateKey reads is never missed, whatever its bytes', () => {
    // Each unencrypted sample OpenSSL reads, with bytes changed or appended: where OpenSSL still
    // reads the block as a private key, the detector reports it (its own shape checks refuse
    // nothing OpenSSL takes).
    const readable = samples.filter((x) => !x.encrypted && !x.keyType.startsWith('Open')).map((x) => {
      const lines = keyBlock(x).split('\n');
      return { label: lines[0]!.slice(11, -5), der: Buffer.from(lines.slice(1, -1).join(''), 'base64') };
    });
    const wrap = (label: string, der: Buffer) => `-----BEGIN ${label}-----\n${der.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END ${label}-----\n`;
    let accepted = 0;
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: readable.length - 1 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 3 }),
        fc.uint8Array({ maxLength: 8 }),
        (i, flips, tail) => {
          const { label, der } = readable[i]!;
          const changed = Buffer.concat([der, tail]);
          for (const [at, mask] of flips) changed[at % der.length] = changed[at % der.length]! ^ mask;
          const pem = wrap(label, changed);
          let reads = true;
          try {
            createPrivateKey(pem);
          } catch {
            reads = false;
          }
          if (reads) {
            accepted++;
            assert.equal(findPrivateKeys(pem).length, 1);
          }
        },
      ),
      { numRuns: 400 },
    );
    // The property was not vacuous: OpenSSL read some of the changed blocks.
    assert.ok(accepted > 20, `${accepted} changed blocks read by OpenSSL`);
  });

  it('property: random bytes under a private-key label are never a key', () => {
    const labels = ['PRIVATE KEY', 'RSA PRIVATE KEY', 'EC PRIVATE KEY', 'DSA PRIVATE KEY', 'ENCRYPTED PRIVATE KEY', 'OPENSSH PRIVATE KEY', 'PGP PRIVATE KEY BLOCK'];
    fc.assert(
      fc.property(fc.constantFrom(...labels), fc.uint8Array({ minLength: 0, maxLength: 3000 }), fc.boolean(), (label, bytes, seq) => {
        // With a DER SEQUENCE header that spans the bytes too, so OpenSSL's parsers are reached.
        const body = seq && bytes.length < 65536 ? Buffer.concat([Buffer.from([0x30, 0x82, bytes.length >> 8, bytes.length & 0xff]), bytes]) : Buffer.from(bytes);
        const b64 = body.toString('base64');
        const pem = `-----BEGIN ${label}-----\n${b64.match(/.{1,64}/g)?.join('\n') ?? ''}\n-----END ${label}-----\n`;
        assert.deepEqual(findPrivateKeys(pem), []);
        assert.deepEqual(findPrivateKeys(`KEY=${b64}\n`), []);
      }),
      { numRuns: 300 },
    );
  });

  it('hostile input ends: markers without ends, nested markers, one megabyte of base64, deep or unclosed JSON', () => {
    const begin = '-----BEGIN PRIVATE KEY-----\n';
    const inputs = [
      begin.repeat(40_000),
      `${begin.repeat(20_000)}-----END PRIVATE KEY-----\n`,
      `${`${begin}${'M'.repeat(64)}\n`.repeat(10_000)}-----END PRIVATE KEY-----\n`,
      'M'.repeat(1024 * 1024),
      `LS0tLS1CRUdJT${'A'.repeat(1024 * 1024)}`,
      `${'MIIB'.repeat(20)}\n`.repeat(12_000),
      `${'-----END PRIVATE KEY-----'.repeat(40_000)}`,
      '{"kty":"RSA",'.repeat(80_000),
      `${'{"kty":"EC","a":'.repeat(60_000)}1${'}'.repeat(60_000)}`,
      `{"kty":"OKP","x":"${'"'.repeat(500_000)}`,
    ];
    for (const text of inputs) assert.deepEqual(findPrivateKeys(text), []);
  });
});

describe('mandate lint --scan: committed-private-key', () => {
  let dir: string;
  const expected = new Map<string, { line: number; column: number; keyType: string }>();
  const secrets: string[] = [];
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'mandate-lint-keyscan-'));
    mkdirSync(join(dir, 'keys/tool'), { recursive: true });
    mkdirSync(join(dir, 'keys/layout'), { recursive: true });
    mkdirSync(join(dir, 'docs'));
    mkdirSync(join(dir, 'src'));
    let n = 0;
    for (const s of samples) {
      secrets.push(...secretLines(keyBlock(s)));
      // The tool's own output, then each layout, each in its own file with the layout's extension.
      const file = `keys/tool/${n++}.pem`;
      writeFileSync(join(dir, file), s.text);
      expected.set(file, { line: s.line, column: 1, keyType: s.keyType });
      for (const { ext, layout } of FIXED_LAYOUTS) {
        const { text, line, column } = layOut(keyBlock(s), layout);
        const f = `keys/layout/${n++}${ext ? `.${ext}` : ''}`;
        writeFileSync(join(dir, f), text);
        expected.set(f, { line, column, keyType: s.keyType });
      }
    }
    // The other encodings: a Kubernetes Secret, a JWKS, an env file with base64 DER.
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const ecPem = ec.export({ type: 'sec1', format: 'pem' }) as string;
    const ecDer = (ec.export({ type: 'pkcs8', format: 'der' }) as Buffer).toString('base64');
    secrets.push(Buffer.from(ecPem).toString('base64'), ecDer, ec.export({ format: 'jwk' }).d!, ...secretLines(ecPem));
    writeFileSync(join(dir, 'keys/layout/secret.yaml'), `kind: Secret\ndata:\n  tls.key: ${Buffer.from(ecPem).toString('base64')}\n`);
    expected.set('keys/layout/secret.yaml', { line: 3, column: 12, keyType: 'EC P-256' });
    writeFileSync(join(dir, 'keys/layout/jwks.json'), JSON.stringify({ keys: [{ kid: 'a', ...ec.export({ format: 'jwk' }) }] }, null, 2));
    expected.set('keys/layout/jwks.json', { line: 3, column: 5, keyType: 'EC P-256' });
    writeFileSync(join(dir, 'keys/layout/service.env'), `PORT=8080\nSIGNING_KEY=${ecDer}\n`);
    expected.set('keys/layout/service.env', { line: 2, column: 13, keyType: 'EC P-256' });
    for (const [file, text] of Object.entries(lookAlikes(samples[0]!))) writeFileSync(join(dir, file), text);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('every committed key is one committed-private-key finding at its BEGIN; no look-alike is reported; nothing of a key in the result', async () => {
    const r = await scanFiles(['.'], { cwd: dir });
    const got = new Map<string, Finding[]>();
    for (const f of r.findings) got.set(f.file, [...(got.get(f.file) ?? []), f]);
    for (const [file, want] of expected) {
      const fs = got.get(file) ?? [];
      // Today's secretlint rule alone misses many of these (a SEC1 P-256 key, Proc-Type headers,
      // ENCRYPTED PRIVATE KEY, Ed25519, ...); and where it finds one, its finding is this one's duplicate.
      assert.deepEqual(fs.map((f) => [f.ruleId, f.line, f.column, f.properties?.keyType]), [['committed-private-key', want.line, want.column, want.keyType]], file);
      assert.match(fs[0]!.message, /^private key \(.+\) (in a PEM block "[A-Z0-9 ]+"|in a base64-encoded PEM block "[A-Z0-9 ]+"|as base64 DER|as a JSON Web Key)$/);
    }
    for (const file of Object.keys(lookAlikes(samples[0]!))) assert.equal(got.get(file), undefined, file);
    assert.equal(r.findings.length, expected.size);
    const text = JSON.stringify(r);
    for (const s of secrets) assert.ok(!text.includes(s), 'key material reached the result');
  });

  it('the CLI reports file:line:column in text, JSON and SARIF, and prints no key material', () => {
    // The tools' own outputs (the layouts are the test above's): three runs of the CLI over every file would be slow.
    const cli = (...argv: string[]) => spawnSync(process.execPath, [BIN, 'lint', '--scan', 'keys/tool', ...argv], { cwd: dir, encoding: 'utf8', env: { ...process.env, MANDATE_CONFIG: '' } });
    const tool = [...expected].filter(([file]) => file.startsWith('keys/tool/'));
    const human = cli();
    assert.equal(human.status, 1, human.stderr);
    for (const [file, want] of tool) {
      assert.ok(human.stdout.includes(`${file}:${want.line}:${want.column}  error  committed-private-key  private key (${want.keyType})`), file);
    }
    const sarif = cli('--sarif', '-');
    assert.equal(sarif.status, 1);
    const log = JSON.parse(sarif.stdout);
    assert.deepEqual(sarifStructureProblems(log), []);
    const results = log.runs[0].results as { ruleId: string; locations: { physicalLocation: { artifactLocation: { uri: string }; region: { startLine: number; startColumn: number } } }[] }[];
    assert.equal(results.length, tool.length);
    for (const res of results) {
      const { uri } = res.locations[0]!.physicalLocation.artifactLocation;
      const want = expected.get(uri);
      assert.ok(want, uri);
      assert.equal(res.ruleId, 'committed-private-key');
      assert.deepEqual(res.locations[0]!.physicalLocation.region, { startLine: want.line, startColumn: want.column });
    }
    const json = cli('--json');
    for (const out of [human.stdout + human.stderr, sarif.stdout + sarif.stderr, json.stdout + json.stderr]) {
      for (const s of secrets) assert.ok(!out.includes(s), 'key material reached the output');
    }
  });
});
