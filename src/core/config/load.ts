import { readFileSync, statSync } from 'node:fs';
import { LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { configSchema, type MandateConfig, type MandateConfigInput } from './schema.js';

/** A config file larger than this is refused before it is parsed. */
export const MAX_CONFIG_BYTES = 4 * 1024 * 1024;

/** Environment variables that override config: `MANDATE_SERVER__PORT=9000` sets server.port. */
export const ENV_PREFIX = 'MANDATE_';
/** Variables with the prefix that are not config overrides. */
const NOT_OVERRIDES = new Set(['MANDATE_LOG_LEVEL', 'MANDATE_URL', 'MANDATE_TOKEN', 'MANDATE_CONFIG', 'MANDATE_DEV_KEK']);

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
}

/** Reads, overrides, validates and freezes a config file. Throws ConfigError naming each bad key. */
export function loadConfigFile(path: string, opts: LoadOptions = {}): Readonly<MandateConfig> {
  let size: number;
  try {
    size = statSync(path).size;
  } catch {
    throw new ConfigError([`${path}: cannot be read (no such file?)`]);
  }
  if (size > MAX_CONFIG_BYTES) throw new ConfigError([`${path}: ${size} bytes is over the ${MAX_CONFIG_BYTES} byte limit`]);
  return parseConfigText(readFileSync(path, 'utf8'), { ...opts, source: path });
}

/** Parses YAML text (a document of `mandate.yaml`). */
export function parseConfigText(text: string, opts: LoadOptions & { source?: string } = {}): Readonly<MandateConfig> {
  const source = opts.source ?? 'mandate.yaml';
  // `uniqueKeys` (the default) makes a repeated key an error, so that a second `actions:` cannot hide the first.
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: false, lineCounter });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => {
        const { line, col } = lineCounter.linePos(e.pos[0]);
        // The parser's message does not say which key; it starts at e.pos[0] and ends at its colon.
        const what = e.code === 'DUPLICATE_KEY'
          ? `duplicate key "${text.slice(e.pos[0]).split(/\r?\n/, 1)[0]!.split(/:(?:\s|$)/, 1)[0]!.trim()}": write each key once`
          : e.message.split('\n')[0];
        return `${source}: line ${line}, column ${col}: YAML: ${what}`;
      }),
    );
  }
  const raw: unknown = doc.toJS({ maxAliasCount: 50 }) ?? {};
  return buildConfig(raw as MandateConfigInput, { ...opts, source });
}

/** Validates an object (already parsed) with environment overrides applied, then freezes it. */
export function buildConfig(raw: MandateConfigInput | Record<string, unknown>, opts: LoadOptions & { source?: string } = {}): Readonly<MandateConfig> {
  const source = opts.source ?? 'config';
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError([`${source}: the top level must be a mapping (server:, store:, tools:, …)`]);
  }
  const withEnv = applyEnvOverrides(structuredClone(raw) as Record<string, unknown>, opts.env ?? process.env);
  // reportInput tells a missing key (input undefined) from a wrong type; inputs never reach the messages.
  const parsed = configSchema.safeParse(withEnv, { reportInput: true });
  if (!parsed.success) throw new ConfigError(formatIssues(parsed.error, source));
  return deepFreeze(parsed.data);
}

/**
 * `MANDATE_STORE__DRIVER=postgres` → store.driver. A double underscore separates levels
 * (single underscores belong to key names such as public_url). Values are read as YAML
 * scalars, so `9000` is a number and `true` a boolean.
 */
export function applyEnvOverrides(target: Record<string, unknown>, env: NodeJS.ProcessEnv): Record<string, unknown> {
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || NOT_OVERRIDES.has(name) || value === undefined) continue;
    const path = name.slice(ENV_PREFIX.length).toLowerCase().split('__');
    if (path.some((p) => p === '' || p === '__proto__' || p === 'constructor' || p === 'prototype')) continue;
    let node: Record<string, unknown> = target;
    for (const [i, key] of path.slice(0, -1).entries()) {
      const next = node[key];
      if (next === undefined) node[key] = {};
      else if (typeof next !== 'object' || next === null || Array.isArray(next)) {
        // Setting the leaf on this node instead would write it under the wrong key.
        throw new ConfigError([`${name}: ${path.slice(0, i + 1).join('.')} is not a mapping, so it cannot be overridden key by key`]);
      }
      node = node[key] as Record<string, unknown>;
    }
    const leaf = path[path.length - 1]!;
    node[leaf] = parseDocument(value).toJS() ?? value;
  }
  return target;
}

