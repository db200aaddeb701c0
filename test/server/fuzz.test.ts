/**
 * Fuzz (issue 13): 10,000+ generated AdmissionReviews — valid, truncated, with wrong types, huge —
 * POSTed to a real HTTPS admission listener backed by a real SQLite store. The server must not
 * crash; every answer is 2xx or 4xx (never 5xx, never a dropped connection); every answer names a
 * decision, and that decision is on record (or, for a dry run, only logged, as the contract says).
 * fast-check generates the inputs from a fixed seed (printed), so a failure reproduces.
 */
import t from 'tap';
import fc from 'fast-check';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { loadConfig } from '../../webhook/config/load.js';
import { startServer } from '../../webhook/server.js';
import { openStore } from '../../webhook/store/open.js';
import { verifyStore } from '../../webhook/store/evidence/bundle.js';

const repo = new URL('../../', import.meta.url).pathname;
const examples = join(repo, 'manifests/examples');
const TEMPLATES = ['taskrun-mapped.json', 'taskrun-unmapped.json', 'pod-mapped.json', 'pipelinerun-audit.json']
  .map((f) => JSON.parse(readFileSync(join(examples, 'reviews', f), 'utf8')) as Record<string, unknown>);
const SEED = Number(process.env.TZW_FUZZ_SEED ?? 20261202);
const RUNS = Number(process.env.TZW_FUZZ_RUNS ?? 10_000);
// ~50 s for 10,000 on a busy 2-core machine; give the file room beyond tap's default 120 s.
t.setTimeout(300_000);

type Case = { kind: 'valid' | 'wrong-type' | 'truncated' | 'garbage' | 'huge'; body: string | Buffer; uid?: string };

/** Every JSON path (as key lists) of a value, objects and arrays alike. */
function paths(v: unknown, prefix: Array<string | number> = []): Array<Array<string | number>> {
  if (typeof v !== 'object' || v === null) return [prefix];
  const entries = Array.isArray(v) ? v.map((x, i) => [i, x] as const) : Object.entries(v);
  return [prefix, ...entries.flatMap(([k, x]) => paths(x, [...prefix, k]))];
}

function setAt(root: Record<string, unknown>, path: Array<string | number>, value: unknown): unknown {
  if (path.length === 0) return value;
  let node = root as Record<string | number, unknown>;
  for (const k of path.slice(0, -1)) node = node[k] as Record<string | number, unknown>;
  node[path[path.length - 1]!] = value;
  return root;
}

const template = fc.constantFrom(...TEMPLATES).map((r) => structuredClone(r));
const requestOverrides = fc.record({
  uid: fc.uuid(),
  namespace: fc.oneof(fc.constantFrom('payments', 'data-science', 'default', 'kube-system'), fc.string({ maxLength: 70 })),
  operation: fc.constantFrom('CREATE', 'UPDATE', 'DELETE', 'CONNECT'),
  dryRun: fc.boolean(),
  name: fc.string({ maxLength: 300 }),
}, { requiredKeys: ['uid'] });

const valid: fc.Arbitrary<Case> = fc.tuple(template, requestOverrides).map(([r, o]) => {
  Object.assign(r.request as Record<string, unknown>, o);
  return { kind: 'valid', body: JSON.stringify(r), uid: o.uid };
});
const wrongType: fc.Arbitrary<Case> = fc.tuple(template, fc.nat(), fc.jsonValue({ maxDepth: 3 }), fc.uuid()).map(([r, n, value, uid]) => {
  (r.request as Record<string, unknown>).uid = uid;
  const all = paths(r).filter((p) => p.length > 0);
  const path = all[n % all.length]!;
  const body = setAt(r, path, value);
  return { kind: 'wrong-type', body: JSON.stringify(body ?? null) };
});
const truncated: fc.Arbitrary<Case> = fc.tuple(template, fc.double({ min: 0, max: 1, noNaN: true })).map(([r, f]) => {
  const text = JSON.stringify(r);
  return { kind: 'truncated', body: text.slice(0, Math.floor(f * (text.length - 1))) };
});
const garbage: fc.Arbitrary<Case> = fc.oneof(
  fc.string({ maxLength: 200 }),
  fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v) ?? 'null'),
  fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
).map((body) => ({ kind: 'garbage', body }));
const huge: fc.Arbitrary<Case> = fc.tuple(template, fc.constantFrom(512 * 1024, 3 * 1024 * 1024, 8 * 1024 * 1024), fc.uuid()).map(([r, size, uid]) => {
  (r.request as Record<string, unknown>).uid = uid;
  const obj = (r.request as { object: { metadata: Record<string, unknown> } }).object;
  obj.metadata.annotations = { ...(obj.metadata.annotations as object), 'fuzz.example/pad': 'x'.repeat(size) };
  return { kind: 'huge', body: JSON.stringify(r), uid };
});

