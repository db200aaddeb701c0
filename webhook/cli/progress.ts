/**
 * Progress for long CLI work (DESIGN "Progress on long CLI work"), one module for every long
 * command (`decisions verify|export`, their `--server` variants, `namespaces readiness`):
 *
 * - stderr is a terminal: one line, rewritten in place (`\r` + erase-to-end), once the work has run
 *   `delayMs` (500 ms), refreshed at least every 500 ms: phase, done/total (or done when the total
 *   is unknown), percentage, rate and time left. It is erased before the command prints its result.
 * - stderr is not a terminal (pipe, file, CI log), or `TERM=dumb`: no `\r` animation; at most one
 *   plain line every `plainEveryMs` (~10 s) with the same facts.
 * - `--quiet`: nothing. `NO_COLOR` (set and non-empty, https://no-color.org): no bold phase name.
 * - stdout is never written here, so a command's output is byte-identical with or without a TTY.
 * - Ctrl-C (SIGINT) while the work runs: the next progress call throws {@link InterruptedError}
 *   (code `ERR_INTERRUPTED`), which unwinds the work (an export then removes its temporary file);
 *   the command prints how far it got ({@link describeInterrupt}) and exits 130.
 *
 * How a command uses it (the whole contract):
 *
 *   const outcome = await runWithProgress(io, { title: 'verify', quiet }, (onProgress) =>
 *     verifyStore(store, jwks, { onProgress }));
 *   if (!outcome.ok) { io.stderr(describeInterrupt(outcome, 'verify', 'Nothing was changed.')); return EXIT.INTERRUPTED; }
 *
 * `onProgress({phase, done, total?, unit?})` may be called for every item: it is cheap, and every
 * ~50 ms it returns a promise that waits one event-loop turn (await it when it is returned), so a
 * loop that never does real I/O (SQLite reads are synchronous) still lets the SIGINT handler and
 * the refresh timer run. It never writes anything itself except through the renderer.
 */
import { EXIT, type CliIo } from './io.js';

/** Where the work is. `unit` defaults to the phase name (`records`, `checkpoints`, `anchors`); `bytes` is shown in MB. */
export interface ProgressEvent {
  phase: string;
  done: number;
  /** Undefined when not known (a filtered export): then no percentage and no time left. */
  total?: number;
  unit?: string;
}

/** The callback long work takes. When it returns a promise, await it before going on. */
export type OnProgress = (event: ProgressEvent) => void | Promise<void>;

/** What the renderer writes to: stderr, and whether it is a terminal (a fake one in tests). */
export interface ProgressSink {
  write(s: string): void;
  isTTY: boolean;
  /** Terminal width; the line is cut to fit so it never wraps (a wrapped line cannot be erased with `\r`). */
  columns?: number;
}

export interface ProgressTiming {
  /** No output before the work has run this long. */
  delayMs: number;
  /** Terminal refresh interval (kept below 500 ms including timer jitter). */
  refreshMs: number;
  /** Not a terminal: at most one line this often. */
  plainEveryMs: number;
  /** How often the work is made to yield one event-loop turn. */
  yieldEveryMs: number;
}

export const DEFAULT_TIMING: ProgressTiming = { delayMs: 500, refreshMs: 250, plainEveryMs: 10_000, yieldEveryMs: 50 };

/** Exit code after Ctrl-C (128 + SIGINT), as shells report it. */
export const INTERRUPTED_EXIT = EXIT.INTERRUPTED;

export class InterruptedError extends Error {
  readonly code = 'ERR_INTERRUPTED';
  constructor() {
    super('interrupted (SIGINT)');
    this.name = 'InterruptedError';
  }
}

export interface ProgressOptions {
  /** What the line is about: `verify`, `export`, `readiness`. */
  title: string;
  quiet?: boolean;
  env?: Record<string, string | undefined>;
  /** Monotonic milliseconds; injected by tests. */
  now?: () => number;
  timing?: Partial<ProgressTiming>;
}

