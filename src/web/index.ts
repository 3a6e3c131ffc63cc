export { mountConsole, type Console } from './console.js';
export { ConsoleSessions, sessionCookie } from './sessions.js';
export { consoleEvent } from './events.js';
export { CONSOLE_CSP } from './static.js';
