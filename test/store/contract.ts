/**
 * The decision store contract: every adapter (SQLite, PostgreSQL, ...) runs this suite.
 *
 *   runStoreContract(t, 'sqlite', async (opts) => ({ store, jwks, reopen, breakWrites, cleanup }))
 *
 * The harness opens a fresh, empty store for each case with the given writer id and checkpoint
 * cadence, and the recovery probe set short (the failure case waits for it).
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import canonicalizeCjs from 'canonicalize';
import type { Test } from 'tap';
import type { ChainedRecord, DecisionRecord } from '../../webhook/core/record.js';
import { GENESIS_HASH, hashRecord } from '../../webhook/store/evidence/chain.js';
import { verifyBundle, verifyStore, writeBundle } from '../../webhook/store/evidence/bundle.js';
import type { DecisionFilter, VerifiableStore } from '../../webhook/store/port.js';
import { toCanonicalTime } from '../../webhook/store/query.js';
import { verifyCheckpointJws, type Jwks } from '../../webhook/store/evidence/signing.js';
import { toDigestOfObject } from '../../webhook/store/evidence/object-digest.js';
import { aRecord, idOf, timeAt, WRITER } from './builders.js';

export interface StoreHarness {
  store: VerifiableStore;
  /** Public keys of the signer the store was opened with. */
  jwks: Jwks;
  /** Closes the store and opens it again on the same data and writer; also sets `store`. */
  reopen(): Promise<VerifiableStore>;
  /** Makes writes fail (a held lock, a stopped server, ...) until the returned function is awaited. */
  breakWrites(): Promise<() => Promise<void>>;
  /** Closes whatever is open and removes the data. */
  cleanup(): Promise<void>;
  /** The adapter writes record format v2 (RECORD-V2.md: nsSeq/nsPrevHash, checkpoints with nsRoot). */
  v2?: boolean;
}

export interface HarnessOptions {
  replica: string;
  checkpointEvery: { records: number; seconds: number };
}

export type MakeStore = (opts: HarnessOptions) => Promise<StoreHarness>;

type Scan = Omit<DecisionFilter, 'limit' | 'cursor'>;

const canonicalize = canonicalizeCjs as unknown as (v: unknown) => string | undefined;

const DEFAULTS: HarnessOptions = { replica: WRITER, checkpointEvery: { records: 1000, seconds: 3600 } };

const NAMESPACES = ['payments', 'web', 'ops'];
const VERDICTS = ['allowed', 'patched', 'denied', 'warned', 'errored', 'rejected'] as const;
const KINDS = ['Pod', 'TaskRun', 'PipelineRun'];

/** 48 varied records; n 20/21 and 30/31 share a timestamp (ids break the tie). */
export function seedRecords(): DecisionRecord[] {
  return Array.from({ length: 48 }, (_, i) => {
    const n = i + 1;
    const namespace = NAMESPACES[n % 3] as string;
    const kind = KINDS[n % KINDS.length] as string;
    const second = n === 21 ? 20 : n === 31 ? 30 : n;
    const serviceAccounts = kind === 'PipelineRun' ? [`${namespace}/ci-builder`, `${namespace}/deployer`] : n % 4 === 0 ? [`${namespace}/default`] : [`${namespace}/ci-builder`];
    return aRecord({
      n,
      namespace,
      time: timeAt(second * 1000, n % 7),
      kind: { group: kind === 'Pod' ? '' : 'tekton.dev', version: 'v1', kind },
      verdict: VERDICTS[n % VERDICTS.length],
      serviceAccounts,
      tekton: kind === 'PipelineRun' ? { pipelineRun: n % 2 ? 'release' : 'nightly' } : n % 5 === 0 ? {} : { taskRun: `build-${n}`, pipelineRun: n % 2 ? 'release' : 'nightly' },
      // Six objects, each admitted several times (retries, dry runs); one record without an object.
      objectDigest: n === 13 ? null : (n % 5).toString(16).repeat(64),
    });
  });
}