export interface ProgressReporter {
  onProgress: OnProgress;
  /** Stop the work at its next progress call (what the SIGINT handler calls). */
  interrupt(): void;
  /** Erase the line (terminal) and stop the timer. Idempotent. Call before printing the result. */
  stop(): void;
  /** The last event seen, and how long the work has run (for the interrupt message). */
  last(): ProgressEvent | undefined;
  elapsedMs(): number;
}

const group = (n: number): string => Math.round(n).toLocaleString('en-US');

function formatAmount(n: number, unit: string): string {
  return unit === 'bytes' ? `${(n / 1e6).toFixed(1)} MB` : group(n);
}

/** `m:ss`, or `h:mm:ss` from an hour on. */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** Elapsed time: `4.2 s` under a minute, else as formatDuration. */
export function formatElapsed(ms: number): string {
  return ms < 60_000 ? `${(Math.max(0, ms) / 1000).toFixed(1)} s` : formatDuration(ms);
}

/**
 * The facts of one progress line, without decoration: `records 412,000/1,000,000 (41%), 25,300/s,
 * 0:23 left`. `rate` is items per second over the phase so far (undefined before it is measurable).
 */
export function toProgressText(e: ProgressEvent, rate: number | undefined): string {
  const unit = e.unit ?? e.phase;
  const parts: string[] = [];
  const known = e.total !== undefined && e.total > 0;
  const amount = e.total !== undefined ? `${formatAmount(e.done, unit)}/${formatAmount(e.total, unit)}` : formatAmount(e.done, unit);
  parts.push(`${e.phase} ${amount}${!e.phase.endsWith(unit) && unit !== 'bytes' ? ` ${unit}` : ''}${known ? ` (${Math.min(100, Math.floor((e.done / e.total!) * 100))}%)` : ''}`);
  if (rate !== undefined && rate > 0) {
    parts.push(unit === 'bytes' ? `${(rate / 1e6).toFixed(1)} MB/s` : `${group(rate)}/s`);
    if (known && e.total! >= e.done) parts.push(`${formatDuration(((e.total! - e.done) / rate) * 1000)} left`);
  }
  return parts.join(', ');
}

/** True when the terminal can take `\r` animation: a TTY and not TERM=dumb. */
export function canAnimate(sink: ProgressSink, env: Record<string, string | undefined>): boolean {
  return sink.isTTY && env.TERM !== 'dumb';
}

/**
 * Creates the reporter. It renders from `onProgress` calls and from an unref'd timer (so the line
 * keeps moving while the work waits on a slow query); see the module comment for what it shows where.
 */
