/**
 * `npx tsx bench/core-micro.ts [--iterations N]` — CPU cost of each step of one admission, measured
 * in-process (no HTTP, no TLS), for the /mutate pod and the /validate PipelineRun of bench/run.ts:
 * JSON parse, envelope parse, decide, object digest (JS emitter and the native addon), record, one
 * pino log line, render, serialise,
 * and one append to a durable SQLite store (amortised over a group commit of 50, as under load).
 * Explains where the server's CPU per request goes when run.ts shows a ratio below target.
 */
import { toDecideOptions } from '../webhook/config/options.js';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createLogger } from '../webhook/log.js';
import { canonicalObjectOfReview, toDigestOfObject, toDigestOfReview } from '../webhook/store/evidence/object-digest.js';
import { v7 as uuidv7 } from 'uuid';
import { defaultConfig } from '../webhook/config/schema.js';
import { decideAdmission } from '../webhook/core/admit.js';
import { createFactsIndex } from '../webhook/core/mapping-index.js';
import { formatMicros, toRecord, type DecisionRecord, type Endpoint } from '../webhook/core/record.js';
import { parseAdmissionReview, renderReview } from '../webhook/core/wire.js';
import { toReviewJson } from '../webhook/http/admission.js';
import { createMetrics } from '../webhook/http/metrics.js';
import { loadBenchFacts, mutateReviewBody, validateReviewBody } from './fixtures.js';

type Step = [string, () => unknown];

