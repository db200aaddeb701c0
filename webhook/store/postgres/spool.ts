/**
 * The local spool in front of the shared PostgreSQL store: a SQLite file (better-sqlite3, WAL,
 * synchronous=FULL) where every decision is committed durably first, already placed in its
 * writer's hash chain, so it is final before the admission is answered. A forwarder
 * (postgres-open.ts) then drains it in order to PostgreSQL and removes only what PostgreSQL
 * committed. While PostgreSQL is down admissions go on, limited only by `maxBytes`.
 *
 * Appends use group commit like the SQLite store: every append waiting when the event loop turns
 * is written in one transaction, and all of them resolve after that single commit.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import Database from 'better-sqlite3';
import type { ChainedRecord, DecisionRecord } from '../../core/record.js';
import { GENESIS_HASH, toChainedRecord } from '../evidence/chain.js';
import type { Worker } from 'node:worker_threads';
import { chainNamespaceRecord, type NamespaceChainHead } from '../evidence/link.js';
import { createWriterThread, toCommitNotifier, whenWriterReady } from '../thread.js';
import type { SpoolItem, SpoolWriterConfig, SpoolWriterReply, SpoolWriterRequest } from './spool-writer.js';
import { storeError, unchainableError, type StoreError } from '../rows.js';
import { checkRecordShape } from './store.js';
import type { StoreLogger } from '../sqlite/store.js';
import type { AppendOptions, CommitObserver, QuarantinedRecord } from '../port.js';
import { toFullCode } from '../full.js';
import { createReserve, type Reserve } from '../reserve.js';

/** Probe interval while the spool is unwritable (full or failing). */
export const DEFAULT_SPOOL_PROBE_MS = 1000;
export const DEFAULT_SPOOL_BUSY_TIMEOUT_MS = 2000;
/** A full spool takes appends again once it is below this share of maxBytes (no flapping). */
const REOPEN_RATIO = 0.9;
/** Room a spool whose disk was full must show (a committed write of this size) before it takes appends again. */
const PROBE_HEADROOM_BYTES = 256 * 1024;
/** Rows re-chained per statement by rebase() (memory stays flat for a large spool). */
const REBASE_CHUNK = 1000;
const SCHEMA_VERSION = 3;
const SCHEMA = `
  CREATE TABLE IF NOT EXISTS pending (
    pos INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    writer TEXT NOT NULL,
    seq INTEGER NOT NULL,
    body TEXT NOT NULL,
    hash TEXT NOT NULL
  );
  CREATE INDEX IF NOT EXISTS pending_writer ON pending (writer, pos);
  -- Each writer's chain head, kept after its records were forwarded and removed, so a restart
  -- continues the chain.
  CREATE TABLE IF NOT EXISTS heads (writer TEXT PRIMARY KEY NOT NULL, seq INTEGER NOT NULL, hash TEXT NOT NULL);
  -- Version 2: spooled records the shared store refused (see Spool.quarantine), kept with the reason.
  -- shared = 1 once the shared store holds a copy in its own quarantine table.
  CREATE TABLE IF NOT EXISTS quarantine (
    pos INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    writer TEXT NOT NULL,
    seq INTEGER NOT NULL,
    body TEXT NOT NULL,
    hash TEXT NOT NULL,
    reason TEXT NOT NULL,
    time TEXT NOT NULL,
    shared INTEGER NOT NULL DEFAULT 0
  );
  -- Version 3 (record format v2): each writer's namespace chain heads, kept like its chain head.
  -- Records spooled by an older build stay v1 and are forwarded as they are.
  CREATE TABLE IF NOT EXISTS ns_heads (
    writer TEXT NOT NULL,
    namespace TEXT NOT NULL,
    ns_seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (writer, namespace)
  ) WITHOUT ROWID;
`;

export interface SpoolOptions {
  /** SQLite file; its directory must exist and be writable. */
  path: string;
  /** Live data limit in bytes; an append that would pass it is refused (ERR_STORE_UNAVAILABLE). */
  maxBytes: number;
  /** This process's writer id; appended records must carry it as `replica`. */
  replica: string;
  logger?: StoreLogger;
  probeMs?: number;
  /** How long a commit waits for a lock held by another connection before failing. */
  busyTimeoutMs?: number;
  /** Told about every commit of the spool's writer thread (its duration and records): metrics. */
  onCommit?: CommitObserver;
}

