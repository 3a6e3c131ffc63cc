export { startDemoHttpTool, DEMO_HTTP_MAX_BODY_BYTES, type DemoTool } from './http-tool.js';
export { startDemoMcpTool } from './mcp-tool.js';
