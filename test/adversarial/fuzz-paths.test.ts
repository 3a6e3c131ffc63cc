/**
 * Adversarial fuzzing: path normalization (src/proxy/path.ts `normalizePath`) and action
 * matching (src/proxy/actions.ts `ActionMatcher.matchHttp`), with two differential oracles
 * written here independently of the code under test:
 *
 * - RFC 3986 §5.2.4 `remove_dot_segments`, implemented literally (input and output buffers);
 * - WHATWG URL (`new URL(p, 'http://x').pathname`, Node's own implementation).
 *
 * Where normalizePath accepts a path, its result must equal each oracle's after the decodings
 * normalizePath documents (percent-encoded unreserved characters decoded, other encodings in
 * upper-case hex, RFC 3986 §2.3, §6.2.2.1-2). Where Mandate is deliberately stricter or
 * different, the difference is written down once, in DIFFERENCES below, and each property
 * applies exactly those. The refusals themselves are checked against an oracle written from
 * normalizePath's documented rules, so that a refusal the documentation does not announce (or
 * an acceptance it forbids) fails.
 *
 * Through the real proxy: for random raw request targets under an HTTP tool, what the recording
 * upstream receives is exactly the normalized path of an action the token holds, or nothing.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MAX_PATH_LENGTH, PathRefusedError, normalizePath } from '../../src/proxy/path.js';
import { ActionMatcher } from '../../src/proxy/actions.js';
import type { ActionConfig } from '../../src/core/config/index.js';
import { rawHttp, startTarget, type Target } from './harness.js';

/**
 * Where Mandate's normal form deliberately differs from the oracles (each property below says
 * which of these it applies):
 * 1. Repeated slashes are collapsed (`/a//b` → `/a/b`); RFC 3986 and WHATWG keep empty segments.
 *    Most servers collapse them, and the proxy must match the path the upstream will serve.
 * 2. A `..` climbing above the root is refused; RFC 3986 §5.2.4 and WHATWG clamp it to `/`.
 * 3. Percent-encoded unreserved characters are decoded (RFC 3986 §6.2.2.2); WHATWG keeps them.
 *    Other encodings are upper-cased (§6.2.2.1); WHATWG keeps their case.
 * 4. Refused, where WHATWG would encode, keep or reinterpret: characters outside `pchar`
 *    (WHATWG percent-encodes some, keeps others), `\` (WHATWG reads it as `/` in http URLs),
 *    encoded `/` `\` `%` and controls, bytes that are not UTF-8, dot segments with a `;`
 *    parameter (WHATWG keeps `..;x` as a segment; servlet containers resolve it), paths over
 *    MAX_PATH_LENGTH, non-ASCII. The oracle `documentedRefusals` lists these from the docs.
 */

// ------------------------------------------------------------------------------ oracles

