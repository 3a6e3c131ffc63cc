/**
 * The admin API from the browser: same origin, the session cookie (HttpOnly, so never seen
 * here) and, on changes, the session's CSRF token in X-CSRF-Token.
 */
export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
  /** A route this server does not have (governance not installed): shown as "not available". */
  get unavailable(): boolean {
    return this.status === 404 && /no route for/.test(this.message);
  }
}

export type Role = 'viewer' | 'approver' | 'admin';
export interface Session {
  id: string;
  name: string;
  role: Role;
  csrf_token: string;
  idle_timeout: number;
}

let csrf = '';
const signedOutListeners = new Set<() => void>();

export function setCsrf(token: string): void {
  csrf = token;
}
/** Called when any call answers 401: the session ended (idle timeout, sign-out elsewhere). */
export function onSignedOut(fn: () => void): () => void {
  signedOutListeners.add(fn);
  return () => signedOutListeners.delete(fn);
}

export async function request<T>(method: string, url: string, body?: unknown): Promise<T> {
  const change = method !== 'GET';
  const headers: Record<string, string> = {};
  if (change) {
    headers['x-csrf-token'] = csrf;
    headers['content-type'] = 'application/json';
  }
  const res = await fetch(url, { method, headers, credentials: 'same-origin', body: change ? JSON.stringify(body ?? {}) : undefined });
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try {
    json = text ? (JSON.parse(text) as Record<string, unknown>) : {};
  } catch {
    // A non-JSON answer (a proxy's error page) is reported by its status alone.
  }
  if (!res.ok) {
    if (res.status === 401 && !url.startsWith('/ui/session')) for (const fn of signedOutListeners) fn();
    throw new ApiError(res.status, String(json.error ?? 'error'), String(json.error_description ?? json.error ?? res.statusText));
  }
  return json as T;
}

/** `api('GET', '/nhis')` calls /admin/v1/nhis. */
export function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  return request<T>(method, `/admin/v1${path}`, body);
}

/** Builds a query string from the non-empty values. */
export function qs(params: Record<string, string | number | undefined>): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : '';
}
