import { RefugeError } from '../core/errors.js';
import { requestJson } from '../core/http-client.js';

export const DEFAULT_URL = 'http://127.0.0.1:7443';

/** The CLI's view of the vault API: paths relative to /api/v1, the default vault resolved once. */
export class ApiClient {
  private vaultName: string | undefined;

  constructor(
    readonly baseUrl: string,
    vault?: string,
  ) {
    this.vaultName = vault;
  }

  request<T>(method: string, path: string, body?: unknown): Promise<T> {
    return requestJson<T>(method, `${this.baseUrl.replace(/\/$/, '')}/api/v1${path}`, body === undefined ? {} : { body });
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  async text(path: string): Promise<string> {
    const r = await fetch(`${this.baseUrl.replace(/\/$/, '')}/api/v1${path}`).catch((err: unknown) => {
      throw RefugeError.wrap((err as { cause?: unknown }).cause ?? err, `GET ${path} failed`, 'unavailable');
    });
    if (!r.ok) throw new RefugeError(r.status === 404 ? 'not_found' : 'unavailable', `GET ${path} answered ${r.status}`);
    return r.text();
  }

  /** The vault to act on: --vault / REFUGE_VAULT, else the only vault there is. */
  async vault(): Promise<string> {
    if (this.vaultName) return this.vaultName;
    const { items } = await this.get<{ items: { name: string }[] }>('/vaults');
    if (items.length === 1 && items[0]) return (this.vaultName = items[0].name);
    throw new RefugeError('invalid_argument', items.length === 0 ? 'there is no vault yet' : `there are ${items.length} vaults; say which`, {
      hint: items.length === 0 ? 'create one with `refuge vault create NAME`' : 'pass --vault NAME or set REFUGE_VAULT',
    });
  }

  /** `/vaults/<vault><path>` for the resolved vault. */
  async in(path: string): Promise<string> {
    return `/vaults/${encodeURIComponent(await this.vault())}${path}`;
  }
}
