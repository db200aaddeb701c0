/**
 * In-process micro-benchmark of the SQLite writer thread's per-record work: the Writer of
 * webhook/store/sqlite/writer.ts driven on this thread against a real store file (WAL,
 * synchronous=FULL), with the records and AdmissionReview bodies the HTTP bench sends (/mutate:
 * the corpus pod, patched; /validate: the PipelineRun, allowed; objectDigest computed from the
 * parsed object as the route does, and counted), committed in groups like the
 * group commit forms under load. Prints CPU µs per record (user + system of this process, so
 * fsync's system time counts) for the whole append and for its parts.
 *
 *   npx tsx bench/writer-micro.ts [records=3000] [batch=16] [root=.. ...]
 *
 * Environment: PREFILL=N appends N records (untimed, 1,000 a commit) before measuring, so the
 * indexes have a realistic size; DISTINCT=1 gives every record its own object (a uid, so its own
 * objectDigest) and its own run names, as production's are (the HTTP bench, like this by default,
 * repeats one object, whose index entries then all land on the same pages). After the rounds it
 * also prints the WAL frames (pages) one commit of `batch` records writes, automatic checkpoints
 * off for that pass: the page writes and their fsync are most of a small commit's cost.
 *
 * Each `root` is a checkout to import the store code from (e.g. a copy of another commit): with
 * several, their rounds alternate in one process, so before/after see the same machine load. The
 * fixtures always come from this checkout.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { toDecideOptions } from '../webhook/config/options.js';
import { defaultConfig } from '../webhook/config/schema.js';
import { decideAdmission } from '../webhook/core/admit.js';
import { createFactsIndex } from '../webhook/core/mapping-index.js';
import { formatMicros, toRecord, type DecisionRecord } from '../webhook/core/record.js';
import { parseAdmissionReview } from '../webhook/core/wire.js';
import { loadBenchFacts, mutateReviewBody, validateReviewBody } from './fixtures.js';

const records = Number(process.argv[2] ?? 3000);
const PREFILL = Number(process.env.PREFILL ?? 0);
const DISTINCT = process.env.DISTINCT === '1';
const batch = Number(process.argv[3] ?? 16);
/**
 * `root` or `root#option;option`: `sql:STATEMENT` runs that SQL on the subject's file first (e.g. a
 * DROP INDEX, to price an index); `review` hands the writer the review body instead of the digest
 * (AppendItem.review: the writer parsed it for objectDigest before 2026-12-02 07:27, so compare
 * older checkouts that way); `records` hands the writer records instead of prepared bodies (the
 * path before 2026-12-02 17:00); any other option is a PRAGMA run on its write connection.
 * The writer runs on this thread, so the structured clone a real append costs is not measured.
 */
const subjectsArgs = process.argv.length > 4 ? process.argv.slice(4) : [join(import.meta.dirname, '..')];

type Item = { record: DecisionRecord | Omit<DecisionRecord, 'patch'>; time: string; saKeys: string[]; slot: number; patchJson?: string };

const config = defaultConfig('bench-0');
const facts = createFactsIndex(config.domain);
loadBenchFacts(facts, 2);
const options = toDecideOptions(config);

/** One template per endpoint: the record the route builds, its patch text and the body as received. */
function template(endpoint: 'mutate' | 'validate', body: string): { record: DecisionRecord; patchJson?: string; body: string } {
  const parsed = parseAdmissionReview(JSON.parse(body));
  if (!parsed.ok) throw new Error(parsed.message);
  const decision = decideAdmission(endpoint, parsed.review.request, facts, options, '01900000-0000-7000-8000-000000000000');
  const record = toRecord({ id: '', time: '', endpoint, replica: 'bench-0', durationMs: 0.4, objectDigest: null }, decision, parsed.review.request);
  const patchJson = decision.patch.length > 0 ? JSON.stringify(decision.patch) : undefined;
  return { record, body, ...(patchJson ? { patchJson } : {}) };
}
const templates = [template('mutate', mutateReviewBody()), template('validate', validateReviewBody())];

