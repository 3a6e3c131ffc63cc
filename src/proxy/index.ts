// The proxy's public surface: ToolProxy, wired by app.ts. Its steps are internal (tests reach them by file).
export { ToolProxy } from './proxy.js';
