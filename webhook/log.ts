/**
 * The server's logger: pino with the redaction every line gets, writing through a buffer. Shared
 * by webhook/server.ts and the benchmark's server, so the benchmark logs as production does.
 */
import { pino, type DestinationStream, type Logger } from 'pino';

/** Lines are written once this many bytes are waiting (about a dozen decision lines)... */
export const LOG_BUFFER_BYTES = 4096;
/** ...or at the latest this often, so a quiet server's lines are not held back. */
export const LOG_FLUSH_MS = 1000;

/**
 * pino's asynchronous destination with a 4 KiB buffer. Without one, every line is its own write
 * on libuv's thread pool (a wake-up, a syscall and a callback per decision); with it, one write per
 * dozen lines (durable /mutate at saturation, alternated: 444–516 → 377–463 µs of CPU per request,
 * within a noisy VM's spread on store-off runs). A timer flushes
 * what waits at least once a second; pino flushes synchronously when the process exits. A SIGKILL
 * loses what waits (at most 4 KiB, under a second of lines); the decision records, not the log,
 * are the durable evidence.
 */
export function bufferedDestination(dest: number | string): DestinationStream {
  const stream = pino.destination({ dest, sync: false, minLength: LOG_BUFFER_BYTES });
  const timer = setInterval(() => {
    try {
      stream.flush();
    } catch {
      // Destroyed (the process is closing): nothing left to flush.
      clearInterval(timer);
    }
  }, LOG_FLUSH_MS).unref();
  return stream;
}

export interface LoggerOptions {
  level: string;
  replica: string;
  /** Where lines go: a stream (tests), else a file descriptor or path through bufferedDestination (stdout by default). */
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
    o.stream ?? bufferedDestination(o.dest ?? 1),
  );
}
