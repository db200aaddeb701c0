import t, { type Test } from 'tap';
import fc from 'fast-check';
import {
  toNamespaceBundleLines,
  verifyNamespaceBundleLines,
  type NamespaceRange,
  type NamespaceVerifyResult,
  type NsRecord,
} from '../../webhook/store/evidence/namespace-bundle.js';
import { toNamespaceInclusion } from '../../webhook/store/evidence/merkle.js';
import type { Jwks } from '../../webhook/store/evidence/signing.js';
import { timeAt } from './builders.js';
import { aNamespaceRecord, collect, toMemorySource, V2Writer } from './ns-builders.js';
import { createTestSigner } from './setup.js';

const A = 'zq-team-a';
const B = 'zq-team-b';
const C = 'zq-team-c';
const CREATED = '2026-02-01T00:00:00.000Z';

/**
 * One writer: 3 v1 records and a v1 checkpoint, then v2 records of A, B, C at 10 s + i (i = 0..59,
 * namespaces in turn A B A C ...), a checkpoint after every 6 records, and 4 records after the last one.
 */
async function oneWriter(t: Test) {
  const { signer, jwks } = await createTestSigner(t, 'tzw-nsb-');
  const w = new V2Writer('tzw-0', signer);
  for (let i = 0; i < 3; i++) w.appendV1(aNamespaceRecord(i % 2 ? A : B, 'tzw-0', 1000 + i * 1000));
  await w.v1Checkpoint(4500);
  const order = [A, B, A, C];
  for (let i = 0; i < 60; i++) {
    w.append(aNamespaceRecord(order[i % order.length]!, 'tzw-0', 10_000 + i * 1000));
    if (i % 6 === 5) await w.checkpoint(10_000 + i * 1000 + 500);
  }
  for (let i = 60; i < 64; i++) w.append(aNamespaceRecord(order[i % order.length]!, 'tzw-0', 10_000 + i * 1000));
  return { w, jwks, source: toMemorySource([w]) };
}

async function bundleOf(source: ReturnType<typeof toMemorySource>, range: NamespaceRange, jwks: Jwks): Promise<string[]> {
  return collect(toNamespaceBundleLines(source, range, jwks, CREATED));
}

