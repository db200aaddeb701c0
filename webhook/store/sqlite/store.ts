/**
 * The embedded decision store: one SQLite file (better-sqlite3, WAL, synchronous=FULL) holding the
 * hash-chained records of one or more writers, their signed checkpoints and retention anchors.
 *
 * Appends use group commit: every append waiting when the event loop turns is written in one
 * transaction, and all of them resolve after that single commit. The writer's chain head (seq,
 * hash) lives in memory, is loaded at open (so a restart continues the chain) and only moves after
 * a commit succeeded. A record passed to append() is serialised when its batch is handed to the
 * writer thread (the next turn of the event loop) and returned as given when the commit resolves:
 * do not change it until its promise settles.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import Database from 'better-sqlite3';
import type { ChainedRecord, DecisionRecord } from '../../core/record.js';
import type { Worker } from 'node:worker_threads';
import { GENESIS_HASH, toChainedRecord, type CheckedEvidence, type VerifyResult } from '../evidence/chain.js';
import { verifySqliteChains } from './verify.js';
import { toPageOf, type CheckpointPage, type CheckpointPageRequest } from '../checkpoint-page.js';
import type { Anchor, AppendOptions, ChainEntry, ChainVerifyOptions, Checkpoint, CommitObserver, DecisionFilter, DecisionPage, PruneResult, VerifiableStore } from '../port.js';
import { cancelledError, checkRecordShape, storeError, toBodyText, toChainEntry, toChained, toPage, toPageRequest, unchainableError } from '../rows.js';
import { createWriterThread, toCommitNotifier, whenWriterReady } from '../thread.js';
import { CHAIN_COLUMNS, columnProblem, saKeysOf, toColumns, toDecisionRow, type RawDecisionRow } from './rows.js';
import { prepareChainBody } from '../evidence/link.js';
import type { NamespaceHead } from '../evidence/merkle.js';
import { SLOT_CANCELLED, SLOT_PENDING, type AppendItem, type RecordItem, type CheckpointClaimsNow, type WriterConfig, type WriterOp, type WriterReply, type WriterRequest } from './writer.js';
import { EQUALITY_FILTER_COLUMNS, toCanonicalTime, toDrivingFilter, toSqliteColumn, toSqlParam, type Cursor } from '../query.js';
import { toDecisionStats, toRollupDdl, toRollupDeltaSql, toStatsSql, type DecisionStats, type SqlQuery, type StatsBucket, type StatsFilter, type StatsRows } from '../stats.js';
import { STATS_TABLES } from './tables.js';
import { toDigestBytes, toDigestBytesOfStoredBody } from '../evidence/object-digest.js';
import { ANCHOR_TYP, CHECKPOINT_TYP, type Signer } from '../evidence/signing.js';

export const DEFAULT_CHECKPOINT_RECORDS = 1000;
export const DEFAULT_CHECKPOINT_SECONDS = 60;
export const DEFAULT_BUSY_TIMEOUT_MS = 2000;
export const DEFAULT_RECOVERY_PROBE_MS = 1000;
/** Rows per read for stream()/streamChain(): bounded memory, and no statement left open across awaits. */
const READ_CHUNK = 1000;
/**
 * Rows per read for streamChain(): verification holds a chunk of ~5 KB record strings plus their
 * parsed objects; 1000 of them outgrow V8's young generation and every chunk is promoted and
 * collected as old-generation garbage (GC was ~40% of verify time). 200 stay young.
 */
const CHAIN_READ_CHUNK = 200;
/** Records deleted per transaction by prune(), so a large prune does not stall admissions. */
const PRUNE_CHUNK = 5000;
const CACHE_KIB = 32 * 1024;
/** While unwritable, repeat the "still unwritable" warning at most this often. */
const PROBE_WARNING_INTERVAL_MS = 60_000;

/** The subset of a pino logger the store uses. */
export interface StoreLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface SqliteStoreOptions {
  /** Database file. Its directory must exist (and be writable unless `readonly`). */
  path: string;
  /** This process's writer id (pod name / hostname); appended records must carry it as `replica`. */
  replica: string;
  /** Signs checkpoints and anchors; required unless `readonly`. */
  signer?: Signer;
  /** Open for reading only (CLI list/get/export/verify): appends and prune are refused. */
  readonly?: boolean;
  /** Write a signed checkpoint after this many records and every this many seconds (if anything new). */
  checkpointEvery?: { records?: number; seconds?: number };
  clock?: () => Date;
  logger?: StoreLogger;
  /** How long a write waits for a lock held by another process before failing. */
  busyTimeoutMs?: number;
  /** While unwritable, how often a probe write checks whether the store recovered. */
  recoveryProbeMs?: number;
  /** Told about every commit of the writer thread (its duration and records): metrics. */
  onCommit?: CommitObserver;
}

export interface SqliteStore extends VerifiableStore {
  readonly path: string;
  readonly replica: string;
  /** This writer's chain head as committed. */
  head(): { seq: number; hash: string };
  /** Signs and stores a checkpoint now if the head moved since the last one. */
  checkpointNow(): Promise<Checkpoint | undefined>;
  /** Group-commit counters since open: transactions committed, records in them, failed commits. */
  stats(): { commits: number; records: number; failedCommits: number };
  /** The committing (writer thread's) connection's synchronous (2 = FULL) and journal mode. */
  writerSettings(): Promise<{ synchronous: number; journalMode: string }>;
  /** SQLite's plan for a query page (diagnostics: shows which index a filter uses). */
  queryPlan(filter: Omit<DecisionFilter, 'limit' | 'cursor'>, after?: Cursor): string[];
  /**
   * Caps the database at `pages` pages (PRAGMA max_page_count on the writer thread's connection;
   * 0 lifts the cap): past it, commits fail with SQLITE_FULL as on a full disk. For tests that
   * cannot mount a size-limited filesystem. Resolves with the cap SQLite applied (never below the
   * file's current size).
   */
  capPages(pages: number): Promise<number>;
  /** While not writable: "decision store PATH full (SQLITE_FULL)" or "… not writable". */
  unwritableReason(): string | undefined;
}