function time(iterations: number, fn: () => unknown): number {
  for (let i = 0; i < Math.min(2000, iterations); i++) fn();
  const t = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) fn();
  return Number(process.hrtime.bigint() - t) / 1000 / iterations;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { iterations: { type: 'string', default: '20000' }, 'page-size': { type: 'string' } } });
  const iterations = Number(values.iterations);
  const config = defaultConfig('bench-0');
  const options = toDecideOptions(config);
  const index = createFactsIndex(config.domain);
  loadBenchFacts(index, 10);
  const metrics = createMetrics({ defaultMetrics: true });
  const logger = createLogger({ level: 'info', replica: 'bench-0', dest: '/dev/null' });
  const loggerExplicit = logger.child({}, { redact: { paths: ['req.headers.authorization'], censor: '[redacted]' } });
  const dir = mkdtempSync(join(tmpdir(), 'tzw-micro-'));
  const { createSqliteStore } = await import('../webhook/store/sqlite/store.js');
  if (values['page-size']) {
    // Experiment: create the file with another page size before the store migrates it.
    const { default: Database } = await import('better-sqlite3');
    const db = new Database(join(dir, 'd.db'));
    db.pragma(`page_size = ${Number(values['page-size'])}`);
    db.exec('CREATE TABLE bench_page_size (x); DROP TABLE bench_page_size;');
    console.log(`page_size ${String(db.pragma('page_size', { simple: true }))}`);
    db.close();
  }
  const { loadOrCreateSigningKey } = await import('../webhook/store/evidence/signing.js');
  const store = await createSqliteStore({ path: join(dir, 'd.db'), replica: 'bench-0', signer: await loadOrCreateSigningKey(join(dir, 'k.pem'), { create: true }) });

  const rows: string[][] = [['step', 'mutate µs', 'validate µs']];
  const results = new Map<string, Record<Endpoint, number>>();
  for (const [endpoint, body] of [['mutate', mutateReviewBody()], ['validate', validateReviewBody()]] as const) {
    const parsedBody = JSON.parse(body) as unknown;
    const rawBody = Buffer.from(body);
    const review = parseAdmissionReview(parsedBody);
    if (!review.ok) throw new Error(review.message);
    const req = review.review.request;
    const decision = decideAdmission(endpoint, req, index, options, 'id');
    const rec = toRecord({ id: uuidv7(), time: formatMicros(1_767_225_600_000_000n), endpoint, replica: 'bench-0', durationMs: 1, objectDigest: 'x' }, decision, req);
    const rendered = renderReview(req.uid, decision, 'id');
    if (toReviewJson(rendered) !== JSON.stringify(rendered)) throw new Error('toReviewJson differs from JSON.stringify');
    const admissionHist = metrics.admissionSeconds.labels({ endpoint });
    const storeHist = metrics.storeWriteSeconds;
    const line = { decision: { id: rec.id, endpoint, verdict: rec.verdict, requestUid: rec.requestUid, kind: rec.kind.kind, namespace: rec.namespace, name: rec.name, user: rec.user.username, serviceAccounts: rec.serviceAccounts, mode: rec.mode, reasons: rec.reasons.map((r) => r.code), mapping: rec.mapping?.name, policyTags: rec.policyTags, ops: rec.patch.length, dryRun: rec.dryRun, durationMs: rec.durationMs } };
    const steps: Step[] = [
      [`JSON.parse body (${body.length} B)`, () => JSON.parse(body)],
      ['parseAdmissionReview', () => parseAdmissionReview(parsedBody)],
      ['decideAdmission', () => decideAdmission(endpoint, req, index, options, 'id')],
      ['objectDigest: JS emitter on the parsed object (hot: one object)', () => toDigestOfObject(req.object)],
      ['objectDigest: native from the raw body, as the server does', () => toDigestOfReview(rawBody, req.object)],
      ['  of which: the addon\'s canonical bytes', () => canonicalObjectOfReview(rawBody)],
      ['  for scale: sha256(JSON.stringify(object))', () => createHash('sha256').update(JSON.stringify(req.object)).digest('hex')],
      ['uuidv7 + formatMicros + toRecord', () => toRecord({ id: uuidv7(), time: formatMicros(1_767_225_600_000_000n), endpoint, replica: 'bench-0', durationMs: 1, objectDigest: 'x' }, decision, req)],
      ['pino info line, the server\'s logger (redact on)', () => logger.info(line, 'admission decision')],
      ['pino info line, explicit paths only (as admission logs)', () => loggerExplicit.info(line, 'admission decision')],
      ['metrics now: counter inc + 2 observe(performance.now() delta)', () => {
        const t0 = performance.now();
        metrics.decisions.inc({ endpoint, verdict: rec.verdict, namespace: rec.namespace });
        storeHist.observe((performance.now() - t0) / 1000);
        admissionHist.observe((performance.now() - t0) / 1000);
      }],
      ['metrics before: counter inc + 2 histogram timers', () => {
        metrics.decisions.inc({ endpoint, verdict: rec.verdict, namespace: rec.namespace });
        metrics.storeWriteSeconds.startTimer()();
        metrics.admissionSeconds.startTimer({ endpoint })();
      }],
      [`renderReview + JSON.stringify (${JSON.stringify(rendered).length} B)`, () => JSON.stringify(renderReview(req.uid, decision, 'id'))],
      ['  of which: renderReview', () => renderReview(req.uid, decision, 'id')],
      ['  of which: JSON.stringify(review)', () => JSON.stringify(rendered)],
      ['  now: toReviewJson(review) instead', () => toReviewJson(rendered)],
    ];
    for (const [name, fn] of steps) {
      const us = time(iterations, fn);
      const key = name.replace(/ \(\d+ B\)/, '');
      results.set(key, { ...(results.get(key) ?? { mutate: NaN, validate: NaN }), [endpoint]: us });
    }
    // The store: batches of 50 appends (one group commit, as with 50 connections), per record.
    const batches = Math.max(20, Math.floor(iterations / 500));
    const cpu0 = process.cpuUsage();
    const t = process.hrtime.bigint();
    for (let b = 0; b < batches; b++) {
      const pending: Array<Promise<unknown>> = [];
      for (let k = 0; k < 50; k++) pending.push(store.append({ ...rec, id: uuidv7() } as DecisionRecord));
      await Promise.all(pending);
    }
    const wallUs = Number(process.hrtime.bigint() - t) / 1000 / (batches * 50);
    const cpu = process.cpuUsage(cpu0);
    const key = 'SQLite append, group commit of 50 (wall, incl. fsync)';
    results.set(key, { ...(results.get(key) ?? { mutate: NaN, validate: NaN }), [endpoint]: wallUs });
    const cpuKey = 'SQLite append, group commit of 50 (process CPU)';
    results.set(cpuKey, { ...(results.get(cpuKey) ?? { mutate: NaN, validate: NaN }), [endpoint]: (cpu.user + cpu.system) / (batches * 50) });
  }
  for (const [k, v] of results) rows.push([k, v.mutate.toFixed(1), v.validate.toFixed(1)]);
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) console.log(r.map((c, i) => (i ? c.padStart(w[i]!) : c.padEnd(w[i]!))).join('  '));
  await store.close();
  rmSync(dir, { recursive: true, force: true });
}

main().catch((err: Error) => {
  console.error(err.stack ?? err.message);
  process.exit(1);
});
