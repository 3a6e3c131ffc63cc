// The policy engine's public surface: the proxy and the CLI import from here only.
export { PolicyEngine, PolicyError, BASE_POLICY_ID, MAX_POLICY_FILE_BYTES, MAX_POLICY_TOTAL_BYTES } from './engine.js';
export type { PolicyRequest, PolicyDecision, PolicyLoadOptions } from './engine.js';
export { CEDAR_SCHEMA_TEXT, MCP_METHODS, MCP_TRANSPORT_ACTIONS } from './schema.js';
export { MAX_ARGS_DEPTH, MAX_ARGS_VALUES } from './values.js';
