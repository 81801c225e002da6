import { ERROR_CODES, RefugeError, type ErrorCode } from './errors.js';

/**
 * A small JSON-over-HTTP client for Refuge's own APIs (CLI -> vault, agent -> vault and replicator). Error
 * responses carry `{ error: { code, message, hint, ...details } }`; they come back as the same RefugeError the
 * server threw, so callers and the CLI handle remote and local failures alike.
 */
export interface RequestOptions {
  body?: unknown;
  /** Raw bytes sent instead of a JSON body (as application/octet-stream unless `headers` names a content-type). */
  bytes?: Uint8Array;
  timeoutMs?: number;
  signal?: AbortSignal;
  headers?: Record<string, string>;
}

export async function requestJson<T>(method: string, url: string, options: RequestOptions = {}): Promise<T> {
  const signals = [AbortSignal.timeout(options.timeoutMs ?? 30_000)];
  if (options.signal) signals.push(options.signal);
  const headers: Record<string, string> = { accept: 'application/json', ...options.headers };
  let body: RequestInit['body'];
  if (options.bytes) {
    headers['content-type'] ??= 'application/octet-stream';
    body = options.bytes as RequestInit['body'];
  } else if (options.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(options.body);
  }
  let response: Response;
  try {
    response = await fetch(url, { method, headers, body: body ?? null, signal: AbortSignal.any(signals) });
  } catch (err) {
    const cause = (err as { cause?: unknown }).cause ?? err;
    const e = RefugeError.wrap(cause, `${method} ${url} failed`, 'unavailable');
    throw new RefugeError(e.code, e.message, { cause, retryable: true, hint: `is the server at ${new URL(url).origin} running? (set --url or REFUGE_URL)` });
  }
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  let payload: unknown;
  try {
    payload = text ? JSON.parse(text) : undefined;
  } catch {
    payload = undefined;
  }
  if (!response.ok) {
    const e = (payload as { error?: { code?: string; message?: string; hint?: string } } | undefined)?.error;
    const code: ErrorCode = ERROR_CODES.includes(e?.code as ErrorCode) ? (e?.code as ErrorCode) : response.status >= 500 ? 'unavailable' : 'invalid_argument';
    const { code: _c, message: _m, hint: _h, ...details } = (e ?? {}) as Record<string, unknown>;
    throw new RefugeError(code, e?.message ?? `${method} ${url} answered ${response.status} ${text.slice(0, 200)}`, {
      ...(e?.hint ? { hint: e.hint } : {}),
      details: { status: response.status, ...details },
      retryable: response.status >= 500 || response.status === 429,
    });
  }
  return payload as T;
}
