/**
 * Durability under SIGKILL: a real `tzw serve` process under concurrent load is killed without
 * warning. After a restart on the same SQLite file, every request whose response the client received
 * has exactly one record, and every hash chain verifies. The same against PostgreSQL behind the
 * spool (its writer thread commits to the spool before the response; the restart forwards what the
 * kill left in it, exactly once).
 */
import t, { type Test } from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStoreForRead } from '../../webhook/store/open-url.js';
import { verifyStore } from '../../webhook/store/evidence/bundle.js';
import { loadOrCreateSigningKey, toJwks } from '../../webhook/store/evidence/signing.js';
import type { ChainedRecord } from '../../webhook/core/record.js';
import type { VerifiableStore } from '../../webhook/store/port.js';
import { createTestSchema, pgSkip } from '../store/pg-support.js';

// Two real servers killed and restarted per store, the PostgreSQL one forwarding afterwards: on a
// loaded 2-core machine that passes tap's 120 s per-file default.
t.setTimeout(300_000);

const repo = new URL('../../', import.meta.url).pathname;
const examples = join(repo, 'manifests/examples');
const bodies = ['taskrun-mapped.json', 'taskrun-unmapped.json', 'pod-mapped.json'].map((f) => readFileSync(join(examples, 'reviews', f), 'utf8'));

/** Where the server keeps its decisions: the TZW_STORE_* environment and the URL to read them back. */
interface StoreUnderTest {
  env: Record<string, string>;
  url: string;
}

function startServe(dir: string, store: StoreUnderTest): { child: ChildProcess; url: Promise<string> } {
  const child = spawn(process.execPath, ['--import', 'tsx', join(repo, 'webhook/main.ts'), 'serve'], {
    cwd: repo,
    env: {
      ...process.env, TZW_STATE_DIR: dir, ...store.env, TZW_SOURCE_PATHS: examples,
      TZW_ADMISSION_LISTEN: '127.0.0.1:0', TZW_AUDIT_API_LISTEN: '127.0.0.1:0', TZW_METRICS_LISTEN: '127.0.0.1:0', TZW_LOG_LEVEL: 'warn',
      TZW_REPLICA: 'crash-test',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  const url = new Promise<string>((resolve, reject) => {
    child.stderr!.on('data', (c) => {
      stderr += c;
      const m = /admission (https:\/\/[^,]+)/.exec(stderr);
      if (m) resolve(m[1]!);
    });
    child.on('exit', (code, sig) => reject(new Error(`serve exited (${code ?? sig}) before listening: ${stderr}`)));
  });
  return { child, url };
}

function post(url: string, path: string, body: string, ca: string, agent: Agent): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { method: 'POST', ca, agent, headers: { 'content-type': 'application/json' } }, (res) => {
      let data = '';
      res.on('data', (c) => (data += c));
      res.on('end', () => {
        try {
          resolve(JSON.parse(data).response.auditAnnotations['decision-id']);
        } catch (err) {
          reject(err);
        }
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function crashUnderLoad(t: Test, dir: string, store: StoreUnderTest): Promise<void> {
  const first = startServe(dir, store);
  const url = await first.url;
  const ca = readFileSync(join(dir, 'ca.crt'), 'utf8');
  const agent = new Agent({ keepAlive: true, maxSockets: 16 });
  const answered: string[] = [];
  let failed = 0;
  let stop = false;
  const worker = async (w: number): Promise<void> => {
    for (let i = 0; !stop && i < 5000; i++) {
      const body = bodies[(w + i) % bodies.length]!;
      try {
        answered.push(await post(url, body.includes('"Pod"') ? '/mutate' : '/validate', body, ca, agent));
      } catch {
        failed++;
      }
    }
  };
  const workers = Array.from({ length: 16 }, (_, w) => worker(w));
  while (answered.length < 300) await new Promise((r) => setTimeout(r, 20));
  const exited = new Promise((r) => first.child.on('exit', r));
  first.child.kill('SIGKILL');
  await exited;
  stop = true;
  await Promise.all(workers);
  agent.destroy();
  t.ok(answered.length >= 300, `${answered.length} responses received before the kill (${failed} requests cut off)`);

  // Restart on the same file: the writer's chain must continue cleanly after the crash.
  const second = startServe(dir, store);
  const url2 = await second.url;
  const agent2 = new Agent({ keepAlive: false });
  const after = await post(url2, '/validate', bodies[0]!, ca, agent2);
  const reader = await openStoreForRead(store.url);
  t.teardown(() => reader.close());
  const countsOf = async (): Promise<Map<string, number>> => {
    const counts = new Map<string, number>();
    for await (const r of reader.stream({}) as AsyncIterable<ChainedRecord>) counts.set(r.id, (counts.get(r.id) ?? 0) + 1);
    return counts;
  };
  // Behind a spool the restarted server forwards what the kill left there: wait until it has.
  let counts = await countsOf();
  for (let i = 0; i < 300 && store.env.TZW_STORE_SPOOL_PATH && counts.size < answered.length + 1; i++) {
    await new Promise((r) => setTimeout(r, 100));
    counts = await countsOf();
  }
  const exited2 = new Promise((r) => second.child.on('exit', r));
  second.child.kill('SIGTERM');
  await exited2;

  counts = await countsOf();
  const missing = answered.filter((id) => counts.get(id) !== 1);
  t.strictSame(missing, [], 'every answered request has exactly one record');
  t.equal(counts.get(after), 1, 'the restarted server appends to the chain');
  const key = await loadOrCreateSigningKey(join(dir, 'signing-key.pem'), { create: false });
  const result = await verifyStore(reader as VerifiableStore, toJwks(key.publicJwk));
  t.equal(result.ok, true, result.ok ? 'chain verifies' : `chain broken: ${JSON.stringify(result)}`);
}

t.test('SIGKILL under load loses no answered decision, and the chain verifies after restart', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tzw-crash-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  await crashUnderLoad(t, dir, { env: { TZW_STORE_URL: `sqlite:${join(dir, 'decisions.db')}` }, url: `sqlite:${join(dir, 'decisions.db')}` });
});

t.test('PostgreSQL behind the spool: SIGKILL under load loses no answered decision, none is forwarded twice', { skip: pgSkip }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tzw-crash-pg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const schema = await createTestSchema();
  t.teardown(() => schema.drop());
  await crashUnderLoad(t, dir, { env: { TZW_STORE_URL: schema.url, TZW_STORE_SPOOL_PATH: join(dir, 'spool.db') }, url: schema.url });
});
