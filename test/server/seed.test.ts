/**
 * `npm start`'s example decisions: startServer({seedReviews}) sends the example AdmissionReviews
 * through its own admission routes once, on an empty store only, so they are real recorded
 * decisions (the same rules, records and chain as any request), and the console at / shows them.
 */
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../webhook/config/load.js';
import { startServer } from '../../webhook/server.js';
import { openStoreForRead } from '../../webhook/store/open-url.js';
import type { ChainedRecord } from '../../webhook/core/record.js';

const repo = new URL('../../', import.meta.url).pathname;
const examples = join(repo, 'manifests/examples');

function configFor(dir: string) {
  const r = loadConfig({
    env: {
      TZW_STATE_DIR: dir, TZW_STORE_URL: `sqlite:${join(dir, 'decisions.db')}`, TZW_SOURCE_PATHS: examples,
      TZW_ADMISSION_LISTEN: '127.0.0.1:0', TZW_AUDIT_API_LISTEN: '127.0.0.1:0', TZW_METRICS_LISTEN: '127.0.0.1:0',
      TZW_LOG_LEVEL: 'silent', TZW_REPLICA: 'seed-test',
    },
    readFile: (p) => readFileSync(p, 'utf8'), hostname: 'h',
  });
  if (!r.ok) throw new Error(r.errors.join('; '));
  return r.config;
}

async function recordsIn(dir: string): Promise<ChainedRecord[]> {
  const store = await openStoreForRead(`sqlite:${join(dir, 'decisions.db')}`, { cwd: dir });
  try {
    return (await store.query({ limit: 100 })).items;
  } finally {
    await store.close();
  }
}

t.test('the example reviews become real decisions once, on an empty store only', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tzw-seed-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const first = await startServer(configFor(dir), { seedReviews: join(examples, 'reviews') });
  await first.close();
  const seeded = await recordsIn(dir);
  t.strictSame(
    seeded.map((r) => [r.endpoint, r.kind.kind, r.namespace, r.verdict, r.reasons.map((x) => x.code)]).sort(),
    [
      ['mutate', 'Pod', 'payments', 'patched', ['POD_INJECTED']],
      ['validate', 'PipelineRun', 'data-science', 'warned', ['PIPELINERUN_SA_UNMAPPED']],
      ['validate', 'TaskRun', 'payments', 'allowed', ['TASKRUN_SA_MAPPED']],
      ['validate', 'TaskRun', 'payments', 'denied', ['TASKRUN_SA_UNMAPPED']],
    ],
    'one decision per example review, decided by the real rules',
  );
  t.ok(seeded.every((r) => r.replica === 'seed-test' && r.seq >= 1 && r.hash.length === 64), 'chained like any record');

  const second = await startServer(configFor(dir), { seedReviews: join(examples, 'reviews') });
  await second.close();
  t.equal((await recordsIn(dir)).length, seeded.length, 'a restart does not record them again');
});

t.test('a missing folder is logged, and the server still serves', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tzw-seed-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const server = await startServer(configFor(dir), { seedReviews: join(dir, 'no-such-folder') });
  await server.close();
  t.strictSame(await recordsIn(dir), []);
});