export interface SpooledEntry {
  /** Position in the spool (forwarding order). */
  pos: number;
  record: ChainedRecord;
  /** The canonical body as spooled (what `record` was parsed from and its hash covers). */
  body: string;
}

export interface Spool {
  readonly path: string;
  readonly maxBytes: number;
  /**
   * Chains `record` after this writer's head (record format v2: and after its namespace's head on
   * this writer) and commits it durably; resolves after the commit.
   * Errors (by `code`): ERR_STORE_INVALID_RECORD, ERR_STORE_DUPLICATE_ID (id already spooled),
   * ERR_STORE_UNAVAILABLE (spool full — the message names the spool and its limit — or a disk error).
   */
  append(record: DecisionRecord, opts?: SpoolAppendOptions): Promise<ChainedRecord>;
  /** This writer's chain head, spooled records included. */
  head(writer?: string): { seq: number; hash: string };
  /** Records spooled and not yet removed (forwarded). */
  backlog(): number;
  /** Bytes of live data (pages in use), compared with maxBytes. */
  usedBytes(): number;
  /** False while full or after a failed commit, until a probe succeeds. */
  writable(): boolean;
  /** While not writable: why (full at maxBytes, its disk full, a failed commit), for /readyz. */
  unwritableReason(): string | undefined;
  /** The oldest `limit` spooled records, in forwarding order. */
  peek(limit: number): SpooledEntry[];
  /** Removes the spooled records at positions up to and including `pos` (they were forwarded). */
  removeThrough(pos: number): number;
  /** Removes the spooled records with these positions. */
  remove(positions: number[]): number;
  /**
   * Moves the spooled records at these positions out of the forwarding queue into the quarantine
   * (one transaction, fsynced): nothing admitted is ever deleted. Returns how many moved.
   */
  quarantine(entries: Array<{ pos: number; reason: string }>, time: string): number;
  /** Records in quarantine (this spool). */
  quarantinedCount(): number;
  /** Every quarantined record, oldest first; `unsharedOnly`: those the shared store has no copy of yet. */
  quarantined(unsharedOnly?: boolean): Array<QuarantinedRecord & { pos: number }>;
  /** The shared store now holds copies of the quarantined records at these positions. */
  markShared(positions: number[]): void;
  get(id: string): ChainedRecord | undefined;
  /**
   * The shared store's head for `writer` is `base`. With nothing of that writer spooled, a head
   * behind `base` moves up to it (a spool that was lost or is older than the database). Returns
   * true when it moved.
   */
  advanceHead(writer: string, base: { seq: number; hash: string }, nsBase?: Map<string, NamespaceChainHead>): boolean;
  /**
   * Re-chains every spooled record of `writer` after `base` and its namespace chains after
   * `nsBase` (same order, record format v2), when the shared store holds other records at their
   * positions (the spool started from a stale head). Records not yet forwarded were seen by nobody
   * but this process, so their chain position can still move. Returns how many were re-chained.
   */
  rebase(writer: string, base: { seq: number; hash: string }, nsBase?: Map<string, NamespaceChainHead>): number;
  /** Called after every commit that added records (wakes the forwarder). */
  onAppend(listener: () => void): void;
  /** Resolves once the writer thread holds its connection; rejects (ERR_STORE_OPEN) when it cannot start. */
  ready(): Promise<void>;
  /** Commits queued appends, then refuses new ones and closes the file (and the writer thread). */
  close(): Promise<void>;
}

/** What the store's append passes on (AppendOptions.patchJson, see port.ts). */
export type SpoolAppendOptions = Pick<AppendOptions, 'patchJson'>;

interface Pending {
  record: DecisionRecord;
  patchJson?: string;
  resolve(r: ChainedRecord): void;
  reject(e: Error): void;
}

const noopLogger: StoreLogger = { info() {}, warn() {}, error() {} };

function checkRecord(record: DecisionRecord, replica: string): string | undefined {
  const shape = checkRecordShape(record);
  if (typeof shape === 'string') return shape;
  if (record.replica !== replica) return `replica ${JSON.stringify(record.replica)} is not this store's writer "${replica}"`;
  return undefined;
}

function toItem(p: Pending): SpoolItem {
  const item: SpoolItem = { record: p.record };
  if (p.patchJson !== undefined) {
    // The patch travels as the text the caller already has: no structured clone of it here and no
    // second canonical walk in the writer.
    const { patch: _patch, ...rest } = p.record;
    item.record = rest;
    item.patchJson = p.patchJson;
  }
  return item;
}