t.test(`fuzz: ${RUNS} generated AdmissionReviews against a real HTTPS listener (seed ${SEED})`, async (t) => {
  // The store's fsyncs are not under test: keep its file in memory when the machine has /dev/shm.
  const dir = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'tzw-fuzz-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const loaded = loadConfig({
    env: {
      TZW_STATE_DIR: dir, TZW_STORE_URL: `sqlite:${join(dir, 'decisions.db')}`, TZW_SOURCE_PATHS: examples, TZW_LOG_LEVEL: 'info',
      TZW_ADMISSION_LISTEN: '127.0.0.1:0', TZW_AUDIT_API_LISTEN: '127.0.0.1:0', TZW_METRICS_LISTEN: '127.0.0.1:0', TZW_REPLICA: 'fuzz',
    },
    readFile: (p) => readFileSync(p, 'utf8'), hostname: 'h',
  });
  if (!loaded.ok) throw new Error(loaded.errors.join('; '));
  const dryRunLogged = new Set<string>();
  let crashLines = 0;
  const logStream = new Writable({
    write(chunk, _e, cb) {
      for (const line of String(chunk).split('\n')) {
        if (line.includes('"dryRun":true')) {
          const id = /"id":"([^"]+)"/.exec(line)?.[1];
          if (id) dryRunLogged.add(id);
        }
        if (line.includes('"level":60') || line.includes('decision core threw') || line.includes('unhandled error')) crashLines += 1;
      }
      cb();
    },
  });
  const server = await startServer(loaded.config, { logStream });
  let closed = false;
  t.teardown(async () => { if (!closed) await server.close(); });
  const ca = readFileSync(join(dir, 'ca.crt'), 'utf8');
  const agent = new Agent({ keepAlive: true, maxSockets: 8, ca });
  t.teardown(() => agent.destroy());

  const mix = fc.oneof(
    { weight: 40, arbitrary: valid },
    { weight: 25, arbitrary: wrongType },
    { weight: 20, arbitrary: truncated },
    { weight: 15, arbitrary: garbage },
  );
  const cases: Case[] = [...fc.sample(mix, { numRuns: RUNS, seed: SEED }), ...fc.sample(huge, { numRuns: 12, seed: SEED })];
  const counts: Record<string, number> = {};
  const statuses: Record<string, number> = {};
  const problems: string[] = [];
  const decisionIds: string[] = [];
  const kindOf = new Map<string, string>();
  let hugeCut = 0;
  const started = performance.now();

  const send = (c: Case, path: string) => new Promise<void>((resolve) => {
    let answered = false;
    const req = httpsRequest(`${server.urls.admission}${path}`, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (x: Buffer) => chunks.push(x));
      res.on('end', () => {
        answered = true;
        const status = res.statusCode ?? 0;
        const key = `${c.kind} ${status}`;
        statuses[key] = (statuses[key] ?? 0) + 1;
        let body: Record<string, unknown> = {};
        try {
          body = JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>;
        } catch {
          problems.push(`${c.kind}: answer is not JSON (${status})`);
        }
        if (status >= 500 || status < 200 || (status >= 300 && status < 400)) problems.push(`${c.kind}: status ${status} ${JSON.stringify(body).slice(0, 200)}`);
        const response = body.response as { uid?: string; auditAnnotations?: Record<string, string> } | undefined;
        const id = status < 300 ? response?.auditAnnotations?.['decision-id'] : (body.decisionId as string | undefined);
        if (!id) problems.push(`${c.kind}: answer ${status} names no decision: ${JSON.stringify(body).slice(0, 200)}`);
        else decisionIds.push(id);
        if (id) kindOf.set(id, `${c.kind} ${status}`);
        if (status < 300 && c.uid !== undefined && response?.uid !== c.uid) problems.push(`${c.kind}: uid ${String(response?.uid)} does not echo ${c.uid}`);
        resolve();
      });
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      // An over-limit body is refused (413) while the client is still writing it: the server may
      // close first and the client see EPIPE/ECONNRESET instead of the answer. Its record is
      // checked below (REVIEW_TOO_LARGE).
      if (answered) return;
      if (c.kind === 'huge' && (err.code === 'EPIPE' || err.code === 'ECONNRESET')) hugeCut += 1;
      else problems.push(`${c.kind}: ${err.message}`);
      resolve();
    });
    req.end(c.body);
  });

  // 8 at a time over 8 keep-alive connections, both endpoints.
  let next = 0;
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (next < cases.length) {
      const i = next++;
      const c = cases[i]!;
      counts[c.kind] = (counts[c.kind] ?? 0) + 1;
      await send(c, i % 2 === 0 ? '/validate' : '/mutate');
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  t.comment(`${cases.length} requests in ${seconds.toFixed(1)} s; inputs ${JSON.stringify(counts)}; answers ${JSON.stringify(statuses)}`);

  t.strictSame(problems.slice(0, 20), [], 'every answer is a 2xx/4xx JSON naming its decision (first 20 problems shown)');
  t.equal(problems.length, 0);
  t.ok(cases.length >= 10_000 || RUNS < 10_000, `${cases.length} requests sent`);
  t.equal((await new Promise<number>((resolve) => httpsRequest(`${server.urls.admission}/healthz`, { agent, method: 'GET' }, (res) => { res.resume(); resolve(res.statusCode ?? 0); }).end())), 200, 'the server is still up');
  t.equal(crashLines, 0, 'no fatal or internal-error log line');

  closed = true;
  await server.close();
  const opened = await openStore(loaded.config, { info: () => {}, warn: () => {}, error: () => {} } as never);
  t.teardown(() => opened.store.close());
  const stored = new Set<string>();
  let tooLarge = 0;
  for await (const r of opened.store.stream({})) {
    stored.add(r.id);
    if (r.reasons.some((x) => x.code === 'REVIEW_TOO_LARGE')) tooLarge += 1;
  }
  // A dry run (request.dryRun true, whatever the generator put there) is logged, never stored.
  const dryRunIds = decisionIds.filter((id) => dryRunLogged.has(id));
  const missing = decisionIds.filter((id) => !stored.has(id) && !dryRunLogged.has(id));
  t.strictSame(missing.slice(0, 5).map((id) => `${id} ${kindOf.get(id)}`), [], `every answered decision is on record (${decisionIds.length})`);
  const overLimit = cases.filter((c) => c.kind === 'huge' && c.body.length > loaded.config.admission.bodyLimitBytes).length;
  t.equal(tooLarge, overLimit, `every over-limit body (${overLimit}, ${hugeCut} cut off while sending) has its REVIEW_TOO_LARGE record`);
  t.equal(dryRunIds.filter((id) => stored.has(id)).length, 0, `dry runs (${dryRunIds.length}) are logged, not recorded`);
  t.ok(dryRunIds.length > 0, 'the mix includes dry runs');
  t.equal(stored.size, decisionIds.length - dryRunIds.length + hugeCut, 'and nothing else is on record');
  const verified = await verifyStore(opened.store, opened.jwks());
  t.match(verified, { ok: true }, 'the chain verifies');
});
