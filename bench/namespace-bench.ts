/**
 * What the namespace chains (issue 17) cost per record, measured on the bench's fill records
 * (200 namespaces, 30 days):
 *   - bytes: the canonical body with nsSeq/nsPrevHash vs without, raw and deflate-raw compressed
 *     (the stored form is compressed; the preset dictionary of the store changes absolute sizes,
 *     not much the delta of 64 random hex digits);
 *   - writer CPU: chaining with the namespace head map vs without, plus the namespace Merkle root
 *     at every checkpoint (every 1000 records) amortised;
 *   - auditor CPU: building and verifying one namespace's bundle, per record in it.
 * Pure in-memory (no store): the figures are the increments the namespace evidence adds.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateRawSync } from 'node:zlib';
import { cpuUsage } from 'node:process';
import type { DecisionRecord } from '../webhook/core/record.js';
import { chainRecord, GENESIS_HASH, toChainedRecord } from '../webhook/store/evidence/chain.js';
import { toNamespaceRoot } from '../webhook/store/evidence/merkle.js';
import { toNamespaceBundleLines, verifyNamespaceBundleLines, type NamespaceEvidenceSource, type NsCheckpoint, type NsRecord } from '../webhook/store/evidence/namespace-bundle.js';
import { CHECKPOINT_TYP, loadOrCreateSigningKey, toJwks } from '../webhook/store/evidence/signing.js';
import { benchPodPatch, createRandom, fillRecord } from './fixtures.js';

export interface NamespaceBenchResult {
  records: number;
  namespaces: number;
  rawBytesPlain: number;
  rawBytesNs: number;
  deflatedBytesPlain: number;
  deflatedBytesNs: number;
  chainUsPlain: number;
  chainUsNs: number;
  checkpointRootUs: number;
  bundleRecords: number;
  bundleBuildUsPerRecord: number;
  bundleVerifyUsPerRecord: number;
}

const CHECKPOINT_EVERY = 1000;
const ROUNDS = 5;

function medianOf(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}
const WRITER = 'bench-ns-0';

function cpuMicros(fn: () => void): number {
  const start = cpuUsage();
  fn();
  const d = cpuUsage(start);
  return d.user + d.system;
}

async function cpuMicrosAsync(fn: () => Promise<void>): Promise<number> {
  const start = cpuUsage();
  await fn();
  const d = cpuUsage(start);
  return d.user + d.system;
}

export async function runNamespaceBench(opts: { records: number; log: (line: string) => void }): Promise<NamespaceBenchResult> {
  const n = opts.records;
  const rnd = createRandom(17);
  const patch = benchPodPatch();
  const plain: DecisionRecord[] = Array.from({ length: n }, (_, i) => fillRecord(i, n, WRITER, rnd, patch));
  opts.log(`namespace bench: ${n.toLocaleString('en-US')} fill records`);

  // Writer CPU, with and without the namespace chains (head map, nsSeq/nsPrevHash in the body):
  // alternating rounds over the same records after a warm-up, median per record (a shared, busy
  // machine makes single passes noisy).
  let head = { seq: 0, hash: GENESIS_HASH };
  const heads = new Map<string, { nsSeq: number; hash: string }>();
  const passPlain = () => {
    head = { seq: 0, hash: GENESIS_HASH };
    for (const r of plain) {
      const link = chainRecord(r, head);
      head = { seq: link.seq, hash: link.hash };
    }
  };
  const passNs = () => {
    head = { seq: 0, hash: GENESIS_HASH };
    heads.clear();
    for (const r of plain) {
      const h = heads.get(r.namespace);
      const withNs = { ...r, nsSeq: (h?.nsSeq ?? 0) + 1, nsPrevHash: h?.hash ?? GENESIS_HASH };
      const link = chainRecord(withNs, head);
      head = { seq: link.seq, hash: link.hash };
      heads.set(r.namespace, { nsSeq: withNs.nsSeq, hash: link.hash });
    }
  };
  passPlain();
  passNs();
  const plainRuns: number[] = [];
  const nsRuns: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    plainRuns.push(cpuMicros(passPlain));
    nsRuns.push(cpuMicros(passNs));
  }
  const chainUsPlain = medianOf(plainRuns);
  const chainUsNs = medianOf(nsRuns);

  let rawPlain = 0;
  let deflPlain = 0;
  head = { seq: 0, hash: GENESIS_HASH };
  for (const r of plain) {
    const link = chainRecord(r, head);
    head = { seq: link.seq, hash: link.hash };
    rawPlain += Buffer.byteLength(link.body);
    deflPlain += deflateRawSync(link.body).length;
  }

  // Stored bytes and the namespace root per checkpoint.
  const records: NsRecord[] = [];
  const checkpointHeads = new Map<number, Array<{ namespace: string; nsSeq: number; nsHeadHash: string }>>();
  let rootUs = 0;
  let roots = 0;
  heads.clear();
  head = { seq: 0, hash: GENESIS_HASH };
  let rawNs = 0;
  let deflNs = 0;
  const sizes: number[] = [];
  for (const r of plain) {
    const h = heads.get(r.namespace);
    const withNs = { ...r, nsSeq: (h?.nsSeq ?? 0) + 1, nsPrevHash: h?.hash ?? GENESIS_HASH };
    const link = chainRecord(withNs, head);
    head = { seq: link.seq, hash: link.hash };
    heads.set(r.namespace, { nsSeq: withNs.nsSeq, hash: link.hash });
    records.push(toChainedRecord(withNs, link) as NsRecord);
    rawNs += Buffer.byteLength(link.body);
    deflNs += deflateRawSync(link.body).length;
    if (link.seq % CHECKPOINT_EVERY === 0 || link.seq === n) {
      const list = [...heads].map(([namespace, x]) => ({ namespace, nsSeq: x.nsSeq, nsHeadHash: x.hash }));
      rootUs += cpuMicros(() => void toNamespaceRoot(list));
      roots++;
      checkpointHeads.set(link.seq, list);
      sizes.push(link.seq);
    }
  }

  // Checkpoints signed with a real key, then one namespace's bundle built and verified.
  const keyDir = mkdtempSync(join(tmpdir(), 'tzw-nsbench-'));
  const key = await loadOrCreateSigningKey(join(keyDir, 'key.pem'), { create: true }).finally(() => rmSync(keyDir, { recursive: true, force: true }));
  const checkpoints: NsCheckpoint[] = [];
  const timeOf = (size: number) => records[size - 1]!.time;
  for (const size of sizes) {
    const { nsRoot, nsSize } = toNamespaceRoot(checkpointHeads.get(size)!);
    const payload = { writer: WRITER, size, headHash: records[size - 1]!.hash, time: timeOf(size), nsRoot, nsSize };
    checkpoints.push({ ...payload, jws: await key.sign(payload, CHECKPOINT_TYP) });
  }
  const target = plain[0]!.namespace;
  const source: NamespaceEvidenceSource = {
    checkpoints: async () => checkpoints,
    checkpointHeads: async (_w, size) => checkpointHeads.get(size)!,
    writers: async () => [WRITER],
    async *namespaceRecords(_w, namespace, after) {
      for (const r of records) if (r.namespace === namespace && r.nsSeq! > after) yield r;
    },
  };
  const jwks = toJwks(key.publicJwk);
  let lines: string[] = [];
  const buildUs = await cpuMicrosAsync(async () => {
    lines = [];
    for await (const l of toNamespaceBundleLines(source, { namespace: target }, jwks, new Date().toISOString())) lines.push(l);
  });
  const bundleRecords = lines.filter((l) => l.startsWith('{"type":"record"')).length;
  let verified = false;
  const verifyUs = await cpuMicrosAsync(async () => {
    const res = await verifyNamespaceBundleLines(lines, jwks);
    verified = res.ok && res.writers.every((w) => w.status === 'complete');
  });
  if (!verified) throw new Error('namespace bench: the bundle did not verify');

  const result: NamespaceBenchResult = {
    records: n,
    namespaces: heads.size,
    rawBytesPlain: rawPlain / n,
    rawBytesNs: rawNs / n,
    deflatedBytesPlain: deflPlain / n,
    deflatedBytesNs: deflNs / n,
    chainUsPlain: chainUsPlain / n,
    chainUsNs: chainUsNs / n,
    checkpointRootUs: rootUs / Math.max(1, roots),
    bundleRecords,
    bundleBuildUsPerRecord: buildUs / Math.max(1, bundleRecords),
    bundleVerifyUsPerRecord: verifyUs / Math.max(1, bundleRecords),
  };
  return result;
}

/** Lines for the bench report. */
export function toNamespaceBenchLines(r: NamespaceBenchResult): string[] {
  const f = (v: number, d = 1) => v.toFixed(d);
  return [
    `namespace chains (${r.records.toLocaleString('en-US')} records, ${r.namespaces} namespaces, checkpoint every ${CHECKPOINT_EVERY}):`,
    `  body bytes/record: ${f(r.rawBytesPlain)} → ${f(r.rawBytesNs)} raw (+${f(r.rawBytesNs - r.rawBytesPlain)}), ${f(r.deflatedBytesPlain)} → ${f(r.deflatedBytesNs)} deflate-raw (+${f(r.deflatedBytesNs - r.deflatedBytesPlain)})`,
    `  writer CPU µs/record (canonical JSON + hash + head map): ${f(r.chainUsPlain, 2)} → ${f(r.chainUsNs, 2)} (+${f(r.chainUsNs - r.chainUsPlain, 2)}); namespace root per checkpoint ${f(r.checkpointRootUs)} µs (+${f(r.checkpointRootUs / CHECKPOINT_EVERY, 3)} µs/record)`,
    `  auditor: one namespace's bundle (${r.bundleRecords} records) built in ${f(r.bundleBuildUsPerRecord, 2)} µs/record, verified in ${f(r.bundleVerifyUsPerRecord, 2)} µs/record`,
  ];
}
