import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  parseJsonRpcBody, toolsCall, rpcError, filterToolsListResponse, JsonRpcParseError, UpstreamResponseError, JSONRPC_ERRORS, MAX_BATCH,
} from '../../src/proxy/jsonrpc.js';

const MAX = 64 * 1024;

function refused(text: string, rpcCode: number, message?: RegExp) {
  assert.throws(() => parseJsonRpcBody(text, MAX), (err: unknown) => {
    assert.ok(err instanceof JsonRpcParseError, String(err));
    assert.equal(err.rpcCode, rpcCode, `${text}: ${err.message}`);
    if (message) assert.match(err.message, message);
    return true;
  }, text);
}

describe('parseJsonRpcBody (JSON-RPC 2.0, MCP Streamable HTTP)', () => {
  it('classifies a request, a notification and a response', () => {
    assert.deepEqual(parseJsonRpcBody('{"jsonrpc":"2.0","id":1,"method":"tools/list"}', MAX), {
      batch: false,
      messages: [{ kind: 'request', id: 1, method: 'tools/list', raw: { jsonrpc: '2.0', id: 1, method: 'tools/list' } }],
    });
    const n = parseJsonRpcBody('{"jsonrpc":"2.0","method":"notifications/initialized","params":{}}', MAX).messages[0]!;
    assert.equal(n.kind, 'notification');
    assert.equal(n.id, undefined);
    assert.deepEqual(n.params, {});
    const r = parseJsonRpcBody('{"jsonrpc":"2.0","id":"a","result":{}}', MAX).messages[0]!;
    assert.equal(r.kind, 'response');
    assert.equal(r.id, 'a');
    assert.equal(r.method, undefined);
    const e = parseJsonRpcBody('{"jsonrpc":"2.0","id":null,"error":{"code":-1,"message":"x"}}', MAX).messages[0]!;
    assert.equal(e.kind, 'response');
    assert.equal(e.id, null);
  });

  it('accepts string, number and null ids', () => {
    for (const id of ['"x"', '0', '-5', '1.5', 'null', '""']) {
      const m = parseJsonRpcBody(`{"jsonrpc":"2.0","id":${id},"method":"ping"}`, MAX).messages[0]!;
      assert.equal(m.kind, 'request');
      assert.deepEqual(m.id, JSON.parse(id));
    }
  });

  it('parses a batch, in order', () => {
    const p = parseJsonRpcBody(
      '[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","method":"notifications/x"},{"jsonrpc":"2.0","id":2,"result":{}}]',
      MAX,
    );
    assert.equal(p.batch, true);
    assert.deepEqual(p.messages.map((m) => m.kind), ['request', 'notification', 'response']);
  });

  it('accepts a batch of exactly MAX_BATCH and refuses one more', () => {
    const msg = '{"jsonrpc":"2.0","method":"ping","id":1}';
    assert.equal(parseJsonRpcBody(`[${Array(MAX_BATCH).fill(msg).join(',')}]`, MAX).messages.length, 100);
    refused(`[${Array(MAX_BATCH + 1).fill(msg).join(',')}]`, JSONRPC_ERRORS.INVALID_REQUEST, /more than 100/);
  });

  it('refuses what is not JSON with -32700', () => {
    for (const t of ['', '{', '{"jsonrpc":"2.0",}', 'nul', "{'a':1}", '{"a":1} x', '\u0000']) refused(t, JSONRPC_ERRORS.PARSE_ERROR);
  });

  it('refuses a body over maxBytes (counted in UTF-8 bytes) with -32700', () => {
    const body = '{"jsonrpc":"2.0","method":"x","params":{"s":"ééé"}}'; // 3 é = 6 bytes
    assert.equal(parseJsonRpcBody(body, Buffer.byteLength(body)).messages.length, 1);
    assert.throws(() => parseJsonRpcBody(body, Buffer.byteLength(body) - 1), (e: unknown) => e instanceof JsonRpcParseError && e.rpcCode === -32700);
    assert.ok(body.length <= Buffer.byteLength(body) - 1, 'the cap is in bytes, not characters');
  });

  it('refuses duplicate member names anywhere with -32600', () => {
    refused('{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"tools/list"}', -32600, /duplicate/);
    refused('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}', -32600, /duplicate/);
    refused('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"x":{"y":1,"y":2}}}}', -32600, /duplicate/);
    refused('[{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}]', -32600, /duplicate/);
    refused('{"jsonrpc":"2.0","id":1,"method":"x","\\u006dethod":"y"}', -32600, /duplicate/);
  });

  const invalid: Array<[string, string]> = [
    ['[]', 'empty batch'],
    ['1', 'a number'],
    ['"x"', 'a string'],
    ['null', 'null'],
    ['[1]', 'a batch of a number'],
    ['[[{"jsonrpc":"2.0","method":"x"}]]', 'a nested batch'],
    ['[{"jsonrpc":"2.0","method":"ping"},null]', 'a batch with null'],
    ['{"method":"ping","id":1}', 'no jsonrpc'],
    ['{"jsonrpc":"1.0","method":"ping","id":1}', 'jsonrpc 1.0'],
    ['{"jsonrpc":2.0,"method":"ping","id":1}', 'jsonrpc as a number'],
    ['{"jsonrpc":"2.0 ","method":"ping","id":1}', 'jsonrpc with a space'],
    ['{"jsonrpc":"2.0","method":1,"id":1}', 'method a number'],
    ['{"jsonrpc":"2.0","method":null,"id":1}', 'method null'],
    ['{"jsonrpc":"2.0","method":["tools/call"],"id":1}', 'method an array'],
    ['{"jsonrpc":"2.0","method":"ping","id":{}}', 'id an object'],
    ['{"jsonrpc":"2.0","method":"ping","id":[1]}', 'id an array'],
    ['{"jsonrpc":"2.0","method":"ping","id":true}', 'id a boolean'],
    ['{"jsonrpc":"2.0","method":"ping","id":1e400}', 'id infinite'],
    ['{"jsonrpc":"2.0","method":"ping","params":"x"}', 'params a string'],
    ['{"jsonrpc":"2.0","method":"ping","params":null}', 'params null'],
    ['{"jsonrpc":"2.0","method":"ping","id":1,"result":{}}', 'request and response at once'],
    ['{"jsonrpc":"2.0","method":"ping","error":{}}', 'notification with error'],
    ['{"jsonrpc":"2.0","result":{}}', 'response without id'],
    ['{"jsonrpc":"2.0","id":1}', 'neither result nor error'],
    ['{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"x"}}', 'both result and error'],
    ['{"jsonrpc":"2.0","id":1,"error":"boom"}', 'error a string'],
    ['{"jsonrpc":"2.0"}', 'nothing else'],
  ];
  for (const [text, why] of invalid) {
    it(`refuses ${why} with -32600`, () => refused(text, JSONRPC_ERRORS.INVALID_REQUEST));
  }

  it('sets the stable code for each refusal', () => {
    try {
      parseJsonRpcBody('{', MAX);
    } catch (e) {
      assert.equal((e as JsonRpcParseError).code, 'jsonrpc_parse_error');
    }
    try {
      parseJsonRpcBody('[]', MAX);
    } catch (e) {
      assert.equal((e as JsonRpcParseError).code, 'jsonrpc_invalid_request');
    }
  });

  it('keeps __proto__ as plain data', () => {
    const m = parseJsonRpcBody('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"__proto__":{"x":1},"name":"a"}}', MAX).messages[0]!;
    assert.equal(({} as Record<string, unknown>).x, undefined);
    assert.equal(toolsCall(m).name, 'a');
  });
});