/**
 * The spool on the main thread: appends are handed to the writer thread (spool-writer.ts), which
 * commits them (group commit, fsync) off the event loop; this connection serves the forwarder
 * (peek, removal, quarantine, head moves) and reads. Both connections see one WAL file.
 */
class SqliteSpool implements Spool {
  readonly path: string;
  readonly maxBytes: number;
  private readonly replica: string;
  private readonly db: Database.Database;
  private readonly notifyCommit: (ms: number, records: number) => void;
  private readonly log: StoreLogger;
  private readonly probeMs: number;
  private readonly listeners: Array<() => void> = [];
  private readonly pageSize: number;
  private readonly writerConfig: SpoolWriterConfig;
  private worker: Worker | undefined;
  private starting: Promise<Worker> | undefined;
  private workerFailure: string | undefined;
  private nextBatch = 1;
  private readonly inFlight = new Map<number, Pending[]>();
  private closedByWorker: (() => void) | undefined;
  private queue: Pending[] = [];
  private flushScheduled = false;
  private count: number;
  private full = false;
  private failed = false;
  /** While failed: since when, the "no space" code if that is why (SQLITE_FULL, ENOSPC), records refused meanwhile. */
  private down = { since: 0, fullCode: undefined as string | undefined, refused: 0 };
  private closed = false;
  private closing: Promise<void> | undefined;
  /** `<path>-reserve`: room given back when the disk is full and forwarded records must be removed. */
  private readonly reserve: Reserve;
  private probeTimer: NodeJS.Timeout | undefined;
  private quarantineCount: number;
  private readonly st: Record<'head' | 'setHead' | 'setNsHead' | 'clearNsHeads' | 'peek' | 'removeThrough' | 'removeOne' | 'get' | 'hasWriter' | 'ofWriter' | 'update' | 'pages' | 'free' | 'quarantineOne' | 'quarantined' | 'unshared' | 'shareOne', Database.Statement>;

  constructor(db: Database.Database, opts: SpoolOptions) {
    this.db = db;
    this.path = opts.path;
    this.maxBytes = opts.maxBytes;
    this.replica = opts.replica;
    this.log = opts.logger ?? noopLogger;
    this.probeMs = opts.probeMs ?? DEFAULT_SPOOL_PROBE_MS;
    this.notifyCommit = toCommitNotifier(opts.onCommit, this.log);
    this.pageSize = db.pragma('page_size', { simple: true }) as number;
    this.writerConfig = { path: opts.path, replica: opts.replica, busyTimeoutMs: opts.busyTimeoutMs ?? DEFAULT_SPOOL_BUSY_TIMEOUT_MS, maxBytes: opts.maxBytes };
    this.st = {
      head: db.prepare('SELECT seq, hash FROM heads WHERE writer = ?'),
      setHead: db.prepare('INSERT INTO heads (writer, seq, hash) VALUES (?, ?, ?) ON CONFLICT (writer) DO UPDATE SET seq = excluded.seq, hash = excluded.hash'),
      setNsHead: db.prepare('INSERT INTO ns_heads (writer, namespace, ns_seq, hash) VALUES (?, ?, ?, ?) ON CONFLICT (writer, namespace) DO UPDATE SET ns_seq = excluded.ns_seq, hash = excluded.hash'),
      clearNsHeads: db.prepare('DELETE FROM ns_heads WHERE writer = ?'),
      peek: db.prepare('SELECT pos, body, hash FROM pending ORDER BY pos LIMIT ?'),
      removeThrough: db.prepare('DELETE FROM pending WHERE pos <= ?'),
      removeOne: db.prepare('DELETE FROM pending WHERE pos = ?'),
      get: db.prepare('SELECT body, hash FROM pending WHERE id = ?'),
      hasWriter: db.prepare('SELECT 1 FROM pending WHERE writer = ? LIMIT 1'),
      ofWriter: db.prepare('SELECT pos, body FROM pending WHERE writer = ? AND pos > ? ORDER BY pos LIMIT ?'),
      update: db.prepare('UPDATE pending SET seq = ?, body = ?, hash = ? WHERE pos = ?'),
      pages: db.prepare('PRAGMA page_count'),
      free: db.prepare('PRAGMA freelist_count'),
      quarantineOne: db.prepare('INSERT INTO quarantine (pos, id, writer, seq, body, hash, reason, time) SELECT pos, id, writer, seq, body, hash, ?, ? FROM pending WHERE pos = ?'),
      quarantined: db.prepare('SELECT pos, body, hash, reason, time FROM quarantine ORDER BY pos'),
      unshared: db.prepare('SELECT pos, body, hash, reason, time FROM quarantine WHERE shared = 0 ORDER BY pos'),
      shareOne: db.prepare('UPDATE quarantine SET shared = 1 WHERE pos = ?'),
    };
    this.count = (db.prepare('SELECT count(*) AS n FROM pending').get() as { n: number }).n;
    this.quarantineCount = (db.prepare('SELECT count(*) AS n FROM quarantine').get() as { n: number }).n;
    this.reserve = createReserve(`${opts.path}-reserve`);
    this.reserve.restore();
    if (this.usedBytes() > this.maxBytes) this.markFull();
    // Started now, so the first admission does not wait for it; appends queue until it is ready.
    this.ensureWriter().catch(() => undefined);
  }