const UNRESERVED_CHAR = /^[A-Za-z0-9\-._~]$/;
const PCHAR_OR_SLASH = /^[A-Za-z0-9\-._~!$&'()*+,;=:@/%]$/;

/** Difference 3: decode percent-encoded unreserved characters, upper-case the other encodings. */
function decodeUnreservedUpper(s: string): string {
  return s.replace(/%([0-9A-Fa-f]{2})/g, (_m, h: string) => {
    const c = String.fromCharCode(parseInt(h, 16));
    return UNRESERVED_CHAR.test(c) ? c : `%${h.toUpperCase()}`;
  });
}

/** Difference 1. */
const collapseSlashes = (s: string) => s.replace(/\/{2,}/g, '/');

/** RFC 3986 §5.2.4, step by step as written (2A to 2E). */
function removeDotSegments(path: string): string {
  let input = path;
  let output = '';
  const dropLastOutputSegment = () => {
    const k = output.lastIndexOf('/');
    output = k < 0 ? '' : output.slice(0, k);
  };
  while (input.length > 0) {
    if (input.startsWith('../')) input = input.slice(3); // A
    else if (input.startsWith('./')) input = input.slice(2); // A
    else if (input.startsWith('/./')) input = input.slice(2); // B
    else if (input === '/.') input = '/'; // B
    else if (input.startsWith('/../')) { // C
      input = input.slice(3);
      dropLastOutputSegment();
    } else if (input === '/..') { // C
      input = '/';
      dropLastOutputSegment();
    } else if (input === '.' || input === '..') input = ''; // D
    else { // E
      const seg = /^\/?[^/]*/.exec(input)![0];
      output += seg;
      input = input.slice(seg.length);
    }
  }
  return output;
}

/**
 * Every reason normalizePath's documentation gives for refusing `raw` (empty: it must be
 * accepted). Written from the doc comment of normalizePath, not from its code.
 */
function documentedRefusals(raw: string): RegExp[] {
  const why: RegExp[] = [];
  if (raw.length > MAX_PATH_LENGTH) why.push(/longer than/);
  if (!raw.startsWith('/')) why.push(/start with/);
  for (const ch of raw) {
    const c = ch.codePointAt(0)!;
    if (c < 0x20 || c === 0x7f) why.push(/control character/);
    else if (c > 0x7f) why.push(/non-ASCII/);
    else if (ch === '\\') why.push(/"\\"/);
    else if (!PCHAR_OR_SLASH.test(ch)) why.push(/is not allowed in a path/);
  }
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] !== '%') {
      bytes.push(raw.charCodeAt(i) & 0xff);
      continue;
    }
    const hex = raw.slice(i + 1, i + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) {
      why.push(/malformed percent-encoding/);
      continue;
    }
    const b = parseInt(hex, 16);
    if (b < 0x20 || b === 0x7f) why.push(/encoded control character/);
    if (b === 0x2f) why.push(/encoded "\/"/);
    if (b === 0x5c) why.push(/encoded "\\"/);
    if (b === 0x25) why.push(/%25/);
    bytes.push(b);
    i += 2;
  }
  if (why.length === 0) {
    let text: string | undefined;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(bytes));
    } catch {
      why.push(/not valid UTF-8/);
    }
    // A character NFKC or Windows best-fit mapping (∕ ⁄ to "/", ∖ to "\\") turns into path syntax.
    if (text !== undefined) {
      const syntax = (t: string) => [...t].filter((c) => './\\%;?#'.includes(c)).length;
      const folded = text.normalize('NFKC').replace(/[\u2215\u2044]/g, '/').replace(/\u2216/g, '\\');
      if (syntax(folded) !== syntax(text)) why.push(/Unicode compatibility normalization/);
    }
  }
  if (why.length > 0) return why;
  // Dot segments, read after decoding unreserved encodings (`%2e` is a dot).
  let depth = 0;
  for (const seg of decodeUnreservedUpper(raw).split('/').slice(1)) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (depth === 0) {
        why.push(/above the root/);
        break;
      }
      depth--;
      continue;
    }
    const param = /^(\.\.?)(;|%3B)/i.exec(seg);
    if (param) why.push(/dot segment with a path parameter/);
    depth++;
  }
  return why;
}

type Outcome = { ok: true; path: string } | { ok: false; message: string };
function attempt(raw: string): Outcome {
  try {
    return { ok: true, path: normalizePath(raw) };
  } catch (err) {
    assert.ok(err instanceof PathRefusedError, `only PathRefusedError may come out, got ${String(err)} for ${JSON.stringify(raw)}`);
    return { ok: false, message: err.message };
  }
}

