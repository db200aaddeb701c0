/**
 * The spool's writer thread (started by spool.ts through ../thread.ts): appends to the local spool
 * in front of PostgreSQL leave the admission event loop — placing the record on its
 * writer's chain and namespace chain (record format v2), canonical JSON, hashing, the insert and
 * the fsync (synchronous=FULL) all run here, on the spool's own write connection.
 *
 * Group commit: every append batch that arrived while the previous transaction was syncing is
 * written in the next single transaction. The chain and namespace heads are read from the spool
 * file inside each transaction (BEGIN IMMEDIATE), so the main thread's rare head moves (advanceHead,
 * rebase, after PostgreSQL's head) and this thread's appends never disagree.
 *
 * Protocol: one `committed` or `failed` reply per transaction, naming every batch it held.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import type { DecisionRecord } from '../../core/record.js';
import { chainNamespaceRecord, GENESIS_HASH, type NamespaceChainHead, type NamespaceLink } from '../evidence/link.js';
import { CanonicalText } from '../evidence/canonical.js';

export interface SpoolWriterConfig {
  path: string;
  replica: string;
  busyTimeoutMs: number;
  /** Live data limit: a transaction that would pass it is rolled back (`failed` with `full`). */
  maxBytes: number;
}

export interface SpoolItem {
  /** Without `patch` when patchJson carries it. */
  record: DecisionRecord | Omit<DecisionRecord, 'patch'>;
  /** The record's patch as canonical JSON text (AppendOptions.patchJson), hashed and stored in its place. */
  patchJson?: string;
}

/** Per item: its place on the chains, or the error (code, message) it was refused with. */
export type SpoolItemResult =
  | { ok: true; seq: number; prevHash: string; hash: string; nsSeq: number; nsPrevHash: string }
  | { ok: false; code: string; message: string };

export type SpoolWriterRequest = { t: 'append'; batch: number; items: SpoolItem[] } | { t: 'close' };

export type SpoolWriterReply =
  | { t: 'ready' }
  /** `ms`: the transaction's wall time, BEGIN IMMEDIATE (lock wait included) to COMMIT returned (fsync included). */
  | { t: 'committed'; batches: Array<{ batch: number; results: SpoolItemResult[] }>; added: number; ms: number; records: number }
  | { t: 'failed'; batches: number[]; records: number; full: boolean; message: string; code?: string }
  | { t: 'closed' };

class SpoolFullError extends Error {}

interface Queued {
  batch: number;
  items: SpoolItem[];
}

class SpoolWriter {
  private readonly db: Database.Database;
  private readonly cfg: SpoolWriterConfig;
  private readonly pageSize: number;
  private readonly st: Record<'head' | 'nsHead' | 'exists' | 'insert' | 'setHead' | 'setNsHead' | 'pages' | 'free', Database.Statement>;
  private readonly write: Database.Transaction<(items: SpoolItem[]) => { results: SpoolItemResult[]; added: number }>;
  private queue: Queued[] = [];
  private flushScheduled = false;

  constructor(cfg: SpoolWriterConfig, private readonly post: (m: SpoolWriterReply) => void) {
    this.cfg = cfg;
    this.db = new Database(cfg.path, { timeout: cfg.busyTimeoutMs });
    this.db.pragma('journal_mode = WAL');
    // The spool is the only durable copy until PostgreSQL has the record: fsync every commit.
    this.db.pragma('synchronous = FULL');
    this.pageSize = this.db.pragma('page_size', { simple: true }) as number;
    this.st = {
      head: this.db.prepare('SELECT seq, hash FROM heads WHERE writer = ?'),
      nsHead: this.db.prepare('SELECT ns_seq AS nsSeq, hash FROM ns_heads WHERE writer = ? AND namespace = ?'),
      exists: this.db.prepare('SELECT 1 FROM pending WHERE id = ?'),
      insert: this.db.prepare('INSERT INTO pending (id, writer, seq, body, hash) VALUES (?, ?, ?, ?, ?)'),
      setHead: this.db.prepare('INSERT INTO heads (writer, seq, hash) VALUES (?, ?, ?) ON CONFLICT (writer) DO UPDATE SET seq = excluded.seq, hash = excluded.hash'),
      setNsHead: this.db.prepare('INSERT INTO ns_heads (writer, namespace, ns_seq, hash) VALUES (?, ?, ?, ?) ON CONFLICT (writer, namespace) DO UPDATE SET ns_seq = excluded.ns_seq, hash = excluded.hash'),
      pages: this.db.prepare('PRAGMA page_count').pluck(),
      free: this.db.prepare('PRAGMA freelist_count').pluck(),
    };
    this.write = this.db.transaction((items: SpoolItem[]) => this.insert(items));
  }

