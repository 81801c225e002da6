/**
 * One error type for all of Refuge. Every failure carries a stable `code` (the API maps codes to HTTP statuses in
 * one place, the CLI prints `hint`), whether retrying may help, and the `cause` it wraps. Context is added when
 * rethrowing with `RefugeError.wrap`, so a message reads from the operation down to the root cause.
 */

export const ERROR_CODES = [
  'invalid_argument', // the caller sent something malformed (HTTP 400)
  'not_found', // the named resource does not exist (404)
  'already_exists', // a resource with that name exists (409)
  'operation_not_allowed', // the operation is not allowed in the current state (409, lists allowed operations)
  'conflict', // a concurrent change won (409)
  'cancelled', // the work was cancelled on request (a job's error; 409 if it surfaces in a response)
  'too_many_requests', // a rate limit, e.g. repeated failed logins (429)
  'payload_too_large', // (413)
  'unauthenticated', // (401)
  'permission_denied', // (403)
  'integrity', // stored or received bytes do not match their hash: never returned as data
  'unavailable', // a dependency is down or unreachable; retrying may help
  'resource_exhausted', // disk full, capacity short
  'failed_precondition', // the system is not in a state where this can run (missing key, guest artifacts, ...)
  'internal', // a bug
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

/** The one place where error codes become HTTP statuses (the vault's API and a standalone replicator both answer with it). */
export const HTTP_STATUS: Record<ErrorCode, number> = {
  invalid_argument: 400,
  unauthenticated: 401,
  permission_denied: 403,
  not_found: 404,
  already_exists: 409,
  operation_not_allowed: 409,
  conflict: 409,
  cancelled: 409,
  too_many_requests: 429,
  payload_too_large: 413,
  failed_precondition: 412,
  integrity: 500,
  resource_exhausted: 507,
  unavailable: 503,
  internal: 500,
};

export interface RefugeErrorOptions {
  cause?: unknown;
  hint?: string;
  retryable?: boolean;
  /** Structured details a client can act on (e.g. `{ allowedOperations: [...] }`, `{ field: '/body/name' }`). */
  details?: Record<string, unknown>;
}

export class RefugeError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  readonly retryable: boolean;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: RefugeErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RefugeError';
    this.code = code;
    this.hint = options.hint;
    this.retryable = options.retryable ?? code === 'unavailable';
    this.details = options.details ?? {};
  }

  /** Rethrow `err` with `context` in front of its message, keeping the code of a RefugeError. */
  static wrap(err: unknown, context: string, fallback: ErrorCode = 'internal'): RefugeError {
    if (err instanceof RefugeError) {
      return new RefugeError(err.code, `${context}: ${err.message}`, {
        cause: err,
        hint: err.hint,
        retryable: err.retryable,
        details: err.details,
      });
    }
    const message = err instanceof Error ? err.message : String(err);
    return new RefugeError(classifySystemError(err) ?? fallback, `${context}: ${message}`, { cause: err });
  }
}

/** Maps Node's system error codes to Refuge codes so callers can react (disk full, missing file, ...). */
export function classifySystemError(err: unknown): ErrorCode | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  switch (code) {
    case 'ENOENT':
      return 'not_found';
    case 'ENOSPC':
    case 'EDQUOT':
      return 'resource_exhausted';
    case 'ECONNREFUSED':
    case 'ECONNRESET':
    case 'ETIMEDOUT':
    case 'EPIPE':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return 'unavailable';
    case 'EACCES':
    case 'EPERM':
      return 'permission_denied';
    default:
      return undefined;
  }
}

export function isRefugeError(err: unknown, code?: ErrorCode): err is RefugeError {
  return err instanceof RefugeError && (code === undefined || err.code === code);
}

export function notFound(kind: string, name: string, hint?: string): RefugeError {
  return new RefugeError('not_found', `${kind} '${name}' not found`, hint === undefined ? {} : { hint });
}
