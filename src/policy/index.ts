// The policy engine's public surface: the proxy and the CLI import from here only.
export { PolicyEngine, PolicyError } from './engine.js';
export type { PolicyRequest, PolicyDecision } from './engine.js';
export { CEDAR_SCHEMA_TEXT, MCP_METHODS } from './schema.js';