/** Schema steps, SQL or a function on the connection; each runs in one transaction. */
const MIGRATIONS: Array<string | ((db: Database.Database) => void)> = [
  `
  CREATE TABLE decisions (
    id TEXT PRIMARY KEY NOT NULL,
    writer TEXT NOT NULL,
    seq INTEGER NOT NULL,
    time TEXT NOT NULL,
    namespace TEXT NOT NULL,
    kind TEXT NOT NULL,
    verdict TEXT NOT NULL,
    service_accounts TEXT NOT NULL,
    task_run TEXT,
    pipeline_run TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    record TEXT NOT NULL,
    UNIQUE (writer, seq)
  );
  CREATE INDEX decisions_time ON decisions (time, id);
  CREATE INDEX decisions_namespace ON decisions (namespace, time, id);
  CREATE INDEX decisions_verdict ON decisions (verdict, time, id);
  CREATE INDEX decisions_kind ON decisions (kind, time, id);
  CREATE INDEX decisions_task_run ON decisions (task_run, time, id) WHERE task_run IS NOT NULL;
  CREATE INDEX decisions_pipeline_run ON decisions (pipeline_run, time, id) WHERE pipeline_run IS NOT NULL;
  -- One row per ServiceAccount of a record under two keys, "namespace/name" and the bare "name",
  -- so both filter forms are one index range in (time, id) order.
  CREATE TABLE decision_sas (
    key TEXT NOT NULL,
    time TEXT NOT NULL,
    decision_id TEXT NOT NULL,
    PRIMARY KEY (key, time, decision_id)
  ) WITHOUT ROWID;
  CREATE INDEX decision_sas_decision ON decision_sas (decision_id);
  CREATE TABLE checkpoints (
    writer TEXT NOT NULL,
    size INTEGER NOT NULL,
    head_hash TEXT NOT NULL,
    time TEXT NOT NULL,
    jws TEXT NOT NULL,
    PRIMARY KEY (writer, size)
  );
  CREATE TABLE anchors (
    writer TEXT NOT NULL,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    time TEXT NOT NULL,
    jws TEXT NOT NULL,
    PRIMARY KEY (writer, seq)
  );
  CREATE TABLE store_meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
  `,
  // Record format v2 (RECORD-V2.md): namespace chains, a compressed stored body (evidence/body-codec.ts;
  // \`record\` is '' on v2 rows, the v1 text stays as it was), the unmapped ServiceAccounts stats
  // read, and the namespace heads each checkpoint commits to.
  `
  ALTER TABLE decisions ADD COLUMN ns_seq INTEGER;
  ALTER TABLE decisions ADD COLUMN body BLOB;
  ALTER TABLE decisions ADD COLUMN unmapped TEXT;
  CREATE INDEX decisions_ns_chain ON decisions (writer, namespace, ns_seq) WHERE ns_seq IS NOT NULL;
  CREATE TABLE ns_heads (
    writer TEXT NOT NULL,
    namespace TEXT NOT NULL,
    ns_seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (writer, namespace)
  ) WITHOUT ROWID;
  ALTER TABLE checkpoints ADD COLUMN ns_root TEXT;
  ALTER TABLE checkpoints ADD COLUMN ns_size INTEGER;
  CREATE TABLE checkpoint_ns_heads (
    writer TEXT NOT NULL,
    size INTEGER NOT NULL,
    namespace TEXT NOT NULL,
    ns_seq INTEGER NOT NULL,
    ns_head_hash TEXT NOT NULL,
    PRIMARY KEY (writer, size, namespace)
  ) WITHOUT ROWID;
  `,
  // Queries at a million records (issues 10 and 11): the objectDigest filter's column and index, the
  // namespace and verdict indexes widened so a second filter (and the per-namespace stats) is
  // answered inside the index, and the stats rollups, backfilled once from the records.
  (db) => {
    db.exec(`
      ALTER TABLE decisions ADD COLUMN object_digest BLOB;
      DROP INDEX decisions_namespace;
      DROP INDEX decisions_verdict;
      UPDATE decisions SET object_digest = unhex(json_extract(record, '$.objectDigest'))
        WHERE body IS NULL AND json_valid(record) AND length(json_extract(record, '$.objectDigest')) = 64 AND json_extract(record, '$.objectDigest') NOT GLOB '*[^0-9a-f]*';
    `);
    // v2 rows keep the digest in the compressed body only: read each once.
    const read = db.prepare('SELECT rowid AS r, body FROM decisions WHERE rowid > ? AND body IS NOT NULL ORDER BY rowid LIMIT 2000');
    const write = db.prepare('UPDATE decisions SET object_digest = ? WHERE rowid = ?');
    for (let after = 0; ; ) {
      const rows = read.all(after) as Array<{ r: number; body: Uint8Array }>;
      for (const row of rows) {
        const bytes = toDigestBytesOfStoredBody(row.body);
        if (bytes) write.run(bytes, row.r);
      }
      const last = rows[rows.length - 1];
      if (!last) break;
      after = last.r;
    }
    db.exec(`
      CREATE INDEX decisions_namespace ON decisions (namespace, time, id, verdict, kind, writer);
      CREATE INDEX decisions_verdict ON decisions (verdict, time, id, namespace, kind);
      CREATE INDEX decisions_object_digest ON decisions (object_digest);
      ${toRollupDdl('sqlite', STATS_TABLES)}
    `);
    for (const sql of toRollupDeltaSql('sqlite', STATS_TABLES, 'decisions d', '1 = 1', 1)) db.exec(sql);
    // Planner statistics for the new indexes (a sample: fast on millions of rows).
    db.exec('PRAGMA analysis_limit = 1000; ANALYZE;');
  },
  // Stats for a ServiceAccount (issue 10): each account index row carries the record's columns the
  // stats group and filter by, so an account's stats read one range of this table's primary key
  // (WITHOUT ROWID: the columns sit in the key's b-tree) and never the records. Rebuilt from the
  // records in key order; rows of no record (none are written) are not carried over.
  `
  CREATE TABLE decision_sas_v4 (
    key TEXT NOT NULL,
    time TEXT NOT NULL,
    decision_id TEXT NOT NULL,
    namespace TEXT NOT NULL,
    kind TEXT NOT NULL,
    verdict TEXT NOT NULL,
    writer TEXT NOT NULL,
    PRIMARY KEY (key, time, decision_id)
  ) WITHOUT ROWID;
  INSERT INTO decision_sas_v4 (key, time, decision_id, namespace, kind, verdict, writer)
    SELECT s.key, s.time, s.decision_id, d.namespace, d.kind, d.verdict, d.writer FROM decision_sas s JOIN decisions d ON d.id = s.decision_id ORDER BY s.key, s.time, s.decision_id;
  DROP TABLE decision_sas;
  ALTER TABLE decision_sas_v4 RENAME TO decision_sas;
  CREATE INDEX decision_sas_decision ON decision_sas (decision_id);
  `,
];
export const SCHEMA_VERSION = MIGRATIONS.length;

