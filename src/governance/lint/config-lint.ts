import { createHash } from 'node:crypto';
import { LineCounter, parseDocument, type Document } from 'yaml';
import type { z } from 'zod';
import { canonicalJson } from '../../core/canonical.js';
import { formatDuration } from '../../core/duration.js';
import { SECRET_REF_RE } from '../../core/secrets.js';
import { configSchema, duration, secretRef, tokensSchema } from '../../core/config/schema.js';
import { formatIssues, renderPath } from '../../core/config/load.js';
import { ruleOf, type Finding, type LintRuleId } from './rules.js';

export interface LintConfigOptions {
  /** The instant "today" is taken from (UTC date): an exception ending before it has expired. */
  now: Date;
  /**
   * The same file at the base ref (`--base`): only findings that are new or changed against
   * it are kept. `''` means the file did not exist there (everything is new); undefined: no base.
   */
  base?: string;
  /** The file name findings carry (default `mandate.yaml`). */
  file?: string;
}

type Path = (string | number)[];
type Raw = Record<string, unknown>;

/** A finding before its position is known, with the key path it is about. */
interface Draft {
  ruleId: LintRuleId;
  path: Path;
  message: string;
}

/**
 * Lints the text of a `mandate.yaml` without the strict loader: the point of the lint is to
 * report what the loader would refuse (an inline secret is a finding here, not a crash), with
 * line numbers for SARIF. The schema's own validation runs too; its issues become
 * `config-invalid` findings unless a specific rule already reported the same key.
 */
export function lintConfigText(text: string, opts: LintConfigOptions): Finding[] {
  const file = opts.file ?? 'mandate.yaml';
  const head = analyse(text, opts.now);
  const findings = head.drafts.map((d) => head.place(d, file));
  if (opts.base === undefined) return byPosition(findings);
  // Fingerprints of the base's findings; a head finding with the same fingerprint is not new.
  const base = analyse(opts.base, opts.now);
  const known = new Set(base.drafts.map((d) => base.fingerprint(d)));
  const kept = head.drafts
    .map((d, i) => ({ d, f: findings[i]! }))
    // An expired exception is reported whatever the base says: the file may not have changed,
    // but time passed, and a lapsed exception must stop the pipeline the day it lapses.
    .filter(({ d }) => d.ruleId === 'exception-expired' || !known.has(head.fingerprint(d)))
    .map(({ f }) => f);
  return byPosition(kept);
}

function byPosition(findings: Finding[]): Finding[] {
  return findings.sort((a, b) => a.line - b.line || a.column - b.column);
}

interface Analysis {
  drafts: Draft[];
  place(d: Draft, file: string): Finding;
  fingerprint(d: Draft): string;
}

function analyse(text: string, now: Date): Analysis {
  const lineCounter = new LineCounter();
  // uniqueKeys as the loader: a second `credentials:` must not hide the first.
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: false, lineCounter });
  if (doc.errors.length > 0) {
    // Nothing below can trust a document that does not parse; report where it breaks.
    const drafts = doc.errors.map((e) => ({ ruleId: 'config-invalid' as const, path: [] as Path, message: `YAML: ${e.message.split('\n')[0]}`, pos: e.pos[0] }));
    return {
      drafts,
      place: (d, file) => {
        const { line, col } = lineCounter.linePos((d as (typeof drafts)[number]).pos);
        return finding(d, file, line, col);
      },
      fingerprint: (d) => `${d.ruleId}\0${d.message}`,
    };
  }
  const raw: unknown = doc.toJS({ maxAliasCount: 50 }) ?? {};
  const drafts: Draft[] = [];
  if (!isObj(raw)) {
    drafts.push({ ruleId: 'config-invalid', path: [], message: '(top level): must be a mapping (server:, store:, tools:, …)' });
  } else {
    drafts.push(...staticSecrets(raw, now), ...profileTtls(raw), ...trustIssuerOnly(raw), ...refreshTokens(raw), ...inlineSecrets(raw));
    drafts.push(...schemaIssues(raw, drafts));
  }
  return {
    drafts,
    place: (d, file) => {
      const { line, col } = positionOf(doc, lineCounter, d.path);
      return finding(d, file, line, col);
    },
    fingerprint: (d) => fingerprint(raw, d),
  };
}

