import { pino, type DestinationStream, type Logger } from 'pino';
import { PinoPretty } from 'pino-pretty';
import type { LogFormat } from '../config/schema.ts';

export type { Logger };

/**
 * Logs on stderr, so stdout stays free for command output (the CLI's `--json`, progress
 * bars). JSON for the journal, files and log shippers; readable lines when a person
 * watches a terminal. ARCHENLAND_LOG_LEVEL overrides the level.
 */
export function createLogger(name: string, level = 'info', format: LogFormat = 'auto'): Logger {
  return pino({ name, level: process.env.ARCHENLAND_LOG_LEVEL ?? level }, logDestination(format, process.stderr));
}

/** The terminal (or other stream) logs go to; `fd` is written to directly for speed. */
export interface LogOutput {
  isTTY?: boolean;
  fd?: number;
  write(text: string): unknown;
}

/** Where records go, and in which form, for this output; split out so tests can pass a fake terminal. */
export function logDestination(format: LogFormat, output: LogOutput): DestinationStream {
  const text = format === 'text' || (format === 'auto' && output.isTTY === true);
  const target = output.fd ?? output;
  if (!text) return typeof target === 'number' ? pino.destination({ fd: target, sync: true }) : (output as DestinationStream);
  return PinoPretty({
    destination: target as number | DestinationStream,
    sync: true,
    // Colours only on a terminal, and never when the user asked for none (https://no-color.org).
    colorize: output.isTTY === true && !process.env.NO_COLOR,
    translateTime: 'SYS:HH:MM:ss.l',
    // Same on every line of one process. `archenland start` runs a server and a worker in
    // one: which of them spoke leads the message.
    ignore: 'pid,hostname,process',
    messageFormat: '{if process}{process}: {end}{msg}',
    singleLine: true,
  });
}

/** A logger that drops everything: for tests and library callers that pass none. */
export const silentLogger: Logger = pino({ level: 'silent' });