  enqueue(q: Queued): void {
    this.queue.push(q);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // After the port's pending messages: every batch that arrived meanwhile joins this commit.
      setImmediate(() => this.flush());
    }
  }

  /** Runs inside one transaction; throws (and so rolls back) on a database error or a full spool. */
  private insert(items: SpoolItem[]): { results: SpoolItemResult[]; added: number } {
    const replica = this.cfg.replica;
    const results: SpoolItemResult[] = [];
    const ids = new Set<string>();
    const nsMoved = new Map<string, NamespaceChainHead>();
    const head = (this.st.head.get(replica) as { seq: number; hash: string } | undefined) ?? { seq: 0, hash: GENESIS_HASH };
    let { seq, hash: prev } = head;
    for (const { record: r, patchJson } of items) {
      if (ids.has(r.id) || this.st.exists.get(r.id)) {
        results.push({ ok: false, code: 'ERR_STORE_DUPLICATE_ID', message: `a decision with id ${r.id} is already stored` });
        continue;
      }
      let link: NamespaceLink;
      try {
        const nsHead = nsMoved.get(r.namespace) ?? (this.st.nsHead.get(replica, r.namespace) as NamespaceChainHead | undefined);
        link = chainNamespaceRecord(patchJson === undefined ? r : { ...r, patch: new CanonicalText(patchJson) }, { seq, hash: prev }, nsHead);
      } catch (err) {
        results.push({ ok: false, code: 'ERR_STORE_INVALID_RECORD', message: `invalid decision record ${r.id}: ${(err as Error).message}` });
        continue;
      }
      this.st.insert.run(r.id, replica, link.seq, link.body, link.hash);
      results.push({ ok: true, seq: link.seq, prevHash: prev, hash: link.hash, nsSeq: link.nsSeq, nsPrevHash: link.nsPrevHash });
      nsMoved.set(r.namespace, { nsSeq: link.nsSeq, hash: link.hash });
      ids.add(r.id);
      seq = link.seq;
      prev = link.hash;
    }
    if (ids.size > 0) {
      this.st.setHead.run(replica, seq, prev);
      for (const [ns, h] of nsMoved) this.st.setNsHead.run(replica, ns, h.nsSeq, h.hash);
      const used = ((this.st.pages.get() as number) - (this.st.free.get() as number)) * this.pageSize;
      if (used > this.cfg.maxBytes) throw new SpoolFullError();
    }
    return { results, added: ids.size };
  }

  flush(): void {
    this.flushScheduled = false;
    const queued = this.queue;
    this.queue = [];
    if (queued.length === 0) return;
    const items = queued.length === 1 ? queued[0]!.items : queued.flatMap((q) => q.items);
    let out: { results: SpoolItemResult[]; added: number };
    let ms: number;
    try {
      // IMMEDIATE: take the write lock up front (busy timeout) instead of failing an upgrade.
      const started = performance.now();
      out = this.write.immediate(items);
      ms = performance.now() - started;
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      this.post({ t: 'failed', batches: queued.map((q) => q.batch), records: items.length, full: err instanceof SpoolFullError, message: (err as Error).message, ...(typeof code === 'string' ? { code } : {}) });
      return;
    }
    const batches: Array<{ batch: number; results: SpoolItemResult[] }> = [];
    let at = 0;
    for (const q of queued) {
      batches.push({ batch: q.batch, results: out.results.slice(at, at + q.items.length) });
      at += q.items.length;
    }
    this.post({ t: 'committed', batches, added: out.added, ms, records: items.length });
  }

  close(): void {
    if (this.queue.length) this.flush();
    this.db.close();
  }
}

if (parentPort) {
  const port = parentPort;
  const post = (m: SpoolWriterReply): void => port.postMessage(m);
  const cfg = workerData as SpoolWriterConfig;
  let writer: SpoolWriter;
  try {
    writer = new SpoolWriter(cfg, post);
  } catch (err) {
    // The main thread opened and migrated the file a moment ago; this is an environment failure.
    throw Object.assign(new Error(`the decision spool writer could not open ${cfg.path}: ${(err as Error).message}`), { code: 'ERR_STORE_OPEN' });
  }
  post({ t: 'ready' });
  port.on('message', (m: SpoolWriterRequest) => {
    if (m.t === 'append') writer.enqueue({ batch: m.batch, items: m.items });
    else {
      writer.close();
      post({ t: 'closed' });
      port.close();
    }
  });
}
