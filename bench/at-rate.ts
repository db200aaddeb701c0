/**
 * `npx tsx bench/at-rate.ts [--rate N] [--seconds S] [--runs K] [--dir D] [--path /mutate|/validate]
 * [--store sqlite|postgres|off]` — the fixed-rate part of the bench alone: one server (bundled as
 * run.ts bundles it), K evenly spaced open-loop runs at N req/s (http-load.ts runPacedLoad), p50,
 * p90, p99 and max of each, and under each run the store's commits during it (how many, records per
 * commit, wall time p50 / p99 / max). For investigating the at-rate tail without the whole bench; with
 * AT_RATE_PROF=DIR the server writes its CPU profiles there (bench/profile-summary.ts reads them).
 */
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { bundleForNode } from './bundle.js';
import { expectVerdict, runPacedLoad } from './http-load.js';
import { mutateReviewBody, validateReviewBody } from './fixtures.js';
import type { ServerCommits, ServerReady } from './server.js';
import { askServer, nextMessage } from './child.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({ options: { rate: { type: 'string', default: '1000' }, seconds: { type: 'string', default: '10' }, runs: { type: 'string', default: '3' }, dir: { type: 'string' }, path: { type: 'string', default: '/mutate' }, store: { type: 'string', default: 'sqlite' } } });
await bundleForNode(ROOT, [
  ['bench/server.ts', 'bench/out/lead-server.mjs'],
  ['webhook/store/sqlite/writer.ts', 'bench/out/writer.js'],
  ['webhook/store/postgres/spool-writer.ts', 'bench/out/spool-writer.js'],
]);
const dir = values.dir ?? mkdtempSync(join(ROOT, 'bench/out/at-rate-'));
const child = fork(join(ROOT, 'bench/out/lead-server.mjs'), ['--variant', 'app', '--store', values.store!, '--mappings', '10', '--dir', dir], { cwd: ROOT, execArgv: ['--expose-gc', '--disable-warning=FSTDEP023', ...(process.env.AT_RATE_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.AT_RATE_PROF}`] : [])], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
const ready = await nextMessage<ServerReady>(child, 'ready', 300_000);
const path = values.path as '/mutate' | '/validate';
const body = path === '/mutate' ? mutateReviewBody() : validateReviewBody();
const commits = () => askServer<ServerCommits>(child, 'commits');
for (let i = 0; i < Number(values.runs); i++) {
  await commits();
  const r = await runPacedLoad({ port: ready.port, path, body, connections: 50, seconds: Number(values.seconds), rate: Number(values.rate), ca: ready.caPem, expect: expectVerdict(path === '/mutate' ? 'patched' : 'allowed') });
  console.log(`${new Date().toISOString().slice(11, 19)} run ${i + 1}: ${r.rps.toFixed(0)} rps p50 ${r.p50Ms.toFixed(2)} p90 ${r.p90Ms.toFixed(2)} p99 ${r.p99Ms.toFixed(2)} max ${r.maxMs.toFixed(1)} ms failed ${r.failed} unexpected ${r.unexpected}`);
  const c = await commits();
  if (c.commits > 0) console.log(`  commits ${c.commits} (${(c.records / c.commits).toFixed(1)} records each) wall p50 ${c.p50Ms.toFixed(2)} p99 ${c.p99Ms.toFixed(2)} max ${c.maxMs.toFixed(1)} ms`);
}
child.send({ type: 'stop' });
await new Promise((r) => child.once('exit', r));
if (!values.dir) rmSync(dir, { recursive: true, force: true });
