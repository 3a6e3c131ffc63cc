import { MandateError, type ErrorCode } from '../core/errors.js';
import { hasDuplicateKeys } from '../core/http.js';

/**
 * MCP messages as the proxy sees them on the Streamable HTTP transport (MCP spec 2025-03-26 and
 * 2025-06-18, "Transports"): a POST body is one JSON-RPC 2.0 message, or (2025-03-26 only) a
 * batch array; a response is `application/json` or a `text/event-stream` of messages.
 *
 * The proxy reads the body once, classifies every message, and refuses anything two parsers
 * could read differently (duplicate member names, a message that is both a request and a
 * response), because the upstream MCP server acts on its own reading, not on the proxy's.
 */

/** JSON-RPC 2.0 error codes (JSON-RPC 2.0 §5.1). */
export const JSONRPC_ERRORS = {
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
} as const;

/** A batch longer than this is refused: each message is authorized on its own, and the work is bounded. */
export const MAX_BATCH = 100;

export type RpcId = string | number | null;

export interface RpcMessage {
  readonly kind: 'request' | 'notification' | 'response';
  /** Present for requests and responses. */
  readonly id?: RpcId;
  /** Present for requests and notifications. */
  readonly method?: string;
  readonly params?: unknown;
  /** The parsed message as received, for forwarding or inspection. */
  readonly raw: Record<string, unknown>;
}

export interface ParsedRpc {
  readonly batch: boolean;
  readonly messages: readonly RpcMessage[];
}

const CODE_NAMES: Record<number, ErrorCode> = {
  [JSONRPC_ERRORS.PARSE_ERROR]: 'jsonrpc_parse_error',
  [JSONRPC_ERRORS.INVALID_REQUEST]: 'jsonrpc_invalid_request',
  [JSONRPC_ERRORS.INVALID_PARAMS]: 'jsonrpc_invalid_params',
};

/**
 * A body or message the proxy refuses. `rpcCode` is the JSON-RPC error code to answer with
 * (-32700, -32600 or -32602); `code` is the stable local name (`jsonrpc_parse_error`,
 * `jsonrpc_invalid_request`, `jsonrpc_invalid_params`). Per JSON-RPC 2.0 §5 the answer to a
 * parse error or an invalid request has `id: null`; for invalid params it is the request's id.
 */
export class JsonRpcParseError extends MandateError {
  readonly rpcCode: number;
  constructor(rpcCode: number, message: string) {
    super(CODE_NAMES[rpcCode] ?? 'jsonrpc_error', message);
    this.rpcCode = rpcCode;
  }
}

const invalid = (message: string) => new JsonRpcParseError(JSONRPC_ERRORS.INVALID_REQUEST, message);

/**
 * Parses and classifies a POST body. Throws JsonRpcParseError:
 * - -32700 for a body over `maxBytes` (UTF-8) or that is not JSON;
 * - -32600 for duplicate member names at any depth (also names equal but for case, as Go's
 *   encoding/json reads them), a member that such a reader takes for a JSON-RPC member or for
 *   tools/call's `name`/`arguments` (`Method`, `ID`, `Arguments`), a batch that is empty or longer
 *   than MAX_BATCH, or any message that is not a valid JSON-RPC 2.0 request, notification or response
 *   (JSON-RPC 2.0 §4, §4.1, §5): not an object, `jsonrpc` not exactly "2.0", `method` not a
 *   string, `params` not an object or array, an `id` not a string, finite number or null, a
 *   message with both `method` and `result`/`error`, a response without `id` or with both or
 *   neither of `result` and `error`.
 * One bad message fails the whole body: the proxy does not forward half a batch.
 */