function inRange(r: NsRecord, range: NamespaceRange): boolean {
  return (range.since === undefined || r.time >= range.since) && (range.until === undefined || r.time < range.until);
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

t.test('an intact namespace bundle proves the range complete, records after the last checkpoint are reported apart', async (t) => {
  const { w, jwks, source } = await oneWriter(t);
  const range = { namespace: A, since: timeAt(20_000), until: timeAt(50_000) };
  const lines = await bundleOf(source, range, jwks);
  const result = await verifyNamespaceBundleLines(lines, jwks);
  const lastCp = w.checkpoints.at(-1)!;
  const mine = w.records.filter((r) => r.namespace === A && r.nsSeq !== undefined);
  const covered = mine.filter((r) => r.seq <= lastCp.size);
  const tail = mine.filter((r) => r.seq > lastCp.size);
  t.ok(result.ok);
  if (!result.ok) return;
  t.strictSame(result.writers, [
    {
      writer: 'tzw-0',
      records: recordLines(lines).length - tail.length,
      inRange: covered.filter((r) => inRange(r, range)).length,
      uncovered: tail.length,
      uncoveredInRange: tail.filter((r) => inRange(r, range)).length,
      status: 'complete',
      from: range.since,
      fromIsBound: false,
      to: range.until,
      size: lastCp.size,
      checkpointTime: lastCp.time,
    },
  ]);
  t.ok(result.writers[0]!.inRange > 5, 'the range holds records');
  t.ok(tail.length > 0, 'there are records after the last checkpoint');
  t.same(result.warnings, [], 'verified with the given keys');
  // Every record of A in range is in the bundle, nothing of another namespace.
  const ids = new Set(recordLines(lines).map(([l]) => recordOf(l).id));
  for (const r of mine.filter((x) => inRange(x, range))) t.ok(ids.has(r.id), `record ${r.nsSeq} in range is in the bundle`);
  t.notOk(lines.join('\n').includes(B) || lines.join('\n').includes(C), 'no other namespace name');
  // Without --jwks the header's keys are used, with a warning.
  const selfKeyed = await verifyNamespaceBundleLines(lines);
  t.ok(selfKeyed.ok && selfKeyed.warnings.some((x) => /keys inside the bundle/.test(x)));
});

t.test('removed, swapped, edited, moved or foreign records and wrong proofs fail, naming what', async (t) => {
  const { w, jwks, source } = await oneWriter(t);
  const range = { namespace: A, since: timeAt(20_000), until: timeAt(50_000) };
  const lines = await bundleOf(source, range, jwks);
  const recs = recordLines(lines);
  const verify = (ls: string[]) => verifyNamespaceBundleLines(ls, jwks);
  const without = (i: number) => lines.filter((_, j) => j !== i);
  const midIdx = recs[Math.floor(recs.length / 2)]![1];

  expectBad(t, await verify(without(midIdx)), /removed|nsSeq .* expected/, 'a record in the middle removed');
  expectBad(t, await verify(without(recs[0]![1])), /before nsSeq \d+ are missing/, 'the first record removed');
  const lastCovered = recs.filter(([l]) => recordOf(l).seq <= w.checkpoints.at(-1)!.size).at(-1)![1];
  const cut = lines.slice(0, lastCovered);
  expectBad(t, await verify(cut), /missing: the signed checkpoint at size \d+ names its head/, 'the covered tail cut off');
  expectBad(t, await verify(lines.filter((l) => !l.startsWith('{"type":"record"'))), /not in the bundle|missing/, 'every record removed');

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

  // The header's range moved so the lower boundary checkpoint no longer precedes it.
  const header = JSON.parse(lines[0]!) as Record<string, unknown>;
  const earlier = [JSON.stringify({ ...header, since: timeAt(11_000) }), ...lines.slice(1)];
  expectBad(t, await verify(earlier), /could be missing/, 'range start moved before the lower boundary');

  // A record of another namespace, correctly hashed, inserted.
  const foreign = w.records.find((r) => r.namespace === B && r.nsSeq !== undefined)!;
  const inserted = [...lines.slice(0, midIdx), JSON.stringify({ type: 'record', record: foreign }), ...lines.slice(midIdx)];
  expectBad(t, await verify(inserted), /another namespace: a foreign record/, 'a foreign record inserted');
  // ... even relabelled as ours (its hash then fails).
  const relabelled = [...lines.slice(0, midIdx), JSON.stringify({ type: 'record', record: { ...foreign, namespace: A } }), ...lines.slice(midIdx)];
  expectBad(t, await verify(relabelled), /hash mismatch|reordered|nsPrevHash/, 'a foreign record relabelled');

  // The inclusion proof of another namespace's head at the same checkpoint.
  const cpIdx = lines.findIndex((l) => l.startsWith('{"type":"checkpoint"') && (JSON.parse(l) as { head?: unknown }).head && (JSON.parse(l) as { checkpoint: { size: number } }).checkpoint.size === w.checkpoints.at(-1)!.size);
  const cpLine = JSON.parse(lines[cpIdx]!) as { head: unknown; checkpoint: { size: number } };
  const other = toNamespaceInclusion(w.headsAt.get(cpLine.checkpoint.size)!, B)!;
  const swappedProof = [...lines];
  swappedProof[cpIdx] = JSON.stringify({ ...cpLine, head: other });
  expectBad(t, await verify(swappedProof), /another namespace's head/, "another namespace's head proof");
  const disguised = [...lines];
  disguised[cpIdx] = JSON.stringify({ ...cpLine, head: { ...other, head: { ...other.head, namespace: A } } });
  expectBad(t, await verify(disguised), /does not match the signed nsRoot/, "another namespace's head proof relabelled");
  // A checkpoint whose signed payload was altered.
  const forged = [...lines];
  forged[cpIdx] = JSON.stringify({ ...cpLine, checkpoint: { ...cpLine.checkpoint, size: cpLine.checkpoint.size + 1 } });
  expectBad(t, await verify(forged), /differ from the signed payload/, 'checkpoint fields changed');
  // A proof stripped: the writer shows neither head nor absence.
  const stripped = lines.map((l) => {
    if (!l.startsWith('{"type":"checkpoint"')) return l;
    const { head: _h, absence: _a, ...rest } = JSON.parse(l) as Record<string, unknown>;
    return JSON.stringify(rest);
  });
  expectBad(t, await verify(stripped), /neither .* head nor its absence/, 'proofs stripped');
  // Garbage.
  expectBad(t, await verify(['not json']), /not JSON/, 'not a bundle');
  expectBad(t, await verify([]), /empty/, 'empty file');
  expectBad(t, await verify([lines[0]!, '{"type":"what"}']), /unknown type/, 'unknown line');
});

t.test('no since: the bundle starts at the namespace chain genesis; records before the change are named as not covered', async (t) => {
  const { w, jwks, source } = await oneWriter(t);
  const lines = await bundleOf(source, { namespace: A }, jwks);
  const result = await verifyNamespaceBundleLines(lines, jwks);
  t.ok(result.ok);
  if (!result.ok) return;
  const firstNs = w.checkpoints.find((c) => c.nsRoot !== undefined)!;
  t.match(result.writers[0], { status: 'complete', from: firstNs.time, fromIsBound: true, to: w.checkpoints.at(-1)!.time });
  t.equal(recordOf(recordLines(lines)[0]![0]).nsSeq, 1);
  // Dropping the genesis record is caught.
  expectBad(t, await verifyNamespaceBundleLines(lines.filter((_, i) => i !== recordLines(lines)[0]![1]), jwks), /missing|not in the bundle/, 'genesis removed');
});

t.test('a bundle from before the first namespace checkpoint says so', async (t) => {
  const { signer, jwks } = await createTestSigner(t, 'tzw-nsb-');
  const w = new V2Writer('tzw-0', signer);
  for (let i = 0; i < 5; i++) w.appendV1(aNamespaceRecord(A, 'tzw-0', 1000 * i));
  await w.v1Checkpoint(6000);
  const lines = await bundleOf(toMemorySource([w]), { namespace: A }, jwks);
  const result = await verifyNamespaceBundleLines(lines, jwks);
  t.ok(result.ok);
  if (!result.ok) return;
  t.strictSame(result.writers.map((x) => x.status), ['pre-namespace']);
  // v2 records written after the upgrade but before its first checkpoint: chained, not covered.
  w.append(aNamespaceRecord(A, 'tzw-0', 7000));
  const later = await verifyNamespaceBundleLines(await bundleOf(toMemorySource([w]), { namespace: A }, jwks), jwks);
  t.match(later, { ok: true, writers: [{ status: 'pre-namespace', uncovered: 1 }] });
});

t.test('the bundle names no other namespace, for 2 and for 50 namespaces', async (t) => {
  const { signer, jwks } = await createTestSigner(t, 'tzw-nsb-');
  for (const count of [2, 50]) {
    const names = Array.from({ length: count }, (_, i) => `zq-ns-${String(i).padStart(2, '0')}`);
    const w = new V2Writer('tzw-0', signer);
    for (let i = 0; i < count * 6; i++) {
      w.append(aNamespaceRecord(names[(i * 7) % count]!, 'tzw-0', 1000 * i));
      if (i % 10 === 9) await w.checkpoint(1000 * i + 500);
    }
    await w.checkpoint(1000 * count * 6);
    const source = toMemorySource([w]);
    for (const target of [names[0]!, names[count - 1]!]) {
      const text = (await bundleOf(source, { namespace: target, since: timeAt(1000 * count), until: timeAt(1000 * count * 4) }, jwks)).join('\n');
      const leaked = names.filter((n) => n !== target && text.includes(n));
      t.strictSame(leaked, [], `${count} namespaces: the bundle of ${target} names no other`);
      t.ok(text.includes(target));
      t.ok((await verifyNamespaceBundleLines(text.split('\n'), jwks)).ok, `${count} namespaces: the bundle of ${target} verifies`);
    }
  }
});

t.test('several writers: each chain is proven, a missing record from either is caught, absence is proven', async (t) => {
  const { signer, jwks } = await createTestSigner(t, 'tzw-nsb-');
  const w0 = new V2Writer('tzw-0', signer);
  const w1 = new V2Writer('tzw-1', signer);
  const w2 = new V2Writer('tzw-2', signer);
  for (let i = 0; i < 40; i++) {
    const w = i % 3 === 0 ? w1 : w0;
    w.append(aNamespaceRecord(i % 2 ? A : B, w.writer, 1000 * i));
    w2.append(aNamespaceRecord(C, 'tzw-2', 1000 * i + 1));
    if (i % 8 === 7) for (const x of [w0, w1, w2]) await x.checkpoint(1000 * i + 500);
  }
  const range = { namespace: A, since: timeAt(10_000), until: timeAt(30_000) };
  const lines = await bundleOf(toMemorySource([w0, w1, w2]), range, jwks);
  const result = await verifyNamespaceBundleLines(lines, jwks);
  t.ok(result.ok);
  if (!result.ok) return;
  t.strictSame(result.writers.map((x) => [x.writer, x.status, x.from, x.to]), [
    ['tzw-0', 'complete', range.since, range.until],
    ['tzw-1', 'complete', range.since, range.until],
    ['tzw-2', 'complete', range.since, range.until],
  ]);
  t.equal(result.writers[2]!.records, 0, 'tzw-2 holds none of A, and that is proven');
  t.ok(lines.some((l) => l.includes('"absence"')));
  for (const writer of ['tzw-0', 'tzw-1']) {
    const recs = recordLines(lines).filter(([l]) => recordOf(l).replica === writer && inRange(recordOf(l), range));
    const victim = recs[Math.floor(recs.length / 2)]![1];
    expectBad(t, await verifyNamespaceBundleLines(lines.filter((_, i) => i !== victim), jwks), /removed|missing/, `a record of ${writer} removed`);
  }
});

interface Step {
  writer: number;
  namespace: number;
  checkpoint: boolean;
}

t.test('property: any interleaving of namespaces, writers and checkpoints verifies; any record removed fails', async (t) => {
  const { signer, jwks } = await createTestSigner(t, 'tzw-nsb-');
  const names = ['zq-p0', 'zq-p1', 'zq-p2', 'zq-p3'];
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.record({ writer: fc.nat(2), namespace: fc.nat(names.length - 1), checkpoint: fc.boolean() }), { minLength: 1, maxLength: 40 }),
      fc.nat(names.length - 1),
      fc.nat(45),
      fc.nat(45),
      fc.nat(),
      async (steps: Step[], target, a, b, pick) => {
        const writers = [0, 1, 2].map((i) => new V2Writer(`tzw-${i}`, signer));
        for (const [i, s] of steps.entries()) {
          const w = writers[s.writer]!;
          w.append(aNamespaceRecord(names[s.namespace]!, w.writer, 1000 * i));
          if (s.checkpoint) await w.checkpoint(1000 * i + 500);
        }
        const range: NamespaceRange = { namespace: names[target]!, since: timeAt(1000 * Math.min(a, b)), until: timeAt(1000 * Math.max(a, b) + 1) };
        const lines = await bundleOf(toMemorySource(writers), range, jwks);
        const result = await verifyNamespaceBundleLines(lines, jwks);
        if (!result.ok) throw new Error(`intact bundle failed: ${result.firstBad.problem}`);
        // Covered in-range counts equal an independent count over the writers' records.
        for (const cov of result.writers) {
          const w = writers.find((x) => x.writer === cov.writer)!;
          const last = w.checkpoints.at(-1);
          const expected = w.records.filter((r) => r.namespace === range.namespace && inRange(r, range) && last && r.seq <= last.size).length;
          if (cov.status === 'complete' && cov.inRange !== expected) throw new Error(`${cov.writer}: ${cov.inRange} in range, expected ${expected}`);
          if (cov.status === 'complete' && (cov.from !== range.since || cov.to !== range.until)) {
            // Only a writer whose first namespace checkpoint is after `since` may claim less.
            const first = w.checkpoints[0]!;
            if (!(cov.fromIsBound && cov.from === first.time)) throw new Error(`${cov.writer}: claims ${cov.from}..${cov.to}`);
          }
        }
        if (lines.join('\n').match(/zq-p\d/g)?.some((n) => n !== range.namespace)) throw new Error('another namespace named');
        // Removing any covered record must fail.
        const covered = recordLines(lines).filter(([l]) => {
          const r = recordOf(l);
          const last = writers.find((x) => x.writer === r.replica)!.checkpoints.at(-1);
          return last !== undefined && r.seq <= last.size;
        });
        if (covered.length > 0) {
          const victim = covered[pick % covered.length]![1];
          const broken = await verifyNamespaceBundleLines(lines.filter((_, i) => i !== victim), jwks);
          if (broken.ok) throw new Error(`record at line ${victim} removed, yet the bundle verified`);
        }
      },
    ),
    { numRuns: 60 },
  );
  t.pass('property held');
});
