/**
 * PostgreSQL test support: the test database from TZW_TEST_PG_URL (set by .ci/run), one throwaway
 * schema per test file, a TCP proxy a test can cut to simulate a database outage without stopping
 * the shared cluster, and real `tzw serve` replicas on one database (test/server/ha*.test.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import pg from 'pg';
import { Agent, request } from 'undici';
import { createCertificateAuthority, createServingCertificate } from '../../certs/lib.js';
import { verifyStore } from '../../webhook/store/evidence/bundle.js';
import { openStoreForRead } from '../../webhook/store/open-url.js';
import { loadOrCreateSigningKey, toJwks, type Jwks, type Signer } from '../../webhook/store/evidence/signing.js';
import { createSqliteStore, type SqliteStore } from '../../webhook/store/sqlite/store.js';
import { createPostgresStore, type PostgresStore } from '../../webhook/store/postgres/store.js';

export const PG_URL = process.env.TZW_TEST_PG_URL;

/** tap's `{ skip }` option: a plain reason when there is no test database. */
export const pgSkip: string | false = PG_URL ? false : 'PostgreSQL tests skipped: TZW_TEST_PG_URL is not set (.ci/run sets it)';

/**
 * Runs a store contract twice: on a fresh SQLite store and on a fresh PostgreSQL store in a
 * throwaway schema (skipped with pgSkip's reason when there is no test database); each store is
 * closed (and its schema dropped) after its test. Replica `tzw-0`, checkpoints every
 * `checkpointRecords` records or an hour.
 */
export function onSqliteAndPostgres(
  contract: (name: string, open: (tt: Test) => Promise<SqliteStore | PostgresStore>, skip?: string | false) => void,
  opts: { signer: Signer; checkpointRecords: number },
): void {
  const checkpointEvery = { records: opts.checkpointRecords, seconds: 3600 };
  contract('SQLite', async (tt) => {
    const store = await createSqliteStore({ path: join(tt.testdir({}), 'd.db'), replica: 'tzw-0', signer: opts.signer, checkpointEvery });
    tt.teardown(() => store.close());
    return store;
  });
  contract(
    'PostgreSQL',
    async (tt) => {
      const schema = await createTestSchema();
      const store = await createPostgresStore({ url: schema.url, replica: 'tzw-0', signer: opts.signer, checkpointEvery });
      tt.teardown(async () => {
        await store.close();
        await schema.drop();
      });
      return store;
    },
    pgSkip,
  );
}

export interface TestSchema {
  name: string;
  /** The test database URL with `?schema=<name>` (understood by parsePostgresUrl). */
  url: string;
  /** A pool whose search_path is the schema (for direct SQL in tests). */
  pool: pg.Pool;
  drop(): Promise<void>;
}

/** Creates `tzw_test_<random>` in the test database; drop() removes it and everything in it. */
export async function createTestSchema(prefix = 'tzw_test'): Promise<TestSchema> {
  if (!PG_URL) throw new Error('TZW_TEST_PG_URL is not set');
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Pool({ connectionString: PG_URL, max: 1 });
  await admin.query(`CREATE SCHEMA ${name}`);
  await admin.end();
  const pool = new pg.Pool({ connectionString: PG_URL, max: 4, options: `-c search_path=${name}` });
  pool.on('error', () => undefined);
  return {
    name,
    url: withSchema(PG_URL, name),
    pool,
    async drop() {
      await pool.query(`DROP SCHEMA ${name} CASCADE`);
      await pool.end();
    },
  };
}

/** `url` with `?schema=NAME` (replacing host and port when `port` is given, for the proxy). */
export function withSchema(url: string, schema: string, port?: number): string {
  const u = new URL(url);
  u.searchParams.set('schema', schema);
  if (port !== undefined) {
    u.hostname = '127.0.0.1';
    u.port = String(port);
  }
  return u.toString();
}

export interface TcpProxy {
  port: number;
  /** Whether connections are forwarded. */
  readonly isUp: boolean;
  /** Cuts every open connection and refuses (resets) new ones until up(). */
  down(): void;
  up(): void;
  close(): Promise<void>;
}

