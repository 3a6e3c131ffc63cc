import type { App } from '../app.js';
import type { Out } from './command.js';
import { EXIT } from './errors.js';

/** Keeps a server running until SIGINT/SIGTERM, then shuts it down gracefully. */
export function runUntilSignal(app: App, out: Out, extra: () => Promise<void> = async () => {}): Promise<number> {
  for (const w of app.warnings) out.err(`\n  !!! ${w}\n`);
  return new Promise((resolve) => {
    const stop = (sig: string) => {
      app.logger.info({ signal: sig }, 'shutting down');
      void app
        .close()
        .then(extra)
        .then(() => resolve(EXIT.ok), () => resolve(EXIT.failed));
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
}
