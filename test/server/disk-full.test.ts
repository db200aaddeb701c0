/**
 * Disk full, for real: the SQLite store (through its writer thread) on a size-limited filesystem —
 * a tmpfs this test mounts when it may (root), else SQLite's max_page_count (SqliteStore.capPages),
 * and the test says which ran. While full: every admission fails closed (allowed: false, the store
 * and "full" named in the answer), /readyz is unready naming the store, "store full" is logged
 * once (not per request). When space is back it recovers by itself (the writer's probe), logs
 * "recovered" once with how many records were refused, and admits again; the chain verifies and
 * every decision answered `allowed` is on record, nothing refused is. The second test does the
 * same through a real `tzw serve` process (HTTPS, its own logs) when a tmpfs can be mounted.
 */
import { join } from 'node:path';
import t from 'tap';
import { Agent, request } from 'undici';
import { aPod, aTaskRun } from '../builders.js';
import { verifyStore } from '../../webhook/store/evidence/bundle.js';
import { openStoreForRead } from '../../webhook/store/open-url.js';
import { createTestApp, getOverHttp, review, type TestApp } from '../http/support.js';
import { createHaFiles, sendReviews, startReplica, type Sent } from '../store/pg-support.js';
import { mountSmallFs, smallFsUnavailable } from '../store/small-fs.js';

interface Answer {
  uid: string;
  id: string;
  allowed: boolean;
  message: string;
}

async function admit(app: TestApp['app'], n: number): Promise<Answer> {
  const uid = `u-${n}`;
  const [url, object] = n % 2 === 0 ? ['/mutate', aPod({ serviceAccountName: 'ci-builder' })] : ['/validate', aTaskRun({ serviceAccountName: 'ci-builder' })];
  const res = await app.inject({ method: 'POST', url, payload: JSON.stringify(review(object, { uid })), headers: { 'content-type': 'application/json' } });
  const { response } = res.json() as { response: { uid: string; allowed: boolean; auditAnnotations: Record<string, string>; status?: { message: string } } };
  return { uid, id: response.auditAnnotations['decision-id']!, allowed: response.allowed, message: response.status?.message ?? '' };
}

const lines = (logs: string[], msg: RegExp) => logs.map((l) => JSON.parse(l) as { msg: string; [k: string]: unknown }).filter((l) => msg.test(l.msg));

t.test('SQLite store on a full disk: fails closed, unready, recovers by itself; the chain verifies, nothing allowed is missing', async (t) => {
  const small = mountSmallFs(t, 6 * 1024 * 1024);
  const mode = small.ok ? 'tmpfs (6 MiB, filled by a file)' : 'max_page_count (SqliteStore.capPages)';
  t.comment(`disk full by ${mode}${small.ok ? '' : `: ${small.why}`}`);
  const { app, store, jwks, records, logs } = await createTestApp(t, small.ok ? { storeDir: small.fs.dir } : {});
  const answers: Answer[] = [];
  let n = 0;
  for (let i = 0; i < 20; i++) answers.push(await admit(app, n++));
  t.ok(answers.every((a) => a.allowed), 'admitted before the disk fills');

  if (small.ok) t.ok(small.fs.fill() > 0, 'the filler took the free space');
  else t.ok((await store.capPages(1)) > 0, 'the database is capped at its current size');

  // The WAL may still have room for a few commits (frames it reuses); then every commit fails.
  let consecutive = 0;
  for (let i = 0; i < 3000 && consecutive < 10; i++) {
    const a = await admit(app, n++);
    answers.push(a);
    consecutive = a.allowed ? 0 : consecutive + 1;
  }
  t.equal(consecutive, 10, 'the store stops committing');
  const firstRefused = answers.findIndex((a) => !a.allowed);
  t.ok(answers.slice(firstRefused).every((a) => !a.allowed), 'once full, nothing is admitted');
  const refused = answers.filter((a) => !a.allowed);
  t.strictSame([...new Set(refused.map((a) => a.message.replace(/\d+ record\(s\)/, 'N record(s)')))], [
    `tekton-zscaler-webhook could not record the decision durably (ERR_STORE_UNAVAILABLE: the decision store ${store.path} is full (SQLITE_FULL): could not commit N record(s): database or disk is full), so the request is refused; retry later`,
  ], 'fails closed, naming the store and that it is full');
  t.strictSame(await getOverHttp(app, '/readyz'), { status: 503, json: { status: 'not ready', unmet: [`decision store ${store.path} full (SQLITE_FULL)`] } }, 'unready, saying why');

  for (let i = 0; i < 30; i++) answers.push(await admit(app, n++));
  t.ok(answers.slice(-30).every((a) => !a.allowed), 'still refusing while full');
  const full = lines(logs, /^decision store full/);
  t.equal(full.length, 1, `"store full" logged once for ${answers.filter((a) => !a.allowed).length} refusals`);
  t.match(full[0], { level: 50, fullCode: 'SQLITE_FULL', path: store.path, err: { code: 'SQLITE_FULL' } });

  if (small.ok) small.fs.free();
  else await store.capPages(0);
  // No request needed: the writer's probe finds the space (every 20 ms here).
  let ready = await getOverHttp(app, '/readyz');
  for (let i = 0; i < 250 && ready.status !== 200; i++) {
    await new Promise((r) => setTimeout(r, 20));
    ready = await getOverHttp(app, '/readyz');
  }
  t.strictSame(ready, { status: 200, json: { status: 'ready' } }, 'ready again without a restart');
  const recovered = lines(logs, /^decision store recovered/);
  t.equal(recovered.length, 1, '"recovered" logged once');
  t.match(recovered[0], { level: 30, wasFull: true, fullCode: 'SQLITE_FULL', path: store.path, refusedRecords: Number });
  t.ok((recovered[0]!.refusedRecords as number) >= answers.filter((a) => !a.allowed).length, 'with the records refused meanwhile');
  t.equal(lines(logs, /^decision store full/).length, 1, 'and no second "full" line');

  for (let i = 0; i < 20; i++) answers.push(await admit(app, n++));
  t.ok(answers.slice(-20).every((a) => a.allowed), 'admitting again');

  const stored = await records();
  const ids = new Map(stored.map((r) => [r.id, r.requestUid]));
  t.equal(ids.size, stored.length, 'no id twice');
  const allowed = answers.filter((a) => a.allowed);
  t.strictSame(allowed.filter((a) => ids.get(a.id) !== a.uid), [], `every one of the ${allowed.length} decisions answered allowed is on record`);
  t.strictSame(refused.filter((a) => ids.has(a.id)), [], 'no refused decision half-written');
  t.equal(stored.length, allowed.length, 'and nothing else');
  t.match(await verifyStore(store, jwks), { ok: true, records: allowed.length }, 'the chain verifies');
});

