/**
 * API server client certificates on the admission listener (issue 13), with real certificates from
 * certs/lib.ts and the real server: no certificate / wrong CA / wrong name are refused at the TLS
 * layer (counted, logged rate-limited, no record); the right CN or DNS SAN is served; the client CA
 * rotates without a restart; without a client CA nothing changes; probes work on the metrics port.
 * Also: TLS below 1.2 is refused on both TLS listeners, and the audit listener's own certificate is
 * reloaded on change with its expiry metric (issue 16 item 3).
 */
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { request as httpRequest } from 'node:http';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { loadConfig } from '../../webhook/config/load.js';
import { startServer } from '../../webhook/server.js';
import { createCertificateAuthority, createClientCertificate, createServingCertificate } from '../../certs/lib.js';
import { decideClientCertificate, parseDnsAltNames, createRateLimitedLog } from '../../webhook/http/tls.js';

const repo = new URL('../../', import.meta.url).pathname;
const examples = join(repo, 'manifests/examples');
const review = readFileSync(join(examples, 'reviews', 'taskrun-mapped.json'), 'utf8');

interface Client { cert?: string; key?: string }
type Answer = { status: number; body: string } | { error: string };

function post(url: string, ca: string, client: Client, path = '/validate', body = review): Promise<Answer> {
  return new Promise((resolve) => {
    const req = httpsRequest(`${url}${path}`, { method: 'POST', ca, cert: client.cert, key: client.key, agent: false, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
    req.end(body);
  });
}

function get(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    httpRequest(url, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    }).on('error', reject).end();
  });
}