/** The invariants of the normal form (normalizePath's doc comment). */
function assertNormalForm(out: string, raw: string): void {
  const at = `${JSON.stringify(raw)} → ${JSON.stringify(out)}`;
  assert.ok(out.startsWith('/'), `starts with "/": ${at}`);
  assert.ok(!out.includes('//'), `no repeated slash: ${at}`);
  for (const seg of out.split('/').slice(1)) assert.ok(seg !== '.' && seg !== '..', `no dot segment: ${at}`);
  assert.ok(!/%(2F|5C|25)/i.test(out), `no encoded "/", "\\" or "%": ${at}`);
  assert.ok(/^[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*$/.test(out), `only pchar and "/": ${at}`);
  for (const m of out.matchAll(/%(..)/g)) {
    assert.equal(m[1], m[1]!.toUpperCase(), `encodings in upper-case hex: ${at}`);
    assert.ok(!UNRESERVED_CHAR.test(String.fromCharCode(parseInt(m[1]!, 16))), `no encoded unreserved character: ${at}`);
    assert.ok(parseInt(m[1]!, 16) >= 0x20 && parseInt(m[1]!, 16) !== 0x7f, `no encoded control: ${at}`);
  }
  assert.ok(out.length <= raw.length, `never longer than the input: ${at}`);
  assert.equal(normalizePath(out), out, `idempotent: ${at}`);
}

// ------------------------------------------------------------------------------ generators

/**
 * What attackers put in a path segment (a segment combines one to three pieces). The first list
 * is accepted on its own (dots in every spelling, unreserved encodings in either case, valid
 * UTF-8, encoded unicode dots, sub-delims); the second is refused on its own.
 */
const ACCEPTED_PIECES = [
  '.', '..', '%2e', '%2E', '%2e%2e', '%2E%2e', '.%2e', '%2E.', '...', '..b', 'b.',
  '%e2%80%a4', '%E2%80%A5', '%ef%bc%8e', '%EF%BC%8F', '%c3%a9', '%C3%A9', '%f0%9f%98%80', '%3b', '%3B', '%20', '%3F', '%23',
  '%41', '%7e', '%7E', '%2d', '%5f', '%5F', '%30',
  ';', ':', '@', '!', '$', '&', "'", '(', ')', '*', '+', ',', '=', '~', '-', '_',
];
const REFUSED_PIECES = [
  '%c0%ae', '%C0%AE%C0%AE', '%c0%af', '%e0%80%ae', '%252e', '%252E%252e', '%252f',
  '..;', '..;x', '.;', '..%3b', '..%3Bjsessionid=1', '%2e%2e;', '%2e%2e%3B',
  '\\', '%5c', '%5C', '..\\', '%2f', '%2F', '%00', '%0a', '%0D%0A', '%09', '%7f', '%7F',
  '\u2024', '\uff0e', '%ed%a0%80', '%f4%90%80%80', '%ff', '%80', '%C3', 'é',
  '%25', '%', '%4', '%zz', '%g1',
  '?', '#', ' ', '"', '<', '>', '^', '`', '{', '|', '}', '[', ']', '\t', '\0', '\r\n', '\u007f',
];
const ATTACK_PIECES = [...ACCEPTED_PIECES, ...REFUSED_PIECES];
const WORDS = ['a', 'b', 'items', 'api', 'admin', '42', 'x.y', 'Items'];

const hexPair = fc.tuple(fc.constantFrom(...'0123456789abcdefABCDEF'), fc.constantFrom(...'0123456789abcdefABCDEF')).map(([a, b]) => `%${a}${b}`);
const piece = fc.oneof(
  { weight: 5, arbitrary: fc.constantFrom(...ACCEPTED_PIECES) },
  { weight: 5, arbitrary: fc.constantFrom(...WORDS) },
  { weight: 1, arbitrary: fc.constantFrom(...REFUSED_PIECES) },
  { weight: 1, arbitrary: hexPair },
  { weight: 1, arbitrary: fc.string({ unit: fc.constantFrom(...'az.%;~-_:@!'), maxLength: 4 }) },
);
const segment = fc.array(piece, { minLength: 1, maxLength: 3 }).map((ps) => ps.join(''));
const separator = fc.constantFrom('/', '/', '/', '/', '/', '/', '//', '/./', '\\', '%2f');

/** A path built from attack pieces: most start with "/", a few do not. */
const attackPath = fc.tuple(
  fc.constantFrom('/', '/', '/', '/', '//', '', '\\'),
  fc.array(fc.tuple(segment, separator), { maxLength: 7 }),
  segment,
  fc.constantFrom('', '', '/', '//', '/.', '/..'),
).map(([lead, body, last, tail]) => lead + body.map(([s, sep]) => s + sep).join('') + last + tail);

/** Paths near and past MAX_PATH_LENGTH, with dot segments that bring some back under it. */
const longPath = fc.tuple(fc.integer({ min: MAX_PATH_LENGTH - 8, max: MAX_PATH_LENGTH + 8 }), fc.constantFrom('a', '%2e', 'ab/..', '.', '%41')).map(([n, unit]) => {
  let p = '/';
  while (p.length < n) p += `${unit}/`;
  return p.slice(0, n);
});

/** Any string at all (the function must refuse it or return a normal form, nothing else). */
const anyString = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }).map((s) => `/${s}`),
  fc.string({ unit: fc.constantFrom(...'/.%2eEfF5cC\\;ab'), maxLength: 30 }).map((s) => `/${s}`),
  fc.string({ maxLength: 20 }),
);