interface Pending {
  record: DecisionRecord;
  time: string;
  saKeys: string[];
  /** AppendOptions.patchJson: the record's patch as canonical JSON text. */
  patchJson?: string;
  /** Index of its cancellation flag, -1 when it cannot be cancelled. */
  slot: number;
  /** Rejected by its caller's signal; the writer's answer is then ignored. */
  cancelled?: boolean;
  resolve(r: ChainedRecord): void;
  reject(e: Error): void;
}





type CheckpointRow = { writer: string; size: number; head_hash: string; time: string; jws: string; ns_root: string | null; ns_size: number | null };

function toCheckpoint(r: CheckpointRow): Checkpoint {
  return { writer: r.writer, size: r.size, headHash: r.head_hash, time: r.time, jws: r.jws, ...(r.ns_root !== null ? { nsRoot: r.ns_root, nsSize: r.ns_size ?? 0 } : {}) };
}

const noopLogger: StoreLogger = { info() {}, warn() {}, error() {} };


/** An append refused before it reaches the writer thread (ERR_STORE_INVALID_RECORD). */
function invalid(message: string): Promise<never> {
  return Promise.reject(storeError('ERR_STORE_INVALID_RECORD', `invalid decision record: ${message}`));
}

type ScanFilter = Omit<DecisionFilter, 'limit' | 'cursor'>;
function toItem(p: Pending): RecordItem {
  const item: RecordItem = { record: p.record, time: p.time, saKeys: p.saKeys, slot: p.slot };
  if (p.patchJson !== undefined) {
    // The patch travels as the text the caller already has (a string copies as one block; the
    // object graph costs a structured clone here and another walk in the writer).
    const { patch: _patch, ...rest } = p.record;
    item.record = rest;
    item.patchJson = p.patchJson;
  }
  return item;
}

/** Where a batch's prepared bodies are gathered before they are copied into the buffer they travel in. */
let gather = Buffer.allocUnsafe(64 * 1024);

/**
 * A batch as the writer receives it: each record as its prepared body and column values
 * (PreparedItem; the bodies share one buffer, which a message copies once), or, when the record
 * is not plain JSON data, as the record itself (RecordItem: the writer refuses it with its reason).
 */
function toItems(batch: Pending[]): AppendItem[] {
  const items: AppendItem[] = new Array(batch.length);
  const ranges: number[] = [];
  let used = 0;
  batch.forEach((p, i) => {
    const prepared = prepareChainBody(p.record, p.patchJson);
    if (!prepared) {
      items[i] = toItem(p);
      return;
    }
    const { bytes } = prepared;
    if (used + bytes.length > gather.length) {
      const bigger = Buffer.allocUnsafe(Math.max(gather.length * 2, used + bytes.length));
      gather.copy(bigger, 0, 0, used);
      gather = bigger;
    }
    gather.set(bytes, used);
    ranges[i] = used;
    used += bytes.length;
    // body is set below, once the shared buffer exists.
    items[i] = { body: bytes, slots: prepared.slots, ...toColumns(p.record), time: p.time, saKeys: p.saKeys, slot: p.slot };
  });
  if (used > 0) {
    const shared = new ArrayBuffer(used);
    new Uint8Array(shared).set(gather.subarray(0, used));
    batch.forEach((_p, i) => {
      const item = items[i] as AppendItem;
      const at = ranges[i];
      if (at !== undefined && 'body' in item) item.body = new Uint8Array(shared, at, item.body.length);
    });
  }
  // A large batch's gather buffer is given back rather than kept for the process's life.
  if (gather.length > 1024 * 1024) gather = Buffer.allocUnsafe(64 * 1024);
  return items;
}

/** Cancellable appends in flight at once (one shared Int32 flag each); beyond that an append is not cancellable. */
const CANCEL_SLOTS = 4096;

interface InFlight {
  items: Pending[];
}

class SqliteDecisionStore implements SqliteStore {
  readonly path: string;
  readonly replica: string;
  private readonly db: Database.Database;
  private readonly signer: Signer | undefined;
  private readonly readonly: boolean;
  private readonly clock: () => Date;
  private readonly log: StoreLogger;
  private readonly cpRecords: number;
  private readonly statements = new Map<string, Database.Statement>();
  private chainHead = { seq: 0, hash: GENESIS_HASH };
  private readonly counters = { commits: 0, records: 0, failedCommits: 0 };
  private lastCheckpointSize = 0;
  private queue: Pending[] = [];
  private flushScheduled = false;
  private isWritable: boolean;
  /** While unwritable because full: the code that said so (SQLITE_FULL, ENOSPC). */
  private fullCode: string | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;
  private cpInFlight: Promise<Checkpoint | undefined> | undefined;
  private pruning: Promise<unknown> = Promise.resolve();
  private readonly cpTimer: NodeJS.Timeout | undefined;
  /** The writer thread (absent when read-only). */
  private worker: Worker | undefined;
  private workerConfig: WriterConfig | undefined;
  private workerFailure: string | undefined;
  private nextBatch = 1;
  private readonly inFlight = new Map<number, InFlight>();
  private nextCall = 1;
  private readonly calls = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  private closedByWorker: (() => void) | undefined;
  private readonly cancelFlags: Int32Array;
  private readonly freeSlots: number[] = [];
  private readonly notifyCommit: (ms: number, records: number) => void;

