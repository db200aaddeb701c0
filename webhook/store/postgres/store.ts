/**
 * The shared decision store: one PostgreSQL database written by several replicas. Each replica
 * (writer) appends its own hash chain (writer, seq) and signs its own checkpoints; reads, streams,
 * checkpoints and anchors span every writer. Same schema ideas and the same cursor encoding as the
 * SQLite adapter, so the audit API and the CLI cannot tell them apart.
 *
 * Writes use group commit: appends arriving while a commit is in flight are written together by the
 * next one, as a single `INSERT ... SELECT FROM unnest(...)` statement (one round trip, about ten
 * times faster than row inserts: reference/stack-probe.md §7).
 *
 * Two write paths:
 * - `append(record)` chains the record after this writer's head (the request-path port);
 * - `appendChained(records)` stores records already chained elsewhere (the local spool of
 *   postgres-open.ts), idempotent by id: a record PostgreSQL already holds is skipped, so a batch
 *   re-sent after a lost acknowledgement is harmless.
 */
import pg from 'pg';
import type { ChainedRecord, DecisionRecord } from '../../core/record.js';
import { canonicalJson, GENESIS_HASH, toChainedRecord, sha256Hex } from '../evidence/chain.js';
import { chainNamespaceRecord, type NamespaceChainHead, type NamespaceLink } from '../evidence/link.js';
import { toStoredBody } from '../evidence/body-codec.js';
import { toNamespaceRoot, type NamespaceHead } from '../evidence/merkle.js';
import { toDigestBytes, toDigestBytesOfStoredBody } from '../evidence/object-digest.js';
import type { Anchor, AppendOptions, ChainEntry, Checkpoint, DecisionFilter, DecisionPage, PruneResult, VerifiableStore } from '../port.js';
import { checkRecordShape as checkSharedShape, duplicateIdError, SA_INDEX_PROBLEM, storeError, toBodyText, toChainEntry, toChained, toColumnsProblem, toPage, toPageRequest, toUnmappedColumn, unchainableError, type DecisionRow, type IndexColumns, type StoreError } from '../rows.js';
import { EQUALITY_FILTER_COLUMNS, toCanonicalTime, toSqlParam, type Cursor } from '../query.js';
import { toDecisionStats, toRollupDdl, toRollupDeltaSql, toStatsSql, type DecisionStats, type StatsBucket, type StatsFilter, type StatsRows, type StatsTables } from '../stats.js';
import { ANCHOR_TYP, CHECKPOINT_TYP, type Signer } from '../evidence/signing.js';
import type { StoreLogger } from '../sqlite/store.js';
import { appendQuarantined, readQuarantined } from './quarantine.js';
import type { QuarantinedRecord } from '../port.js';

export const DEFAULT_CHECKPOINT_RECORDS = 1000;
export const DEFAULT_CHECKPOINT_SECONDS = 60;
export const DEFAULT_POOL_SIZE = 10;
export const DEFAULT_CONNECT_TIMEOUT_MS = 5000;
/** Server-side limit per statement; a stuck statement must not hold the write path forever. */
export const DEFAULT_STATEMENT_TIMEOUT_MS = 30_000;
export const DEFAULT_RECOVERY_PROBE_MS = 1000;
/** Records per INSERT: bounded statement size (records are ~2 KiB). */
export const MAX_BATCH = 500;
const READ_CHUNK = 1000;
const PRUNE_CHUNK = 5000;
const WRITE_ATTEMPTS = 3;
/** Writer id of a read-only handle; it never appends, so it never starts a chain. */
export const READER_ID = 'tzw-reader';
const APPLICATION_NAME = 'tekton-zscaler-webhook';

function pgCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
}

function pgConstraint(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'constraint' in err ? String((err as { constraint: unknown }).constraint) : undefined;
}

/**
 * A pooled client checked out for a transaction. pg-pool removes its own error listener while a
 * client is checked out, and pg emits 'error' on the client when the socket fails (even during a
 * query): without a listener that is an uncaught exception that ends the process. `done` returns
 * the client, destroying it when it broke.
 */
async function checkout(pool: pg.Pool): Promise<{ client: pg.PoolClient; done(broken?: boolean): void }> {
  const client = await pool.connect();
  let failed = false;
  const onError = (): void => {
    failed = true; // the query in flight rejects with the same error; the caller handles it there
  };
  client.on('error', onError);
  return {
    client,
    done(broken = false) {
      client.removeListener('error', onError);
      client.release(broken || failed);
    },
  };
}

const UNIQUE_VIOLATION = '23505';
const PK_CONSTRAINT = 'decisions_pkey';
const WRITER_SEQ_CONSTRAINT = 'decisions_writer_seq';

/** Client-side bound on one migration step (a backfill of millions of records takes minutes). */
const MIGRATION_QUERY_TIMEOUT_MS = 6 * 3_600_000;

/** The stats tables (stats.ts ROLLUPS) under schema prefix `q`. */
function pgStatsTables(q: string): StatsTables {
  return { decisions: `${q}decisions`, sas: `${q}decision_sas`, checkpoints: `${q}checkpoints`, hourly: `${q}counts_ns_hour`, daily: `${q}counts_ns_day`, cluster: `${q}counts_hour`, unmapped: `${q}unmapped_hour` };
}

