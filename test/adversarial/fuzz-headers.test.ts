/**
 * Adversarial fuzzing: header handling. What the proxy sends upstream (`upstreamHeaders`,
 * `applyQueryCredential`), what it sends back (`responseHeaders`), how it reads the agent's
 * token (`credentialsOf`) and method overrides (`hasMethodOverride`, `hasMethodOverrideParam`),
 * each against an oracle written here from the RFCs or from the server conventions an
 * upstream may follow:
 *
 * - a model of upstreamHeaders / responseHeaders from RFC 9110 §7.6.1 (hop-by-hop and the
 *   `Connection` list) and the documented drop lists: the output must be exactly the model's;
 * - RFC 6750 §2.1 `b64token` (and RFC 9449 §7.1 for DPoP) as a regex written from the grammar;
 * - one query parser per server convention (WHATWG form decoding, no decoding, case folding,
 *   `;` as a separator, PHP's name mangling, Java/.NET upper-case folding) reading the query the
 *   proxy sends: exactly one parameter is the credential's name, and it is the credential;
 * - the same conventions, and CGI's `_`/`-` header mapping, for method overrides.
 *
 * Through the real proxy with raw sockets: random casings, repetitions, whitespace, obs-fold
 * attempts and look-alike names of `Authorization`, `DPoP` and the credential header; the
 * recording upstream never receives the agent's token or proof and always the credential once.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import fc from 'fast-check';
import { applyQueryCredential, responseHeaders, upstreamHeaders, type InjectedCredential } from '../../src/proxy/headers.js';
import { credentialsOf, ResourceAuthError } from '../../src/proxy/token-check.js';
import { hasMethodOverride, hasMethodOverrideParam } from '../../src/proxy/actions.js';
import { REC_KEY, rawHttp, startTarget, type Target } from './harness.js';

// ------------------------------------------------------------------------------ shared

/** RFC 9110 §7.6.1 (and the pre-RFC 7230 `proxy-connection`, `keep-alive`; RFC 7540 §3.2.1 `http2-settings`). */
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'http2-settings'];
/** The agent's credentials and claims that upstreamHeaders documents it never forwards. */
const NEVER_UPSTREAM = ['authorization', 'dpop', 'cookie', 'forwarded', 'x-real-ip', 'x-client-ip', 'true-client-ip', 'host', 'expect', 'traceparent'];
const isAddressClaim = (n: string) => n.startsWith('x-forwarded-');

/** Randomly cased, as an agent may send it (RFC 9110 §5.1: field names are case-insensitive). */
const casing = (name: string) => fc.array(fc.boolean(), { minLength: name.length, maxLength: name.length })
  .map((up) => [...name].map((c, i) => (up[i] ? c.toUpperCase() : c.toLowerCase())).join(''));

const NAMES = [
  ...HOP_BY_HOP, ...NEVER_UPSTREAM, 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-forwarded-port', 'x-forwarded-prefix',
  'x-api-key', 'content-type', 'content-length', 'accept', 'user-agent', 'mcp-session-id', 'tracestate', 'x-custom', 'x-foo', 'set-cookie', 'location',
  ':authority', ':path', '__proto__', 'constructor',
];
const headerValue = fc.oneof(
  fc.constantFrom('', 'x', 'close', 'keep-alive', 'Bearer agent-token-AAAA', 'for=1.2.3.4', '1.2.3.4', 'chunked'),
  fc.string({ unit: fc.constantFrom(...'abcXYZ019 -_.,;=/+:"\t'), maxLength: 16 }),
);
/** A Connection field value: names from the pool with the list syntax's optional whitespace and empty elements (RFC 9110 §5.6.1). */
const connectionValue = fc.array(fc.tuple(fc.constantFrom(...NAMES, 'close', 'keep-alive', ''), fc.constantFrom(',', ', ', ' ,', ',,', ' , ', ',\t')), { maxLength: 4 })
  .chain((parts) => fc.tuple(...parts.map(([n, sep]) => casing(n).map((c) => c + sep)))).map((xs) => xs.join('').replace(/^[\s,]+|[\s,]+$/g, ''));

