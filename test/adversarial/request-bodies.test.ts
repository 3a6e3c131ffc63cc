import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { call, json, rawHttp, startTarget, type Target } from './harness.js';

/**
 * Request bodies, as an agent would use them to run another method than the one authorized
 * (`_method` in a form, a multipart field or JSON) or to get part of an oversized body to the
 * tool before the proxy notices (chunked framing).
 */
describe('adversarial: request bodies', () => {
  const MAX = 2048;
  let x: Target;
  let writer: string;
  before(async () => {
    x = await startTarget({ tools: { rec: { max_body_bytes: MAX } } });
    writer = await x.token(x.alice, 'rec', 'create_item');
  });
  after(async () => x.close());
  beforeEach(() => {
    x.rec.seen.length = 0;
  });
  const post = (type: string | undefined, body: string | Buffer, extra: Record<string, string> = {}) => call(x.iss, '/tools/rec/items', {
    method: 'POST', headers: { authorization: `Bearer ${writer}`, ...(type ? { 'content-type': type } : {}), ...extra }, body,
  });

  describe('a method override in the body is refused like one in a header or the query', () => {
    const forms = ['_method=DELETE', 'title=x&_method=DELETE', '%5Fmethod=DELETE', '_METHOD=delete', 'title=x;_method=DELETE', '_method', '_%6dethod=PUT'];
    for (const body of forms) {
      it(`form: ${body}`, async () => {
        const r = await post('application/x-www-form-urlencoded', body);
        assert.equal(r.status, 400, r.body);
        assert.match(json(r).error_description, /method override/);
        assert.equal(x.rec.seen.length, 0);
      });
    }

    it('a form body without a content type, or as text/plain (HTML forms send that too)', async () => {
      for (const [type, body] of [[undefined, '_method=DELETE'], ['text/plain', 'title=x\r\n_method=DELETE\r\n']] as const) {
        const r = await post(type, body);
        assert.equal(r.status, 400, `${type}: ${r.body}`);
      }
      assert.equal(x.rec.seen.length, 0);
    });

    it('a multipart field named _method', async () => {
      for (const disposition of ['form-data; name="_method"', 'form-data; name=_method', 'FORM-DATA;NAME="_METHOD"']) {
        const body = `--b\r\nContent-Disposition: ${disposition}\r\n\r\nDELETE\r\n--b--\r\n`;
        const r = await post('multipart/form-data; boundary=b', body);
        assert.equal(r.status, 400, `${disposition}: ${r.body}`);
      }
      assert.equal(x.rec.seen.length, 0);
    });

    it('a JSON member _method, also escaped', async () => {
      for (const body of ['{"_method":"DELETE"}', '{"title":"x","_Method":"DELETE"}', '{"\\u005fmethod":"DELETE"}', '{"_metho\\u0064":"PUT"}']) {
        for (const type of ['application/json', 'application/vnd.api+json']) {
          const r = await post(type, body);
          assert.equal(r.status, 400, `${type} ${body}: ${r.body}`);
        }
      }
      assert.equal(x.rec.seen.length, 0);
    });

    it('whatever the label says: a type servers cut at "," or a space, text/json, an unknown type', async () => {
      for (const type of ['application/x-www-form-urlencoded,x', 'application/x-www-form-urlencoded x', 'Application/X-WWW-Form-Urlencoded', 'text/json', 'application/x-anything', 'text/html']) {
        for (const body of ['_method=DELETE', '{"_method":"DELETE"}']) {
          const r = await post(type, body);
          assert.equal(r.status, 400, `${type} ${body}: ${r.status} ${r.body}`);
        }
      }
      assert.equal(x.rec.seen.length, 0);
    });

    it('a body the proxy could not read as the tool will: a BOM, another charset, a content coding, JSON that does not parse', async () => {
      const bom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"_method":"DELETE"}')]);
      assert.equal((await post('application/json', bom)).status, 400, 'a BOM is skipped as body-parser skips it');
      const utf16 = Buffer.from('_method=DELETE', 'utf16le');
      const r16 = await post('application/x-www-form-urlencoded; charset=utf-16le', utf16);
      assert.equal(r16.status, 415, r16.body);
      const gz = await post('application/x-www-form-urlencoded', '_method=DELETE', { 'content-encoding': 'gzip' });
      assert.equal(gz.status, 415, gz.body);
      const broken = await post('application/json', '{"_method":"DELETE",}');
      assert.equal(broken.status, 400, broken.body);
      assert.equal(x.rec.seen.length, 0);
    });

    it('bodies that only mention it pass, byte for byte', async () => {
      const bodies: Array<[string, string]> = [
        ['application/json', '{"title":"how _method=DELETE works","nested":{"_method":"not top-level"}}'],
        ['application/x-www-form-urlencoded', 'title=_method%3DDELETE'],
        ['multipart/form-data; boundary=b', '--b\r\nContent-Disposition: form-data; name="title"\r\n\r\n_method\r\n--b--\r\n'],
        ['application/octet-stream', '_method=DELETE'],
      ];
      for (const [type, body] of bodies) {
        const r = await post(type, body);
        assert.equal(r.status, 200, `${type}: ${r.body}`);
      }
      assert.deepEqual(x.rec.seen.map((s) => s.body), bodies.map(([, b]) => b));
    });
  });

  describe(`nothing of a body over max_body_bytes (${MAX}) reaches the tool`, () => {
    it('declared too large: refused before it is read', async () => {
      const r = await post('application/octet-stream', Buffer.alloc(MAX + 1, 'a'));
      assert.equal(r.status, 413);
      assert.equal(x.rec.seen.length, 0);
    });

    it('chunked, growing past the cap: refused, and the tool sees no part of it', async () => {
      // The chunks arrive one by one, 1000 bytes each, so a proxy that streams would have sent the
      // first two before the third crosses the cap.
      const u = new URL(x.iss);
      const chunk = 'a'.repeat(1000);
      const before = x.rec.bodyBytes();
      for (const type of ['application/octet-stream', 'application/json']) {
        const sock = connect(Number(u.port), u.hostname);
        const answer = new Promise<string>((resolve, reject) => {
          let text = '';
          sock.on('data', (d: Buffer) => (text += d.toString('latin1')));
          sock.on('close', () => resolve(text));
          sock.on('error', reject);
        });
        sock.write([
          'POST /tools/rec/items HTTP/1.1', `Host: ${u.host}`, `Authorization: Bearer ${writer}`, `Content-Type: ${type}`, 'Transfer-Encoding: chunked', 'Connection: close', '', '',
        ].join('\r\n'));
        for (let i = 0; i < 3 && !sock.destroyed; i++) {
          sock.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
          await new Promise((r) => setTimeout(r, 150));
        }
        if (!sock.destroyed) sock.end('0\r\n\r\n');
        const text = await answer;
        assert.match(text, /^HTTP\/1\.1 413 /, `${type}: ${text.slice(0, 200)}`);
      }
      assert.equal(x.rec.bodyBytes() - before, 0, 'not a byte of it reached the tool');
      assert.equal(x.rec.seen.length, 0);
    });

    it('chunked within the cap: forwarded whole', async () => {
      const h = new URL(x.iss).host;
      const r = await rawHttp(x.iss, [
        'POST /tools/rec/items HTTP/1.1', `Host: ${h}`, `Authorization: Bearer ${writer}`, 'Content-Type: application/octet-stream', 'Transfer-Encoding: chunked',
      ].join('\n'), '5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n');
      assert.equal(r.status, 200, r.body);
      assert.deepEqual(x.rec.seen.map((s) => s.body), ['hello world']);
    });
  });
});