/** SQL for each schema version; `q` is the quoted schema prefix (`"tzw".`) or ''. */
const MIGRATIONS: Array<(q: string) => string> = [
  (q) => `
  CREATE TABLE ${q}decisions (
    id text COLLATE "C" NOT NULL,
    writer text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    time text COLLATE "C" NOT NULL,
    namespace text COLLATE "C" NOT NULL,
    kind text COLLATE "C" NOT NULL,
    verdict text COLLATE "C" NOT NULL,
    service_accounts text NOT NULL,
    task_run text COLLATE "C",
    pipeline_run text COLLATE "C",
    prev_hash text NOT NULL,
    hash text NOT NULL,
    record text NOT NULL,
    CONSTRAINT ${PK_CONSTRAINT} PRIMARY KEY (id),
    CONSTRAINT ${WRITER_SEQ_CONSTRAINT} UNIQUE (writer, seq)
  );
  CREATE INDEX decisions_time ON ${q}decisions (time, id);
  CREATE INDEX decisions_namespace ON ${q}decisions (namespace, time, id);
  CREATE INDEX decisions_verdict ON ${q}decisions (verdict, time, id);
  CREATE INDEX decisions_kind ON ${q}decisions (kind, time, id);
  CREATE INDEX decisions_task_run ON ${q}decisions (task_run, time, id) WHERE task_run IS NOT NULL;
  CREATE INDEX decisions_pipeline_run ON ${q}decisions (pipeline_run, time, id) WHERE pipeline_run IS NOT NULL;
  -- One row per ServiceAccount of a record under two keys, "namespace/name" and the bare "name",
  -- so both filter forms are one index range in (time, id) order.
  CREATE TABLE ${q}decision_sas (
    key text COLLATE "C" NOT NULL,
    time text COLLATE "C" NOT NULL,
    decision_id text COLLATE "C" NOT NULL,
    PRIMARY KEY (key, time, decision_id)
  );
  CREATE INDEX decision_sas_decision ON ${q}decision_sas (decision_id);
  CREATE TABLE ${q}checkpoints (
    writer text COLLATE "C" NOT NULL,
    size bigint NOT NULL,
    head_hash text NOT NULL,
    time text NOT NULL,
    jws text NOT NULL,
    PRIMARY KEY (writer, size)
  );
  CREATE TABLE ${q}anchors (
    writer text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    hash text NOT NULL,
    time text NOT NULL,
    jws text NOT NULL,
    PRIMARY KEY (writer, seq)
  );
  `,
  // Record format v2 (docs/record-format-v2.md), as on SQLite: namespace chains per writer
  // (ns_seq; the heads kept in ns_heads so pruning never restarts a namespace chain), the stored
  // body compressed (evidence/body-codec.ts; column record is '' on v2 rows, v1 rows keep their text
  // and verify as before), the unmapped ServiceAccounts stats read, and the namespace heads each
  // checkpoint commits to (nsRoot/nsSize). Columns are added without a default: no table rewrite.
  (q) => `
  ALTER TABLE ${q}decisions ADD COLUMN ns_seq bigint, ADD COLUMN body bytea, ADD COLUMN unmapped text;
  CREATE INDEX decisions_ns_chain ON ${q}decisions (writer, namespace, ns_seq) WHERE ns_seq IS NOT NULL;
  CREATE TABLE ${q}ns_heads (
    writer text COLLATE "C" NOT NULL,
    namespace text COLLATE "C" NOT NULL,
    ns_seq bigint NOT NULL,
    hash text NOT NULL,
    PRIMARY KEY (writer, namespace)
  );
  ALTER TABLE ${q}checkpoints ADD COLUMN ns_root text, ADD COLUMN ns_size integer;
  CREATE TABLE ${q}checkpoint_ns_heads (
    writer text COLLATE "C" NOT NULL,
    size bigint NOT NULL,
    namespace text COLLATE "C" NOT NULL,
    ns_seq bigint NOT NULL,
    ns_head_hash text NOT NULL,
    PRIMARY KEY (writer, size, namespace)
  );
  `,
  // Queries at a million records (issues 10 and 11), as on SQLite (sqlite/store.ts migration 3):
  // the objectDigest filter's column and index, the namespace and verdict indexes carrying the
  // columns a second filter and the per-namespace stats read, and the stats rollups (stats.ts
  // ROLLUPS), kept by statement triggers over the rows each INSERT/DELETE touched (same transaction,
  // so exact), backfilled once here (the digests of v2 rows, inside their compressed bodies, by
  // backfillDigests after this step). The triggers derive the unmapped accounts as stats.ts does for
  // both row forms (v1 JSON text, v2 `unmapped` column): a new record format must replace them.
  (q) => {
    const t = pgStatsTables(q);
    const fn = (name: string, from: string, sign: 1 | -1) => `
  CREATE FUNCTION ${q}${name}() RETURNS trigger LANGUAGE plpgsql AS $fn$
  BEGIN
    ${toRollupDeltaSql('postgres', t, from, 'true', sign).join(';\n    ')};
    RETURN NULL;
  END $fn$;`;
    return `
  ALTER TABLE ${q}decisions ADD COLUMN object_digest bytea;
  UPDATE ${q}decisions SET object_digest = decode(record::jsonb ->> 'objectDigest', 'hex') WHERE body IS NULL AND (record::jsonb ->> 'objectDigest') ~ '^[0-9a-f]{64}$';
  CREATE INDEX decisions_object_digest ON ${q}decisions (object_digest);
  DROP INDEX ${q}decisions_namespace;
  CREATE INDEX decisions_namespace ON ${q}decisions (namespace, time, id) INCLUDE (verdict, kind, writer);
  DROP INDEX ${q}decisions_verdict;
  CREATE INDEX decisions_verdict ON ${q}decisions (verdict, time, id) INCLUDE (namespace, kind);
  ${toRollupDdl('postgres', t)}
  ${toRollupDeltaSql('postgres', t, `${q}decisions d`, 'true', 1).join(';\n  ')};
  ${fn('decisions_rollup_add', 'new_rows d', 1)}
  ${fn('decisions_rollup_subtract', 'old_rows d', -1)}
  CREATE TRIGGER decisions_rollup_add AFTER INSERT ON ${q}decisions REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ${q}decisions_rollup_add();
  CREATE TRIGGER decisions_rollup_subtract AFTER DELETE ON ${q}decisions REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION ${q}decisions_rollup_subtract();
  ANALYZE ${q}decisions;
  `;
  },
  // Stats for a ServiceAccount (issue 10), as on SQLite (sqlite/store.ts migration 4): each account
  // index row carries the record's columns the stats group and filter by (stats.ts SAS_COLUMNS),
  // and the primary key INCLUDEs them, so an account's stats are one index-only range scan that
  // never reads the records. Filled from the records; rows of no record (none are written) dropped.
  (q) => `
  ALTER TABLE ${q}decision_sas ADD COLUMN namespace text COLLATE "C", ADD COLUMN kind text COLLATE "C", ADD COLUMN verdict text COLLATE "C", ADD COLUMN writer text COLLATE "C";
  UPDATE ${q}decision_sas s SET namespace = d.namespace, kind = d.kind, verdict = d.verdict, writer = d.writer FROM ${q}decisions d WHERE d.id = s.decision_id;
  DELETE FROM ${q}decision_sas WHERE namespace IS NULL;
  ALTER TABLE ${q}decision_sas ALTER COLUMN namespace SET NOT NULL, ALTER COLUMN kind SET NOT NULL, ALTER COLUMN verdict SET NOT NULL, ALTER COLUMN writer SET NOT NULL,
    DROP CONSTRAINT decision_sas_pkey, ADD CONSTRAINT decision_sas_pkey PRIMARY KEY (key, time, decision_id) INCLUDE (namespace, kind, verdict, writer);
  ANALYZE ${q}decision_sas;
  `,
];
/** Schema SQL per version, exported for the migration test (a store created by an older build). */
export const SCHEMA_MIGRATIONS: ReadonlyArray<(q: string) => string> = MIGRATIONS;
export const SCHEMA_VERSION = MIGRATIONS.length;

export interface PostgresStoreOptions {
  /** `postgres://…`; a `schema` query parameter selects the schema (see parsePostgresUrl). */
  url?: string;
  /** A pool owned by the caller (not ended by close()); used instead of `url`. */
  pool?: pg.Pool;
  /** This process's writer id; appended records must carry it as `replica`. */
  replica: string;
  /** Signs checkpoints and anchors; required unless `readonly`. */
  signer?: Signer;
  /** Read only (CLI list/get/export/verify): nothing is created, appends and prune are refused. */
  readonly?: boolean;
  /** Schema holding the tables (created when missing); default: the connection's search_path. */
  schema?: string;
  checkpointEvery?: { records?: number; seconds?: number };
  clock?: () => Date;
  logger?: StoreLogger;
  poolSize?: number;
  connectTimeoutMs?: number;
  statementTimeoutMs?: number;
  /** While unwritable, how often a probe checks whether PostgreSQL takes writes again. */
  recoveryProbeMs?: number;
  /**
   * Behind the local spool (postgres-open.ts): the spool decides readiness and the forwarder
   * retries and logs outages, so this store neither probes nor logs its own write failures.
   */
  behindSpool?: boolean;
}

export interface PostgresStore extends VerifiableStore {
  readonly replica: string;
  /** This writer's chain head as committed. */
  head(): { seq: number; hash: string };
  /** A writer's head as stored: its last record, or its latest anchor when everything was pruned. */
  writerHead(writer: string): Promise<{ seq: number; hash: string }>;
  /** A writer's namespace chain heads as stored (kept through pruning), by namespace. */
  writerNamespaceHeads(writer: string): Promise<Map<string, NamespaceChainHead>>;
  /** The namespace heads checkpoint (writer, size) committed to ([] for a v1 checkpoint). */
  checkpointHeads(writer: string, size: number): Promise<NamespaceHead[]>;
  /** The v2 records of `namespace` on `writer` after nsSeq `afterNsSeq`, in nsSeq order. */
  namespaceRecords(writer: string, namespace: string, afterNsSeq: number): AsyncIterable<ChainedRecord>;
  /** The namespace's current head nsSeq on every writer that has written v2 records of it (ns_heads). */
  namespaceHeads(namespace: string): Promise<Array<{ writer: string; nsSeq: number }>>;
  /**
   * Stores records chained elsewhere (seq, prevHash, hash set), in one transaction, idempotent by id:
   * a record whose id is stored with the same writer, seq and hash is skipped. Errors (by `code`):
   * ERR_STORE_INVALID_RECORD (malformed, or its hash does not match its content),
   * ERR_STORE_DUPLICATE_ID (an id is stored as a different record; `duplicates` lists them),
   * ERR_STORE_CHAIN_CONFLICT (another record holds the same writer and seq),
   * ERR_STORE_UNAVAILABLE (PostgreSQL could not commit). Nothing is stored on error.
   * `bodies[i]`, when given, is the text records[i] was parsed from and hashed as (the spool's
   * stored canonical body): its hash is checked on that text instead of re-serialising the record.
   */
  appendChained(records: ChainedRecord[], bodies?: Array<string | undefined>): Promise<{ inserted: number; skipped: number }>;
  /** Where each id is stored ({writer, seq, hash}); absent ids are missing from the map. */
  locate(ids: string[]): Promise<Map<string, { writer: string; seq: number; hash: string }>>;
  /** Signs and stores a checkpoint now if this writer's head moved since the last one. */
  checkpointNow(): Promise<Checkpoint | undefined>;
  /** Stores copies of records a spool quarantined (quarantine.ts), idempotent; throws ERR_STORE_UNAVAILABLE. */
  appendQuarantined(entries: QuarantinedRecord[]): Promise<void>;
  /** Every quarantined record this database holds (from any replica), oldest first. */
  quarantined(): Promise<QuarantinedRecord[]>;
}

/**
 * Splits a store URL into what pg accepts and our own `schema` parameter
 * (`postgres://user:pw@host/db?schema=tzw`). Throws ERR_STORE_URL for a non-postgres URL or a
 * schema name that is not a plain identifier.
 */
