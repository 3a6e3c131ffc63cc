// Import-boundary check, run by `npm test`. Every .ts file under src/ is parsed with the
// TypeScript compiler's parser (so comments, strings and multi-line imports are handled), its
// module specifiers are collected (static `import … from`, side-effect `import '…'`,
// `export … from`, dynamic `import('…')`, `import x = require('…')` and `import('…')` types),
// relative ones are resolved to a file under src/, and each is checked against RULES below.
//
//   node scripts/check-boundaries.mjs [--root <dir>]   (<dir> holds src/; default: the repository)
//
// Exit 0 with a one-line summary, or exit 1 printing one line per violation:
//   src/x/y.ts imports src/z/w.ts: <rule>
// Type-only imports count too: a boundary is about which code knows which, not about emit.
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { dirname, join, relative, resolve, sep, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/**
 * The capabilities (`src/<name>/`) and which others each may depend on: the dependency table of
 * docs/architecture.md. A capability reaches another only through its index.ts or ports.ts, and
 * only when this table lists it (core is always allowed). Keep the two in step.
 */
const DEPENDS = {
  jose: [],
  policy: [],
  audit: ['admin'],
  admin: [],
  server: [],
  demo: [],
  keys: ['admin'],
  inventory: ['admin'],
  web: ['admin'],
  enforcement: ['jose', 'admin'],
  broker: ['jose', 'enforcement', 'inventory', 'keys', 'admin'],
  proxy: ['jose', 'enforcement', 'inventory', 'policy'],
  signals: ['jose', 'enforcement', 'inventory', 'keys', 'admin'],
  governance: ['enforcement', 'inventory', 'signals', 'admin'],
  client: [],
};
const CAPABILITIES = new Set(Object.keys(DEPENDS));

// A target `t` is { path: 'inventory/ports.ts', folder: 'inventory' | undefined (a file at the top of src/), rest: 'ports.ts' }.
const inCore = (t) => t.folder === 'core';
const own = (s, t) => s.folder !== undefined && s.folder === t.folder;
const capabilityEntry = (t, files) => CAPABILITIES.has(t.folder) && files.includes(t.rest);
/** `s` may depend on `t`'s capability at all (the table), whatever file it names. */
const inTable = (s, t) => !CAPABILITIES.has(t.folder) || s.folder === t.folder || (DEPENDS[s.folder] ?? []).includes(t.folder);

/**
 * The rules, by the kind of the importing file. `allows(source, target)` decides one import;
 * `rule` is the sentence printed with a violation. A file's own folder is always allowed
 * (for every kind but `core`, which is its own folder anyway).
 *
 * - core:       the shared kernel; depends on nothing else in src/.
 * - store/bus:  implementations of ports; they know core and the ports they implement.
 * - capability: core, itself, and other capabilities only through their public surface.
 * - client:     ships to agents, so it stays light: only core/errors.ts, core/canonical.ts and core/oauth-names.ts.
 * - cli:        a front end over the composition root and the capabilities' public surface
 *               (plus governance/lint/index.ts, the offline `mandate lint`).
 * - app:        src/app.ts, the composition root, wires everything.
 * Anything else under src/ (a new folder or top-level file) must be given a kind here first.
 */
const RULES = {
  core: {
    rule: 'src/core/** imports nothing from other src folders',
    allows: (s, t) => inCore(t),
  },
  store: {
    rule: "src/store/** may import only src/core/** and a capability's ports.ts",
    allows: (s, t) => inCore(t) || own(s, t) || capabilityEntry(t, ['ports.ts']),
  },
  bus: {
    rule: 'src/bus/** may import only src/core/**',
    allows: (s, t) => inCore(t) || own(s, t),
  },
  capability: {
    rule:
      'a capability may import src/core/**, its own folder, and another capability only through its index.ts or ports.ts ' +
      '(never src/store/**, src/bus/**, src/app.ts or src/cli/**)',
    allows: (s, t) => inCore(t) || own(s, t) || capabilityEntry(t, ['index.ts', 'ports.ts']),
  },
  client: {
    rule: 'src/client/** may import only src/core/errors.ts, src/core/canonical.ts, src/core/oauth-names.ts and its own folder (it ships to agents; keep it light)',
    allows: (s, t) => t.path === 'core/errors.ts' || t.path === 'core/canonical.ts' || t.path === 'core/oauth-names.ts' || own(s, t),
  },
  cli: {
    rule: "src/cli/** may import only src/core/**, src/app.ts, the capabilities' index.ts and src/governance/lint/index.ts",
    // governance/lint/index.ts: `mandate lint` is an offline CLI check that needs none of the
    // governance runtime, so it has its own entry rather than going through governance/index.ts.
    allows: (s, t) => inCore(t) || own(s, t) || t.path === 'app.ts' || capabilityEntry(t, ['index.ts']) || t.path === 'governance/lint/index.ts',
  },
  app: {
    rule: 'src/app.ts is the composition root and may import everything',
    allows: () => true,
  },
  table: {
    rule: 'not in the dependency table (docs/architecture.md, DEPENDS in scripts/check-boundaries.mjs): this capability may not depend on that one',
    allows: (s, t) => inTable(s, t),
  },
  unclassified: {
    rule: 'this file is in no boundary: give its folder a kind in RULES (scripts/check-boundaries.mjs)',
    allows: () => false,
  },
  outside: {
    rule: 'a relative import from src/ must stay inside src/',
    allows: () => false,
  },
  noExportStar: {
    rule: 'no `export *` in src/: list the exported names (explicit named exports)',
    allows: () => false,
  },
};

function kindOf(file) {
  if (file.folder === undefined) return file.path === 'app.ts' ? 'app' : 'unclassified';
  if (file.folder === 'core' || file.folder === 'store' || file.folder === 'bus' || file.folder === 'client' || file.folder === 'cli') {
    return file.folder;
  }
  return CAPABILITIES.has(file.folder) ? 'capability' : 'unclassified';
}

function parseArgs(argv) {
  let root = join(dirname(fileURLToPath(import.meta.url)), '..');
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--root') {
      const v = argv[++i];
      if (!v) usage('--root needs a directory');
      root = resolve(v);
    } else if (argv[i].startsWith('--root=')) {
      root = resolve(argv[i].slice('--root='.length));
    } else {
      usage(`unknown argument ${argv[i]}`);
    }
  }
  return { root };
}

