/**
 * The decision store port. Adapters: sqlite/ (embedded default), postgres/ (several replicas, behind
 * a local spool). Evidence (canonical JSON, chains, signing, bundles) lives in evidence/ apart from them.
 * Every adapter passes test/store/contract.ts.
 */
import type { ChainedRecord, DecisionRecord } from '../core/record.js';
import type { Verdict } from '../core/verdict.js';
import type { DecisionStats, StatsBucket, StatsFilter } from './stats.js';
import type { CheckedEvidence, VerifyResult } from './evidence/chain.js';
import type { CheckpointPage, CheckpointPageRequest } from './checkpoint-page.js';

/** Filters shared by the audit API and the CLI (parsed by `parseDecisionFilter` in query.ts). */
export interface DecisionFilter {
  namespace?: string;
  /** `namespace/name` or bare name (matches any namespace). */
  serviceAccount?: string;
  verdict?: Verdict;
  /** Kind name, e.g. TaskRun, PipelineRun, Pod. */
  kind?: string;
  taskRun?: string;
  pipelineRun?: string;
  /** sha256 (64 lowercase hex) of the RFC 8785 JSON of the admitted object, as records carry it. */
  objectDigest?: string;
  /** RFC 3339 inclusive lower bound on `time`. */
  since?: string;
  /** RFC 3339 exclusive upper bound on `time`. */
  until?: string;
  /** Page size, 1..1000 (default 100). */
  limit: number;
  /** Opaque cursor from a previous page's `nextCursor`. */
  cursor?: string;
}

export interface DecisionPage {
  items: ChainedRecord[];
  nextCursor: string | null;
}

/** A signed statement: "writer W's chain had `size` records ending in `headHash` at `time`". */
export interface Checkpoint {
  writer: string;
  size: number;
  headHash: string;
  time: string;
  /** Compact JWS over the canonical JSON of {writer,size,headHash,time} (v2: also nsRoot, nsSize). */
  jws: string;
  /** v2: RFC 9162 Merkle root (hex) over the writer's namespace heads at `size` (evidence/merkle.ts). */
  nsRoot?: string;
  /** v2: number of namespace heads (leaves) under nsRoot. */
  nsSize?: number;
}

/**
 * Told about every durable commit of a store's writer thread (the SQLite store's transaction, the
 * PostgreSQL store's spool transaction): its wall time from BEGIN IMMEDIATE (lock wait included)
 * to COMMIT returning (the fsync included), and how many records it held. Runs on the request
 * side's event loop, once per transaction: it must only count (the server feeds its
 * tzw_store_commit_* histograms with it).
 */
export type CommitObserver = (commit: { seconds: number; records: number }) => void;

/**
 * How an append's caller cancels it: an AbortSignal fits, and so does the admission route's
 * lighter per-request deadline (no EventTarget). Adapters read `aborted` and add one 'abort' listener.
 */
export interface AppendSignal {
  readonly aborted: boolean;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
}

export interface AppendOptions {
  /**
   * Aborting cancels the append if the writer has not yet taken the record into a transaction:
   * it is then never stored and the append rejects at once with ERR_STORE_CANCELLED. Once the
   * record is in a transaction the abort changes nothing: the append settles with its commit.
   * Adapters that cannot cancel ignore the signal (the caller must then assume a late commit).
   */
  signal?: AppendSignal;
  /**
   * The record's `patch` as RFC 8785 JSON text, when the caller already serialised it (the
   * admission route does, for the response, and passes it only when isCanonicalOrder(patch)).
   * Adapters may hash and store this text instead of serialising the patch again; they must
   * treat it as exactly the canonical form of `record.patch`. Others ignore it.
   */
  patchJson?: string;
}

export interface DecisionStore {
  /**
   * Appends a record to this writer's chain and resolves once it is durably committed (concurrent
   * calls share a commit). Rejects with an Error whose `code` is `ERR_STORE_UNAVAILABLE` when the
   * record could not be made durable; the caller then fails the admission closed.
   */
  append(record: DecisionRecord, opts?: AppendOptions): Promise<ChainedRecord>;
  get(id: string): Promise<ChainedRecord | undefined>;
  query(filter: DecisionFilter): Promise<DecisionPage>;
  /** Streams every matching record in order, ignoring limit/cursor (exports, verify). */
  stream(filter: Omit<DecisionFilter, 'limit' | 'cursor'>): AsyncIterable<ChainedRecord>;
  checkpoints(): Promise<Checkpoint[]>;
  /** True while the last write succeeded (readiness). */
  writable(): boolean;
  /** While not writable: why, for /readyz (e.g. "decision store /var/lib/tzw/decisions.db full (SQLITE_FULL)"); optional. */
  unwritableReason?(): string | undefined;
  close(): Promise<void>;
}