export function parsePostgresUrl(url: string): { connectionString: string; schema?: string } {
  let u: URL;
  try {
    u = new URL(url);
  } catch (err) {
    throw storeError('ERR_STORE_URL', 'the store URL is not a valid postgres:// URL', err);
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') throw storeError('ERR_STORE_URL', `the store URL must start with postgres://, not ${u.protocol}//`);
  const schema = u.searchParams.get('schema') ?? undefined;
  u.searchParams.delete('schema');
  if (schema !== undefined) checkIdentifier(schema);
  return schema === undefined ? { connectionString: u.toString() } : { connectionString: u.toString(), schema };
}

function checkIdentifier(name: string): void {
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(name)) {
    throw storeError('ERR_STORE_CONFIG', `schema "${name}" must be a plain identifier (letters, digits, _; at most 63)`);
  }
}

/** URL for logs: the password replaced. */
function describeUrl(url: string | undefined): string {
  if (!url) return 'PostgreSQL';
  return url.replace(/\/\/([^:@/]*)(:[^@/]*)?@/, '//$1:***@').replace(/\?.*$/, '');
}

interface Pending {
  record: DecisionRecord;
  time: string;
  resolve(r: ChainedRecord): void;
  reject(e: Error): void;
}

/** One row as inserted: the record's index columns, chain fields and exact canonical body. */
interface Row extends IndexColumns {
  writer: string;
  seq: number;
  time: string;
  prevHash: string;
  hash: string;
  /** v1 rows: the canonical body text; v2 rows: '' (the body is in `stored`). */
  record: string;
  /** v2 rows: the canonical body compressed (evidence/body-codec.ts); null for v1. */
  stored: Buffer | null;
  nsSeq: number | null;
  unmapped: string | null;
  saKeys: string[];
  /** The object_digest column as hex (decoded to bytes in SQL), null when the record has no sha256 digest. */
  objectDigest: string | null;
}

/** The object_digest column's value (hex) for a record's objectDigest (toDigestBytes). */
function digestHexOf(digest: unknown): string | null {
  return toDigestBytes(digest) === null ? null : (digest as string);
}

const noopLogger: StoreLogger = { info() {}, warn() {}, error() {} };

// PostgreSQL text cannot hold U+0000, and a lone surrogate would be re-encoded as U+FFFD. Index
// columns carrying such a value (only ever from malformed input) store its JSON form instead, so the
// row is still written (a poison record must never block the write path or the spool forwarder) and
// verification still compares like with like. Valid filters never match these values anyway.
const UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** The value stored in an index column for `v`. */
export function toIndexText(v: string): string {
  return UNSTORABLE.test(v) ? JSON.stringify(v) : v;
}

/** The value `toIndexText` stored (a namespace read back from ns_heads or checkpoint_ns_heads). */
function fromIndexText(v: string): string {
  if (!v.startsWith('"')) return v;
  try {
    const parsed: unknown = JSON.parse(v);
    return typeof parsed === 'string' && UNSTORABLE.test(parsed) ? parsed : v;
  } catch {
    return v;
  }
}

function toIndexOrNull(v: unknown): string | null {
  return typeof v === 'string' ? toIndexText(v) : null;
}

/** Index keys of a record's ServiceAccounts: "ns/name" and "name" for each, deduplicated. */
function saKeysOf(serviceAccounts: string[]): string[] {
  const keys = new Set<string>();
  for (const sa of serviceAccounts) {
    keys.add(toIndexText(sa));
    const slash = sa.indexOf('/');
    if (slash >= 0) keys.add(toIndexText(sa.slice(slash + 1)));
  }
  return [...keys].sort();
}

/**
 * Checks what the index columns are derived from; returns a problem or the canonical time. The
 * spool applies the same check, so nothing it acknowledges is refused when forwarded.
 */
/** The shared shape check, plus what PostgreSQL text cannot hold in an id (NUL, lone surrogates). */
export function checkRecordShape(record: DecisionRecord): { time: string } | string {
  if (typeof record === 'object' && record !== null && typeof record.id === 'string' && UNSTORABLE.test(record.id)) return 'id must be a non-empty string';
  return checkSharedShape(record);
}

/**
 * The row of a chained record: v2 (it has nsSeq) stores the canonical body compressed, v1 (written
 * before the change, forwarded from an old spool) its text as before.
 */
function toRow(r: DecisionRecord & { nsSeq?: unknown }, time: string, seq: number, prevHash: string, body: string, hash: string): Row {
  const v2 = typeof r.nsSeq === 'number';
  return {
    id: r.id,
    writer: toIndexText(r.replica),
    seq,
    time,
    namespace: toIndexText(r.namespace),
    kind: toIndexText(r.kind.kind),
    verdict: toIndexText(r.verdict),
    serviceAccounts: JSON.stringify(r.serviceAccounts),
    taskRun: toIndexOrNull(r.tekton?.taskRun),
    pipelineRun: toIndexOrNull(r.tekton?.pipelineRun),
    prevHash,
    hash,
    record: v2 ? '' : body,
    stored: v2 ? toStoredBody(body) : null,
    nsSeq: v2 ? (r.nsSeq as number) : null,
    unmapped: v2 ? toUnmappedColumn(r) : null,
    saKeys: saKeysOf(r.serviceAccounts),
    objectDigest: digestHexOf(r.objectDigest),
  };
}

type ScanFilter = Omit<DecisionFilter, 'limit' | 'cursor'>;

class PostgresDecisionStore implements PostgresStore {
  readonly replica: string;
  private readonly pool: pg.Pool;
  private readonly ownsPool: boolean;
  /** Schema prefix (`"schema".` or '') for tables outside the versioned schema (quarantine.ts). */
  private readonly q: string;
  private readonly where: string;
  private readonly signer: Signer | undefined;
  private readonly readonly: boolean;
  private readonly clock: () => Date;
  private readonly log: StoreLogger;
  private readonly cpRecords: number;
  private readonly t: { decisions: string; sas: string; checkpoints: string; anchors: string; nsHeads: string; cpHeads: string; schemaTag: string };
  private readonly sql: { insert: (ignore: boolean) => string };
  private chainHead = { seq: 0, hash: GENESIS_HASH };
  /** This writer's namespace chain heads as committed (at chainHead): what a checkpoint commits to. */
  private nsHeads = new Map<string, NamespaceChainHead>();
  private lastCheckpointSize = 0;
  private queue: Pending[] = [];
  private flushScheduled = false;
  /** Serialises writes: the chain head moves one commit at a time. */
  private writing: Promise<unknown> = Promise.resolve();
  private isWritable: boolean;
  private reloadHead = false;
  private closed = false;
  /** Set when close() starts: new writes are refused, reads go on until the pool ends. */
  private stopping = false;
  private closing: Promise<void> | undefined;
  private cpInFlight: Promise<Checkpoint | undefined> | undefined;
  private cpFailing = false;
  private readonly cpTimer: NodeJS.Timeout | undefined;
  private readonly recoveryProbeMs: number;
  private readonly behindSpool: boolean;
  private probeTimer: NodeJS.Timeout | undefined;
  private probing = false;

  constructor(pool: pg.Pool, ownsPool: boolean, q: string, where: string, opts: PostgresStoreOptions) {
    this.pool = pool;
    this.ownsPool = ownsPool;
    this.q = q;
    this.where = where;
    this.replica = opts.replica;
    this.signer = opts.signer;
    this.readonly = opts.readonly ?? false;
    this.clock = opts.clock ?? (() => new Date());
    this.log = opts.logger ?? noopLogger;
    this.cpRecords = opts.checkpointEvery?.records ?? DEFAULT_CHECKPOINT_RECORDS;
    this.isWritable = !this.readonly;
    this.recoveryProbeMs = opts.recoveryProbeMs ?? DEFAULT_RECOVERY_PROBE_MS;
    this.behindSpool = opts.behindSpool ?? false;
    this.t = {
      decisions: `${q}decisions`,
      sas: `${q}decision_sas`,
      checkpoints: `${q}checkpoints`,
      anchors: `${q}anchors`,
      nsHeads: `${q}ns_heads`,
      cpHeads: `${q}checkpoint_ns_heads`,
      schemaTag: q || 'search_path',
    };
    const D = this.t.decisions;
    const S = this.t.sas;
    const H = this.t.nsHeads;
    this.sql = {
      // One statement: atomic on its own, one round trip. The decision_sas rows and the namespace
      // chain heads are derived from the rows really inserted (RETURNING), so a skipped duplicate
      // adds none; a head only moves forward.
      insert: (ignore) => `
        WITH ins AS (
          INSERT INTO ${D} (id, writer, seq, time, namespace, kind, verdict, service_accounts, task_run, pipeline_run, prev_hash, hash, record, ns_seq, body, unmapped, object_digest)
          SELECT u.id, u.writer, u.seq, u.time, u.namespace, u.kind, u.verdict, u.sas, u.task_run, u.pipeline_run, u.prev_hash, u.hash, u.record, u.ns_seq, u.body, u.unmapped, decode(u.digest, 'hex')
          FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::bigint[], $15::bytea[], $16::text[], $19::text[])
            AS u(id, writer, seq, time, namespace, kind, verdict, sas, task_run, pipeline_run, prev_hash, hash, record, ns_seq, body, unmapped, digest)
          ${ignore ? 'ON CONFLICT (id) DO NOTHING' : ''}
          RETURNING id, time, writer, namespace, kind, verdict, ns_seq, hash
        ), sas AS (
          INSERT INTO ${S} (key, time, decision_id, namespace, kind, verdict, writer)
          SELECT k.key, ins.time, ins.id, ins.namespace, ins.kind, ins.verdict, ins.writer FROM unnest($17::text[], $18::text[]) AS k(id, key) JOIN ins ON ins.id = k.id
        ), heads AS (
          INSERT INTO ${H} AS h (writer, namespace, ns_seq, hash)
          SELECT DISTINCT ON (writer, namespace) writer, namespace, ns_seq, hash FROM ins WHERE ns_seq IS NOT NULL ORDER BY writer, namespace, ns_seq DESC
          ON CONFLICT (writer, namespace) DO UPDATE SET ns_seq = excluded.ns_seq, hash = excluded.hash WHERE h.ns_seq < excluded.ns_seq
        )
        SELECT id FROM ins`,
    };
    if (!this.readonly) {
      const seconds = opts.checkpointEvery?.seconds ?? DEFAULT_CHECKPOINT_SECONDS;
      this.cpTimer = setInterval(() => this.triggerCheckpoint(), seconds * 1000);
      this.cpTimer.unref();
    }
  }