  async ready(): Promise<void> {
    try {
      await this.ensureWriter();
    } catch (err) {
      throw storeError('ERR_STORE_OPEN', `cannot open the decision spool ${this.path}: ${this.workerFailure ?? (err as Error).message}`, err);
    }
  }

  /** The writer thread, started (again, after it died) when needed; rejects when it cannot start. */
  private ensureWriter(): Promise<Worker> {
    if (this.worker) return Promise.resolve(this.worker);
    if (!this.starting) {
      const worker = createWriterThread(import.meta.url, './spool-writer', this.writerConfig);
      this.starting = whenWriterReady<SpoolWriterReply>(worker, (m) => m.t === 'ready')
        .then(
          () => {
            worker.on('message', (r: SpoolWriterReply) => this.onWriterMessage(r));
            worker.on('error', (err) => this.onWriterGone(worker, `the spool writer thread failed: ${err.message}`));
            worker.on('exit', (code) => this.onWriterGone(worker, `the spool writer thread exited (code ${code})`));
            this.worker = worker;
            this.workerFailure = undefined;
            return worker;
          },
          (err: Error) => {
            this.workerFailure = `the spool writer thread could not start: ${err.message}`;
            throw storeError('ERR_STORE_UNAVAILABLE', `the decision spool ${this.path} ${this.workerFailure.slice(4)}`, err);
          },
        )
        .finally(() => {
          this.starting = undefined;
        });
    }
    return this.starting;
  }

  /** The writer thread died (not close()): everything it held fails closed; the next append starts a new one. */
  private onWriterGone(worker: Worker, why: string): void {
    if (this.worker !== worker) return;
    this.worker = undefined;
    if (this.closedByWorker) {
      this.closedByWorker();
      return;
    }
    this.workerFailure = why;
    const e = storeError('ERR_STORE_UNAVAILABLE', `the decision spool ${this.path} could not commit: ${why}`);
    this.markFailed(e);
    for (const batch of this.inFlight.values()) for (const p of batch) p.reject(e);
    this.inFlight.clear();
  }

  private onWriterMessage(m: SpoolWriterReply): void {
    if (m.t === 'closed') {
      this.closedByWorker?.();
      return;
    }
    if (m.t === 'failed') {
      let e: StoreError;
      if (m.full) {
        this.markFull();
        e = storeError(
          'ERR_STORE_UNAVAILABLE',
          `the decision spool ${this.path} is full (${this.count} records waiting for PostgreSQL, limit store.spool.maxBytes = ${this.maxBytes} bytes): the decision was not recorded`,
        );
      } else {
        const err = Object.assign(new Error(m.message), m.code ? { code: m.code } : {});
        this.markFailed(err, m.records);
        const fullCode = toFullCode(err);
        e = storeError('ERR_STORE_UNAVAILABLE', fullCode
          ? `the decision spool ${this.path} is full (${fullCode}: no space on its disk): could not commit ${m.records} record(s): ${m.message}`
          : `the decision spool ${this.path} could not commit ${m.records} record(s): ${m.message}`, err);
      }
      for (const batch of m.batches) {
        for (const p of this.inFlight.get(batch) ?? []) p.reject(e);
        this.inFlight.delete(batch);
      }
      return;
    }
    if (m.t !== 'committed') return;
    this.notifyCommit(m.ms, m.records);
    this.count += m.added;
    if (this.failed) this.markRecovered();
    for (const { batch, results } of m.batches) {
      const pending = this.inFlight.get(batch) ?? [];
      this.inFlight.delete(batch);
      pending.forEach((p, i) => {
        const r = results[i];
        if (!r) p.reject(storeError('ERR_STORE_UNAVAILABLE', 'the spool writer thread returned no result'));
        else if (!r.ok) p.reject(storeError(r.code, r.message));
        else p.resolve(toChainedRecord({ ...p.record, nsSeq: r.nsSeq, nsPrevHash: r.nsPrevHash }, { seq: r.seq, prevHash: r.prevHash, hash: r.hash, body: '' }));
      });
    }
    if (m.added > 0) for (const l of this.listeners) l();
  }

