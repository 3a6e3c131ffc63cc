import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { normalizePath, PathRefusedError, MAX_PATH_LENGTH } from '../../src/proxy/path.js';
import { OAuthError, toHttpError } from '../../src/core/errors.js';

/** [input, normal form]: accepted paths. */
const ACCEPTED: Array<[string, string]> = [
  ['/', '/'],
  ['/a', '/a'],
  ['/a/', '/a/'],
  ['/tickets/42', '/tickets/42'],
  ['//a', '/a'],
  ['///a//b///c', '/a/b/c'],
  ['/a//', '/a/'],
  ['/a/./b', '/a/b'],
  ['/./a', '/a'],
  ['/a/.', '/a/'],
  ['/.', '/'],
  ['/a/b/..', '/a/'],
  ['/a/b/../c', '/a/c'],
  ['/a/b/../../c', '/c'],
  ['/a/..', '/'],
  ['/a/%2e%2e', '/'],
  ['/a/b/%2E%2e/', '/a/'],
  ['/a/%2e/b', '/a/b'],
  ['/a/.%2E/b', '/b'],
  ['/a/%2e./b', '/b'],
  ['/%41', '/A'],
  ['/%7e%7E%2d%2D%5f%2e', '/~~--_.'],
  ['/%30%39', '/09'],
  ['/a%20b', '/a%20b'],
  ['/a%3fb', '/a%3Fb'],
  ['/a%3Fb', '/a%3Fb'],
  ['/a%23b', '/a%23b'],
  ['/caf%c3%a9', '/caf%C3%A9'],
  ['/%E2%82%AC', '/%E2%82%AC'],
  ['/%f0%9f%98%80', '/%F0%9F%98%80'],
  ["/a:b@c!$&'()*+,;=", "/a:b@c!$&'()*+,;="],
  ['/a;b/c', '/a;b/c'],
  ['/...', '/...'],
  ['/a/..b/c', '/a/..b/c'],
  ['/a/b./c', '/a/b./c'],
  ['/Tickets/ID', '/Tickets/ID'],
  ['/a/b/./../c/', '/a/c/'],
  ['/a/%2e%2e/b/%2e%2e/c', '/c'],
];

/** [input, words the message must contain]: refused paths. */
const REFUSED: Array<[string, RegExp]> = [
  ['', /start with "\/"/],
  ['a/b', /start with "\/"/],
  ['*', /start with "\/"/],
  ['/..', /above the root/],
  ['/../a', /above the root/],
  ['/%2e%2e', /above the root/],
  ['/%2E%2e/', /above the root/],
  ['/a/b/../../..', /above the root/],
  ['/a/%2e%2e/%2e%2e/admin', /above the root/],
  ['/a/./../..', /above the root/],
  ['/a%2fb', /encoded "\/"/],
  ['/a%2Fb', /encoded "\/"/],
  ['/a%252fb', /%25/],
  ['/a%2525', /%25/],
  ['/%25', /%25/],
  ['/a\\b', /"\\"/],
  ['/a%5cb', /%5C/],
  ['/a%5Cb', /%5C/],
  ['/a%00b', /control/],
  ['/a%0ab', /control/],
  ['/a%0D%0Ab', /control/],
  ['/a%1f', /control/],
  ['/a%7f', /control/],
  ['/a\u0000b', /control/],
  ['/a\nb', /control/],
  ['/a\tb', /control/],
  ['/a\u007fb', /control/],
  ['/a%', /malformed/],
  ['/a%4', /malformed/],
  ['/a%zz', /malformed/],
  ['/a%g1', /malformed/],
  ['/a%%41', /malformed/],
  ['/café', /non-ASCII/],
  ['/a\u2215b', /non-ASCII/],
  ['/\uff0e\uff0e/admin', /non-ASCII/],
  ['/%c0%ae%c0%ae/admin', /UTF-8/],
  ['/%c0%af', /UTF-8/],
  ['/%e0%80%ae', /UTF-8/],
  ['/%ed%a0%80', /UTF-8/],
  ['/%c3', /UTF-8/],
  ['/%ff', /UTF-8/],
  ['/a b', /not allowed/],
  ['/a?b', /not allowed/],
  ['/a#b', /not allowed/],
  ['/a"b', /not allowed/],
  ['/a<b>', /not allowed/],
  ['/a{b}', /not allowed/],
  ['/a|b', /not allowed/],
  ['/a[0]', /not allowed/],
  ['/a/..;/admin', /path parameter/],
  ['/a/.;x/b', /path parameter/],
  ['/a/..%3b/admin', /path parameter/],
  ['/a/%2e%2e;x/admin', /path parameter/],
];

describe('normalizePath (RFC 3986 §6.2.2, §5.2.4)', () => {
  it('has a table of at least 40 cases', () => assert.ok(ACCEPTED.length + REFUSED.length >= 40));

  for (const [input, expected] of ACCEPTED) {
    it(`normalizes ${JSON.stringify(input)} → ${expected}`, () => {
      assert.equal(normalizePath(input), expected);
      // The normal form is a fixed point: normalizing again changes nothing (no second decoding step).
      assert.equal(normalizePath(expected), expected);
    });
  }

  for (const [input, message] of REFUSED) {
    it(`refuses ${JSON.stringify(input)}`, () => {
      assert.throws(() => normalizePath(input), (err: unknown) => {
        assert.ok(err instanceof PathRefusedError);
        assert.equal(err.code, 'path_refused');
        assert.match(err.message, message);
        return true;
      });
    });
  }

  it('caps the length at MAX_PATH_LENGTH', () => {
    const ok = `/${'a'.repeat(MAX_PATH_LENGTH - 1)}`;
    assert.equal(normalizePath(ok), ok);
    assert.throws(() => normalizePath(`${ok}a`), /longer than 2048/);
    // The cap applies to the input, before any decoding shortens it.
    assert.throws(() => normalizePath(`/${'%41'.repeat(700)}`), PathRefusedError);
  });

  it('refuses non-strings', () => {
    assert.throws(() => normalizePath(undefined as unknown as string), PathRefusedError);
  });

  it('is an invalid_request (400) on the wire with the stable code path_refused', () => {
    try {
      normalizePath('/a%2fb');
      assert.fail('should throw');
    } catch (err) {
      assert.ok(err instanceof OAuthError);
      assert.equal((err as PathRefusedError).code, 'path_refused');
      const { status, body } = toHttpError(err);
      assert.equal(status, 400);
      assert.equal(body.error, 'invalid_request');
    }
  });

  it('never outputs an encoded unreserved character, a lower-case escape, a dot segment or an empty segment', () => {
    const inputs = ACCEPTED.map(([i]) => i);
    for (const input of inputs) {
      const out = normalizePath(input);
      assert.doesNotMatch(out, /%(?:[46][1-9A-F]|[57][0-9A]|3[0-9]|2D|2E|5F|7E)/i, input);
      assert.doesNotMatch(out, /%[0-9A-F]?[a-f]/, input);
      assert.doesNotMatch(out, /(^|\/)\.{1,2}(\/|$)/, input);
      assert.doesNotMatch(out, /\/\//, input);
    }
  });

  // Speed is the benchmarks' business (bench/proxy); this checks a long path is normalized right.
  it('normalizes a long path with many dot segments', () => {
    const p = `/${'seg/%2e/x/../'.repeat(150)}end`;
    assert.equal(normalizePath(p), `/${'seg/'.repeat(150)}end`);
  });
});