/** The reference semantics of a filter. */
export function matches(r: DecisionRecord, f: Scan): boolean {
  const time = toCanonicalTime(r.time) ?? '';
  if (f.namespace !== undefined && r.namespace !== f.namespace) return false;
  if (f.serviceAccount !== undefined) {
    const sa = f.serviceAccount;
    if (!r.serviceAccounts.some((s) => s === sa || (!sa.includes('/') && s.slice(s.indexOf('/') + 1) === sa))) return false;
  }
  if (f.verdict !== undefined && r.verdict !== f.verdict) return false;
  if (f.kind !== undefined && r.kind.kind !== f.kind) return false;
  if (f.taskRun !== undefined && r.tekton.taskRun !== f.taskRun) return false;
  if (f.pipelineRun !== undefined && r.tekton.pipelineRun !== f.pipelineRun) return false;
  if (f.objectDigest !== undefined && r.objectDigest !== f.objectDigest) return false;
  if (f.since !== undefined && time < f.since) return false;
  if (f.until !== undefined && time >= f.until) return false;
  return true;
}

function byTimeThenId(a: DecisionRecord, b: DecisionRecord): number {
  const ta = toCanonicalTime(a.time) ?? '';
  const tb = toCanonicalTime(b.time) ?? '';
  return ta < tb ? -1 : ta > tb ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** A fixed shuffle, so appends arrive out of time order. */
function shuffled<T>(items: T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = (i * 7919 + 13) % (i + 1);
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

const FILTERS: Array<[string, Scan]> = [
  ['no filter', {}],
  ['namespace', { namespace: 'web' }],
  ['serviceAccount namespace/name', { serviceAccount: 'payments/ci-builder' }],
  ['serviceAccount bare name', { serviceAccount: 'ci-builder' }],
  ['second ServiceAccount of a PipelineRun', { serviceAccount: 'deployer' }],
  ['verdict', { verdict: 'denied' }],
  ['kind', { kind: 'TaskRun' }],
  ['taskRun', { taskRun: 'build-7' }],
  ['pipelineRun', { pipelineRun: 'release' }],
  ['since/until', { since: timeAt(12_000), until: timeAt(30_000, 4) }],
  ['namespace + verdict + since', { namespace: 'web', verdict: 'patched', since: timeAt(5_000) }],
  ['serviceAccount + namespace + until', { serviceAccount: 'ci-builder', namespace: 'ops', until: timeAt(40_000) }],
  ['pipelineRun + kind', { pipelineRun: 'nightly', kind: 'PipelineRun' }],
  ['objectDigest', { objectDigest: '3'.repeat(64) }],
  ['objectDigest + verdict + until', { objectDigest: '4'.repeat(64), verdict: 'denied', until: timeAt(40_000) }],
];

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function all(it: AsyncIterable<ChainedRecord>): Promise<ChainedRecord[]> {
  const out: ChainedRecord[] = [];
  for await (const r of it) out.push(r);
  return out;
}

function errorCode(err: unknown): unknown {
  return (err as { code?: unknown }).code;
}

export function runStoreContract(t: Test, name: string, makeStore: MakeStore): void {
  const withStore = (title: string, opts: Partial<HarnessOptions>, body: (t: Test, h: StoreHarness) => Promise<void>) =>
    t.test(`${name}: ${title}`, async (t) => {
      const h = await makeStore({ ...DEFAULTS, ...opts });
      t.teardown(() => h.cleanup());
      await body(t, h);
    });

  withStore('append chains records and get returns them as stored', {}, async (t, h) => {
    const [a, b] = [aRecord({ n: 1 }), aRecord({ n: 2, tekton: {} })];
    const ra = await h.store.append(a);
    const rb = await h.store.append(b);
    const { hash: hashA, ...restA } = ra;
    const nsA = h.v2 ? { nsSeq: 1, nsPrevHash: GENESIS_HASH } : {};
    t.strictSame(restA, { ...a, seq: 1, prevHash: GENESIS_HASH, ...nsA });
    t.equal(hashA, hashRecord(GENESIS_HASH, restA));
    // Same namespace: b is the next link of a's namespace chain.
    t.match(rb, { ...b, seq: 2, prevHash: hashA, ...(h.v2 ? { nsSeq: 2, nsPrevHash: hashA } : {}) });
    t.strictSame(await h.store.get(a.id), ra);
    t.strictSame(await h.store.get(b.id), rb);
    t.equal(await h.store.get(idOf(99)), undefined);
    t.equal(h.store.writable(), true);
    const reimported = await h.store.append({ ...ra, id: idOf(3), seq: 40, prevHash: 'x', hash: 'y' } as DecisionRecord);
    t.match(reimported, { id: idOf(3), seq: 3, prevHash: rb.hash }, 'stale chain fields are replaced');
    t.match(await verifyStore(h.store, h.jwks), { ok: true, records: 3 });
    if (h.store.count) t.equal(await h.store.count(), 3, 'count() (progress totals)');
    const path = join(t.testdir({}), 'b.jsonl');
    await writeBundle(h.store, undefined, path, h.jwks);
    t.match(await verifyBundle(path, h.jwks), { ok: true, records: 3 });
  });

  withStore('append with the patch as canonical text stores what the plain append would', {}, async (t, h) => {
    // The admission route passes the patch as the text it serialised for the response
    // (AppendOptions.patchJson) and the objectDigest it computed from request.object; the stored
    // record and its hash must be exactly those of the record with its patch object, whether an
    // adapter uses the text or not.
    const object = { metadata: { namespace: 'payments', name: 'p', labels: { b: '1', a: '2' } }, kind: 'Pod', apiVersion: 'v1', spec: { containers: [{ name: 'c', image: 'i' }] } };
    const patch = [
      { op: 'add' as const, path: '/metadata/annotations/tekton-zscaler.io~1status', value: 'injected' },
      { op: 'add' as const, path: '/spec/volumes/-', value: { name: 'tekton-zscaler-token', projected: { sources: [{ serviceAccountToken: { audience: 'sts', expirationSeconds: 600, path: 'token' } }] } } },
    ];
    const digest = createHash('sha256').update(canonicalize(object) ?? '').digest('hex');
    const a = aRecord({ n: 1, patch, objectDigest: toDigestOfObject(object) });
    const ra = await h.store.append(a, { patchJson: JSON.stringify(patch) });
    const { hash, ...rest } = ra;
    t.strictSame(rest, { ...a, objectDigest: digest, seq: 1, prevHash: GENESIS_HASH, ...(h.v2 ? { nsSeq: 1, nsPrevHash: GENESIS_HASH } : {}) });
    t.equal(hash, hashRecord(GENESIS_HASH, rest), 'the hash is of the canonical record with the patch object');
    t.strictSame(await h.store.get(a.id), ra);
    // The same record without the option, after it: the same body but for id and chain fields.
    const b = aRecord({ n: 2, patch, objectDigest: digest });
    const rb = await h.store.append(b);
    t.equal(rb.hash, hashRecord(hash, { ...rest, ...b, seq: 2, prevHash: hash, ...(h.v2 ? { nsSeq: 2, nsPrevHash: hash } : {}) }));
    t.strictSame((await h.store.query({ objectDigest: digest, limit: 10 })).items.map((r) => r.id), [a.id, b.id], 'found by objectDigest');
    t.match(await verifyStore(h.store, h.jwks), { ok: true, records: 2 });
  });

  withStore('every filter, ordering by (time, id), pagination and stream', {}, async (t, h) => {
    const seed = seedRecords();
    const stored = new Map<string, ChainedRecord>();
    for (const r of shuffled(seed)) stored.set(r.id, await h.store.append(r));
    for (const [title, f] of FILTERS) {
      const want = seed.filter((r) => matches(r, f)).sort(byTimeThenId).map((r) => r.id);
      t.ok(want.length > 0 && (want.length < seed.length || title === 'no filter'), `${title}: the case selects something`);
      const page = await h.store.query({ ...f, limit: 1000 });
      t.strictSame(page.items.map((r) => r.id), want, `${title}: query`);
      t.equal(page.nextCursor, null, `${title}: one page`);
      t.strictSame(page.items, want.map((id) => stored.get(id)), `${title}: items are the stored records`);
      t.strictSame((await all(h.store.stream(f))).map((r) => r.id), want, `${title}: stream`);
      for (const limit of [1, 4]) {
        const seen: string[] = [];
        let cursor: string | undefined;
        let pages = 0;
        for (;;) {
          const p: Awaited<ReturnType<VerifiableStore['query']>> = await h.store.query({ ...f, limit, ...(cursor ? { cursor } : {}) });
          pages++;
          t.ok(p.items.length <= limit);
          seen.push(...p.items.map((r) => r.id));
          if (!p.nextCursor) break;
          cursor = p.nextCursor;
          if (pages > seed.length + 1) throw new Error('pagination does not end');
        }
        t.strictSame(seen, want, `${title}: pages of ${limit} have no gaps or duplicates`);
        t.equal(pages, Math.max(1, Math.ceil(want.length / limit)), `${title}: pages of ${limit}, no empty last page`);
      }
    }
    t.strictSame((await h.store.query({ namespace: 'nothing', limit: 10 })).items, [], 'no match');
  });

  withStore('200 concurrent appends are all durable in one chain that verifies', {}, async (t, h) => {
    const records = Array.from({ length: 200 }, (_, i) => aRecord({ n: i + 1 }));
    const stored = await Promise.all(records.map((r) => h.store.append(r)));
    t.strictSame(
      stored.map((r) => r.seq).sort((a, b) => a - b),
      records.map((_, i) => i + 1),
    );
    const bySeq = [...stored].sort((a, b) => a.seq - b.seq);
    t.ok(bySeq.every((r, i) => r.prevHash === (i === 0 ? GENESIS_HASH : bySeq[i - 1]?.hash)), 'one linear chain');
    t.match(await verifyStore(h.store, h.jwks), { ok: true, records: 200, writers: 1 });
    const store = await h.reopen();
    for (const r of stored) t.strictSame(await store.get(r.id), r);
    t.match(await verifyStore(store, h.jwks), { ok: true, records: 200, checkpoints: 1, unsigned: 0 }, 'close wrote a final checkpoint');
  });

  withStore('a checkpoint is signed after N records', { checkpointEvery: { records: 10, seconds: 3600 } }, async (t, h) => {
    const stored: ChainedRecord[] = [];
    for (let n = 1; n <= 10; n++) stored.push(await h.store.append(aRecord({ n })));
    const [cp] = await waitFor('a checkpoint', async () => ((await h.store.checkpoints()).length ? h.store.checkpoints() : undefined));
    if (!cp) throw new Error('no checkpoint');
    t.match(cp, { writer: WRITER, size: 10, headHash: stored[9]?.hash });
    t.strictSame(await verifyCheckpointJws(cp.jws, h.jwks), { writer: cp.writer, size: cp.size, headHash: cp.headHash, time: cp.time });
    t.ok(toCanonicalTime(cp.time), 'checkpoint time is RFC 3339');
    t.match(await verifyStore(h.store, h.jwks), { ok: true, records: 10, checkpoints: 1, unsigned: 0 });
  });

  withStore('a checkpoint is signed every T seconds when there is something new', { checkpointEvery: { records: 1000, seconds: 0.1 } }, async (t, h) => {
    // Together (one commit): two appends in a row can straddle a 100 ms tick on a loaded machine,
    // which signs a checkpoint of size 1 first.
    await Promise.all([h.store.append(aRecord({ n: 1 })), h.store.append(aRecord({ n: 2 }))]);
    const cps = await waitFor('a timed checkpoint', async () => {
      const c = await h.store.checkpoints();
      return c.length ? c : undefined;
    });
    t.match(cps, [{ writer: WRITER, size: 2 }]);
    await new Promise((r) => setTimeout(r, 300));
    t.equal((await h.store.checkpoints()).length, 1, 'no new checkpoint without new records');
  });

  withStore('reopening continues the writer chain', {}, async (t, h) => {
    const first = [];
    for (let n = 1; n <= 3; n++) first.push(await h.store.append(aRecord({ n })));
    const store = await h.reopen();
    const next = await store.append(aRecord({ n: 4 }));
    t.equal(next.seq, 4);
    t.equal(next.prevHash, first[2]?.hash);
    await store.append(aRecord({ n: 5 }));
    t.match(await verifyStore(store, h.jwks), { ok: true, records: 5 });
  });

  withStore('a failed write rejects with ERR_STORE_UNAVAILABLE, keeps nothing, then recovers', {}, async (t, h) => {
    const before = await h.store.append(aRecord({ n: 1 }));
    const restore = await h.breakWrites();
    const failed = await Promise.allSettled([2, 3, 4].map((n) => h.store.append(aRecord({ n }))));
    t.strictSame(failed.map((r) => r.status), ['rejected', 'rejected', 'rejected']);
    for (const r of failed) if (r.status === 'rejected') t.equal(errorCode(r.reason), 'ERR_STORE_UNAVAILABLE');
    t.equal(h.store.writable(), false, 'not writable (readiness)');
    await restore();
    await waitFor('recovery', async () => (h.store.writable() ? true : undefined));
    const after = await h.store.append(aRecord({ n: 5 }));
    t.equal(after.seq, 2, 'the chain head did not move on failure');
    t.equal(after.prevHash, before.hash);
    for (const n of [2, 3, 4]) t.equal(await h.store.get(idOf(n)), undefined, `record ${n} was not half-written`);
    t.match(await verifyStore(h.store, h.jwks), { ok: true, records: 2 });
  });

  withStore('bad records are refused one by one; their batch mates commit', {}, async (t, h) => {
    await h.store.append(aRecord({ n: 1 }));
    const results = await Promise.allSettled([
      h.store.append(aRecord({ n: 2 })),
      h.store.append(aRecord({ n: 1 })),
      h.store.append(aRecord({ n: 3 })),
      h.store.append(aRecord({ n: 3 })),
      h.store.append(aRecord({ n: 4, replica: 'someone-else' })),
      h.store.append(aRecord({ n: 5, durationMs: NaN })),
      h.store.append(aRecord({ n: 6, time: 'yesterday' })),
      h.store.append(aRecord({ n: 7 })),
    ]);
    t.strictSame(
      results.map((r) => (r.status === 'fulfilled' ? r.value.seq : errorCode(r.reason))),
      [2, 'ERR_STORE_DUPLICATE_ID', 3, 'ERR_STORE_DUPLICATE_ID', 'ERR_STORE_INVALID_RECORD', 'ERR_STORE_INVALID_RECORD', 'ERR_STORE_INVALID_RECORD', 4],
    );
    t.equal(h.store.writable(), true);
    t.match(await verifyStore(h.store, h.jwks), { ok: true, records: 4 });
  });

  withStore('prune deletes old records, anchors the rest, and the chain still verifies', {}, async (t, h) => {
    // Seq order differs from time order at the cutoff: n=11 is older than the cutoff but comes
    // after n=12, which is newer; only the prefix before n=12 may go.
    const times = (n: number) => (n === 12 ? 11_600 : n === 13 ? 11_400 : n * 1000);
    const stored: ChainedRecord[] = [];
    for (let n = 1; n <= 20; n++) stored.push(await h.store.append(aRecord({ n, time: timeAt(times(n)) })));
    const cutoff = timeAt(11_500);
    const result = await h.store.prune(cutoff);
    const at11 = stored[10] as ChainedRecord;
    t.equal(result.deleted, 11);
    t.match(result.anchors, [{ writer: WRITER, seq: 11, hash: at11.hash }]);
    t.strictSame(await h.store.anchors(), result.anchors);
    t.strictSame((await h.store.query({ limit: 1000 })).items.map((r) => r.seq).sort((a, b) => a - b), [12, 13, 14, 15, 16, 17, 18, 19, 20]);
    t.match(await verifyStore(h.store, h.jwks), { ok: true, records: 9, anchors: 1 });
    t.strictSame(await h.store.prune(cutoff), { deleted: 0, anchors: [] }, 'nothing more to prune');
    await h.store.append(aRecord({ n: 21 }));
    const store = await h.reopen();
    t.equal((await store.append(aRecord({ n: 22 }))).seq, 22);
    t.match(await verifyStore(store, h.jwks), { ok: true, records: 11, anchors: 1 });
    const all = await store.prune(timeAt(100_000));
    t.equal(all.deleted, 11);
    const last = await store.append(aRecord({ n: 23 }));
    t.equal(last.seq, 23, 'pruning everything keeps the head');
    t.match(await verifyStore(store, h.jwks), { ok: true, records: 1, anchors: 2 });
    await t.rejects(store.prune('last week'), { code: 'ERR_STORE_BAD_FILTER' });
  });

  withStore('an exported bundle of the whole store verifies', { checkpointEvery: { records: 7, seconds: 3600 } }, async (t, h) => {
    for (const r of seedRecords()) await h.store.append(r);
    await h.store.prune(timeAt(5_500));
    const path = join(t.testdir({}), 'bundle.jsonl');
    const summary = await writeBundle(h.store, {}, path, h.jwks);
    t.match(summary, { path, records: 43, complete: true, anchors: 1 });
    t.match(await verifyBundle(path, h.jwks), { ok: true, records: 43, writers: 1, anchors: 1, warnings: [] });
  });
}