function finding(d: Draft, file: string, line: number, column: number): Finding {
  const key = d.path.length ? renderPath(d.path) : undefined;
  return { ruleId: d.ruleId, level: ruleOf(d.ruleId).level, message: d.message, file, line, column, ...(key ? { key } : {}) };
}

// ---------------------------------------------------------------------------------------
// The rules. Each reads the parsed YAML as plain data, since it may not match the schema.

function staticSecrets(raw: Raw, now: Date): Draft[] {
  const out: Draft[] = [];
  const today = now.toISOString().slice(0, 10);
  arr(raw.nhis).forEach((n, i) => {
    if (!isObj(n)) return;
    arr(n.credentials).forEach((c, j) => {
      if (!isObj(c) || c.type !== 'static_secret') return;
      const at: Path = ['nhis', i, 'credentials', j, 'exception'];
      const who = typeof n.id === 'string' ? `NHI "${n.id}"` : `NHI nhis[${i}]`;
      const ex = c.exception;
      const missing = !isObj(ex)
        ? ['ticket', 'expires']
        : [...(typeof ex.ticket === 'string' && ex.ticket.trim() ? [] : ['ticket']), ...(isDate(ex.expires) ? [] : ['expires (YYYY-MM-DD)'])];
      if (missing.length > 0) {
        out.push({
          ruleId: 'static-secret-without-exception',
          path: at,
          message: `${renderPath(at)}: ${who} has a static secret without an exception (missing ${missing.join(' and ')}): add exception: { ticket: SEC-1234, expires: 2026-12-31 }, or use a federated or private_key_jwt credential`,
        });
      } else if ((ex as Raw).expires as string < today) {
        const e = ex as Raw;
        out.push({
          ruleId: 'exception-expired',
          path: [...at, 'expires'],
          message: `${renderPath([...at, 'expires'])}: the exception ${String(e.ticket)} for ${who}'s static secret ended on ${String(e.expires)}: retire the secret or renew the exception`,
        });
      }
    });
  });
  return out;
}

/** The ceiling when the file sets none: the schema's own default, not a copy of it. */
const DEFAULT_MAX_TTL = tokensSchema.shape.max_ttl.parse(undefined);

function profileTtls(raw: Raw): Draft[] {
  const tokens = isObj(raw.tokens) ? raw.tokens : {};
  const max = tokens.max_ttl === undefined ? DEFAULT_MAX_TTL : seconds(tokens.max_ttl);
  if (max === undefined) return []; // an unreadable max_ttl is config-invalid
  const out: Draft[] = [];
  arr(tokens.profiles).forEach((p, i) => {
    if (!isObj(p)) return;
    const ttl = seconds(p.ttl);
    if (ttl === undefined || ttl <= max) return;
    const at: Path = ['tokens', 'profiles', i, 'ttl'];
    const name = typeof p.name === 'string' ? `"${p.name}"` : `tokens.profiles[${i}]`;
    out.push({
      ruleId: 'profile-ttl-too-long',
      path: at,
      message: `${renderPath(at)}: token profile ${name} lives ${formatDuration(ttl)}, longer than tokens.max_ttl (${formatDuration(max)})`,
    });
  });
  return out;
}

function trustIssuerOnly(raw: Raw): Draft[] {
  const out: Draft[] = [];
  arr(raw.trust).forEach((t, i) => {
    if (!isObj(t)) return;
    // A condition on `iss` repeats the issuer, and a bare `*` matches every value: neither narrows
    // who is admitted, so they do not count (stricter than the loader, which counts any key).
    const pins = Object.entries(isObj(t.claims) ? t.claims : {}).filter(([k, v]) => k !== 'iss' && !(typeof v === 'string' && /^\**$/.test(v)));
    if (pins.length > 0) return;
    const at: Path = ['trust', i, 'claims'];
    const name = typeof t.name === 'string' ? `"${t.name}"` : `trust[${i}]`;
    out.push({
      ruleId: 'trust-issuer-only',
      path: at,
      message: `${renderPath(at)}: trust entry ${name} pins only its issuer, which admits every workload the issuer serves: add a claim condition, e.g. claims: { repository_owner: acme }`,
    });
  });
  return out;
}