/** The store code of one checkout, a store file and a Writer on it. */
async function load(arg: string, index: number, dir: string) {
  const [rootArg = '.', pragmas = ''] = arg.split('#');
  const root = resolve(rootArg);
  const from = (p: string) => import(pathToFileURL(join(root, p)).href);
  const { Writer } = await from('webhook/store/sqlite/writer.ts');
  const { createSqliteStore } = await from('webhook/store/sqlite/store.ts');
  const { loadOrCreateSigningKey } = await from('webhook/store/evidence/signing.ts');
  const { saKeysOf } = await from('webhook/store/sqlite/rows.ts');
  const { toDigestOfObject } = await from('webhook/store/evidence/object-digest.ts');
  const { chainNamespaceRecord, GENESIS_HASH } = await from('webhook/store/evidence/link.ts');
  const { toStoredBody } = await from('webhook/store/evidence/body-codec.ts');
  const { CanonicalText } = await from('webhook/store/evidence/canonical.ts');
  const signer = await loadOrCreateSigningKey(join(dir, 'key.pem'), { create: true });
  const path = join(dir, `store-${index}.db`);
  const store = await createSqliteStore({ path, replica: 'bench-0', signer, checkpointEvery: { records: 1e9, seconds: 1e6 } });
  await store.close();
  const writer = new Writer({ path, replica: 'bench-0', busyTimeoutMs: 5000, recoveryProbeMs: 1000, cancelFlags: new SharedArrayBuffer(4) }, () => {});
  const db = (writer as unknown as { db: { pragma(s: string, o?: { simple: boolean }): unknown; exec(s: string): unknown } }).db;
  const options = pragmas.split(';').filter(Boolean);
  const review = options.includes('review');
  for (const o of options.filter((x) => x !== 'review' && x !== 'records')) {
    if (o.startsWith('sql:')) db.exec(o.slice(4));
    else db.pragma(o);
  }
  // Checkouts since 2026-12-02 17:00 hand the writer prepared bodies (link.ts prepareChainBody),
  // as the store does; `records` (or an older checkout) hands it the records themselves.
  const { prepareChainBody } = await from('webhook/store/evidence/link.ts');
  const { toColumns } = await from('webhook/store/sqlite/rows.ts');
  const prepare = typeof prepareChainBody === 'function' && typeof toColumns === 'function' && !options.includes('records')
    ? (item: Item): unknown => {
        const prepared = prepareChainBody(item.record, item.patchJson);
        if (!prepared) return item;
        return { body: Buffer.from(prepared.bytes), slots: prepared.slots, ...toColumns(item.record), time: item.time, saKeys: item.saKeys, slot: item.slot };
      }
    : undefined;
  return { root: arg, path, db, review, prepare, toDigestOfObject, writer, saKeysOf, chainNamespaceRecord, GENESIS_HASH, toStoredBody, CanonicalText };
}

let n = 0;
/**
 * The next record as the route hands it over, and its request.object freshly parsed (the route
 * parsed the body already: that parse is not part of the record's cost, its objectDigest is).
 */
function nextItem(saKeysOf: (sas: string[]) => string[]): { item: Item; object: unknown; body: Buffer } {
  const t = templates[n % 2]!;
  n++;
  const time = formatMicros(1_767_225_600_000_000n + BigInt(n) * 1000n);
  const id = `01900000-${(n >>> 16).toString(16).padStart(4, '0')}-7000-8000-${n.toString(16).padStart(12, '0')}`;
  const full: DecisionRecord = { ...t.record, id, time, objectDigest: null };
  const object = (JSON.parse(t.body) as { request: { object: { metadata?: Record<string, unknown> } } }).request.object;
  if (DISTINCT) {
    (object.metadata ??= {}).uid = id;
    full.tekton = Object.fromEntries(Object.entries(full.tekton).map(([k, v]) => [k, k === 'taskRun' || k === 'pipelineRun' ? `${v}-${n}` : v]));
  }
  const item: Item = { record: full, time, saKeys: saKeysOf(full.serviceAccounts), slot: -1 };
  if (t.patchJson !== undefined) {
    const { patch: _p, ...rest } = full;
    item.record = rest;
    item.patchJson = t.patchJson;
  }
  return { item, object, body: Buffer.from(t.body) };
}

