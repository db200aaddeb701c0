/**
 * The SQLite store's writer thread (started by store.ts through ../thread.ts). It owns the only
 * write connection (WAL, synchronous=FULL) and this writer's chain head, so commits — chaining,
 * hashing, compression, inserts and fsync — never hold the admission event loop. Records usually
 * arrive as prepared canonical bodies (PreparedItem: the request side wrote the RFC 8785 body with
 * the chain members left open), which this thread completes with the chain members and hashes.
 *
 * Group commit: every append batch that arrived while the previous transaction was syncing is
 * written in the next single transaction (messages queue on the port while a commit blocks this
 * thread). The head only moves after a commit succeeded; after a failure it is reloaded from the
 * file. While unwritable, commits fail fast (busy timeout 0) and a probe write looks for recovery.
 *
 * Protocol: see WriterRequest / WriterReply below; one reply per request except `append`, which
 * is answered per transaction (`committed` / `failed`, naming every batch it held).
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import type { DecisionRecord } from '../../core/record.js';
import { chainNamespaceRecordUtf8, chainPreparedBody, GENESIS_HASH } from '../evidence/link.js';
import { toColumns } from './rows.js';
import type { IndexColumns } from '../rows.js';
import { toStoredBody } from '../evidence/body-codec.js';
import { toNamespaceRoot, type NamespaceHead } from '../evidence/merkle.js';
import { toDigestBytes } from '../evidence/object-digest.js';
import { CanonicalText } from '../evidence/canonical.js';
import { toFullCode } from '../full.js';
import { addToRollups, toRollupDeltaSql, toRollupUpsertSql, type RollupName } from '../stats.js';
import { STATS_TABLES } from './tables.js';

const ROLLUP_UPSERT = toRollupUpsertSql('sqlite', STATS_TABLES);
/** This writer's records with seq in (lo, hi]: what one prune chunk removes. */
const SEQ_RANGE = 'd.writer = @writer AND d.seq > @lo AND d.seq <= @hi';
const ROLLUP_SUBTRACT = toRollupDeltaSql('sqlite', STATS_TABLES, 'decisions d', SEQ_RANGE, -1);

export interface WriterConfig {
  path: string;
  replica: string;
  busyTimeoutMs: number;
  recoveryProbeMs: number;
  /** PRAGMA max_page_count on the write connection (0/absent: SQLite's default); see SqliteStore.capPages. */
  maxPageCount?: number;
  /** Shared cancellation flags, one Int32 per slot (see CANCEL_* below); slot -1 = not cancellable. */
  cancelFlags: SharedArrayBuffer;
}

/** Room a full store must show (a committed write of this size) before it counts as writable again. */
export const PROBE_HEADROOM_BYTES = 256 * 1024;

/** Slot states in `cancelFlags`: the request side may cancel a PENDING record before it is inserted. */
export const SLOT_PENDING = 0;
export const SLOT_CANCELLED = 1;
export const SLOT_COMMITTING = 2;

/** A record handed over as an object: the writer canonicalises it (records that are not plain JSON data, old callers). */
export interface RecordItem {
  /** Without `patch` when patchJson carries it. */
  record: DecisionRecord | Omit<DecisionRecord, 'patch'>;
  time: string;
  saKeys: string[];
  slot: number;
  /**
   * The record's patch as canonical JSON text (AppendOptions.patchJson); `record` then comes
   * without `patch` and the text is hashed and stored in its place.
   */
  patchJson?: string;
}

/**
 * A record handed over as its prepared canonical body (link.ts prepareChainBody: the chain members
 * are filled in here) and the column values the writer indexes it by, computed on the request side
 * as insertItems computes them from a RecordItem. Crosses the thread boundary as bytes and flat
 * values, which a structured clone copies far more cheaply than the record's object graph.
 */
export interface PreparedItem extends IndexColumns {
  /** The prepared body: a view of the one buffer all of a batch's bodies share. */
  body: Uint8Array;
  slots: number[];
  unmapped: string[] | null;
  objectDigest: unknown;
  time: string;
  saKeys: string[];
  slot: number;
}

export type AppendItem = RecordItem | PreparedItem;