  private unavailable(what: string, err: unknown): StoreError {
    return storeError('ERR_STORE_UNAVAILABLE', `the decision store ${this.where} ${what}: ${(err as Error).message}`, err);
  }

  private nowText(): string {
    return toCanonicalTime(this.clock().toISOString()) ?? this.clock().toISOString();
  }

  async loadHead(): Promise<void> {
    this.chainHead = await this.writerHead(this.replica);
    this.nsHeads = await this.writerNamespaceHeads(this.replica);
    const cp = await this.pool.query<{ size: string | null }>(`SELECT max(size) AS size FROM ${this.t.checkpoints} WHERE writer = $1`, [this.replica]);
    this.lastCheckpointSize = Number(cp.rows[0]?.size ?? 0);
  }

  async writerHead(writer: string): Promise<{ seq: number; hash: string }> {
    const res = await this.pool.query<{ seq: string; hash: string }>(
      `(SELECT seq, hash FROM ${this.t.decisions} WHERE writer = $1 ORDER BY seq DESC LIMIT 1)
       UNION ALL (SELECT seq, hash FROM ${this.t.anchors} WHERE writer = $1 ORDER BY seq DESC LIMIT 1)`,
      [toIndexText(writer)],
    );
    let top: { seq: number; hash: string } = { seq: 0, hash: GENESIS_HASH };
    for (const r of res.rows) if (Number(r.seq) > top.seq) top = { seq: Number(r.seq), hash: r.hash };
    return top;
  }

  async writerNamespaceHeads(writer: string): Promise<Map<string, NamespaceChainHead>> {
    const res = await this.pool.query<{ namespace: string; ns_seq: string; hash: string }>(`SELECT namespace, ns_seq, hash FROM ${this.t.nsHeads} WHERE writer = $1`, [toIndexText(writer)]);
    return new Map(res.rows.map((r) => [fromIndexText(r.namespace), { nsSeq: Number(r.ns_seq), hash: r.hash }]));
  }

  head(): { seq: number; hash: string } {
    return { ...this.chainHead };
  }

  writable(): boolean {
    return this.isWritable && !this.stopping;
  }

