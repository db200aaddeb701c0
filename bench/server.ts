/**
 * The server under test, run as a child of bench/run.ts (bundled by esbuild into plain JS as
 * production runs it, or with `node --import tsx bench/server.ts ...`), forked with an IPC channel. It listens on 127.0.0.1:0 over HTTPS with a fresh certificate from
 * certs/lib.ts and tells the parent its port once ready.
 *
 *   --variant baseline   a bare fastify HTTPS server answering every POST with one constant AdmissionReview
 *   --variant app        buildApp(deps) as webhook/server.ts wires it: real facts index, pino at info,
 *                        metrics with default collectors, UUIDv7 ids
 *   --store sqlite|postgres|off
 *                        sqlite: createSqliteStore (WAL, synchronous=FULL, signed checkpoints) in --dir;
 *                        postgres: the spooled PostgreSQL store as the server runs it (spool in --dir,
 *                        forwarder to TZW_BENCH_PG_URL, in a fresh schema tzw_bench_<random> that
 *                        is dropped at stop); off: a store whose append resolves at once
 *   --mappings N         IdentityMappings (and as many ServiceAccounts) loaded before listening
 *
 * IPC: child → parent {type:'ready', port, ...} or {type:'error', message}; parent → child
 * {type:'memory'} (answered after a full GC), {type:'cpu'} (CPU time used so far), {type:'commits'}
 * (the store's commits since the last ask: ServerCommits), {type:'ids'} (every
 * decision id the store holds, after the spool drained; null for the store that does nothing) and
 * {type:'stop'} (closes the app and the store, then exits 0, which is when `--cpu-prof` writes its profile).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { toDecideOptions } from '../webhook/config/options.js';
import { parseArgs } from 'node:util';
import Fastify, { type FastifyInstance } from 'fastify';
import { createLogger } from '../webhook/log.js';
import { v7 as uuidv7 } from 'uuid';
import { createCertificateAuthority, createServingCertificate } from '../certs/lib.js';
import { buildApp } from '../webhook/app.js';
import { defaultConfig } from '../webhook/config/schema.js';
import { createFactsIndex } from '../webhook/core/mapping-index.js';
import type { ChainedRecord, DecisionRecord } from '../webhook/core/record.js';
import { createMetrics } from '../webhook/http/metrics.js';
import type { CommitObserver, DecisionStore } from '../webhook/store/port.js';
import { toChainedRecord } from '../webhook/store/evidence/chain.js';
import { loadBenchFacts } from './fixtures.js';
import { PROC_TICK_MS, percentile } from './stats.js';

const REPLICA = 'bench-0';

export interface ServerReady {
  type: 'ready';
  port: number;
  variant: string;
  store: string;
  mappings: number;
  /** Time to load the facts index. */
  loadMs: number;
  /** The CA that signed the serving certificate (probes verify against it). */
  caPem: string;
}

export interface ServerMemory {
  type: 'memory';
  rssMb: number;
  heapUsedMb: number;
  /** V8 heap committed (used + free pages not yet returned): part of RSS that a GC does not shrink at once. */
  heapTotalMb: number;
  externalMb: number;
}

/** Every decision id the store holds (null: store off), to check one record per counted answer. */
export interface ServerIds {
  type: 'ids';
  ids: string[] | null;
  /** Bytes the store's tables take in the database, indexes included (PostgreSQL; null elsewhere). */
  bytes?: number | null;
}

/**
 * The store's commits since the previous {type:'commits'} (the store's CommitObserver, as the server
 * feeds tzw_store_commit_*): how many, their records, and their wall times (BEGIN IMMEDIATE to
 * COMMIT returned, fsync included) in ms. All zero for the store that does nothing.
 */