  constructor(db: Database.Database, opts: SqliteStoreOptions) {
    this.db = db;
    this.path = opts.path;
    this.replica = opts.replica;
    this.signer = opts.signer;
    this.readonly = opts.readonly ?? false;
    this.clock = opts.clock ?? (() => new Date());
    this.log = opts.logger ?? noopLogger;
    this.cpRecords = opts.checkpointEvery?.records ?? DEFAULT_CHECKPOINT_RECORDS;
    this.notifyCommit = toCommitNotifier(opts.onCommit, this.log);
    this.isWritable = !this.readonly;
    const shared = new SharedArrayBuffer(this.readonly ? 4 : CANCEL_SLOTS * 4);
    this.cancelFlags = new Int32Array(shared);
    this.loadHead();
    if (!this.readonly) {
      for (let i = CANCEL_SLOTS - 1; i >= 0; i--) this.freeSlots.push(i);
      this.workerConfig = {
        path: opts.path,
        replica: opts.replica,
        busyTimeoutMs: opts.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS,
        recoveryProbeMs: opts.recoveryProbeMs ?? DEFAULT_RECOVERY_PROBE_MS,
        cancelFlags: shared,
      };
      const seconds = opts.checkpointEvery?.seconds ?? DEFAULT_CHECKPOINT_SECONDS;
      this.cpTimer = setInterval(() => this.triggerCheckpoint(), seconds * 1000);
      this.cpTimer.unref();
    }
  }

  /** Starts the writer thread and waits until it holds the write connection and this writer's head. */
  async startWriter(): Promise<void> {
    const cfg = this.workerConfig;
    if (!cfg) return;
    const worker = createWriterThread(import.meta.url, './writer', cfg);
    this.worker = worker;
    this.workerFailure = undefined;
    const ready = await whenWriterReady<WriterReply>(worker, (m) => m.t === 'ready');
    if (ready.t === 'ready') this.chainHead = ready.head;
    worker.on('message', (m: WriterReply) => this.onWriterMessage(m));
    worker.on('error', (err) => this.onWriterGone(worker, `the writer thread failed: ${err.message}`));
    worker.on('exit', (code) => this.onWriterGone(worker, `the writer thread exited (code ${code})`));
  }

  /** The writer thread died (a crash, not close()): everything in flight fails closed; the next append starts a new one. */
  private onWriterGone(worker: Worker, why: string): void {
    if (this.worker !== worker) return;
    this.worker = undefined;
    if (this.closedByWorker) {
      this.closedByWorker();
      return;
    }
    this.workerFailure = why;
    this.markUnwritable(new Error(why));
    const e = storeError('ERR_STORE_UNAVAILABLE', `the decision store ${this.path} could not commit: ${why}`);
    for (const f of this.inFlight.values()) for (const p of f.items) this.settle(p, undefined, e);
    this.inFlight.clear();
    for (const c of this.calls.values()) c.reject(e);
    this.calls.clear();
  }

  private onWriterMessage(m: WriterReply): void {
    switch (m.t) {
      case 'committed': {
        this.chainHead = m.head;
        this.counters.commits++;
        this.isWritable = true;
        this.fullCode = undefined;
        for (const { batch, results } of m.batches) {
          const f = this.inFlight.get(batch);
          if (!f) continue;
          this.inFlight.delete(batch);
          f.items.forEach((p, i) => {
            const r = results[i];
            if (!r) this.settle(p, undefined, storeError('ERR_STORE_UNAVAILABLE', 'the writer thread returned no result'));
            else if (r.ok) {
              this.counters.records++;
              // The appended record as append() returns it, from the caller's object (chain.ts toChainedRecord:
              // no parse of the body back; nested values are the caller's own, unchanged until now).
              const out = toChainedRecord(p.record, { seq: r.seq, prevHash: r.prevHash, hash: r.hash, body: '' });
              out.nsSeq = r.nsSeq;
              out.nsPrevHash = r.nsPrevHash;
              this.settle(p, out);
            } else this.settle(p, undefined, storeError(r.code, r.message));
          });
        }
        if (this.chainHead.seq - this.lastCheckpointSize >= this.cpRecords) this.triggerCheckpoint();
        this.notifyCommit(m.ms, m.records);
        break;
      }
      case 'failed': {
        this.counters.failedCommits++;
        this.isWritable = false;
        if (m.fullCode) this.fullCode = m.fullCode;
        const e = storeError('ERR_STORE_UNAVAILABLE', m.fullCode
          ? `the decision store ${this.path} is full (${m.fullCode}): could not commit ${m.records} record(s): ${m.message}`
          : `the decision store ${this.path} could not commit ${m.records} record(s): ${m.message}`);
        for (const batch of m.batches) {
          const f = this.inFlight.get(batch);
          if (!f) continue;
          this.inFlight.delete(batch);
          for (const p of f.items) this.settle(p, undefined, e);
        }
        break;
      }
      case 'writable':
        this.isWritable = m.writable;
        this.fullCode = m.writable ? undefined : (m.fullCode ?? this.fullCode);
        break;
      case 'log': {
        const obj = { ...m.fields, err: m.err, path: this.path };
        this.log[m.level](obj, m.msg);
        break;
      }
      case 'result': {
        const c = this.calls.get(m.call);
        if (!c) break;
        this.calls.delete(m.call);
        if (m.error) c.reject(storeError(m.error.code ?? 'ERR_STORE_UNAVAILABLE', m.error.message));
        else c.resolve(m.value);
        break;
      }
      case 'closed':
        this.closedByWorker?.();
        break;
      case 'ready':
        break;
    }
  }

  private settle(p: Pending, value: ChainedRecord | undefined, err?: Error): void {
    if (p.slot >= 0) {
      this.cancelFlags[p.slot] = SLOT_PENDING;
      this.freeSlots.push(p.slot);
      p.slot = -1;
    }
    if (p.cancelled) return;
    if (err) p.reject(err);
    else p.resolve(value as ChainedRecord);
  }

