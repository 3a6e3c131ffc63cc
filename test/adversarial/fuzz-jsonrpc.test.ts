/**
 * Adversarial fuzzing: JSON-RPC parsing (src/proxy/jsonrpc.ts `parseJsonRpcBody`, `toolsCall`,
 * `filterToolsListResponse`; src/core/http.ts `hasDuplicateKeys`), each against an oracle
 * written here:
 *
 * - a recursive-descent JSON parser from RFC 8259 that keeps every member of every object, so
 *   it can say whether a text has duplicate member names at any depth, and how a parser that
 *   keeps the first, the last, or (Go's encoding/json) the last case-insensitive match reads it;
 * - the classification of a message from JSON-RPC 2.0 §4 and §5 (request, notification,
 *   response, or invalid), with Mandate's deliberate differences listed in DIFFERENCES;
 * - the MCP `tools/call` params (`name`, `arguments`) from the MCP spec, "Tools";
 * - an event-stream parser from the WHATWG HTML standard §9.2.6, reading what the proxy sends
 *   the agent after filtering `tools/list`.
 *
 * Through the real proxy: any body that reaches the MCP server has exactly one reading (no
 * duplicate member, also under Go's case-insensitive matching, a valid JSON-RPC message) and
 * calls only what the token may call.
 */
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { hasDuplicateKeys } from '../../src/core/http.js';
import { JsonRpcParseError, MAX_BATCH, UpstreamResponseError, filterToolsListResponse, parseJsonRpcBody, toolsCall } from '../../src/proxy/jsonrpc.js';
import { call, json, startTarget, type Target } from './harness.js';

// ------------------------------------------------------------------------------ the JSON oracle

type J = null | boolean | number | string | J[] | JObject;
/** An object as written: every member in order, duplicates kept. */
interface JObject {
  members: Array<[string, J]>;
}
const isObj = (v: J): v is JObject => v !== null && typeof v === 'object' && !Array.isArray(v);

class JsonSyntaxError extends Error {}

/** RFC 8259, by recursive descent. Throws JsonSyntaxError for anything that is not one JSON text. */
function parseJson(text: string): J {
  let i = 0;
  const fail = (why: string): never => {
    throw new JsonSyntaxError(`${why} at ${i}`);
  };
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++;
  };
  const str = (): string => {
    if (text[i] !== '"') fail('string expected');
    i++;
    let out = '';
    for (;;) {
      if (i >= text.length) fail('unterminated string');
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return out;
      }
      if (c < 0x20) fail('control character in string'); // §7: must be escaped
      if (c !== 0x5c) {
        out += text[i++];
        continue;
      }
      const e = text[i + 1];
      i += 2;
      const simple: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
      if (e !== undefined && e in simple) out += simple[e];
      else if (e === 'u' && /^[0-9A-Fa-f]{4}$/.test(text.slice(i, i + 4))) {
        out += String.fromCharCode(parseInt(text.slice(i, i + 4), 16));
        i += 4;
      } else fail('bad escape');
    }
  };
  const value = (): J => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const members: Array<[string, J]> = [];
      ws();
      if (text[i] === '}') {
        i++;
        return { members };
      }
      for (;;) {
        ws();
        const k = str();
        ws();
        if (text[i] !== ':') fail('":" expected');
        i++;
        members.push([k, value()]);
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return { members };
        }
        fail('"," or "}" expected');
      }
    }
    if (c === '[') {
      i++;
      const items: J[] = [];
      ws();
      if (text[i] === ']') {
        i++;
        return items;
      }
      for (;;) {
        items.push(value());
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return items;
        }
        fail('"," or "]" expected');
      }
    }
    if (c === '"') return str();
    for (const [lit, v] of [['true', true], ['false', false], ['null', null]] as const) {
      if (text.startsWith(lit, i)) {
        i += lit.length;
        return v;
      }
    }
    const m = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(i));
    if (!m) return fail('value expected');
    i += m[0].length;
    return Number(m[0]);
  };
  const v = value();
  ws();
  if (i !== text.length) fail('trailing text');
  return v;
}

/** Go's encoding/json folding of a member name onto a struct field: ASCII case, plus ſ (U+017F) ~ s and K (U+212A) ~ k. */
const goFold = (k: string) => k.toUpperCase().toLowerCase();

/** Whether some object, at any depth, has two members `same` considers one name. */
function hasDuplicates(v: J, same: (k: string) => string = (k) => k): boolean {
  if (Array.isArray(v)) return v.some((x) => hasDuplicates(x, same));
  if (!isObj(v)) return false;
  const seen = new Set<string>();
  for (const [k, x] of v.members) {
    if (seen.has(same(k))) return true;
    seen.add(same(k));
    if (hasDuplicates(x, same)) return true;
  }
  return false;
}

