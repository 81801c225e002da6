import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { HTTP_STATUS, RefugeError, type ErrorCode } from '../core/errors.js';
import type { Logger } from '../core/log.js';

export { HTTP_STATUS } from '../core/errors.js';

export interface ErrorBody {
  error: { code: ErrorCode; message: string; hint?: string; [detail: string]: unknown };
}

interface AjvIssue {
  instancePath: string;
  message?: string;
  keyword: string;
  params: Record<string, unknown>;
}

/** Turns Fastify's schema-validation failure into one message naming the field (e.g. `/body/policy`). */
function validationError(err: FastifyError & { validation: AjvIssue[]; validationContext?: string }): RefugeError {
  const issue = err.validation[0];
  const where = `/${err.validationContext ?? 'body'}`;
  let field = `${where}${issue?.instancePath ?? ''}`;
  let message = issue?.message ?? 'is invalid';
  if (issue?.keyword === 'additionalProperties') {
    field = `${field}/${String(issue.params.additionalProperty)}`;
    message = 'is not a known field';
  } else if (issue?.keyword === 'required') {
    field = `${field}/${String(issue.params.missingProperty)}`;
    message = 'is required';
  }
  return new RefugeError('invalid_argument', `${field} ${message}`, { details: { field } });
}

/** Maps any error thrown by a route (or by Fastify itself) to a status and an ErrorBody; hides 5xx internals. */
export function errorHandler(log: Logger) {
  return (err: FastifyError, req: FastifyRequest, reply: FastifyReply): FastifyReply => {
    let e: RefugeError;
    if (err instanceof RefugeError) e = err;
    else if ((err as { validation?: unknown }).validation) e = validationError(err as never);
    else if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') e = new RefugeError('payload_too_large', `request body is too large (this route takes at most ${req.routeOptions.bodyLimit ?? '?'} bytes)`);
    else if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') e = new RefugeError('invalid_argument', `content type '${req.headers['content-type'] ?? ''}' is not accepted here`);
    else if (err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') e = new RefugeError('invalid_argument', 'request body is empty; a JSON object was expected');
    else if (err.statusCode === 400 && /JSON/i.test(err.message)) e = new RefugeError('invalid_argument', `request body is not valid JSON: ${err.message}`);
    else if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) e = new RefugeError('invalid_argument', err.message);
    else e = new RefugeError('internal', 'internal error', { cause: err });

    const status = e.code === 'invalid_argument' && err.statusCode === 415 ? 415 : HTTP_STATUS[e.code];
    if (status >= 500) log.error({ err, url: req.url, method: req.method }, 'request failed');
    const message = status >= 500 && e.code === 'internal' ? 'internal error; see the vault log' : e.message;
    const body: ErrorBody = { error: { code: e.code, message, ...(e.hint ? { hint: e.hint } : {}), ...e.details } };
    body.error.code = e.code; // details never override the code
    return reply.code(status).send(body);
  };
}