export type WriterRequest =
  | { t: 'append'; batch: number; items: AppendItem[] }
  | { t: 'call'; call: number; op: WriterOp }
  | { t: 'close' };

export type WriterOp =
  | { op: 'checkpointClaims' }
  | { op: 'settings' }
  | { op: 'maxPageCount'; pages: number }
  | { op: 'insertCheckpoint'; writer: string; size: number; headHash: string; time: string; jws: string; nsRoot: string; nsSize: number }
  | { op: 'insertAnchor'; writer: string; seq: number; hash: string; time: string; jws: string }
  | { op: 'deleteRange'; writer: string; lo: number; hi: number }
  | { op: 'deleteCheckpointsBelow'; writer: string; size: number };

/** Per item of a batch: its link, or the error (code, message) it was refused with. */
export type ItemResult =
  | { ok: true; seq: number; prevHash: string; hash: string; nsSeq: number; nsPrevHash: string }
  | { ok: false; code: string; message: string };

/** What a checkpoint signs about this writer now: chain head and the namespace tree over its namespace heads. */
export interface CheckpointClaimsNow {
  size: number;
  headHash: string;
  nsRoot: string;
  nsSize: number;
}

export type WriterReply =
  | { t: 'ready'; head: { seq: number; hash: string } }
  /** `ms`: the transaction's wall time, BEGIN IMMEDIATE (lock wait included) to COMMIT returned (fsync included). */
  | { t: 'committed'; batches: Array<{ batch: number; results: ItemResult[] }>; head: { seq: number; hash: string }; ms: number; records: number }
  | { t: 'failed'; batches: number[]; records: number; message: string; fullCode?: string }
  | { t: 'writable'; writable: boolean; fullCode?: string }
  | { t: 'log'; level: 'info' | 'warn' | 'error'; msg: string; err?: { message: string; code?: string }; fields?: Record<string, unknown> }
  | { t: 'result'; call: number; value?: unknown; error?: { message: string; code?: string } }
  | { t: 'closed' };

interface BatchOut {
  results: ItemResult[];
  seq: number;
  hash: string;
  nsHeads: Map<string, { nsSeq: number; hash: string }>;
}

interface Queued {
  batch: number;
  items: AppendItem[];
}

function errInfo(err: unknown): { message: string; code?: string } {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? { message: (err as Error).message, code } : { message: String((err as Error)?.message ?? err) };
}

/** Exported for the in-process micro-benchmark (bench/writer-micro.ts); the thread below runs one. */
export class Writer {
  private readonly db: Database.Database;
  private readonly cfg: WriterConfig;
  private readonly flags: Int32Array;
  private readonly statements = new Map<string, Database.Statement>();
  private head = { seq: 0, hash: GENESIS_HASH };
  /** Namespace chain heads of this writer (committed). */
  private nsHeads = new Map<string, { nsSeq: number; hash: string }>();
  /** Heads as of each checkpoint whose claims were handed out and not yet stored, by size. */
  private readonly claimedHeads = new Map<number, NamespaceHead[]>();
  private queue: Queued[] = [];
  private flushScheduled = false;
  private isWritable = true;
  private reloadHead = false;
  private busyNow: number;
  private probeTimer: NodeJS.Timeout | undefined;
  private lastProbeWarning = 0;
  /** While unwritable: since when (epoch ms), why it is full (SQLITE_FULL, ENOSPC...) if it is, records refused meanwhile. */
  private down = { since: 0, fullCode: undefined as string | undefined, refused: 0 };
  private readonly writeBatch: Database.Transaction<(items: AppendItem[]) => BatchOut>;

  constructor(cfg: WriterConfig, private readonly post: (m: WriterReply) => void) {
    this.cfg = cfg;
    this.flags = new Int32Array(cfg.cancelFlags);
    this.db = new Database(cfg.path, { timeout: cfg.busyTimeoutMs });
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.busyNow = cfg.busyTimeoutMs;
    if (cfg.maxPageCount) this.db.pragma(`max_page_count = ${Math.trunc(cfg.maxPageCount)}`);
    this.loadHead();
    this.writeBatch = this.db.transaction((items: AppendItem[]) => this.insertItems(items));
  }