function refreshTokens(raw: Raw): Draft[] {
  const tokens = isObj(raw.tokens) ? raw.tokens : {};
  if (tokens.refresh_tokens === undefined || tokens.refresh_tokens === false) return [];
  return [{
    ruleId: 'refresh-tokens',
    path: ['tokens', 'refresh_tokens'],
    message: 'tokens.refresh_tokens: refresh tokens are never issued to machines (they re-federate): remove the key or write false',
  }];
}

/**
 * Every key the schema declares as a secret reference, found by walking the schema for
 * `secretRef` itself, so a secret key added to the schema is linted without a change here.
 * `*` stands for any array index or record key.
 */
export const SECRET_PATHS: readonly (readonly string[])[] = secretPathsOf(configSchema);

function secretPathsOf(root: z.core.$ZodType): string[][] {
  const out: string[][] = [];
  const walk = (s: z.core.$ZodType, path: string[], depth: number) => {
    if (depth > 20) return;
    if (s === (secretRef as z.core.$ZodType)) {
      out.push(path);
      return;
    }
    const def = s._zod.def as unknown as Record<string, unknown> & { type: string };
    switch (def.type) {
      case 'optional': case 'default': case 'prefault': case 'nullable': case 'readonly': case 'catch':
        return walk(def.innerType as z.core.$ZodType, path, depth + 1);
      case 'pipe':
        return walk(def.in as z.core.$ZodType, path, depth + 1);
      case 'object':
        for (const [k, v] of Object.entries(def.shape as Record<string, z.core.$ZodType>)) walk(v, [...path, k], depth + 1);
        return;
      case 'array':
        return walk(def.element as z.core.$ZodType, [...path, '*'], depth + 1);
      case 'record':
        return walk(def.valueType as z.core.$ZodType, [...path, '*'], depth + 1);
      case 'union':
        for (const o of def.options as z.core.$ZodType[]) walk(o, path, depth + 1);
        return;
      default:
        return;
    }
  };
  walk(root, [], 0);
  // A discriminated union lists the same key once per option that has it.
  return [...new Map(out.map((p) => [p.join('.'), p])).values()];
}

function inlineSecrets(raw: Raw): Draft[] {
  const out: Draft[] = [];
  const message = (at: Path) => `${renderPath(at)}: an inline secret: write a reference (env:NAME or file:PATH), and rotate the value, since it is in the repository history now`;
  for (const pattern of SECRET_PATHS) {
    for (const [at, value] of expand(raw, pattern)) {
      if (value === undefined || value === null) continue;
      if (typeof value === 'string' && SECRET_REF_RE.test(value)) continue;
      out.push({ ruleId: 'inline-secret', path: at, message: message(at) });
    }
  }
  // The one secret that is not a secretRef in the schema: a postgres URL may be written out,
  // but not with its password (the same test as the schema's cross-check).
  const url = isObj(raw.store) ? raw.store.postgres_url : undefined;
  if (typeof url === 'string' && !SECRET_REF_RE.test(url)) {
    let inline = false;
    try {
      const u = new URL(url);
      inline = u.password !== '' || u.searchParams.has('password');
    } catch {
      // not a URL: config-invalid says so
    }
    if (inline) out.push({ ruleId: 'inline-secret', path: ['store', 'postgres_url'], message: `${message(['store', 'postgres_url'])} (a postgres URL with a password)` });
  }
  return out;
}

/** The schema's verdict; issues under a key a specific rule already reported are left out. */
function schemaIssues(raw: Raw, specific: Draft[]): Draft[] {
  // reportInput lets the formatter tell a missing key from a wrong one; inputs never reach the messages.
  const parsed = configSchema.safeParse(raw, { reportInput: true });
  if (parsed.success) return [];
  const source = '\u0000';
  const lines = formatIssues(parsed.error, source);
  const covered = specific.map((d) => renderPath(d.path));
  return parsed.error.issues.flatMap((iss, i) => {
    const path = iss.path.filter((p): p is string | number => typeof p !== 'symbol');
    const key = renderPath(path);
    if (covered.some((c) => key === c || key.startsWith(`${c}.`) || key.startsWith(`${c}[`))) return [];
    const text = lines[i]!.startsWith(`${source}: `) ? lines[i]!.slice(source.length + 2) : lines[i]!;
    return [{ ruleId: 'config-invalid' as const, path, message: text }];
  });
}