/** A header record as node:http could deliver it, keys possibly cased (the function lower-cases; a hand-built record may not be). */
const incomingArb = fc.tuple(
  fc.uniqueArray(fc.constantFrom(...NAMES.filter((n) => n !== 'connection')), { maxLength: 10 }),
  fc.option(connectionValue, { nil: undefined }),
  fc.boolean(),
).chain(([names, conn, cased]) => fc.tuple(
  fc.tuple(...names.map((n) => fc.tuple(cased ? casing(n) : fc.constant(n), fc.oneof({ weight: 4, arbitrary: headerValue }, { weight: 1, arbitrary: fc.array(headerValue, { minLength: 1, maxLength: 3 }) })))),
  conn === undefined ? fc.constant(undefined) : fc.tuple(cased ? casing('connection') : fc.constant('connection'), fc.constant(conn)),
)).map(([pairs, conn]) => {
  const rec: Record<string, string | string[]> = {};
  for (const [k, v] of [...pairs, ...(conn ? [conn] : [])]) Object.defineProperty(rec, k, { value: v, enumerable: true, writable: true, configurable: true });
  return rec as IncomingHttpHeaders;
});

/** RFC 9110 §7.6.1, §5.6.1: the `Connection` list's names, OWS (SP, HTAB) around each, empty elements ignored, compared case-insensitively. */
function connectionNames(h: Record<string, unknown>): Set<string> {
  const out = new Set<string>();
  for (const [k, v] of Object.entries(h)) {
    if (k.toLowerCase() !== 'connection' || v === undefined) continue;
    for (const s of Array.isArray(v) ? v : [v]) for (const e of String(s).split(',')) {
      const name = e.replace(/^[ \t]+|[ \t]+$/g, '').toLowerCase();
      if (name !== '') out.add(name);
    }
  }
  return out;
}

const credentialArb: fc.Arbitrary<InjectedCredential> = fc.oneof(
  fc.record({ type: fc.constant('header' as const), name: fc.constantFrom('x-api-key', 'X-Api-Key', 'api-token', 'x-custom'), value: fc.constantFrom('s3cr3t-KEY-0123456789', 'k+y/v=a!l(u)e~ 1') }),
  fc.record({ type: fc.constant('bearer' as const), value: fc.constantFrom('upstream-bearer-0123456789', 'tok/+=') }),
  fc.record({ type: fc.constant('basic' as const), username: fc.constantFrom('svc', 'svc user'), value: fc.constantFrom('p@ss:w0rd!', 'hunter2hunter2') }),
);

/** The header a credential becomes (RFC 6750 §2.1, RFC 7617 §2, or the configured name), as the model says. */
function credentialHeaderModel(c: InjectedCredential): [string, string] | undefined {
  if (c.type === 'bearer') return ['authorization', `Bearer ${c.value}`];
  if (c.type === 'basic') return ['authorization', `Basic ${Buffer.from(`${c.username}:${c.value}`).toString('base64')}`];
  if (c.type === 'header') return [c.name!.toLowerCase(), c.value];
  return undefined;
}

// ------------------------------------------------------------------------------ upstreamHeaders

