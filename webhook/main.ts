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
  onSignal: (sig, fn) => process.once(sig, fn),
});
process.exitCode = code;
