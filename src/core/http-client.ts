import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import { ERROR_CODES, RefugeError, type ErrorCode } from './errors.js';

/**
 * A small JSON-over-HTTP(S) client for Refuge's own APIs (CLI -> vault, agent -> vault and replicator). Error
 * responses carry `{ error: { code, message, hint, ...details } }`; they come back as the same RefugeError the
 * server threw, so callers and the CLI handle remote and local failures alike.
 */

/** How to reach a server: the token to send, and the TLS trust (and, for mutual TLS, the client certificate). */
export interface HttpConnection {
  /** Sent as `Authorization: Bearer <token>`. */
  token?: string;
  /** PEM of the CA to trust instead of the system store (the vault CA, from the credentials file). */
  ca?: string;
  /** Client certificate and key (PEM) for mutual TLS. */
  cert?: string;
  key?: string;
}

export interface RequestOptions {
  body?: unknown;
  /** Raw bytes sent instead of a JSON body (as application/octet-stream unless `headers` names a content-type). */
  bytes?: Uint8Array;
  timeoutMs?: number;
  signal?: AbortSignal;
  headers?: Record<string, string>;
  connection?: HttpConnection;
}

// One keep-alive agent per trust configuration, so connections are reused across requests.
const agents = new Map<string, http.Agent>();
function agentFor(url: URL, c: HttpConnection | undefined): http.Agent {
  const secure = url.protocol === 'https:';
  const key = secure ? `https|${c?.ca ?? ''}|${c?.cert ?? ''}` : 'http';
  let agent = agents.get(key);
  if (!agent) {
    agent = secure
      ? new https.Agent({ keepAlive: true, ...(c?.ca ? { ca: c.ca } : {}), ...(c?.cert && c.key ? { cert: c.cert, key: c.key } : {}) })
      : new http.Agent({ keepAlive: true });
    agents.set(key, agent);
  }
  return agent;
}

const UNTRUSTED = new Set(['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_GET_ISSUER_CERT']);

/** Who issued the certificate a TLS server presents (read without verifying it), to name it in an error. */
export function peerIssuer(url: URL, timeoutMs = 5000): Promise<{ issuer: string; subject: string; validTo: string } | undefined> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: url.hostname, port: Number(url.port || 443), rejectUnauthorized: false, servername: url.hostname.match(/^[\d.]+$|:/) ? undefined : url.hostname });
    const done = (v: { issuer: string; subject: string; validTo: string } | undefined) => {
      socket.destroy();
      resolve(v);
    };
    socket.setTimeout(timeoutMs, () => done(undefined));
    socket.once('error', () => done(undefined));
    socket.once('secureConnect', () => {
      const c = socket.getPeerCertificate();
      const name = (o: Record<string, unknown> | undefined) => Object.entries(o ?? {}).map(([k, v]) => `${k}=${String(v)}`).join(', ');
      done({ issuer: name(c.issuer), subject: name(c.subject), validTo: c.valid_to });
    });
  });
}

async function transportError(err: unknown, method: string, url: URL): Promise<RefugeError> {
  const code = (err as { code?: string }).code ?? '';
  if (UNTRUSTED.has(code)) {
    const peer = await peerIssuer(url);
    return new RefugeError('unavailable', `${method} ${url.href} failed: the server's certificate (issued by '${peer?.issuer ?? 'unknown'}') is not trusted here (${code})`, {
      cause: err,
      retryable: false,
      details: { tls: 'untrusted', issuer: peer?.issuer ?? null },
      hint: "trust the vault's CA: pass --credentials FILE (written by `refuge vault init`) or --ca FILE, or set REFUGE_CREDENTIALS / REFUGE_CA",
    });
  }
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID' || code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return new RefugeError('unavailable', `${method} ${url.href} failed: ${(err as Error).message} (${code})`, {
      cause: err,
      retryable: false,
      details: { tls: code },
      hint: code === 'ERR_TLS_CERT_ALTNAME_INVALID' ? 're-issue the vault certificate with this host name (`refuge vault init --hostname`)' : 'check the clocks and renew the certificate',
    });
  }
  const e = RefugeError.wrap(err, `${method} ${url.href} failed`, 'unavailable');
  return new RefugeError(e.code, e.message, { cause: err, retryable: true, hint: `is the server at ${url.origin} running? (set --url or REFUGE_URL)` });
}

/**
 * Sends one request and returns the status and body text, whatever the status; transport failures become
 * RefugeErrors. For callers that inspect error answers themselves (tests of the API's error replies).
 */
export const requestRaw = (method: string, url: string, options: RequestOptions = {}) => send(method, url, options);

/** Sends one request and returns the status and body text; transport failures become RefugeErrors. */
async function send(method: string, url: string, options: RequestOptions): Promise<{ status: number; text: string }> {
  const target = new URL(url);
  const signals = [AbortSignal.timeout(options.timeoutMs ?? 30_000)];
  if (options.signal) signals.push(options.signal);
  const headers: Record<string, string> = { accept: 'application/json', ...options.headers };
  if (options.connection?.token) headers.authorization = `Bearer ${options.connection.token}`;
  let body: Buffer | undefined;
  if (options.bytes) {
    headers['content-type'] ??= 'application/octet-stream';
    body = Buffer.from(options.bytes.buffer, options.bytes.byteOffset, options.bytes.byteLength);
  } else if (options.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = Buffer.from(JSON.stringify(options.body));
  }
  if (body) headers['content-length'] = String(body.length);
  try {
    return await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const lib = target.protocol === 'https:' ? https : http;
      const req = lib.request(target, { method, headers, agent: agentFor(target, options.connection), signal: AbortSignal.any(signals) }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    });
  } catch (err) {
    throw await transportError(err, method, target);
  }
}

function parseJson(text: string): unknown {
  try {
    return text ? JSON.parse(text) : undefined;
  } catch {
    return undefined;
  }
}

/** The RefugeError an error response stands for (the server's own code, message, hint and details). */
function responseError(method: string, url: string, status: number, text: string): RefugeError {
  const e = (parseJson(text) as { error?: { code?: string; message?: string; hint?: string } } | undefined)?.error;
  const code: ErrorCode = ERROR_CODES.includes(e?.code as ErrorCode) ? (e?.code as ErrorCode) : status >= 500 ? 'unavailable' : 'invalid_argument';
  const { code: _c, message: _m, hint: _h, ...details } = (e ?? {}) as Record<string, unknown>;
  return new RefugeError(code, e?.message ?? `${method} ${url} answered ${status} ${text.slice(0, 200)}`, {
    ...(e?.hint ? { hint: e.hint } : {}),
    details: { status, ...details },
    retryable: status >= 500 || status === 429,
  });
}

export async function requestJson<T>(method: string, url: string, options: RequestOptions = {}): Promise<T> {
  const { status, text } = await send(method, url, options);
  if (status === 204) return undefined as T;
  if (status < 200 || status >= 300) throw responseError(method, url, status, text);
  return parseJson(text) as T;
}

/** GET returning the body as text (consoles, metrics); errors as in `requestJson`. */
export async function requestText(url: string, options: RequestOptions = {}): Promise<string> {
  const { status, text } = await send('GET', url, { ...options, headers: { accept: 'text/plain, application/json', ...options.headers } });
  if (status < 200 || status >= 300) throw responseError('GET', url, status, text);
  return text;
}
