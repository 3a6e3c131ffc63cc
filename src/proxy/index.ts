// The proxy's public surface (issue 4). Pure building blocks, no I/O: the request pipeline
// (proxy.ts) and other capabilities import them from here.
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
