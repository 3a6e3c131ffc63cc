// Writes schema/mandate.schema.json from the zod config schema (src/core/config/schema.ts),
// so that editors can complete and check mandate.yaml. Run after a build (`npm run schema`).
//
//   node scripts/gen-schema.mjs           regenerate schema/mandate.schema.json
//   node scripts/gen-schema.mjs --check   exit 1 when the file differs from a fresh generation
//
// The schema is generated in input mode: it describes what a YAML author writes (`ttl: 15m`),
// not the parsed result (`ttl: 900`). Rules that zod checks in code (superRefine: references
// resolve, names are unique, a trust entry needs a claim condition) cannot be expressed and
// are left to the loader, which names the key when one fails.
import { readFileSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const COMPILED = join(ROOT, 'dist/src/core/config/schema.js');
const OUT = join(ROOT, 'schema/mandate.schema.json');
const OUT_REL = 'schema/mandate.schema.json';

const SCHEMA_ID = 'urn:mandate:schema:mandate.yaml';
const TITLE = 'mandate.yaml';
const DESCRIPTION =
  'Configuration of a Mandate instance (token broker and tool proxy for AI agents and other non-human identities). ' +
  'Generated from src/core/config/schema.ts by scripts/gen-schema.mjs: do not edit by hand. ' +
  'Secrets are written only as references (env:NAME or file:PATH); durations as 90s, 15m, 24h, 7d or seconds.';

/**
 * The schema's examples are written as YAML for error messages (`.meta({ example: '[RS256]' })`).
 * JSON Schema's keyword is `examples` (an array of instances), so each is parsed as YAML into
 * the value an author would write; one that does not parse stays a string.
 */
function toExamples(node, isPropertyMap = false) {
  if (Array.isArray(node)) return node.map((n) => toExamples(n));
  if (node === null || typeof node !== 'object') return node;
  const out = {};
  for (const [k, v] of Object.entries(node)) {
    // Under `properties` a key is a config key (which could be called `example`), not a keyword.
    if (!isPropertyMap && k === 'example' && typeof v === 'string') {
      let value = v;
      try {
        value = parseYaml(v) ?? v;
      } catch {
        value = v;
      }
      out.examples = [value];
    } else {
      out[k] = toExamples(v, !isPropertyMap && (k === 'properties' || k === 'patternProperties' || k === '$defs'));
    }
  }
  return out;
}

async function generate() {
  if (!existsSync(COMPILED)) {
    throw new Error(`${COMPILED} is missing: build first (npx tsc -p tsconfig.json, or npm run schema)`);
  }
  const { configSchema } = await import(pathToFileURL(COMPILED).href);
  const generated = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any', target: 'draft-2020-12' });
  const { $schema, ...rest } = toExamples(generated);
  const doc = { $schema, $id: SCHEMA_ID, title: TITLE, description: DESCRIPTION, ...rest };
  return `${JSON.stringify(doc, null, 2)}\n`;
}

async function main() {
  const check = process.argv.includes('--check');
  let text;
  try {
    text = await generate();
  } catch (err) {
    console.error(`gen-schema: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
  if (check) {
    const current = existsSync(OUT) ? readFileSync(OUT, 'utf8') : undefined;
    if (current === undefined) {
      console.error(`${OUT_REL} is missing: run npm run schema`);
      process.exit(1);
    }
    if (current !== text) {
      console.error(`${OUT_REL} is out of date: run npm run schema`);
      process.exit(1);
    }
    console.log(`${OUT_REL} is up to date`);
    return;
  }
  mkdirSync(dirname(OUT), { recursive: true });
  writeFileSync(OUT, text);
  console.log(`wrote ${OUT_REL} (${text.length} bytes)`);
}

await main();
