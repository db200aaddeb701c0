/**
 * The server's PostgreSQL store: decisions are committed to a local spool first (spool.ts) and
 * forwarded in order to the shared database (postgres.ts), so a database outage loses nothing and
 * stops no admission. openStore (open.ts) loads this module only for postgres:// URLs.
 *
 * - append → the spool: durable and final (chained) before it resolves; PostgreSQL may be down.
 * - a forwarder drains the spool to PostgreSQL in batches, idempotent by id, removing spooled
 *   records only after PostgreSQL committed them; while PostgreSQL is unreachable it retries with
 *   backoff (capped at MAX_BACKOFF_MS).
 * - nothing admitted is deleted: a spooled record PostgreSQL refuses (its id holds a different
 *   decision there, or it fails PostgreSQL's checks) is quarantined — moved to the spool's
 *   quarantine table with the reason, logged, counted (quarantinedCount: tzw_store_quarantined_records,
 *   /readyz detail) and copied to PostgreSQL's quarantined_decisions table, from which
 *   `tzw decisions export` writes it into the bundle, outside the chain.
 * - reads (query, stream, checkpoints, anchors, verification) go to PostgreSQL; `get` also finds a
 *   record still in the spool.
 * - checkpoints are signed by the PostgreSQL store over what PostgreSQL holds, so they never claim
 *   records that are not there yet.
 */
import { mkdirSync, statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Config } from '../../config/schema.js';
import type { ChainedRecord, DecisionRecord } from '../../core/record.js';
import { toFullCode } from '../full.js';
import type { NamespaceHead } from '../evidence/merkle.js';
import type { Anchor, AppendOptions, ChainEntry, Checkpoint, CommitObserver, DecisionFilter, DecisionPage, PruneResult, QuarantinedRecord, VerifiableStore } from '../port.js';
import { createPostgresStore, parsePostgresUrl, type PostgresStore, type PostgresStoreOptions } from './store.js';
import type { SigningKey, Signer } from '../evidence/signing.js';
import { createSpool, type Spool, type SpooledEntry } from './spool.js';
import type { DecisionStats, StatsBucket, StatsFilter } from '../stats.js';
import type { StoreLogger } from '../sqlite/store.js';

export const MIN_BACKOFF_MS = 100;
export const MAX_BACKOFF_MS = 5000;
/** Records per forwarded transaction. */
export const FORWARD_BATCH = 500;
/**
 * A partial batch waits this long for more records before it is sent: under load that makes a few
 * large PostgreSQL commits instead of many small ones competing with the admissions for CPU and
 * disk. It only delays when records reach PostgreSQL, never an admission.
 */
export const DEFAULT_FORWARD_LINGER_MS = 50;
/** How long close() waits for the spool to drain to PostgreSQL before leaving the rest for the next start. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 5000;
/** How long the first connection attempt may take at start before serving from the spool alone. */
export const DEFAULT_START_WAIT_MS = 3000;

export interface SpooledPostgresOptions {
  /** PostgreSQL options (url or pool, schema, replica, signer, checkpointEvery, ...). */
  postgres: PostgresStoreOptions & { signer: Signer };
  spool: { path: string; maxBytes: number; probeMs?: number; busyTimeoutMs?: number; onCommit?: CommitObserver };
  logger?: StoreLogger;
  drainTimeoutMs?: number;
  startWaitMs?: number;
  minBackoffMs?: number;
  maxBackoffMs?: number;
  forwardLingerMs?: number;
}

export interface SpooledPostgresStore extends VerifiableStore {
  /** Records committed to the spool and not yet in PostgreSQL. */
  backlog(): number;
  /** Records this spool quarantined (refused by PostgreSQL; kept, never forwarded). */
  quarantinedCount(): number;
  /** This spool's quarantined records and PostgreSQL's copies of every replica's, oldest first. */
  quarantined(): Promise<QuarantinedRecord[]>;
  /** Whether the last exchange with PostgreSQL succeeded (for logs and tests). */
  pgConnected(): boolean;
  /** Resolves when the spool is empty (everything forwarded), or rejects after `timeoutMs`. */
  drained(timeoutMs?: number): Promise<void>;
  readonly spoolPath: string;
}

type StoreError = Error & { code: string };

function storeError(code: string, message: string, cause?: unknown): StoreError {
  return Object.assign(new Error(message, cause === undefined ? undefined : { cause }), { code });
}

function codeOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
}

const noopLogger: StoreLogger = { info() {}, warn() {}, error() {} };

/**
 * Errors from a PostgreSQL that answered but refuses us (SQLSTATE class 28 authorization, 3D
 * unknown database, 42501 privilege) or a schema newer than this build: retrying cannot help, so
 * the start fails with a clear message instead of filling the spool.
 */