describe('fuzz: upstreamHeaders against a model of RFC 9110 §7.6.1 and the documented drop list', () => {
  const opts = { clientIp: '10.1.2.3', proto: 'https' as const, host: 'mandate.example', traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' };

  it('the output is exactly the model: end-to-end fields kept byte for byte, the proxy\'s facts and the credential set once', () => {
    fc.assert(fc.property(incomingArb, fc.option(credentialArb, { nil: undefined }), fc.boolean(), (incoming, credential, bodyRewritten) => {
      const out = upstreamHeaders(incoming, { ...opts, bodyRewritten, ...(credential ? { credential } : {}) });
      const listed = connectionNames(incoming);
      const model: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(incoming)) {
        const n = k.toLowerCase();
        if (v === undefined || HOP_BY_HOP.includes(n) || NEVER_UPSTREAM.includes(n) || isAddressClaim(n) || n.startsWith(':') || listed.has(n)) continue;
        if (n === 'content-length' && bodyRewritten) continue;
        Object.defineProperty(model, n, { value: v, enumerable: true, writable: true, configurable: true });
      }
      model['x-forwarded-for'] = opts.clientIp;
      model['x-forwarded-proto'] = opts.proto;
      model['x-forwarded-host'] = opts.host;
      model.traceparent = opts.traceparent;
      const header = credential && credentialHeaderModel(credential);
      if (header) model[header[0]] = header[1];
      assert.deepEqual({ ...out }, { ...model }, JSON.stringify({ incoming, credential }));

      // The same, said as the issue says it.
      const names = Object.keys(out);
      assert.equal(new Set(names.map((n) => n.toLowerCase())).size, names.length, 'no field twice under two casings');
      for (const n of names) {
        assert.ok(!HOP_BY_HOP.includes(n) && !(listed.has(n) && !['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'traceparent', header?.[0]].includes(n)), `${n} is hop-by-hop`);
      }
      if (header) assert.equal(out[header[0]], header[1], 'the credential, once, as configured');
      else assert.equal(out.authorization, undefined, 'never the agent\'s authorization');
      assert.equal(out.dpop, undefined);
      assert.equal(out.cookie, undefined);
      assert.equal(out.forwarded, undefined);
    }), { numRuns: 3000 });
  });

  it('a name the CGI/WSGI header mapping reads as a dropped field or as the credential (`_` for `-`) is not forwarded', () => {
    const cgi = (n: string) => n.toLowerCase().replace(/_/g, '-');
    const lookAlike = fc.constantFrom('x_forwarded_for', 'X_Forwarded_Host', 'x_real_ip', 'true_client_ip', 'x_client_ip', 'x_api_key', 'X_API_KEY', 'proxy_authorization', 'x-forwarded_for');
    fc.assert(fc.property(fc.uniqueArray(lookAlike, { minLength: 1, maxLength: 4 }), (names) => {
      const incoming = Object.fromEntries(names.map((n) => [n, 'agent'])) as IncomingHttpHeaders;
      const out = upstreamHeaders(incoming, { ...opts, credential: { type: 'header', name: 'x-api-key', value: 's3cr3t' } });
      for (const n of Object.keys(out)) {
        const read = cgi(n);
        const proxyOwn = ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'traceparent', 'x-api-key'].includes(n);
        assert.ok(proxyOwn || !(HOP_BY_HOP.includes(read) || NEVER_UPSTREAM.includes(read) || isAddressClaim(read) || read === 'x-api-key'), `${n} reaches a CGI upstream as ${read}`);
      }
    }), { numRuns: 300 });
  });
});

// ------------------------------------------------------------------------------ responseHeaders

describe('fuzz: responseHeaders never hands the agent the tool\'s credential', () => {
  const secretArb = fc.string({ unit: fc.constantFrom(...'abcXYZ0189-._~!*\'() +/=:@&%é'), minLength: 6, maxLength: 16 }).filter((s) => s.trim() === s && s.trim() !== '');
  const responseCredential = fc.tuple(fc.constantFrom('header', 'bearer', 'basic', 'query'), secretArb).map(([type, value]): InjectedCredential => (
    type === 'header' ? { type, name: 'x-api-key', value } : type === 'basic' ? { type, username: 'svc', value } : type === 'query' ? { type, name: 'api_key', value } : { type: 'bearer', value }));

  /** The forms responseHeaders documents it scrubs: the secret, Basic's base64 of user:password, a query credential's percent-encoding. */
  const documentedForms = (c: InjectedCredential) => [
    c.value,
    ...(c.type === 'basic' ? [Buffer.from(`${c.username}:${c.value}`).toString('base64')] : []),
    ...(c.type === 'query' ? [encodeURIComponent(c.value)] : []),
  ];
  /** Forms an upstream re-serializing the request URL writes (a pagination `Link`, a `Location`): form encoding, lower-case hex. */
  const reserializedForms = (c: InjectedCredential) => c.type !== 'query' ? [] : [
    new URLSearchParams({ k: c.value }).toString().slice(2),
    encodeURIComponent(c.value).replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase()),
  ];

  const upstreamArb = (creds: fc.Arbitrary<InjectedCredential>, forms: (c: InjectedCredential) => string[]) => creds.chain((cred) => fc.tuple(
    fc.constant(cred),
    fc.uniqueArray(fc.tuple(
      fc.constantFrom('set-cookie', 'authorization', 'x-api-key', 'www-authenticate', 'location', 'link', 'x-echo', 'connection', 'keep-alive', 'transfer-encoding', 'content-length', 'content-type', 'vary', ':status', 'x-hop'),
      fc.oneof(fc.constantFrom(...forms(cred)).map((f) => `pre ${f} post`), fc.constantFrom(...forms(cred)), headerValue, fc.constant('x-hop, keep-alive')),
    ), { selector: ([n]) => n, maxLength: 8 }),
    fc.boolean(),
  )).map(([cred, pairs, rewritten]) => ({ cred, upstream: Object.fromEntries(pairs) as Record<string, string>, rewritten }));

  it('the output is exactly the model, and no field carries a documented form of the secret', () => {
    fc.assert(fc.property(upstreamArb(responseCredential, documentedForms), ({ cred, upstream, rewritten }) => {
      const out = responseHeaders(upstream, { credential: cred, bodyRewritten: rewritten });
      const listed = connectionNames(upstream);
      const forms = documentedForms(cred);
      const model: Record<string, string> = {};
      for (const [k, v] of Object.entries(upstream)) {
        if (HOP_BY_HOP.includes(k) || listed.has(k) || k.startsWith(':') || k === 'set-cookie' || k === 'authorization') continue;
        if (cred.type === 'header' && k === cred.name) continue;
        if (k === 'content-length' && rewritten) continue;
        if (forms.some((f) => v.includes(f))) continue;
        model[k] = v;
      }
      assert.deepEqual(out, model, JSON.stringify({ cred, upstream }));
      for (const v of Object.values(out).flat()) for (const f of forms) assert.ok(!v.includes(f), `${JSON.stringify(v)} carries ${JSON.stringify(f)}`);
    }), { numRuns: 2000 });
  });

  it('a query credential re-serialized by the upstream (form encoding, lower-case hex) is scrubbed too', () => {
    fc.assert(fc.property(upstreamArb(secretArb.filter((v) => /[^A-Za-z0-9\-._~]/.test(v)).map((value): InjectedCredential => ({ type: 'query', name: 'api_key', value })), reserializedForms), ({ cred, upstream }) => {
      const out = responseHeaders(upstream, { credential: cred });
      for (const v of Object.values(out).flat()) for (const f of reserializedForms(cred)) assert.ok(!v.includes(f), `${JSON.stringify(v)} carries ${JSON.stringify(f)}`);
    }), { numRuns: 1000 });
  });
});

// ------------------------------------------------------------------------------ applyQueryCredential

type Pair = { name: string; value: string };
/** application/x-www-form-urlencoded as WHATWG URL §5.1 parses it (Node, browsers, Go's ParseQuery for valid input). */
const formPairs = (q: string): Pair[] => [...new URLSearchParams(q)].map(([name, value]) => ({ name, value }));
/** Percent-decoding that leaves bad escapes as they are (the lenient servers). */
function lenient(s: string): string {
  const plus = s.replace(/\+/g, ' ');
  try {
    return decodeURIComponent(plus);
  } catch {
    return plus.replace(/%([0-9A-Fa-f]{2})/g, (m, h: string) => (parseInt(h, 16) < 0x80 ? String.fromCharCode(parseInt(h, 16)) : m));
  }
}
const splitPairs = (q: string, sep: RegExp, decode: (s: string) => string): Pair[] => q.split(sep).filter((p) => p !== '').map((p) => {
  const eq = p.indexOf('=');
  return { name: decode(eq < 0 ? p : p.slice(0, eq)), value: decode(eq < 0 ? '' : p.slice(eq + 1)) };
});
/** PHP's variable registration (main/php_variables.c): leading spaces dropped, the name cut at NUL, " " and "." become "_". */
const phpName = (n: string) => n.replace(/^ +/, '').split('\0')[0]!.replace(/[ .]/g, '_');

interface Convention {
  name: string;
  /** The parameters as this server reads them, and how it compares a name with the credential's. */
  read: (q: string) => Pair[];
  same: (a: string, b: string) => boolean;
  /** The credential's value as this server reads the parameter's value (decoded, unless it never decodes). */
  value?: (v: string) => string;
}
const CONVENTIONS: Convention[] = [
  { name: 'WHATWG form decoding', read: formPairs, same: (a, b) => a === b },
  { name: 'no decoding', read: (q) => splitPairs(q, /&/, (s) => s), same: (a, b) => a === b, value: decodeURIComponent },
  { name: 'form decoding, case-insensitive (ASP.NET, nginx $arg_)', read: formPairs, same: (a, b) => a.toLowerCase() === b.toLowerCase() },
  { name: '";" as a separator too, case-insensitive (CGI.pm, Python < 3.9.2)', read: (q) => splitPairs(q, /[&;]/, lenient), same: (a, b) => a.toLowerCase() === b.toLowerCase() },
  { name: 'PHP name mangling', read: (q) => splitPairs(q, /&/, lenient).map((p) => ({ ...p, name: phpName(p.name) })), same: (a, b) => phpName(a) === phpName(b) },
  { name: 'upper-case folding (Java equalsIgnoreCase, .NET OrdinalIgnoreCase)', read: formPairs, same: (a, b) => a.toUpperCase() === b.toUpperCase() },
];

describe('fuzz: applyQueryCredential leaves one parameter any server reads as the credential\'s name, and it is the credential', () => {
  const credName = fc.constantFrom('api_key', 'key', 'token', 'apiKey', 'access.token');
  /** Spellings of `name` that some server reads as it. */
  const spelling = (name: string) => fc.oneof(
    fc.constant(name),
    casing(name),
    fc.constant(encodeURIComponent(name).replace(/_/g, '%5F').replace(/k/g, '%6B')),
    fc.constant(name.replace(/_/g, '%5f')),
    fc.constant(name.replace(/_/g, '+').replace(/\./g, '+')),
    fc.constant(name.replace(/_/g, '.')),
    fc.constant(`+${name}`),
    fc.constant(`${name}%00junk`),
    fc.constant(name.replace(/k/g, '\u212a').replace(/i/g, '\u0131')),
    fc.constant(`${name}[]`),
    fc.constant(name.toUpperCase()),
  );
  const otherParam = fc.oneof(
    fc.constantFrom('page=2', 'q=a+b', 'x', '', 'a=%zz', 'b=%C3%A9', 'api=1', 'keys=2', 'ok=1;x=2', '_method=GET'),
    fc.tuple(fc.string({ unit: fc.constantFrom(...'abk_.%5F+;='), maxLength: 8 }), fc.string({ unit: fc.constantFrom(...'ab1%+;'), maxLength: 4 })).map(([n, v]) => `${n}=${v}`),
  );
  const queryArb = credName.chain((name) => fc.tuple(
    fc.constant(name),
    fc.array(fc.oneof(otherParam, fc.tuple(spelling(name), fc.constantFrom('evil', '', 'x;api_key=evil')).map(([n, v]) => `${n}=${v}`), spelling(name)), { maxLength: 6 }),
    fc.constantFrom('&', '&', ';', '&&'),
    fc.boolean(),
  )).map(([name, parts, sep, mark]) => ({ name, search: `${mark ? '?' : ''}${parts.join(sep)}` }));

  for (const conv of CONVENTIONS) {
    const body = () => {
      fc.assert(fc.property(queryArb, fc.constantFrom('s3cr3t', 'a b+c/d=e&f;g', 'é!*'), ({ name, search }, value) => {
        const out = applyQueryCredential(search, { type: 'query', name, value });
        assert.ok(out.startsWith('?'), out);
        const hits = conv.read(out.slice(1)).filter((p) => conv.same(p.name, name));
        assert.equal(hits.length, 1, `${conv.name}: ${JSON.stringify(search)} → ${JSON.stringify(out)} has ${hits.length} parameters named ${name}`);
        assert.equal((conv.value ?? ((v) => v))(hits[0]!.value), value, `${conv.name}: the one parameter is the credential`);
      }), { numRuns: 1000 });
    };
    it(`${conv.name}: exactly one, the credential`, body);
  }
});

// ------------------------------------------------------------------------------ credentialsOf

describe('fuzz: credentialsOf accepts exactly RFC 6750 §2.1 / RFC 9449 §7.1 credentials', () => {
  /**
   * credentials = auth-scheme 1*SP b64token (RFC 6750 §2.1; RFC 9110 §11.4 for the SP), the
   * scheme case-insensitive (RFC 9110 §11.1); b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" /
   * "~" / "+" / "/" ) *"=". Mandate also caps the token at 8192 characters (documented).
   */
  const RFC_CREDENTIALS = /^(bearer|dpop) +([A-Za-z0-9\-._~+/]+=*)$/i;

  const valueArb = fc.tuple(
    fc.constantFrom('Bearer', 'bearer', 'BEARER', 'BeArEr', 'DPoP', 'dpop', 'DPOP', 'Basic', 'Bearer:', 'Token', '', 'Bearer,', 'Bearerx'),
    fc.constantFrom(' ', ' ', '  ', '\t', '', ' \t', '\t '),
    fc.oneof(
      fc.tuple(fc.string({ unit: fc.constantFrom(...'AZaz09-._~+/'), minLength: 1, maxLength: 24 }), fc.constantFrom('', '=', '==', '=a', ' ', '\t')).map(([t, end]) => t + end),
      fc.string({ unit: fc.constantFrom(...'AZaz09-._~+/= \t,"\\:é'), maxLength: 24 }),
    ),
  ).map(([scheme, sp, token]) => `${scheme}${sp}${token}`);

  /** A request as node:http hands it over: each field value without leading or trailing SP/HTAB (RFC 9110 §5.5), repeats in rawHeaders. */
  const request = (fields: Array<[string, string]>): IncomingMessage => {
    const headers: Record<string, string> = {};
    const rawHeaders: string[] = [];
    for (const [n, v] of fields) {
      const value = v.replace(/^[ \t]+|[ \t]+$/g, '');
      rawHeaders.push(n, value);
      if (!(n.toLowerCase() in headers)) headers[n.toLowerCase()] = value; // node keeps the first Authorization
    }
    return { headers, rawHeaders } as unknown as IncomingMessage;
  };
  const read = (req: IncomingMessage) => {
    try {
      return { ok: true as const, ...credentialsOf(req) };
    } catch (err) {
      assert.ok(err instanceof ResourceAuthError, String(err));
      return { ok: false as const, error: err.error };
    }
  };

  it('one Authorization field: accepted exactly when it matches the grammar, with the token it names', (t) => {
    let accepted = 0;
    fc.assert(fc.property(casing('authorization'), valueArb, (name, value) => {
      const req = request([[name, value]]);
      const got = read(req);
      const m = RFC_CREDENTIALS.exec(req.headers.authorization as string);
      if (m) {
        accepted++;
        assert.deepEqual(got, { ok: true, scheme: m[1]!.toLowerCase() === 'dpop' ? 'DPoP' : 'Bearer', token: m[2] }, JSON.stringify(value));
      } else {
        assert.equal(got.ok, false, `accepted ${JSON.stringify(value)}, which RFC 6750 §2.1 does not`);
      }
    }), { numRuns: 5000, examples: [
      // Shrunk counterexample (found by this property): a tab after the scheme's space was trimmed away.
      ['Authorization', 'Bearer \tabc'],
    ] });
    t.diagnostic(`accepted ${accepted}`);
    assert.ok(accepted > 400, `accepted ${accepted}`);
  });

  it('Authorization or DPoP given twice, in any casing, is refused whatever the values', () => {
    fc.assert(fc.property(casing('authorization'), casing('authorization'), casing('dpop'), casing('dpop'), fc.nat(3), (a1, a2, d1, d2, shape) => {
      const fields: Array<[string, string]> = shape === 0 ? [[a1, 'Bearer abc'], [a2, 'Bearer abc']]
        : shape === 1 ? [[a1, 'Bearer abc'], ['x-other', '1'], [a2, 'Bearer other']]
        : shape === 2 ? [[a1, 'DPoP abc'], [d1, 'p1'], [d2, 'p2']]
        : [[a1, 'DPoP abc'], [d1, 'p1'], [a2, 'Bearer abc'], [d2, 'p1']];
      assert.equal(read(request(fields)).ok, false, JSON.stringify(fields));
    }), { numRuns: 500 });
  });
});

// ------------------------------------------------------------------------------ method overrides

describe('fuzz: method overrides in any spelling a framework reads', () => {
  const OVERRIDE_HEADERS = ['x-http-method-override', 'x-http-method', 'x-method-override'];

  it('hasMethodOverride: every override header, in any casing, with "-" or "_" (CGI, PHP-FPM, WSGI read them alike), even empty', () => {
    const spelled = fc.constantFrom(...OVERRIDE_HEADERS).chain((n) => fc.tuple(fc.constant(n), casing(n), fc.array(fc.boolean(), { minLength: 4, maxLength: 4 })))
      .map(([n, cased, under]) => {
        let i = 0;
        return { canonical: n, sent: cased.replace(/-/g, (d) => (under[i++] ? '_' : d)) };
      });
    fc.assert(fc.property(spelled, fc.constantFrom('DELETE', '', 'PUT'), fc.uniqueArray(fc.constantFrom('accept', 'x-http-methods', 'x-method', 'http-method-override', 'x-http-method-overrides'), { maxLength: 3 }), ({ canonical, sent }, value, others) => {
      const headers = Object.fromEntries([...others.map((o) => [o, 'DELETE']), [sent, value]]) as IncomingHttpHeaders;
      assert.equal(hasMethodOverride(headers), canonical, `${sent}: ${JSON.stringify(headers)}`);
      // Look-alikes that no framework reads are not overrides.
      assert.equal(hasMethodOverride(Object.fromEntries(others.map((o) => [o, 'DELETE'])) as IncomingHttpHeaders), undefined);
    }), { numRuns: 1000, examples: [
      // Shrunk counterexample (found by this property): a PHP or WSGI upstream reads it as X-HTTP-Method-Override.
      [{ canonical: 'x-http-method-override', sent: 'X_HTTP_Method_Override' }, 'DELETE', []],
    ] });
  });

  /** The `_method` parameter as each framework reads a query: WHATWG/qs form decoding, `;` splitting, case folding, PHP (Laravel, Symfony) name mangling. */
  const readsMethod = (search: string): boolean => {
    const q = search.replace(/^\?/, '');
    const names = [
      ...formPairs(q).map((p) => p.name),
      ...splitPairs(q, /[&;]/, lenient).map((p) => p.name),
      // PHP splits on arg_separator.input: "&" by default, ";&" where configured so.
      ...splitPairs(q, /[&;]/, lenient).map((p) => phpName(p.name)),
    ];
    // Deliberately stricter than the frameworks: a PHP array named `_method` (`_method[]`, which
    // Symfony ignores as not a string) is refused too, as is every name that upper-case folding reads as it.
    return names.some((n) => n.toLowerCase() === '_method' || n.toUpperCase().toLowerCase() === '_method' || /^_method\[/i.test(n));
  };
  const methodSpelling = fc.oneof(
    casing('_method'),
    fc.constantFrom('%5Fmethod', '%5fMETHOD', '_%6Dethod', '.method', ' _method', '+_method', '%20_method', '+.method', '_method%00', '_method%00x', '.method%00', '_methoD', '_method[]', '%2Emethod'),
    fc.constantFrom('method', '__method', '_methods', 'x_method', '_method_', 'm.ethod', '.', '_'),
  );
  const queryArb = fc.tuple(
    fc.array(fc.constantFrom('a=1', 'page=2', 'x', 'q=_method', 'b=%zz'), { maxLength: 3 }),
    methodSpelling,
    fc.constantFrom('DELETE', '', 'put'),
    fc.constantFrom('&', ';'),
    fc.boolean(),
  ).map(([others, name, value, sep, first]) => (first ? [`${name}=${value}`, ...others] : [...others, `${name}=${value}`]).join(sep));

  it('hasMethodOverrideParam: refuses exactly the queries in which some framework reads a `_method` parameter', () => {
    let found = 0;
    fc.assert(fc.property(queryArb, fc.boolean(), (q, mark) => {
      const search = mark ? `?${q}` : q;
      const want = readsMethod(search);
      if (want) found++;
      assert.equal(hasMethodOverrideParam(search) !== undefined, want, JSON.stringify(search));
    }), { numRuns: 2000, examples: [
      // Shrunk counterexamples (found by this property): PHP registers each of these as `_method`,
      // and Laravel (which enables Symfony's method parameter override) then routes the POST as DELETE.
      ['.method=DELETE', false],
      ['+_method=DELETE', false],
      ['_method%00=DELETE', false],
    ] });
    assert.ok(found > 500, `overrides generated: ${found}`);
  });
});

// ------------------------------------------------------------------------------ through the proxy

describe('fuzz: through the proxy (raw sockets), the upstream never gets the agent\'s token or proof, and the credential once', () => {
  let x: Target;
  let token: string;
  let host: string;
  const PROOF = 'eyJ0eXAiOiJkcG9wK2p3dCJ9.agent-proof-payload.sig';
  before(async () => {
    x = await startTarget();
    token = await x.token(x.alice, 'rec', 'list_items get_item');
    host = new URL(x.iss).host;
  });
  after(async () => x.close());

  /** One header line as an agent could write it: odd casing, whitespace around the value, a look-alike name, an obs-fold attempt. */
  const line = (name: string, value: string) => fc.tuple(casing(name), fc.constantFrom('', ' ', '  ', '\t', ' \t'), fc.constantFrom('', ' ', '\t', '  ')).map(([n, pre, post]) => `${n}:${pre}${value}${post}`);
  const agentLines = (tok: string) => fc.tuple(
    line('authorization', `Bearer ${tok}`),
    fc.array(fc.oneof(
      line('dpop', PROOF),
      line('x-api-key', 'agent-chosen-key'),
      line('x_api_key', 'agent-chosen-key'),
      line('cookie', `sid=${tok}`),
      line('forwarded', 'for=6.6.6.6'),
      line('x-forwarded-for', '6.6.6.6'),
      line('x-forwarded-host', 'evil.example'),
      line('connection', 'close, x-api-key'),
      line('connection', 'close, authorization'),
      line('proxy-authorization', `Bearer ${tok}`),
      line('x-custom', 'kept'),
      // obs-fold (RFC 9112 §5.2) and whitespace before the colon (§5.1: a server MUST reject it).
      fc.constantFrom(`Authorization: Bearer\r\n ${tok}`, `DPoP: eyJ0eXAiOiJkcG9wK2p3dCJ9.\r\n\tagent-proof-payload.sig`, 'X-Custom: a\r\n b', `Authorization : Bearer ${tok}`, `Authorization\t: Bearer ${tok}`, `X-Api-Key : agent`, `DPoP : ${PROOF}`),
    ), { maxLength: 5 }),
    fc.nat(6),
  ).map(([auth, others, at]) => {
    const lines = [...others];
    lines.splice(Math.min(at, lines.length), 0, auth);
    return lines;
  });

  it('regression: a POST whose query or header a PHP or CGI upstream reads as a method override is refused, and nothing reaches the tool', async () => {
    const writer = await x.token(x.alice, 'rec', 'create_item');
    const attempts: Array<[string, string[]]> = [
      ['/items?.method=DELETE', []], ['/items?+_method=DELETE', []], ['/items?%20_method=DELETE', []], ['/items?_method%00x=DELETE', []],
      ['/items?a=1&.Method=DELETE', []], ['/items', ['X_HTTP_Method_Override: DELETE']], ['/items', ['x-http_method: DELETE']],
    ];
    x.rec.seen.length = 0;
    for (const [target, extra] of attempts) {
      const r = await rawHttp(x.iss, [`POST /tools/rec${target} HTTP/1.1`, `Host: ${host}`, `Authorization: Bearer ${writer}`, 'Content-Type: application/json', 'Content-Length: 2', ...extra].join('\r\n'), '{}');
      assert.equal(r.status, 400, `${target} ${extra.join(' ')}: ${r.body}`);
      assert.match(r.body, /method override/);
    }
    assert.deepEqual(x.rec.seen, [], 'nothing reached the tool');
    // The same POST without the override reaches it.
    const ok = await rawHttp(x.iss, [`POST /tools/rec/items?method=x HTTP/1.1`, `Host: ${host}`, `Authorization: Bearer ${writer}`, 'Content-Type: application/json', 'Content-Length: 2'].join('\r\n'), '{}');
    assert.equal(ok.status, 200, ok.body);
  });

  it('random header spellings: the tool sees its credential exactly once and nothing of the agent\'s credentials', async (t) => {
    let reached = 0;
    let refused = 0;
    await fc.assert(fc.asyncProperty(agentLines(token), fc.constantFrom('/items', '/items/1'), async (lines, path) => {
      x.rec.seen.length = 0;
      const r = await rawHttp(x.iss, [`GET /tools/rec${path} HTTP/1.1`, `Host: ${host}`, ...lines].join('\r\n'));
      if (x.rec.seen.length === 0) {
        refused++;
        assert.ok(r.status >= 400, `${r.status}: ${JSON.stringify(lines)}`);
        return;
      }
      reached++;
      assert.equal(r.status, 200, r.body);
      assert.equal(x.rec.seen.length, 1);
      const seen = x.rec.seen[0]!;
      const raw = seen.rawHeaders;
      const pairs: Array<[string, string]> = [];
      for (let i = 0; i < raw.length; i += 2) pairs.push([raw[i]!.toLowerCase(), raw[i + 1]!]);
      const keys = pairs.filter(([n]) => n === 'x-api-key');
      assert.deepEqual(keys, [['x-api-key', REC_KEY]], `the credential exactly once: ${JSON.stringify(pairs)}`);
      for (const [n, v] of pairs) {
        assert.ok(!v.includes(token), `the agent's token reached the tool in ${n}`);
        assert.ok(!v.includes(PROOF) && !v.includes('agent-proof'), `the agent's proof reached the tool in ${n}`);
        assert.ok(!['authorization', 'dpop', 'cookie', 'forwarded', 'proxy-authorization'].includes(n), `${n} reached the tool`);
        assert.ok(!v.includes('6.6.6.6') && !v.includes('evil.example'), `an agent address claim reached the tool in ${n}`);
      }
      assert.deepEqual(pairs.filter(([n]) => n === 'x-forwarded-for').map(([, v]) => v), ['127.0.0.1']);
    }), { numRuns: 300 });
    t.diagnostic(`reached ${reached}, refused ${refused}`);
    assert.ok(reached > 50 && refused > 10, `both outcomes (reached ${reached}, refused ${refused})`);
  });
});
