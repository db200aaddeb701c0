/**
 * The real server: startServer() with real HTTPS listeners, the files source, a real SQLite store and
 * a real signing key. Covers readiness, records, metrics after real requests, certificate reload,
 * startup failures, and SIGTERM drain of a real `tzw serve` process.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { request as httpsRequest } from 'node:https';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../webhook/config/load.js';
import { startServer, ServerStartError } from '../../webhook/server.js';
import { createCertificateAuthority, createServingCertificate } from '../../certs/lib.js';
import { run } from '../../webhook/cli/run.js';

const repo = new URL('../../', import.meta.url).pathname;
const examples = join(repo, 'manifests/examples');
const review = (name: string): string => readFileSync(join(examples, 'reviews', name), 'utf8');

function configFor(dir: string, env: Record<string, string> = {}) {
  const r = loadConfig({
    env: {
      TZW_STATE_DIR: dir, TZW_STORE_URL: `sqlite:${join(dir, 'decisions.db')}`, TZW_SOURCE_PATHS: examples,
      TZW_ADMISSION_LISTEN: '127.0.0.1:0', TZW_AUDIT_API_LISTEN: '127.0.0.1:0', TZW_METRICS_LISTEN: '127.0.0.1:0',
      TZW_LOG_LEVEL: 'silent', TZW_REPLICA: 'test-replica', ...env,
    },
    readFile: (p) => readFileSync(p, 'utf8'), hostname: 'h',
  });
  if (!r.ok) throw new Error(r.errors.join('; '));
  return r.config;
}

function fetchHttps(url: string, ca: string, opts: { method?: string; body?: string } = {}): Promise<{ status: number; body: string; peerCert: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { method: opts.method ?? 'GET', ca, headers: opts.body ? { 'content-type': 'application/json' } : {}, agent: false }, (res) => {
      let body = '';
      const peer = (res.socket as import('node:tls').TLSSocket).getPeerCertificate();
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, peerCert: peer.fingerprint256 }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

function fetchHttp(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    httpRequest(url, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve(body));
    }).on('error', reject).end();
  });
}

t.test('serves real HTTPS with the dev certificate, records, answers the audit API and metrics', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tzw-serve-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const server = await startServer(configFor(dir));
  t.teardown(() => server.close());
  const ca = readFileSync(join(dir, 'ca.crt'), 'utf8');
  const ready = await fetchHttps(`${server.urls.admission}/readyz`, ca);
  t.equal(ready.status, 200, 'ready: certificate loaded, objects synced, store writable');
  t.strictSame(JSON.parse(ready.body), { status: 'ready', detail: { store: { backlog: 0, quarantined: 0 } } }, 'with the store detail');

  const allowed = await fetchHttps(`${server.urls.admission}/validate`, ca, { method: 'POST', body: review('taskrun-mapped.json') });
  t.equal(JSON.parse(allowed.body).response.allowed, true);
  const denied = JSON.parse((await fetchHttps(`${server.urls.admission}/validate`, ca, { method: 'POST', body: review('taskrun-unmapped.json') })).body);
  t.equal(denied.response.allowed, false);
  t.match(denied.response.status.message, /ServiceAccount "default"/);
  t.match(denied.response.status.message, /namespace "payments"/);
  const patched = JSON.parse((await fetchHttps(`${server.urls.admission}/mutate`, ca, { method: 'POST', body: review('pod-mapped.json') })).body);
  t.equal(patched.response.patchType, 'JSONPatch');
  const bad = await fetchHttps(`${server.urls.admission}/mutate`, ca, { method: 'POST', body: '{"kind":' });
  t.equal(bad.status, 400);

  const id = denied.response.auditAnnotations['decision-id'];
  const rec = await fetchHttps(`${server.urls.audit}/api/v1/decisions/${id}`, ca);
  t.equal(rec.status, 200, 'the audit API serves over TLS with the same certificate');
  t.match(JSON.parse(rec.body), { id, verdict: 'denied', namespace: 'payments', serviceAccounts: ['payments/default'], replica: 'test-replica' });
  const page = JSON.parse((await fetchHttps(`${server.urls.audit}/api/v1/decisions?namespace=payments`, ca)).body);
  t.strictSame(page.items.map((r: { verdict: string }) => r.verdict), ['allowed', 'denied', 'patched'], 'the rejected body has no namespace');

  const metrics = await fetchHttp(`${server.urls.metrics}/metrics`);
  t.match(metrics, /tzw_decisions_total\{endpoint="validate",verdict="allowed",namespace="payments"\} 1/);
  t.match(metrics, /tzw_decisions_total\{endpoint="validate",verdict="denied",namespace="payments"\} 1/);
  t.match(metrics, /tzw_decisions_total\{endpoint="mutate",verdict="patched",namespace="payments"\} 1/);
  t.match(metrics, /tzw_decisions_total\{endpoint="mutate",verdict="rejected",namespace=""\} 1/);
  t.match(metrics, /tzw_admission_duration_seconds_count\{endpoint="validate"\} 2/);
  t.match(metrics, /tzw_store_write_duration_seconds_count 4/);
  t.match(metrics, /\ntzw_store_commit_records_sum 4\n/, 'the writer thread committed the four records (one request at a time: one each)');
  t.match(metrics, /\ntzw_store_commit_records_count 4\n/);
  t.match(metrics, /\ntzw_store_commit_duration_seconds_count 4\n/, 'and timed each commit');
  t.match(metrics, /tzw_cache_objects\{kind="identitymappings"\} 3/);
  t.match(metrics, /\ntzw_store_quarantined_records 0\n/);
  t.match(metrics, /tzw_source_synced 1/);
  t.match(metrics, /tzw_certificate_expiry_timestamp_seconds\{listener="admission"\} \d{10}/);
});

t.test('reloads a rotated certificate without a restart', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tzw-reload-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const issue = async () => {
    const ca = await createCertificateAuthority({ commonName: 'rotation test CA' });
    const leaf = await createServingCertificate(ca, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
    return { ca: ca.certPem, cert: leaf.certPem, key: leaf.keyPem };
  };
  const first = await issue();
  writeFileSync(join(dir, 'tls.crt'), first.cert);
  writeFileSync(join(dir, 'tls.key'), first.key);
  const server = await startServer(configFor(dir, { TZW_ADMISSION_TLS_CERT_FILE: join(dir, 'tls.crt'), TZW_ADMISSION_TLS_KEY_FILE: join(dir, 'tls.key') }));
  t.teardown(() => server.close());
  const before = await fetchHttps(`${server.urls.admission}/healthz`, first.ca);
  t.equal(before.status, 200);
  const second = await issue();
  writeFileSync(join(dir, 'tls.key'), second.key);
  writeFileSync(join(dir, 'tls.crt'), second.cert);
  let after: { status: number; peerCert: string } | undefined;
  for (let i = 0; i < 50 && !after; i++) {
    await new Promise((r) => setTimeout(r, 100));
    after = await fetchHttps(`${server.urls.admission}/healthz`, second.ca).catch(() => undefined);
  }
  t.ok(after, 'the new certificate is served');
  t.not(after?.peerCert, before.peerCert);
  await t.rejects(fetchHttps(`${server.urls.admission}/healthz`, first.ca), 'the old CA no longer verifies');
});

t.test('startup problems stop the server before it serves, all named at once', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tzw-fail-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => blocker.close());
  const port = (blocker.address() as import('node:net').AddressInfo).port;
  const err = await startServer(configFor(dir, { TZW_ADMISSION_LISTEN: `127.0.0.1:${port}` })).then(() => undefined, (e: unknown) => e);
  t.ok(err instanceof ServerStartError);
  t.match((err as Error).message, new RegExp(`admission listener 127.0.0.1:${port}: address already in use`));

  const out: string[] = [];
  const io = { stdout: (s: string) => out.push(s), stderr: (s: string) => out.push(s), env: {}, cwd: dir, hostname: 'h', readFile: (p: string) => readFileSync(p, 'utf8'), onSignal: () => {} };
  writeFileSync(join(dir, 'bad.yaml'), 'admission:\n  listen: 8443\n  tls: {certFile: /nope.crt, keyFile: /nope.key}\nstore: {url: "redis://x"}\nfoo: 1\n');
  t.equal(await run(['serve', '--config', join(dir, 'bad.yaml')], io), 1);
  const msg = out.join('');
  t.match(msg, /invalid configuration/);
  t.match(msg, /admission\.listen must be string/);
  t.match(msg, /store\.url must match pattern/);
  t.match(msg, /additional properties "foo"/);
  t.equal(await run(['serve', '--nope'], io), 2, 'a wrong flag is a usage error');
});

t.test('a real tzw serve process drains and exits 0 on SIGTERM', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tzw-proc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const child = spawn(process.execPath, ['--import', 'tsx', join(repo, 'webhook/main.ts'), 'serve'], {
    cwd: repo,
    env: { ...process.env, TZW_STATE_DIR: dir, TZW_STORE_URL: `sqlite:${join(dir, 'd.db')}`, TZW_SOURCE_PATHS: examples, TZW_ADMISSION_LISTEN: '127.0.0.1:0', TZW_AUDIT_API_LISTEN: '127.0.0.1:0', TZW_METRICS_LISTEN: '127.0.0.1:0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  let stdout = '';
  child.stdout.on('data', (c) => (stdout += c));
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr.on('data', (c) => {
      stderr += c;
      const m = /admission (https:\/\/[^,]+)/.exec(stderr);
      if (m) resolve(m[1]!);
    });
    child.on('exit', (code) => reject(new Error(`exited ${code}: ${stderr}`)));
  });
  const ca = readFileSync(join(dir, 'ca.crt'), 'utf8');
  const res = await fetchHttps(`${url}/validate`, ca, { method: 'POST', body: review('taskrun-mapped.json') });
  t.equal(JSON.parse(res.body).response.allowed, true);
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  child.kill('SIGTERM');
  t.equal(await exited, 0);
  t.match(stdout, /shutting down: draining in-flight requests/);
  t.notMatch(stdout, /AWS_ROLE_ARN.*arn:aws|"token"/, 'no env values or tokens in the logs');
});
