/**
 * The audit API's limits (issue 13), against the real server: the audit and admission listeners
 * share one event loop, so this hammers the audit listener — slowloris connections, TCP connections
 * that never start TLS, and a crowd of clients streaming exports and pages non-stop — while a
 * separate client keeps sending AdmissionReviews to the admission listener, and asserts that every
 * admission is still answered (and quickly); then that the slow connections were cut by the
 * server's timeouts and the crowd was held to the in-flight cap. Also: the failed-authentication
 * limit counts only 401s, per address.
 */
import t from 'tap';
import { createServer } from 'node:http';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request as httpsRequest } from 'node:https';
import { spawn } from 'node:child_process';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { loadConfig } from '../../webhook/config/load.js';
import { startServer } from '../../webhook/server.js';
import { buildAuditApp } from '../../webhook/http/audit.js';
import { createSqliteStore } from '../../webhook/store/sqlite/store.js';
import { loadOrCreateSigningKey, toJwks } from '../../webhook/store/evidence/signing.js';

const repo = new URL('../../', import.meta.url).pathname;
const examples = join(repo, 'manifests/examples');
const review = readFileSync(join(examples, 'reviews', 'taskrun-mapped.json'));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function request(url: string, opts: { method?: string; body?: Buffer; agent?: Agent; ca: string }): Promise<{ status: number; body: string; ms: number }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { method: opts.method ?? 'GET', ca: opts.ca, agent: opts.agent ?? false, headers: opts.body ? { 'content-type': 'application/json' } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), ms: performance.now() - t0 }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;
}

t.test('a slow or abusive audit client cannot starve admissions (shared event loop), and is cut off by the limits', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tzw-abuse-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const loaded = loadConfig({
    env: {
      TZW_STATE_DIR: dir, TZW_STORE_URL: `sqlite:${join(dir, 'decisions.db')}`, TZW_SOURCE_PATHS: examples, TZW_LOG_LEVEL: 'silent',
      TZW_ADMISSION_LISTEN: '127.0.0.1:0', TZW_AUDIT_API_LISTEN: '127.0.0.1:0', TZW_METRICS_LISTEN: '127.0.0.1:0',
    },
    readFile: (p) => readFileSync(p, 'utf8'), hostname: 'h',
  });
  if (!loaded.ok) throw new Error(loaded.errors.join('; '));
  // Shorter timeouts than production so the test sees them fire; the mechanisms are the same.
  const server = await startServer(loaded.config, { auditLimits: { headersTimeoutMs: 2000, requestTimeoutMs: 3000, handshakeTimeoutMs: 2000, checkIntervalMs: 500, maxInFlight: 8 } });
  t.teardown(() => server.close());
  const ca = readFileSync(join(dir, 'ca.crt'), 'utf8');
  const admissionAgent = new Agent({ keepAlive: true, maxSockets: 1, ca });
  t.teardown(() => admissionAgent.destroy());
  const admit = () => request(`${server.urls.admission}/validate`, { method: 'POST', body: review, agent: admissionAgent, ca });

  // Records for the exports to stream.
  for (let i = 0; i < 300; i++) await admit();

  const admissionRound = async (ms: number) => {
    const latencies: number[] = [];
    const failures: string[] = [];
    const until = performance.now() + ms;
    while (performance.now() < until) {
      try {
        const r = await admit();
        if (r.status === 200 && JSON.parse(r.body).response.allowed === true) latencies.push(r.ms);
        else failures.push(`${r.status} ${r.body.slice(0, 80)}`);
      } catch (err) {
        failures.push((err as Error).message);
      }
    }
    return { latencies: latencies.sort((a, b) => a - b), failures };
  };
  const baseline = await admissionRound(1500);

  // The abuse, all at once on the audit listener, from another process (test/server/audit-abuser.ts).
  const abuser = spawn(process.execPath, ['--import', 'tsx', join(repo, 'test/server/audit-abuser.ts')], {
    cwd: repo, stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, AUDIT_URL: server.urls.audit, CA_FILE: join(dir, 'ca.crt'), DURATION_MS: '7000', CROWD: '24', SLOWLORIS: '40', NO_TLS: '100' },
  });
  t.teardown(() => abuser.kill('SIGKILL'));
  let out = '';
  abuser.stdout.on('data', (c) => (out += c));
  const finished = once(abuser, 'exit');
  while (!out.includes('started')) await sleep(50);
  await sleep(500);
  const underLoad = await admissionRound(5000);
  await finished;
  const counts = JSON.parse(out.trim().split('\n').pop() ?? '{}') as {
    slowlorisOpened: number; slowlorisClosedByServer: number; noTlsOpened: number; noTlsClosedByServer: number; crowdOk: number; crowdBusy: number; crowdOther: string[];
  };
  const crowd = { ok: counts.crowdOk, busy: counts.crowdBusy, other: counts.crowdOther };

  const fmt = (l: number[]) => `n=${l.length} p50=${percentile(l, 0.5).toFixed(1)} ms p99=${percentile(l, 0.99).toFixed(1)} ms max=${(l[l.length - 1] ?? NaN).toFixed(1)} ms`;
  t.comment(`admissions alone:      ${fmt(baseline.latencies)}`);
  t.comment(`admissions under abuse: ${fmt(underLoad.latencies)}; audit crowd: ${crowd.ok} answered, ${crowd.busy} refused busy`);
  t.strictSame(underLoad.failures, [], 'every admission under abuse was answered 200 allowed');
  // Starvation is "(almost) nothing gets through"; this floor only says admissions keep flowing
  // (one every half second at worst). Not a speed target: 15 in 5 s were measured with the machine
  // at load 18 on 2 cores, 16–27 on a calmer one; npm run bench measures speed.
  t.ok(underLoad.latencies.length >= 10, `admissions kept flowing (${underLoad.latencies.length} in 5 s)`);
  t.ok((underLoad.latencies[underLoad.latencies.length - 1] ?? Infinity) < loaded.config.admission.deadlineMs, 'no admission waited anywhere near the deadline');
  t.ok(crowd.ok > 0, 'the audit API still served the crowd');
  t.ok(crowd.busy > 0, 'requests beyond the in-flight cap were refused with 503 ERR_BUSY, not queued');
  t.strictSame(crowd.other, [], 'nothing else went wrong for the crowd');
  t.strictSame([counts.slowlorisOpened, counts.slowlorisClosedByServer], [40, 40], 'the server closed every slowloris connection (headers timeout)');
  t.strictSame([counts.noTlsOpened, counts.noTlsClosedByServer], [100, 100], 'the server closed every connection that never started TLS (handshake timeout)');
});