const pathArb = fc.oneof({ weight: 6, arbitrary: attackPath }, { weight: 1, arbitrary: longPath }, { weight: 2, arbitrary: anyString });

// ------------------------------------------------------------------------------ properties

describe('fuzz: path normalization (normalizePath) against RFC 3986 and WHATWG', () => {
  it('refuses exactly what its documentation says, with one of the documented reasons, and throws nothing else', (t) => {
    let accepted = 0;
    let refused = 0;
    fc.assert(fc.property(pathArb, (raw) => {
      const got = attempt(raw);
      const reasons = documentedRefusals(raw);
      if (got.ok) {
        accepted++;
        assert.deepEqual(reasons.map(String), [], `accepted ${JSON.stringify(raw)} (→ ${got.path}) although the documentation refuses it`);
      } else {
        refused++;
        assert.ok(reasons.length > 0, `refused ${JSON.stringify(raw)} (${got.message}) for no documented reason`);
        assert.ok(reasons.some((r) => r.test(got.message)), `refused ${JSON.stringify(raw)} with "${got.message}", documented: ${reasons.join(' ')}`);
      }
    }), { numRuns: 4000 });
    t.diagnostic(`accepted ${accepted}, refused ${refused}`);
    assert.ok(accepted > 400 && refused > 400, 'the generator reaches both outcomes');
  });

  it('RFC 3986 §5.2.4 differential: an accepted path is remove_dot_segments of its decoded, slash-collapsed form (differences 1, 3)', () => {
    fc.assert(fc.property(pathArb, (raw) => {
      const got = attempt(raw);
      if (!got.ok) return;
      assert.equal(got.path, removeDotSegments(collapseSlashes(decodeUnreservedUpper(raw))), JSON.stringify(raw));
    }), { numRuns: 4000 });
  });

  it('WHATWG URL differential: an accepted path is the URL parser\'s pathname of its slash-collapsed form, after the documented decodings (differences 1, 3)', (t) => {
    let oracleBug = 0;
    fc.assert(fc.property(pathArb, (raw) => {
      const got = attempt(raw);
      if (!got.ok) return;
      const whatwg = new URL(collapseSlashes(raw), 'http://x').pathname;
      // Node's URL (Ada before ada-url/ada#936) leaves `..` after a segment that starts with a dot:
      // `/a/.b/..` stays as it is, which the WHATWG spec never outputs. Found by this property;
      // the oracle is wrong there, not Mandate (the RFC 3986 oracle above agrees with Mandate).
      if (whatwg.split('/').some((seg) => seg === '..' || seg === '.')) {
        oracleBug++;
        assert.equal(got.path, removeDotSegments(collapseSlashes(decodeUnreservedUpper(raw))), JSON.stringify(raw));
        return;
      }
      assert.equal(got.path, decodeUnreservedUpper(whatwg), JSON.stringify(raw));
    }), { numRuns: 4000, examples: [['/$/.a/a/..'], ['/a/.b/..']] });
    t.diagnostic(`paths on which Node's URL parser left a dot segment: ${oracleBug}`);
  });

  it('where the oracles clamp a climb above the root, Mandate refuses (difference 2)', () => {
    const climbing = fc.array(fc.constantFrom('a', 'b', '..', '..', '%2e%2e', '.%2E', '.', '%2e', ''), { minLength: 1, maxLength: 8 }).map((segs) => `/${segs.join('/')}`);
    let climbs = 0;
    fc.assert(fc.property(climbing, (raw) => {
      const reasons = documentedRefusals(raw);
      const got = attempt(raw);
      if (reasons.length === 0) return assert.ok(got.ok, JSON.stringify(raw));
      assert.deepEqual(reasons.map(String), [String(/above the root/)], JSON.stringify(raw));
      climbs++;
      assert.ok(!got.ok && /above the root/.test(got.message), JSON.stringify(raw));
      // Both oracles would have served something under "/" instead: the request is hostile or broken.
      assert.ok(removeDotSegments(collapseSlashes(decodeUnreservedUpper(raw))).startsWith('/'));
      assert.ok(new URL(collapseSlashes(raw), 'http://x').pathname.startsWith('/'));
    }), { numRuns: 2000 });
    assert.ok(climbs > 200, `climbs generated: ${climbs}`);
  });

  it('the normal form: idempotent, no dot segment, no "//", no encoded "/" "\\" "%" or control, upper-case hex, never longer', () => {
    fc.assert(fc.property(pathArb, (raw) => {
      const got = attempt(raw);
      if (got.ok) assertNormalForm(got.path, raw);
    }), { numRuns: 4000 });
  });

  it('decoding the normal form once more changes no segment boundary and adds no dot segment (no double-decoding surprise)', () => {
    fc.assert(fc.property(pathArb, (raw) => {
      const got = attempt(raw);
      if (!got.ok) return;
      // An upstream that percent-decodes the path it receives sees the same segments, none of them a dot.
      const decoded = decodeURIComponent(got.path);
      assert.equal(decoded.split('/').length, got.path.split('/').length, JSON.stringify(raw));
      for (const seg of decoded.split('/').slice(1)) assert.ok(seg !== '.' && seg !== '..', JSON.stringify(raw));
      assert.ok(!decoded.includes('\\') && !/[\x00-\x1f\x7f]/.test(decoded), JSON.stringify(raw));
    }), { numRuns: 3000 });
  });

  it('regressions and named attacks: each encoding attackers use, with its verdict', () => {
    const cases: Array<[string, string | RegExp]> = [
      ['/a/%2e%2e/b', '/b'],
      ['/a/%2E%2e/%2E/b', '/b'],
      ['/%2e%2e/admin', /above the root/],
      ['/items/%c0%ae%c0%ae/admin', /not valid UTF-8/],
      ['/items/%C0%AF', /not valid UTF-8/],
      ['/items/%e0%80%ae', /not valid UTF-8/],
      ['/items/%252e%252e/admin', /%25/],
      ['/items/..;/admin', /path parameter/],
      ['/items/..%3B/admin', /path parameter/],
      ['/items/.;x/admin', /path parameter/],
      ['/items\\..\\admin', /"\\"/],
      ['/items/%5c../admin', /%5C/],
      ['/items/%5C..%5Cadmin', /%5C/],
      ['/ITEMS/%2e%2E/a', '/a'],
      ['/a/%7e%7E', '/a/~~'],
      ['/a/%3b%3B', '/a/%3B%3B'],
      // Unicode dots are not dots to RFC 3986, but a tool that applies NFKC or best-fit mapping
      // reads them as ".": raw they are refused (not ASCII), encoded too; other non-ASCII passes.
      ['/items/\u2024\u2024/admin', /non-ASCII/],
      ['/items/\uff0e\uff0e/admin', /non-ASCII/],
      ['/items/%e2%80%a4%e2%80%a4', /Unicode compatibility normalization/],
      ['/items/%ef%bc%8e%ef%bc%8e', /Unicode compatibility normalization/],
      ['/items/%EF%BC%8F', /Unicode compatibility normalization/],
      ['/items/%E2%88%95admin', /Unicode compatibility normalization/],
      ['/items/%E2%88%96admin', /Unicode compatibility normalization/],
      ['/items/%EF%BC%85', /Unicode compatibility normalization/],
      ['/items/a%E2%80%A6', /Unicode compatibility normalization/],
      ['/items/..%EF%BC%9Bx/admin', /Unicode compatibility normalization/],
      ['/items/a%EF%BC%9Fb', /Unicode compatibility normalization/],
      ['/items/a%EF%BC%83b', /Unicode compatibility normalization/],
      ['/items/caf%c3%a9', '/items/caf%C3%A9'],
      ['/items/%E6%97%A5%E6%9C%AC', '/items/%E6%97%A5%E6%9C%AC'],
      ['/items/%00/admin', /control/],
      ['/items/\u0000', /control/],
      ['/items/%ed%a0%80', /not valid UTF-8/],
      ['/items/%f4%90%80%80', /not valid UTF-8/],
      [`/${'a'.repeat(MAX_PATH_LENGTH)}`, /longer than/],
      [`/${'a'.repeat(MAX_PATH_LENGTH - 1)}`, `/${'a'.repeat(MAX_PATH_LENGTH - 1)}`],
      [`/${'a/'.repeat(1023)}`, `/${'a/'.repeat(1023)}`],
      [`${'/a/..'.repeat(400)}/b`, '/b'],
      [`/${'%2e%2e/'.repeat(1)}${'a/'.repeat(100)}`, /above the root/],
    ];
    for (const [raw, want] of cases) {
      const got = attempt(raw);
      if (typeof want === 'string') assert.deepEqual(got, { ok: true, path: want }, JSON.stringify(raw));
      else assert.ok(!got.ok && want.test(got.message), `${JSON.stringify(raw)}: ${JSON.stringify(got)}`);
      // The oracles agree with each verdict.
      assert.equal(documentedRefusals(raw).length === 0, got.ok, JSON.stringify(raw));
    }
  });
});

