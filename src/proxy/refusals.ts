import type { ServerResponse } from 'node:http';
import { OAuthError, UnavailableError, challenge, challenges, sendJson } from '../core/index.js';
import { jwkThumbprint, type AccessTokenVerifier, type DpopVerifier } from '../jose/index.js';
import { ApprovalRequiredError } from '../enforcement/index.js';
import type { Call } from './call.js';
import { UpstreamResponseError, rpcError, type RpcMessage } from './jsonrpc.js';
import type { CallRecords } from './records.js';
import { ResourceAuthError, credentialsOf } from './token-check.js';
import { UpstreamError } from './upstream.js';

/** JSON-RPC error codes for refusals inside MCP (the implementation-defined server range, JSON-RPC 2.0 §5.1). */
export const MCP_ERROR = {
  accessDenied: -32001,
  approvalRequired: -32002,
  batchRefused: -32003,
} as const;

/** A JSON-RPC message's refusal: the error its reply carries. */
export interface RpcRefusal {
  code: number;
  message: string;
  data?: Record<string, unknown>;
}

/** One message of an MCP body, as decided: its Call, and its refusal if it was refused. */
export interface MessageVerdict {
  msg: RpcMessage;
  call: Call;
  error?: RpcRefusal;
}

/** An unknown tool: nothing to audit against, and nothing about other tools is revealed. */
export function noSuchTool(res: ServerResponse): void {
  sendJson(res, 404, { error: 'not_found', error_description: 'no such tool' });
}

/**
 * Every refusal of a call, in the tool's vocabulary: the HTTP answer (status, error body,
 * WWW-Authenticate challenge, Retry-After) or the JSON-RPC error, and its record: the refusal
 * (`tool.call_denied`), or, once the call was forwarded, its failed outcome.
 */
export class Refusals {
  constructor(
    private readonly d: { issuer: () => string; accessTokens: AccessTokenVerifier; dpop: DpopVerifier },
    private readonly records: CallRecords,
  ) {}

  /** Answers the refusal of a call that threw `err` and records it. */
  async refuse(call: Call, err: unknown): Promise<void> {
    if (call.token === undefined && err instanceof ResourceAuthError) await this.refusedTokenFacts(call);
    const ctx = call.ctx;
    const rt = call.rt;
    // The store (or the audit log) out of reach is a state, not a bug: 503, and the caller may
    // retry. Its detail (hosts, ports) goes to the debug log, not to the agent;
    // one line per refused call during an outage would flood the log (/readyz and
    // mandate_store_up say it once).
    if (err instanceof UnavailableError) ctx.log.debug({ err }, 'proxy refused a call: a dependency is unavailable');
    const oauthErr = err instanceof OAuthError
      ? err
      : err instanceof UnavailableError ? new OAuthError('temporarily_unavailable', 'the proxy cannot reach its store right now; retry later', 503) : undefined;
    if (!oauthErr) {
      // A tool answer the proxy cannot check (tools/list it cannot filter) is not passed on.
      const bad = err instanceof UpstreamResponseError;
      if (!bad) ctx.log.error({ err }, 'proxy failed');
      const description = bad ? `${rt.tool.id} sent a response the proxy cannot check` : 'internal error';
      this.recordFailure(call, description);
      if (!ctx.res.headersSent) sendJson(ctx.res, bad ? 502 : 500, { error: bad ? 'bad_gateway' : 'server_error', error_description: description });
      else ctx.res.destroy();
      return;
    }
    this.recordFailure(call, oauthErr.message, oauthErr.error);
    if (ctx.res.headersSent) {
      ctx.res.destroy();
      return;
    }
    if (err instanceof UpstreamError) {
      sendJson(ctx.res, err.status, { error: err.error, error_description: err.message });
      return;
    }
    const headers: Record<string, string> = {};
    const algs = this.d.dpop.supportedAlgorithms.join(' ');
    const meta = `${this.d.issuer()}/.well-known/oauth-protected-resource/tools/${rt.tool.id}`;
    const desc = oauthErr.message;
    if (err instanceof ResourceAuthError) {
      // RFC 6750 §3, RFC 9449 §7.1 and §8, RFC 9728 §5.1.
      if (err.error === 'use_dpop_nonce') headers['dpop-nonce'] = this.d.dpop.currentNonce();
      headers['www-authenticate'] = err.scheme === 'DPoP'
        ? challenge('DPoP', { error: err.error, error_description: desc, algs, resource_metadata: meta })
        : call.token === undefined && err.error === 'invalid_token' && !ctx.req.headers.authorization
          ? challenges(challenge('Bearer', { realm: 'mandate', resource_metadata: meta }), challenge('DPoP', { algs }))
          : challenge('Bearer', { error: err.error, error_description: desc, resource_metadata: meta });
    } else if (oauthErr.error === 'insufficient_scope') {
      const scheme = call.token?.scheme ?? 'Bearer';
      headers['www-authenticate'] = challenge(scheme, { error: 'insufficient_scope', error_description: desc, scope: String(oauthErr.extra.scope ?? ''), resource_metadata: meta });
    } else if (oauthErr.status === 429) {
      headers['retry-after'] = String(oauthErr.extra.retry_after ?? 1);
    } else if (oauthErr.status === 503) {
      // RFC 9110 §15.6.4: a condition that is expected to pass (the bus, the audit log).
      headers['retry-after'] = '1';
    }
    if (rt.tool.kind === 'mcp' && oauthErr.status === 403 && call.method === 'POST') {
      // After authentication, a refused JSON-RPC message is a JSON-RPC error the client can show
      // (the event stream's GET and the session's DELETE carry no message: they get HTTP errors).
      const code = err instanceof ApprovalRequiredError ? MCP_ERROR.approvalRequired : MCP_ERROR.accessDenied;
      sendJson(ctx.res, 200, rpcError(null, code, oauthErr.message, { error: oauthErr.error, ...oauthErr.extra }), headers);
      return;
    }
    sendJson(ctx.res, oauthErr.status, { error: oauthErr.error, error_description: oauthErr.message, ...oauthErr.extra }, headers);
  }

