import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import {
  Router, createLogger, hasDuplicateKeys, parseJsonObject, resolveSecret, secretEquals, stripQuery, traceIdFrom, toHttpError,
  OAuthError, ValidationError,
  newSortableId,
  newTraceId,
  randomHex,
} from '../src/core/index.js';

describe('logger redaction', () => {
  it('never writes tokens, proofs, assertions or secrets', () => {
    const lines: string[] = [];
    const dest = new Writable({ write(chunk, _enc, cb) { lines.push(String(chunk)); cb(); } });
    const log = createLogger({ level: 'info', destination: dest as never });
    log.info({
      authorization: 'Bearer eyJSECRET1', dpop: 'eyJSECRET2', subject_token: 'eyJSECRET3', client_assertion: 'eyJSECRET4',
      headers: { authorization: 'DPoP eyJSECRET5', dpop: 'eyJSECRET6', cookie: 'sid=SECRET7' },
      req: { method: 'GET', url: '/tools/x?api_key=SECRET8', headers: { authorization: 'SECRET9' } },
      body: { client_secret: 'SECRET10', password: 'SECRET11', token: 'SECRET12' },
    }, 'request');
    const text = lines.join('');
    assert.match(text, /"msg":"request"/);
    assert.doesNotMatch(text, /SECRET/);
    assert.match(text, /\[redacted\]/);
    assert.match(text, /"url":"\/tools\/x"/);
  });
  it('strips query strings from logged URLs', () => {
    assert.equal(stripQuery('/a/b?token=x'), '/a/b');
    assert.equal(stripQuery('/a'), '/a');
  });
});

describe('JSON at trust boundaries', () => {
  it('finds duplicate member names at any depth (RFC 8259 §4, RFC 8725 §2.9)', () => {
    assert.equal(hasDuplicateKeys('{"a":1,"a":2}'), true);
    assert.equal(hasDuplicateKeys('{"x":{"a":1,"b":{"c":1,"c":2}}}'), true);
    assert.equal(hasDuplicateKeys('{"a":"\\"a\\"","b":1}'), false);
    assert.equal(hasDuplicateKeys('{"a":[{"k":1},{"k":2}],"b":{"k":3}}'), false);
    assert.equal(hasDuplicateKeys('{"\\u0061":1,"a":2}'), true, 'escaped names are compared decoded');
    assert.equal(hasDuplicateKeys('{"a\\\\":1,"a":2}'), false, 'an escaped backslash ends before the closing quote');
    assert.equal(hasDuplicateKeys('{"v":"x\\\\","v":1}'), true, 'a value ending in an escaped backslash closes there');
    assert.equal(hasDuplicateKeys('{"s":"}{,\\"s\\":","t":1}'), false, 'structure inside strings is not structure');
  });
  it('accepts only objects', () => {
    assert.throws(() => parseJsonObject('[1]'), ValidationError);
    assert.throws(() => parseJsonObject('nope'), ValidationError);
    assert.deepEqual(parseJsonObject('{"a":1}'), { a: 1 });
  });
});

describe('secrets', () => {
  it('resolves env: and file: references and refuses inline values', () => {
    assert.equal(resolveSecret('env:X', { X: 'v' }), 'v');
    assert.throws(() => resolveSecret('env:MISSING', {}), /not set/);
    assert.throws(() => resolveSecret('plaintext', {}), /reference/);
  });
  it('compares in constant time regardless of length', () => {
    assert.equal(secretEquals('abc', 'abc'), true);
    assert.equal(secretEquals('abc', 'abcd'), false);
  });
});

describe('router', () => {
  it('prefers literal segments, decodes params, reports allowed methods', () => {
    const r = new Router();
    const hit: string[] = [];
    r.get('/nhis/:id', () => void hit.push('param'));
    r.get('/nhis/export', () => void hit.push('literal'));
    r.add('POST', '/tools/:tool/*', () => void hit.push('wild'));
    assert.equal(r.match('GET', '/nhis/export').handler !== undefined, true);
    void r.match('GET', '/nhis/export').handler!({} as never);
    assert.deepEqual(hit, ['literal']);
    assert.deepEqual(r.match('GET', '/nhis/a%2Fb').params, { id: 'a/b' });
    assert.deepEqual(r.match('POST', '/tools/t/a/b').params, { tool: 't', '*': 'a/b' });
    assert.deepEqual(r.match('DELETE', '/nhis/x').allowed, ['GET']);
    assert.equal(r.match('GET', '/nope').handler, undefined);
  });

  it('gives the answer of a walk over every route, whatever the first segment (routes indexed by it)', () => {
    const r = new Router();
    const specs: Array<[string, string]> = [
      ['GET', '/nhis/:id'], ['GET', '/nhis/export'], ['DELETE', '/nhis/:id'], ['POST', '/tools/:tool/*'], ['GET', '/tools/:tool/*'],
      ['GET', '/tools/:tool'], ['GET', '/:any/fixed'], ['PUT', '/:a/:b'], ['GET', '/*'], ['GET', '/'], ['GET', '/oauth/jwks'],
      ['POST', '/oauth/token'], ['GET', '/x/:p/y/*'],
    ];
    // Added in an order unlike the sorted one, so the index is rebuilt as routes come.
    const handlers = new Map<string, () => void>();
    for (const [m, p] of specs) {
      const h = () => undefined;
      handlers.set(`${m} ${p}`, h);
      r.add(m, p, h);
    }
    const name = (h: unknown) => [...handlers].find(([, v]) => v === h)?.[0];
    // Answers of the router before the index (a walk over every route in score order).
    const cases: Array<[string, string, string | undefined, Record<string, string>, string[]]> = [
      ['GET', '/nhis/export', 'GET /nhis/export', {}, []],
      ['GET', '/nhis/n1', 'GET /nhis/:id', { id: 'n1' }, []],
      ['DELETE', '/nhis/export', 'DELETE /nhis/:id', { id: 'export' }, ['GET', 'GET']],
      ['PATCH', '/nhis/n1', undefined, {}, ['GET', 'DELETE', 'PUT', 'GET']],
      ['GET', '/tools/t/a/b', 'GET /tools/:tool/*', { tool: 't', '*': 'a/b' }, ['POST']],
      ['HEAD', '/tools/t', 'GET /tools/:tool', { tool: 't' }, []],
      ['GET', '/other/fixed', 'GET /:any/fixed', { any: 'other' }, []],
      ['GET', '/nhis/fixed', 'GET /nhis/:id', { id: 'fixed' }, []],
      ['PUT', '/oauth/jwks', 'PUT /:a/:b', { a: 'oauth', b: 'jwks' }, ['GET']],
      ['GET', '/unknown/a/b/c', 'GET /*', { '*': 'unknown/a/b/c' }, []],
      ['GET', '/', 'GET /', {}, []],
      ['POST', '/', undefined, {}, ['GET', 'GET']],
      ['GET', '/x/1/y/z', 'GET /x/:p/y/*', { p: '1', '*': 'z' }, []],
      ['GET', '/nhis/%E0', 'GET /*', { '*': 'nhis/%E0' }, []],
      ['POST', '/oauth/jwks', undefined, {}, ['GET', 'PUT', 'GET']],
      ['DELETE', '/zzz', undefined, {}, ['GET']],
      ['GET', '//tools//t/', 'GET /tools/:tool', { tool: 't' }, []],
      ['GET', '/tools/%E0/x', 'GET /*', { '*': 'tools/%E0/x' }, []],
    ];
    for (const [method, path, want, params, allowed] of cases) {
      const m = r.match(method, path);
      assert.equal(name(m.handler), want, `${method} ${path}`);
      assert.deepEqual(m.params, params, `${method} ${path} params`);
      assert.deepEqual(m.allowed, allowed, `${method} ${path} allowed`);
    }
  });
});