export function createProgress(sink: ProgressSink, opts: ProgressOptions): ProgressReporter {
  const env = opts.env ?? {};
  const timing: ProgressTiming = { ...DEFAULT_TIMING, ...opts.timing };
  const now = opts.now ?? (() => performance.now());
  const animate = canAnimate(sink, env);
  const bold = animate && !(env.NO_COLOR !== undefined && env.NO_COLOR !== '');
  const started = now();
  let last: ProgressEvent | undefined;
  let phaseStart = { phase: '', at: started, done: 0 };
  let shown = false; // a terminal line is on screen
  let lastRender = Number.NEGATIVE_INFINITY;
  let lastYield = started;
  let calls = 0;
  let interrupted = false;
  let stopped = false;

  const rate = (t: number): number | undefined => {
    if (!last) return undefined;
    const secs = (t - phaseStart.at) / 1000;
    return secs >= 0.2 ? (last.done - phaseStart.done) / secs : undefined;
  };

  const render = (force = false): void => {
    if (opts.quiet || stopped || !last) return;
    const t = now();
    if (t - started < timing.delayMs) return;
    if (animate) {
      if (!force && t - lastRender < timing.refreshMs) return;
      // Cut to the terminal width (minus one column: writing the last column wraps on some terminals).
      const width = sink.columns && sink.columns > 10 ? sink.columns - 1 : Number.POSITIVE_INFINITY;
      let line = `${opts.title}: ${toProgressText(last, rate(t))}`.slice(0, width);
      if (bold && line.startsWith(`${opts.title}:`)) line = `\x1b[1m${opts.title}\x1b[22m${line.slice(opts.title.length)}`;
      sink.write(`\r${line}\x1b[K`);
      shown = true;
      lastRender = t;
    } else {
      const since = lastRender === Number.NEGATIVE_INFINITY ? t - started : t - lastRender;
      if (since < timing.plainEveryMs) return;
      sink.write(`${opts.title}: ${toProgressText(last, rate(t))}, ${formatElapsed(t - started)} elapsed\n`);
      lastRender = t;
    }
  };

  const timer = opts.quiet ? undefined : setInterval(() => render(), Math.min(timing.refreshMs, 100));
  timer?.unref();

  const turn = (): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      setImmediate(() => (interrupted ? reject(new InterruptedError()) : resolve()));
    });

  const onProgress: OnProgress = (e) => {
    if (interrupted) throw new InterruptedError();
    const newPhase = !last || last.phase !== e.phase;
    last = e;
    // Reading the clock on every call of a million-record loop is measurable; every 64th is enough.
    if ((++calls & 63) !== 0 && !newPhase && e.done !== e.total) return undefined;
    const t = now();
    if (newPhase) phaseStart = { phase: e.phase, at: t, done: e.done };
    render();
    if (t - lastYield < timing.yieldEveryMs) return undefined;
    lastYield = t;
    return turn();
  };

  return {
    onProgress,
    interrupt: () => {
      interrupted = true;
    },
    stop: () => {
      if (stopped) return;
      stopped = true;
      if (timer) clearInterval(timer);
      if (shown) sink.write('\r\x1b[K');
      shown = false;
    },
    last: () => last,
    elapsedMs: () => now() - started,
  };
}

export type ProgressOutcome<T> =
  | { ok: true; value: T }
  | { ok: false; last: ProgressEvent | undefined; elapsedMs: number };

/** The sink for a command's stderr: `io.stderr`, and what io says about its terminal. */
export function toProgressSink(io: CliIo): ProgressSink {
  return { write: io.stderr, isTTY: io.stderrTerminal?.isTTY === true, columns: io.stderrTerminal?.columns };
}

/**
 * Runs `work` with a progress reporter on io's stderr and Ctrl-C handling: the first SIGINT stops
 * the work at its next progress call and resolves `{ok: false}` with how far it got; the line is
 * erased in every case before this returns. Errors other than the interrupt are rethrown.
 */
export async function runWithProgress<T>(
  io: CliIo,
  opts: Omit<ProgressOptions, 'env' | 'now'>,
  work: (onProgress: OnProgress) => Promise<T>,
): Promise<ProgressOutcome<T>> {
  const progress = createProgress(toProgressSink(io), { ...opts, env: io.env, now: io.now });
  const unsubscribe = io.onSignal('SIGINT', () => progress.interrupt());
  try {
    return { ok: true, value: await work(progress.onProgress) };
  } catch (err) {
    if (err instanceof InterruptedError) return { ok: false, last: progress.last(), elapsedMs: progress.elapsedMs() };
    throw err;
  } finally {
    progress.stop();
    if (typeof unsubscribe === 'function') unsubscribe();
  }
}

/**
 * The line printed after Ctrl-C: `Interrupted after 16.2 s: verify had reached records
 * 412,000/1,000,000 (41%). <consequence>`. `title` is the command's (`verify`, `export`).
 */
export function describeInterrupt(outcome: { last: ProgressEvent | undefined; elapsedMs: number }, title: string, consequence: string): string {
  const where = outcome.last ? `${title} had reached ${toProgressText(outcome.last, undefined)}` : `${title} had not started`;
  return `Interrupted after ${formatElapsed(outcome.elapsedMs)}: ${where}. ${consequence}\n`;
}