  /** A body that is not JSON-RPC (or not UTF-8): a JSON-RPC parse or request error, in a 400. */
  malformed(call: Call, err: unknown): void {
    const code = (err as { rpcCode?: number }).rpcCode ?? -32700;
    sendJson(call.ctx.res, 400, rpcError(null, code, (err as Error).message));
    this.records.record('tool.call_denied', 'deny', 'malformed JSON-RPC', call);
  }

  /** The JSON-RPC error of one message's refusal; any other error is not a refusal and is thrown on. */
  messageRefusal(err: unknown): RpcRefusal {
    if (err instanceof ApprovalRequiredError) return { code: MCP_ERROR.approvalRequired, message: err.message, data: { error: 'approval_required', ...err.extra } };
    if (err instanceof OAuthError && err.status === 403) return { code: MCP_ERROR.accessDenied, message: err.message, data: { error: err.error, ...err.extra } };
    if ((err as { rpcCode?: number }).rpcCode !== undefined) return { code: (err as { rpcCode: number }).rpcCode, message: (err as Error).message };
    throw err;
  }

  /**
   * An MCP body with a refused message: nothing of it is sent, each request gets its error (its
   * own refusal, or "another message was denied"), and each message is recorded as refused.
   */
  batchRefused(call: Call, verdicts: readonly MessageVerdict[], batch: boolean): void {
    const replies = verdicts
      .filter((v) => v.msg.kind === 'request')
      .map((v) => rpcError(v.msg.id ?? null, v.error?.code ?? MCP_ERROR.batchRefused, v.error?.message ?? 'refused: another message in this batch was denied', v.error?.data));
    for (const v of verdicts) {
      if (v.msg.kind === 'response') continue;
      this.records.record('tool.call_denied', 'deny', v.error?.message ?? 'batch refused', v.call);
    }
    // JSON-RPC errors travel in a 200 (MCP: the transport worked, the call did not). A refused
    // body of notifications and responses has no request to answer: the transport says "not
    // accepted" with an HTTP error and a JSON-RPC error without an id (MCP Transports §2.1.4).
    if (replies.length === 0) {
      const first = verdicts.find((v) => v.error)!.error!;
      sendJson(call.ctx.res, 403, rpcError(null, first.code, first.message, first.data));
      return;
    }
    sendJson(call.ctx.res, 200, batch ? replies : replies[0]);
  }

  /**
   * A refusal (`tool.call_denied`), or, once the call was forwarded (its `tool.call_started` is in
   * the log, the tool may have acted), the outcome of each call forwarded: `tool.called` with the
   * error (the tool unreachable or too slow, an answer the proxy would not pass on).
   */
  private recordFailure(call: Call, reason: string, error?: string): void {
    const extra = error === undefined ? {} : { error };
    if (call.forwarded === null) {
      this.records.record('tool.call_denied', 'deny', reason, call, extra);
      return;
    }
    for (const f of call.forwarded) this.records.record('tool.called', 'allow', `failed: ${reason}`, f, { ...extra, upstream_status: 0 });
  }

  /**
   * A token refused at binding or audience (a stolen token presented with another key's proof,
   * without one, or at another tool) is still named in the audit log: its verified `sub`, `jti`
   * and `cnf.jkt` (the signature cache makes this cheap), and the thumbprint of the proof's key.
   * Nothing is taken from a token whose signature does not verify.
   */
  private async refusedTokenFacts(call: Call): Promise<void> {
    const req = call.ctx.req;
    try {
      const claims = await this.d.accessTokens.verify(credentialsOf(req).token);
      call.nhiId = claims.sub;
      call.jti = claims.jti;
      call.cnfJkt = claims.cnf?.jkt ?? null;
    } catch {
      return;
    }
    const proof = req.headers.dpop;
    if (typeof proof !== 'string') return;
    try {
      const header = JSON.parse(Buffer.from(proof.split('.')[0] ?? '', 'base64url').toString('utf8')) as { jwk?: Record<string, unknown> };
      if (header.jwk && typeof header.jwk === 'object') call.proofJkt = await jwkThumbprint(header.jwk as Parameters<typeof jwkThumbprint>[0]);
    } catch {
      // An unreadable proof names no key.
    }
  }
}
