/**
 * The store contract on the server's PostgreSQL store as deployed: local spool + forwarder +
 * PostgreSQL. Reads go to PostgreSQL, which receives records shortly after the spool committed
 * them; the harness therefore lets each read wait until the spool drained (read-your-writes is
 * what the contract checks, eventual forwarding is covered by spool-forward.test.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { ChainedRecord } from '../../webhook/core/record.js';
import type { VerifiableStore } from '../../webhook/store/port.js';
import { createSpooledPostgresStore, type SpooledPostgresStore } from '../../webhook/store/postgres/open.js';
import { runStoreContract, type MakeStore } from './contract.js';
import { createTestSchema, pgSkip } from './pg-support.js';
import { createHarness, createTestSigner, holdSqliteWriteLock } from './setup.js';

const { signer, jwks } = await createTestSigner(t, 'tzw-spool-contract-key-');

/** The spooled store whose reads first wait for the spool to drain. */
function readYourWrites(s: SpooledPostgresStore): VerifiableStore {
  const sync = () => s.drained(10_000);
  return {
    append: (r, o) => s.append(r, o),
    get: async (id) => (await sync(), s.get(id)),
    query: async (f) => (await sync(), s.query(f)),
    stream: (f) =>
      (async function* (): AsyncIterable<ChainedRecord> {
        await sync();
        yield* s.stream(f);
      })(),
    streamChain: () =>
      (async function* () {
        await sync();
        yield* s.streamChain();
      })(),
    checkpoints: async () => (await sync(), s.checkpoints()),
    anchors: async () => (await sync(), s.anchors()),
    prune: async (olderThan) => (await sync(), s.prune(olderThan)),
    loadStats: async (f, b) => (await sync(), s.loadStats(f, b)),
    writable: () => s.writable(),
    close: () => s.close(),
  };
}

t.test('spooled PostgreSQL store', { skip: pgSkip }, async (t) => {
  const makeSpooled: MakeStore = async (opts) => {
    const schema = await createTestSchema();
    const dir = mkdtempSync(join(tmpdir(), 'tzw-spool-contract-'));
    const spoolPath = join(dir, 'spool.db');
    const open = async () =>
      readYourWrites(
        await createSpooledPostgresStore({
          postgres: { url: schema.url, replica: opts.replica, signer, checkpointEvery: opts.checkpointEvery },
          spool: { path: spoolPath, maxBytes: 64 * 1024 * 1024, probeMs: 20, busyTimeoutMs: 50 },
          minBackoffMs: 10,
          maxBackoffMs: 100,
        }),
      );
    return createHarness({
      v2: true,
      open,
      jwks,
      // Appends commit to the spool: another connection holding its write lock makes them fail.
      breakWrites: () => holdSqliteWriteLock(spoolPath),
      async remove() {
        await schema.drop();
        rmSync(dir, { recursive: true, force: true });
      },
    });
  };
  runStoreContract(t, 'postgres+spool', makeSpooled);
});