// ------------------------------------------------------------------------------ matchHttp

const TEMPLATES: ActionConfig[] = [
  { name: 'list', method: 'GET', path: '/items', tier: 'read' },
  { name: 'list_slash', method: 'GET', path: '/items/', tier: 'read' },
  { name: 'get', method: 'GET', path: '/items/{id}', tier: 'read' },
  { name: 'mine', method: 'GET', path: '/items/mine', tier: 'read' },
  { name: 'sub', method: 'GET', path: '/items/{id}/parts/{part}', tier: 'read' },
  { name: 'any_parts', method: 'GET', path: '/{kind}/{id}/parts/x', tier: 'read' },
  { name: 'create', method: 'POST', path: '/items', tier: 'write' },
  { name: 'delete', method: 'DELETE', path: '/items/{id}', tier: 'destructive' },
  { name: 'root', method: 'GET', path: '/', tier: 'read' },
] as ActionConfig[];

/** matchHttp's documented choice, naively: same method, same segment count, literals equal, params non-empty; most specific wins. */
function oracleMatch(method: string, path: string): { name: string; params: Record<string, string> } | undefined {
  const parts = path.slice(1).split('/');
  const candidates = TEMPLATES.map((a, order) => ({ a, order, segs: a.path!.slice(1).split('/') }))
    .filter(({ a, segs }) => a.method === method && segs.length === parts.length
      && segs.every((s, i) => (/^\{\w+\}$/.test(s) ? parts[i] !== '' : s === parts[i])));
  if (candidates.length === 0) return undefined;
  const key = (c: (typeof candidates)[number]) => c.segs.map((s) => (/^\{/.test(s) ? '1' : '0')).join('');
  candidates.sort((x, y) => {
    const lx = x.segs.filter((s) => !/^\{/.test(s)).length;
    const ly = y.segs.filter((s) => !/^\{/.test(s)).length;
    if (lx !== ly) return ly - lx;
    if (key(x) !== key(y)) return key(x) < key(y) ? -1 : 1;
    return x.order - y.order;
  });
  const best = candidates[0]!;
  const params: Record<string, string> = {};
  best.segs.forEach((s, i) => {
    const m = /^\{(\w+)\}$/.exec(s);
    if (m) params[m[1]!] = decodeURIComponent(parts[i]!);
  });
  return { name: best.a.name, params };
}

describe('fuzz: action matching (ActionMatcher.matchHttp) on normalized paths', () => {
  const matcher = new ActionMatcher(TEMPLATES);
  const randomPath = fc.tuple(
    fc.array(fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom('items', 'items', 'mine', 'parts', 'x', 'Items', '%20', '%C3%A9', '%7e', '42', '', '.', '..') },
      { weight: 1, arbitrary: segment },
    ), { maxLength: 5 }),
    fc.boolean(),
  ).map(([segs, slash]) => `/${segs.join('/')}${slash ? '/' : ''}`);
  /** A template with its parameters filled (sometimes empty or a dot), sometimes with a trailing slash. */
  const templatePath = fc.tuple(
    fc.constantFrom(...TEMPLATES.map((a) => a.path!)),
    fc.array(fc.constantFrom('1', 'mine', 'items', 'parts', '', '%20', 'x.y', '%C3%A9', '.', '%2e', 'a;b'), { minLength: 2, maxLength: 2 }),
    fc.constantFrom('', '', '/'),
  ).map(([tpl, values, slash]) => {
    let i = 0;
    return tpl.replace(/\{\w+\}/g, () => values[i++]!) + slash;
  });
  const matchPath = fc.oneof(templatePath, randomPath);

  it('matches exactly the most specific template the documentation describes, on every normalized path', () => {
    let matched = 0;
    fc.assert(fc.property(fc.constantFrom('GET', 'GET', 'GET', 'POST', 'DELETE', 'get', 'HEAD', 'PUT'), matchPath, (method, raw) => {
      const got = attempt(raw);
      if (!got.ok) return;
      const m = matcher.matchHttp(method, got.path);
      const want = oracleMatch(method, got.path);
      if (want) matched++;
      assert.deepEqual(m ? { name: m.action.name, params: m.params } : undefined, want, `${method} ${got.path}`);
      // A template match never covers a dot segment, an empty parameter or another method.
      if (m) {
        assert.equal(m.action.method, method);
        for (const v of Object.values(m.params)) assert.ok(v !== '' && v !== '.' && v !== '..' && !v.includes('/'), `${method} ${got.path}`);
      }
    }), { numRuns: 3000 });
    assert.ok(matched > 300, `matches generated: ${matched}`);
  });
});

// ------------------------------------------------------------------------------ through the proxy

describe('fuzz: what the proxy forwards is what it authorized (raw request targets under an HTTP tool)', () => {
  let x: Target;
  let token: string;
  let host: string;
  before(async () => {
    x = await startTarget();
    token = await x.token(x.alice, 'rec', 'list_items get_item');
    host = new URL(x.iss).host;
  });
  after(async () => x.close());

  /** The tool's GET actions the token holds, as the proxy's matcher reads them. */
  const granted = new ActionMatcher([
    { name: 'list_items', method: 'GET', path: '/items', tier: 'read' },
    { name: 'get_item', method: 'GET', path: '/items/{id}', tier: 'read' },
  ] as ActionConfig[]);

  /**
   * A path the token may reach (`/items`, `/items/{id}`) or not, with noise inserted between
   * its segments: dot segments in every spelling, a segment and the `..` that cancels it,
   * repeated slashes, and pieces that are refused on their own.
   */
  const noise = fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom('.', '%2e', '%2E', 'x/..', 'x/%2e%2e', 'x/.%2E', '%2E./..', 'a/b/../..', '', 'items/..') },
    { weight: 1, arbitrary: fc.constantFrom('..', '%2e%2e', ...ACCEPTED_PIECES) },
    { weight: 1, arbitrary: fc.constantFrom(...REFUSED_PIECES.filter((p) => !['?', '#', ' ', '\r\n', '\t', '\0'].includes(p))) },
  );
  const target = fc.tuple(
    fc.constantFrom(['items'], ['items'], ['items', '42'], ['items', '42'], ['items', 'x%20y'], ['items', '%e2%80%a5'], ['%69tems', '7'], ['ITEMS'], ['admin'], ['items', '42', 'x']),
    fc.array(fc.tuple(fc.nat(3), noise), { maxLength: 3 }),
    fc.constantFrom('', '', '', '', '', '/', '/.', '/..', '//'),
  ).map(([base, inserts, tail]) => {
    const segs: string[] = [...base];
    // Before the last segment (mostly): the tail decides the trailing slash.
    for (const [at, n] of inserts) segs.splice(Math.min(at, segs.length - 1), 0, n);
    return `/${segs.join('/')}${tail}`;
  });

  it('the upstream receives /api + the normal form of a path matching a granted action, or nothing', async (t) => {
    let forwarded = 0;
    let refused = 0;
    await fc.assert(fc.asyncProperty(target, async (rest) => {
      x.rec.seen.length = 0;
      const r = await rawHttp(x.iss, [`GET /tools/rec${rest} HTTP/1.1`, `Host: ${host}`, `Authorization: Bearer ${token}`].join('\r\n'));
      const norm = attempt(rest);
      const expected = norm.ok && granted.matchHttp('GET', norm.path) ? `/api${norm.path}` : undefined;
      if (expected === undefined) {
        refused++;
        assert.deepEqual(x.rec.seen.map((s) => s.url), [], `${JSON.stringify(rest)} (${r.status}) must not reach the tool`);
        assert.ok(r.status >= 400, `${JSON.stringify(rest)}: ${r.status}`);
      } else {
        forwarded++;
        assert.equal(r.status, 200, `${JSON.stringify(rest)}: ${r.body}`);
        assert.deepEqual(x.rec.seen.map((s) => s.url), [expected], JSON.stringify(rest));
      }
    }), { numRuns: 300 });
    t.diagnostic(`forwarded ${forwarded}, refused ${refused}`);
    assert.ok(forwarded > 50 && refused > 50, 'both outcomes reached');
  });
});