  private stmt(sql: string): Database.Statement {
    let s = this.statements.get(sql);
    if (!s) this.statements.set(sql, (s = this.db.prepare(sql)));
    return s;
  }

  currentHead(): { seq: number; hash: string } {
    return { ...this.head };
  }

  private loadHead(): void {
    const last = this.stmt('SELECT seq, hash FROM decisions WHERE writer = ? ORDER BY seq DESC LIMIT 1').get(this.cfg.replica) as { seq: number; hash: string } | undefined;
    const anchor = this.stmt('SELECT seq, hash FROM anchors WHERE writer = ? ORDER BY seq DESC LIMIT 1').get(this.cfg.replica) as { seq: number; hash: string } | undefined;
    const top = last && (!anchor || last.seq >= anchor.seq) ? last : anchor;
    this.head = top ? { seq: top.seq, hash: top.hash } : { seq: 0, hash: GENESIS_HASH };
    this.nsHeads = new Map();
    for (const r of this.stmt('SELECT namespace, ns_seq, hash FROM ns_heads WHERE writer = ?').all(this.cfg.replica) as Array<{ namespace: string; ns_seq: number; hash: string }>) {
      this.nsHeads.set(r.namespace, { nsSeq: r.ns_seq, hash: r.hash });
    }
  }

