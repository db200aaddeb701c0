/**
 * PostgreSQL test support: the test database from TZW_TEST_PG_URL (set by .ci/run), one throwaway
 * schema per test file, and a TCP proxy a test can cut to simulate a database outage without
 * stopping the shared cluster.
 */
import { randomBytes } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';
import pg from 'pg';

export const PG_URL = process.env.TZW_TEST_PG_URL;

/** tap's `{ skip }` option: a plain reason when there is no test database. */
export const pgSkip: string | false = PG_URL ? false : 'PostgreSQL tests skipped: TZW_TEST_PG_URL is not set (.ci/run sets it)';

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
