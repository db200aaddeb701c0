#!/usr/bin/env node
/** Process entry: the only reader of process.*. Everything else receives what it needs. */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { run } from './cli/run.js';

const code = await run(process.argv.slice(2), {
  stdout: (s) => process.stdout.write(s),
  stderr: (s) => process.stderr.write(s),
  env: process.env,
  cwd: process.cwd(),
  hostname: hostname(),
  readFile: (p) => readFileSync(p, 'utf8'),
  // `on`, not `once`: under npm/tsx a Ctrl-C reaches the process twice (from the terminal and relayed
  // by the wrapper); a second signal must not kill it halfway through draining.
  onSignal: (sig, fn) => {
    process.on(sig, fn);
    return () => process.off(sig, fn);
  },
  stderrTerminal: process.stderr.isTTY ? { isTTY: true, columns: process.stderr.columns } : undefined,
});
process.exitCode = code;
