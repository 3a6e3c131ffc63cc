/**
 * The Cedar schema of Mandate's policy model. The text is kept here (the runtime reads it from
 * this module, because the compiler does not copy non-TypeScript files into dist/) and in
 * `schema.cedarschema` next to this file (for editors and the `cedar` CLI); a test fails
 * when the two differ.
 */
export const CEDAR_SCHEMA_TEXT = `// The Cedar model of a tool call as Mandate's proxy sees it (docs/architecture.md, "Policy (Cedar)").
// Actions are not listed here: they are the actions the tools declare (mandate.yaml) plus the
// MCP protocol methods, and the engine adds them when it loads, each with
//   appliesTo { principal: Nhi, resource: Tool, context: Context }.
namespace Mandate {
  // A non-human identity (mandate.yaml \`nhis\`). The entity id is the NHI id.
  entity Nhi = {
    class: String,
    owner: String,
    system: String,
    environment: String,
    tier: String,
  };

  // A tool behind the proxy (mandate.yaml \`tools\`). The entity id is the tool id.
  entity Tool = {
    kind: String,
  };

  type Endpoint = {
    method: String,
    path: String,
  };

  type Time = {
    // Seconds since the epoch, at minute resolution (decisions are cached per minute).
    epoch_s: Long,
    // 0-23, UTC.
    hour: Long,
    // 0 = Sunday … 6 = Saturday, UTC.
    weekday: Long,
  };

  type Context = {
    // The action's risk tier (token profile name); "" for MCP protocol methods.
    tier: String,
    // The call's arguments. Their shape differs per action, so it is not declared here:
    // access to context.args.* is checked when a policy is evaluated, not when it loads.
    args: {},
    // Digest of the arguments; "" when there are none.
    args_digest: String,
    // HTTP tools only: the declared method and path template of the action.
    endpoint?: Endpoint,
    // 0-100.
    risk_score: Long,
    // A human approved this exact call.
    approved: Bool,
    // RFC 8693 act.sub of a delegated token; "" when none.
    on_behalf_of: String,
    // The agent run the token was issued for; "" when none.
    run_id: String,
    time: Time,
  };
}
`;

/** The entity and action types of the model, as Cedar spells them. */
export const NHI_TYPE = 'Mandate::Nhi';
export const TOOL_TYPE = 'Mandate::Tool';
export const ACTION_TYPE = 'Mandate::Action';

/**
 * The MCP protocol methods the proxy may ask about as `mcp:<method>` (MCP 2025-06-18 client
 * requests). They are always declared, so a policy may name them even when no tool does.
 */
export const MCP_METHODS: readonly string[] = [
  'initialize', 'ping', 'tools/list', 'tools/call', 'resources/list', 'resources/templates/list', 'resources/read',
  'resources/subscribe', 'resources/unsubscribe', 'prompts/list', 'prompts/get', 'completion/complete', 'logging/setLevel',
].map((m) => `mcp:${m}`);

/**
 * The Streamable HTTP transport's own operations, decided by Cedar like methods: `mcp:stream` is a
 * GET that opens the server's event stream, `mcp:session/delete` a DELETE that ends a session (MCP
 * 2025-06-18, Transports §2.2.3, §2.5). Always declared; never JSON-RPC methods (a POST whose
 * method is `stream` is not this action).
 */
export const MCP_TRANSPORT_ACTIONS: readonly string[] = ['mcp:stream', 'mcp:session/delete'];