/** How a reader picks a member: the last of that exact name (JSON.parse), or the last whose name folds to it (Go, into a struct). */
function member(o: JObject, name: string, reader: 'exact' | 'go'): { has: boolean; value?: J } {
  const hits = o.members.filter(([k]) => (reader === 'exact' ? k === name : goFold(k) === goFold(name)));
  return hits.length === 0 ? { has: false } : { has: true, value: hits[hits.length - 1]![1] };
}

/** A JSON value as JSON.parse would give it (the last duplicate wins). */
function plain(v: J): unknown {
  if (Array.isArray(v)) return v.map(plain);
  if (!isObj(v)) return v;
  const o: Record<string, unknown> = {};
  for (const [k, x] of v.members) Object.defineProperty(o, k, { value: plain(x), enumerable: true, writable: true, configurable: true });
  return o;
}

// ------------------------------------------------------------------------------ JSON-RPC oracle

/**
 * DIFFERENCES: where Mandate deliberately departs from JSON-RPC 2.0 as written.
 * D1 A message with `method` and also `result` or `error` is refused (the spec does not say;
 *    two readers would classify it differently).
 * D2 A response's `error` must be an object; its `code` and `message` are not checked (§5.1
 *    requires an integer and a string): a response carries no call, the server judges it.
 * D3 An `id` that JSON.parse reads as ±Infinity (`1e400`) is refused: no one can echo it back.
 * D4 A batch of more than MAX_BATCH messages is refused.
 * D5 One invalid message refuses the whole batch (the spec answers each message on its own).
 * D6 Duplicate member names at any depth are refused (RFC 8259 §4 leaves them undefined), also
 *    names equal under Go's case folding, and a name that folds onto a JSON-RPC member without
 *    being it (`Method`, `ID`, `paramſ`): Go's encoding/json reads those as the member
 *    (CVE-2026-27896, GHSA-wvj2-96wp-fq3f, modelcontextprotocol/go-sdk#805).
 */
type Kind = 'request' | 'notification' | 'response' | 'invalid';

/** JSON-RPC 2.0 §4 and §5, read from the spec, on one message (exact member names). */
function specKind(m: J): { kind: Kind; d1?: boolean; d2?: boolean; d3?: boolean } {
  if (!isObj(m)) return { kind: 'invalid' };
  const get = (n: string) => member(m, n, 'exact');
  const jsonrpc = get('jsonrpc');
  if (!jsonrpc.has || jsonrpc.value !== '2.0') return { kind: 'invalid' };
  const id = get('id');
  const idOk = !id.has || id.value === null || typeof id.value === 'string' || typeof id.value === 'number';
  const d3 = id.has && typeof id.value === 'number' && !Number.isFinite(id.value);
  const method = get('method');
  const result = get('result');
  const error = get('error');
  if (method.has) {
    if (typeof method.value !== 'string' || !idOk) return { kind: 'invalid' };
    const params = get('params');
    if (params.has && !(Array.isArray(params.value) || isObj(params.value!))) return { kind: 'invalid' };
    return { kind: id.has ? 'request' : 'notification', d1: result.has || error.has, d3 };
  }
  if (!id.has || !idOk || result.has === error.has) return { kind: 'invalid' };
  if (error.has) {
    const e = error.value!;
    if (!isObj(e)) return { kind: 'invalid' };
    const code = member(e, 'code', 'exact');
    const message = member(e, 'message', 'exact');
    const wellFormed = code.has && Number.isInteger(code.value) && message.has && typeof message.value === 'string';
    return { kind: 'response', d2: !wellFormed, d3 };
  }
  return { kind: 'response', d3 };
}

const JSONRPC_MEMBERS = ['jsonrpc', 'id', 'method', 'params', 'result', 'error'];
/** D6: a member whose name folds onto a JSON-RPC member name (or, in tools/call params, onto `name`/`arguments`) without being it. */
function hasLookAlikeMember(m: J): boolean {
  if (!isObj(m)) return false;
  const envelope = m.members.some(([k]) => !JSONRPC_MEMBERS.includes(k) && JSONRPC_MEMBERS.some((n) => goFold(n) === goFold(k)));
  const params = member(m, 'params', 'exact').value;
  const inParams = member(m, 'method', 'exact').value === 'tools/call' && params !== undefined && isObj(params)
    && params.members.some(([k]) => !['name', 'arguments'].includes(k) && ['name', 'arguments'].some((n) => goFold(n) === goFold(k)));
  return envelope || inParams;
}

// ------------------------------------------------------------------------------ generators