  append(record: DecisionRecord, opts?: AppendOptions): Promise<ChainedRecord> {
    if (this.stopping) return Promise.reject(storeError('ERR_STORE_UNAVAILABLE', `the decision store ${this.where} is closed`));
    if (this.readonly) return Promise.reject(storeError('ERR_STORE_READONLY', `the decision store ${this.where} was opened read-only`));
    const shape = checkRecordShape(record);
    if (typeof shape === 'string') return Promise.reject(storeError('ERR_STORE_INVALID_RECORD', `invalid decision record: ${shape}`));
    if (record.replica !== this.replica) {
      return Promise.reject(storeError('ERR_STORE_INVALID_RECORD', `invalid decision record: replica ${JSON.stringify(record.replica)} is not this store's writer "${this.replica}"`));
    }
    return new Promise<ChainedRecord>((resolve, reject) => {
      this.queue.push({ record, time: shape.time, resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        // setImmediate, not a microtask: every request handled in this turn of the event loop joins
        // the batch. Appends arriving while a commit is in flight wait for the next one.
        setImmediate(() => {
          this.flushScheduled = false;
          this.serial(() => this.flush());
        });
      }
    });
  }

  /** Runs `fn` after every earlier write finished; failures do not break the sequence. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.writing.then(fn);
    this.writing = run.catch(() => undefined);
    return run;
  }

  private async flush(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, MAX_BATCH);
      await this.commitBatch(batch);
    }
  }

  /** Chains `batch` after the head and inserts it; retries around duplicates and a moved head. */
  private async commitBatch(batch: Pending[]): Promise<void> {
    let todo = batch;
    for (let attempt = 1; todo.length > 0; attempt++) {
      try {
        if (this.reloadHead) {
          await this.loadHead();
          this.reloadHead = false;
        }
        const { rows, stored, rejected, nsMoved } = this.chainBatch(todo);
        for (const [p, e] of rejected) p.reject(e);
        if (rows.length === 0) return;
        await this.pool.query(this.sql.insert(false), insertParams(rows));
        const last = rows[rows.length - 1]!;
        this.chainHead = { seq: last.seq, hash: last.hash };
        for (const [ns, h] of nsMoved) this.nsHeads.set(ns, h);
        this.markWritable();
        for (const [p, r] of stored) p.resolve(r);
        if (this.chainHead.seq - this.lastCheckpointSize >= this.cpRecords) this.triggerCheckpoint();
        return;
      } catch (err) {
        const constraint = pgCode(err) === UNIQUE_VIOLATION ? pgConstraint(err) : undefined;
        if (attempt < WRITE_ATTEMPTS && constraint === PK_CONSTRAINT) {
          // An id is already stored: refuse those appends and chain the rest again, so the chain
          // never references a record that was not written.
          try {
            const found = await this.locate(todo.map((p) => p.record.id));
            todo = todo.filter((p) => {
              if (!found.has(p.record.id)) return true;
              p.reject(duplicateIdError(p.record.id));
              return false;
            });
            continue;
          } catch (lookupErr) {
            err = lookupErr;
          }
        } else if (attempt < WRITE_ATTEMPTS && constraint === WRITER_SEQ_CONSTRAINT) {
          // Another process appended to this writer's chain (two replicas with one writer id):
          // continue from what is really stored rather than fork it.
          this.log.error({ writer: this.replica, store: this.where }, 'another process is writing this replica\'s chain; give every replica its own writer id (TZW_REPLICA)');
          this.reloadHead = true;
          continue;
        }
        this.reloadHead = true;
        this.markUnwritable(err);
        const e = this.unavailable(`could not commit ${todo.length} record(s)`, err);
        for (const p of todo) p.reject(e);
        return;
      }
    }
  }

  /** Places `batch` after the head in record format v2 (namespace chains). */
  private chainBatch(batch: Pending[]): { rows: Row[]; stored: Array<[Pending, ChainedRecord]>; rejected: Array<[Pending, Error]>; nsMoved: Map<string, NamespaceChainHead> } {
    const rows: Row[] = [];
    const stored: Array<[Pending, ChainedRecord]> = [];
    const rejected: Array<[Pending, Error]> = [];
    const ids = new Set<string>();
    const nsMoved = new Map<string, NamespaceChainHead>();
    let { seq, hash: prev } = this.chainHead;
    for (const p of batch) {
      const r = p.record;
      if (ids.has(r.id)) {
        rejected.push([p, duplicateIdError(r.id)]);
        continue;
      }
      let link: NamespaceLink;
      let chained: ChainedRecord;
      try {
        link = chainNamespaceRecord(r, { seq, hash: prev }, nsMoved.get(r.namespace) ?? this.nsHeads.get(r.namespace));
        chained = toChainedRecord({ ...r, nsSeq: link.nsSeq, nsPrevHash: link.nsPrevHash }, link);
      } catch (err) {
        rejected.push([p, unchainableError(r.id, err)]);
        continue;
      }
      const { body, hash } = link;
      seq++;
      rows.push(toRow(chained, p.time, seq, prev, body, hash));
      stored.push([p, chained]);
      nsMoved.set(r.namespace, { nsSeq: link.nsSeq, hash });
      ids.add(r.id);
      prev = hash;
    }
    return { rows, stored, rejected, nsMoved };
  }

  appendChained(records: ChainedRecord[], bodies?: Array<string | undefined>): Promise<{ inserted: number; skipped: number }> {
    if (this.stopping) return Promise.reject(storeError('ERR_STORE_UNAVAILABLE', `the decision store ${this.where} is closed`));
    if (this.readonly) return Promise.reject(storeError('ERR_STORE_READONLY', `the decision store ${this.where} was opened read-only`));
    const rows: Row[] = [];
    for (const [i, rec] of records.entries()) {
      const shape = checkRecordShape(rec);
      const bad = (why: string) => Promise.reject(Object.assign(storeError('ERR_STORE_INVALID_RECORD', `invalid chained decision record ${String(rec?.id)}: ${why}`), { id: rec?.id }));
      if (typeof shape === 'string') return bad(shape);
      if (!Number.isSafeInteger(rec.seq) || rec.seq < 1 || typeof rec.prevHash !== 'string' || typeof rec.hash !== 'string') return bad('seq, prevHash and hash must be set');
      const { hash, ...rest } = rec;
      let body: string;
      try {
        body = bodies?.[i] ?? canonicalJson(rest);
      } catch (err) {
        return bad((err as Error).message);
      }
      if (sha256Hex(rec.prevHash + body) !== hash) return bad('its hash does not match its content');
      rows.push(toRow(rec, shape.time, rec.seq, rec.prevHash, body, hash));
    }
    if (rows.length === 0) return Promise.resolve({ inserted: 0, skipped: 0 });
    return this.serial(() => this.insertChained(rows));
  }

  private async insertChained(rows: Row[]): Promise<{ inserted: number; skipped: number }> {
    let client: pg.PoolClient;
    let done: (broken?: boolean) => void;
    try {
      ({ client, done } = await checkout(this.pool));
    } catch (err) {
      this.markUnwritable(err);
      throw this.unavailable('cannot connect', err);
    }
    let broken = false;
    try {
      await client.query('BEGIN');
      const inserted = new Set<string>();
      for (let i = 0; i < rows.length; i += MAX_BATCH) {
        const res = await client.query<{ id: string }>(this.sql.insert(true), insertParams(rows.slice(i, i + MAX_BATCH)));
        for (const r of res.rows) inserted.add(r.id);
      }
      const skipped = rows.filter((r) => !inserted.has(r.id));
      if (skipped.length > 0) {
        // Skipped ids must be exactly these records (a re-sent batch); an id stored as another record
        // would leave a hole in this chain, so the whole batch is refused.
        const found = await client.query<{ id: string; writer: string; seq: string; hash: string }>(`SELECT id, writer, seq, hash FROM ${this.t.decisions} WHERE id = ANY($1::text[])`, [skipped.map((r) => r.id)]);
        const byId = new Map(found.rows.map((f) => [f.id, f]));
        const duplicates = skipped.filter((r) => {
          const f = byId.get(r.id);
          return !f || f.writer !== r.writer || Number(f.seq) !== r.seq || f.hash !== r.hash;
        });
        if (duplicates.length > 0) {
          await client.query('ROLLBACK');
          throw Object.assign(
            storeError('ERR_STORE_DUPLICATE_ID', `decision id${duplicates.length > 1 ? 's' : ''} ${duplicates.map((d) => d.id).join(', ')} ${duplicates.length > 1 ? 'are' : 'is'} already stored as a different record`),
            { duplicates: duplicates.map((d) => d.id) },
          );
        }
      }
      await client.query('COMMIT');
      for (const r of rows) {
        if (r.writer !== this.replica || !inserted.has(r.id) || r.seq <= this.chainHead.seq) continue;
        this.chainHead = { seq: r.seq, hash: r.hash };
        if (r.nsSeq !== null) this.nsHeads.set(fromIndexText(r.namespace), { nsSeq: r.nsSeq, hash: r.hash });
      }
      this.markWritable();
      if (this.chainHead.seq - this.lastCheckpointSize >= this.cpRecords) this.triggerCheckpoint();
      return { inserted: inserted.size, skipped: rows.length - inserted.size };
    } catch (err) {
      if (pgCode(err) === 'ERR_STORE_DUPLICATE_ID') throw err;
      await client.query('ROLLBACK').catch(() => {
        broken = true;
      });
      if (pgCode(err) === UNIQUE_VIOLATION && pgConstraint(err) === WRITER_SEQ_CONSTRAINT) {
        throw storeError('ERR_STORE_CHAIN_CONFLICT', `the decision store ${this.where} already holds other records at these positions of the chain: ${(err as { detail?: string }).detail ?? (err as Error).message}`, err);
      }
      this.markUnwritable(err);
      throw this.unavailable(`could not commit ${rows.length} chained record(s)`, err);
    } finally {
      done(broken);
    }
  }

  async appendQuarantined(entries: QuarantinedRecord[]): Promise<void> {
    if (this.readonly) throw storeError('ERR_STORE_READONLY', `the decision store ${this.where} is open read-only`);
    try {
      await appendQuarantined(this.pool, this.q, entries);
    } catch (err) {
      throw this.unavailable(`could not store ${entries.length} quarantined record(s)`, err);
    }
  }

  quarantined(): Promise<QuarantinedRecord[]> {
    return this.read(() => readQuarantined(this.pool, this.q));
  }

  async locate(ids: string[]): Promise<Map<string, { writer: string; seq: number; hash: string }>> {
    const res = await this.read(() =>
      this.pool.query<{ id: string; writer: string; seq: string; hash: string }>(`SELECT id, writer, seq, hash FROM ${this.t.decisions} WHERE id = ANY($1::text[])`, [ids]),
    );
    return new Map(res.rows.map((r) => [r.id, { writer: r.writer, seq: Number(r.seq), hash: r.hash }]));
  }

  private markUnwritable(err: unknown): void {
    if (this.behindSpool) {
      this.isWritable = false;
      return;
    }
    if (this.isWritable) this.log.error({ err: { message: (err as Error).message, code: pgCode(err) }, store: this.where }, 'decision store write failed; the store is unwritable until a write succeeds');
    this.isWritable = false;
    if (!this.probeTimer && !this.stopping) {
      this.probeTimer = setInterval(() => void this.probe(), this.recoveryProbeMs);
      this.probeTimer.unref();
    }
  }

  private markWritable(): void {
    if (!this.isWritable && !this.readonly && !this.behindSpool) this.log.info({ store: this.where }, 'decision store writable again');
    this.isWritable = !this.readonly;
    if (this.probeTimer) {
      clearInterval(this.probeTimer);
      this.probeTimer = undefined;
    }
  }

  /**
   * Readiness must come back without traffic (an unready replica gets none). Taking the lock an
   * INSERT takes proves more than `SELECT 1`: it fails on a read-only standby after a failover and
   * while another session holds the table.
   */
  private async probe(): Promise<void> {
    if (this.probing || this.stopping) return;
    this.probing = true;
    let c: Awaited<ReturnType<typeof checkout>> | undefined;
    let broken = false;
    try {
      c = await checkout(this.pool);
      const client = c.client;
      await client.query('BEGIN');
      try {
        await client.query(`LOCK TABLE ${this.t.decisions} IN ROW EXCLUSIVE MODE NOWAIT`);
      } finally {
        await client.query('ROLLBACK').catch(() => {
          broken = true;
        });
      }
      this.markWritable();
    } catch {
      broken = true; // still failing: the next probe tries again (markUnwritable logged it once)
    } finally {
      c?.done(broken);
      this.probing = false;
    }
  }

  private triggerCheckpoint(): void {
    if (this.readonly || this.closed || this.cpInFlight) return;
    this.cpInFlight = this.writeCheckpoint().finally(() => {
      this.cpInFlight = undefined;
    });
  }

  /**
   * Signs {writer, size, headHash, time, nsRoot, nsSize} over this writer's head and namespace heads
   * as committed, read together; the time is taken after them, so every record in the prefix is
   * timed before the checkpoint (docs/record-format-v2.md refinement 2). The heads are stored with
   * it (checkpoint_ns_heads) in the same statement, for the namespace exporter's proofs.
   */
  private async writeCheckpoint(): Promise<Checkpoint | undefined> {
    const { seq: size, hash: headHash } = this.chainHead;
    if (size === 0 || size <= this.lastCheckpointSize || !this.signer) return undefined;
    const heads = [...this.nsHeads].map(([namespace, h]): NamespaceHead => ({ namespace, nsSeq: h.nsSeq, nsHeadHash: h.hash }));
    const { nsRoot, nsSize } = toNamespaceRoot(heads);
    const time = this.nowText();
    try {
      const jws = await this.signer.sign({ writer: this.replica, size, headHash, time, nsRoot, nsSize }, CHECKPOINT_TYP);
      await this.pool.query(
        `WITH cp AS (
           INSERT INTO ${this.t.checkpoints} (writer, size, head_hash, time, jws, ns_root, ns_size) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING writer, size
         )
         INSERT INTO ${this.t.cpHeads} (writer, size, namespace, ns_seq, ns_head_hash)
         SELECT cp.writer, cp.size, h.namespace, h.ns_seq, h.hash FROM cp, unnest($8::text[], $9::bigint[], $10::text[]) AS h(namespace, ns_seq, hash)`,
        [toIndexText(this.replica), size, headHash, time, jws, nsRoot, nsSize, heads.map((h) => toIndexText(h.namespace)), heads.map((h) => h.nsSeq), heads.map((h) => h.nsHeadHash)],
      );
      this.lastCheckpointSize = Math.max(this.lastCheckpointSize, size);
      if (this.cpFailing) this.log.info({ store: this.where, size }, 'decision checkpoints written again');
      this.cpFailing = false;
      return { writer: this.replica, size, headHash, time, jws, nsRoot, nsSize };
    } catch (err) {
      // Retried on the next trigger; log once per outage, not once per timer tick.
      if (!this.cpFailing) (this.behindSpool ? this.log.warn : this.log.error).call(this.log, { err: { message: (err as Error).message }, store: this.where, size }, 'could not write a decision checkpoint; retrying with the next one');
      this.cpFailing = true;
      return undefined;
    }
  }

  async checkpointNow(): Promise<Checkpoint | undefined> {
    while (this.cpInFlight) await this.cpInFlight;
    if (this.readonly) return undefined;
    const p = this.writeCheckpoint();
    this.cpInFlight = p.finally(() => {
      this.cpInFlight = undefined;
    });
    return p;
  }

  /** Runs a read, turning driver errors into ERR_STORE_UNAVAILABLE naming the store. */
  private async read<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw storeError('ERR_STORE_UNAVAILABLE', `the decision store ${this.where} is closed`);
    try {
      return await fn();
    } catch (err) {
      throw this.unavailable('could not be read', err);
    }
  }