  /** One rare write on the writer thread's connection, after every append posted before it. */
  private callWriter<T>(op: WriterOp): Promise<T> {
    const worker = this.worker;
    if (!worker) return Promise.reject(storeError('ERR_STORE_UNAVAILABLE', `the decision store ${this.path} has no writer: ${this.workerFailure ?? 'closed'}`));
    const call = this.nextCall++;
    return new Promise<T>((resolve, reject) => {
      this.calls.set(call, { resolve: resolve as (v: unknown) => void, reject });
      worker.postMessage({ t: 'call', call, op } satisfies WriterRequest);
    });
  }

  private stmt(sql: string): Database.Statement {
    let s = this.statements.get(sql);
    if (!s) this.statements.set(sql, (s = this.db.prepare(sql)));
    return s;
  }

  private nowText(): string {
    return toCanonicalTime(this.clock().toISOString()) ?? this.clock().toISOString();
  }

  private loadHead(): void {
    const last = this.stmt('SELECT seq, hash FROM decisions WHERE writer = ? ORDER BY seq DESC LIMIT 1').get(this.replica) as { seq: number; hash: string } | undefined;
    const anchor = this.stmt('SELECT seq, hash FROM anchors WHERE writer = ? ORDER BY seq DESC LIMIT 1').get(this.replica) as { seq: number; hash: string } | undefined;
    const top = last && (!anchor || last.seq >= anchor.seq) ? last : anchor;
    this.chainHead = top ? { seq: top.seq, hash: top.hash } : { seq: 0, hash: GENESIS_HASH };
    const cp = this.stmt('SELECT MAX(size) AS size FROM checkpoints WHERE writer = ?').get(this.replica) as { size: number | null };
    this.lastCheckpointSize = cp.size ?? 0;
  }

  stats(): { commits: number; records: number; failedCommits: number } {
    return { ...this.counters };
  }

  head(): { seq: number; hash: string } {
    return { ...this.chainHead };
  }

  writable(): boolean {
    return this.isWritable && !this.closed;
  }

  unwritableReason(): string | undefined {
    if (this.writable()) return undefined;
    if (this.closed) return `decision store ${this.path} closed`;
    return this.fullCode ? `decision store ${this.path} full (${this.fullCode})` : `decision store ${this.path} not writable`;
  }

  capPages(pages: number): Promise<number> {
    return this.callWriter<number>({ op: 'maxPageCount', pages });
  }

