import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * The process logger: JSON lines on stderr (stdout belongs to command output). Fields whose names suggest
 * secrets are redacted wherever they appear, so a key or token never reaches a log.
 */
export function createLogger(name: string, level: string = process.env.REFUGE_LOG_LEVEL ?? 'info'): Logger {
  return pino(
    {
      name,
      level,
      redact: {
        paths: ['*.password', '*.token', '*.key', '*.secret', '*.authorization', 'req.headers.authorization'],
        censor: '[redacted]',
      },
    },
    pino.destination(2),
  );
}

/** A logger that drops everything, for library code used without a caller-supplied logger. */
export const silentLogger: Logger = pino({ level: 'silent' });