// ---------------------------------------------------------------------------------------
// Positions and fingerprints.

/** The line and column of the node at `path`, or of its nearest ancestor that exists. */
function positionOf(doc: Document, lc: LineCounter, path: Path): { line: number; col: number } {
  for (let n = path.length; n >= 0; n--) {
    const node = n === 0 ? doc.contents : (doc.getIn(path.slice(0, n), true) as { range?: [number, number, number] } | undefined);
    const range = (node as { range?: [number, number, number] } | null | undefined)?.range;
    if (range) return lc.linePos(range[0]);
  }
  return { line: 1, col: 1 };
}

/**
 * What identifies a finding across two versions of the file, so that `--base` can tell new
 * from old: the rule, the key path with array positions replaced by the element's id or name
 * (or, for elements without one, a digest of the element, so inserting an item does not make
 * every later one "new"), and a digest of the value the finding is about (so a changed
 * exception or a changed inline value counts as new). Digests, never values: a fingerprint
 * of an inline secret must not carry it.
 */
function fingerprint(raw: unknown, d: Draft): string {
  if (d.ruleId === 'config-invalid' && d.path.length === 0) return `${d.ruleId}\0${d.message}`;
  let node: unknown = raw;
  const parts: string[] = [];
  for (const seg of d.path) {
    const child = Array.isArray(node) && typeof seg === 'number' ? node[seg] : isObj(node) ? node[String(seg)] : undefined;
    if (typeof seg === 'number') {
      const id = isObj(child) ? (typeof child.id === 'string' ? child.id : typeof child.name === 'string' ? child.name : undefined) : undefined;
      parts.push(id !== undefined ? `[${JSON.stringify(id)}]` : `[#${digest(child)}]`);
    } else parts.push(`.${seg}`);
    node = child;
  }
  // config-invalid messages name positions (`nhis[2]`), which shift; the identity path above does not.
  const what = d.ruleId === 'config-invalid' ? d.message.replace(/^[^:]*: /, '') : '';
  return `${d.ruleId}\0${parts.join('')}\0${digest(node)}\0${what}`;
}

function digest(v: unknown): string {
  return createHash('sha256').update(v === undefined ? 'undefined' : canonicalJson(v)).digest('base64url').slice(0, 16);
}

// ---------------------------------------------------------------------------------------

function isObj(v: unknown): v is Raw {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function arr(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

function isDate(v: unknown): v is string {
  if (typeof v !== 'string' || !/^\d{4}-\d{2}-\d{2}$/.test(v)) return false;
  const d = new Date(`${v}T00:00:00Z`);
  return !Number.isNaN(d.getTime()) && d.toISOString().slice(0, 10) === v;
}

/** A duration as the schema reads it (`15m`, `1h`, seconds), or undefined. */
function seconds(v: unknown): number | undefined {
  const r = duration.safeParse(v);
  return r.success ? r.data : undefined;
}

/** The concrete paths and values a pattern with `*` segments reaches in `raw`. */
function expand(raw: unknown, pattern: readonly string[]): [Path, unknown][] {
  let frontier: [Path, unknown][] = [[[], raw]];
  for (const seg of pattern) {
    const next: [Path, unknown][] = [];
    for (const [p, v] of frontier) {
      if (seg === '*') {
        if (Array.isArray(v)) v.forEach((x, i) => next.push([[...p, i], x]));
        else if (isObj(v)) for (const [k, x] of Object.entries(v)) next.push([[...p, k], x]);
      } else if (isObj(v) && Object.hasOwn(v, seg)) next.push([[...p, seg], v[seg]]);
    }
    frontier = next;
  }
  return frontier;
}
