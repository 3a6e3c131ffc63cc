import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ActionMatcher, hasMethodOverride, hasMethodOverrideParam, METHOD_OVERRIDE_HEADERS } from '../../src/proxy/actions.js';
import { normalizePath } from '../../src/proxy/path.js';
import { ConfigError, type ActionConfig } from '../../src/core/index.js';

const a = (name: string, method: ActionConfig['method'], path: string, tier = 'read'): ActionConfig => ({ name, method, path, tier });

const tickets = new ActionMatcher([
  a('list_tickets', 'GET', '/tickets'),
  a('get_ticket', 'GET', '/tickets/{id}'),
  a('search_tickets', 'GET', '/tickets/search'),
  a('create_ticket', 'POST', '/tickets', 'write'),
  a('close_ticket', 'POST', '/tickets/{id}/close', 'write'),
  a('get_comment', 'GET', '/tickets/{id}/comments/{cid}'),
  a('list_dir', 'GET', '/files/'),
  a('root', 'GET', '/'),
]);

const name = (m: ReturnType<ActionMatcher['matchHttp']>) => m?.action.name;

describe('ActionMatcher.matchHttp', () => {
  it('matches literal templates exactly', () => {
    assert.equal(name(tickets.matchHttp('GET', '/tickets')), 'list_tickets');
    assert.equal(name(tickets.matchHttp('POST', '/tickets')), 'create_ticket');
    assert.equal(name(tickets.matchHttp('GET', '/')), 'root');
  });

  it('binds one non-empty segment per {param}', () => {
    assert.deepEqual(tickets.matchHttp('GET', '/tickets/42'), { action: tickets.byName('get_ticket'), params: { id: '42' } });
    assert.deepEqual(tickets.matchHttp('GET', '/tickets/7/comments/9')?.params, { id: '7', cid: '9' });
    assert.equal(tickets.matchHttp('GET', '/tickets//comments/9'), undefined, 'an empty segment binds no param');
    assert.equal(tickets.matchHttp('GET', '/tickets/7/comments/'), undefined);
  });

  it('does no prefix matching', () => {
    assert.equal(tickets.matchHttp('GET', '/tickets/1/delete'), undefined);
    assert.equal(tickets.matchHttp('GET', '/tickets/1/close'), undefined, 'close is POST only');
    assert.equal(tickets.matchHttp('GET', '/ticketsx'), undefined);
    assert.equal(tickets.matchHttp('GET', '/tickets/1/comments'), undefined);
    assert.equal(tickets.matchHttp('GET', '/files/a'), undefined);
  });

  it('treats a trailing slash as a different path', () => {
    assert.equal(tickets.matchHttp('GET', '/tickets/'), undefined);
    assert.equal(tickets.matchHttp('GET', '/tickets/42/'), undefined);
    assert.equal(name(tickets.matchHttp('GET', '/files/')), 'list_dir');
    assert.equal(tickets.matchHttp('GET', '/files'), undefined);
  });

  it('compares literal segments case-sensitively', () => {
    assert.equal(tickets.matchHttp('GET', '/Tickets'), undefined);
    assert.equal(tickets.matchHttp('GET', '/TICKETS/1'), undefined);
    assert.equal(name(tickets.matchHttp('GET', '/tickets/SEARCH')), 'get_ticket', 'a differently cased literal is a param value');
  });

  it('requires exactly the declared method (HEAD is not GET, methods are case-sensitive)', () => {
    assert.equal(tickets.matchHttp('HEAD', '/tickets'), undefined);
    assert.equal(tickets.matchHttp('get', '/tickets'), undefined);
    assert.equal(tickets.matchHttp('DELETE', '/tickets/1'), undefined);
    assert.equal(tickets.matchHttp('PUT', '/tickets'), undefined);
    const withHead = new ActionMatcher([a('peek', 'HEAD', '/tickets'), a('list', 'GET', '/tickets')]);
    assert.equal(name(withHead.matchHttp('HEAD', '/tickets')), 'peek');
  });

  it('prefers the template with more literal segments, whatever the declaration order', () => {
    assert.equal(name(tickets.matchHttp('GET', '/tickets/search')), 'search_tickets');
    const reversed = new ActionMatcher([a('get_ticket', 'GET', '/tickets/{id}'), a('search', 'GET', '/tickets/search')]);
    assert.equal(name(reversed.matchHttp('GET', '/tickets/search')), 'search');
    assert.equal(name(reversed.matchHttp('GET', '/tickets/other')), 'get_ticket');
  });

  it('breaks ties between equally literal templates by the earlier literal, then declaration order', () => {
    const m = new ActionMatcher([a('any_b', 'GET', '/{x}/b'), a('a_any', 'GET', '/a/{y}')]);
    assert.equal(name(m.matchHttp('GET', '/a/b')), 'a_any');
    assert.equal(name(m.matchHttp('GET', '/z/b')), 'any_b');
    const dup = new ActionMatcher([a('first', 'GET', '/{x}'), a('second', 'GET', '/{y}')]);
    assert.equal(name(dup.matchHttp('GET', '/q')), 'first');
  });

  it('returns params percent-decoded', () => {
    assert.deepEqual(tickets.matchHttp('GET', normalizePath('/tickets/a%20b'))?.params, { id: 'a b' });
    assert.deepEqual(tickets.matchHttp('GET', normalizePath('/tickets/caf%C3%A9'))?.params, { id: 'café' });
    assert.deepEqual(tickets.matchHttp('GET', normalizePath('/tickets/%3B%40'))?.params, { id: ';@' });
  });

  it('cannot be reached through dot segments once the path is normalized', () => {
    // `/tickets/%2e%2e/admin` would bind id=".." to a naive matcher; normalized it is `/admin`.
    assert.equal(name(tickets.matchHttp('GET', normalizePath('/tickets/%2e%2e/tickets'))), 'list_tickets');
    assert.equal(tickets.matchHttp('GET', normalizePath('/tickets/1/%2E%2E/2/close')), undefined);
    assert.equal(name(tickets.matchHttp('POST', normalizePath('/tickets/x/../1/close'))), 'close_ticket');
  });

  it('ignores actions without method and path (MCP actions)', () => {
    const m = new ActionMatcher([{ name: 'search_docs', tier: 'read' }]);
    assert.equal(m.matchHttp('GET', '/search_docs'), undefined);
    assert.equal(m.matchHttp('POST', '/'), undefined);
  });

  it('refuses paths that are not normalized absolute paths', () => {
    assert.equal(tickets.matchHttp('GET', 'tickets'), undefined);
    assert.equal(tickets.matchHttp('GET', ''), undefined);
  });

  it('refuses templates that could never match a normalized path', () => {
    for (const path of ['/a//b', '/a/../b', '/./a', '/a/{id}x', '/a/{x}/{x}', '/{__proto__}', '/{}', '/a{b']) {
      assert.throws(() => new ActionMatcher([a('bad', 'GET', path)]), ConfigError, path);
    }
  });

  it('returns params on a fresh object each time', () => {
    const p1 = tickets.matchHttp('GET', '/tickets/1')!.params;
    p1.id = 'tampered';
    assert.equal(tickets.matchHttp('GET', '/tickets/1')!.params.id, '1');
  });
});

