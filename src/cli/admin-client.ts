import { CliError, EXIT } from './errors.js';

/** Where the CLI finds Mandate when neither --url nor MANDATE_URL says. */
export const DEFAULT_URL = 'http://127.0.0.1:8080';

/** The CLI talks to the admin API, never to the database (as SPIRE's CLI does). */
export class AdminClient {
  constructor(
    private readonly baseUrl: string,
    private readonly token: string | undefined,
  ) {}

  /** The client a command's `--url` / `--token` flags name, else MANDATE_URL / MANDATE_TOKEN. */
  static from(flags: { url?: string | undefined; token?: string | undefined }, env: NodeJS.ProcessEnv): AdminClient {
    return new AdminClient(flags.url ?? env.MANDATE_URL ?? DEFAULT_URL, flags.token ?? env.MANDATE_TOKEN);
  }

  async call(method: string, path: string, opts: { query?: Record<string, string | undefined>; body?: unknown } = {}): Promise<unknown> {
    const url = new URL(`/admin/v1${path}`, this.baseUrl);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, v);
    if (!this.token) throw new CliError('no admin credential: set MANDATE_TOKEN (printed once on the first start) or pass --token', EXIT.unauthorized);
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers: { authorization: `Bearer ${this.token}`, ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}) },
        body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined,
        signal: AbortSignal.timeout(30_000),
      });
    } catch (err) {
      throw new CliError(`cannot reach Mandate at ${this.baseUrl} (${(err as Error).message}); is it running? set MANDATE_URL or --url`, EXIT.unreachable);
    }
    const text = await res.text();
    let body: unknown = undefined;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      body = text;
    }
    if (!res.ok) {
      const b = body as { error?: string; error_description?: string } | undefined;
      const msg = `${res.status} ${b?.error ?? ''}: ${b?.error_description ?? text}`.trim();
      throw new CliError(msg, res.status === 401 || res.status === 403 ? EXIT.unauthorized : res.status === 400 ? EXIT.usage : EXIT.failed);
    }
    return body;
  }
}
