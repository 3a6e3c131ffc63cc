// The proxy's public surface: the pipeline (ToolProxy, wired by app.ts) and its pure
// building blocks (no I/O), which other capabilities may use too.
export { ToolProxy, type ProxyDeps, type RiskLookup } from './proxy.js';
export { MCP_ERROR } from './refusals.js';
export { ResourceAuthError, TokenChecker, credentialsOf } from './token-check.js';
export { normalizePath, PathRefusedError, MAX_PATH_LENGTH } from './path.js';
export {
  ActionMatcher, hasMethodOverride, hasMethodOverrideParam, lenientDecode, METHOD_OVERRIDE_HEADERS, type HttpMatch,
} from './actions.js';
export {
  parseJsonRpcBody, toolsCall, rpcError, filterToolsListResponse, JsonRpcParseError, UpstreamResponseError, JSONRPC_ERRORS, MAX_BATCH,
  MAX_FILTER_BYTES, type RpcId, type RpcMessage, type ParsedRpc, type RpcErrorResponse,
} from './jsonrpc.js';
export { TokenBucketLimiter, type TokenBucketOptions, type TakeResult } from './rate-limit.js';
export {
  upstreamHeaders, applyQueryCredential, responseHeaders, traceparentFor, CredentialError,
  type InjectedCredential, type UpstreamHeaderOptions, type ResponseHeaderOptions,
} from './headers.js';