describe('ActionMatcher.byName (MCP tool names)', () => {
  const m = new ActionMatcher([
    { name: 'create_ticket', tier: 'write' },
    { name: 'search_docs', tier: 'read' },
    { name: 'a.b-c', tier: 'read' },
  ]);

  it('finds exact names', () => {
    assert.equal(m.byName('create_ticket')?.tier, 'write');
    assert.equal(m.byName('a.b-c')?.name, 'a.b-c');
  });

  const lookalikes: Array<[string, string]> = [
    ['Create_Ticket', 'different case'],
    ['CREATE_TICKET', 'upper case'],
    ['create_ticket ', 'trailing space'],
    [' create_ticket', 'leading space'],
    ['create_tick\u0435t', 'Cyrillic е (U+0435)'],
    ['cre\u0430te_ticket', 'Cyrillic а (U+0430)'],
    ['\uff43reate_ticket', 'fullwidth ｃ (U+FF43)'],
    ['create\uff3fticket', 'fullwidth low line (U+FF3F)'],
    ['create_ti\u200bcket', 'zero-width space'],
    ['create_ticket\u200d', 'zero-width joiner'],
    ['\ufeffcreate_ticket', 'byte order mark'],
    ['create_t\u0131cket', 'dotless ı (U+0131)'],
    ['create\u2010ticket', 'U+2010 hyphen in place of the underscore'],
    ['search_\ufb01x', 'ligature ﬁ'],
    ['create_ticket\u0000', 'NUL'],
    ['create_ticke\u0301t', 'combining acute'],
    ['a\u2024b-c', 'one dot leader U+2024 (NFKC → ".")'],
    ['a.b\u2011c', 'non-breaking hyphen'],
    ['ｃｒｅａｔｅ＿ｔｉｃｋｅｔ', 'all fullwidth (NFKC-equal to create_ticket)'],
    ['', 'empty'],
  ];
  for (const [lookalike, why] of lookalikes) {
    it(`does not match ${why}`, () => {
      assert.equal(m.byName(lookalike), undefined);
    });
  }

  it('the NFKC form of a fullwidth name equals the real name, and still does not match', () => {
    const full = 'ｃｒｅａｔｅ＿ｔｉｃｋｅｔ';
    assert.equal(full.normalize('NFKC'), 'create_ticket');
    assert.equal(m.byName(full), undefined);
  });

  it('does not find inherited object properties', () => {
    for (const n of ['__proto__', 'constructor', 'toString', 'hasOwnProperty']) assert.equal(m.byName(n), undefined);
    assert.equal(m.byName(undefined as unknown as string), undefined);
  });
});