describe('errors on the wire', () => {
  it('keeps OAuth names and hides unexpected errors', () => {
    assert.deepEqual(toHttpError(new OAuthError('invalid_target', 'one tool')), { status: 400, body: { error: 'invalid_target', error_description: 'one tool' } });
    const hidden = toHttpError(new Error('db password is hunter2'));
    assert.equal(hidden.status, 500);
    assert.equal(JSON.stringify(hidden.body).includes('hunter2'), false);
  });
  it('reads W3C traceparent', () => {
    assert.equal(traceIdFrom('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'), '4bf92f3577b34da6a3ce929d0e0e4736');
    assert.equal(traceIdFrom('00-00000000000000000000000000000000-00f067aa0ba902b7-01'), undefined);
    assert.equal(traceIdFrom('garbage'), undefined);
  });
});

describe('ids', () => {
  it('newSortableId: prefix, time first (sorts by creation ms), 128 random bits after it', () => {
    const a = newSortableId('aud', 1_700_000_000_000);
    const b = newSortableId('aud', 1_700_000_000_001);
    assert.match(a, /^aud_[0-9a-z]{9}[A-Za-z0-9_-]{22}$/);
    assert.ok(a < b && newSortableId('aud', 1_700_000_000_000) < b);
    assert.ok(newSortableId('aud', 99) < a, 'shorter times are padded');
    const same = new Set(Array.from({ length: 1000 }, () => newSortableId('aud', 1_700_000_000_000)));
    assert.equal(same.size, 1000, 'ids of one millisecond still differ');
  });

  it('newTraceId: 32 lower-case hex digits (W3C trace-id), the ms time first, 80 random bits after it', () => {
    const a = newTraceId(1_700_000_000_000);
    assert.match(a, /^[0-9a-f]{32}$/);
    assert.equal(parseInt(a.slice(0, 12), 16), 1_700_000_000_000);
    assert.ok(a < newTraceId(1_700_000_000_001));
    assert.match(newTraceId(0), /^000000000001[0-9a-f]{20}$/, 'never all zeros (Trace Context §3.2.2.3)');
    const same = new Set(Array.from({ length: 1000 }, () => newTraceId(1_700_000_000_000)));
    assert.equal(same.size, 1000);
  });

  it('ids carry the time they are given, also when it goes back and forth (the time part is remembered per ms)', () => {
    for (const ms of [1_700_000_000_000, 1_700_000_000_001, 1_700_000_000_000, 5, 0xffffffffffff + 10, 1_700_000_000_001]) {
      const t = newTraceId(ms);
      assert.equal(parseInt(t.slice(0, 12), 16), Math.min(ms, 0xffffffffffff), `trace id at ${ms}`);
      if (ms > 0xffffffffffff) continue; // 10 base36 digits: past year 10 000
      const s = newSortableId('aud', ms);
      assert.equal(parseInt(s.slice(4, 13), 36), ms, `sortable id at ${ms}`);
      assert.match(s, /^aud_[0-9a-z]{9}[A-Za-z0-9_-]{22}$/);
    }
  });

  it('randomHex: 2n lower-case hex digits, every digit in every position, never repeated', () => {
    const ids = Array.from({ length: 4000 }, () => randomHex(8));
    for (const id of ids) assert.match(id, /^[0-9a-f]{16}$/);
    assert.equal(new Set(ids).size, ids.length);
    for (let pos = 0; pos < 16; pos++) assert.equal(new Set(ids.map((id) => id[pos])).size, 16, `position ${pos}`);
    assert.match(randomHex(100), /^[0-9a-f]{200}$/);
    assert.equal(randomHex(0), '');
  });
});
