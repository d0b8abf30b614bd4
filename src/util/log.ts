import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Structured JSON logs on stderr, so stdout stays free for command output
 * (the CLI's `--json`, progress bars). ARCHENLAND_LOG_LEVEL overrides the level.
 */
export function createLogger(name: string, level = 'info'): Logger {
  return pino({ name, level: process.env.ARCHENLAND_LOG_LEVEL ?? level }, pino.destination(2));
}

/** A logger that drops everything: for tests and library callers that pass none. */
export const silentLogger: Logger = pino({ level: 'silent' });