export function parseJsonRpcBody(text: string, maxBytes: number): ParsedRpc {
  if (typeof text !== 'string') throw new JsonRpcParseError(JSONRPC_ERRORS.PARSE_ERROR, 'body is not text');
  // Code units never outnumber UTF-8 bytes, so the exact byte count is needed only near the cap.
  if (text.length > maxBytes || (text.length * 3 > maxBytes && Buffer.byteLength(text, 'utf8') > maxBytes)) {
    throw new JsonRpcParseError(JSONRPC_ERRORS.PARSE_ERROR, `body is larger than ${maxBytes} bytes`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new JsonRpcParseError(JSONRPC_ERRORS.PARSE_ERROR, 'body is not valid JSON');
  }
  // RFC 8259 §4: names SHOULD be unique; parsers disagree on which duplicate wins (RFC 8725 §2.9).
  if (hasDuplicateKeys(text)) throw invalid('duplicate member names');
  // Go's encoding/json puts `Name` (and `NAME`, `ſ` for `s`, `K` for `k`) into the field of
  // `name`, the last one winning: a Go MCP server would call what the proxy never saw
  // (CVE-2026-27896, modelcontextprotocol/go-sdk#805). Names equal under that folding are duplicates.
  if (hasFoldedDuplicateKeys(value)) throw invalid('member names that differ only in case');
  if (Array.isArray(value)) {
    if (value.length === 0) throw invalid('empty batch'); // JSON-RPC 2.0 §6
    if (value.length > MAX_BATCH) throw invalid(`batch of more than ${MAX_BATCH} messages`);
    return { batch: true, messages: value.map((m, i) => classify(m, `message ${i}`)) };
  }
  return { batch: false, messages: [classify(value, 'message')] };
}

function classify(m: unknown, where: string): RpcMessage {
  if (m === null || typeof m !== 'object' || Array.isArray(m)) throw invalid(`${where} is not an object`);
  const o = m as Record<string, unknown>;
  // A member that a case-insensitive reader takes for a JSON-RPC member (`Method`, `ID`, `paramſ`)
  // makes a response or a notification a request there; JSON-RPC 2.0 names are exact.
  const lookAlike = lookAlikeOf(o, RPC_MEMBERS);
  if (lookAlike !== undefined) throw invalid(`${where}: "${lookAlike.slice(0, 32)}" is not a JSON-RPC member name (they are lower-case)`);
  if (o.method === 'tools/call' && o.params !== null && typeof o.params === 'object' && !Array.isArray(o.params)) {
    // The same for what tools/call reads: `Arguments` beside no `arguments` would be the arguments
    // a Go server runs with, while the proxy decided on none.
    const inParams = lookAlikeOf(o.params as Record<string, unknown>, TOOLS_CALL_MEMBERS);
    if (inParams !== undefined) throw invalid(`${where}: "${inParams.slice(0, 32)}" in tools/call params is not "name" or "arguments"`);
  }
  if (o.jsonrpc !== '2.0') throw invalid(`${where}: "jsonrpc" must be "2.0"`);
  const hasId = Object.hasOwn(o, 'id');
  if (hasId && !isId(o.id)) throw invalid(`${where}: "id" must be a string, a number or null`);
  const hasResult = Object.hasOwn(o, 'result');
  const hasError = Object.hasOwn(o, 'error');
  if (Object.hasOwn(o, 'method')) {
    if (typeof o.method !== 'string') throw invalid(`${where}: "method" must be a string`);
    // A request that also carries a result or error is two things at once; refuse the ambiguity.
    if (hasResult || hasError) throw invalid(`${where}: a request cannot carry "result" or "error"`);
    const hasParams = Object.hasOwn(o, 'params');
    // JSON-RPC 2.0 §4.2: params, if present, MUST be a structured value.
    if (hasParams && (o.params === null || typeof o.params !== 'object')) throw invalid(`${where}: "params" must be an object or an array`);
    const base = { method: o.method, raw: o, ...(hasParams ? { params: o.params } : {}) };
    // JSON-RPC 2.0 §4.1: a request without an "id" member is a notification.
    return hasId ? { kind: 'request', id: o.id as RpcId, ...base } : { kind: 'notification', ...base };
  }
  // JSON-RPC 2.0 §5: a response has an id and exactly one of result and error.
  if (!hasId) throw invalid(`${where}: neither a request (no "method") nor a response (no "id")`);
  if (hasResult === hasError) throw invalid(`${where}: a response has exactly one of "result" and "error"`);
  if (hasError && (o.error === null || typeof o.error !== 'object' || Array.isArray(o.error))) {
    throw invalid(`${where}: "error" must be an object`);
  }
  return { kind: 'response', id: o.id as RpcId, raw: o };
}

/** The member names of JSON-RPC 2.0 messages (§4, §5) and of MCP tools/call params, folded. */
const RPC_MEMBERS: ReadonlyMap<string, string> = foldedSet(['jsonrpc', 'id', 'method', 'params', 'result', 'error']);
const TOOLS_CALL_MEMBERS: ReadonlyMap<string, string> = foldedSet(['name', 'arguments']);

function foldedSet(names: readonly string[]): ReadonlyMap<string, string> {
  return new Map(names.map((n) => [foldName(n), n]));
}

/**
 * A member name as a case-insensitive JSON reader matches it: Go's encoding/json compares names
 * with simple Unicode case folding (ASCII case, and `ſ` U+017F ~ `s`, `K` U+212A ~ `k`). Upper-
 * then lower-casing folds at least those together (it also folds a few more, such as `ß` and
 * `SS`: a refusal too many, never one too few).
 */
function foldName(name: string): string {
  return name.toUpperCase().toLowerCase();
}

/** The first member of `o` that folds onto one of `names` without being it, or undefined. */
function lookAlikeOf(o: Record<string, unknown>, names: ReadonlyMap<string, string>): string | undefined {
  for (const k of Object.keys(o)) {
    const exact = names.get(foldName(k));
    if (exact !== undefined && exact !== k) return k;
  }
  return undefined;
}

/**
 * Whether some object in `value`, at any depth, has two member names equal under foldName
 * (exact duplicates are already refused by hasDuplicateKeys, and JSON.parse kept one of them).
 * Iterative: a deeply nested body must not exhaust the stack.
 */
function hasFoldedDuplicateKeys(value: unknown): boolean {
  const pending: unknown[] = [value];
  while (pending.length > 0) {
    const v = pending.pop();
    if (v === null || typeof v !== 'object') continue;
    if (Array.isArray(v)) {
      for (const x of v) if (x !== null && typeof x === 'object') pending.push(x);
      continue;
    }
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o);
    if (keys.length > 1) {
      let folded: Set<string> | undefined;
      for (const k of keys) {
        const f = foldName(k);
        // Names that fold to themselves and differ (most of them) cannot collide with each other.
        if (folded === undefined && f === k) continue;
        if (folded === undefined) {
          folded = new Set();
          for (const other of keys) {
            if (other === k) break;
            folded.add(foldName(other));
          }
        }
        if (folded.has(f)) return true;
        folded.add(f);
      }
    }
    for (const k of keys) {
      const x = o[k];
      if (x !== null && typeof x === 'object') pending.push(x);
    }
  }
  return false;
}

