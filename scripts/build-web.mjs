// Builds the console's assets into dist/src/web/assets (served at /ui/ by src/web/):
//   1. compiles src/web/client/*.ts for the browser (src/web/client/tsconfig.json: ES2022 + DOM),
//   2. copies preact, preact/hooks, htm and uPlot (ES modules) into vendor/, rewriting bare
//      imports to relative paths: an import map would be an inline script, which the console's
//      Content-Security-Policy forbids,
//   3. copies index.html and the stylesheets.
// Run by `npm run build`, `prepare` (so `npm install` builds it), `npm test` and `prestart` (--if-stale).
// No network, no bundler.
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'src/web/client');
const out = join(root, 'dist/src/web/assets');
const require = createRequire(join(root, 'package.json'));

const walk = (d) => readdirSync(d).flatMap((n) => (statSync(join(d, n)).isDirectory() ? walk(join(d, n)) : [join(d, n)]));
// `--if-stale` (npm start): nothing to do when the built index is newer than every source.
if (process.argv.includes('--if-stale') && existsSync(join(out, 'index.html'))) {
  const built = statSync(join(out, 'index.html')).mtimeMs;
  if (walk(src).every((f) => statSync(f).mtimeMs <= built)) process.exit(0);
}

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, 'vendor'), { recursive: true });

const tsc = spawnSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', join(src, 'tsconfig.json')], { stdio: 'inherit' });
if (tsc.status !== 0) process.exit(tsc.status ?? 1);

const pkg = (p) => join(root, 'node_modules', p);
const VENDOR = {
  preact: ['preact/dist/preact.module.js', 'preact.js'],
  'preact/hooks': ['preact/hooks/dist/hooks.module.js', 'hooks.js'],
  htm: ['htm/dist/htm.module.js', 'htm.js'],
  uplot: ['uplot/dist/uPlot.esm.js', 'uplot.js'],
};
/** Bare specifiers → a path relative to the importing file (`prefix` is how to reach vendor/ from it). */
const rewrite = (code, prefix) =>
  code.replace(/(\bfrom\s*|\bimport\s*)(["'])(preact\/hooks|preact|htm|uplot)\2/g, (_, kw, q, name) => `${kw}${q}${prefix}${VENDOR[name][1]}${q}`);

for (const [from, to] of Object.values(VENDOR)) {
  // Source maps are not shipped; drop the comment so browsers do not ask for them.
  writeFileSync(join(out, 'vendor', to), rewrite(readFileSync(pkg(from), 'utf8'), './').replace(/\n\/\/# sourceMappingURL=.*$/m, ''));
}
cpSync(pkg('uplot/dist/uPlot.min.css'), join(out, 'vendor/uplot.css'));

for (const f of walk(join(out, 'js')).filter((f) => f.endsWith('.js'))) {
  const depth = f.slice(join(out, 'js').length + 1).split('/').length - 1;
  writeFileSync(f, rewrite(readFileSync(f, 'utf8'), `${'../'.repeat(depth + 1)}vendor/`));
}
// index.html last: its time stamp is what --if-stale compares.
for (const f of ['app.css', 'favicon.svg', 'index.html']) cpSync(join(src, f), join(out, f));
console.log(`console assets built in ${out.slice(root.length + 1)}`);
