export { mountConsole, type Console, type ConsoleOptions } from './console.js';
export { ConsoleSessions, SESSION_COOKIE, CSRF_HEADER, sessionCookie, type ConsoleSession } from './sessions.js';
export { ConsoleEvents, CONSOLE_SUBJECTS, consoleEvent } from './events.js';
export { CONSOLE_CSP, SECURITY_HEADERS } from './static.js';
