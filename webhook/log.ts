/**
 * The server's logger: pino with the redaction every line gets, to an asynchronous destination
 * (pino flushes it synchronously when the process exits). Shared by webhook/server.ts and the
 * benchmark's server, so the benchmark logs as production does.
 *
 * Lines are not held back in a buffer: a 4 KiB buffer (one write per dozen decision lines) was
 * tried, but it delays the rare operational lines ("serving from the local spool", "decision store
 * recovered") that an operator watches for, and its saving was within this VM's spread.
 */
import { pino, type DestinationStream, type Logger } from 'pino';

export interface LoggerOptions {
  level: string;
  replica: string;
  /** Where lines go: a stream (tests), else a file descriptor or path (stdout by default). */
  stream?: DestinationStream;
  dest?: number | string;
}

export function createLogger(o: LoggerOptions): Logger {
  return pino(
    {
      level: o.level,
      base: { replica: o.replica },
      // Defence in depth: nothing we log should carry these, but never let one slip through.
      redact: { paths: ['*.token', '*.authorization', 'req.headers.authorization', '*.env', '*.password'], censor: '[redacted]' },
    },
    o.stream ?? pino.destination({ dest: o.dest ?? 1, sync: false }),
  );
}