async function pki() {
  const serverCa = await createCertificateAuthority({ commonName: 'serving CA' });
  const serving = await createServingCertificate(serverCa, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  const clientCa = await createCertificateAuthority({ commonName: 'client CA' });
  const otherCa = await createCertificateAuthority({ commonName: 'some other CA' });
  return { serverCa, serving, clientCa, otherCa };
}

async function start(t: { teardown: (fn: () => unknown) => void }, env: (dir: string) => Record<string, string>) {
  const dir = mkdtempSync(join(tmpdir(), 'tzw-mtls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const logs: string[] = [];
  const r = loadConfig({
    env: {
      TZW_STATE_DIR: dir, TZW_STORE_URL: `sqlite:${join(dir, 'decisions.db')}`, TZW_SOURCE_PATHS: examples,
      TZW_ADMISSION_LISTEN: '127.0.0.1:0', TZW_AUDIT_API_LISTEN: '127.0.0.1:0', TZW_METRICS_LISTEN: '127.0.0.1:0',
      TZW_LOG_LEVEL: 'info', TZW_REPLICA: 'mtls', ...env(dir),
    },
    readFile: (p) => readFileSync(p, 'utf8'), hostname: 'h',
  });
  if (!r.ok) throw new Error(r.errors.join('; '));
  const server = await startServer(r.config, { logStream: new Writable({ write(c, _e, cb) { logs.push(String(c)); cb(); } }) });
  t.teardown(() => server.close());
  return { dir, server, logs };
}

/** Records in the store, through the audit API (loopback, auth none; its certificate is not under test here). */
async function countRecords(auditUrl: string): Promise<number> {
  return new Promise((resolve, reject) => {
    httpsRequest(`${auditUrl}/api/v1/decisions?limit=1000`, { rejectUnauthorized: false, agent: false }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve((JSON.parse(text) as { items: unknown[] }).items.length));
    }).on('error', reject).end();
  });
}

/** The value of `name{labels}` in a Prometheus text exposition (`labels` as written, braces included). */
function metric(text: string, name: string, labels: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  const m = line ? /\s(\S+)$/.exec(line) : null;
  return m ? Number(m[1]) : 0;
}

t.test('decideClientCertificate: the pure name check (CN or DNS SAN, exact, no wildcards)', async (t) => {
  const raw = Buffer.from('x');
  const allowed = ['kube-apiserver', 'apiserver.example'];
  t.strictSame(decideClientCertificate(true, undefined, { raw, subject: { CN: 'kube-apiserver' } as never }, allowed), { ok: true, name: 'kube-apiserver' });
  t.strictSame(decideClientCertificate(true, undefined, { raw, subject: { CN: 'x' } as never, subjectaltname: 'DNS:apiserver.example' }, allowed), { ok: true, name: 'apiserver.example' });
  t.match(decideClientCertificate(true, undefined, { raw, subject: { CN: '*' } as never, subjectaltname: 'DNS:*.example' }, allowed), { ok: false, reason: 'name_not_allowed' }, 'a wildcard in the certificate matches nothing');
  t.match(decideClientCertificate(true, undefined, { raw, subject: { CN: 'KUBE-APISERVER' } as never }, allowed), { ok: false, reason: 'name_not_allowed' }, 'exact, case-sensitive');
  t.match(decideClientCertificate(true, undefined, { raw, subject: { CN: 'kube-apiserver-evil' } as never }, allowed), { ok: false, reason: 'name_not_allowed' }, 'no prefix match');
  t.match(decideClientCertificate(false, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', { raw, subject: { CN: 'kube-apiserver' } as never }, allowed), { ok: false, reason: 'untrusted' });
  t.match(decideClientCertificate(false, undefined, {}, allowed), { ok: false, reason: 'no_certificate' });
  t.strictSame(parseDnsAltNames('DNS:a.example, IP Address:127.0.0.1, DNS:"b, c", URI:spiffe://x'), ['a.example', 'b, c']);
  const lines: Array<[string, number]> = [];
  let now = 0;
  const log = createRateLimitedLog<string, null>(1000, (k, _f, n) => lines.push([k, n]), () => now);
  for (let i = 0; i < 5; i++) log('a', null);
  now = 1500;
  log('a', null);
  log('b', null);
  t.strictSame(lines, [['a', 0], ['a', 4], ['b', 0]], 'one line per interval, carrying the suppressed count');
});

t.test('client CA set: none / wrong CA / wrong name refused at TLS, right CN and right DNS SAN served, CA rotates without restart', async (t) => {
  const { serverCa, serving, clientCa, otherCa } = await pki();
  const rightCn = await createClientCertificate(clientCa, { commonName: 'kube-apiserver' });
  const rightSan = await createClientCertificate(clientCa, { commonName: 'not-listed', dnsNames: ['apiserver.cluster.example'] });
  const wrongName = await createClientCertificate(clientCa, { commonName: 'system:node:worker-1', dnsNames: ['worker-1.example'] });
  const wrongCa = await createClientCertificate(otherCa, { commonName: 'kube-apiserver' });
  const { dir, server, logs } = await start(t, (d) => {
    writeFileSync(join(d, 'tls.crt'), serving.certPem);
    writeFileSync(join(d, 'tls.key'), serving.keyPem);
    writeFileSync(join(d, 'client-ca.crt'), clientCa.certPem);
    return {
      TZW_ADMISSION_TLS_CERT_FILE: join(d, 'tls.crt'), TZW_ADMISSION_TLS_KEY_FILE: join(d, 'tls.key'),
      TZW_ADMISSION_TLS_CLIENT_CA_FILE: join(d, 'client-ca.crt'), TZW_ADMISSION_TLS_CLIENT_NAMES: 'kube-apiserver,apiserver.cluster.example',
    };
  });
  const url = server.urls.admission;
  const ca = serverCa.certPem;
  const before = await countRecords(server.urls.audit);
  t.equal(before, 0);

  const none = await post(url, ca, {});
  const badCa = await post(url, ca, { cert: wrongCa.certPem, key: wrongCa.keyPem });
  const badName = await post(url, ca, { cert: wrongName.certPem, key: wrongName.keyPem });
  for (const [name, a] of [['no certificate', none], ['wrong CA', badCa], ['wrong name', badName]] as const) {
    t.ok('error' in a, `${name}: the connection is refused before any HTTP answer (${JSON.stringify(a).slice(0, 80)})`);
  }
  t.equal(await countRecords(server.urls.audit), 0, 'no decision record for a refused connection');

  const cn = await post(url, ca, { cert: rightCn.certPem, key: rightCn.keyPem });
  t.equal('status' in cn && JSON.parse(cn.body).response.allowed, true, 'the right CN is served');
  const san = await post(url, ca, { cert: rightSan.certPem, key: rightSan.keyPem });
  t.equal('status' in san && JSON.parse(san.body).response.allowed, true, 'the right DNS SAN is served');
  t.equal(await countRecords(server.urls.audit), 2, 'one record per served admission');

  const metrics = (await get(`${server.urls.metrics}/metrics`)).body;
  t.equal(metric(metrics, 'tzw_tls_client_rejections_total', '{listener="admission",reason="no_certificate"}'), 1);
  t.equal(metric(metrics, 'tzw_tls_client_rejections_total', '{listener="admission",reason="untrusted"}'), 1);
  t.equal(metric(metrics, 'tzw_tls_client_rejections_total', '{listener="admission",reason="name_not_allowed"}'), 1);
  t.match(logs.join(''), /"reason":"name_not_allowed".*system:node:worker-1.*"msg":"TLS client refused"/, 'the refusal is logged with the offending names');

  // Rate-limited logging: 20 more refusals, at most one more line for that reason within the interval.
  const linesBefore = logs.filter((l) => l.includes('TLS client refused') && l.includes('no_certificate')).length;
  for (let i = 0; i < 20; i++) await post(url, ca, {});
  const linesAfter = logs.filter((l) => l.includes('TLS client refused') && l.includes('no_certificate')).length;
  t.equal(linesAfter - linesBefore, 0, '20 refusals within the interval add no log line');
  t.equal(metric((await get(`${server.urls.metrics}/metrics`)).body, 'tzw_tls_client_rejections_total', '{listener="admission",reason="no_certificate"}'), 21, '…but every one is counted');

  // Probes need no client certificate: the metrics listener serves them.
  t.equal((await get(`${server.urls.metrics}/readyz`)).status, 200, '/readyz on the metrics listener');
  t.equal((await get(`${server.urls.metrics}/healthz`)).status, 200, '/healthz on the metrics listener');

  // Rotation: a new client CA replaces the old one (atomic rename, as a Secret volume update).
  const newCa = await createCertificateAuthority({ commonName: 'client CA 2' });
  const rotated = await createClientCertificate(newCa, { commonName: 'kube-apiserver' });
  writeFileSync(join(dir, 'client-ca.new'), newCa.certPem);
  renameSync(join(dir, 'client-ca.new'), join(dir, 'client-ca.crt'));
  let served: Answer | undefined;
  for (let i = 0; i < 50; i++) {
    await new Promise((r) => setTimeout(r, 100));
    served = await post(url, ca, { cert: rotated.certPem, key: rotated.keyPem });
    if ('status' in served) break;
  }
  t.ok(served && 'status' in served && served.status === 200, 'a certificate from the new client CA is served without a restart');
  t.ok('error' in (await post(url, ca, { cert: rightCn.certPem, key: rightCn.keyPem })), 'a certificate from the old client CA is now refused');
  t.match(logs.join(''), /"clientCA":"reloaded"/);
});

t.test('no client CA: the back-compatible default serves any TLS client (and asks for no certificate)', async (t) => {
  const { serverCa, serving, clientCa } = await pki();
  const anyClient = await createClientCertificate(clientCa, { commonName: 'whoever' });
  const { server } = await start(t, (d) => {
    writeFileSync(join(d, 'tls.crt'), serving.certPem);
    writeFileSync(join(d, 'tls.key'), serving.keyPem);
    return { TZW_ADMISSION_TLS_CERT_FILE: join(d, 'tls.crt'), TZW_ADMISSION_TLS_KEY_FILE: join(d, 'tls.key') };
  });
  const plain = await post(server.urls.admission, serverCa.certPem, {});
  t.equal('status' in plain && plain.status, 200, 'no client certificate needed');
  const withCert = await post(server.urls.admission, serverCa.certPem, { cert: anyClient.certPem, key: anyClient.keyPem });
  t.equal('status' in withCert && withCert.status, 200, 'an unrequested client certificate changes nothing');
  const metrics = (await get(`${server.urls.metrics}/metrics`)).body;
  t.notMatch(metrics, /tzw_tls_client_rejections_total\{listener="admission",reason="(no_certificate|untrusted|name_not_allowed)"\}/);
});

function handshake(url: string, opts: { maxVersion?: 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3'; minVersion?: 'TLSv1' | 'TLSv1.1' | 'TLSv1.2'; ca?: string }): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: u.hostname, port: Number(u.port), ca: opts.ca, rejectUnauthorized: false, maxVersion: opts.maxVersion, minVersion: opts.minVersion, ciphers: 'DEFAULT:@SECLEVEL=0' }, () => {
      const v = socket.getProtocol() ?? 'unknown';
      socket.end();
      resolve(v);
    });
    socket.on('error', (err: NodeJS.ErrnoException) => resolve(`error:${err.code ?? err.message}`));
  });
}

