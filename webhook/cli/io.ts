/** What a command may touch: injected so commands run in tests without a child process. */
export interface CliIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  env: Record<string, string | undefined>;
  cwd: string;
  hostname: string;
  readFile: (path: string) => string;
  /**
   * Registers a signal handler (serve uses SIGTERM/SIGINT to drain; repeated signals are ignored
   * while draining; verify/export stop on SIGINT). May return a function that removes it again.
   */
  onSignal: (signal: 'SIGTERM' | 'SIGINT', fn: () => void) => void | (() => void);
  /** stderr's terminal, when it is one (progress lines animate only there); absent = not a terminal. */
  stderrTerminal?: { isTTY: boolean; columns?: number };
  /** Monotonic milliseconds (performance.now); injected by tests of progress output. */
  now?: () => number;
}

/** Exit codes: 0 ok, 1 problems found / failure, 2 usage error, 3 verification failed, 130 interrupted (Ctrl-C). */
export const EXIT = { OK: 0, PROBLEMS: 1, USAGE: 2, TAMPERED: 3, INTERRUPTED: 130 } as const;

export class UsageError extends Error {
  code = 'ERR_USAGE';
}
