import { CredentialError, secretFormsOf, type InjectedCredential } from './headers.js';

/**
 * The tool's credential, kept out of the response bodies the agent gets. A
 * tool can echo what it was sent (an error page quoting the request, a debug endpoint, a JSON
 * body reflecting the headers); the proxy replaces every occurrence of each form of the secret
 * (headers.ts secretForms: as sent, percent-, JSON- and HTML-escaped, base64 for basic) with
 * filler, in every body of the tool that reaches the agent, streamed or buffered.
 *
 * **Same-length filler.** An occurrence becomes as many filler bytes as it had (`*` unless the
 * secret contains it). So the body keeps its length: the tool's `content-length` stays true, a
 * streamed body is never converted to chunked or buffered, `max_response_bytes` and the audit's
 * `response_bytes` count the same bytes, and a response to HEAD matches its GET. What it gives
 * away is the secret's length, which its format usually tells anyway. The filler is a byte that
 * occurs in no form, so filling never makes a new occurrence of any form: the output contains
 * none (a secret whose forms use every printable ASCII character has no filler: refused at start).
 *
 * **Streaming.** Each form is a stage: leftmost, non-overlapping occurrences (as
 * `body.split(form).join(filler)`), and between chunks only the shortest tail that could still
 * be the start of the form is held back. No form contains CR or LF (credentials are checked to be
 * header-safe, RFC 9110 §5.5), so a chunk that ends a line, as every server-sent event does
 * (`\n\n`), is sent whole and at once. The stages run in a fixed order (longest form first), each
 * on the output of the one before, so the result of any chunking equals that of the whole body
 * in one piece. Memory held per response: less than the longest form, per form.
 *
 * **Cost.** Per chunk and per form, one `Buffer.indexOf` of the form over the chunk and a look
 * at the chunk's last `form.length - 1` bytes; per response one small object (`open`). Nothing
 * else is allocated unless a chunk contains an occurrence (the chunk is copied before it is
 * changed) or ends with the start of one (that tail is copied).
 */
export class SecretScrubber {
  /** The forms as bytes: UTF-8, and Latin-1 too where it differs (a header value's bytes, RFC 9110 §5.5). */
  readonly forms: readonly Buffer[];
  /** The filler byte. */
  readonly filler: number;

  constructor(cred: InjectedCredential) {
    const bytes = new Map<string, Buffer>();
    for (const s of secretFormsOf(cred)) {
      for (const b of [Buffer.from(s, 'utf8'), Buffer.from(s, 'latin1')]) if (b.length > 0) bytes.set(b.toString('hex'), b);
    }
    // Longest first: an occurrence of a longer form is filled whole before a shorter one inside it is looked for.
    this.forms = [...bytes.values()].sort((a, b) => b.length - a.length);
    this.filler = fillerFor(this.forms);
  }

  /** A scrub of one response body (its held-back tails). */
  open(): BodyScrub {
    return new BodyScrub(this);
  }

  /** A whole body at once (the tools/list answer the proxy rewrote): a copy when anything was filled, else `body` itself. */
  all(body: Buffer): Buffer {
    const s = this.open();
    const head = s.push(body);
    const rest = s.end();
    return rest.length === 0 ? head : Buffer.concat([head, rest]);
  }
}

/** One response body being scrubbed: push each chunk in order, send what comes back, then `end()`. */
export class BodyScrub {
  /** Per form (stage), the bytes held back after the last chunk; allocated on the first one. */
  private held: Array<Buffer | undefined> | undefined;

  constructor(private readonly s: SecretScrubber) {}

  /** What of the body so far may be sent now (possibly empty; `chunk` itself when nothing changed and nothing is held). */
  push(chunk: Buffer): Buffer {
    const forms = this.s.forms;
    let data = chunk;
    for (let i = 0; i < forms.length; i++) data = this.stage(i, data, false);
    return data;
  }

  /** The rest of the body (what was held back, scrubbed). */
  end(): Buffer {
    if (this.held === undefined) return EMPTY;
    const forms = this.s.forms;
    let data = EMPTY;
    for (let i = 0; i < forms.length; i++) data = data.length === 0 && this.held[i] === undefined ? data : this.stage(i, data, true);
    this.held = undefined;
    return data;
  }

  /** One form over its input stream: fills every occurrence, holds back the tail that could start one. */
  private stage(i: number, input: Buffer, last: boolean): Buffer {
    const form = this.s.forms[i]!;
    const tail = this.held?.[i];
    let buf = input;
    // The concatenation is new: it may be changed in place; an input chunk is copied first.
    let owned = false;
    if (tail !== undefined) {
      buf = Buffer.concat([tail, input]);
      owned = true;
      this.held![i] = undefined;
    }
    let end = 0;
    let at = buf.length < form.length ? -1 : buf.indexOf(form, 0);
    while (at !== -1) {
      if (!owned) {
        buf = Buffer.from(buf);
        owned = true;
      }
      end = at + form.length;
      buf.fill(this.s.filler, at, end);
      at = buf.indexOf(form, end);
    }
    if (last) return buf;
    const keep = heldBack(buf, form, end);
    if (keep === 0) return buf;
    // Copied: the chunk's memory is not kept past this call.
    (this.held ??= new Array<Buffer | undefined>(this.s.forms.length))[i] = Buffer.from(buf.subarray(buf.length - keep));
    return buf.subarray(0, buf.length - keep);
  }
}