/** A JSON text written the ways a sender may write it: any escape for any character, any whitespace. */
function render(v: unknown, rnd: () => number): string {
  const ws = () => [' ', '', '', '\n', '\t', '\r\n ', ''][Math.floor(rnd() * 7)]!;
  const s = (x: string) => `"${[...x].map((ch) => {
    const r = rnd();
    if (ch === '"' || ch === '\\') return r < 0.5 ? `\\${ch}` : `\\u00${ch.charCodeAt(0).toString(16)}`;
    if (ch.charCodeAt(0) < 0x20) return `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`;
    if (ch === '/' && r < 0.3) return '\\/';
    // \uXXXX per UTF-16 code unit (a surrogate pair is two escapes), hex in either case.
    if (r < 0.15) return Array.from({ length: ch.length }, (_, i) => ch.charCodeAt(i).toString(16).padStart(4, '0')).map((h) => `\\u${rnd() < 0.5 ? h.toUpperCase() : h}`).join('');
    return ch;
  }).join('')}"`;
  if (v instanceof RawJson) return v.text;
  if (Array.isArray(v)) return `[${ws()}${v.map((x) => `${ws()}${render(x, rnd)}${ws()}`).join(',')}]`;
  if (v instanceof Members) return `{${ws()}${v.list.map(([k, x]) => `${ws()}${s(k)}${ws()}:${ws()}${render(x, rnd)}`).join(`${ws()},`)}${ws()}}`;
  if (typeof v === 'string') return s(v);
  return JSON.stringify(v);
}
/** An object given as its member list (duplicates allowed), for render. */
class Members {
  constructor(readonly list: Array<[string, unknown]>) {}
}
/** A value given as text (numbers JSON.stringify cannot write, such as 1e400). */
class RawJson {
  constructor(readonly text: string) {}
}

const KEYS = ['a', 'b', 'name', 'Name', 'NAME', 'id', 'ID', 'method', 'Method', 'k', 'K', '\u212a', 's', '\u017f', '__proto__', 'constructor', '{"x":', 'é', 'e\u0301', '\ud83d\ude00', ''];
const leaf = fc.oneof(
  fc.constantFrom<unknown>(null, true, false, 0, -1, 1.5, 1e21, 'x', '', '{"a":1}', '"', '\\', '}', ']', ',', ':', 'ſ', '\u2028', '\u0000'),
  fc.string({ maxLength: 6 }),
  fc.integer(),
);
const { tree } = fc.letrec<{ tree: unknown; obj: Members; arr: unknown[] }>((tie) => ({
  tree: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, tie('obj'), tie('arr')),
  obj: fc.array(fc.tuple(fc.constantFrom(...KEYS), tie('tree')), { maxLength: 5 }).map((list) => new Members(list)),
  arr: fc.array(tie('tree'), { maxLength: 4 }),
}));
/** Random choices for render, as a fixed list read in a cycle (reproducible and shrinkable with the value). */
const choices = fc.array(fc.nat(99), { minLength: 32, maxLength: 32 }).map((xs) => {
  let i = 0;
  // A choice shrinks towards 0, which reads as 0.99 here: the plainest text (no escape, no whitespace).
  return () => (99 - xs[i++ % xs.length]!) / 100;
});
const jsonText = fc.tuple(tree, choices).map(([v, rnd]) => render(v, rnd));

/** Mostly (`usual` times in `usual + 1`) one of `common`, sometimes one of `odd`. */
const mostly = <T>(common: T[], odd: T[], usual = 6) => fc.oneof({ weight: usual, arbitrary: fc.constantFrom(...common) }, { weight: 1, arbitrary: fc.constantFrom(...odd) });
const TOOLS = ['search_docs', 'delete_space', 'create_page', 'Search_docs', 'search_docs ', 'search\u200bdocs'];
/** tools/call params (`name`, `arguments`), sometimes with a second name or a look-alike member. */
const callParams = (firstName: fc.Arbitrary<string>) => fc.tuple(
    firstName, fc.constantFrom(...TOOLS), fc.constantFrom('name', 'Name', 'NAME', 'n\u0061me', 'arguments', 'Arguments'),
    fc.oneof(fc.constant(undefined), mostly<unknown>([new Members([]), new Members([['q', 'a']])], [null, 'x', [], new Members([['amount', 1], ['AMOUNT', 1000000]])])),
    fc.nat(7),
  )
    .map(([n1, n2, second, args, shape]) => new Members([
      ['name', n1],
      ...(shape === 1 ? [[second, n2] as [string, unknown]] : []),
      ...(args === undefined ? [] : [['arguments', args] as [string, unknown]]),
      ...(shape === 2 ? [['argumentſ', new Members([['q', 'other']])] as [string, unknown]] : []),
    ]));