function isPermanent(err: unknown): boolean {
  const cause = (err as { cause?: unknown }).cause;
  const code = codeOf(cause) ?? '';
  return code.startsWith('28') || code.startsWith('3D') || code === '42501' || code === 'ERR_STORE_OPEN';
}

class SpooledStore implements SpooledPostgresStore {
  readonly spoolPath: string;
  private readonly spool: Spool;
  private readonly opts: SpooledPostgresOptions;
  private readonly log: StoreLogger;
  private readonly replica: string;
  private pg: PostgresStore | undefined;
  private connecting: Promise<PostgresStore> | undefined;
  private connected = false;
  private downSince: number | undefined;
  /** While down: whether PostgreSQL said it is full (53100), so a change of cause is logged once. */
  private downFull = false;
  private stopped = false;
  private closing: Promise<void> | undefined;
  /** Ends the forwarder's wait for work (set while idle or backing off). */
  private wake: (() => void) | undefined;
  /** Ends a linger (drained() and close() want the spool emptied now). */
  private urgent: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private readonly drainWaiters = new Set<() => void>();
  /** Copying quarantined records to PostgreSQL failed: log once, retry after shareAfter (epoch ms). */
  private shareFailing = false;
  private shareAfter = 0;

  constructor(spool: Spool, opts: SpooledPostgresOptions) {
    this.spool = spool;
    this.spoolPath = spool.path;
    this.opts = opts;
    this.log = opts.logger ?? noopLogger;
    this.replica = opts.postgres.replica;
    spool.onAppend(() => this.wake?.());
  }

  /**
   * Connects (waiting up to `waitMs`) and starts forwarding. Throws only when PostgreSQL answered
   * with an error that waiting will not heal (see isPermanent).
   */
  async start(waitMs: number): Promise<void> {
    const first = this.connect().then(
      () => undefined,
      (err: unknown) => err,
    );
    const outcome = await Promise.race([first, new Promise((r) => setTimeout(r, waitMs).unref())]);
    if (outcome !== undefined && isPermanent(outcome)) throw outcome;
    if (!this.pg) this.log.warn({ spool: this.spoolPath }, 'PostgreSQL is not reachable at start: serving from the local spool, forwarding when it is back');
    this.loop = this.forward();
  }

  /** Opens the PostgreSQL store once; concurrent callers share the attempt. */
  private connect(): Promise<PostgresStore> {
    if (this.pg) return Promise.resolve(this.pg);
    if (!this.connecting) {
      this.connecting = (async () => {
        try {
          const pg = await createPostgresStore({ ...this.opts.postgres, logger: this.log, behindSpool: true });
          // Continue the chain from max(spool head, PostgreSQL head): a spool that was lost (a new
          // emptyDir) or is older than the database must not restart this writer's chain.
          const base = await pg.writerHead(this.replica);
          if (this.spool.advanceHead(this.replica, base, await pg.writerNamespaceHeads(this.replica))) this.log.info({ seq: base.seq }, 'decision chain continues from the PostgreSQL head');
          if (this.stopped) {
            await pg.close();
            throw storeError('ERR_STORE_UNAVAILABLE', 'the decision store is closed');
          }
          this.pg = pg;
          this.markConnected();
          return pg;
        } finally {
          this.connecting = undefined;
        }
      })();
    }
    return this.connecting;
  }

  private markConnected(): void {
    if (!this.connected && this.downSince !== undefined) {
      this.log.info({ backlog: this.spool.backlog(), downMs: Date.now() - this.downSince, wasFull: this.downFull }, 'PostgreSQL takes writes again: forwarding spooled decisions');
    }
    this.connected = true;
    this.downSince = undefined;
    this.downFull = false;
  }

