import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { ManualClock } from '../../src/core/index.js';
import { ConsoleSessions, consoleEvent, sessionCookie } from '../../src/web/index.js';

const principal = { id: '0123456789abcdef', name: 'ops', role: 'approver' as const };

/** Just enough of a request for the session checks. */
function req(headers: Record<string, string>): IncomingMessage {
  return { headers: { host: 'mandate.test', ...headers }, socket: {} } as unknown as IncomingMessage;
}

describe('console sessions', () => {
  const make = (clock: ManualClock, extra: Partial<ConstructorParameters<typeof ConsoleSessions>[0]> = {}) =>
    new ConsoleSessions({ clock, idleTimeoutS: 900, maxSessionS: 3600, secureCookie: false, ...extra });

  it('ends a session after the idle timeout, and keeps an active one until the absolute limit', () => {
    const clock = new ManualClock(1_000_000);
    const s = make(clock);
    const { id } = s.create(principal);
    const cookie = `other=1; mandate_session=${id}`;
    clock.advance(899_000);
    assert.equal(s.lookup(req({ cookie }))?.credentialId, principal.id, 'used within the idle timeout');
    clock.advance(899_000);
    assert.ok(s.lookup(req({ cookie })), 'each use restarts the idle clock');
    clock.advance(900_000);
    assert.equal(s.lookup(req({ cookie })), undefined, 'idle for 15 minutes: signed out');
    const second = s.create(principal);
    for (let i = 0; i < 5; i++) {
      clock.advance(800_000);
      s.lookup(req({ cookie: `mandate_session=${second.id}` }));
    }
    assert.equal(s.lookup(req({ cookie: `mandate_session=${second.id}` })), undefined, 'past max_session however active');
  });

  it('an event stream does not keep a session alive, and notices when it ends', () => {
    const clock = new ManualClock(0);
    const s = make(clock);
    const { id, session } = s.create(principal);
    clock.advance(600_000);
    s.lookup(req({ cookie: `mandate_session=${id}` }), false);
    clock.advance(400_000);
    assert.equal(s.isLive(session), false);
    const other = s.create(principal);
    assert.equal(s.isLive(other.session), true);
    assert.equal(s.end(req({ cookie: `mandate_session=${other.id}` })), true);
    assert.equal(s.isLive(other.session), false, 'signed out');
  });

  it('accepts a change only with the CSRF token and from its own origin', () => {
    const s = make(new ManualClock(0), { publicOrigin: 'https://mandate.example.com' });
    const { id, session } = s.create(principal);
    const cookie = `mandate_session=${id}`;
    const ok = { cookie, 'x-csrf-token': session.csrf, origin: 'http://mandate.test' };
    assert.equal(s.credentialOf(req(ok), true), principal.id);
    assert.equal(s.credentialOf(req({ ...ok, origin: 'https://mandate.example.com' }), true), principal.id, 'the public URL is ours too');
    assert.equal(s.credentialOf(req({ cookie }), false), principal.id, 'reads need no token');
    const refused: Array<[string, Record<string, string>]> = [
      ['no token', { cookie, origin: 'http://mandate.test' }],
      // The last character changed (to one it is not: a random token ends in 'A' one time in 64).
      ['wrong token', { ...ok, 'x-csrf-token': `${session.csrf.slice(0, -1)}${session.csrf.endsWith('A') ? 'B' : 'A'}` }],
      ['other origin', { ...ok, origin: 'https://evil.example' }],
      ['no origin', { cookie, 'x-csrf-token': session.csrf }],
      ['cross-site fetch metadata', { ...ok, 'sec-fetch-site': 'same-site' }],
    ];
    for (const [name, headers] of refused) {
      assert.throws(() => s.credentialOf(req(headers), true), (e: { status?: number }) => e.status === 403, name);
    }
  });

  it('sets HttpOnly, SameSite=Strict, Path=/ and Secure only over TLS', () => {
    const clock = new ManualClock(0);
    const plain = make(clock).cookie('x');
    assert.match(plain, /^mandate_session=x; Path=\/; HttpOnly; SameSite=Strict$/);
    assert.match(make(clock, { secureCookie: true }).cookie('x'), /; Secure$/);
    assert.match(make(clock).clearCookie(), /Max-Age=0/);
  });

  it('refuses a cookie header with two session cookies or a malformed one', () => {
    const v = 'a'.repeat(43);
    assert.equal(sessionCookie(`mandate_session=${v}`), v);
    assert.equal(sessionCookie(`mandate_session=${v}; mandate_session=${'b'.repeat(43)}`), undefined);
    assert.equal(sessionCookie('mandate_session=short'), undefined);
    assert.equal(sessionCookie(undefined), undefined);
  });

  it('bounds memory: past maxSessions the least recently used session goes', () => {
    const clock = new ManualClock(0);
    const s = make(clock, { maxSessions: 2 });
    const a = s.create(principal);
    clock.advance(1);
    s.create(principal);
    clock.advance(1);
    s.create(principal);
    assert.equal(s.size, 2);
    assert.equal(s.isLive(a.session), false);
  });
});

describe('console events', () => {
  it('relays only allow-listed plain fields of a bus event', () => {
    const e = consoleEvent({
      subject: 'signal.raised', publishedAt: 5,
      data: { id: 'sig_1', nhiId: 'bot', reason: 'r', severity: 'high', data: { token: 'secret' }, jti: 'j', source: 'x', nested: { a: 1 } },
    });
    assert.deepEqual(e, { subject: 'signal.raised', published_at: 5, id: 'sig_1', nhi: 'bot', reason: 'r', severity: 'high' });
  });
});