function isId(v: unknown): v is RpcId {
  // JSON.parse turns 1e400 into Infinity; that is no id anyone can echo back.
  return v === null || typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v));
}

/**
 * The tool name and arguments of a `tools/call` message (MCP spec, "Tools": `params.name`,
 * `params.arguments`). Works on a request or a notification with that method: a notification
 * is still delivered to the server, so the caller authorizes both. Throws JsonRpcParseError
 * -32600 when the method is not `tools/call`, and -32602 (invalid params) when `params` is not
 * an object, `name` is not a string, or `arguments` is neither absent nor an object.
 */
export function toolsCall(msg: Pick<RpcMessage, 'method' | 'params'>): { name: string; arguments: Record<string, unknown> } {
  if (msg.method !== 'tools/call') throw invalid('not a tools/call message');
  const p = msg.params;
  if (p === null || typeof p !== 'object' || Array.isArray(p)) {
    throw new JsonRpcParseError(JSONRPC_ERRORS.INVALID_PARAMS, 'tools/call needs params { name, arguments }');
  }
  const { name, arguments: args } = p as Record<string, unknown>;
  if (typeof name !== 'string') throw new JsonRpcParseError(JSONRPC_ERRORS.INVALID_PARAMS, 'tools/call params.name must be a string');
  if (args === undefined) return { name, arguments: {} };
  if (args === null || typeof args !== 'object' || Array.isArray(args)) {
    throw new JsonRpcParseError(JSONRPC_ERRORS.INVALID_PARAMS, 'tools/call params.arguments must be an object');
  }
  return { name, arguments: args as Record<string, unknown> };
}

export interface RpcErrorResponse {
  jsonrpc: '2.0';
  id: RpcId;
  error: { code: number; message: string; data?: unknown };
}

/** A JSON-RPC 2.0 error response (§5, §5.1). `data` is omitted when undefined. */
export function rpcError(id: RpcId | undefined, code: number, message: string, data?: unknown): RpcErrorResponse {
  const error: RpcErrorResponse['error'] = { code, message };
  if (data !== undefined) error.data = data;
  return { jsonrpc: '2.0', id: id ?? null, error };
}

/** Bodies larger than this are refused by filterToolsListResponse (the caller buffers the response). */
export const MAX_FILTER_BYTES = 8 * 1024 * 1024;

/** An upstream response the proxy cannot read; the caller fails closed (502, nothing forwarded). */
export class UpstreamResponseError extends MandateError {
  constructor(message: string) {
    super('upstream_response_invalid', message);
  }
}

/**
 * Rewrites the upstream's answer to `tools/list` so that the agent sees only the tools it may
 * call (MCP spec, "Tools": `result.tools`, each with a `name`). For `application/json` (one
 * response or a batch array) and `text/event-stream` (every event whose data is a response with
 * `result.tools` is rewritten; other events pass unchanged). A tool entry without a string
 * name is dropped. Throws UpstreamResponseError for any other media type, a body over
 * `maxBytes`, JSON that does not parse or has duplicate member names, and SSE data that is not
 * JSON: the caller must then forward nothing.
 */
