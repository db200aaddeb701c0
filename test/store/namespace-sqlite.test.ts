/**
 * Issue 17's namespace-evidence cases on a real SQLite store (the pure verifier's cases are in
 * namespace-bundle.test.ts over a test writer; the two-replica PostgreSQL case in
 * namespace-store.test.ts): bundles exported from the store's own namespace chains, checkpoints
 * and persisted heads, then tampered offline; no other namespace named for 2 and 50 namespaces; a
 * store with records but no checkpoint yet says NOT PROVEN; and a property over random
 * interleavings of namespaces, writers (two replicas writing to one SQLite file, as a Deployment
 * whose pod name changes does) and checkpoints.
 */
import t, { type Test } from 'tap';
import fc from 'fast-check';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../../webhook/cli/run.js';
import type { CliIo } from '../../webhook/cli/io.js';
import { toNamespaceInclusion } from '../../webhook/store/evidence/merkle.js';
import {
  toNamespaceBundleLines,
  verifyNamespaceBundleLines,
  type NamespaceRange,
  type NamespaceVerifyResult,
  type NsRecord,
} from '../../webhook/store/evidence/namespace-bundle.js';
import type { Jwks, Signer } from '../../webhook/store/evidence/signing.js';
import { toNamespaceEvidenceSource } from '../../webhook/store/namespace-source.js';
import { createSqliteStore, type SqliteStore } from '../../webhook/store/sqlite/store.js';
import { timeAt } from './builders.js';
import { aNamespaceRecord, collect } from './ns-builders.js';
import { createTestSigner } from './setup.js';

const A = 'zq-team-a';
const B = 'zq-team-b';
const C = 'zq-team-c';
const CREATED = '2026-02-01T00:00:00.000Z';

/** The stores' clock (checkpoint times), on the same time line as the builder's record times. */
let nowMs = 0;
const clock = () => new Date(Date.parse(timeAt(nowMs)));

async function openStore(t: Test, path: string, signer: Signer, replica = 'tzw-0'): Promise<SqliteStore> {
  const store = await createSqliteStore({ path, replica, signer, clock, checkpointEvery: { records: 1_000_000, seconds: 3600 } });
  t.teardown(() => store.close());
  return store;
}

async function checkpointAt(store: SqliteStore, ms: number): Promise<void> {
  nowMs = ms;
  await store.checkpointNow();
}

async function bundleOf(store: SqliteStore, range: NamespaceRange, jwks: Jwks): Promise<string[]> {
  return collect(toNamespaceBundleLines(toNamespaceEvidenceSource(store), range, jwks, CREATED));
}

const recordLines = (lines: string[]) => lines.map((l, i) => [l, i] as const).filter(([l]) => l.startsWith('{"type":"record"'));
const recordOf = (line: string) => (JSON.parse(line) as { record: NsRecord }).record;

function expectBad(t: Test, result: NamespaceVerifyResult, pattern: RegExp, msg: string): void {
  if (result.ok) {
    t.fail(`${msg}: verified although it should not`);
    return;
  }
  t.match(result.firstBad.problem, pattern, msg);
}

async function tzw(cwd: string, ...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { stdout: (s) => out.push(s), stderr: (s) => err.push(s), env: {}, cwd, hostname: 'test-host', readFile: (p) => readFileSync(p, 'utf8'), onSignal: () => undefined };
  const code = await run(argv, io);
  return { code, stdout: out.join(''), stderr: err.join('') };
}

/** One SQLite writer: records of A B A C … at 10 s + i (i = 0..59), a checkpoint after every 6, 4 more after the last. */
async function oneWriter(t: Test) {
  const dir = t.testdir({});
  const { signer, jwks } = await createTestSigner(t, 'tzw-nsq-');
  const path = join(dir, 'decisions.db');
  const store = await openStore(t, path, signer);
  const order = [A, B, A, C];
  for (let i = 0; i < 60; i++) {
    await store.append(aNamespaceRecord(order[i % order.length]!, 'tzw-0', 10_000 + i * 1000));
    if (i % 6 === 5) await checkpointAt(store, 10_000 + i * 1000 + 500);
  }
  for (let i = 60; i < 64; i++) await store.append(aNamespaceRecord(order[i % order.length]!, 'tzw-0', 10_000 + i * 1000));
  writeFileSync(join(dir, 'jwks.json'), JSON.stringify(jwks));
  return { dir, path, store, jwks };
}