const paramsValue = fc.oneof(fc.constantFrom<unknown>(null, 'x', 1, [], new Members([])), callParams(fc.constantFrom(...TOOLS, 'search_docs', 'search_docs')));
/**
 * One JSON-RPC message built from members that are right, wrong, missing, repeated or
 * look-alikes; `usual` weighs the right ones against the odd ones.
 */
const messageOf = (usual: number) => fc.record({
  jsonrpc: mostly<unknown>(['2.0'], [undefined, '2', 2, '1.0', null], usual),
  id: mostly<unknown>([1, 'a', null, 0, -7, 2.5, undefined], [true, new Members([]), [1], new RawJson('1e400'), new RawJson('-1E999')], usual),
  method: fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom<unknown>('tools/call', 'tools/call', 'ping', 'tools/list', 'notifications/initialized', 'rpc.discover') },
    { weight: 2, arbitrary: fc.constant(undefined) },
    { weight: 1, arbitrary: fc.constantFrom<unknown>(1, null, ['tools/call']) },
  ),
  params: fc.oneof(fc.constant(undefined), paramsValue),
  result: mostly<unknown>([undefined], [new Members([]), null, 1, []], usual),
  error: mostly<unknown>([undefined], [new Members([['code', -32600], ['message', 'x']]), new Members([['code', 'x']]), new Members([['message', 'x']]), new Members([]), null, 'x'], usual),
  extra: mostly<Array<[string, unknown]>>([[]], [[['Method', 'tools/call']], [['ID', 2]], [['method', 'ping']], [['PARAMS', new Members([['name', 'delete_space']])]], [['paramſ', new Members([['name', 'delete_space']])]], [['x', 1]]], usual),
  order: fc.nat(),
}).map((r) => {
  const list: Array<[string, unknown]> = [];
  for (const k of ['jsonrpc', 'id', 'method', 'params', 'result', 'error'] as const) if (r[k] !== undefined) list.push([k, r[k]]);
  list.push(...r.extra);
  // A rotation of the members: order must not matter to a correct reader.
  const n = list.length === 0 ? 0 : r.order % list.length;
  return new Members([...list.slice(n), ...list.slice(0, n)]);
});
const bodyOf = (usual: number) => fc.tuple(
  fc.oneof({ weight: 4, arbitrary: messageOf(usual) }, { weight: 1, arbitrary: fc.array(messageOf(usual), { minLength: 0, maxLength: 4 }) }),
  choices,
).map(([v, rnd]) => render(v, rnd));
const bodyText = bodyOf(6);

/**
 * For the proxy: messages the token may send (a tools/call of search_docs, ping, tools/list, the
 * initialized notification, an answer to a server request), with the same odd members now and
 * then, and some of bodyText's; one in five bodies a batch.
 */
const LOOK_ALIKES: Array<Array<[string, unknown]>> = [[['Method', 'tools/call']], [['ID', 2]], [['PARAMS', new Members([['name', 'delete_space']])]], [['paramſ', new Members([['name', 'delete_space']])]], [['x', 1]]];
const allowedMessage = fc.tuple(
  fc.oneof(
    { weight: 4, arbitrary: fc.tuple(fc.constantFrom<unknown>(1, 'a', 7), fc.oneof({ weight: 3, arbitrary: callParams(fc.constant('search_docs')) }, { weight: 1, arbitrary: paramsValue })).map(([id, params]): Array<[string, unknown]> => [['jsonrpc', '2.0'], ['id', id], ['method', 'tools/call'], ['params', params]]) },
    { weight: 1, arbitrary: fc.constantFrom<Array<[string, unknown]>>(
      [['jsonrpc', '2.0'], ['id', 2], ['method', 'ping']],
      [['jsonrpc', '2.0'], ['id', 3], ['method', 'tools/list'], ['params', new Members([])]],
      [['jsonrpc', '2.0'], ['method', 'notifications/initialized']],
      [['jsonrpc', '2.0'], ['id', 'srv-1'], ['result', new Members([])]],
    ) },
  ),
  mostly<Array<[string, unknown]>>([[]], LOOK_ALIKES, 4),
).map(([list, extra]) => new Members([...list, ...extra]));
const proxyBody = fc.tuple(
  fc.oneof(
    { weight: 6, arbitrary: allowedMessage },
    { weight: 1, arbitrary: messageOf(6) },
    { weight: 2, arbitrary: fc.array(fc.oneof({ weight: 4, arbitrary: allowedMessage }, { weight: 1, arbitrary: messageOf(6) }), { minLength: 1, maxLength: 3 }) },
  ),
  choices,
).map(([v, rnd]) => render(v, rnd));