describe('toolsCall (MCP tools/call params)', () => {
  const msg = (params: unknown) => ({ method: 'tools/call', params });
  it('returns the name and arguments', () => {
    assert.deepEqual(toolsCall(msg({ name: 'create_ticket', arguments: { title: 't' } })), { name: 'create_ticket', arguments: { title: 't' } });
  });
  it('treats absent arguments as {}', () => {
    assert.deepEqual(toolsCall(msg({ name: 'x' })), { name: 'x', arguments: {} });
  });
  it('works on a parsed notification as well as a request', () => {
    const [m] = parseJsonRpcBody('{"jsonrpc":"2.0","method":"tools/call","params":{"name":"x"}}', MAX).messages;
    assert.equal(m!.kind, 'notification');
    assert.equal(toolsCall(m!).name, 'x');
  });
  const bad: Array<[unknown, string]> = [
    [undefined, 'no params'],
    [null, 'params null'],
    [['x'], 'params an array'],
    [{}, 'no name'],
    [{ name: 1 }, 'name a number'],
    [{ name: ['x'] }, 'name an array'],
    [{ name: 'x', arguments: null }, 'arguments null'],
    [{ name: 'x', arguments: [1] }, 'arguments an array'],
    [{ name: 'x', arguments: 'a=1' }, 'arguments a string'],
    [{ name: 'x', arguments: 3 }, 'arguments a number'],
  ];
  for (const [params, why] of bad) {
    it(`refuses ${why} with -32602`, () => {
      assert.throws(() => toolsCall(msg(params)), (e: unknown) => e instanceof JsonRpcParseError && e.rpcCode === JSONRPC_ERRORS.INVALID_PARAMS && e.code === 'jsonrpc_invalid_params');
    });
  }
  it('refuses another method', () => {
    assert.throws(() => toolsCall({ method: 'tools/list', params: { name: 'x' } }), (e: unknown) => e instanceof JsonRpcParseError && e.rpcCode === -32600);
  });
});