  /** Logged on the transition (and when the cause becomes or stops being "PostgreSQL is full"), never per retry. */
  private markDisconnected(err: unknown): void {
    const full = toFullCode(err) === '53100';
    if (this.connected || this.downSince === undefined || full !== this.downFull) {
      const fields = { err: { message: (err as Error).message, code: codeOf(err), sqlState: codeOf((err as { cause?: unknown }).cause) }, backlog: this.spool.backlog(), spool: this.spoolPath };
      if (full) this.log.error(fields, 'PostgreSQL is full (SQLSTATE 53100 disk_full): decisions are kept in the local spool and forwarded once it has space; admissions go on until the spool is full');
      else this.log.warn(fields, 'cannot forward to PostgreSQL (unreachable or refusing writes): decisions are kept in the local spool and forwarded when it works again');
      this.downSince ??= Date.now();
      this.downFull = full;
    }
    this.connected = false;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    }).finally(() => {
      this.wake = undefined;
    });
  }

  /** Waits `ms` for more records; only drained() and close() cut it short, not new appends. */
  private linger(ms: number): Promise<void> {
    if (this.stopped || this.drainWaiters.size > 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.urgent = done;
    }).finally(() => {
      this.urgent = undefined;
    });
  }

  private waitForWork(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.wake = resolve;
    }).finally(() => {
      this.wake = undefined;
    });
  }

  /** The forwarder: spool → PostgreSQL, in order, until stopped. */
  private async forward(): Promise<void> {
    const min = this.opts.minBackoffMs ?? MIN_BACKOFF_MS;
    const max = this.opts.maxBackoffMs ?? MAX_BACKOFF_MS;
    const linger = this.opts.forwardLingerMs ?? DEFAULT_FORWARD_LINGER_MS;
    let lingerNext = false;
    let delay = min;
    let repairs = 0;
    while (!this.stopped) {
      let batch: SpooledEntry[] = [];
      try {
        const pg = await this.connect();
        if (lingerNext && linger > 0) await this.linger(linger);
        lingerNext = false;
        batch = this.spool.peek(FORWARD_BATCH);
        if (batch.length === 0) {
          await this.shareQuarantine(pg);
          for (const w of this.drainWaiters) w();
          if (this.stopped) break;
          await this.waitForWork();
          lingerNext = true;
          continue;
        }
        await pg.appendChained(batch.map((e) => e.record), batch.map((e) => e.body));
        // Before the removal: "takes writes again" reports the backlog PostgreSQL came back to.
        this.markConnected();
        this.spool.removeThrough(batch[batch.length - 1]!.pos);
        await this.shareQuarantine(pg);
        lingerNext = batch.length < FORWARD_BATCH;
        delay = min;
        repairs = 0;
      } catch (err) {
        if (this.stopped) break;
        const code = codeOf(err);
        if ((code === 'ERR_STORE_CHAIN_CONFLICT' || code === 'ERR_STORE_DUPLICATE_ID' || code === 'ERR_STORE_INVALID_RECORD') && this.pg && repairs < 3) {
          repairs++;
          try {
            await this.repair(this.pg, batch, err);
            continue;
          } catch (repairErr) {
            err = repairErr;
          }
        }
        this.markDisconnected(err);
        await this.sleep(delay);
        delay = Math.min(delay * 2, max);
        repairs = 0; // a conflict that outlived three repairs gets three more after each backoff
      }
    }
  }

  /**
   * Copies quarantined records PostgreSQL has no copy of yet (so an export of the database shows
   * them). A failure is logged once and retried after the next forwarded batch: the spool keeps
   * its copy either way, and forwarding never waits on this.
   */
  private async shareQuarantine(pg: PostgresStore): Promise<void> {
    if (this.spool.quarantinedCount() === 0 || Date.now() < this.shareAfter) return;
    const unshared = this.spool.quarantined(true);
    if (unshared.length === 0) return;
    try {
      await pg.appendQuarantined(unshared.map(({ pos: _pos, ...q }) => q));
      this.spool.markShared(unshared.map((e) => e.pos));
      this.shareFailing = false;
    } catch (err) {
      if (!this.shareFailing) this.log.warn({ err: { message: (err as Error).message, code: codeOf(err) }, records: unshared.length, spool: this.spoolPath }, 'could not copy quarantined decisions to PostgreSQL; they stay in the spool and the copy is retried');
      this.shareFailing = true;
      this.shareAfter = Date.now() + (this.opts.maxBackoffMs ?? MAX_BACKOFF_MS);
    }
  }

  /**
   * The batch does not fit what PostgreSQL holds. Records PostgreSQL already has (a batch committed
   * before its acknowledgement was lost) leave the spool; a record whose id PostgreSQL holds as a
   * different decision, or that PostgreSQL refuses as invalid, cannot be stored without breaking
   * its chain: it is quarantined (kept in the spool, out of the queue, with the reason; logged as an
   * error) and copied to PostgreSQL's quarantine table; the rest is re-chained after PostgreSQL's
   * head of its writer.
   */
  private async repair(pg: PostgresStore, batch: SpooledEntry[], cause: unknown): Promise<void> {
    const found = await pg.locate(batch.map((e) => e.record.id));
    const forwarded: number[] = [];
    const quarantine: Array<{ pos: number; reason: string }> = [];
    const writers = new Set<string>();
    const badId = codeOf(cause) === 'ERR_STORE_INVALID_RECORD' ? (cause as { id?: unknown }).id : undefined;
    for (const e of batch) {
      const f = found.get(e.record.id);
      if (f && f.writer === e.record.replica && f.seq === e.record.seq && f.hash === e.record.hash) forwarded.push(e.pos);
      else if (f || badId === e.record.id) {
        const reason = f
          ? `duplicate id: PostgreSQL holds a different decision with id ${e.record.id} (writer ${f.writer}, seq ${f.seq}, hash ${f.hash})`
          : `refused by PostgreSQL: ${(cause as Error).message}`;
        this.log.error(
          { id: e.record.id, writer: e.record.replica, seq: e.record.seq, spool: this.spoolPath, reason },
          'spooled decision cannot be forwarded without breaking its chain; quarantined in the spool (kept, counted in tzw_store_quarantined_records, exported by tzw decisions export)',
        );
        quarantine.push({ pos: e.pos, reason });
        writers.add(e.record.replica);
      } else writers.add(e.record.replica);
    }
    this.spool.remove(forwarded);
    this.spool.quarantine(quarantine, new Date().toISOString());
    for (const writer of writers) {
      const base = await pg.writerHead(writer);
      const n = this.spool.rebase(writer, base, await pg.writerNamespaceHeads(writer));
      if (n > 0) this.log.warn({ writer, records: n, after: base.seq }, 'spooled decisions re-chained after the PostgreSQL head of their writer (the spool started from a stale head)');
    }
  }

  backlog(): number {
    return this.spool.backlog();
  }

  quarantinedCount(): number {
    return this.spool.quarantinedCount();
  }

  async quarantined(): Promise<QuarantinedRecord[]> {
    const local = this.spool.quarantined().map(({ pos: _pos, ...q }) => q);
    let shared: QuarantinedRecord[] = [];
    try {
      shared = this.pg ? await this.pg.quarantined() : [];
    } catch (err) {
      this.log.warn({ err: { message: (err as Error).message } }, 'cannot read quarantined decisions from PostgreSQL; listing this spool\'s only');
    }
    const key = (q: QuarantinedRecord) => `${q.record.replica}\n${q.record.seq}\n${q.record.hash}`;
    const seen = new Set(shared.map(key));
    return [...shared, ...local.filter((q) => !seen.has(key(q)))].sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
  }

  pgConnected(): boolean {
    return this.connected;
  }

  drained(timeoutMs = DEFAULT_DRAIN_TIMEOUT_MS): Promise<void> {
    if (this.spool.backlog() === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.drainWaiters.delete(done);
        resolve();
      };
      const timer = setTimeout(() => {
        this.drainWaiters.delete(done);
        reject(storeError('ERR_STORE_UNAVAILABLE', `${this.spool.backlog()} decision(s) are still in the spool ${this.spoolPath} after ${timeoutMs} ms (PostgreSQL ${this.connected ? 'reachable' : 'unreachable'})`));
      }, timeoutMs);
      this.drainWaiters.add(done);
      this.wake?.();
      this.urgent?.();
    });
  }

  writable(): boolean {
    return this.spool.writable() && !this.closing;
  }

  unwritableReason(): string | undefined {
    if (this.closing) return `decision store (spool ${this.spoolPath}) closed`;
    return this.spool.unwritableReason();
  }

  append(record: DecisionRecord, opts?: AppendOptions): Promise<ChainedRecord> {
    if (this.closing) return Promise.reject(storeError('ERR_STORE_UNAVAILABLE', `the decision store (spool ${this.spoolPath}) is closed`));
    // The spool's writer thread computes the objectDigest from the review body, off this thread,
    // and hashes the patch as the caller's canonical text.
    return this.spool.append(record, opts);
  }

  /** The PostgreSQL store for reads; ERR_STORE_UNAVAILABLE before the first connection. */
  private reader(): PostgresStore {
    if (this.pg) return this.pg;
    throw storeError('ERR_STORE_UNAVAILABLE', `PostgreSQL has not been reachable since start; ${this.spool.backlog()} decision(s) wait in the spool ${this.spoolPath}`);
  }

  async get(id: string): Promise<ChainedRecord | undefined> {
    const spooled = this.spool.get(id);
    if (spooled) return spooled;
    const found = await this.reader().get(id);
    // It may have been forwarded (and left the spool) while PostgreSQL was being asked.
    return found ?? this.spool.get(id);
  }

  async query(filter: DecisionFilter): Promise<DecisionPage> {
    return this.reader().query(filter);
  }

  stream(filter: Omit<DecisionFilter, 'limit' | 'cursor'>): AsyncIterable<ChainedRecord> {
    return this.reader().stream(filter);
  }

  streamChain(): AsyncIterable<ChainEntry> {
    return this.reader().streamChain();
  }

  loadStats(filter: StatsFilter, bucket: StatsBucket): Promise<DecisionStats> {
    return this.reader().loadStats(filter, bucket);
  }

  async checkpoints(): Promise<Checkpoint[]> {
    return this.reader().checkpoints();
  }

  async anchors(): Promise<Anchor[]> {
    return this.reader().anchors();
  }

  async checkpointHeads(writer: string, size: number): Promise<NamespaceHead[]> {
    return this.reader().checkpointHeads(writer, size);
  }

  namespaceRecords(writer: string, namespace: string, afterNsSeq: number): AsyncIterable<ChainedRecord> {
    return this.reader().namespaceRecords(writer, namespace, afterNsSeq);
  }

  async namespaceHeads(namespace: string): Promise<Array<{ writer: string; nsSeq: number }>> {
    return this.reader().namespaceHeads(namespace);
  }

  async prune(olderThan: string): Promise<PruneResult> {
    return this.reader().prune(olderThan);
  }

  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closing = (async () => {
      // Commit what the spool already accepted, give the forwarder a bounded time to empty it, then
      // stop; whatever is left is forwarded by the next start.
      await new Promise((r) => setImmediate(r)); // let an already scheduled spool commit run
      const timeout = this.opts.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS;
      if (this.pg && this.spool.backlog() > 0) {
        await this.drained(timeout).catch((err: Error) => this.log.warn({ backlog: this.spool.backlog(), spool: this.spoolPath }, err.message));
      }
      this.stopped = true;
      this.wake?.();
      this.urgent?.();
      await this.loop;
      await this.connecting?.catch(() => undefined);
      await this.pg?.close();
      await this.spool.close();
    })();
    return this.closing;
  }
}

