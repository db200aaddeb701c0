/**
 * `npm run soak` (not in CI; needs TZW_TEST_PG_URL): SOAK_SECONDS (default 300) of mixed
 * admissions — valid, invalid JSON, wrong types, oversized — and audit queries against the real
 * server on a PostgreSQL store (reached through a cuttable TCP proxy, spool on local disk), with a
 * serving-certificate rotation at 40 % and PostgreSQL cut from 50 % to 65 %. Prints requests,
 * errors by cause, records lost (answered decisions missing from PostgreSQL: must be 0) and RSS at
 * start and end.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { Agent, request as httpsRequest } from 'node:https';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createCertificateAuthority, createServingCertificate } from '../certs/lib.js';
import { loadConfig } from '../webhook/config/load.js';
import { startServer } from '../webhook/server.js';
import { createTcpProxy, createTestSchema, PG_URL, withSchema } from '../test/store/pg-support.js';

const seconds = Number(process.env.SOAK_SECONDS ?? 300);
if (!PG_URL) {
  process.stderr.write('npm run soak needs TZW_TEST_PG_URL (a PostgreSQL database it may create schemas in)\n');
  process.exit(2);
}
const repo = new URL('../', import.meta.url).pathname;
const examples = join(repo, 'manifests/examples');
const reviews = ['taskrun-mapped.json', 'taskrun-unmapped.json', 'pod-mapped.json', 'pipelinerun-audit.json'].map((f) => readFileSync(join(examples, 'reviews', f), 'utf8'));
const mb = (n: number) => `${(n / 1024 / 1024).toFixed(0)} MiB`;

const dir = mkdtempSync(join(tmpdir(), 'tzw-soak-'));
const schema = await createTestSchema('tzw_soak');
const proxy = await createTcpProxy();
const ca = await createCertificateAuthority({ commonName: 'soak CA' });
const issue = async (): Promise<void> => {
  const leaf = await createServingCertificate(ca, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  writeFileSync(join(dir, 'tls.key.new'), leaf.keyPem);
  writeFileSync(join(dir, 'tls.crt.new'), leaf.certPem);
  renameSync(join(dir, 'tls.key.new'), join(dir, 'tls.key'));
  renameSync(join(dir, 'tls.crt.new'), join(dir, 'tls.crt'));
};
await issue();
const loaded = loadConfig({
  env: {
    TZW_STATE_DIR: dir, TZW_STORE_URL: withSchema(PG_URL, schema.name, proxy.port), TZW_STORE_SPOOL_PATH: join(dir, 'spool.db'),
    TZW_SOURCE_PATHS: examples, TZW_LOG_LEVEL: 'info', TZW_REPLICA: 'soak',
    TZW_ADMISSION_LISTEN: '127.0.0.1:0', TZW_AUDIT_API_LISTEN: '127.0.0.1:0', TZW_METRICS_LISTEN: '127.0.0.1:0',
    TZW_ADMISSION_TLS_CERT_FILE: join(dir, 'tls.crt'), TZW_ADMISSION_TLS_KEY_FILE: join(dir, 'tls.key'),
  },
  readFile: (p) => readFileSync(p, 'utf8'), hostname: 'soak',
});
if (!loaded.ok) throw new Error(loaded.errors.join('; '));
const logLines: Record<string, number> = {};
const server = await startServer(loaded.config, {
  logStream: new Writable({
    write(chunk, _e, cb) {
      for (const line of String(chunk).split('\n')) {
        const msg = /"msg":"([^"]+)"/.exec(line)?.[1];
        if (msg && !msg.startsWith('admission decision') && !line.includes('"level":30')) logLines[msg] = (logLines[msg] ?? 0) + 1;
      }
      cb();
    },
  }),
});
const agent = new Agent({ keepAlive: true, maxSockets: 8, ca: ca.certPem });
const rssStart = process.memoryUsage().rss;

const counts = { requests: 0, admissions: 0, audit: 0 };
const errors: Record<string, number> = {};
const answeredIds: string[] = [];
const note = (cause: string): void => void (errors[cause] = (errors[cause] ?? 0) + 1);

function send(url: string, method: string, body?: string | Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { method, agent, headers: body !== undefined ? { 'content-type': 'application/json' } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const oversized = JSON.stringify({ ...JSON.parse(reviews[0]!), pad: 'x'.repeat(loaded.config.admission.bodyLimitBytes + 1024) });
async function one(i: number): Promise<void> {
  const roll = i % 100;
  counts.requests += 1;
  try {
    if (roll < 10) {
      counts.audit += 1;
      const r = await send(`${server.urls.audit}/api/v1/decisions?limit=200`, 'GET');
      if (r.status !== 200) note(`audit ${r.status}`);
      return;
    }
    counts.admissions += 1;
    const base = JSON.parse(reviews[i % reviews.length]!) as { request: Record<string, unknown> };
    base.request.uid = `soak-${i}`;
    const body = roll < 70 ? JSON.stringify(base) : roll < 85 ? JSON.stringify(base).slice(0, 200) : roll < 99 ? JSON.stringify({ ...base, request: { ...base.request, kind: 42 } }) : oversized;
    const r = await send(`${server.urls.admission}${i % 2 ? '/mutate' : '/validate'}`, 'POST', body);
    let parsed: { response?: { allowed: boolean; auditAnnotations?: Record<string, string>; status?: { message?: string } }; decisionId?: string; code?: string } = {};
    try { parsed = JSON.parse(r.body); } catch { note(`admission ${r.status} not JSON`); }
    const id = parsed.response?.auditAnnotations?.['decision-id'] ?? parsed.decisionId;
    if (r.status >= 500) note(`admission ${r.status}`);
    else if (r.status >= 400) note(`admission ${r.status} ${parsed.code ?? ''} (expected: bad input)`);
    else if (parsed.response && !parsed.response.allowed && /could not record/.test(parsed.response.status?.message ?? '')) note('admission refused: store unavailable (fail closed)');
    if (id && r.status < 500 && !(parsed.response && /could not record/.test(parsed.response.status?.message ?? ''))) answeredIds.push(id);
  } catch (err) {
    note(`transport ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

const t0 = Date.now();
const endAt = t0 + seconds * 1000;
let rotated = false;
let cut = false;
let restored = false;
let next = 0;
const phases = setInterval(() => {
  const f = (Date.now() - t0) / (seconds * 1000);
  if (!rotated && f >= 0.4) { rotated = true; void issue(); process.stdout.write(`[${((Date.now() - t0) / 1000).toFixed(0)} s] serving certificate rotated\n`); }
  if (!cut && f >= 0.5) { cut = true; proxy.down(); process.stdout.write(`[${((Date.now() - t0) / 1000).toFixed(0)} s] PostgreSQL cut\n`); }
  if (cut && !restored && f >= 0.65) { restored = true; proxy.up(); process.stdout.write(`[${((Date.now() - t0) / 1000).toFixed(0)} s] PostgreSQL back\n`); }
}, 250);
await Promise.all(Array.from({ length: 6 }, async () => { while (Date.now() < endAt) await one(next++); }));
clearInterval(phases);

// Let the spool drain, then count what PostgreSQL holds.
const backlog = async (): Promise<number> => new Promise((resolve) => {
  httpRequest(`${server.urls.metrics}/readyz`, (res) => {
    let b = '';
    res.on('data', (c) => (b += c));
    res.on('end', () => resolve(Number((JSON.parse(b) as { detail?: { store?: { backlog?: number } } }).detail?.store?.backlog ?? 0)));
  }).on('error', () => resolve(-1)).end();
});
for (let i = 0; i < 120 && (await backlog()) !== 0; i++) await new Promise((r) => setTimeout(r, 500));
const rssEnd = process.memoryUsage().rss;
await server.close();
const { rows } = await schema.pool.query<{ id: string }>('SELECT id FROM decisions');
const inPg = new Set(rows.map((r) => r.id));
const lost = answeredIds.filter((id) => !inPg.has(id));
const dups = rows.length - inPg.size;

process.stdout.write([
  `soak: ${seconds} s, ${counts.requests} requests (${counts.admissions} admissions, ${counts.audit} audit queries), 6 concurrent clients`,
  `errors by cause: ${JSON.stringify(errors)}`,
  `warnings/errors logged: ${JSON.stringify(logLines)}`,
  `answered decisions: ${answeredIds.length}; in PostgreSQL: ${rows.length}; records lost: ${lost.length}; duplicates: ${dups}`,
  `RSS: start ${mb(rssStart)}, end ${mb(rssEnd)}`,
  '',
].join('\n'));
agent.destroy();
await proxy.close();
await schema.drop();
rmSync(dir, { recursive: true, force: true });
process.exit(lost.length === 0 && dups === 0 ? 0 : 1);