  enqueue(q: Queued): void {
    this.queue.push(q);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // After the port's pending messages: every batch that arrived meanwhile joins this commit.
      setImmediate(() => this.flush());
    }
  }

  /** Runs inside one transaction; throws (and so rolls back) on any database error. */
  private insertItems(items: AppendItem[]): BatchOut {
    const insert = this.stmt(
      `INSERT INTO decisions (id, writer, seq, time, namespace, kind, verdict, service_accounts, task_run, pipeline_run, prev_hash, hash, record, ns_seq, body, unmapped, object_digest)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?, ?, ?, ?)`,
    );
    const insertSa = this.stmt('INSERT INTO decision_sas (key, time, decision_id, namespace, kind, verdict, writer) VALUES (?, ?, ?, ?, ?, ?, ?)');
    const results: ItemResult[] = [];
    const ids = new Set<string>();
    const nsMoved = new Map<string, { nsSeq: number; hash: string }>();
    const rollups = new Map<string, { name: RollupName; key: string[]; n: number }>();
    const duplicate = (id: string) => results.push({ ok: false, code: 'ERR_STORE_DUPLICATE_ID', message: `a decision with id ${id} is already stored` });
    let seq = this.head.seq;
    let prev = this.head.hash;
    for (const p of items) {
      const prepared = 'body' in p ? p : undefined;
      const id = prepared ? prepared.id : (p as RecordItem).record.id;
      // Cancelled by the request side (its deadline answered first): never inserted. Otherwise
      // the slot says "committing" from here on, so a later cancel knows it came too late.
      if (p.slot >= 0 && Atomics.compareExchange(this.flags, p.slot, SLOT_PENDING, SLOT_COMMITTING) === SLOT_CANCELLED) {
        results.push({ ok: false, code: 'ERR_STORE_CANCELLED', message: `decision ${id} was cancelled before commit (the admission deadline answered first)` });
        continue;
      }
      if (ids.has(id)) {
        duplicate(id);
        continue;
      }
      let c: ReturnType<typeof toColumns>;
      let link: ReturnType<typeof chainNamespaceRecordUtf8>;
      let stored: Buffer;
      try {
        c = prepared ?? toColumns((p as RecordItem).record);
        const nsHead = nsMoved.get(c.namespace) ?? this.nsHeads.get(c.namespace);
        if (prepared) link = chainPreparedBody({ bytes: prepared.body, slots: prepared.slots }, { seq, hash: prev }, nsHead);
        else {
          const { record: r, patchJson } = p as RecordItem;
          link = chainNamespaceRecordUtf8(patchJson === undefined ? r : { ...r, patch: new CanonicalText(patchJson) }, { seq, hash: prev }, nsHead);
        }
        // The body's bytes as hashed, compressed before the next record reuses their buffer.
        stored = toStoredBody(link.body);
      } catch (err) {
        if (this.stmt('SELECT 1 FROM decisions WHERE id = ?').get(id)) duplicate(id);
        else results.push({ ok: false, code: 'ERR_STORE_INVALID_RECORD', message: `invalid decision record ${id}: ${(err as Error).message}` });
        continue;
      }
      const { hash } = link;
      try {
        insert.run(id, this.cfg.replica, seq + 1, p.time, c.namespace, c.kind, c.verdict, c.serviceAccounts, c.taskRun, c.pipelineRun, prev, hash, link.nsSeq, stored, c.unmapped ? JSON.stringify(c.unmapped) : null, toDigestBytes(c.objectDigest));
      } catch (err) {
        // The id's PRIMARY KEY finds a stored duplicate; the failed statement alone is undone.
        if ((err as { code?: unknown }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
          duplicate(id);
          continue;
        }
        throw err;
      }
      seq++;
      for (const key of p.saKeys) insertSa.run(key, p.time, id, c.namespace, c.kind, c.verdict, this.cfg.replica);
      addToRollups(rollups, { time: p.time, namespace: c.namespace, kind: c.kind, verdict: c.verdict, writer: this.cfg.replica, unmapped: c.unmapped });
      results.push({ ok: true, seq, prevHash: prev, hash, nsSeq: link.nsSeq, nsPrevHash: link.nsPrevHash });
      nsMoved.set(c.namespace, { nsSeq: link.nsSeq, hash });
      ids.add(id);
      prev = hash;
    }
    // The stats rollups count this batch's records, in this transaction: one upsert per row touched.
    for (const { name, key, n } of rollups.values()) this.stmt(ROLLUP_UPSERT[name]).run(...key, n);
    const upsertHead = this.stmt('INSERT INTO ns_heads (writer, namespace, ns_seq, hash) VALUES (?, ?, ?, ?) ON CONFLICT (writer, namespace) DO UPDATE SET ns_seq = excluded.ns_seq, hash = excluded.hash');
    for (const [ns, h] of nsMoved) upsertHead.run(this.cfg.replica, ns, h.nsSeq, h.hash);
    return { results, seq, hash: prev, nsHeads: nsMoved };
  }

  flush(): void {
    this.flushScheduled = false;
    const queued = this.queue;
    this.queue = [];
    if (queued.length === 0) return;
    const items = queued.length === 1 ? (queued[0] as Queued).items : queued.flatMap((q) => q.items);
    let out: BatchOut;
    let ms: number;
    try {
      // While unwritable, fail fast instead of waiting the busy timeout on every batch: the
      // requests fail closed either way, and the probe finds the recovery.
      this.setBusyTimeout(this.isWritable ? this.cfg.busyTimeoutMs : 0);
      if (this.reloadHead) {
        // Another process may have advanced this writer's chain, or our commit landed after all.
        this.loadHead();
        this.reloadHead = false;
      }
      // IMMEDIATE: take the write lock up front (busy timeout) instead of failing an upgrade.
      const started = performance.now();
      out = this.writeBatch.immediate(items);
      ms = performance.now() - started;
    } catch (err) {
      this.reloadHead = true;
      // A record that reached "committing" was rolled back with its batch: let a cancel win again.
      for (const p of items) if (p.slot >= 0) Atomics.compareExchange(this.flags, p.slot, SLOT_COMMITTING, SLOT_PENDING);
      this.markUnwritable(err, items.length);
      const fullCode = toFullCode(err);
      this.post({ t: 'failed', batches: queued.map((q) => q.batch), records: items.length, message: (err as Error).message, ...(fullCode ? { fullCode } : {}) });
      return;
    }
    this.head = { seq: out.seq, hash: out.hash };
    for (const [ns, h] of out.nsHeads) this.nsHeads.set(ns, h);
    this.markWritable();
    const batches: Array<{ batch: number; results: ItemResult[] }> = [];
    let at = 0;
    for (const q of queued) {
      batches.push({ batch: q.batch, results: out.results.slice(at, at + q.items.length) });
      at += q.items.length;
    }
    this.post({ t: 'committed', batches, head: this.currentHead(), ms, records: items.length });
  }

  /**
   * Logs the transitions an operator needs, once each (not per request): "store full" (no space:
   * SQLITE_FULL, ENOSPC — free space, nothing else is wrong) or a write failure, and "recovered"
   * with how long it lasted and how many records were refused (failed closed) meanwhile.
   */
  private markUnwritable(err: unknown, records = 0): void {
    const fullCode = toFullCode(err);
    if (this.isWritable) {
      this.down = { since: Date.now(), fullCode, refused: 0 };
      this.lastProbeWarning = this.down.since; // the "still unwritable" reminder comes a minute later
      if (fullCode) {
        this.post({ t: 'log', level: 'error', msg: 'decision store full: admissions fail closed (STORE_UNAVAILABLE) and the pod is unready until space is freed; the store recovers by itself', err: errInfo(err), fields: { fullCode } });
      } else {
        this.post({ t: 'log', level: 'error', msg: 'decision store write failed; the store is unwritable until a write succeeds', err: errInfo(err) });
      }
      this.post({ t: 'writable', writable: false, ...(fullCode ? { fullCode } : {}) });
    } else if (fullCode && !this.down.fullCode) {
      // Failing for another reason first (a lock), full now: say so once.
      this.down.fullCode = fullCode;
      this.post({ t: 'log', level: 'error', msg: 'decision store full: admissions fail closed (STORE_UNAVAILABLE) and the pod is unready until space is freed; the store recovers by itself', err: errInfo(err), fields: { fullCode } });
      this.post({ t: 'writable', writable: false, fullCode });
    }
    this.down.refused += records;
    this.isWritable = false;
    if (!this.probeTimer) {
      this.probeTimer = setInterval(() => this.probe(), this.cfg.recoveryProbeMs);
      this.probeTimer.unref();
    }
  }

  private markWritable(): void {
    if (!this.isWritable) {
      const { since, fullCode, refused } = this.down;
      this.post({ t: 'log', level: 'info', msg: fullCode ? 'decision store recovered: space is back and writes succeed again' : 'decision store recovered: writes succeed again', fields: { wasFull: fullCode !== undefined, ...(fullCode ? { fullCode } : {}), downMs: Date.now() - since, refusedRecords: refused } });
      this.post({ t: 'writable', writable: true });
    }
    this.isWritable = true;
    this.down = { since: 0, fullCode: undefined, refused: 0 };
    if (this.probeTimer) clearInterval(this.probeTimer);
    this.probeTimer = undefined;
  }

  private setBusyTimeout(ms: number): void {
    if (this.busyNow === ms) return;
    this.db.pragma(`busy_timeout = ${ms}`);
    this.busyNow = ms;
  }

  /** A small real write: readiness must not stay false just because no request arrives. */
  private probe(): void {
    if (!this.db.open) return;
    try {
      this.setBusyTimeout(0);
      const put = this.stmt('INSERT INTO store_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value');
      if (this.down.fullCode) {
        // A full store is writable again only with room to spare: a one-row upsert fits in pages
        // the file already has long before an append (several index pages) does, and readiness
        // would flap once per request. Commit PROBE_HEADROOM_BYTES, then give them back (free
        // pages the next appends reuse).
        put.run('probe-headroom', 'x'.repeat(PROBE_HEADROOM_BYTES));
        this.stmt("DELETE FROM store_meta WHERE key = 'probe-headroom'").run();
      }
      put.run('probe', new Date().toISOString());
      this.markWritable();
    } catch (err) {
      this.markUnwritable(err);
      const now = Date.now();
      if (now - this.lastProbeWarning >= 60_000) {
        this.lastProbeWarning = now;
        this.post({ t: 'log', level: 'warn', msg: 'decision store still unwritable', err: errInfo(err) });
      }
    }
  }

  /** Rare writes (checkpoints, anchors, pruning), on this connection so they never contend with appends. */
  call(op: WriterOp): unknown {
    this.setBusyTimeout(this.cfg.busyTimeoutMs);
    switch (op.op) {
      case 'maxPageCount':
        // 0 asks SQLite for its default (the largest); SQLite never sets it below the current size.
        return this.db.pragma(`max_page_count = ${op.pages > 0 ? Math.trunc(op.pages) : 4294967294}`, { simple: true });
      case 'settings':
        return { synchronous: this.db.pragma('synchronous', { simple: true }), journalMode: this.db.pragma('journal_mode', { simple: true }) };
      case 'checkpointClaims': {
        const heads = [...this.nsHeads].map(([namespace, h]): NamespaceHead => ({ namespace, nsSeq: h.nsSeq, nsHeadHash: h.hash }));
        const { nsRoot, nsSize } = toNamespaceRoot(heads);
        this.claimedHeads.set(this.head.seq, heads);
        return { size: this.head.seq, headHash: this.head.hash, nsRoot, nsSize } satisfies CheckpointClaimsNow;
      }
      case 'insertCheckpoint': {
        const heads = this.claimedHeads.get(op.size) ?? [];
        this.claimedHeads.clear();
        return this.db.transaction(() => {
          const changes = this.stmt('INSERT OR IGNORE INTO checkpoints (writer, size, head_hash, time, jws, ns_root, ns_size) VALUES (?, ?, ?, ?, ?, ?, ?)').run(op.writer, op.size, op.headHash, op.time, op.jws, op.nsRoot, op.nsSize).changes;
          if (changes === 0) return 0;
          const put = this.stmt('INSERT OR IGNORE INTO checkpoint_ns_heads (writer, size, namespace, ns_seq, ns_head_hash) VALUES (?, ?, ?, ?, ?)');
          for (const h of heads) put.run(op.writer, op.size, h.namespace, h.nsSeq, h.nsHeadHash);
          return changes;
        })();
      }
      case 'insertAnchor':
        return this.stmt('INSERT OR IGNORE INTO anchors (writer, seq, hash, time, jws) VALUES (?, ?, ?, ?, ?)').run(op.writer, op.seq, op.hash, op.time, op.jws).changes;
      case 'deleteRange':
        return this.db.transaction(() => {
          for (const sql of ROLLUP_SUBTRACT) this.stmt(sql).run({ writer: op.writer, lo: op.lo - 1, hi: op.hi });
          this.stmt('DELETE FROM decision_sas WHERE decision_id IN (SELECT id FROM decisions WHERE writer = ? AND seq BETWEEN ? AND ?)').run(op.writer, op.lo, op.hi);
          return this.stmt('DELETE FROM decisions WHERE writer = ? AND seq BETWEEN ? AND ?').run(op.writer, op.lo, op.hi).changes;
        })();
      case 'deleteCheckpointsBelow':
        return this.db.transaction(() => {
          this.stmt('DELETE FROM checkpoint_ns_heads WHERE writer = ? AND size < ?').run(op.writer, op.size);
          return this.stmt('DELETE FROM checkpoints WHERE writer = ? AND size < ?').run(op.writer, op.size).changes;
        })();
    }
  }

  close(): void {
    if (this.queue.length) this.flush();
    if (this.probeTimer) clearInterval(this.probeTimer);
    try {
      this.db.pragma('optimize');
    } catch (err) {
      this.post({ t: 'log', level: 'warn', msg: 'PRAGMA optimize failed at close', err: errInfo(err) });
    }
    this.db.close();
  }
}

if (parentPort) {
  const port = parentPort;
  const post = (m: WriterReply): void => port.postMessage(m);
  let writer: Writer;
  try {
    writer = new Writer(workerData as WriterConfig, post);
  } catch (err) {
    // The main thread opened and migrated the file a moment ago; this is an environment failure.
    throw Object.assign(new Error(`the decision store writer could not open ${(workerData as WriterConfig).path}: ${(err as Error).message}`), { code: 'ERR_STORE_OPEN' });
  }
  post({ t: 'ready', head: writer.currentHead() });
  port.on('message', (m: WriterRequest) => {
    switch (m.t) {
      case 'append':
        writer.enqueue({ batch: m.batch, items: m.items });
        break;
      case 'call':
        // In queue order: appends received before this call commit first.
        writer.flush();
        try {
          post({ t: 'result', call: m.call, value: writer.call(m.op) });
        } catch (err) {
          post({ t: 'result', call: m.call, error: errInfo(err) });
        }
        break;
      case 'close':
        writer.close();
        post({ t: 'closed' });
        port.close();
        break;
    }
  });
}