type Parsed = { ok: true; kinds: string[] } | { ok: false; rpcCode: number };
function mandate(text: string): Parsed {
  try {
    return { ok: true, kinds: parseJsonRpcBody(text, 1 << 20).messages.map((m) => m.kind) };
  } catch (err) {
    assert.ok(err instanceof JsonRpcParseError, String(err));
    return { ok: false, rpcCode: err.rpcCode };
  }
}

// ------------------------------------------------------------------------------ properties

describe('fuzz: duplicate member names (hasDuplicateKeys) against a recursive-descent parser', () => {
  it('the oracle parser accepts exactly what JSON.parse accepts, and reads the same value', () => {
    fc.assert(fc.property(fc.oneof(jsonText, jsonText.map((t) => t.slice(0, Math.floor(t.length / 2))), fc.string({ unit: fc.constantFrom(...'{}[]",:\\ u0a1.e-tn'), maxLength: 12 })), (text) => {
      let theirs: unknown;
      let ok = true;
      try {
        theirs = JSON.parse(text);
      } catch {
        ok = false;
      }
      let mine: J | undefined;
      try {
        mine = parseJson(text);
      } catch (err) {
        assert.ok(err instanceof JsonSyntaxError);
      }
      assert.equal(mine !== undefined, ok, JSON.stringify(text));
      if (mine !== undefined) assert.deepEqual(plain(mine), theirs, JSON.stringify(text));
    }), { numRuns: 3000 });
  });

  it('hasDuplicateKeys says exactly whether some object, at any depth, repeats a member name after unescaping', (t) => {
    let dups = 0;
    fc.assert(fc.property(jsonText, (text) => {
      const want = hasDuplicates(parseJson(text));
      if (want) dups++;
      assert.equal(hasDuplicateKeys(text), want, JSON.stringify(text));
    }), { numRuns: 5000 });
    t.diagnostic(`with duplicates: ${dups}`);
    assert.ok(dups > 500, `duplicates generated: ${dups}`);
  });
});

describe('fuzz: JSON-RPC classification (parseJsonRpcBody) against JSON-RPC 2.0 §4, §5', () => {
  it('each body is classified as the spec says, or refused for a documented difference', (t) => {
    const seen: Record<string, number> = {};
    fc.assert(fc.property(bodyText, (text) => {
      const got = mandate(text);
      const tree = parseJson(text);
      const dup = hasDuplicates(tree) || hasDuplicates(tree, goFold);
      const messages = Array.isArray(tree) ? tree : [tree];
      const spec = messages.map(specKind);
      const lookAlike = messages.some(hasLookAlikeMember);
      const at = JSON.stringify(text);
      if (dup || lookAlike) {
        seen.d6 = (seen.d6 ?? 0) + 1;
        return assert.deepEqual(got, { ok: false, rpcCode: -32600 }, `D6: ${at}`);
      }
      if (Array.isArray(tree) && (tree.length === 0 || tree.length > MAX_BATCH)) return assert.deepEqual(got, { ok: false, rpcCode: -32600 }, at);
      // D5: any invalid message (the spec's, or D1/D3) refuses the body.
      const refusedBy = spec.map((s) => (s.kind === 'invalid' ? 'spec' : s.d1 ? 'd1' : s.d3 ? 'd3' : undefined));
      if (refusedBy.some((r) => r !== undefined)) {
        for (const r of refusedBy) if (r) seen[r] = (seen[r] ?? 0) + 1;
        return assert.deepEqual(got, { ok: false, rpcCode: -32600 }, at);
      }
      // D2: Mandate does not look inside a response's error object.
      if (spec.some((s) => s.d2)) seen.d2 = (seen.d2 ?? 0) + 1;
      assert.deepEqual(got, { ok: true, kinds: spec.map((s) => s.kind) }, at);
      for (const k of spec) seen[k.kind] = (seen[k.kind] ?? 0) + 1;
    }), { numRuns: 4000, examples: [
      // Shrunk counterexamples (found by this property): Go's encoding/json reads `Name`, `paramſ`
      // and `Method` as `name`, `params` and `method`, so the MCP server calls delete_space, or
      // takes a "response" for a tools/call request.
      ['{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs","Name":"delete_space"}}'],
      ['{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs"},"paramſ":{"name":"delete_space"}}'],
      ['{"jsonrpc":"2.0","id":1,"result":{},"Method":"tools/call","PARAMS":{"name":"delete_space"}}'],
      ['{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"refund","arguments":{"amount":1,"AMOUNT":1000000}}}'],
    ] });
    t.diagnostic(JSON.stringify(seen));
    const least: Record<string, number> = { request: 200, notification: 30, response: 30, spec: 500, d1: 100, d2: 5, d3: 10, d6: 200 };
    for (const [k, n] of Object.entries(least)) assert.ok((seen[k] ?? 0) > n, `${k} reached: ${JSON.stringify(seen)}`);
  });

  it('toolsCall: name and arguments exactly as the MCP spec\'s tools/call params say, else -32602', () => {
    fc.assert(fc.property(bodyText, (text) => {
      const got = mandate(text);
      if (!got.ok) return;
      for (const msg of parseJsonRpcBody(text, 1 << 20).messages) {
        if (msg.kind === 'response') continue;
        let mine: { name: string; arguments: Record<string, unknown> } | number;
        try {
          mine = toolsCall(msg);
        } catch (err) {
          assert.ok(err instanceof JsonRpcParseError);
          mine = err.rpcCode;
        }
        if (msg.method !== 'tools/call') {
          assert.equal(mine, -32600);
          continue;
        }
        const p = msg.params as Record<string, unknown> | unknown[] | undefined;
        const valid = p !== null && typeof p === 'object' && !Array.isArray(p) && typeof p.name === 'string'
          && (p.arguments === undefined || (p.arguments !== null && typeof p.arguments === 'object' && !Array.isArray(p.arguments)));
        if (!valid) assert.equal(mine, -32602, text);
        else assert.deepEqual(mine, { name: (p as Record<string, unknown>).name, arguments: (p as Record<string, unknown>).arguments ?? {} }, text);
      }
    }), { numRuns: 2000 });
  });

  it('an accepted body has exactly one reading: first-wins, last-wins and Go readers see the same messages', () => {
    fc.assert(fc.property(bodyText, (text) => {
      if (!mandate(text).ok) return;
      const tree = parseJson(text);
      assert.ok(!hasDuplicates(tree), `exact duplicates in ${text}`);
      assert.ok(!hasDuplicates(tree, goFold), `case-folded duplicates in ${text}`);
      for (const m of Array.isArray(tree) ? tree : [tree]) {
        assert.ok(isObj(m));
        for (const n of JSONRPC_MEMBERS) assert.deepEqual(member(m, n, 'go'), member(m, n, 'exact'), `${n} in ${text}`);
        const params = member(m, 'params', 'exact').value;
        if (member(m, 'method', 'exact').value === 'tools/call' && params !== undefined && isObj(params)) {
          for (const n of ['name', 'arguments']) assert.deepEqual(member(params, n, 'go'), member(params, n, 'exact'), `params.${n} in ${text}`);
        }
      }
    }), { numRuns: 3000 });
  });
});