t.test('failed authentication is rate limited per address, and only failures count', async (t) => {
  const dir = t.testdir({});
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' };
  const issuer = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] })));
  issuer.listen(0, '127.0.0.1');
  await once(issuer, 'listening');
  t.teardown(() => issuer.close());
  const jwksUri = `http://127.0.0.1:${(issuer.address() as { port: number }).port}/jwks`;
  const key = await loadOrCreateSigningKey(join(dir, 'signing.pem'), { create: true });
  const store = await createSqliteStore({ path: join(dir, 'd.db'), replica: 'r', signer: key });
  t.teardown(() => store.close());
  const locked: number[] = [];
  const app = await buildAuditApp({
    store, jwks: () => toJwks(key.publicJwk), logger: pino({ level: 'silent' }),
    auth: { mode: 'oidc', issuer: 'https://issuer.test', audience: 'aud', group: 'auditors', groupsClaim: 'groups', jwksUri },
    metrics: { auditAuthLockouts: { inc: () => locked.push(1) } as never },
    limits: { authFailures: 5, authFailureWindowMs: 60_000 },
  });
  t.teardown(() => app.close());
  const token = (groups: string[]) => new SignJWT({ groups }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setIssuer('https://issuer.test')
    .setAudience('aud').setSubject('a').setIssuedAt().setExpirationTime('5m').sign(privateKey);
  const good = await token(['auditors']);
  const notInGroup = await token(['devs']);
  const call = (authorization: string | undefined, remoteAddress: string) =>
    app.inject({ url: '/api/v1/checkpoints', remoteAddress, headers: authorization ? { authorization } : {} });

  // Successes and 403s from one address never count.
  for (let i = 0; i < 20; i++) t.equal((await call(`Bearer ${good}`, '10.0.0.1')).statusCode, 200);
  for (let i = 0; i < 20; i++) t.equal((await call(`Bearer ${notInGroup}`, '10.0.0.1')).statusCode, 403);
  // 5 failures are answered 401; the 6th failure trips the limit; then even a valid token gets 429.
  const statuses = [];
  for (let i = 0; i < 6; i++) statuses.push((await call('Bearer not.a.jwt', '10.0.0.2')).statusCode);
  t.strictSame(statuses, [401, 401, 401, 401, 401, 401], 'failures answered 401 up to and including the one over the limit');
  const refused = await call(`Bearer ${good}`, '10.0.0.2');
  t.equal(refused.statusCode, 429, 'the address is now refused, before any token is checked');
  t.match(refused.json(), { code: 'ERR_TOO_MANY_AUTH_FAILURES' });
  t.ok(Number(refused.headers['retry-after']) > 0 && Number(refused.headers['retry-after']) <= 60, 'Retry-After within the window');
  t.equal((await call(undefined, '10.0.0.2')).statusCode, 429);
  t.equal(locked.length, 2, 'counted in tzw_audit_auth_rate_limited_total');
  // Other addresses are unaffected.
  t.equal((await call(`Bearer ${good}`, '10.0.0.3')).statusCode, 200);
  t.equal((await call(`Bearer ${good}`, '10.0.0.1')).statusCode, 200);
  // The public JWKS route is outside the authenticated scope: never limited.
  t.equal((await app.inject({ url: '/api/v1/jwks', remoteAddress: '10.0.0.2' })).statusCode, 200);
});

t.test('the audit listener refuses oversized headers and request bodies', async (t) => {
  const dir = t.testdir({});
  const key = await loadOrCreateSigningKey(join(dir, 'signing.pem'), { create: true });
  const store = await createSqliteStore({ path: join(dir, 'd.db'), replica: 'r', signer: key });
  t.teardown(() => store.close());
  const app = await buildAuditApp({ store, jwks: () => toJwks(key.publicJwk), logger: pino({ level: 'silent' }), auth: { mode: 'none', groupsClaim: 'groups' } });
  t.teardown(() => app.close());
  const big = await app.inject({ method: 'POST', url: '/api/v1/decisions', headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ x: 'y'.repeat(20_000) }) });
  t.equal(big.statusCode, 413, 'a body above 16 KiB: 413');
  // Header size is enforced by node's parser on a real socket.
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as { port: number }).port;
  const answer = await new Promise<string>((resolve) => {
    const s = netConnect({ host: '127.0.0.1', port }, () => s.write(`GET /api/v1/jwks HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`));
    let text = '';
    s.on('data', (c) => (text += c));
    s.on('close', () => resolve(text));
    s.on('error', () => resolve(text));
  });
  t.match(answer, /^HTTP\/1\.1 431/, 'headers above 16 KiB: 431');
  await sleep(0);
});
