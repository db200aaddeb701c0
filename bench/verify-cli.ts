/**
 * `node bench/out/verify-cli.mjs STORE_PATH JWKS_PATH` — `tzw decisions verify --store
 * sqlite:STORE_PATH --jwks JWKS_PATH` in a process of its own, as an auditor runs it, bundled to
 * plain JavaScript by bench/store-bench.ts (its verify worker bundled beside it). Prints one JSON
 * line: the exit code, the CPU time of the whole process (every thread) and the command's output.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { run } from '../webhook/cli/run.js';

const [path, jwksPath] = process.argv.slice(2);
if (!path || !jwksPath) {
  process.stderr.write('usage: verify-cli STORE_PATH JWKS_PATH\n');
  process.exit(2);
}
let out = '';
const code = await run(['decisions', 'verify', '--store', `sqlite:${path}`, '--jwks', jwksPath], {
  stdout: (s) => (out += s),
  stderr: (s) => (out += s),
  env: {},
  cwd: process.cwd(),
  hostname: 'bench',
  readFile: (p) => readFileSync(resolve(p), 'utf8'),
  onSignal: () => undefined,
});
const cpu = process.cpuUsage();
process.stdout.write(`${JSON.stringify({ code, cpuMicros: cpu.user + cpu.system, out })}\n`);