  head(writer = this.replica): { seq: number; hash: string } {
    if (!this.db.open) return { seq: 0, hash: GENESIS_HASH };
    const h = this.st.head.get(writer) as { seq: number; hash: string } | undefined;
    return h ? { seq: h.seq, hash: h.hash } : { seq: 0, hash: GENESIS_HASH };
  }

  /** Stores `writer`'s namespace heads as `heads` (inside the caller's transaction). */
  private putNsHeads(writer: string, heads: Map<string, NamespaceChainHead>, replace: boolean): void {
    if (replace) this.st.clearNsHeads.run(writer);
    for (const [ns, h] of heads) this.st.setNsHead.run(writer, ns, h.nsSeq, h.hash);
  }

  backlog(): number {
    return this.count;
  }

  usedBytes(): number {
    const pages = this.st.pages.pluck().get() as number;
    const free = this.st.free.pluck().get() as number;
    return (pages - free) * this.pageSize;
  }

  writable(): boolean {
    return !this.full && !this.failed && !this.closed;
  }

  unwritableReason(): string | undefined {
    if (this.closed) return `decision spool ${this.path} closed`;
    if (this.failed) return this.down.fullCode ? `decision spool ${this.path} full (${this.down.fullCode}: no space on its disk)` : `decision spool ${this.path} not writable`;
    if (this.full) return `decision spool ${this.path} full (store.spool.maxBytes = ${this.maxBytes}, ${this.count} records waiting for PostgreSQL)`;
    return undefined;
  }

  onAppend(listener: () => void): void {
    this.listeners.push(listener);
  }