  append(record: DecisionRecord, opts?: AppendOptions): Promise<ChainedRecord> {
    if (this.closed) return Promise.reject(storeError('ERR_STORE_UNAVAILABLE', `the decision store ${this.path} is closed`));
    if (this.readonly) return Promise.reject(storeError('ERR_STORE_READONLY', `the decision store ${this.path} was opened read-only`));
    const shape = checkRecordShape(record);
    if (typeof shape === 'string') return invalid(shape);
    if (record.replica !== this.replica) return invalid(`replica ${JSON.stringify(record.replica)} is not this store's writer "${this.replica}"`);
    const signal = opts?.signal;
    if (signal?.aborted) return Promise.reject(cancelledError(record.id));
    const { time } = shape;
    return new Promise<ChainedRecord>((resolve, reject) => {
      const p: Pending = { record, time, saKeys: saKeysOf(record.serviceAccounts), slot: -1, resolve, reject };
      if (opts?.patchJson !== undefined) p.patchJson = opts.patchJson;
      if (signal) {
        p.slot = this.freeSlots.pop() ?? -1;
        if (p.slot >= 0) {
          this.cancelFlags[p.slot] = SLOT_PENDING;
          signal.addEventListener('abort', () => this.cancel(p), { once: true });
        }
      }
      this.queue.push(p);
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        // setImmediate, not a microtask: every request handled in this turn of the event loop
        // (including ones whose I/O callbacks are still queued) joins the same batch.
        setImmediate(() => this.flush());
      }
    });
  }

  /**
   * The caller's deadline answered first. Before the writer thread reached the record it is never
   * inserted and its append rejects now (ERR_STORE_DEADLINE); once its transaction has it, the
   * append settles with that transaction's outcome.
   */
  private cancel(p: Pending): void {
    const slot = p.slot;
    if (slot < 0 || p.cancelled) return;
    if (Atomics.compareExchange(this.cancelFlags, slot, SLOT_PENDING, SLOT_CANCELLED) !== SLOT_PENDING) return;
    p.cancelled = true;
    const queued = this.queue.indexOf(p);
    if (queued >= 0) {
      // Not handed to the writer yet: drop it here and free its slot.
      this.queue.splice(queued, 1);
      this.cancelFlags[slot] = SLOT_PENDING;
      this.freeSlots.push(slot);
      p.slot = -1;
    }
    // Otherwise the slot stays CANCELLED until the writer's answer for it arrives (settle frees it).
    p.reject(cancelledError(p.record.id));
  }

  private flush(): void {
    this.flushScheduled = false;
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0) return;
    if (!this.worker && !this.closed && this.workerConfig && !this.restarting) {
      // The writer thread died: start a new one (it reloads the head from the file).
      this.restarting = this.startWriter()
        .catch((err: Error) => {
          this.workerFailure = `the writer thread could not be restarted: ${err.message}`;
        })
        .finally(() => {
          this.restarting = undefined;
        });
    }
    if (this.restarting) {
      void this.restarting.then(() => {
        this.queue = batch.concat(this.queue);
        this.flush();
      });
      return;
    }
    const worker = this.worker;
    if (!worker) {
      this.counters.failedCommits++;
      const e = storeError('ERR_STORE_UNAVAILABLE', `the decision store ${this.path} could not commit ${batch.length} record(s): ${this.workerFailure ?? 'no writer thread'}`);
      for (const p of batch) this.settle(p, undefined, e);
      return;
    }
    const id = this.nextBatch++;
    const items = toItems(batch);
    try {
      worker.postMessage({ t: 'append', batch: id, items } satisfies WriterRequest);
      this.inFlight.set(id, { items: batch });
    } catch {
      // A record the structured clone cannot copy (a function, a symbol...): post one by one so
      // only those are refused and their batch mates still commit.
      for (const [i, p] of batch.entries()) {
        const one = this.nextBatch++;
        try {
          worker.postMessage({ t: 'append', batch: one, items: [items[i] as AppendItem] } satisfies WriterRequest);
          this.inFlight.set(one, { items: [p] });
        } catch (err) {
          this.settle(p, undefined, unchainableError(p.record.id, err));
        }
      }
    }
  }

  private restarting: Promise<void> | undefined;

  private markUnwritable(err: unknown): void {
    if (this.isWritable) this.log.error({ err, path: this.path }, 'decision store write failed; the store is unwritable until a write succeeds');
    this.isWritable = false;
  }

  private triggerCheckpoint(): void {
    // Unwritable (e.g. full): the head cannot move, the write would fail and log every interval;
    // the first timer after the recovery signs what is there.
    if (this.readonly || this.cpInFlight || !this.worker || !this.isWritable) return;
    this.cpInFlight = this.writeCheckpoint().finally(() => {
      this.cpInFlight = undefined;
    });
  }

  private async writeCheckpoint(): Promise<Checkpoint | undefined> {
    if (!this.signer || !this.worker) return undefined;
    try {
      // Claims from the writer (its head, not this thread's view of it); the time is taken after
      // them, so every record in the prefix is timed before the checkpoint (RECORD-V2 refinement 2).
      const claims = await this.callWriter<CheckpointClaimsNow>({ op: 'checkpointClaims' });
      const { size, headHash, nsRoot, nsSize } = claims;
      if (size === 0 || size <= this.lastCheckpointSize) return undefined;
      const time = this.nowText();
      const jws = await this.signer.sign({ writer: this.replica, size, headHash, time, nsRoot, nsSize }, CHECKPOINT_TYP);
      if (!this.worker) return undefined;
      await this.callWriter({ op: 'insertCheckpoint', writer: this.replica, size, headHash, time, jws, nsRoot, nsSize });
      this.lastCheckpointSize = Math.max(this.lastCheckpointSize, size);
      return { writer: this.replica, size, headHash, time, jws, nsRoot, nsSize } as Checkpoint;
    } catch (err) {
      this.log.error({ err, path: this.path }, 'could not write a decision checkpoint');
      return undefined;
    }
  }

  writerSettings(): Promise<{ synchronous: number; journalMode: string }> {
    return this.callWriter({ op: 'settings' });
  }

  async checkpointNow(): Promise<Checkpoint | undefined> {
    while (this.cpInFlight) await this.cpInFlight;
    if (this.readonly || !this.worker) return undefined;
    const p = this.writeCheckpoint();
    this.cpInFlight = p.finally(() => {
      this.cpInFlight = undefined;
    });
    return p;
  }

  async get(id: string): Promise<ChainedRecord | undefined> {
    const row = this.stmt('SELECT record, body, hash FROM decisions WHERE id = ?').get(id) as { record: string; body: Uint8Array | null; hash: string } | undefined;
    return row ? toChained(toBodyText(row.record, row.body), row.hash) : undefined;
  }

  /** SQL for one page in (time, id) order after `after`; every filter has an index in that order. */
  private pageSql(filter: ScanFilter, after: Cursor | undefined, limit: number): { sql: string; params: unknown[] } {
    const where: string[] = [];
    const params: unknown[] = [];
    let from = 'decisions d';
    let t = 'd.time';
    let i = 'd.id';
    if (filter.serviceAccount !== undefined) {
      from = 'decision_sas s JOIN decisions d ON d.id = s.decision_id';
      t = 's.time';
      i = 's.decision_id';
      where.push('s.key = ?');
      params.push(filter.serviceAccount);
    }
    const driving = toDrivingFilter(filter);
    for (const [key, col, type] of EQUALITY_FILTER_COLUMNS) {
      if (filter[key] === undefined) continue;
      where.push(`${toSqliteColumn(col, key, driving)} = ${toSqlParam('sqlite', type, '?')}`);
      params.push(filter[key]);
    }
    if (filter.since !== undefined) {
      where.push(`${t} >= ?`);
      params.push(toCanonicalTime(filter.since) ?? filter.since);
    }
    if (filter.until !== undefined) {
      where.push(`${t} < ?`);
      params.push(toCanonicalTime(filter.until) ?? filter.until);
    }
    if (after) {
      where.push(`(${t}, ${i}) > (?, ?)`);
      params.push(after.time, after.id);
    }
    const sql = `SELECT ${t} AS time, ${i} AS id, d.record AS record, d.body AS body, d.hash AS hash FROM ${from}${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY ${t}, ${i} LIMIT ?`;
    params.push(limit);
    return { sql, params };
  }

  private page(filter: ScanFilter, after: Cursor | undefined, limit: number): Array<{ time: string; id: string; record: string; hash: string }> {
    const { sql, params } = this.pageSql(filter, after, limit);
    const rows = this.stmt(sql).all(...params) as Array<{ time: string; id: string; record: string; body: Uint8Array | null; hash: string }>;
    for (const r of rows) if (r.body !== null) r.record = toBodyText(r.record, r.body);
    return rows;
  }

  queryPlan(filter: ScanFilter, after?: Cursor): string[] {
    const { sql, params } = this.pageSql(filter, after, 100);
    return (this.db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as Array<{ detail: string }>).map((r) => r.detail);
  }

  async query(filter: DecisionFilter): Promise<DecisionPage> {
    const { limit, after } = toPageRequest(filter);
    return toPage(this.page(filter, after, limit + 1), limit);
  }

  async *stream(filter: ScanFilter): AsyncIterable<ChainedRecord> {
    let after: Cursor | undefined;
    for (;;) {
      const rows = this.page(filter, after, READ_CHUNK);
      for (const r of rows) yield toChained(r.record, r.hash);
      const last = rows[rows.length - 1];
      if (!last || rows.length < READ_CHUNK) return;
      after = { time: last.time, id: last.id };
    }
  }

  async *streamChain(): AsyncIterable<ChainEntry> {
    const sql = `SELECT ${CHAIN_COLUMNS}
      FROM decisions d WHERE (d.writer, d.seq) > (?, ?) ORDER BY d.writer, d.seq LIMIT ?`;
    // Raw arrays: better-sqlite3 builds row objects far more slowly (several µs per row here).
    const stmt = this.stmt(sql).raw(true);
    let writer = '';
    let seq = 0;
    for (;;) {
      const raw = stmt.all(writer, seq, CHAIN_READ_CHUNK) as RawDecisionRow[];
      const rows = raw.map(toDecisionRow);
      for (const row of rows) yield toChainEntry(row, columnProblem);
      const last = rows[rows.length - 1];
      if (!last || rows.length < CHAIN_READ_CHUNK) return;
      writer = last.writer;
      seq = last.seq;
    }
  }

  verifyChains(evidence: CheckedEvidence, opts: ChainVerifyOptions, sequential: () => Promise<VerifyResult>): Promise<VerifyResult> {
    return verifySqliteChains(this.path, evidence, sequential, opts);
  }

  async loadStats(filter: StatsFilter, bucket: StatsBucket): Promise<DecisionStats> {
    const q = toStatsSql('sqlite', STATS_TABLES, filter, bucket);
    const all = <T>(x: SqlQuery) => this.stmt(x.sql).all(...x.params) as T[];
    // One read transaction: the four aggregates see the same snapshot.
    return this.db.transaction(() =>
      toDecisionStats({ buckets: all(q.buckets), namespaces: all(q.namespaces), unmapped: all(q.unmapped), writers: all(q.writers) } as StatsRows, bucket),
    )();
  }

  async checkpoints(): Promise<Checkpoint[]> {
    const rows = this.stmt('SELECT writer, size, head_hash, time, jws, ns_root, ns_size FROM checkpoints ORDER BY writer, size').all() as CheckpointRow[];
    return rows.map(toCheckpoint);
  }

  /** One page in (writer, size) order: the primary key's order, so a page costs its own rows. */
  async checkpointPage(req: CheckpointPageRequest): Promise<CheckpointPage> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (req.writer !== undefined) {
      where.push('c.writer = ?');
      params.push(req.writer);
    }
    if (req.after) {
      where.push('(c.writer, c.size) > (?, ?)');
      params.push(req.after.writer, req.after.size);
    }
    if (req.minSize !== undefined) {
      where.push('c.size >= ?');
      params.push(req.minSize);
    }
    // The newest of each writer: one primary-key seek per writer.
    if (req.latest) where.push('c.size = (SELECT max(l.size) FROM checkpoints l WHERE l.writer = c.writer)');
    const sql = `SELECT c.writer, c.size, c.head_hash, c.time, c.jws, c.ns_root, c.ns_size FROM checkpoints c${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY c.writer, c.size LIMIT ?`;
    params.push(req.limit + 1);
    const rows = this.stmt(sql).all(...params) as CheckpointRow[];
    return toPageOf(rows.map(toCheckpoint), req.limit);
  }

  /** The namespace heads checkpoint (writer, size) committed to (empty for a v1 checkpoint). */
  async checkpointHeads(writer: string, size: number): Promise<NamespaceHead[]> {
    const rows = this.stmt('SELECT namespace, ns_seq, ns_head_hash FROM checkpoint_ns_heads WHERE writer = ? AND size = ? ORDER BY namespace').all(writer, size) as Array<{ namespace: string; ns_seq: number; ns_head_hash: string }>;
    return rows.map((r) => ({ namespace: r.namespace, nsSeq: r.ns_seq, nsHeadHash: r.ns_head_hash }));
  }

  /** The v2 records of `namespace` on `writer` after nsSeq `afterNsSeq`, in nsSeq order (the (writer, namespace, ns_seq) index). */
  async *namespaceRecords(writer: string, namespace: string, afterNsSeq: number): AsyncIterable<ChainedRecord> {
    let after = afterNsSeq;
    const stmt = this.stmt('SELECT ns_seq, record, body, hash FROM decisions WHERE writer = ? AND namespace = ? AND ns_seq > ? ORDER BY ns_seq LIMIT ?');
    for (;;) {
      const rows = stmt.all(writer, namespace, after, READ_CHUNK) as Array<{ ns_seq: number; record: string; body: Uint8Array | null; hash: string }>;
      for (const r of rows) yield toChained(toBodyText(r.record, r.body), r.hash);
      const last = rows[rows.length - 1];
      if (!last || rows.length < READ_CHUNK) return;
      after = last.ns_seq;
    }
  }

  /** The namespace's current head nsSeq per writer (ns_heads, kept by the writer with every record): who holds its v2 records, and how many. */
  async namespaceHeads(namespace: string): Promise<Array<{ writer: string; nsSeq: number }>> {
    const rows = this.stmt('SELECT writer, ns_seq FROM ns_heads WHERE namespace = ? ORDER BY writer').all(namespace) as Array<{ writer: string; ns_seq: number }>;
    return rows.map((r) => ({ writer: r.writer, nsSeq: r.ns_seq }));
  }

  async anchors(): Promise<Anchor[]> {
    return this.stmt('SELECT writer, seq, hash, time, jws FROM anchors ORDER BY writer, seq').all() as Anchor[];
  }

  async count(): Promise<number> {
    return (this.stmt('SELECT count(*) AS n FROM decisions').get() as { n: number }).n;
  }

  prune(olderThan: string): Promise<PruneResult> {
    const run = this.pruning.then(() => this.pruneNow(olderThan));
    this.pruning = run.catch(() => undefined);
    return run;
  }

  private async pruneNow(olderThan: string): Promise<PruneResult> {
    const cutoff = toCanonicalTime(olderThan);
    if (!cutoff) throw storeError('ERR_STORE_BAD_FILTER', `prune: "${olderThan}" is not an RFC 3339 date-time`);
    if (this.closed) throw storeError('ERR_STORE_UNAVAILABLE', `the decision store ${this.path} is closed`);
    if (this.readonly || !this.signer) throw storeError('ERR_STORE_READONLY', `the decision store ${this.path} was opened read-only`);
    const signer = this.signer;
    const writers = (this.stmt('SELECT DISTINCT writer FROM decisions ORDER BY writer').all() as Array<{ writer: string }>).map((r) => r.writer);
    const anchors: Anchor[] = [];
    let deleted = 0;
    for (const writer of writers) {
      // Prune only a prefix of the chain, and never a record at or after the cutoff: with
      // caller-supplied times, seq order and time order can differ slightly.
      const keep = this.stmt('SELECT seq FROM decisions WHERE writer = ? AND time >= ? ORDER BY seq LIMIT 1').get(writer, cutoff) as { seq: number } | undefined;
      const cut = keep
        ? keep.seq - 1
        : (this.stmt('SELECT MAX(seq) AS seq FROM decisions WHERE writer = ?').get(writer) as { seq: number }).seq;
      const at = this.stmt('SELECT hash FROM decisions WHERE writer = ? AND seq = ?').get(writer, cut) as { hash: string } | undefined;
      if (!at) continue; // nothing older than the cutoff (or already pruned)
      const time = this.nowText();
      const jws = await signer.sign({ writer, seq: cut, hash: at.hash, time }, ANCHOR_TYP);
      if (this.closed) throw storeError('ERR_STORE_UNAVAILABLE', `the decision store ${this.path} is closed`);
      // Anchor first, then delete oldest-first in chunks: at every moment the remaining records
      // still verify (chain.ts accepts a chain that starts below an anchor and reaches it).
      await this.callWriter({ op: 'insertAnchor', writer, seq: cut, hash: at.hash, time, jws });
      const anchor: Anchor = { writer, seq: cut, hash: at.hash, time, jws };
      anchors.push(anchor);
      let lo = (this.stmt('SELECT MIN(seq) AS seq FROM decisions WHERE writer = ?').get(writer) as { seq: number }).seq;
      while (lo <= cut) {
        const hi = Math.min(cut, lo + PRUNE_CHUNK - 1);
        deleted += await this.callWriter<number>({ op: 'deleteRange', writer, lo, hi });
        lo = hi + 1;
        if (this.closed) throw storeError('ERR_STORE_UNAVAILABLE', `the decision store ${this.path} was closed during prune`);
      }
      await this.callWriter({ op: 'deleteCheckpointsBelow', writer, size: cut });
      this.log.info({ writer, seq: cut, path: this.path }, 'pruned decision records and wrote a signed anchor');
    }
    return { deleted, anchors };
  }

  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closing = (async () => {
      if (this.cpTimer) clearInterval(this.cpTimer);
      // Hand over what was accepted before close, then refuse new appends.
      if (this.queue.length) this.flush();
      this.closed = true;
      while (this.restarting) await this.restarting;
      await this.pruning;
      while (this.cpInFlight) await this.cpInFlight;
      const worker = this.worker;
      if (worker) {
        // The final checkpoint is posted after every batch, so it covers them all.
        await this.drained();
        await this.writeCheckpoint();
        await new Promise<void>((resolve) => {
          this.closedByWorker = resolve;
          worker.postMessage({ t: 'close' } satisfies WriterRequest);
        });
        this.worker = undefined;
        await worker.terminate();
      }
      this.db.close();
    })();
    return this.closing;
  }

  /** Resolves once every batch handed to the writer thread has been answered. */
  private async drained(): Promise<void> {
    while (this.inFlight.size > 0 && this.worker) await new Promise((r) => setTimeout(r, 1));
  }
}