  async get(id: string): Promise<ChainedRecord | undefined> {
    if (typeof id !== 'string' || UNSTORABLE.test(id)) return undefined;
    const res = await this.read(() => this.pool.query<{ record: string; body: Buffer | null; hash: string }>(`SELECT record, body, hash FROM ${this.t.decisions} WHERE id = $1`, [id]));
    const row = res.rows[0];
    return row ? toChained(toBodyText(row.record, row.body), row.hash) : undefined;
  }

  /** One page in (time, id) order after `after`; uses the index that matches the most selective filter. */
  private async page(filter: ScanFilter, after: Cursor | undefined, limit: number): Promise<Array<{ time: string; id: string; record: string; hash: string }>> {
    const where: string[] = [];
    const params: unknown[] = [];
    const p = (v: unknown): string => {
      params.push(v);
      return `$${params.length}`;
    };
    let from = `${this.t.decisions} d`;
    let t = 'd.time';
    let i = 'd.id';
    if (filter.serviceAccount !== undefined) {
      from = `${this.t.sas} s JOIN ${this.t.decisions} d ON d.id = s.decision_id`;
      t = 's.time';
      i = 's.decision_id';
      where.push(`s.key = ${p(toIndexText(filter.serviceAccount))}`);
    }
    for (const [key, col, type] of EQUALITY_FILTER_COLUMNS) {
      const v = filter[key];
      if (v === undefined) continue;
      where.push(`${col} = ${toSqlParam('postgres', type, p(type === 'text' ? toIndexText(String(v)) : v))}`);
    }
    if (filter.since !== undefined) where.push(`${t} >= ${p(toCanonicalTime(filter.since) ?? filter.since)}`);
    if (filter.until !== undefined) where.push(`${t} < ${p(toCanonicalTime(filter.until) ?? filter.until)}`);
    if (after) where.push(`(${t}, ${i}) > (${p(after.time)}, ${p(after.id)})`);
    const sql = `SELECT ${t} AS time, ${i} AS id, d.record AS record, d.body AS body, d.hash AS hash FROM ${from}${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY ${t}, ${i} LIMIT ${p(limit)}`;
    const res = await this.read(() => this.pool.query<{ time: string; id: string; record: string; body: Buffer | null; hash: string }>(sql, params));
    return res.rows.map((r) => ({ time: r.time, id: r.id, record: toBodyText(r.record, r.body), hash: r.hash }));
  }

  async loadStats(filter: StatsFilter, bucket: StatsBucket): Promise<DecisionStats> {
    const q = toStatsSql('postgres', pgStatsTables(this.q), filter, bucket, toIndexText);
    // One REPEATABLE READ transaction: the four aggregates see the same snapshot.
    return this.read(async () => {
      const { client, done } = await checkout(this.pool);
      try {
        await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
        const rows: Partial<StatsRows> = {};
        for (const k of ['buckets', 'namespaces', 'unmapped', 'writers'] as const) rows[k] = (await client.query(q[k].sql, q[k].params)).rows as never;
        await client.query('COMMIT');
        done();
        return toDecisionStats(rows as StatsRows, bucket);
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        done(true);
        throw err;
      }
    });
  }

  async query(filter: DecisionFilter): Promise<DecisionPage> {
    const { limit, after } = toPageRequest(filter);
    return toPage(await this.page(filter, after, limit + 1), limit);
  }

  async *stream(filter: ScanFilter): AsyncIterable<ChainedRecord> {
    let after: Cursor | undefined;
    for (;;) {
      const rows = await this.page(filter, after, READ_CHUNK);
      for (const r of rows) yield toChained(r.record, r.hash);
      const last = rows[rows.length - 1];
      if (!last || rows.length < READ_CHUNK) return;
      after = { time: last.time, id: last.id };
    }
  }

  async *streamChain(): AsyncIterable<ChainEntry> {
    const sql = `SELECT d.writer, d.seq, d.id, d.time, d.namespace, d.kind, d.verdict, d.service_accounts, d.task_run, d.pipeline_run, d.prev_hash, d.hash, d.record,
        (SELECT string_agg(s.key || E'\\t' || s.time || CASE WHEN (s.namespace, s.kind, s.verdict, s.writer) = (d.namespace, d.kind, d.verdict, d.writer) THEN '' ELSE E'\\tcolumns differ' END, E'\\n') FROM ${this.t.sas} s WHERE s.decision_id = d.id) AS sa_keys, d.body, d.ns_seq, encode(d.object_digest, 'hex') AS object_digest
      FROM ${this.t.decisions} d WHERE (d.writer, d.seq) > ($1, $2) ORDER BY d.writer, d.seq LIMIT $3`;
    let writer = '';
    let seq = 0;
    for (;;) {
      const res = await this.read(() => this.pool.query<PgDecisionRow & { body: Buffer | null }>(sql, [writer, seq, READ_CHUNK]));
      for (const { body, ...row } of res.rows) yield toChainEntry({ ...row, record: toBodyText(row.record, body) }, columnProblem);
      const last = res.rows[res.rows.length - 1];
      if (!last || res.rows.length < READ_CHUNK) return;
      writer = last.writer;
      seq = Number(last.seq);
    }
  }

  async checkpoints(): Promise<Checkpoint[]> {
    const res = await this.read(() =>
      this.pool.query<{ writer: string; size: string; head_hash: string; time: string; jws: string; ns_root: string | null; ns_size: number | null }>(
        `SELECT writer, size, head_hash, time, jws, ns_root, ns_size FROM ${this.t.checkpoints} ORDER BY writer, size`,
      ),
    );
    return res.rows.map((r) => ({ writer: r.writer, size: Number(r.size), headHash: r.head_hash, time: r.time, jws: r.jws, ...(r.ns_root !== null ? { nsRoot: r.ns_root, nsSize: r.ns_size ?? 0 } : {}) }));
  }

  async checkpointHeads(writer: string, size: number): Promise<NamespaceHead[]> {
    const res = await this.read(() =>
      this.pool.query<{ namespace: string; ns_seq: string; ns_head_hash: string }>(`SELECT namespace, ns_seq, ns_head_hash FROM ${this.t.cpHeads} WHERE writer = $1 AND size = $2 ORDER BY namespace`, [toIndexText(writer), size]),
    );
    return res.rows.map((r) => ({ namespace: fromIndexText(r.namespace), nsSeq: Number(r.ns_seq), nsHeadHash: r.ns_head_hash }));
  }

