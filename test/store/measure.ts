/**
 * Store measurements (not a test; `npm run bench` owns timing). Run:
 *   npx tsx test/store/measure.ts [records=100000] [verify] [big]   (verify: skip the append runs;
 *   big: ~4.7 KB records with a sidecar-injection patch, the size of real mutating decisions)
 * Prints append throughput with group commit, verifyChain cost per record (in memory), and
 * verifyStore / writeBundle / verifyBundle time and peak RSS for a store of `records` records.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChainedRecord, DecisionRecord } from '../../webhook/core/record.js';
import { verifyBundle, verifyStore, writeBundle } from '../../webhook/store/evidence/bundle.js';
import { verifyChain } from '../../webhook/store/evidence/chain.js';
import { createSqliteStore } from '../../webhook/store/sqlite/store.js';
import { loadOrCreateSigningKey, toJwks } from '../../webhook/store/evidence/signing.js';
import { aRecord, idOf, timeAt } from './builders.js';

const total = Number(process.argv[2] ?? 100_000);
const verifyOnly = process.argv.includes('verify');
const big = process.argv.includes('big');

/** A patch that injects a sidecar with env and mounts (free-form nested values, unsorted keys). */
function sidecarPatch(n: number): DecisionRecord['patch'] {
  const env = Array.from({ length: 24 }, (_, i) => ({ name: `ZSCALER_SETTING_${i}`, value: `value-${n}-${i}-${'x'.repeat(40)}` }));
  return [
    { op: 'add', path: '/metadata/annotations/tekton-zscaler.io~1status', value: 'injected' },
    {
      op: 'add',
      path: '/spec/containers/-',
      value: {
        name: 'zscaler-proxy',
        image: 'registry.example.com/zscaler/proxy@sha256:' + 'cd'.repeat(32),
        env,
        volumeMounts: [{ name: 'zscaler-ca', mountPath: '/etc/zscaler', readOnly: true }],
        resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '128Mi' } },
        securityContext: { runAsNonRoot: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
      },
    },
    { op: 'add', path: '/spec/volumes/-', value: { name: 'zscaler-ca', configMap: { name: 'zscaler-ca-bundle' } } },
  ];
}
const dir = mkdtempSync(join(tmpdir(), 'tzw-measure-'));
let peakRss = 0;
const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 20);
const mb = (b: number) => `${(b / 1048576).toFixed(0)} MiB`;

function record(n: number) {
  const ns = `team-${n % 50}`;
  return aRecord({
    n,
    id: idOf(n),
    time: timeAt(n * 10, n % 1000),
    namespace: ns,
    serviceAccounts: [`${ns}/sa-${n % 7}`],
    verdict: n % 10 === 0 ? 'denied' : 'patched',
    tekton: { taskRun: `build-${n}`, pipelineRun: `release-${n % 100}` },
    ...(big ? { patch: sidecarPatch(n) } : {}),
  });
}

async function timed<T>(label: string, f: () => Promise<T>): Promise<{ value: T; ms: number; cpuMs: number; cpu: NodeJS.CpuUsage }> {
  peakRss = process.memoryUsage().rss;
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const value = await f();
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(c0);
  const cpuMs = (cpu.user + cpu.system) / 1000;
  // On a shared machine wall time includes waiting for a core; CPU time is what the work costs.
  console.log(`${label}: ${ms.toFixed(0)} ms wall, ${cpuMs.toFixed(0)} ms CPU, peak RSS ${mb(peakRss)}`);
  return { value, ms, cpuMs, cpu };
}

try {
  const key = await loadOrCreateSigningKey(join(dir, 'key.pem'), { create: true });
  const jwks = toJwks(key.publicJwk);

  for (const concurrency of verifyOnly ? [] : [1, 50, 500]) {
    const n = concurrency === 1 ? 2000 : 10_000;
    const store = await createSqliteStore({ path: join(dir, `append-${concurrency}.db`), replica: 'tzw-0', signer: key });
    const { ms, cpuMs, cpu } = await timed(`append ${n} records, ${concurrency} concurrent`, async () => {
      for (let i = 0; i < n; i += concurrency) await Promise.all(Array.from({ length: concurrency }, (_, j) => store.append(record(i + j + 1))));
    });
    console.log(`  => ${((n / ms) * 1000).toFixed(0)} records/s wall, ${((n / cpuMs) * 1000).toFixed(0)} records per CPU-second`);
    // User time is the JS + SQLite work per record; system time is mostly the commit's write + fsync.
    console.log(`  => per record: ${(cpu.user / n).toFixed(0)} µs user + ${(cpu.system / n).toFixed(0)} µs system CPU`);
    await store.close();
  }

  const path = join(dir, 'big.db');
  const store = await createSqliteStore({ path, replica: 'tzw-0', signer: key });
  await timed(`fill ${total} records (batches of 5000)`, async () => {
    for (let i = 0; i < total; i += 5000) await Promise.all(Array.from({ length: Math.min(5000, total - i) }, (_, j) => store.append(record(i + j + 1))));
  });
  await store.close();
  const ro = await createSqliteStore({ path, replica: 'tzw-0', readonly: true });

  const { value: vs, ms: vsMs, cpuMs: vsCpu } = await timed(`verifyStore ${total}`, () => verifyStore(ro, jwks));
  if (!vs.ok) throw new Error(`verifyStore failed: ${JSON.stringify(vs)}`);
  console.log(`  => per million records: ${((vsMs / total) * 1000).toFixed(1)} s wall, ${((vsCpu / total) * 1000).toFixed(1)} s CPU (SQLite read + parse + hash + column checks)`);

  const bundle = join(dir, 'bundle.jsonl');
  await timed(`writeBundle ${total}`, () => writeBundle(ro, undefined, bundle, jwks));
  const { value: vb } = await timed(`verifyBundle ${total}`, () => verifyBundle(bundle, jwks));
  if (!vb.ok) throw new Error('verifyBundle failed');
  // verifyChain on record objects (as parsed from a bundle line): canonical JSON + sha256 each.
  const chained: ChainedRecord[] = [];
  for await (const e of ro.streamChain()) chained.push(e.record);
  const cps = await ro.checkpoints();
  const { value: vc, ms: vcMs, cpuMs: vcCpu } = await timed(`verifyChain ${total} in-memory records`, () => verifyChain(chained, cps, jwks));
  if (!vc.ok) throw new Error('verifyChain failed');
  console.log(`  => per million records: ${((vcMs / total) * 1000).toFixed(1)} s wall, ${((vcCpu / total) * 1000).toFixed(1)} s CPU`);
  chained.length = 0;

  await ro.close();
} finally {
  clearInterval(sampler);
  rmSync(dir, { recursive: true, force: true });
}