export function filterToolsListResponse(
  body: Buffer | string,
  contentType: string,
  allowed: (toolName: string) => boolean,
  maxBytes = MAX_FILTER_BYTES,
): string {
  const size = typeof body === 'string' ? Buffer.byteLength(body, 'utf8') : body.length;
  if (size > maxBytes) throw new UpstreamResponseError(`tools/list response is larger than ${maxBytes} bytes`);
  const text = typeof body === 'string' ? body : body.toString('utf8');
  // RFC 9110 §8.3.1: the media type is case-insensitive, parameters follow a ";".
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (type === 'application/json') return filterJsonText(text, allowed).text;
  if (type === 'text/event-stream') return filterEventStream(text, allowed);
  throw new UpstreamResponseError(`cannot filter a tools/list response of type "${type}"`);
}

function filterJsonText(text: string, allowed: (toolName: string) => boolean): { text: string; changed: boolean } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new UpstreamResponseError('upstream JSON does not parse');
  }
  if (hasDuplicateKeys(text)) throw new UpstreamResponseError('upstream JSON has duplicate member names');
  let changed = false;
  const visit = (m: unknown) => {
    if (m === null || typeof m !== 'object' || Array.isArray(m)) return;
    const result = (m as Record<string, unknown>).result;
    if (result === null || typeof result !== 'object' || Array.isArray(result)) return;
    const r = result as Record<string, unknown>;
    if (!Array.isArray(r.tools)) return;
    r.tools = r.tools.filter((t: unknown) => {
      if (t === null || typeof t !== 'object') return false;
      const name = (t as Record<string, unknown>).name;
      return typeof name === 'string' && allowed(name);
    });
    changed = true;
  };
  if (Array.isArray(value)) value.forEach(visit);
  else visit(value);
  return changed ? { text: JSON.stringify(value), changed } : { text, changed };
}

interface SseEvent {
  event?: string;
  id?: string;
  retry?: string;
  data?: string;
}

/**
 * Parses an event stream as the WHATWG HTML standard does (§9.2.6 "Interpreting an event
 * stream"): lines end in CRLF, LF or CR; a leading U+FEFF is skipped; a line starting with ":"
 * is a comment; `field: value` loses one space after the colon; `data` lines are joined with
 * "\n"; a blank line ends an event; an unterminated last event is discarded (a client would
 * never dispatch it). Each event is written back in a normal form (LF line endings, comments and
 * unknown fields dropped, since clients ignore them) with its `data` filtered.
 */
function filterEventStream(text: string, allowed: (toolName: string) => boolean): string {
  const src = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const lines = src.split(/\r\n|\r|\n/);
  // The text after the last line break is an unterminated line; split leaves it as the last entry.
  lines.pop();
  let out = '';
  let ev: SseEvent = {};
  let dataLines: string[] | undefined;
  const dispatch = () => {
    if (dataLines !== undefined) ev.data = dataLines.join('\n');
    if (ev.event !== undefined || ev.id !== undefined || ev.retry !== undefined || ev.data !== undefined) out += writeEvent(ev, allowed);
    ev = {};
    dataLines = undefined;
  };
  for (const line of lines) {
    if (line === '') {
      dispatch();
      continue;
    }
    if (line.charCodeAt(0) === 0x3a /* : */) continue;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 0x20) value = value.slice(1);
    switch (field) {
      case 'data':
        (dataLines ??= []).push(value);
        break;
      case 'event':
        ev.event = value;
        break;
      case 'id':
        // "If the field value does not contain U+0000 NULL, then set the last event ID buffer".
        if (!value.includes('\0')) ev.id = value;
        break;
      case 'retry':
        if (/^[0-9]+$/.test(value)) ev.retry = value;
        break;
      default:
        break; // unknown fields are ignored
    }
  }
  // Anything left in `ev`/`dataLines` is an event without its blank line: discarded.
  return out;
}

function writeEvent(ev: SseEvent, allowed: (toolName: string) => boolean): string {
  let s = '';
  if (ev.event !== undefined) s += `event: ${ev.event}\n`;
  if (ev.id !== undefined) s += `id: ${ev.id}\n`;
  if (ev.retry !== undefined) s += `retry: ${ev.retry}\n`;
  if (ev.data !== undefined) {
    // Every event's data must be JSON (MCP sends only JSON-RPC messages on the stream), whatever
    // its event type: some clients read every event, so none passes unchecked.
    const filtered = ev.data === '' ? ev.data : filterJsonText(ev.data, allowed).text;
    for (const line of filtered.split('\n')) s += `data: ${line}\n`;
  }
  return `${s}\n`;
}