  async namespaceHeads(namespace: string): Promise<Array<{ writer: string; nsSeq: number }>> {
    const res = await this.read(() => this.pool.query<{ writer: string; ns_seq: string }>(`SELECT writer, ns_seq FROM ${this.t.nsHeads} WHERE namespace = $1 ORDER BY writer`, [toIndexText(namespace)]));
    return res.rows.map((r) => ({ writer: r.writer, nsSeq: Number(r.ns_seq) }));
  }

  async *namespaceRecords(writer: string, namespace: string, afterNsSeq: number): AsyncIterable<ChainedRecord> {
    const sql = `SELECT ns_seq, record, body, hash FROM ${this.t.decisions} WHERE writer = $1 AND namespace = $2 AND ns_seq > $3 ORDER BY ns_seq LIMIT $4`;
    let after = afterNsSeq;
    for (;;) {
      const res = await this.read(() => this.pool.query<{ ns_seq: string; record: string; body: Buffer | null; hash: string }>(sql, [toIndexText(writer), toIndexText(namespace), after, READ_CHUNK]));
      for (const r of res.rows) yield toChained(toBodyText(r.record, r.body), r.hash);
      const last = res.rows[res.rows.length - 1];
      if (!last || res.rows.length < READ_CHUNK) return;
      after = Number(last.ns_seq);
    }
  }

  async anchors(): Promise<Anchor[]> {
    const res = await this.read(() => this.pool.query<{ writer: string; seq: string; hash: string; time: string; jws: string }>(`SELECT writer, seq, hash, time, jws FROM ${this.t.anchors} ORDER BY writer, seq`));
    return res.rows.map((r) => ({ writer: r.writer, seq: Number(r.seq), hash: r.hash, time: r.time, jws: r.jws }));
  }

