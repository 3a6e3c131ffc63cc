import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

/**
 * Paths that are never written to a log: tokens, proofs, assertions, credentials.
 * pino's redaction runs on every line, so a careless `log.info({ headers })` is still safe.
 */
export const REDACT_PATHS: readonly string[] = [
  'authorization', 'dpop', 'cookie', 'password', 'secret', 'token', 'access_token', 'subject_token',
  'actor_token', 'client_assertion', 'client_secret', 'assertion', 'private_key', 'kek',
  '*.authorization', '*.dpop', '*.cookie', '*.password', '*.secret', '*.token', '*.access_token',
  '*.subject_token', '*.actor_token', '*.client_assertion', '*.client_secret', '*.assertion',
  '*.private_key', '*.kek',
  'headers.authorization', 'headers.dpop', 'headers.cookie', 'headers["x-api-key"]',
  'req.headers.authorization', 'req.headers.dpop', 'req.headers.cookie',
];

export interface LoggerOptions {
  level?: string;
  /** Where lines go; stdout by default. Tests pass a stream to read what was logged. */
  destination?: DestinationStream;
}

/** The root logger: JSON lines, redacted. One child per request carries the request id. */
export function createLogger(opts: LoggerOptions = {}): Logger {
  return pino(
    {
      level: opts.level ?? process.env.MANDATE_LOG_LEVEL ?? 'info',
      base: { service: 'mandate' },
      redact: { paths: [...REDACT_PATHS], censor: '[redacted]' },
      // Requests are logged by method, path and id only: headers never.
      serializers: {
        req: (r: { method?: string; url?: string; id?: string }) => ({ method: r.method, url: stripQuery(r.url), id: r.id }),
        err: pino.stdSerializers.err,
      },
    },
    opts.destination,
  );
}

/** Query strings can carry keys (`?api_key=`), so logged URLs keep only the path. */
export function stripQuery(url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  const i = url.indexOf('?');
  return i < 0 ? url : url.slice(0, i);
}

/** A logger that writes nothing; for tests and library use. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