/** A TCP proxy on 127.0.0.1 to `target` (host:port of TZW_TEST_PG_URL by default). */
export async function createTcpProxy(opts: { up?: boolean; target?: { host: string; port: number } } = {}): Promise<TcpProxy> {
  const u = new URL(PG_URL ?? 'postgres://127.0.0.1:5432/x');
  const target = opts.target ?? { host: u.hostname, port: Number(u.port || 5432) };
  let isUp = opts.up ?? true;
  const open = new Set<Socket>();
  const server: Server = createServer((client) => {
    if (!isUp) {
      client.resetAndDestroy();
      return;
    }
    const upstream = connect(target.port, target.host);
    open.add(client);
    open.add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    get isUp() {
      return isUp;
    },
    down() {
      isUp = false;
      for (const s of open) s.resetAndDestroy();
      open.clear();
    },
    up() {
      isUp = true;
    },
    close() {
      isUp = false;
      for (const s of open) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

// ---- Server replicas on one PostgreSQL (test/server/ha*.test.ts) ----

const repo = new URL('../../', import.meta.url).pathname;
const examples = join(repo, 'manifests/examples');
const REVIEWS = ['pod-mapped.json', 'taskrun-mapped.json', 'taskrun-unmapped.json', 'pipelinerun-audit.json'].map((name) => {
  const review = JSON.parse(readFileSync(join(examples, 'reviews', name), 'utf8')) as { request: { uid: string; kind: { kind: string } } };
  return { name, review, path: review.request.kind.kind === 'Pod' ? '/mutate' : '/validate' };
});

export interface HaFiles {
  dir: string;
  ca: string;
  certFile: string;
  keyFile: string;
  signingKeyFile: string;
  jwks: Jwks;
}

/** One CA-signed serving certificate (localhost, 127.0.0.1) and one signing key for all replicas. */
export async function createHaFiles(t: Test): Promise<HaFiles> {
  const dir = mkdtempSync(join(tmpdir(), 'tzw-ha-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ca = await createCertificateAuthority({ commonName: 'ha test CA' });
  const leaf = await createServingCertificate(ca, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  const certFile = join(dir, 'tls.crt');
  const keyFile = join(dir, 'tls.key');
  writeFileSync(certFile, leaf.certPem);
  writeFileSync(keyFile, leaf.keyPem, { mode: 0o600 });
  const signingKeyFile = join(dir, 'signing-key.pem');
  const key = await loadOrCreateSigningKey(signingKeyFile, { create: true });
  return { dir, ca: ca.certPem, certFile, keyFile, signingKeyFile, jwks: toJwks(key.publicJwk) };
}

export interface Replica {
  name: string;
  admission: string;
  child: ChildProcess;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL (kill -9: no drain, no cleanup), then the signal it died of. */
  kill(): Promise<string | null>;
  /** Its log lines so far (pino JSON on stdout). */
  logs(): Array<{ msg: string; [k: string]: unknown }>;
}

export interface ReplicaOptions {
  /** TZW_LOG_LEVEL (default warn). */
  logLevel?: string;
}

/**
 * Starts `tzw serve` as replica `name` (TZW_REPLICA) with its state and spool in s.dir/name — the
 * same directory again when a replica of that name is started again, as a StatefulSet pod comes
 * back on its claim; resolves once it printed its listener URLs.
 */
export async function startReplica(t: Test, s: HaFiles, name: string, storeUrl: string, opts: ReplicaOptions = {}): Promise<Replica> {
  const state = join(s.dir, name);
  mkdirSync(state, { recursive: true });
  const env: Record<string, string> = {};
  // Not TZW_* (config overrides) and not tap's loaders: the children are servers, not tests, and
  // tap's coverage hooks would slow their start several times over.
  for (const [k, v] of Object.entries(process.env)) if (!/^(TZW_|TAP_|_TAPJS_|NODE_OPTIONS$|NODE_V8_COVERAGE$)/.test(k) && v !== undefined) env[k] = v;
  Object.assign(env, {
    TZW_REPLICA: name,
    TZW_STATE_DIR: state,
    TZW_STORE_URL: storeUrl,
    TZW_STORE_SPOOL_PATH: join(state, 'spool.db'),
    TZW_STORE_CHECKPOINT_EVERY_RECORDS: '50',
    TZW_SIGNING_KEY_FILE: s.signingKeyFile,
    TZW_SOURCE_PATHS: examples,
    TZW_ADMISSION_TLS_CERT_FILE: s.certFile,
    TZW_ADMISSION_TLS_KEY_FILE: s.keyFile,
    TZW_ADMISSION_LISTEN: '127.0.0.1:0',
    TZW_AUDIT_API_LISTEN: '127.0.0.1:0',
    TZW_METRICS_LISTEN: '127.0.0.1:0',
    TZW_LOG_LEVEL: opts.logLevel ?? 'warn',
  });
  const child = spawn(process.execPath, ['--import', 'tsx', join(repo, 'webhook/main.ts'), 'serve'], { cwd: repo, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c) => (stdout += c));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const killed = new Promise<string | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const admission = await new Promise<string>((resolve, reject) => {
    child.stderr!.on('data', (c) => {
      stderr += c;
      const m = /admission (https:\/\/[^,]+)/.exec(stderr);
      if (m) resolve(m[1]!);
    });
    void exited.then((code) => reject(new Error(`${name} exited ${code}: ${stderr}\n${stdout}`)));
  });
  return {
    name,
    admission,
    child,
    async stop() {
      child.kill('SIGTERM');
      const code = await exited;
      t.notMatch(stdout, /tzw-ci|password=/, `${name}: no database password in the logs`);
      return code;
    },
    kill() {
      child.kill('SIGKILL');
      return killed;
    },
    logs() {
      return stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { msg: string });
    },
  };
}

export interface Sent {
  uid: string;
  replica: string;
  status: number;
  decisionId: string | undefined;
  allowed: boolean | undefined;
}

/** Sends `total` AdmissionReviews round-robin across the replicas, `concurrency` at a time. */
export async function sendReviews(replicas: Replica[], agent: Agent, total: number, concurrency: number, onProgress?: (done: number) => Promise<void> | void): Promise<Sent[]> {
  const sent: Sent[] = [];
  let next = 0;
  const worker = async () => {
    while (next < total) {
      const i = next++;
      const r = replicas[i % replicas.length]!;
      const { review, path } = REVIEWS[i % REVIEWS.length]!;
      const uid = randomUUID();
      const body = JSON.stringify({ ...review, request: { ...review.request, uid } });
      const res = await request(`${r.admission}${path}`, { method: 'POST', body, headers: { 'content-type': 'application/json' }, dispatcher: agent });
      const json = (await res.body.json()) as { response?: { uid: string; allowed: boolean; auditAnnotations?: Record<string, string> } };
      sent.push({ uid, replica: r.name, status: res.statusCode, decisionId: json.response?.auditAnnotations?.['decision-id'], allowed: json.response?.allowed });
      await onProgress?.(sent.length);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return sent;
}

/** Checks PostgreSQL against the responses: one record per response, nothing else, chains verify. */
export async function checkRecords(t: Test, schema: TestSchema, sent: Sent[], jwks: Jwks): Promise<void> {
  const store = await openStoreForRead(schema.url);
  t.teardown(() => store.close());
  const rows = new Map<string, { requestUid: string; replica: string }[]>();
  for await (const r of store.stream({})) rows.set(r.id, [...(rows.get(r.id) ?? []), { requestUid: r.requestUid, replica: r.replica }]);
  t.equal(rows.size, sent.length, `${sent.length} responses, ${rows.size} records`);
  const unmatched = sent.filter((s) => {
    const found = s.decisionId ? rows.get(s.decisionId) : undefined;
    return !found || found.length !== 1 || found[0]!.requestUid !== s.uid || found[0]!.replica !== s.replica;
  });
  t.strictSame(unmatched, [], 'every response names exactly one record, of its request and its replica');
  const result = await verifyStore(store, jwks);
  t.match(result, { ok: true, records: sent.length, writers: 2, unsigned: 0 }, 'both chains verify, and the final checkpoints sign them whole');
}