export interface ServerCommits {
  type: 'commits';
  commits: number;
  records: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** Commit durations (ms) and records since the last report. */
const commitLog = { ms: [] as number[], records: 0 };
const onCommit: CommitObserver = ({ seconds, records }) => {
  commitLog.ms.push(seconds * 1000);
  commitLog.records += records;
};

function takeCommits(): ServerCommits {
  const sorted = commitLog.ms.sort((a, b) => a - b);
  const at = (q: number) => (sorted.length ? percentile(sorted, q) : 0);
  const out: ServerCommits = { type: 'commits', commits: sorted.length, records: commitLog.records, p50Ms: at(0.5), p99Ms: at(0.99), maxMs: sorted.at(-1) ?? 0 };
  commitLog.ms = [];
  commitLog.records = 0;
  return out;
}

/**
 * CPU time the server process has used so far (user + system), for CPU cost per request, and the
 * main thread's share of it (the event loop: HTTP, TLS, the decision, the request side of the
 * store); the rest is the store's writer thread and V8's and libuv's helpers. `mainMicros` is
 * undefined where /proc cannot tell (off Linux).
 */
export interface ServerCpu {
  type: 'cpu';
  micros: number;
  mainMicros?: number;
}

/** The main thread's CPU time (utime + stime of /proc/self/task/PID/stat) in µs, or undefined. */
function mainThreadMicros(): number | undefined {
  try {
    const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
    // Fields after the command (which may hold spaces) in parentheses: utime and stime are the 12th and 13th.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(f[11]) + Number(f[12]);
    return Number.isFinite(ticks) ? ticks * PROC_TICK_MS * 1000 : undefined;
  } catch {
    return undefined;
  }
}

const MB = 1024 * 1024;

function send(msg: object): void {
  process.send?.(msg);
}

/** Epoch microseconds from the monotonic clock (the same scheme as webhook/server.ts createMicrosClock). */
function createMicrosClock(): () => bigint {
  const originMicros = BigInt(Date.now()) * 1000n;
  const originHr = process.hrtime.bigint();
  return () => originMicros + (process.hrtime.bigint() - originHr) / 1000n;
}

/** "Store off": nothing is written; append resolves at once (the floor the durable store is compared with). */
function createNullStore(): BenchStore {
  let seq = 0;
  return {
    // toChainedRecord, as the SQLite store builds its answer on the main thread (a spread of the
    // record cost ~9 µs per request here, which the store-off floor then carried).
    append: async (r: DecisionRecord): Promise<ChainedRecord> => toChainedRecord(r, { seq: ++seq, prevHash: '', hash: '', body: '' }),
    close: async () => undefined,
    writable: () => true,
    ids: async () => null,
  };
}

type BenchStore = Pick<DecisionStore, 'append' | 'close' | 'writable'> & { ids(): Promise<string[] | null>; bytes?(): Promise<number> };

async function openSqlite(dir: string): Promise<BenchStore> {
  const { createSqliteStore } = await import('../webhook/store/sqlite/store.js');
  const { loadOrCreateSigningKey } = await import('../webhook/store/evidence/signing.js');
  const { default: Database } = await import('better-sqlite3');
  const signer = await loadOrCreateSigningKey(join(dir, 'signing-key.pem'), { create: true });
  const path = join(dir, 'decisions.db');
  const store = await createSqliteStore({ path, replica: REPLICA, signer, onCommit });
  return Object.assign(store, {
    async ids() {
      // A second, read-only connection: WAL lets it read what the store committed.
      const db = new Database(path, { readonly: true });
      try {
        return db.prepare('SELECT id FROM decisions').pluck().all() as string[];
      } finally {
        db.close();
      }
    },
  });
}

/** The spooled PostgreSQL store (webhook/store/postgres/open.ts) in a fresh schema of TZW_BENCH_PG_URL. */
async function openPostgres(dir: string): Promise<BenchStore> {
  const base = process.env.TZW_BENCH_PG_URL;
  if (!base) throw new Error('--store postgres needs TZW_BENCH_PG_URL=postgres://USER:PASSWORD@HOST:PORT/DB');
  const { createSpooledPostgresStore } = await import('../webhook/store/postgres/open.js');
  const { loadOrCreateSigningKey } = await import('../webhook/store/evidence/signing.js');
  const { default: pg } = await import('pg');
  const { randomBytes } = await import('node:crypto');
  const schema = `tzw_bench_${randomBytes(6).toString('hex')}`;
  const url = new URL(base);
  url.searchParams.set('schema', schema);
  const signer = await loadOrCreateSigningKey(join(dir, 'signing-key.pem'), { create: true });
  const store = await createSpooledPostgresStore({
    postgres: { url: url.toString(), replica: REPLICA, signer },
    spool: { path: join(dir, 'spool.db'), maxBytes: 1024 * 1024 * 1024, onCommit },
    drainTimeoutMs: 60_000,
  });
  if (!store.pgConnected()) {
    await store.close();
    throw new Error(`PostgreSQL at TZW_BENCH_PG_URL is not reachable`);
  }
  const admin = new pg.Pool({ connectionString: base, max: 1 });
  return {
    // With the review body, as the admission path hands it (the store computes objectDigest from it).
    append: (r, opts) => store.append(r, opts),
    writable: () => store.writable(),
    async ids() {
      await store.drained(120_000);
      const res = await admin.query<{ id: string }>(`SELECT id FROM "${schema}".decisions WHERE writer = $1`, [REPLICA]);
      return res.rows.map((r) => r.id);
    },
    async bytes() {
      await store.drained(120_000);
      // Every table of the schema with its indexes and TOAST (decisions, decision_sas, checkpoints, ...).
      const res = await admin.query<{ bytes: string | null }>(
        `SELECT sum(pg_total_relation_size(c.oid)) AS bytes FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'`,
        [schema],
      );
      return Number(res.rows[0]?.bytes ?? 0);
    },
    async close() {
      await store.close();
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await admin.end();
    },
  };
}

const CONSTANT_REVIEW = {
  apiVersion: 'admission.k8s.io/v1',
  kind: 'AdmissionReview',
  response: { uid: '705ab4f5-6393-11e8-b7cc-42010a800002', allowed: true },
};

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      variant: { type: 'string', default: 'app' },
      store: { type: 'string', default: 'off' },
      mappings: { type: 'string', default: '10' },
      dir: { type: 'string' },
    },
    strict: true,
  });
  const variant = values.variant;
  const storeKind = values.store;
  const mappings = Number(values.mappings);
  if (variant !== 'app' && variant !== 'baseline') throw new Error(`--variant must be app or baseline, got ${variant}`);
  if (storeKind !== 'off' && storeKind !== 'sqlite' && storeKind !== 'postgres') throw new Error(`--store must be sqlite, postgres or off, got ${storeKind}`);
  if (storeKind !== 'off' && !values.dir) throw new Error(`--store ${storeKind} needs --dir`);

  const ca = await createCertificateAuthority({ commonName: 'tzw bench CA', days: 2 });
  const leaf = await createServingCertificate(ca, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], days: 1 });
  const config = defaultConfig(REPLICA);
  const https = { cert: leaf.certPem, key: leaf.keyPem };

  let app: FastifyInstance;
  let store: BenchStore | undefined;
  let loadMs = 0;
  if (variant === 'baseline') {
    app = Fastify({ https: { ...https, minVersion: 'TLSv1.2' }, bodyLimit: config.admission.bodyLimitBytes, keepAliveTimeout: 75_000 }) as unknown as FastifyInstance;
    app.post('/*', async () => CONSTANT_REVIEW);
  } else {
    const index = createFactsIndex(config.domain);
    const t0 = performance.now();
    const problems = loadBenchFacts(index, mappings);
    loadMs = performance.now() - t0;
    if (problems > 0) throw new Error(`the facts index reported ${problems} problem(s) for the bench mappings`);
    store = storeKind === 'sqlite' ? await openSqlite(values.dir!) : storeKind === 'postgres' ? await openPostgres(values.dir!) : createNullStore();
    const options = toDecideOptions(config);
    // As production logs: one info line per decision, with the same redaction, to a discarded fd.
    const logger = createLogger({ level: config.logLevel, replica: REPLICA, dest: '/dev/null' });
    const s = store;
    app = buildApp({
      facts: index,
      sourceSynced: () => true,
      store: s,
      options,
      logger,
      metrics: createMetrics({ defaultMetrics: true }),
      newId: () => uuidv7(),
      nowMicros: createMicrosClock(),
      replica: REPLICA,
      deadlineMs: config.admission.deadlineMs,
      readiness: () => (s.writable() ? [] : ['decision store not writable']),
      bodyLimit: config.admission.bodyLimitBytes,
      https,
    });
  }
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  if (typeof address !== 'object' || address === null) throw new Error('no listening address');

  process.on('message', (msg: { type?: string }) => {
    if (msg.type === 'memory') {
      (globalThis as { gc?: () => void }).gc?.();
      const m = process.memoryUsage();
      send({ type: 'memory', rssMb: m.rss / MB, heapUsedMb: m.heapUsed / MB, heapTotalMb: m.heapTotal / MB, externalMb: m.external / MB } satisfies ServerMemory);
    } else if (msg.type === 'cpu') {
      const u = process.cpuUsage();
      const mainMicros = mainThreadMicros();
      send({ type: 'cpu', micros: u.user + u.system, ...(mainMicros !== undefined ? { mainMicros } : {}) } satisfies ServerCpu);
    } else if (msg.type === 'commits') {
      send(takeCommits());
    } else if (msg.type === 'ids') {
      void (async () => {
        try {
          const ids = store ? await store.ids() : null;
          send({ type: 'ids', ids, bytes: store?.bytes ? await store.bytes() : null } satisfies ServerIds);
        } catch (err) {
          send({ type: 'error', message: `listing the stored decision ids failed: ${(err as Error).message}` });
        }
      })();
    } else if (msg.type === 'stop') {
      void (async () => {
        await app.close();
        await store?.close();
        process.exit(0);
      })();
    }
  });
  process.on('disconnect', () => process.exit(0));
  send({ type: 'ready', port: address.port, variant, store: storeKind, mappings, loadMs, caPem: ca.certPem } satisfies ServerReady);
}

main().catch((err: Error) => {
  send({ type: 'error', message: err.stack ?? err.message });
  process.exitCode = 1;
  setTimeout(() => process.exit(1), 100);
});