t.test('TLS 1.2+ only on both TLS listeners; the audit certificate reloads on change with its own expiry metric', async (t) => {
  const { serverCa, serving } = await pki();
  const auditCa = await createCertificateAuthority({ commonName: 'audit CA' });
  const auditCert = await createServingCertificate(auditCa, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], days: 30 });
  const { dir, server, logs } = await start(t, (d) => {
    writeFileSync(join(d, 'tls.crt'), serving.certPem);
    writeFileSync(join(d, 'tls.key'), serving.keyPem);
    writeFileSync(join(d, 'audit.crt'), auditCert.certPem);
    writeFileSync(join(d, 'audit.key'), auditCert.keyPem);
    return {
      TZW_ADMISSION_TLS_CERT_FILE: join(d, 'tls.crt'), TZW_ADMISSION_TLS_KEY_FILE: join(d, 'tls.key'),
      TZW_AUDIT_API_TLS_CERT_FILE: join(d, 'audit.crt'), TZW_AUDIT_API_TLS_KEY_FILE: join(d, 'audit.key'),
    };
  });
  for (const [name, url] of [['admission', server.urls.admission], ['audit', server.urls.audit]] as const) {
    t.match(await handshake(url, { maxVersion: 'TLSv1.1', minVersion: 'TLSv1' }), /^error:/, `${name}: TLS 1.1 is refused`);
    t.equal(await handshake(url, { maxVersion: 'TLSv1.2' }), 'TLSv1.2', `${name}: TLS 1.2 is served`);
    t.equal(await handshake(url, {}), 'TLSv1.3', `${name}: TLS 1.3 is served`);
  }
  const metricsBefore = (await get(`${server.urls.metrics}/metrics`)).body;
  t.ok(metric(metricsBefore, 'tzw_tls_client_rejections_total', '{listener="audit",reason="handshake"}') >= 1, 'the refused TLS 1.1 handshake is counted');
  const auditExpiry = metric(metricsBefore, 'tzw_certificate_expiry_timestamp_seconds', '{listener="audit"}');
  const admissionExpiry = metric(metricsBefore, 'tzw_certificate_expiry_timestamp_seconds', '{listener="admission"}');
  t.equal(auditExpiry, Math.floor(auditCert.notAfter.getTime() / 1000), 'audit expiry is the audit certificate');
  t.equal(admissionExpiry, Math.floor(serving.notAfter.getTime() / 1000), 'admission expiry is the admission certificate');

  // Swap the audit certificate for one from another CA, valid 60 days.
  const newAuditCa = await createCertificateAuthority({ commonName: 'audit CA 2' });
  const newAudit = await createServingCertificate(newAuditCa, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], days: 60 });
  writeFileSync(join(dir, 'audit.key'), newAudit.keyPem);
  writeFileSync(join(dir, 'audit.crt'), newAudit.certPem);
  const jwks = (ca: string) => new Promise<number>((resolve) => {
    httpsRequest(`${server.urls.audit}/api/v1/jwks`, { ca, agent: false }, (res) => { res.resume(); resolve(res.statusCode ?? 0); })
      .on('error', () => resolve(0)).end();
  });
  let status = 0;
  for (let i = 0; i < 50 && status !== 200; i++) {
    await new Promise((r) => setTimeout(r, 100));
    status = await jwks(newAuditCa.certPem);
  }
  t.equal(status, 200, 'the audit listener serves the new certificate without a restart');
  t.equal(await jwks(auditCa.certPem), 0, 'the old audit certificate is gone');
  const metricsAfter = (await get(`${server.urls.metrics}/metrics`)).body;
  t.equal(metric(metricsAfter, 'tzw_certificate_expiry_timestamp_seconds', '{listener="audit"}'), Math.floor(newAudit.notAfter.getTime() / 1000), 'audit expiry follows the swap');
  t.equal(metric(metricsAfter, 'tzw_certificate_expiry_timestamp_seconds', '{listener="admission"}'), admissionExpiry, 'admission expiry unchanged');
  t.match(logs.join(''), /"listener":"audit".*"msg":"serving certificate reloaded"/);
});