/** One line per problem: the key, what is wrong, and an example of what to write. */
export function formatIssues(error: z.ZodError, source: string): string[] {
  return error.issues.map((iss) => {
    const path = [...iss.path] as (string | number)[];
    let message = iss.message;
    if (iss.code === 'unrecognized_keys') {
      const allowed = allowedKeys(schemaAt(configSchema, path));
      message = `unknown key${iss.keys.length > 1 ? 's' : ''} ${iss.keys.map((k) => `"${k}"`).join(', ')}${allowed.length ? ` (allowed here: ${allowed.join(', ')})` : ''}`;
    } else if (iss.code === 'invalid_type' && (iss.input === undefined)) {
      message = `required (${iss.expected})`;
    }
    const at = schemaAt(configSchema, iss.code === 'unrecognized_keys' ? [...path, iss.keys[0]!] : path);
    const example = at ? exampleOf(at) : undefined;
    const key = iss.code === 'unrecognized_keys' ? renderPath(path) || '(top level)' : renderPath(path) || '(top level)';
    return `${source}: ${key}: ${message}${example ? `; for example: ${lastKey(path, iss)}: ${example}` : ''}`;
  });
}

function lastKey(path: (string | number)[], iss: z.core.$ZodIssue): string {
  if (iss.code === 'unrecognized_keys') return String(iss.keys[0]);
  for (let i = path.length - 1; i >= 0; i--) if (typeof path[i] === 'string') return String(path[i]);
  return 'value';
}

export function renderPath(path: (string | number)[]): string {
  return path.reduce<string>((acc, p) => (typeof p === 'number' ? `${acc}[${p}]` : acc ? `${acc}.${p}` : p), '');
}

type AnySchema = z.core.$ZodType;

/** Walks the schema along a path of keys and indexes; undefined where it cannot follow. */
function schemaAt(root: AnySchema, path: (string | number)[]): AnySchema | undefined {
  let s: AnySchema | undefined = root;
  for (const seg of path) {
    s = unwrap(s);
    if (!s) return undefined;
    const def = s._zod.def as unknown as Record<string, unknown> & { type: string };
    if (def.type === 'object' && typeof seg === 'string') s = (def.shape as Record<string, AnySchema>)[seg];
    else if (def.type === 'array' && typeof seg === 'number') s = def.element as AnySchema;
    else if (def.type === 'record') s = def.valueType as AnySchema;
    else if (def.type === 'union' && typeof seg === 'string') {
      const opts = def.options as AnySchema[];
      s = opts.map((o) => schemaAt(o, [seg])).find((x) => x !== undefined);
    } else return undefined;
  }
  return s;
}

function unwrap(s: AnySchema | undefined): AnySchema | undefined {
  while (s) {
    const def = s._zod.def as unknown as Record<string, unknown> & { type: string };
    if (['optional', 'default', 'prefault', 'nullable', 'readonly', 'catch'].includes(def.type)) s = def.innerType as AnySchema;
    else if (def.type === 'pipe') s = def.in as AnySchema;
    else return s;
  }
  return s;
}

function exampleOf(s: AnySchema): string | undefined {
  let cur: AnySchema | undefined = s;
  while (cur) {
    const meta = z.globalRegistry.get(cur) as { example?: string } | undefined;
    if (meta?.example) return meta.example;
    const def = cur._zod.def as unknown as Record<string, unknown> & { type: string };
    if (['optional', 'default', 'prefault', 'nullable', 'readonly', 'catch'].includes(def.type)) cur = def.innerType as AnySchema;
    else if (def.type === 'pipe') cur = def.in as AnySchema;
    else return undefined;
  }
  return undefined;
}

function allowedKeys(s: AnySchema | undefined): string[] {
  const u = unwrap(s);
  if (!u) return [];
  const def = u._zod.def as unknown as Record<string, unknown> & { type: string };
  return def.type === 'object' ? Object.keys(def.shape as object) : [];
}

/** Freezes a parsed config all the way down: it is read by every request and changed by none. */
export function deepFreeze<T>(value: T): Readonly<T> {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as object)) deepFreeze(v);
  }
  return value;
}