function cpuMicros(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

const dir = mkdtempSync(join(tmpdir(), 'tzw-writer-micro-'));
try {
  const subjects = [];
  for (const [i, arg] of subjectsArgs.entries()) subjects.push(await load(arg, i, dir));
  type Subject = (typeof subjects)[number];
  const run = (x: Subject, count: number, size = batch): number => {
    let used = 0;
    for (let done = 0; done < count; done += size) {
      const next = Array.from({ length: size }, () => nextItem(x.saKeysOf));
      const t0 = cpuMicros();
      if (x.review) for (const p of next) Object.assign(p.item, { review: p.body });
      else for (const p of next) p.item.record.objectDigest = x.toDigestOfObject(p.object);
      // The request side's share of a prepared append (its body and columns) counts too.
      const items = x.prepare ? next.map((p) => x.prepare!(p.item)) : next.map((p) => p.item);
      x.writer.enqueue({ batch: done, items });
      x.writer.flush();
      used += cpuMicros() - t0;
    }
    return used / count;
  };
  const parts = (x: Subject, count: number): Record<string, number> => {
    const next = Array.from({ length: count }, () => nextItem(x.saKeysOf));
    const items = next.map((p) => p.item);
    const out: Record<string, number> = {};
    let t0 = cpuMicros();
    const digests = next.map((p) => x.toDigestOfObject(p.object));
    out.objectDigest = (cpuMicros() - t0) / count;
    t0 = cpuMicros();
    const links = items.map((p, i) => x.chainNamespaceRecord(p.patchJson === undefined ? { ...p.record, objectDigest: digests[i] } : { ...p.record, objectDigest: digests[i], patch: new x.CanonicalText(p.patchJson) }, { seq: i, hash: x.GENESIS_HASH }, undefined));
    out.chain = (cpuMicros() - t0) / count;
    t0 = cpuMicros();
    let bytes = 0;
    for (const l of links) bytes += x.toStoredBody(l.body).length;
    out.compress = (cpuMicros() - t0) / count;
    out.storedBodyBytes = bytes / count;
    return out;
  };
  for (const x of subjects) {
    if (PREFILL > 0) run(x, PREFILL, 1000);
    run(x, 1000); // warm-up (JIT, page cache)
    parts(x, 1000);
  }
  const rounds = subjects.map(() => [] as number[]);
  const partRounds = subjects.map(() => [] as Array<Record<string, number>>);
  for (let r = 0; r < 5; r++) {
    subjects.forEach((x, i) => {
      rounds[i]!.push(run(x, records));
      partRounds[i]!.push(parts(x, Math.min(records, 2000)));
    });
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  /** WAL frames per commit of `batch` records: the WAL emptied first, no automatic checkpoint meanwhile. */
  const frames = (x: Subject): number => {
    x.db.pragma('wal_checkpoint(TRUNCATE)');
    x.db.pragma('wal_autocheckpoint = 0');
    const commits = Math.ceil(Math.min(records, 2048) / batch);
    run(x, commits * batch);
    const walBytes = statSync(`${x.path}-wal`).size;
    x.db.pragma('wal_autocheckpoint = 1000');
    // The WAL file: a 32-byte header, then frames of a 24-byte header and one page.
    return (walBytes - 32) / (24 + (x.db.pragma('page_size', { simple: true }) as number)) / commits;
  };
  subjects.forEach((x, i) => {
    const walFramesPerCommit = frames(x);
    x.writer.close();
    const summary: Record<string, number> = { appendCpuUsPerRecord: med(rounds[i]!), walFramesPerCommit, walFramesPerRecord: walFramesPerCommit / batch };
    for (const k of Object.keys(partRounds[i]![0]!)) summary[k] = med(partRounds[i]!.map((p) => p[k]!));
    console.log(JSON.stringify({ root: x.root, records, batch, rounds: rounds[i]!.map((v) => Math.round(v)), ...Object.fromEntries(Object.entries(summary).map(([k, v]) => [k, Math.round(v * 10) / 10])) }));
  });
} finally {
  rmSync(dir, { recursive: true, force: true });
}