  append(record: DecisionRecord, opts?: SpoolAppendOptions): Promise<ChainedRecord> {
    if (this.closed) return Promise.reject(storeError('ERR_STORE_UNAVAILABLE', `the decision spool ${this.path} is closed`));
    const problem = checkRecord(record, this.replica);
    if (problem) return Promise.reject(storeError('ERR_STORE_INVALID_RECORD', `invalid decision record: ${problem}`));
    return new Promise<ChainedRecord>((resolve, reject) => {
      const p: Pending = { record, resolve, reject };
      if (opts?.patchJson !== undefined) p.patchJson = opts.patchJson;
      this.queue.push(p);
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        // setImmediate, not a microtask: every request handled in this turn of the event loop
        // joins the same commit.
        setImmediate(() => this.flush());
      }
    });
  }

  /** Hands the queued appends to the writer thread as one batch (it joins batches into commits). */
  private flush(): void {
    this.flushScheduled = false;
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0) return;
    if (this.full) {
      const e = storeError(
        'ERR_STORE_UNAVAILABLE',
        `the decision spool ${this.path} is full (${this.count} records waiting for PostgreSQL, limit store.spool.maxBytes = ${this.maxBytes} bytes): the decision was not recorded`,
      );
      for (const p of batch) p.reject(e);
      return;
    }
    const worker = this.worker;
    if (!worker) {
      this.ensureWriter().then(
        () => {
          this.queue = batch.concat(this.queue);
          this.flush();
        },
        (err: Error) => {
          this.markFailed(err);
          const e = storeError('ERR_STORE_UNAVAILABLE', `the decision spool ${this.path} could not commit ${batch.length} record(s): ${this.workerFailure ?? err.message}`, err);
          for (const p of batch) p.reject(e);
        },
      );
      return;
    }
    const id = this.nextBatch++;
    try {
      worker.postMessage({ t: 'append', batch: id, items: batch.map(toItem) } satisfies SpoolWriterRequest);
      this.inFlight.set(id, batch);
    } catch {
      // A record the structured clone cannot copy (a function, a symbol...): post one by one so
      // only those are refused and their batch mates still commit.
      for (const p of batch) {
        const one = this.nextBatch++;
        try {
          worker.postMessage({ t: 'append', batch: one, items: [toItem(p)] } satisfies SpoolWriterRequest);
          this.inFlight.set(one, [p]);
        } catch (err) {
          p.reject(unchainableError(p.record.id, err));
        }
      }
    }
  }

  private markFull(): void {
    if (!this.full) this.log.error({ spool: this.path, maxBytes: this.maxBytes, backlog: this.count }, 'decision spool full: admissions fail closed until records are forwarded to PostgreSQL');
    this.full = true;
    this.startProbe();
  }

  /** Logged once per transition, not per request: "spool full" (no space on its disk) or a write failure. */
  private markFailed(err: unknown, records = 0): void {
    const fullCode = toFullCode(err);
    if (!this.failed || (fullCode && !this.down.fullCode)) {
      if (!this.failed) this.down = { since: Date.now(), fullCode, refused: 0 };
      this.down.fullCode = fullCode;
      const e = { message: (err as Error).message, code: (err as { code?: unknown }).code };
      if (fullCode) this.log.error({ err: e, fullCode, spool: this.path, backlog: this.count }, 'decision spool full (no space on its disk): admissions fail closed (STORE_UNAVAILABLE) and the pod is unready until space is freed; the spool recovers by itself');
      else this.log.error({ err: e, spool: this.path, backlog: this.count }, 'decision spool write failed; unwritable until a probe write succeeds');
    }
    this.down.refused += records;
    this.failed = true;
    this.startProbe();
  }

  private markRecovered(): void {
    const { since, fullCode, refused } = this.down;
    this.reserve.restore();
    this.failed = false;
    this.down = { since: 0, fullCode: undefined, refused: 0 };
    this.log.info({ spool: this.path, wasFull: fullCode !== undefined, ...(fullCode ? { fullCode } : {}), downMs: Date.now() - since, refusedRecords: refused, backlog: this.count },
      fullCode ? 'decision spool recovered: space is back and writes succeed again' : 'decision spool recovered: writes succeed again');
  }

  private startProbe(): void {
    if (this.probeTimer || this.closed) return;
    this.probeTimer = setInterval(() => this.probe(), this.probeMs);
    this.probeTimer.unref();
  }

  /** Checks whether a full or failing spool can take appends again. */
  private probe(): void {
    if (this.closed || !this.db.open) return;
    if (this.full && this.usedBytes() <= this.maxBytes * REOPEN_RATIO) {
      this.full = false;
      this.log.info({ spool: this.path, backlog: this.count }, 'decision spool has room again');
    }
    if (this.failed) {
      try {
        if (this.down.fullCode) {
          // Room to spare, not just for the one-row write below (which fits in pages the file
          // already has): otherwise readiness would flap once per request on a nearly full disk.
          this.db.exec('CREATE TABLE IF NOT EXISTS probe_headroom (b BLOB)');
          this.db.transaction(() => this.db.prepare('INSERT INTO probe_headroom (b) VALUES (zeroblob(?))').run(PROBE_HEADROOM_BYTES))();
          this.db.exec('DELETE FROM probe_headroom');
        }
        // Read and rewritten under the write lock: the writer thread may be appending meanwhile.
        this.db.transaction(() => {
          const h = this.head();
          this.st.setHead.run(this.replica, h.seq, h.hash);
        }).immediate();
        this.markRecovered();
      } catch (err) {
        // Still failing: the next probe tries again (logged once by markFailed; again only if it is full now).
        this.markFailed(err);
      }
    }
    if (!this.full && !this.failed && this.probeTimer) {
      clearInterval(this.probeTimer);
      this.probeTimer = undefined;
    }
  }

  peek(limit: number): SpooledEntry[] {
    if (!this.db.open) return [];
    const rows = this.st.peek.all(limit) as Array<{ pos: number; body: string; hash: string }>;
    const out: SpooledEntry[] = [];
    const unreadable: Array<{ pos: number; reason: string }> = [];
    for (const r of rows) {
      try {
        const record = JSON.parse(r.body) as ChainedRecord;
        record.hash = r.hash;
        out.push({ pos: r.pos, record, body: r.body });
      } catch (err) {
        unreadable.push({ pos: r.pos, reason: `unreadable in the spool (its body is not JSON: ${(err as Error).message}); kept as stored` });
      }
    }
    // A row that cannot be read would stop the forwarder at it for good: set it aside, keep it.
    if (unreadable.length > 0) {
      this.quarantine(unreadable, new Date().toISOString());
      this.log.error({ spool: this.path, positions: unreadable.map((u) => u.pos) }, 'spooled decision(s) unreadable (body not JSON); quarantined in the spool, kept as stored');
    }
    return out;
  }

  removeThrough(pos: number): number {
    return this.removing(() => this.st.removeThrough.run(pos).changes);
  }

  remove(positions: number[]): number {
    return this.removing(this.db.transaction(() => positions.reduce((sum, p) => sum + this.st.removeOne.run(p).changes, 0)));
  }

  /**
   * Removal commits without its own fsync: a removal lost in a crash only brings back records
   * PostgreSQL already holds, which the forwarder skips (idempotent by id); the next appended
   * (FULL) commit syncs the log up to and including it anyway.
   */
  private removing(del: () => number): number {
    this.db.pragma('synchronous = NORMAL');
    let n: number;
    try {
      try {
        n = del();
      } catch (err) {
        // The disk is full (the spool filled it while PostgreSQL was away): give back the reserve
        // so the forwarded records can go, which frees their pages for the next appends.
        if (!toFullCode(err) || !this.reserve.release()) throw err;
        this.log.warn({ spool: this.path, reserve: this.reserve.path }, 'decision spool disk full: released the reserve file to remove forwarded decisions; it is written again once there is room');
        n = del();
      }
    } finally {
      this.db.pragma('synchronous = FULL');
    }
    this.count -= n;
    if (this.full) this.probe();
    return n;
  }

  quarantine(entries: Array<{ pos: number; reason: string }>, time: string): number {
    if (entries.length === 0) return 0;
    // Runs at synchronous=FULL (the spool's setting): the move is the only copy of these records.
    const moved = this.db.transaction(() => {
      let n = 0;
      for (const e of entries) {
        if (this.st.quarantineOne.run(e.reason, time, e.pos).changes === 1) n += this.st.removeOne.run(e.pos).changes;
      }
      return n;
    })();
    this.count -= moved;
    this.quarantineCount += moved;
    return moved;
  }

  quarantinedCount(): number {
    return this.quarantineCount;
  }

  quarantined(unsharedOnly = false): Array<QuarantinedRecord & { pos: number }> {
    if (!this.db.open) return [];
    const rows = (unsharedOnly ? this.st.unshared : this.st.quarantined).all() as Array<{ pos: number; body: string; hash: string; reason: string; time: string }>;
    return rows.map((r) => {
      try {
        const record = JSON.parse(r.body) as ChainedRecord;
        record.hash = r.hash;
        return { pos: r.pos, record, reason: r.reason, time: r.time };
      } catch {
        // Unreadable when quarantined: what the row's columns say, and the stored text as found.
        const row = this.db.prepare('SELECT id, writer, seq FROM quarantine WHERE pos = ?').get(r.pos) as { id: string; writer: string; seq: number };
        const record = { id: row.id, replica: row.writer, seq: row.seq, hash: r.hash } as ChainedRecord;
        return { pos: r.pos, record, reason: r.reason, time: r.time, body: r.body };
      }
    });
  }

  markShared(positions: number[]): void {
    if (positions.length === 0) return;
    this.db.transaction(() => {
      for (const p of positions) this.st.shareOne.run(p);
    })();
  }

  get(id: string): ChainedRecord | undefined {
    if (!this.db.open || typeof id !== 'string') return undefined;
    const row = this.st.get.get(id) as { body: string; hash: string } | undefined;
    if (!row) return undefined;
    const r = JSON.parse(row.body) as ChainedRecord;
    r.hash = row.hash;
    return r;
  }

  advanceHead(writer: string, base: { seq: number; hash: string }, nsBase?: Map<string, NamespaceChainHead>): boolean {
    // Under the write lock: the writer thread may be appending to this chain right now.
    return this.db.transaction(() => {
      if (base.seq <= this.head(writer).seq) return false;
      if (this.st.hasWriter.get(writer)) return false;
      this.st.setHead.run(writer, base.seq, base.hash);
      this.putNsHeads(writer, nsBase ?? new Map(), true);
      return true;
    }).immediate();
  }

  rebase(writer: string, base: { seq: number; hash: string }, nsBase?: Map<string, NamespaceChainHead>): number {
    let seq = base.seq;
    let prev = base.hash;
    const nsHeads = new Map(nsBase ?? []);
    let n = 0;
    this.db.transaction(() => {
      let after = 0;
      for (;;) {
        const rows = this.st.ofWriter.all(writer, after, REBASE_CHUNK) as Array<{ pos: number; body: string }>;
        for (const row of rows) {
          const { seq: _s, prevHash: _p, nsSeq: _n, nsPrevHash: _np, ...r } = JSON.parse(row.body) as ChainedRecord;
          // Re-placed in record format v2 (also a record an older build spooled as v1: once a
          // writer's chain has v2 records, every later one is v2).
          const { body, hash, nsSeq } = chainNamespaceRecord(r, { seq, hash: prev }, nsHeads.get(r.namespace));
          seq++;
          this.st.update.run(seq, body, hash, row.pos);
          nsHeads.set(r.namespace, { nsSeq, hash });
          prev = hash;
          after = row.pos;
        }
        n += rows.length;
        if (rows.length < REBASE_CHUNK) break;
      }
      // With nothing spooled the heads stay where they are unless the base is ahead of them.
      if (n === 0 && seq <= this.head(writer).seq) return;
      this.st.setHead.run(writer, seq, prev);
      this.putNsHeads(writer, nsHeads, true);
    }).immediate();
    return n;
  }

  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closing = (async () => {
      // Hand over what was accepted before close, then refuse new appends.
      if (this.queue.length) this.flush();
      this.closed = true;
      if (this.probeTimer) clearInterval(this.probeTimer);
      await this.starting?.catch(() => undefined);
      if (this.queue.length) this.flush();
      // Every batch handed over is answered before the thread closes (it commits its queue first).
      const worker = this.worker;
      if (worker) {
        await new Promise<void>((resolve) => {
          this.closedByWorker = resolve;
          worker.postMessage({ t: 'close' } satisfies SpoolWriterRequest);
        });
        this.worker = undefined;
        await worker.terminate();
      }
      this.db.close();
    })();
    return this.closing;
  }

}