/**
 * Compares the indexed columns with the record they were derived from (filters read the columns,
 * so an edited column could hide a record from queries). No per-column arrays on the happy path:
 * this runs once per record during verification.
 */

/**
 * Opens (creating and migrating when needed) the SQLite decision store at `opts.path`.
 * Errors (by `code`): ERR_STORE_OPEN naming the path (missing or unwritable directory, missing file
 * in read-only mode, not a database, schema newer than this build), ERR_STORE_CONFIG (bad options).
 */
export async function createSqliteStore(opts: SqliteStoreOptions): Promise<SqliteStore> {
  const readonly = opts.readonly ?? false;
  if (typeof opts.replica !== 'string' || opts.replica === '') throw storeError('ERR_STORE_CONFIG', 'the decision store needs a non-empty replica (writer id)');
  if (!readonly && !opts.signer) throw storeError('ERR_STORE_CONFIG', 'a writable decision store needs a signer for its checkpoints');
  const every = opts.checkpointEvery ?? {};
  for (const [k, v] of Object.entries(every)) {
    if (v !== undefined && !(Number.isFinite(v) && v > 0)) throw storeError('ERR_STORE_CONFIG', `checkpointEvery.${k} must be a positive number`);
  }
  const path = opts.path;
  const openError = (why: string, cause?: unknown) => storeError('ERR_STORE_OPEN', `cannot open the decision store ${path}: ${why}`, cause);
  if (typeof path !== 'string' || path === '') throw openError('no path given');
  const dir = dirname(resolve(path));
  let dirStat;
  try {
    dirStat = statSync(dir);
  } catch (err) {
    throw openError(`directory ${dir} does not exist`, err);
  }
  if (!dirStat.isDirectory()) throw openError(`${dir} is not a directory`);
  if (!readonly) {
    try {
      accessSync(dir, constants.W_OK);
    } catch (err) {
      throw openError(`directory ${dir} is not writable`, err);
    }
  }
  let db: Database.Database;
  try {
    db = new Database(path, { readonly, fileMustExist: readonly, timeout: opts.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS });
  } catch (err) {
    throw openError(readonly && (err as { code?: string }).code === 'SQLITE_CANTOPEN' ? 'the file does not exist' : (err as Error).message, err);
  }
  try {
    // Index pages of a large store stay hot; the default (2 MiB) thrashes at millions of rows.
    db.pragma(`cache_size = -${CACHE_KIB}`);
    if (!readonly) {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
    }
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > SCHEMA_VERSION) throw new Error(`its schema version ${version} is newer than this build supports (${SCHEMA_VERSION})`);
    if (version < SCHEMA_VERSION) {
      if (readonly) throw new Error(`its schema version ${version} is older than ${SCHEMA_VERSION}; open it read-write once to upgrade`);
      for (let v = version; v < SCHEMA_VERSION; v++) {
        const step = MIGRATIONS[v] ?? '';
        db.transaction(() => {
          if (typeof step === 'string') db.exec(step);
          else step(db);
          db.pragma(`user_version = ${v + 1}`);
        })();
      }
    }
    const store = new SqliteDecisionStore(db, opts);
    await store.startWriter();
    return store;
  } catch (err) {
    db.close();
    throw openError((err as Error).message, err);
  }
}
