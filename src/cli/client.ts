import { RefugeError } from '../core/errors.js';
import { requestJson, requestText, type HttpConnection } from '../core/http-client.js';

export const DEFAULT_URL = 'https://127.0.0.1:7443';

/** The CLI's view of the vault API: paths relative to /api/v1, the default vault resolved once. */
export class ApiClient {
  private vaultName: string | undefined;

  constructor(
    readonly baseUrl: string,
    vault?: string,
    readonly connection: HttpConnection = {},
  ) {
    this.vaultName = vault;
  }

  private url(path: string): string {
    return `${this.baseUrl.replace(/\/$/, '')}/api/v1${path}`;
  }

  request<T>(method: string, path: string, body?: unknown): Promise<T> {
    return requestJson<T>(method, this.url(path), { connection: this.connection, ...(body === undefined ? {} : { body }) });
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  text(path: string): Promise<string> {
    return requestText(this.url(path), { connection: this.connection });
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