/**
 * Opens (creating when needed) the spool at `opts.path`. Errors (by `code`): ERR_STORE_OPEN naming
 * the path (missing or unwritable directory, not a database, newer format), ERR_STORE_CONFIG.
 */
export function createSpool(opts: SpoolOptions): Spool {
  if (typeof opts.replica !== 'string' || opts.replica === '') throw storeError('ERR_STORE_CONFIG', 'the decision spool needs a non-empty replica (writer id)');
  if (!(Number.isSafeInteger(opts.maxBytes) && opts.maxBytes > 0)) throw storeError('ERR_STORE_CONFIG', `store.spool.maxBytes must be a positive whole number of bytes, got ${String(opts.maxBytes)}`);
  const path = opts.path;
  const openError = (why: string, cause?: unknown) => storeError('ERR_STORE_OPEN', `cannot open the decision spool ${path}: ${why}`, cause);
  if (typeof path !== 'string' || path === '') throw openError('no path given');
  const dir = dirname(resolve(path));
  try {
    if (!statSync(dir).isDirectory()) throw openError(`${dir} is not a directory`);
    accessSync(dir, constants.W_OK);
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_STORE_OPEN') throw err;
    throw openError(`directory ${dir} does not exist or is not writable`, err);
  }
  let db: Database.Database;
  try {
    db = new Database(path, { timeout: opts.busyTimeoutMs ?? DEFAULT_SPOOL_BUSY_TIMEOUT_MS });
  } catch (err) {
    throw openError((err as Error).message, err);
  }
  try {
    db.pragma('journal_mode = WAL');
    // The spool is the only durable copy until PostgreSQL has the record: fsync every commit.
    db.pragma('synchronous = FULL');
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > SCHEMA_VERSION) throw new Error(`its format version ${version} is newer than this build supports (${SCHEMA_VERSION})`);
    db.exec(SCHEMA);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
    return new SqliteSpool(db, opts);
  } catch (err) {
    db.close();
    throw openError((err as Error).message, err);
  }
}