/**
 * Builds the spooled PostgreSQL store: opens the spool (throws its ERR_STORE_OPEN/ERR_STORE_CONFIG),
 * then waits up to `startWaitMs` for PostgreSQL. An unreachable database does not fail the start:
 * appends go to the spool and are forwarded once it answers. A database that answers with an error
 * that will not heal by waiting (authentication, schema newer than this build) fails the start.
 */
export async function createSpooledPostgresStore(opts: SpooledPostgresOptions): Promise<SpooledPostgresStore> {
  const spool = createSpool({ ...opts.spool, replica: opts.postgres.replica, ...(opts.logger ? { logger: opts.logger } : {}) });
  warnIfVolumeSmaller(spool.path, spool.maxBytes, opts.logger ?? noopLogger);
  const store = new SpooledStore(spool, opts);
  try {
    // The spool's writer thread first: then the wait for PostgreSQL is not spent starting it.
    await spool.ready();
    await store.start(opts.startWaitMs ?? DEFAULT_START_WAIT_MS);
  } catch (err) {
    await spool.close();
    throw err;
  }
  return store;
}

/**
 * A spool volume smaller than store.spool.maxBytes fills before the limit: it still fails closed and
 * recovers (the reserve file), but the operator should know at start rather than during an outage.
 */
function warnIfVolumeSmaller(path: string, maxBytes: number, log: StoreLogger): void {
  let volumeBytes: number;
  try {
    const fs = statfsSync(dirname(path));
    volumeBytes = fs.blocks * fs.bsize;
  } catch {
    return; // no statfs here: nothing to compare
  }
  if (volumeBytes < maxBytes) {
    log.warn({ spool: path, maxBytes, volumeBytes }, 'store.spool.maxBytes is larger than the spool\'s volume: during a long database outage the disk fills first (admissions then fail closed until the backlog is forwarded); give the volume room above the limit, or lower the limit');
  }
}

/** openStore's entry for postgres:// URLs: the spooled store from the server config. */
export async function openPostgresStore(config: Config, signingKey: SigningKey, logger: StoreLogger, onCommit?: CommitObserver): Promise<{ store: VerifiableStore; backlog: () => number; quarantined: () => number }> {
  parsePostgresUrl(config.store.url); // a malformed URL fails the start, not the forwarder
  mkdirSync(dirname(config.store.spool.path), { recursive: true });
  const store = await createSpooledPostgresStore({
    postgres: { url: config.store.url, replica: config.replica, signer: signingKey, checkpointEvery: config.store.checkpointEvery },
    spool: { path: config.store.spool.path, maxBytes: config.store.spool.maxBytes, ...(onCommit ? { onCommit } : {}) },
    logger,
  });
  return { store, backlog: () => store.backlog(), quarantined: () => store.quarantinedCount() };
}