// ------------------------------------------------------------------------------ tools/list filtering

/** WHATWG HTML §9.2.6, as an EventSource client reads a stream: the data of each dispatched event. */
function sseEvents(text: string): string[] {
  const src = text.startsWith('\ufeff') ? text.slice(1) : text;
  const out: string[] = [];
  let data: string[] | undefined;
  let pos = 0;
  for (;;) {
    const m = /\r\n|\r|\n/.exec(src.slice(pos));
    if (!m) break; // the rest is an incomplete line: never processed
    const line = src.slice(pos, pos + m.index);
    pos += m.index + m[0].length;
    if (line === '') {
      if (data !== undefined) out.push(data.join('\n'));
      data = undefined;
      continue;
    }
    if (line.startsWith(':')) continue;
    const c = line.indexOf(':');
    const field = c < 0 ? line : line.slice(0, c);
    let value = c < 0 ? '' : line.slice(c + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') (data ??= []).push(value);
  }
  return out;
}

describe('fuzz: filterToolsListResponse never lets a refused tool through (JSON and event streams, any framing)', () => {
  const allowed = (n: string) => n === 'search_docs' || n === 'list_pages';
  const toolEntry = fc.oneof(
    fc.constantFrom(...TOOLS, 'list_pages', 'ѕearch_docs').map((name) => new Members([['name', name], ['description', `the ${name} tool`]])),
    fc.constantFrom<unknown>(null, 'search_docs', 5, new Members([['title', 'delete_space']]), new Members([['name', 5]]), [new Members([['name', 'delete_space']])]),
    // Two readers of these disagree on the name: the filter must refuse the body.
    fc.constantFrom(new Members([['name', 'search_docs'], ['name', 'delete_space']]), new Members([['name', 'delete_space'], ['n\u0061me', 'search_docs']])),
  );
  const listMessage = fc.tuple(fc.array(toolEntry, { maxLength: 5 }), fc.constantFrom<unknown>(1, 'x', null)).map(([tools, id]) => new Members([['jsonrpc', '2.0'], ['id', id], ['result', new Members([['tools', tools]])]]));
  const otherMessage = fc.constantFrom(
    new Members([['jsonrpc', '2.0'], ['method', 'notifications/progress'], ['params', new Members([['progress', 1]])]]),
    new Members([['jsonrpc', '2.0'], ['id', 2], ['result', new Members([['content', [new Members([['type', 'text'], ['text', 'delete_space']])]]])]]),
    new Members([['jsonrpc', '2.0'], ['id', 3], ['result', new Members([['tools', 'not a list']])]]),
  );
  const message = fc.oneof({ weight: 3, arbitrary: listMessage }, { weight: 1, arbitrary: otherMessage }, { weight: 1, arbitrary: fc.array(fc.oneof(listMessage, otherMessage), { minLength: 1, maxLength: 3 }) });

  /** A JSON body, or an event stream of such messages with random framing. */
  const responseArb = fc.oneof(
    fc.tuple(message, choices, fc.constantFrom('application/json', 'Application/JSON; charset=utf-8')).map(([m, rnd, type]) => ({ type, body: render(m, rnd) })),
    fc.tuple(
      fc.array(fc.tuple(message, fc.constantFrom('', 'event: message\n', 'id: 7\n', ': comment\n', 'retry: 10\n', 'foo: bar\n', 'data\n'), fc.constantFrom('data: ', 'data:', 'data:  '), fc.boolean()), { minLength: 1, maxLength: 4 }),
      fc.constantFrom('\n', '\r\n', '\r'),
      fc.boolean(),
      fc.boolean(),
      choices,
    ).map(([events, eol, bom, unterminated, rnd]) => {
      let body = bom ? '\ufeff' : '';
      events.forEach(([m, pre, dataPrefix, pretty], i) => {
        const text = pretty ? JSON.stringify(JSON.parse(render(m, rnd)), null, 1) : render(m, rnd).replace(/[\r\n]/g, ' ');
        body += pre.replace(/\n/g, eol);
        // A multi-line JSON text becomes several data lines, joined again with "\n" by the client.
        for (const line of text.split('\n')) body += `${dataPrefix}${line}${eol}`;
        if (!(unterminated && i === events.length - 1)) body += eol;
      });
      return { type: 'text/event-stream', body };
    }),
  );

  it('every tool the agent reads from the answer is one it may call; the ones it may call are all kept', (t) => {
    let filtered = 0;
    let refused = 0;
    fc.assert(fc.property(responseArb, ({ type, body }) => {
      let out: string;
      try {
        out = filterToolsListResponse(body, type, allowed);
      } catch (err) {
        assert.ok(err instanceof UpstreamResponseError, String(err));
        refused++;
        // Fail closed only for a reason: duplicate names, or data that is not JSON.
        const texts = type === 'text/event-stream' ? sseEvents(body).filter((d) => d !== '') : [body];
        assert.ok(texts.some((d) => {
          try {
            return hasDuplicates(parseJson(d));
          } catch {
            return true;
          }
        }), `refused for no reason: ${JSON.stringify(body)}`);
        return;
      }
      filtered++;
      const inTexts = type === 'text/event-stream' ? sseEvents(body) : [body];
      const outTexts = type === 'text/event-stream' ? sseEvents(out) : [out];
      assert.equal(outTexts.length, inTexts.length, 'every event the client would see is still there, no more');
      outTexts.forEach((d, i) => {
        if (d === '') return assert.equal(inTexts[i], '');
        const tree = parseJson(d);
        assert.ok(!hasDuplicates(tree), 'one reading');
        const toolsOf = (v: J): unknown[] => {
          const msgs = Array.isArray(v) ? v : [v];
          return msgs.flatMap((m) => {
            const r = isObj(m) ? member(m, 'result', 'exact').value : undefined;
            const tools = r !== undefined && isObj(r) ? member(r, 'tools', 'exact').value : undefined;
            return Array.isArray(tools) ? tools.map(plain) : [];
          });
        };
        const names = (ts: unknown[]) => ts.map((x) => (x !== null && typeof x === 'object' && !Array.isArray(x) ? (x as { name?: unknown }).name : undefined));
        const after = names(toolsOf(tree));
        for (const n of after) assert.ok(typeof n === 'string' && allowed(n), `${JSON.stringify(n)} passed in ${d}`);
        const before = names(toolsOf(parseJson(inTexts[i]!))).filter((n) => typeof n === 'string' && allowed(n));
        assert.deepEqual(after, before, 'the tools the agent may call are all kept, in order');
        // Everything else in the message is as the tool sent it.
        const strip = (v: unknown): unknown => JSON.parse(JSON.stringify(v, (k, x) => (k === 'tools' && Array.isArray(x) ? '…' : x)));
        assert.deepEqual(strip(plain(tree)), strip(plain(parseJson(inTexts[i]!))));
      });
    }), { numRuns: 2000 });
    t.diagnostic(`filtered ${filtered}, refused ${refused}`);
    assert.ok(filtered > 500 && refused > 100, `both outcomes (filtered ${filtered}, refused ${refused})`);
  });
});

// ------------------------------------------------------------------------------ through the proxy

describe('fuzz: through the proxy, what reaches the MCP server has one reading and calls only what the token may call', () => {
  let x: Target;
  let bob: string;
  before(async () => {
    x = await startTarget();
    bob = await x.token(x.bob, 'mrec', 'search_docs');
  });
  after(async () => x.close());
  beforeEach(() => {
    x.mrec.seen.length = 0;
  });
  const post = (body: string) => call(x.iss, '/tools/mrec', {
    method: 'POST', headers: { authorization: `Bearer ${bob}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body,
  });

  it('regression: look-alike members Go reads as the real ones are refused, and nothing reaches the server', async () => {
    for (const body of [
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs","Name":"delete_space"}}',
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs","NAME":"delete_space","arguments":{}}}',
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs"},"paramſ":{"name":"delete_space"}}',
      '{"jsonrpc":"2.0","id":1,"result":{},"Method":"tools/call","Params":{"name":"delete_space"}}',
      '{"jsonrpc":"2.0","method":"tools/call","params":{"name":"search_docs","arguments":{"q":"a","Q":"b"}}}',
      '[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"search_docs"},"METHOD":"x"}]',
    ]) {
      const r = await post(body);
      assert.equal(r.status, 400, `${body}: ${r.status} ${r.body}`);
      assert.equal(json(r)?.error?.code, -32600, body);
    }
    assert.deepEqual(x.mrec.seen, []);
  });

  it('a body that is not UTF-8 is refused (RFC 8259 §8.1): decoders replace bad bytes differently', async () => {
    await fc.assert(fc.asyncProperty(fc.constantFrom([0xf0, 0x9f], [0xff], [0xc0, 0xae], [0xed, 0xa0, 0x80], [0xe2, 0x82]), fc.constantFrom('q', 'name'), async (bad, where) => {
      x.mrec.seen.length = 0;
      const [head, tail] = where === 'q'
        ? ['{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs","arguments":{"q":"a', '"}}}']
        : ['{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs', '","arguments":{}}}'];
      const body = Buffer.concat([Buffer.from(head), Buffer.from(bad), Buffer.from(tail)]);
      const r = await call(x.iss, '/tools/mrec', { method: 'POST', headers: { authorization: `Bearer ${bob}`, 'content-type': 'application/json' }, body });
      assert.equal(r.status, 400, r.body);
      assert.deepEqual(x.mrec.seen, []);
    }), { numRuns: 20 });
  });

  it('random bodies: whatever reaches the server is one valid message per reading, calling only search_docs', async (t) => {
    let reached = 0;
    await fc.assert(fc.asyncProperty(proxyBody, async (text) => {
      x.mrec.seen.length = 0;
      const r = await post(text);
      if (x.mrec.seen.length === 0) {
        assert.ok(r.status >= 400 || json(r)?.error !== undefined || (Array.isArray(json(r)) && json(r).every((e: { error?: unknown }) => e.error)), `${r.status} ${r.body}`);
        return;
      }
      reached++;
      assert.equal(x.mrec.seen.length, 1);
      const got = x.mrec.seen[0]!.body;
      assert.equal(got, text, 'the server gets the bytes the proxy read');
      const tree = parseJson(got);
      assert.ok(!hasDuplicates(tree) && !hasDuplicates(tree, goFold), `two readings reached the server: ${got}`);
      for (const m of Array.isArray(tree) ? tree : [tree]) {
        const s = specKind(m);
        assert.ok(s.kind !== 'invalid' && !s.d1 && !s.d3, `invalid JSON-RPC reached the server: ${got}`);
        assert.ok(!hasLookAlikeMember(m), `a look-alike member reached the server: ${got}`);
        for (const reader of ['exact', 'go'] as const) {
          if (!isObj(m) || member(m, 'method', reader).value !== 'tools/call') continue;
          const p = member(m, 'params', reader).value;
          const name = p !== undefined && isObj(p) ? member(p, 'name', reader).value : undefined;
          assert.equal(name, 'search_docs', `${reader} reader: the server is asked to call ${JSON.stringify(name)}: ${got}`);
        }
      }
    }), { numRuns: 300 });
    t.diagnostic(`reached ${reached}`);
    assert.ok(reached > 80, `reached ${reached}`);
  });
});