function usage(msg) {
  console.error(`check-boundaries: ${msg}\nusage: node scripts/check-boundaries.mjs [--root <dir containing src/>]`);
  process.exit(2);
}

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (/\.(m|c)?ts$/.test(name) && !/\.d\.(m|c)?ts$/.test(name)) out.push(p);
  }
  return out;
}

/** `inventory/ports.ts` → { path, folder: 'inventory', rest: 'ports.ts' }; `app.ts` → folder undefined. */
function describe(pathInSrc) {
  const parts = pathInSrc.split('/');
  return parts.length === 1
    ? { path: pathInSrc, folder: undefined, rest: pathInSrc }
    : { path: pathInSrc, folder: parts[0], rest: parts.slice(1).join('/') };
}

/** Every module specifier in a file, with its position and whether it is `export *`. */
function specifiersOf(fileName, text) {
  const sf = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const found = [];
  const add = (node, spec, exportStar = false) => {
    if (!spec || !ts.isStringLiteralLike(spec)) return;
    const { line } = sf.getLineAndCharacterOfPosition(node.getStart(sf));
    found.push({ specifier: spec.text, line: line + 1, exportStar });
  };
  const visit = (node) => {
    if (ts.isImportDeclaration(node)) add(node, node.moduleSpecifier);
    else if (ts.isExportDeclaration(node)) {
      // `export * from`, `export type * from` and `export * as ns from` all re-export a module wholesale.
      const star = node.moduleSpecifier !== undefined && (!node.exportClause || ts.isNamespaceExport(node.exportClause));
      if (node.moduleSpecifier) add(node, node.moduleSpecifier, star);
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      add(node, node.moduleReference.expression);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      add(node, node.arguments[0]);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      add(node, node.argument.literal);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

/** Maps a relative specifier to the source file it names (`./x.js` → `x.ts`), as a path relative to src/. */
function resolveInSrc(srcDir, fromFile, specifier) {
  let abs = resolve(dirname(fromFile), specifier);
  abs = abs.replace(/\.js$/, '.ts').replace(/\.mjs$/, '.mts').replace(/\.cjs$/, '.cts');
  if (!/\.[cm]?ts$|\.json$/.test(abs) && existsSync(join(abs, 'index.ts'))) abs = join(abs, 'index.ts');
  const rel = relative(srcDir, abs);
  if (rel.startsWith('..') || resolve(srcDir, rel) !== abs) return { outside: true, display: relative(dirname(srcDir), abs).split(sep).join('/') };
  return { outside: false, path: rel.split(sep).join(posix.sep) };
}

function main() {
  const { root } = parseArgs(process.argv.slice(2));
  const srcDir = join(root, 'src');
  if (!existsSync(srcDir)) usage(`${srcDir} does not exist`);
  const files = walk(srcDir);
  const violations = [];
  let checked = 0;
  for (const abs of files) {
    const source = describe(relative(srcDir, abs).split(sep).join('/'));
    const from = `src/${source.path}`;
    const kind = kindOf(source);
    if (kind === 'unclassified') violations.push(`${from}: ${RULES.unclassified.rule}`);
    for (const imp of specifiersOf(abs, readFileSync(abs, 'utf8'))) {
      const relativeSpec = imp.specifier.startsWith('./') || imp.specifier.startsWith('../');
      if (imp.exportStar) {
        violations.push(`${from} exports * from ${imp.specifier} (line ${imp.line}): ${RULES.noExportStar.rule}`);
      }
      if (!relativeSpec) continue; // packages and node: builtins are not boundaries between src folders
      checked++;
      const r = resolveInSrc(srcDir, abs, imp.specifier);
      if (r.outside) {
        violations.push(`${from} imports ${r.display}: ${RULES.outside.rule}`);
        continue;
      }
      const target = describe(r.path);
      if (kind !== 'unclassified' && !RULES[kind].allows(source, target)) violations.push(`${from} imports src/${target.path}: ${RULES[kind].rule}`);
      else if (kind === 'capability' && !RULES.table.allows(source, target)) violations.push(`${from} imports src/${target.path}: ${source.folder} → ${target.folder} is ${RULES.table.rule}`);
    }
  }
  if (violations.length > 0) {
    for (const v of violations) console.error(v);
    console.error(`check-boundaries: ${violations.length} violation${violations.length === 1 ? '' : 's'} in ${files.length} files`);
    process.exit(1);
  }
  console.log(`check-boundaries: ${files.length} files, ${checked} relative imports, no violations`);
}

main();
