import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import {
  upstreamHeaders, applyQueryCredential, responseHeaders, traceparentFor, CredentialError, type InjectedCredential,
} from '../../src/proxy/headers.js';
import { MandateError } from '../../src/core/errors.js';

const TP = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
const base = { clientIp: '10.0.0.7', proto: 'https' as const, host: 'mandate.example', traceparent: TP };

describe('upstreamHeaders', () => {
  it('drops every hop-by-hop field (RFC 9110 §7.6.1)', () => {
    const h = upstreamHeaders({
      connection: 'keep-alive', 'keep-alive': 'timeout=5', 'proxy-connection': 'keep-alive', 'proxy-authenticate': 'Basic',
      'proxy-authorization': 'Basic eA==', te: 'trailers', trailer: 'x-sum', 'transfer-encoding': 'chunked', upgrade: 'websocket',
      'http2-settings': 'AAA', accept: 'application/json',
    }, base);
    for (const n of ['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'http2-settings']) {
      assert.equal(h[n], undefined, n);
    }
    assert.equal(h.accept, 'application/json');
  });

  it('drops the fields named in Connection, in any case and spacing', () => {
    const h = upstreamHeaders({ connection: 'close, X-Secret-Hop ,x-other', 'x-secret-hop': '1', 'x-other': '2', 'x-kept': '3' }, base);
    assert.equal(h['x-secret-hop'], undefined);
    assert.equal(h['x-other'], undefined);
    assert.equal(h['x-kept'], '3');
    // The parsed list is remembered per Connection value: each message still gets its own answer.
    for (let i = 0; i < 3; i++) {
      const again = upstreamHeaders({ connection: 'close, X-Secret-Hop ,x-other', 'x-secret-hop': '1', 'x-other': '2', 'x-kept': '3' }, base);
      assert.deepEqual(Object.keys(again).filter((k) => k.startsWith('x-') && !k.startsWith('x-forwarded-')), ['x-kept']);
      const other = upstreamHeaders({ connection: 'close, x-kept', 'x-secret-hop': '1', 'x-kept': '3' }, base);
      assert.equal(other['x-kept'], undefined);
      assert.equal(other['x-secret-hop'], '1');
    }
    const arr = upstreamHeaders({ connection: ['close', 'X-A'] as unknown as string, 'x-a': '1', 'x-b': '2' }, base);
    assert.equal(arr['x-a'], undefined);
    assert.equal(arr['x-b'], '2');
    const cased = upstreamHeaders({ Connection: 'x-a', 'x-a': '1', 'x-b': '2' } as IncomingHttpHeaders, base);
    assert.equal(cased['x-a'], undefined);
    assert.equal(cased['x-b'], '2');
  });

  it('never forwards the agent credentials, cookies or its own address claims', () => {
    const incoming: IncomingHttpHeaders = {
      authorization: 'DPoP eyJ.agent.token', dpop: 'eyJ.proof', cookie: 'sid=1',
      forwarded: 'for=1.2.3.4', 'x-forwarded-for': '1.2.3.4', 'x-forwarded-proto': 'http', 'x-forwarded-host': 'evil',
      'x-forwarded-port': '1', 'x-forwarded-prefix': '/admin', 'x-real-ip': '1.2.3.4', 'x-client-ip': '1.2.3.4', 'true-client-ip': '1.2.3.4',
      host: 'mandate.example', expect: '100-continue', traceparent: '00-11111111111111111111111111111111-2222222222222222-01',
    };
    const h = upstreamHeaders(incoming, base);
    assert.deepEqual(h, {
      'x-forwarded-for': '10.0.0.7', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'mandate.example', traceparent: TP,
    });
    assert.doesNotMatch(JSON.stringify(h), /eyJ|sid=|1\.2\.3\.4|evil|admin/);
  });

  it('keeps end-to-end fields, including repeated ones and MCP session headers', () => {
    const h = upstreamHeaders({
      accept: 'application/json, text/event-stream', 'content-type': 'application/json', 'content-length': '12',
      'mcp-session-id': 's1', 'mcp-protocol-version': '2025-06-18', 'x-custom': ['a', 'b'], tracestate: 'v=1',
    }, base);
    assert.equal(h['content-length'], '12');
    assert.equal(h['mcp-session-id'], 's1');
    assert.equal(h['mcp-protocol-version'], '2025-06-18');
    assert.deepEqual(h['x-custom'], ['a', 'b']);
    assert.equal(h.tracestate, 'v=1');
  });

  it('drops content-length only when the body is rewritten', () => {
    assert.equal(upstreamHeaders({ 'content-length': '5' }, { ...base, bodyRewritten: true })['content-length'], undefined);
  });

  it('drops HTTP/2 pseudo-headers and undefined values', () => {
    const h = upstreamHeaders({ ':method': 'GET', ':path': '/x', 'x-a': undefined } as IncomingHttpHeaders, base);
    assert.equal(h[':method'], undefined);
    assert.equal('x-a' in h, false);
  });

  it('lower-cases names, so a differently cased duplicate cannot slip through', () => {
    const h = upstreamHeaders({ Authorization: 'DPoP x', 'X-Forwarded-For': '1.1.1.1', Cookie: 'a' } as IncomingHttpHeaders, base);
    assert.equal(h.authorization, undefined);
    assert.equal(h['x-forwarded-for'], '10.0.0.7');
    assert.equal(h.cookie, undefined);
    assert.equal(h.Cookie, undefined);
  });

  it('is a plain object that a __proto__ header cannot pollute', () => {
    const incoming = JSON.parse('{"__proto__":{"polluted":"yes"},"accept":"x"}') as IncomingHttpHeaders;
    const h = upstreamHeaders(incoming, base);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.equal((h as Record<string, unknown>).polluted, undefined);
    assert.equal(Object.getPrototypeOf(h), Object.prototype);
    assert.deepEqual(Object.getOwnPropertyDescriptor(h, '__proto__')?.value, { polluted: 'yes' }, 'kept as an ordinary member');
    const r = responseHeaders(JSON.parse('{"__proto__":"x","x-ok":"1"}') as Record<string, string>);
    assert.equal(Object.getPrototypeOf(r), Object.prototype);
    assert.equal((r as Record<string, unknown>).polluted, undefined);
    assert.equal(Object.getOwnPropertyDescriptor(r, '__proto__')?.value, 'x');
  });

  describe('credentials', () => {
    it('bearer → Authorization: Bearer (RFC 6750 §2.1), replacing the agent token', () => {
      const h = upstreamHeaders({ authorization: 'DPoP agent' }, { ...base, credential: { type: 'bearer', value: 'up-secret' } });
      assert.equal(h.authorization, 'Bearer up-secret');
    });

    it('header → the named header, replacing any the agent sent under that name', () => {
      const h = upstreamHeaders({ 'x-api-key': 'agent-guess', 'X-API-KEY': 'again' } as IncomingHttpHeaders, {
        ...base, credential: { type: 'header', name: 'X-Api-Key', value: 'k-123' },
      });
      assert.equal(h['x-api-key'], 'k-123');
      assert.equal(h['X-API-KEY'], undefined);
      assert.equal(h.authorization, undefined);
    });

    it('basic → Authorization: Basic base64(user:password) in UTF-8 (RFC 7617 §2)', () => {
      const h = upstreamHeaders({}, { ...base, credential: { type: 'basic', username: 'svc', value: 'pä:ss' } });
      assert.equal(h.authorization, `Basic ${Buffer.from('svc:pä:ss', 'utf8').toString('base64')}`);
      assert.equal(Buffer.from(String(h.authorization).slice(6), 'base64').toString('utf8'), 'svc:pä:ss');
    });

    it('query → no header at all', () => {
      const h = upstreamHeaders({ authorization: 'DPoP a' }, { ...base, credential: { type: 'query', name: 'api_key', value: 'q' } });
      assert.equal(h.authorization, undefined);
      assert.doesNotMatch(JSON.stringify(h), /"q"/);
    });

    it('refuses malformed credentials instead of sending them', () => {
      const bad: InjectedCredential[] = [
        { type: 'bearer', value: '' },
        { type: 'bearer', value: 'a\r\nx-injected: 1' },
        { type: 'bearer', value: 'a\u0000' },
        { type: 'header', value: 'v' },
        { type: 'header', name: 'x bad', value: 'v' },
        { type: 'header', name: 'x-api-key\r\nx', value: 'v' },
        { type: 'header', name: 'Host', value: 'v' },
        { type: 'header', name: 'Transfer-Encoding', value: 'v' },
        { type: 'header', name: 'X-Forwarded-For', value: 'v' },
        { type: 'basic', username: 'a:b', value: 'v' },
        { type: 'basic', username: 'a\nb', value: 'v' },
        { type: 'other' as 'bearer', value: 'v' },
      ];
      for (const credential of bad) {
        assert.throws(() => upstreamHeaders({}, { ...base, credential }), CredentialError, JSON.stringify(credential));
      }
    });

    it('checks a credential on every call, also one that was sent before and changed since', () => {
      // The header is remembered per credential object; a changed record must not reuse it.
      const credential = { type: 'header', name: 'X-Api-Key', value: 'k-1' } as { -readonly [K in keyof InjectedCredential]: InjectedCredential[K] };
      assert.equal(upstreamHeaders({}, { ...base, credential })['x-api-key'], 'k-1');
      assert.equal(upstreamHeaders({}, { ...base, credential })['x-api-key'], 'k-1');
      credential.value = 'k-2';
      assert.equal(upstreamHeaders({}, { ...base, credential })['x-api-key'], 'k-2');
      credential.value = 'k\r\nx-injected: 1';
      assert.throws(() => upstreamHeaders({}, { ...base, credential }), CredentialError);
      assert.throws(() => upstreamHeaders({}, { ...base, credential }), CredentialError, 'a refused credential is refused again');
      credential.name = 'Host';
      credential.value = 'k-3';
      assert.throws(() => upstreamHeaders({}, { ...base, credential }), CredentialError);
    });
  });
});

describe('applyQueryCredential', () => {
  const cred: InjectedCredential = { type: 'query', name: 'api_key', value: 's3cr&t=/+' };
  const enc = encodeURIComponent(cred.value);

  it('appends the parameter, percent-encoded', () => {
    assert.equal(applyQueryCredential('', cred), `?api_key=${enc}`);
    assert.equal(applyQueryCredential('?', cred), `?api_key=${enc}`);
    assert.equal(applyQueryCredential('?a=1&b=2', cred), `?a=1&b=2&api_key=${enc}`);
    assert.equal(applyQueryCredential('a=1', cred), `?a=1&api_key=${enc}`);
  });

  it('removes every client parameter a server could read as the credential', () => {
    for (const q of [
      '?api_key=guess', '?api_key', '?api_key=', '?API_KEY=x', '?api%5Fkey=x', '?api%5fkey=x', '?%61pi_key=x', '?x=1;api_key=y',
    ]) {
      assert.equal(applyQueryCredential(`${q}&keep=1`, cred), `?keep=1&api_key=${enc}`, q);
    }
    assert.equal(applyQueryCredential('?api_key=1&api_key=2&z=3', cred), `?z=3&api_key=${enc}`);
  });

  it('keeps other parameters byte for byte', () => {
    assert.equal(applyQueryCredential('?q=a+b%20c&x=%E2%82%AC&api_keys=1&v', cred), `?q=a+b%20c&x=%E2%82%AC&api_keys=1&v&api_key=${enc}`);
    assert.equal(applyQueryCredential('?bad=%E0%A4%A&&x', cred), `?bad=%E0%A4%A&x&api_key=${enc}`);
  });

  it('leaves the query alone for other credential types, and refuses a nameless query credential', () => {
    assert.equal(applyQueryCredential('?api_key=1', { type: 'bearer', value: 'x' }), '?api_key=1');
    assert.throws(() => applyQueryCredential('', { type: 'query', value: 'x' }), CredentialError);
    assert.throws(() => applyQueryCredential('', { type: 'query', name: 'k', value: '' }), CredentialError);
  });
});

describe('responseHeaders', () => {
  it('drops hop-by-hop fields, those named in Connection, and set-cookie', () => {
    const h = responseHeaders({
      connection: 'close, x-hop', 'x-hop': '1', 'keep-alive': 'timeout=5', 'transfer-encoding': 'chunked', 'proxy-authenticate': 'Basic',
      upgrade: 'h2c', trailer: 'x', 'set-cookie': ['sid=upstream-session'], 'content-type': 'application/json', 'content-length': '10',
      'x-request-id': 'r1', 'www-authenticate': 'Bearer', undef: undefined,
    });
    assert.deepEqual(h, { 'content-type': 'application/json', 'content-length': '10', 'x-request-id': 'r1', 'www-authenticate': 'Bearer' });
  });

  it('strips the injected header credential when the upstream echoes it', () => {
    const credential: InjectedCredential = { type: 'header', name: 'X-Api-Key', value: 'k-123456' };
    const h = responseHeaders({ 'x-api-key': 'k-123456', 'content-type': 'text/plain' }, { credential });
    assert.deepEqual(h, { 'content-type': 'text/plain' });
    const h2 = responseHeaders({ 'X-Api-Key': 'other' }, { credential });
    assert.deepEqual(h2, {}, 'by name, whatever the value and case');
  });

  it('strips any field that reflects the secret, in any of its forms', () => {
    const bearer: InjectedCredential = { type: 'bearer', value: 'tok-abcdef' };
    assert.deepEqual(responseHeaders({ 'x-echo-authorization': 'Bearer tok-abcdef', authorization: 'x', 'x-ok': '1' }, { credential: bearer }), { 'x-ok': '1' });
    const basic: InjectedCredential = { type: 'basic', username: 'u', value: 'pw-123' };
    const b64 = Buffer.from('u:pw-123').toString('base64');
    assert.deepEqual(responseHeaders({ 'x-echo': `Basic ${b64}`, 'x-ok': '1' }, { credential: basic }), { 'x-ok': '1' });
    const query: InjectedCredential = { type: 'query', name: 'k', value: 'a/b c' };
    assert.deepEqual(responseHeaders({ location: `/x?k=${encodeURIComponent('a/b c')}`, 'x-ok': '1' }, { credential: query }), { 'x-ok': '1' });
    assert.deepEqual(responseHeaders({ link: ['</a>', '</b?k=a/b c>'], 'x-ok': '1' }, { credential: query }), { 'x-ok': '1' });
  });

  it('strips the current secret of a credential record that changed since its last use', () => {
    const basic = { type: 'basic', username: 'u', value: 'pw-1' } as { -readonly [K in keyof InjectedCredential]: InjectedCredential[K] };
    const echo = (c: InjectedCredential) => responseHeaders({ 'x-echo': `Basic ${Buffer.from(`${c.username}:${c.value}`).toString('base64')}`, 'x-ok': '1' }, { credential: c });
    assert.deepEqual(echo(basic), { 'x-ok': '1' });
    basic.value = 'pw-2';
    assert.deepEqual(echo(basic), { 'x-ok': '1' });
    basic.username = 'v';
    assert.deepEqual(echo(basic), { 'x-ok': '1' });
  });

  it('drops content-length when the body is rewritten', () => {
    assert.deepEqual(responseHeaders({ 'content-length': '10', 'content-type': 'application/json' }, { bodyRewritten: true }), { 'content-type': 'application/json' });
  });
});

describe('traceparentFor (W3C Trace Context §3.2)', () => {
  const span = () => '00f067aa0ba902b7';
  const trace = () => '4bf92f3577b34da6a3ce929d0e0e4736';

  it('keeps a well-formed trace id and flags with a new parent id', () => {
    assert.deepEqual(traceparentFor(TP, span, trace), {
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01', traceId: '0af7651916cd43dd8448eb211c80319c',
    });
    assert.equal(traceparentFor(TP.replace(/-01$/, '-00'), span, trace).traceparent.slice(-2), '00');
    assert.equal(traceparentFor(TP.replace(/-01$/, '-ff'), span, trace).traceparent.slice(-2), '01', 'unknown flags are cleared');
    assert.equal(traceparentFor(` ${TP} `, span, trace).traceId, '0af7651916cd43dd8448eb211c80319c');
  });

  it('starts a new trace for anything malformed or invalid', () => {
    for (const bad of [
      undefined, '', 'garbage', TP.toUpperCase(), TP.replace(/^00/, 'ff'), '00-00000000000000000000000000000000-b7ad6b7169203331-01',
      '00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01', `${TP}-extra`, TP.slice(0, -1), `${TP},${TP}`,
    ]) {
      assert.deepEqual(traceparentFor(bad, span, trace), {
        traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00', traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      }, String(bad));
    }
  });

  it('makes random trace ids by default', () => {
    const a = traceparentFor(undefined, span);
    const b = traceparentFor(undefined, span);
    assert.match(a.traceId, /^[0-9a-f]{32}$/);
    assert.notEqual(a.traceId, b.traceId);
  });

  it('refuses a bad span or trace id from the generator', () => {
    for (const s of ['0000000000000000', 'ABCDEF0123456789', '123', '00f067aa0ba902b7x']) {
      assert.throws(() => traceparentFor(TP, () => s, trace), MandateError, s);
    }
    assert.throws(() => traceparentFor(undefined, span, () => '0'.repeat(32)), MandateError);
  });
});