describe('rpcError', () => {
  it('builds a JSON-RPC error response', () => {
    assert.deepEqual(rpcError(7, JSONRPC_ERRORS.INVALID_PARAMS, 'bad'), { jsonrpc: '2.0', id: 7, error: { code: -32602, message: 'bad' } });
    assert.deepEqual(rpcError('a', -32001, 'denied', { reason: 'scope' }), { jsonrpc: '2.0', id: 'a', error: { code: -32001, message: 'denied', data: { reason: 'scope' } } });
    assert.deepEqual(rpcError(undefined, JSONRPC_ERRORS.PARSE_ERROR, 'x'), { jsonrpc: '2.0', id: null, error: { code: -32700, message: 'x' } });
    assert.equal('data' in rpcError(null, -32600, 'x').error, false);
  });
  it('has the JSON-RPC 2.0 §5.1 codes', () => {
    assert.deepEqual(JSONRPC_ERRORS, { PARSE_ERROR: -32700, INVALID_REQUEST: -32600, METHOD_NOT_FOUND: -32601, INVALID_PARAMS: -32602, INTERNAL_ERROR: -32603 });
  });
});

describe('filterToolsListResponse', () => {
  const tools = [{ name: 'search_docs', inputSchema: {} }, { name: 'delete_docs', inputSchema: {} }, { name: 'read_doc', description: 'r' }];
  const allowed = (n: string) => n === 'search_docs' || n === 'read_doc';
  const list = (id: number | string = 1, t: unknown = tools) => ({ jsonrpc: '2.0', id, result: { tools: t, nextCursor: 'c' } });
  const names = (text: string) => (JSON.parse(text) as { result: { tools: Array<{ name: string }> } }).result.tools.map((t) => t.name);

  it('filters a single application/json response and keeps everything else', () => {
    const out = filterToolsListResponse(JSON.stringify(list()), 'application/json; charset=utf-8', allowed);
    assert.deepEqual(names(out), ['search_docs', 'read_doc']);
    assert.deepEqual(JSON.parse(out), { jsonrpc: '2.0', id: 1, result: { tools: [tools[0], tools[2]], nextCursor: 'c' } });
  });

  it('accepts a Buffer and a media type in any case', () => {
    const out = filterToolsListResponse(Buffer.from(JSON.stringify(list())), 'Application/JSON', allowed);
    assert.deepEqual(names(out), ['search_docs', 'read_doc']);
  });

  it('filters every tools response of a batch, leaving others alone', () => {
    const other = { jsonrpc: '2.0', id: 9, result: { resources: [] } };
    const err = { jsonrpc: '2.0', id: 10, error: { code: -1, message: 'x' } };
    const out = JSON.parse(filterToolsListResponse(JSON.stringify([list(1), other, err, list(2)]), 'application/json', allowed)) as unknown[];
    assert.deepEqual(out[1], other);
    assert.deepEqual(out[2], err);
    assert.deepEqual(names(JSON.stringify(out[0])), ['search_docs', 'read_doc']);
    assert.deepEqual(names(JSON.stringify(out[3])), ['search_docs', 'read_doc']);
  });

  it('drops tool entries without a string name', () => {
    const out = filterToolsListResponse(JSON.stringify(list(1, [null, 1, 'search_docs', { name: 5 }, {}, { name: 'read_doc' }])), 'application/json', allowed);
    assert.deepEqual(names(out), ['read_doc']);
  });

  it('allows nothing when the predicate allows nothing', () => {
    assert.deepEqual(names(filterToolsListResponse(JSON.stringify(list()), 'application/json', () => false)), []);
  });

  it('passes an error response through unchanged', () => {
    const body = '{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}}';
    assert.equal(filterToolsListResponse(body, 'application/json', allowed), body);
  });

  it('refuses what it cannot read (the caller fails closed)', () => {
    const bad: Array<[string, string]> = [
      ['{"jsonrpc":"2.0","id":1,"result":{"tools":[]}', 'application/json'],
      ['{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read_doc"}],"tools":[{"name":"delete_docs"}]}}', 'application/json'],
      [JSON.stringify(list()), 'text/plain'],
      [JSON.stringify(list()), ''],
      [JSON.stringify(list()), 'application/json-seq'],
      ['data: not json\n\n', 'text/event-stream'],
      ['data: {"jsonrpc":"2.0","id":1,"result":{"tools":[],"tools":[]}}\n\n', 'text/event-stream'],
    ];
    for (const [body, type] of bad) {
      assert.throws(() => filterToolsListResponse(body, type, allowed), UpstreamResponseError, `${type}: ${body}`);
    }
  });

  it('refuses a body over the cap', () => {
    const body = JSON.stringify(list());
    assert.throws(() => filterToolsListResponse(body, 'application/json', allowed, body.length - 1), /larger than/);
    assert.doesNotThrow(() => filterToolsListResponse(body, 'application/json', allowed, body.length));
  });

  describe('text/event-stream (WHATWG HTML §9.2.6)', () => {
    /** Reads a stream back the way an EventSource client does, returning the dispatched events. */
    function readEvents(stream: string): Array<{ event: string; data: string; lastEventId: string }> {
      const events: Array<{ event: string; data: string; lastEventId: string }> = [];
      let data: string[] | undefined;
      let event = '';
      let lastEventId = '';
      for (const line of stream.split(/\r\n|\r|\n/).slice(0, -1)) {
        if (line === '') {
          if (data !== undefined) events.push({ event: event || 'message', data: data.join('\n'), lastEventId });
          data = undefined;
          event = '';
          continue;
        }
        if (line.startsWith(':')) continue;
        const i = line.indexOf(':');
        const f = i === -1 ? line : line.slice(0, i);
        let v = i === -1 ? '' : line.slice(i + 1);
        if (v.startsWith(' ')) v = v.slice(1);
        if (f === 'data') (data ??= []).push(v);
        if (f === 'event') event = v;
        if (f === 'id') lastEventId = v;
      }
      return events;
    }

    it('rewrites the data of a tools/list response event and keeps id and event', () => {
      const stream = `event: message\nid: 42\ndata: ${JSON.stringify(list())}\n\n`;
      const out = filterToolsListResponse(stream, 'text/event-stream', allowed);
      const evs = readEvents(out);
      assert.equal(evs.length, 1);
      assert.equal(evs[0]!.event, 'message');
      assert.equal(evs[0]!.lastEventId, '42');
      assert.deepEqual(names(evs[0]!.data), ['search_docs', 'read_doc']);
      assert.doesNotMatch(out, /delete_docs/);
    });

    it('joins multi-line data with \\n before parsing (CRLF, LF and CR line endings)', () => {
      const json = JSON.stringify(list(), null, 2);
      for (const eol of ['\n', '\r\n', '\r']) {
        const stream = `id: 1${eol}${json.split('\n').map((l) => `data: ${l}`).join(eol)}${eol}${eol}`;
        const out = filterToolsListResponse(stream, 'text/event-stream; charset=utf-8', allowed);
        const evs = readEvents(out);
        assert.equal(evs.length, 1, JSON.stringify(eol));
        assert.deepEqual(names(evs[0]!.data), ['search_docs', 'read_doc']);
        assert.doesNotMatch(out, /delete_docs/);
      }
    });

    it('passes other messages through and filters each tools response among several events', () => {
      const note = { jsonrpc: '2.0', method: 'notifications/progress', params: { progress: 1 } };
      const stream = [
        ': keep-alive comment',
        `data: ${JSON.stringify(note)}`,
        '',
        'id: a',
        `data:${JSON.stringify(list(1))}`,
        '',
        `data: ${JSON.stringify([list(2), { jsonrpc: '2.0', id: 3, result: {} }])}`,
        '',
        '',
      ].join('\n');
      const evs = readEvents(filterToolsListResponse(stream, 'text/event-stream', allowed));
      assert.equal(evs.length, 3);
      assert.deepEqual(JSON.parse(evs[0]!.data), note);
      assert.equal(evs[0]!.lastEventId, '');
      assert.deepEqual(names(evs[1]!.data), ['search_docs', 'read_doc']);
      assert.equal(evs[1]!.lastEventId, 'a');
      const batch = JSON.parse(evs[2]!.data) as unknown[];
      assert.deepEqual(names(JSON.stringify(batch[0])), ['search_docs', 'read_doc']);
      assert.deepEqual(batch[1], { jsonrpc: '2.0', id: 3, result: {} });
      assert.equal(evs[2]!.lastEventId, 'a', 'the last event id carries over, as in a client');
    });

    it('filters events of any type, not only "message"', () => {
      const out = filterToolsListResponse(`event: custom\ndata: ${JSON.stringify(list())}\n\n`, 'text/event-stream', allowed);
      assert.doesNotMatch(out, /delete_docs/);
      assert.equal(readEvents(out)[0]!.event, 'custom');
    });

    it('skips a leading BOM and keeps events that carry only an id (resumption priming)', () => {
      const out = filterToolsListResponse(`\ufeffid: p1\ndata:\n\nid: p2\n\n`, 'text/event-stream', allowed);
      assert.match(out, /^id: p1\n/);
      assert.match(out, /id: p2\n\n$/);
    });

    it('discards an unterminated last event, as a client would', () => {
      const out = filterToolsListResponse(`data: ${JSON.stringify(list())}\n`, 'text/event-stream', allowed);
      assert.equal(out, '');
      const out2 = filterToolsListResponse(`data: ${JSON.stringify(list())}`, 'text/event-stream', allowed);
      assert.equal(out2, '');
    });

    it('cannot be tricked by a field name with a space or a data line without a colon', () => {
      // "data : x" is the field "data " (ignored); "data" alone is an empty data line.
      const stream = `data : ${JSON.stringify(list())}\ndata\ndata: ${JSON.stringify(list())}\n\n`;
      const out = filterToolsListResponse(stream, 'text/event-stream', allowed);
      assert.doesNotMatch(out, /delete_docs/);
      const evs = readEvents(out);
      assert.equal(evs.length, 1);
      assert.deepEqual(names(evs[0]!.data), ['search_docs', 'read_doc']);
    });
  });
});
