export { startDemoHttpTool, DEMO_HTTP_MAX_BODY_BYTES, type DemoTool, type DemoToolOptions, type Ticket } from './http-tool.js';
export { startDemoMcpTool, DEMO_MCP_MAX_BODY_BYTES } from './mcp-tool.js';
