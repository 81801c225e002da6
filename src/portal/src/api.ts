/**
 * The portal's only way to the vault: its HTTP API under /api/v1, on the origin that served the portal, with the
 * session token from the login kept in sessionStorage (gone when the tab closes).
 */

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

const TOKEN = 'refuge.token';
const USER = 'refuge.user';

export const session = {
  token: (): string | null => sessionStorage.getItem(TOKEN),
  user: (): string | null => sessionStorage.getItem(USER),
  save(token: string, user: string): void {
    sessionStorage.setItem(TOKEN, token);
    sessionStorage.setItem(USER, user);
  },
  clear(): void {
    sessionStorage.removeItem(TOKEN);
    sessionStorage.removeItem(USER);
  },
};

/** Called when the vault answers 401 (expired or revoked session): the app shows the login page again. */
let onUnauthenticated: () => void = () => undefined;
export const setUnauthenticatedHandler = (f: () => void): void => {
  onUnauthenticated = f;
};

export async function api<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
  const token = session.token();
  const res = await fetch(`api/v1${path}`, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  const parsed: unknown = text ? JSON.parse(text) : undefined;
  if (!res.ok) {
    const e = (parsed as { error?: { code?: string; message?: string; hint?: string } } | undefined)?.error;
    if (res.status === 401 && path !== '/auth/login') onUnauthenticated();
    throw new ApiError(res.status, e?.code ?? 'unknown', e?.message ?? `${res.status} ${res.statusText}`, e?.hint);
  }
  return parsed as T;
}

export const get = <T>(path: string): Promise<T> => api<T>('GET', path);

/** `/vaults/<vault><path>` */
export const inVault = (vault: string, path: string): string => `/vaults/${encodeURIComponent(vault)}${path}`;

export interface List<T> {
  items: T[];
  nextCursor?: string | null;
}
