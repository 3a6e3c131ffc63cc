import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// Compiled to dist/test/boundaries.test.js: the repository is two levels up.
const SCRIPT = fileURLToPath(new URL('../../scripts/check-boundaries.mjs', import.meta.url));

/** A tiny source tree that respects every rule. */
const CLEAN: Record<string, string> = {
  'src/core/errors.ts': 'export class MandateError extends Error {}\n',
  'src/core/index.ts': "export { MandateError } from './errors.js';\n",
  'src/inventory/ports.ts': 'export interface NhiStore { get(id: string): string }\n',
  'src/inventory/inventory.ts': "import type { NhiStore } from './ports.js';\nimport { MandateError } from '../core/index.js';\nexport const make = (s: NhiStore) => { if (!s) throw new MandateError(); return s; };\n",
  'src/inventory/index.ts': "export { make } from './inventory.js';\nexport type { NhiStore } from './ports.js';\n",
  // Another capability through index.ts and ports.ts (governance → inventory is in the table); a multi-line import; a dynamic import.
  'src/governance/score.ts': [
    'import {',
    '  make,',
    "} from '../inventory/index.js';",
    "import type { NhiStore } from '../inventory/ports.js';",
    "// import { x } from '../store/store.js';  (a comment is not an import)",
    "const s = \"import '../bus/memory.js'\"; // nor is a string",
    "export const load = () => import('../core/errors.js');",
    'export const k = (st: NhiStore) => [make(st), s];',
  ].join('\n'),
  'src/store/store.ts': "import type { NhiStore } from '../inventory/ports.js';\nimport { MandateError } from '../core/errors.js';\nexport type S = NhiStore | MandateError;\n",
  'src/bus/memory.ts': "import { MandateError } from '../core/errors.js';\nexport const m = MandateError;\n",
  'src/client/index.ts': "import { MandateError } from '../core/errors.js';\nexport const c = MandateError;\n",
  'src/cli/main.ts': "import { make } from '../inventory/index.js';\nimport { app } from '../app.js';\nimport { c } from '../client/index.js';\nexport const x = [make, app, c];\n",
  'src/app.ts': "import { S } from './store/store.js';\nimport { m } from './bus/memory.js';\nimport { make } from './inventory/inventory.js';\nexport const app = [m, make] as unknown as S;\n",
};

function makeTree(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'mandate-boundaries-'));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

function check(files: Record<string, string>): { status: number | null; stdout: string; stderr: string; lines: string[] } {
  const root = makeTree(files);
  try {
    const r = spawnSync(process.execPath, [SCRIPT, '--root', root], { encoding: 'utf8' });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr, lines: r.stderr.split('\n').filter((l) => l.startsWith('src/')) };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

test('a clean tree passes with a one-line summary', () => {
  const r = check(CLEAN);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^check-boundaries: 11 files, \d+ relative imports, no violations\n$/);
  assert.equal(r.stderr, '');
});

test('a capability importing a store implementation fails, naming both files and the rule', () => {
  const r = check({ ...CLEAN, 'src/keys/bad.ts': "import { S } from '../store/store.js';\nexport type B = S;\n" });
  assert.equal(r.status, 1);
  assert.deepEqual(r.lines, [
    'src/keys/bad.ts imports src/store/store.ts: a capability may import src/core/**, its own folder, and another capability only through its index.ts or ports.ts (never src/store/**, src/bus/**, src/app.ts or src/cli/**)',
  ]);
});

test('reaching into another capability past its index.ts fails', () => {
  const r = check({ ...CLEAN, 'src/keys/deep.ts': "export { make } from '../inventory/inventory.js';\n" });
  assert.equal(r.status, 1);
  assert.equal(r.lines.length, 1);
  assert.match(r.lines[0]!, /^src\/keys\/deep\.ts imports src\/inventory\/inventory\.ts: a capability may import/);
});

test('each layer rule is enforced', () => {
  const r = check({
    ...CLEAN,
    'src/core/bad.ts': "import { make } from '../inventory/index.js';\nexport const b = make;\n",
    'src/store/bad.ts': "import { make } from '../inventory/index.js';\nexport const b = make;\n",
    'src/bus/bad.ts': "import type { NhiStore } from '../inventory/ports.js';\nexport type B = NhiStore;\n",
    'src/client/bad.ts': "import { MandateError } from '../core/index.js';\nexport const b = MandateError;\n",
    'src/cli/bad.ts': "export const load = () => import('../inventory/inventory.js');\n",
    'src/inventory/bad.ts': "import { app } from '../app.js';\nimport { x } from '../cli/main.js';\nexport const b = [app, x];\n",
  });
  assert.equal(r.status, 1);
  assert.deepEqual(r.lines.map((l) => l.split(':')[0]).sort(), [
    'src/bus/bad.ts imports src/inventory/ports.ts',
    'src/cli/bad.ts imports src/inventory/inventory.ts',
    'src/client/bad.ts imports src/core/index.ts',
    'src/core/bad.ts imports src/inventory/index.ts',
    'src/inventory/bad.ts imports src/app.ts',
    'src/inventory/bad.ts imports src/cli/main.ts',
    'src/store/bad.ts imports src/inventory/index.ts',
  ]);
  assert.match(r.stderr, /check-boundaries: 7 violations in 17 files/);
});

test('export * is refused anywhere, including export type * and export * as', () => {
  const r = check({
    ...CLEAN,
    'src/core/index.ts': "export * from './errors.js';\n",
    'src/inventory/index.ts': "export type * from './ports.js';\nexport * as inv from './inventory.js';\n",
  });
  assert.equal(r.status, 1);
  assert.equal(r.lines.length, 3);
  assert.ok(r.lines.every((l) => l.includes('no `export *` in src/')), r.stderr);
  assert.ok(r.lines.some((l) => l.startsWith('src/core/index.ts exports * from ./errors.js')));
});

test('a folder that no rule covers is reported', () => {
  const r = check({ ...CLEAN, 'src/misc/util.ts': 'export const u = 1;\n' });
  assert.equal(r.status, 1);
  assert.match(r.lines[0]!, /^src\/misc\/util\.ts: this file is in no boundary/);
});

test('the dependency table: a capability may reach only those it lists, even through their index.ts', () => {
  const r = check({
    ...CLEAN,
    'src/broker/index.ts': 'export const issue = 1;\n',
    // The proxy enforces what the broker issues, but never depends on it.
    'src/proxy/proxy.ts': "import { issue } from '../broker/index.js';\nexport const p = issue;\n",
    // Nor does enforcement, which both depend on.
    'src/enforcement/kill.ts': "import { issue } from '../broker/index.js';\nexport const k = issue;\n",
    // The broker may depend on inventory (listed).
    'src/broker/grant.ts': "import { make } from '../inventory/index.js';\nexport const g = make;\n",
  });
  assert.equal(r.status, 1);
  assert.deepEqual(r.lines.map((l) => l.split(':')[0]).sort(), [
    'src/enforcement/kill.ts imports src/broker/index.ts',
    'src/proxy/proxy.ts imports src/broker/index.ts',
  ]);
  assert.ok(r.lines.every((l) => l.includes('not in the dependency table')), r.stderr);
  assert.ok(r.lines.some((l) => l.includes('proxy → broker')), r.stderr);
});