const noMount = smallFsUnavailable();

t.test('tzw serve (real HTTPS, SQLite on a full tmpfs): unready naming the full store, refuses every admission, logs once, heals by itself', { skip: noMount ? `needs a tmpfs: ${noMount} (the in-process test above covers the max_page_count fallback)` : false }, async (t) => {
  const s = await createHaFiles(t);
  const small = mountSmallFs(t, 6 * 1024 * 1024);
  if (!small.ok) throw new Error(small.why);
  const dbPath = join(small.fs.dir, 'decisions.db');
  const r = await startReplica(t, s, 'tzw-full-0', `sqlite:${dbPath}`, { logLevel: 'info' });
  const agent = new Agent({ connect: { ca: s.ca }, connections: 4 });
  t.teardown(() => agent.close());
  const readyz = async () => {
    const res = await request(`${r.admission}/readyz`, { dispatcher: agent });
    return { status: res.statusCode, body: (await res.body.json()) as { unmet?: string[] } };
  };
  const sent = await sendReviews([r], agent, 20, 2);
  t.ok(sent.every((x) => x.status === 200 && x.decisionId), 'admitting before the disk fills');
  small.fs.fill();
  let refusedRun: Sent[] = [];
  for (let i = 0; i < 100 && !refusedRun.some((x) => x.allowed === false); i++) refusedRun = await sendReviews([r], agent, 10, 1);
  const all = [...sent, ...refusedRun, ...(await sendReviews([r], agent, 20, 2))];
  t.strictSame(all.filter((x) => x.status !== 200 || !x.decisionId), [], 'every request is answered (200, naming a decision)');
  t.match(await readyz(), { status: 503, body: { unmet: [`decision store ${dbPath} full (SQLITE_FULL)`] } }, 'unready, naming the full store');
  t.equal(r.logs().filter((l) => /^decision store full/.test(l.msg)).length, 1, '"decision store full" logged once');

  small.fs.free();
  let ready = await readyz();
  for (const end = Date.now() + 10_000; Date.now() < end && ready.status !== 200; await new Promise((res) => setTimeout(res, 100))) ready = await readyz();
  t.equal(ready.status, 200, 'ready again, no restart');
  t.equal(r.logs().filter((l) => /^decision store recovered/.test(l.msg)).length, 1, '"decision store recovered" logged once');
  const after = await sendReviews([r], agent, 20, 2);
  t.ok(after.every((x) => x.status === 200 && x.decisionId), 'admitting again');
  t.equal(await r.stop(), 0);

  // Offline: every decision answered allowed is on record, the chain verifies.
  const store = await openStoreForRead(`sqlite:${dbPath}`);
  t.teardown(() => store.close());
  const ids = new Set<string>();
  for await (const rec of store.stream({})) ids.add(rec.id);
  const answered = [...all, ...after].filter((x) => x.allowed);
  t.strictSame(answered.filter((x) => !ids.has(x.decisionId!)), [], `all ${answered.length} decisions answered allowed are on record`);
  t.match(await verifyStore(store, s.jwks), { ok: true }, 'the chain verifies');
});