t.test('SQLite: a record of N removed, swapped, edited, moved out of the range; a foreign record; another namespace\'s head proof → exit 3', async (t) => {
  const { dir, path, store, jwks } = await oneWriter(t);
  const range = { namespace: A, since: timeAt(20_000), until: timeAt(50_000) };
  const lines = await bundleOf(store, range, jwks);
  const intact = await verifyNamespaceBundleLines(lines, jwks);
  t.match(intact, { ok: true, writers: [{ writer: 'tzw-0', status: 'complete', from: range.since, to: range.until, size: 60 }] });
  const recs = recordLines(lines);
  const verify = (ls: string[]) => verifyNamespaceBundleLines(ls, jwks);
  const without = (i: number) => lines.filter((_, j) => j !== i);
  const midIdx = recs[Math.floor(recs.length / 2)]![1];

  expectBad(t, await verify(without(midIdx)), /nsSeq \d+ found where nsSeq \d+ was expected/, 'a record in the middle removed');
  expectBad(t, await verify(without(recs[0]![1])), /before nsSeq \d+ are missing/, 'the first record removed');
  const lastCovered = recs.filter(([l]) => recordOf(l).seq <= 60).at(-1)![1];
  expectBad(t, await verify(lines.slice(0, lastCovered)), /missing: the signed checkpoint at size 60 names its head/, 'the covered tail cut off');

  const swapped = [...lines];
  const [i1, i2] = [recs[2]![1], recs[3]![1]];
  [swapped[i1], swapped[i2]] = [swapped[i2]!, swapped[i1]!];
  expectBad(t, await verify(swapped), /reordered/, 'two records swapped');

  const edit = (i: number, change: (r: NsRecord) => void): string[] => {
    const copy = [...lines];
    const r = recordOf(copy[i]!);
    change(r);
    copy[i] = JSON.stringify({ type: 'record', record: r });
    return copy;
  };
  expectBad(t, await verify(edit(midIdx, (r) => (r.verdict = 'allowed'))), /hash mismatch/, 'a record edited');
  expectBad(t, await verify(edit(midIdx, (r) => (r.time = timeAt(90_000)))), /hash mismatch/, 'a record moved out of the range by its time');
  const header = JSON.parse(lines[0]!) as Record<string, unknown>;
  expectBad(t, await verify([JSON.stringify({ ...header, since: timeAt(11_000) }), ...lines.slice(1)]), /could be missing/, 'the range start moved before the lower boundary');

  // A record of B from the same store, as stored (correctly hashed), inserted among A's.
  const foreign = (await bundleOf(store, { namespace: B }, jwks)).filter((l) => l.startsWith('{"type":"record"')).map(recordOf)[3]!;
  const inserted = [...lines.slice(0, midIdx), JSON.stringify({ type: 'record', record: foreign }), ...lines.slice(midIdx)];
  expectBad(t, await verify(inserted), /another namespace: a foreign record/, 'a foreign record inserted');
  const relabelled = [...lines.slice(0, midIdx), JSON.stringify({ type: 'record', record: { ...foreign, namespace: A } }), ...lines.slice(midIdx)];
  expectBad(t, await verify(relabelled), /hash mismatch|reordered|nsPrevHash/, 'a foreign record relabelled as N');

  // The inclusion proof of B's head at the covering checkpoint, from the heads the store persisted.
  const cpIdx = lines.findIndex((l) => l.startsWith('{"type":"checkpoint"') && (JSON.parse(l) as { checkpoint: { size: number } }).checkpoint.size === 60);
  const cpLine = JSON.parse(lines[cpIdx]!) as { head: unknown; checkpoint: { size: number } };
  const other = toNamespaceInclusion(await store.checkpointHeads!('tzw-0', 60), B)!;
  const otherProof = [...lines];
  otherProof[cpIdx] = JSON.stringify({ ...cpLine, head: other });
  expectBad(t, await verify(otherProof), /another namespace's head/, "another namespace's head proof");
  const disguised = [...lines];
  disguised[cpIdx] = JSON.stringify({ ...cpLine, head: { ...other, head: { ...other.head, namespace: A } } });
  expectBad(t, await verify(disguised), /does not match the signed nsRoot/, "another namespace's head proof relabelled as N");

  // Through the CLI: the intact export gives exit 0 and the complete line; a tampered file exit 3.
  const url = `sqlite:${path}`;
  const exp = await tzw(dir, 'decisions', 'export', '--store', url, '--namespace', A, '--since', range.since, '--until', range.until, '--jwks', 'jwks.json', '--out', 'a.jsonl');
  t.equal(exp.code, 0, exp.stderr);
  const ok = await tzw(dir, 'decisions', 'verify', '--bundle', 'a.jsonl', '--jwks', 'jwks.json');
  t.equal(ok.code, 0, ok.stdout);
  t.match(ok.stdout, new RegExp(`^complete for namespace ${A} from ${range.since} to ${range.until} \\(checkpoint size 60, writer tzw-0\\)$`, 'm'));
  const text = readFileSync(join(dir, 'a.jsonl'), 'utf8').trimEnd().split('\n');
  writeFileSync(join(dir, 'swapped.jsonl'), [...text.slice(0, text.length - 3), text.at(-2), text.at(-3), text.at(-1)].join('\n') + '\n');
  const bad = await tzw(dir, 'decisions', 'verify', '--bundle', 'swapped.jsonl', '--jwks', 'jwks.json');
  t.equal(bad.code, 3, bad.stdout);
  t.match(bad.stdout, /^VERIFICATION FAILED: bundle .*swapped\.jsonl \(namespace "zq-team-a"\)\nwriter tzw-0, nsSeq \d+, record [0-9a-f-]+: .*reordered/);
});

t.test('SQLite: records but no checkpoint yet — the bundle says NOT PROVEN (exit 3), then the first checkpoint proves it', async (t) => {
  const dir = t.testdir({});
  const { signer, jwks } = await createTestSigner(t, 'tzw-nsq-');
  writeFileSync(join(dir, 'jwks.json'), JSON.stringify(jwks));
  const path = join(dir, 'decisions.db');
  const store = await openStore(t, path, signer);
  for (let i = 0; i < 5; i++) await store.append(aNamespaceRecord(i % 2 ? A : B, 'tzw-0', 1000 * i));
  const url = `sqlite:${path}`;
  const exp = await tzw(dir, 'decisions', 'export', '--store', url, '--namespace', A, '--jwks', 'jwks.json', '--out', 'early.jsonl');
  t.equal(exp.code, 0, exp.stderr);
  const early = await tzw(dir, 'decisions', 'verify', '--bundle', 'early.jsonl', '--jwks', 'jwks.json');
  t.equal(early.code, 3, early.stdout);
  t.match(early.stdout, /^NOT PROVEN: bundle .*early\.jsonl is from before the first namespace checkpoint/);
  await checkpointAt(store, 6000);
  await tzw(dir, 'decisions', 'export', '--store', url, '--namespace', A, '--jwks', 'jwks.json', '--out', 'later.jsonl');
  const later = await tzw(dir, 'decisions', 'verify', '--bundle', 'later.jsonl', '--jwks', 'jwks.json');
  t.equal(later.code, 0, later.stdout);
  t.match(later.stdout, new RegExp(`^complete for namespace ${A} from ${timeAt(6000)} to ${timeAt(6000)} \\(checkpoint size 5, writer tzw-0\\)`));
});

t.test('SQLite: the bundle names no other namespace, for 2 and for 50 namespaces', async (t) => {
  const { signer, jwks } = await createTestSigner(t, 'tzw-nsq-');
  for (const count of [2, 50]) {
    const names = Array.from({ length: count }, (_, i) => `zq-ns-${String(i).padStart(2, '0')}`);
    const store = await openStore(t, join(t.testdir({}), `d${count}.db`), signer);
    for (let i = 0; i < count * 6; i++) {
      await store.append(aNamespaceRecord(names[(i * 7) % count]!, 'tzw-0', 1000 * i));
      if (i % 10 === 9) await checkpointAt(store, 1000 * i + 500);
    }
    await checkpointAt(store, 1000 * count * 6);
    for (const target of [names[0]!, names[count - 1]!]) {
      const lines = await bundleOf(store, { namespace: target, since: timeAt(1000 * count), until: timeAt(1000 * count * 4) }, jwks);
      const text = lines.join('\n');
      t.strictSame(names.filter((n) => n !== target && text.includes(n)), [], `${count} namespaces: the bundle of ${target} names no other`);
      t.ok(recordLines(lines).length > 0 && text.includes(target));
      t.match(await verifyNamespaceBundleLines(lines, jwks), { ok: true, writers: [{ status: 'complete' }] }, `${count} namespaces: the bundle of ${target} verifies`);
    }
  }
});

interface Step {
  writer: number;
  namespace: number;
  checkpoint: boolean;
}

t.test('SQLite property: any interleaving of namespaces, two writers on one file and checkpoints verifies, counts match, no other name; any covered record removed fails', async (t) => {
  const { signer, jwks } = await createTestSigner(t, 'tzw-nsq-');
  const names = ['zq-p0', 'zq-p1', 'zq-p2', 'zq-p3'];
  let runs = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.record({ writer: fc.nat(1), namespace: fc.nat(names.length - 1), checkpoint: fc.boolean() }), { minLength: 1, maxLength: 24 }),
      fc.nat(names.length - 1),
      fc.nat(28),
      fc.nat(28),
      fc.nat(),
      async (steps: Step[], target, a, b, pick) => {
        const path = join(t.testdir({}), `p${++runs}.db`);
        // Two replicas writing to one file: each its own chain, namespace chains and checkpoints.
        const stores = [await openStore(t, path, signer, 'tzw-0'), await openStore(t, path, signer, 'tzw-1')];
        const written: Array<{ writer: string; namespace: string; time: string; seq: number }> = [];
        const seqs = [0, 0];
        for (const [i, s] of steps.entries()) {
          const store = stores[s.writer]!;
          await store.append(aNamespaceRecord(names[s.namespace]!, `tzw-${s.writer}`, 1000 * i));
          written.push({ writer: `tzw-${s.writer}`, namespace: names[s.namespace]!, time: timeAt(1000 * i), seq: ++seqs[s.writer]! });
          if (s.checkpoint) await checkpointAt(store, 1000 * i + 500);
        }
        const range: NamespaceRange = { namespace: names[target]!, since: timeAt(1000 * Math.min(a, b)), until: timeAt(1000 * Math.max(a, b) + 1) };
        const lines = await bundleOf(stores[0]!, range, jwks);
        const result = await verifyNamespaceBundleLines(lines, jwks);
        if (!result.ok) throw new Error(`intact bundle failed: ${result.firstBad.problem}`);
        const checkpoints = await stores[0]!.checkpoints();
        const lastSize = (writer: string) => checkpoints.filter((c) => c.writer === writer).at(-1)?.size;
        for (const cov of result.writers) {
          const last = lastSize(cov.writer);
          const expected = written.filter((r) => r.writer === cov.writer && r.namespace === range.namespace && r.time >= range.since! && r.time < range.until! && last !== undefined && r.seq <= last).length;
          if (cov.status === 'complete' && cov.inRange !== expected) throw new Error(`${cov.writer}: ${cov.inRange} in range, expected ${expected}`);
        }
        // Every writer holding v2 records of the namespace is in the bundle.
        const holders = [...new Set(written.filter((r) => r.namespace === range.namespace).map((r) => r.writer))];
        for (const w of holders) if (!result.writers.some((c) => c.writer === w)) throw new Error(`writer ${w} holds records of the namespace but is not in the bundle`);
        if (lines.join('\n').match(/zq-p\d/g)?.some((n) => n !== range.namespace)) throw new Error('another namespace named');
        const covered = recordLines(lines).filter(([l]) => {
          const r = recordOf(l);
          const last = lastSize(r.replica);
          return last !== undefined && r.seq <= last;
        });
        if (covered.length > 0) {
          const victim = covered[pick % covered.length]![1];
          const broken = await verifyNamespaceBundleLines(lines.filter((_, i) => i !== victim), jwks);
          if (broken.ok) throw new Error(`record at line ${victim} removed, yet the bundle verified`);
        }
        await Promise.all(stores.map((s) => s.close()));
      },
    ),
    { numRuns: 12 },
  );
  t.pass('property held');
});