/**
 * A signed retention marker: "writer W's records 1..seq were pruned; the last one hashed `hash`".
 * Verification of that writer's chain starts here instead of at genesis.
 */
export interface Anchor {
  writer: string;
  seq: number;
  hash: string;
  time: string;
  /** Compact JWS (typ `tzw-anchor`) over the canonical JSON of {writer,seq,hash,time}. */
  jws: string;
}

/**
 * One stored record as read for verification. `body`, when given, is the exact canonical JSON
 * (without `hash`) the adapter stored and hashed; `problem` is an adapter-level inconsistency
 * (e.g. an index column that no longer matches the record), reported as this record's fault.
 */
export interface ChainEntry {
  record: ChainedRecord;
  body?: string;
  problem?: string;
}

/** How an adapter's own chain verification runs (VerifiableStore.verifyChains). */
export interface ChainVerifyOptions {
  /** Worker threads (default: the machine's available parallelism). */
  workers?: number;
  /** Records per range at least (ranges end at signed checkpoints); default: a few ranges per worker. */
  rangeRecords?: number;
  /** Records verified so far; may return a promise (await it) or throw to stop the work. */
  onRecords?: (done: number) => void | Promise<void>;
}

export interface PruneResult {
  /** Records deleted. */
  deleted: number;
  /** One new anchor per writer that lost records. */
  anchors: Anchor[];
}

/**
 * A decision the shared store refused (its id holds another decision there, or it failed the shared
 * store's checks), kept out of every chain instead of deleted: the record as it was chained when
 * admitted (original seq, prevHash and hash), why it was refused, and when (RFC 3339).
 */
export interface QuarantinedRecord {
  record: ChainedRecord;
  reason: string;
  time: string;
  /** Only for a record that could not be read at all: the stored text as found (`record` then holds id, replica, seq and hash only). */
  body?: string;
}

/** What verification, export and retention need on top of the request-path port. */
export interface VerifiableStore extends DecisionStore {
  /** Quarantined records (PostgreSQL behind a spool only; absent or empty elsewhere), oldest first. */
  quarantined?(): Promise<QuarantinedRecord[]>;
  anchors(): Promise<Anchor[]>;
  /** How many records the store holds (a cheap COUNT), for progress totals; optional. */
  count?(): Promise<number>;
  /** Every record, ordered by writer then seq (chain order), with flat memory. */
  streamChain(): AsyncIterable<ChainEntry>;
  /**
   * Verdict counts per time bucket and namespace, the top unmapped ServiceAccounts and the records
   * per writer for a filter (GET /api/v1/stats): SQL GROUP BY in the database, no records shipped.
   */
  loadStats(filter: StatsFilter, bucket: StatsBucket): Promise<DecisionStats>;
  /** Deletes records whose `time` is before `olderThan` (RFC 3339) and writes a signed anchor per writer. */
  prune(olderThan: string): Promise<PruneResult>;
  /**
   * Verifies every chain itself, faster than streamChain() allows (SQLite: on worker threads, no
   * record parsed on the fast path; sqlite/verify.ts), against `evidence` (every checkpoint and
   * anchor, signatures already checked). Must answer exactly what verifying streamChain() would;
   * `sequential` is that verification, for the adapter to fall back on.
   */
  verifyChains?(evidence: CheckedEvidence, opts: ChainVerifyOptions, sequential: () => Promise<VerifyResult>): Promise<VerifyResult>;
  /** One page of checkpoints in (writer, size) order (checkpoint-page.ts); without it the API pages checkpoints() in memory. */
  checkpointPage?(req: CheckpointPageRequest): Promise<CheckpointPage>;
  /** v2: the namespace heads the checkpoint (writer, size) committed to, as persisted with it ([] for a v1 checkpoint). */
  checkpointHeads?(writer: string, size: number): Promise<Array<{ namespace: string; nsSeq: number; nsHeadHash: string }>>;
}