describe('method override', () => {
  it('names any override header present', () => {
    for (const h of METHOD_OVERRIDE_HEADERS) assert.equal(hasMethodOverride({ [h]: 'DELETE' }), h);
    assert.equal(hasMethodOverride({ 'x-http-method-override': '' }), 'x-http-method-override', 'even empty');
    assert.equal(hasMethodOverride({ 'X-HTTP-Method-Override': 'PUT' } as never), 'x-http-method-override', 'in any case');
    assert.equal(hasMethodOverride({ 'content-type': 'application/json', 'x-method': 'DELETE' }), undefined);
    assert.equal(hasMethodOverride({}), undefined);
    assert.equal(hasMethodOverride({ 'x-http-method': undefined }), undefined);
  });

  it('finds _method in the query under any spelling', () => {
    assert.equal(hasMethodOverrideParam('?_method=DELETE'), '_method');
    assert.equal(hasMethodOverrideParam('a=1&_method=PUT'), '_method');
    assert.equal(hasMethodOverrideParam('?_method'), '_method');
    assert.equal(hasMethodOverrideParam('?%5Fmethod=DELETE'), '%5Fmethod');
    assert.equal(hasMethodOverrideParam('?%5fMETHOD=DELETE'), '%5fMETHOD');
    assert.equal(hasMethodOverrideParam('?a=1;_method=DELETE'), '_method', '";" separates parameters for some servers');
    assert.equal(hasMethodOverrideParam('?_%6Dethod=x'), '_%6Dethod');
  });

  it('ignores other parameters and values', () => {
    assert.equal(hasMethodOverrideParam(''), undefined);
    assert.equal(hasMethodOverrideParam('?'), undefined);
    assert.equal(hasMethodOverrideParam('?method=DELETE'), undefined);
    assert.equal(hasMethodOverrideParam('?x=_method'), undefined);
    assert.equal(hasMethodOverrideParam('?__method=1&_methods=2'), undefined);
    assert.equal(hasMethodOverrideParam('?%E0%A4%A=1'), undefined, 'malformed escapes do not throw');
  });
});