const EMPTY: Buffer = Buffer.alloc(0);

/**
 * The length of the longest suffix of `buf`, starting at or after `from` (past the last
 * occurrence), that is a proper prefix of `form`: the bytes that could be the start of an
 * occurrence completed by the next chunk. Candidates are the positions of the form's first byte
 * among the last `form.length - 1` bytes, longest first.
 */
function heldBack(buf: Buffer, form: Buffer, from: number): number {
  const n = buf.length;
  const first = form[0]!;
  // A loop over at most `form.length - 1` bytes: cheaper than a native call for a short window.
  for (let p = Math.max(from, n - form.length + 1); p < n; p++) {
    if (buf[p] !== first) continue;
    let k = 1;
    while (p + k < n && buf[p + k] === form[k]) k++;
    if (p + k === n) return n - p;
  }
  return 0;
}

/** Printable, harmless in JSON strings, HTML, URLs and base64 text alike; `*` first. */
const FILLERS = '*#~x_.-0';

function fillerFor(forms: readonly Buffer[]): number {
  const used = new Set<number>();
  for (const f of forms) for (const b of f) used.add(b);
  for (const c of FILLERS) if (!used.has(c.charCodeAt(0))) return c.charCodeAt(0);
  for (let b = 0x21; b <= 0x7e; b++) if (!used.has(b)) return b;
  throw new CredentialError('the forms of the credential use every printable ASCII character: no filler byte is left to scrub it from response bodies (change the secret, or set scrub_response_secrets: false)');
}

/**
 * A response whose body the proxy could not scrub, or undefined. Asked for `identity` (see
 * askForScrubbableBody), a tool that still sends a content coding (RFC 9110 §8.4: gzip, br,
 * deflate, …), or a transfer coding other than chunked (RFC 9112 §6.1; the proxy never offers
 * one in `TE`), sends bytes in which the secret cannot be found; so does a text in a charset
 * that is not ASCII-compatible (UTF-16, UTF-32, UTF-7, EBCDIC: the secret's bytes differ). The proxy
 * refuses (502) rather than decode on the agent's behalf or pass them on. HEAD and 204/304
 * answers carry no body.
 */
export function unscrubbable(method: string, status: number, headers: Record<string, string | string[] | undefined>): string | undefined {
  if (method === 'HEAD' || status === 204 || status === 304) return undefined;
  const coding = headers['content-encoding'];
  if (coding !== undefined && !isIdentity(coding)) {
    return 'the tool answered with a compressed body (content-encoding) although the proxy asked for identity: the proxy cannot check it for the tool\'s credential, so it is not passed on';
  }
  const charset = CHARSET.exec(String(headers['content-type'] ?? ''))?.[1];
  if (charset !== undefined && !ASCII_COMPATIBLE.test(charset)) {
    return 'the tool answered in a character encoding that is not ASCII-compatible: the proxy cannot check the body for the tool\'s credential, so it is not passed on';
  }
  const transfer = headers['transfer-encoding'];
  if (transfer !== undefined && String(transfer).trim().toLowerCase() !== 'chunked') {
    return 'the tool answered with a transfer coding other than chunked: the proxy cannot check the body for the tool\'s credential, so it is not passed on';
  }
  return undefined;
}

/** The `charset` parameter of a media type (RFC 9110 §8.3.2). */
const CHARSET = /;\s*charset\s*=\s*"?\s*([^";,\s]+)/i;
/**
 * Charsets in which ASCII text is ASCII bytes, so the secret's bytes are found as they are; any
 * other named charset (UTF-16/32/7, EBCDIC code pages such as IBM037, …) is refused.
 */
const ASCII_COMPATIBLE = /^(?:utf-?8|us-ascii|ascii|iso[-_]?8859-\d+|latin-?1|windows-125\d|cp125\d|koi8-[ru]|gbk|gb2312|gb18030|big5|euc-(?:jp|kr))$/i;

/**
 * Whether a body starts with a UTF-16 or UTF-32 byte order mark: a text not labelled as such whose
 * bytes are not ASCII bytes (the secret would not be found in it).
 */
export function startsWithWideBom(first: Uint8Array): boolean {
  if (first.length >= 2 && ((first[0] === 0xfe && first[1] === 0xff) || (first[0] === 0xff && first[1] === 0xfe))) return true;
  return first.length >= 4 && first[0] === 0 && first[1] === 0 && first[2] === 0xfe && first[3] === 0xff;
}

function isIdentity(coding: string | string[]): boolean {
  const values = typeof coding === 'string' ? [coding] : coding;
  return values.every((v) => v.split(',').every((c) => {
    const t = c.trim().toLowerCase();
    return t === '' || t === 'identity';
  }));
}

/**
 * The upstream request of a tool whose answers are scrubbed: asks for an unencoded body
 * (`accept-encoding: identity`, RFC 9110 §12.5.3), so the secret can be found in it, and sends no
 * `range` / `if-range` (RFC 9110 §14.2), so the agent cannot read an echoed secret a few bytes at
 * a time, each piece too short to be recognized: the tool answers the whole body, which is
 * scrubbed. Changes `headers` (the hop's own record) in place.
 */
export function askForScrubbableBody(headers: Record<string, string | string[]>): void {
  headers['accept-encoding'] = 'identity';
  delete headers.range;
  delete headers['if-range'];
}