  async count(): Promise<number> {
    const res = await this.read(() => this.pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${this.t.decisions}`));
    return Number(res.rows[0]?.n ?? 0);
  }

  async prune(olderThan: string): Promise<PruneResult> {
    const cutoff = toCanonicalTime(olderThan);
    if (!cutoff) throw storeError('ERR_STORE_BAD_FILTER', `prune: "${olderThan}" is not an RFC 3339 date-time`);
    if (this.closed) throw storeError('ERR_STORE_UNAVAILABLE', `the decision store ${this.where} is closed`);
    if (this.readonly || !this.signer) throw storeError('ERR_STORE_READONLY', `the decision store ${this.where} was opened read-only`);
    let client: pg.PoolClient;
    let done: (broken?: boolean) => void;
    try {
      ({ client, done } = await checkout(this.pool));
    } catch (err) {
      throw this.unavailable('cannot connect for prune', err);
    }
    // Every replica runs retention; one at a time prunes (the others then find nothing to do). The
    // session lock goes away with the connection if this process dies.
    const lockKey = `tekton-zscaler-webhook:prune:${this.t.schemaTag}`;
    let locked = false;
    try {
      await client.query('SELECT pg_advisory_lock(hashtext($1))', [lockKey]);
      locked = true;
      return await this.pruneLocked(client, cutoff, this.signer);
    } catch (err) {
      if (typeof pgCode(err) === 'string' && pgCode(err)!.startsWith('ERR_')) throw err;
      throw this.unavailable('could not prune', err);
    } finally {
      let ok = true;
      if (locked) await client.query('SELECT pg_advisory_unlock(hashtext($1))', [lockKey]).catch(() => (ok = false));
      done(!ok);
    }
  }

  private async pruneLocked(client: pg.PoolClient, cutoff: string, signer: Signer): Promise<PruneResult> {
    const D = this.t.decisions;
    // Distinct writers by skipping through the (writer, seq) index instead of reading every row.
    const writers = (
      await client.query<{ writer: string }>(`
      WITH RECURSIVE w AS (
        (SELECT writer FROM ${D} ORDER BY writer LIMIT 1)
        UNION ALL
        SELECT (SELECT d.writer FROM ${D} d WHERE d.writer > w.writer ORDER BY d.writer LIMIT 1) FROM w WHERE w.writer IS NOT NULL
      ) SELECT writer FROM w WHERE writer IS NOT NULL`)
    ).rows.map((r) => r.writer);
    const anchors: Anchor[] = [];
    let deleted = 0;
    for (const writer of writers) {
      // Prune only a prefix of the chain, and never a record at or after the cutoff: with
      // caller-supplied times, seq order and time order can differ slightly.
      const keep = (await client.query<{ seq: string }>(`SELECT seq FROM ${D} WHERE writer = $1 AND time >= $2 ORDER BY seq LIMIT 1`, [writer, cutoff])).rows[0];
      const cut = keep ? Number(keep.seq) - 1 : Number((await client.query<{ seq: string }>(`SELECT max(seq) AS seq FROM ${D} WHERE writer = $1`, [writer])).rows[0]?.seq ?? 0);
      const at = (await client.query<{ hash: string }>(`SELECT hash FROM ${D} WHERE writer = $1 AND seq = $2`, [writer, cut])).rows[0];
      if (!at) continue; // nothing older than the cutoff (or already pruned)
      const time = this.nowText();
      const jws = await signer.sign({ writer, seq: cut, hash: at.hash, time }, ANCHOR_TYP);
      if (this.closed) throw storeError('ERR_STORE_UNAVAILABLE', `the decision store ${this.where} is closed`);
      // Anchor first, then delete oldest-first in chunks: at every moment the remaining records
      // still verify (chain.ts accepts a chain that starts below an anchor and reaches it).
      await client.query(`INSERT INTO ${this.t.anchors} (writer, seq, hash, time, jws) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`, [writer, cut, at.hash, time, jws]);
      anchors.push({ writer, seq: cut, hash: at.hash, time, jws });
      let lo = Number((await client.query<{ seq: string }>(`SELECT min(seq) AS seq FROM ${D} WHERE writer = $1`, [writer])).rows[0]?.seq ?? cut + 1);
      while (lo <= cut) {
        const hi = Math.min(cut, lo + PRUNE_CHUNK - 1);
        await client.query('BEGIN');
        try {
          await client.query(`DELETE FROM ${this.t.sas} WHERE decision_id IN (SELECT id FROM ${D} WHERE writer = $1 AND seq BETWEEN $2 AND $3)`, [writer, lo, hi]);
          deleted += (await client.query(`DELETE FROM ${D} WHERE writer = $1 AND seq BETWEEN $2 AND $3`, [writer, lo, hi])).rowCount ?? 0;
          await client.query('COMMIT');
        } catch (err) {
          await client.query('ROLLBACK').catch(() => undefined);
          throw err;
        }
        lo = hi + 1;
        if (this.closed) throw storeError('ERR_STORE_UNAVAILABLE', `the decision store ${this.where} was closed during prune`);
      }
      await client.query(`DELETE FROM ${this.t.cpHeads} WHERE writer = $1 AND size < $2`, [writer, cut]);
      await client.query(`DELETE FROM ${this.t.checkpoints} WHERE writer = $1 AND size < $2`, [writer, cut]);
      this.log.info({ writer, seq: cut, store: this.where }, 'pruned decision records and wrote a signed anchor');
    }
    return { deleted, anchors };
  }

  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.stopping = true;
    this.closing = (async () => {
      if (this.cpTimer) clearInterval(this.cpTimer);
      if (this.probeTimer) clearInterval(this.probeTimer);
      // Commit what was accepted before close; new appends are already refused.
      if (this.queue.length) await this.serial(() => this.flush());
      await this.writing;
      while (this.cpInFlight) await this.cpInFlight;
      if (!this.readonly && this.isWritable) await this.writeCheckpoint();
      this.closed = true;
      if (this.ownsPool) await this.pool.end();
    })();
    return this.closing;
  }
}

function insertParams(rows: Row[]): unknown[] {
  const ids: string[] = [];
  const saIds: string[] = [];
  const saKeys: string[] = [];
  for (const r of rows) {
    ids.push(r.id);
    for (const k of r.saKeys) {
      saIds.push(r.id);
      saKeys.push(k);
    }
  }
  return [
    ids,
    rows.map((r) => r.writer),
    rows.map((r) => r.seq),
    rows.map((r) => r.time),
    rows.map((r) => r.namespace),
    rows.map((r) => r.kind),
    rows.map((r) => r.verdict),
    rows.map((r) => r.serviceAccounts),
    rows.map((r) => r.taskRun),
    rows.map((r) => r.pipelineRun),
    rows.map((r) => r.prevHash),
    rows.map((r) => r.hash),
    rows.map((r) => r.record),
    rows.map((r) => r.nsSeq),
    rows.map((r) => r.stored),
    rows.map((r) => r.unmapped),
    saIds,
    saKeys,
    rows.map((r) => r.objectDigest),
  ];
}

type PgDecisionRow = DecisionRow<string> & { ns_seq: string | null };

/** Compares the indexed columns with the record they were derived from (filters read the columns). */
function columnProblem(row: PgDecisionRow, r: ChainedRecord): string | undefined {
  const text = (v: unknown): unknown => (typeof v === 'string' ? toIndexText(v) : v);
  const expected: Array<[string, unknown, unknown]> = [
    ['id', row.id, r.id],
    ['writer', row.writer, text(r.replica)],
    ['seq', Number(row.seq), r.seq],
    ['prev_hash', row.prev_hash, r.prevHash],
    ['time', row.time, typeof r.time === 'string' ? toCanonicalTime(r.time) : undefined],
    ['namespace', row.namespace, text(r.namespace)],
    ['kind', row.kind, text(r.kind?.kind)],
    ['verdict', row.verdict, text(r.verdict)],
    ['service_accounts', row.service_accounts, JSON.stringify(r.serviceAccounts)],
    ['task_run', row.task_run, text(r.tekton?.taskRun ?? null)],
    ['pipeline_run', row.pipeline_run, text(r.tekton?.pipelineRun ?? null)],
    ['ns_seq', row.ns_seq === null ? null : Number(row.ns_seq), (r as { nsSeq?: number }).nsSeq ?? null],
    ['object_digest', (row as { object_digest?: string | null }).object_digest, digestHexOf(r.objectDigest)],
  ];
  const bad = expected.filter(([, col, want]) => col !== want).map(([name]) => name);
  if (bad.length) return toColumnsProblem(bad);
  const want = Array.isArray(r.serviceAccounts) ? saKeysOf(r.serviceAccounts).map((k) => `${k}\t${row.time}`) : [];
  const have = row.sa_keys === null ? [] : row.sa_keys.split('\n');
  if (have.length !== want.length || have.sort().some((h, n) => h !== want[n])) return SA_INDEX_PROBLEM;
  return undefined;
}

/** The schema version that added object_digest (v1 rows filled in SQL, v2 rows by backfillDigests). */
const DIGEST_COLUMN_VERSION = 3;

/** object_digest of the v2 rows, whose digest sits inside the compressed body: each read once, in id order. */
async function backfillDigests(client: pg.PoolClient, q: string): Promise<void> {
  for (let after = ''; ; ) {
    const res = await client.query<{ id: string; body: Buffer }>(`SELECT id, body FROM ${q}decisions WHERE id > $1 AND body IS NOT NULL ORDER BY id LIMIT 2000`, [after]);
    const ids: string[] = [];
    const digests: string[] = [];
    for (const row of res.rows) {
      const bytes = toDigestBytesOfStoredBody(row.body);
      if (bytes) {
        ids.push(row.id);
        digests.push(bytes.toString('hex'));
      }
    }
    if (ids.length) await client.query(`UPDATE ${q}decisions d SET object_digest = decode(u.digest, 'hex') FROM unnest($1::text[], $2::text[]) AS u(id, digest) WHERE d.id = u.id`, [ids, digests]);
    const last = res.rows[res.rows.length - 1];
    if (!last) return;
    after = last.id;
  }
}

async function migrate(pool: pg.Pool, q: string, schema: string | undefined): Promise<void> {
  const { client, done } = await checkout(pool);
  let broken = false;
  try {
    await client.query('BEGIN');
    // An upgrade may build an index over every stored record: not bound by the per-statement limit
    // that keeps the write path from hanging.
    await client.query('SET LOCAL statement_timeout = 0');
    // Replicas starting together queue here instead of racing to create the same tables.
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`tekton-zscaler-webhook:migrate:${schema ?? ''}`]);
    if (schema) await client.query(`CREATE SCHEMA IF NOT EXISTS ${q.slice(0, -1)}`);
    await client.query(`CREATE TABLE IF NOT EXISTS ${q}schema_version (version integer NOT NULL, applied text NOT NULL)`);
    const res = await client.query<{ v: number | null }>(`SELECT max(version) AS v FROM ${q}schema_version`);
    const version = res.rows[0]?.v ?? 0;
    if (version > SCHEMA_VERSION) throw storeError('ERR_STORE_OPEN', `its schema version ${version} is newer than this build supports (${SCHEMA_VERSION})`);
    if (version < SCHEMA_VERSION) {
      // A migration may backfill every record (rollups, digests): not bound by the request-path timeout.
      await client.query('SET LOCAL statement_timeout = 0');
    }
    for (let v = version; v < SCHEMA_VERSION; v++) {
      await client.query({ text: MIGRATIONS[v]!(q), query_timeout: MIGRATION_QUERY_TIMEOUT_MS } as pg.QueryConfig);
      if (v + 1 === DIGEST_COLUMN_VERSION) await backfillDigests(client, q);
      await client.query(`INSERT INTO ${q}schema_version (version, applied) VALUES ($1, $2)`, [v + 1, new Date().toISOString()]);
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {
      broken = true;
    });
    throw err;
  } finally {
    done(broken);
  }
}

async function checkSchema(pool: pg.Pool, q: string): Promise<void> {
  const exists = await pool.query<{ t: string | null }>(`SELECT to_regclass($1) AS t`, [`${q}schema_version`]);
  if (!exists.rows[0]?.t) throw storeError('ERR_STORE_NOT_FOUND', 'it holds no decision store (no schema_version table)');
  const res = await pool.query<{ v: number | null }>(`SELECT max(version) AS v FROM ${q}schema_version`);
  const version = res.rows[0]?.v ?? 0;
  if (version > SCHEMA_VERSION) throw storeError('ERR_STORE_OPEN', `its schema version ${version} is newer than this build supports (${SCHEMA_VERSION})`);
  if (version < SCHEMA_VERSION) throw storeError('ERR_STORE_OPEN', `its schema version ${version} is older than ${SCHEMA_VERSION}; start the webhook once to upgrade it`);
}

/**
 * Opens the PostgreSQL decision store: connects, creates and migrates the schema (under an advisory
 * lock, so replicas starting together do not race) and loads this writer's head so a restart
 * continues its chain. Errors (by `code`): ERR_STORE_CONFIG (bad options), ERR_STORE_URL,
 * ERR_STORE_OPEN naming the database (unreachable, authentication, schema newer than this build),
 * ERR_STORE_NOT_FOUND (read-only, and no store there).
 */
export async function createPostgresStore(opts: PostgresStoreOptions): Promise<PostgresStore> {
  const readonly = opts.readonly ?? false;
  if (typeof opts.replica !== 'string' || opts.replica === '') throw storeError('ERR_STORE_CONFIG', 'the decision store needs a non-empty replica (writer id)');
  if (!readonly && !opts.signer) throw storeError('ERR_STORE_CONFIG', 'a writable decision store needs a signer for its checkpoints');
  for (const [k, v] of Object.entries(opts.checkpointEvery ?? {})) {
    if (v !== undefined && !(Number.isFinite(v) && v > 0)) throw storeError('ERR_STORE_CONFIG', `checkpointEvery.${k} must be a positive number`);
  }
  if (!opts.pool && !opts.url) throw storeError('ERR_STORE_CONFIG', 'the PostgreSQL decision store needs a url or a pool');
  const parsed = opts.url ? parsePostgresUrl(opts.url) : undefined;
  const schema = opts.schema ?? parsed?.schema;
  if (schema !== undefined) checkIdentifier(schema);
  const q = schema ? `"${schema}".` : '';
  const where = `${describeUrl(opts.url)}${schema ? ` (schema ${schema})` : ''}`;
  const pool =
    opts.pool ??
    new pg.Pool({
      connectionString: parsed!.connectionString,
      max: opts.poolSize ?? DEFAULT_POOL_SIZE,
      connectionTimeoutMillis: opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      statement_timeout: opts.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS,
      query_timeout: (opts.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS) + 5000,
      application_name: APPLICATION_NAME,
      keepAlive: true,
    });
  const log = opts.logger ?? noopLogger;
  // An idle client whose server went away emits 'error' on the pool; unhandled, it would crash the
  // process. The next query simply opens a new connection.
  if (!opts.pool) pool.on('error', (err) => log.warn({ err: { message: err.message }, store: where }, 'an idle PostgreSQL connection failed; it will be replaced'));
  try {
    if (readonly) await checkSchema(pool, q);
    else await migrate(pool, q, schema);
    const store = new PostgresDecisionStore(pool, !opts.pool, q, where, opts);
    await store.loadHead();
    return store;
  } catch (err) {
    if (!opts.pool) await pool.end().catch(() => undefined);
    const code = pgCode(err);
    throw storeError(code === 'ERR_STORE_NOT_FOUND' ? code : 'ERR_STORE_OPEN', `cannot open the decision store ${where}: ${(err as Error).message}`, err);
  }
}

/** Opens the store at `url` read-only, for the `tzw decisions` commands (see open-url.ts). */
export function openPostgresStoreForRead(url: string): Promise<VerifiableStore> {
  return createPostgresStore({ url, replica: READER_ID, readonly: true, poolSize: 2 });
}
