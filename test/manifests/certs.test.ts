/**
 * certs/lib.ts and the certs/generate.ts CLI: certificate contents, chain verification with
 * node:crypto, a real TLS handshake with the API server's server name, the caBundle rendering,
 * the kustomize overlay it writes (rendered with the real kubectl), and bad input.
 */
import t, { type Test } from 'tap';
import { execFile } from 'node:child_process';
import { createPrivateKey, createPublicKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, request } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as x509 from '@peculiar/x509';
import { parse, parseAllDocuments } from 'yaml';
import {
  CertsError,
  createCertificateAuthority,
  createServingCertificate,
  createSigningKey,
  toServiceDnsNames,
  withCaBundle,
  type CertificateAuthority,
} from '../../certs/lib.js';
import { run } from '../../certs/generate.js';
import { loadOrCreateSigningKey } from '../../webhook/store/evidence/signing.js';
import { cluster } from './server-contract.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const WEBHOOKS = readFileSync(join(ROOT, 'manifests', 'base', 'webhooks.yaml'), 'utf8');
const NOW = new Date('2026-11-25T12:00:00.000Z');
const DAY_MS = 86_400_000;
const API_SERVER_NAME = `${cluster.service}.${cluster.namespace}.svc`;
const SERVICE_NAMES = toServiceDnsNames(cluster.service, cluster.namespace);

function aTempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'tzw-certs-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function runCli(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await run(argv, { stdout: (s) => (stdout += s), stderr: (s) => (stderr += s), now: NOW });
  return { code, stdout, stderr };
}

async function expectCertsError(t: Test, promise: Promise<unknown> | (() => unknown), code: string, message: RegExp, name: string): Promise<void> {
  try {
    await (typeof promise === 'function' ? promise() : promise);
    t.fail(`${name}: expected ${code}`);
  } catch (error) {
    t.ok(error instanceof CertsError, `${name}: a CertsError`);
    t.match({ code: (error as CertsError).code, message: (error as Error).message }, { code, message }, name);
  }
}

/** The TLS client the API server is: trusts only caBundle, checks the name it dials. */
function handshake(port: number, ca: string, servername: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/healthz', ca, servername, agent: false }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve(body));
    });
    req.on('error', reject);
    req.end();
  });
}

async function withHttpsServer(t: Test, cert: string, key: string): Promise<number> {
  const server = createServer({ cert, key }, (_req, res) => res.end('ok'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.address() as AddressInfo).port;
}

let sharedCa: CertificateAuthority | undefined;
async function aCa(): Promise<CertificateAuthority> {
  sharedCa ??= await createCertificateAuthority({ now: NOW });
  return sharedCa;
}

t.test('toServiceDnsNames: the four names a Service answers to', async (t) => {
  const cases: Array<[string, [string, string, string?], string[]]> = [
    ['default cluster domain', ['tekton-zscaler-webhook', 'tekton-zscaler'], [
      'tekton-zscaler-webhook', 'tekton-zscaler-webhook.tekton-zscaler', 'tekton-zscaler-webhook.tekton-zscaler.svc', 'tekton-zscaler-webhook.tekton-zscaler.svc.cluster.local',
    ]],
    ['custom cluster domain', ['svc', 'ns', 'corp.example'], ['svc', 'svc.ns', 'svc.ns.svc', 'svc.ns.svc.corp.example']],
  ];
  for (const [name, args, expected] of cases) t.strictSame(toServiceDnsNames(...args), expected, name);
  const bad: Array<[string, [string, string, string?], RegExp]> = [
    ['upper case', ['Svc', 'ns'], /service "Svc" must be a DNS-1123 label/],
    ['dot in namespace', ['svc', 'a.b'], /namespace "a\.b" must be a DNS-1123 label/],
    ['empty service', ['', 'ns'], /service "" must be/],
    ['bad domain', ['svc', 'ns', 'a..b'], /cluster domain "a\.\.b" is not a lowercase RFC 1123 DNS name/],
  ];
  for (const [name, args, message] of bad) {
    await expectCertsError(t, () => toServiceDnsNames(...args), 'ERR_CERTS_INVALID_OPTION', message, name);
  }
});

t.test('createCertificateAuthority: a self-signed EC P-256 CA, pathLen 0, keyCertSign + cRLSign, validity from now', async (t) => {
  const ca = await createCertificateAuthority({ now: NOW, days: 30, commonName: 'test CA' });
  const cert = new X509Certificate(ca.certPem);
  const parsed = new x509.X509Certificate(ca.certPem);
  const basic = parsed.getExtension(x509.BasicConstraintsExtension);
  const usages = parsed.getExtension(x509.KeyUsagesExtension);
  t.strictSame(
    {
      subject: cert.subject, issuer: cert.issuer, ca: cert.ca, selfSigned: cert.verify(cert.publicKey),
      pathLength: basic?.pathLength, usages: usages?.usages, curve: createPrivateKey(ca.keyPem).asymmetricKeyDetails?.namedCurve,
      notBefore: new Date(cert.validFrom).toISOString(), notAfter: new Date(cert.validTo).toISOString(),
      returned: [ca.notBefore.toISOString(), ca.notAfter.toISOString()],
    },
    {
      subject: 'CN=test CA', issuer: 'CN=test CA', ca: true, selfSigned: true,
      pathLength: 0, usages: x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, curve: 'prime256v1',
      notBefore: '2026-11-25T11:55:00.000Z', notAfter: '2026-12-25T12:00:00.000Z',
      returned: ['2026-11-25T11:55:00.000Z', '2026-12-25T12:00:00.000Z'],
    },
  );
  t.match(ca.keyPem, /^-----BEGIN PRIVATE KEY-----\n/, 'PKCS#8 PEM');
});

t.test('createServingCertificate: SANs, serverAuth only, chain verifies with node:crypto, key matches', async (t) => {
  const ca = await aCa();
  const serving = await createServingCertificate(ca, { dnsNames: SERVICE_NAMES, ipAddresses: ['127.0.0.1', '::1'], now: NOW, days: 90 });
  const cert = new X509Certificate(serving.certPem);
  const caCert = new X509Certificate(ca.certPem);
  const otherCa = new X509Certificate((await createCertificateAuthority({ now: NOW })).certPem);
  t.strictSame(
    {
      san: cert.subjectAltName, subject: cert.subject, ca: cert.ca, eku: cert.keyUsage,
      issued: cert.checkIssued(caCert), verifies: cert.verify(caCert.publicKey),
      issuedByOther: cert.checkIssued(otherCa), verifiesWithOther: cert.verify(otherCa.publicKey),
      keyMatches: cert.checkPrivateKey(createPrivateKey(serving.keyPem)),
      curve: createPrivateKey(serving.keyPem).asymmetricKeyDetails?.namedCurve,
      notAfter: new Date(cert.validTo).toISOString(),
      returned: { dnsNames: serving.dnsNames, ipAddresses: serving.ipAddresses },
    },
    {
      san: `${SERVICE_NAMES.map((n) => `DNS:${n}`).join(', ')}, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1`,
      subject: `CN=${SERVICE_NAMES[0]}`, ca: false, eku: ['1.3.6.1.5.5.7.3.1'],
      issued: true, verifies: true, issuedByOther: false, verifiesWithOther: false, keyMatches: true, curve: 'prime256v1',
      notAfter: new Date(NOW.getTime() + 90 * DAY_MS).toISOString(),
      returned: { dnsNames: SERVICE_NAMES, ipAddresses: ['127.0.0.1', '::1'] },
    },
  );
  t.ok(cert.checkHost(API_SERVER_NAME), `valid for ${API_SERVER_NAME}`);
  t.notOk(cert.checkHost('evil.example'), 'not valid for other names');
});

t.test('createServingCertificate: never outlives its CA; refuses an expired CA', async (t) => {
  const ca = await createCertificateAuthority({ now: NOW, days: 10 });
  const serving = await createServingCertificate(ca, { dnsNames: ['a.example'], now: NOW, days: 365 });
  t.equal(serving.notAfter.toISOString(), ca.notAfter.toISOString());
  t.equal(new Date(new X509Certificate(serving.certPem).validTo).toISOString(), ca.notAfter.toISOString());
  await expectCertsError(t, createServingCertificate(ca, { dnsNames: ['a.example'], now: new Date(NOW.getTime() + 11 * DAY_MS) }), 'ERR_CERTS_INVALID_OPTION', /the CA expired/, 'expired CA');
});

t.test('bad options and keys are CertsErrors that say what is wrong', async (t) => {
  const ca = await aCa();
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  const cases: Array<[string, () => Promise<unknown>, string, RegExp]> = [
    ['days 0', () => createServingCertificate(ca, { dnsNames: ['a'], days: 0 }), 'ERR_CERTS_INVALID_OPTION', /days must be an integer from 1 to 3650, got 0/],
    ['days 3651', () => createCertificateAuthority({ days: 3651 }), 'ERR_CERTS_INVALID_OPTION', /CA days must be an integer/],
    ['fractional days', () => createServingCertificate(ca, { dnsNames: ['a'], days: 1.5 }), 'ERR_CERTS_INVALID_OPTION', /got 1\.5/],
    ['no names', () => createServingCertificate(ca, { dnsNames: [] }), 'ERR_CERTS_INVALID_OPTION', /at least one DNS name or IP address/],
    ['bad IP', () => createServingCertificate(ca, { dnsNames: ['a'], ipAddresses: ['300.1.1.1'] }), 'ERR_CERTS_INVALID_OPTION', /"300\.1\.1\.1" is not an IP address/],
    ['upper-case name', () => createServingCertificate(ca, { dnsNames: ['Webhook.svc'] }), 'ERR_CERTS_INVALID_OPTION', /is not a lowercase RFC 1123 DNS name/],
    ['CN with a comma', () => createCertificateAuthority({ commonName: 'a,b' }), 'ERR_CERTS_INVALID_OPTION', /plain text/],
    ['CA key is not PEM', () => createServingCertificate({ certPem: ca.certPem, keyPem: 'nope' }, { dnsNames: ['a'] }), 'ERR_CERTS_INVALID_KEY', /the CA key cannot be used/],
    ['CA key is RSA', () => createServingCertificate({ certPem: ca.certPem, keyPem: rsa }, { dnsNames: ['a'] }), 'ERR_CERTS_INVALID_KEY', /rsa key, expected EC P-256/],
    ['CA cert is not PEM', () => createServingCertificate({ certPem: 'nope', keyPem: ca.keyPem }, { dnsNames: ['a'] }), 'ERR_CERTS_INVALID_KEY', /not a PEM certificate/],
  ];
  for (const [name, fn, code, message] of cases) await expectCertsError(t, fn, code, message, name);
});

t.test('real TLS: a server on tls.crt/tls.key accepts a client that trusts only ca.crt and dials the Service name', async (t) => {
  const dir = aTempDir(t);
  const { code } = await runCli(['--namespace', cluster.namespace, '--service', cluster.service, '--out', dir]);
  t.equal(code, 0);
  const file = (name: string) => readFileSync(join(dir, name), 'utf8');
  const port = await withHttpsServer(t, file('tls.crt'), file('tls.key'));
  t.equal(await handshake(port, file('ca.crt'), API_SERVER_NAME), 'ok', `handshake as ${API_SERVER_NAME}`);
  await t.rejects(handshake(port, file('ca.crt'), 'evil.example'), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' }, 'a name not in the SANs is refused');
  const otherCa = (await createCertificateAuthority()).certPem;
  await t.rejects(handshake(port, otherCa, API_SERVER_NAME), { code: /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY/ }, 'a client with another CA refuses the server');
});

t.test('createSigningKey: a PKCS#8 ES256 key the server loads as its checkpoint signing key', async (t) => {
  const dir = aTempDir(t);
  const { code } = await runCli(['--namespace', cluster.namespace, '--service', cluster.service, '--out', dir, '--signing-key']);
  t.equal(code, 0);
  const key = await loadOrCreateSigningKey(join(dir, 'signing.key'), { create: false });
  t.equal(key.alg, 'ES256');
  const pem = await createSigningKey();
  t.equal(createPublicKey(pem).asymmetricKeyDetails?.namedCurve, 'prime256v1');
});

t.test('withCaBundle: fills caBundle, follows a new namespace, keeps comments; rejects what is not a webhook file', async (t) => {
  const ca = await aCa();
  const out = withCaBundle(WEBHOOKS, ca.certPem, { namespace: 'other', service: 'hook' });
  const docs = parseAllDocuments(out).map((d) => d.toJS());
  const bundle = Buffer.from(ca.certPem).toString('base64');
  t.strictSame(
    docs.map((d) => d.webhooks.map((w: { clientConfig: unknown; namespaceSelector: { matchExpressions: Array<{ key: string; values: string[] }> } }) => ({
      clientConfig: w.clientConfig,
      excluded: w.namespaceSelector.matchExpressions.find((e) => e.key === 'kubernetes.io/metadata.name')?.values,
    }))),
    [
      [{ clientConfig: { service: { name: 'hook', namespace: 'other', path: '/validate', port: 443 }, caBundle: bundle }, excluded: ['other', 'kube-system'] }],
      [{ clientConfig: { service: { name: 'hook', namespace: 'other', path: '/mutate', port: 443 }, caBundle: bundle }, excluded: ['other', 'kube-system'] }],
    ],
  );
  t.match(out, /# Never intercept our own namespace/, 'comments survive');
  // Apart from what it fills in, the documents are unchanged.
  const strip = (d: { webhooks: Array<{ clientConfig: Record<string, unknown>; namespaceSelector: unknown }> }) =>
    d.webhooks.map(({ clientConfig: _c, namespaceSelector: _n, ...rest }) => rest);
  t.strictSame(docs.map(strip), parseAllDocuments(WEBHOOKS).map((d) => strip(d.toJS())));

  const cases: Array<[string, string, string, string, RegExp]> = [
    ['another kind', 'apiVersion: v1\nkind: Service\nmetadata: {name: x}\n', ca.certPem, 'ERR_CERTS_INVALID_WEBHOOKS', /document 1 is a Service/],
    ['no webhooks list', 'kind: MutatingWebhookConfiguration\nmetadata: {name: x}\n', ca.certPem, 'ERR_CERTS_INVALID_WEBHOOKS', /has no webhooks list/],
    ['empty list', 'kind: MutatingWebhookConfiguration\nwebhooks: []\n', ca.certPem, 'ERR_CERTS_INVALID_WEBHOOKS', /no webhook found/],
    ['broken YAML', 'kind: [unclosed\n', ca.certPem, 'ERR_CERTS_INVALID_WEBHOOKS', /not valid YAML/],
    ['CA is not a certificate', WEBHOOKS, 'not a pem', 'ERR_CERTS_INVALID_KEY', /not a PEM certificate/],
  ];
  for (const [name, text, caPem, code, message] of cases) {
    await expectCertsError(t, () => withCaBundle(text, caPem, { namespace: 'ns', service: 'svc' }), code, message, name);
  }
});

t.test('CLI: files and modes, refuses to overwrite without --force, re-issues from an existing CA', async (t) => {
  const dir = aTempDir(t);
  const first = await runCli(['--namespace', cluster.namespace, '--service', cluster.service, '--out', dir, '--days', '30']);
  t.strictSame({ code: first.code, stderr: first.stderr }, { code: 0, stderr: '' });
  const mode = (name: string) => statSync(join(dir, name)).mode & 0o777;
  t.strictSame(
    Object.fromEntries(['ca.crt', 'ca.key', 'tls.crt', 'tls.key'].map((f) => [f, mode(f)])),
    { 'ca.crt': 0o644, 'ca.key': 0o600, 'tls.crt': 0o644, 'tls.key': 0o600 },
  );
  t.equal(new Date(new X509Certificate(readFileSync(join(dir, 'tls.crt'))).validTo).toISOString(), new Date(NOW.getTime() + 30 * DAY_MS).toISOString());

  const again = await runCli(['--namespace', cluster.namespace, '--service', cluster.service, '--out', dir]);
  t.equal(again.code, 2);
  t.match(again.stderr, /ca\.crt, .*tls\.key already exist; pass --force to overwrite/);

  // Rotation: a new serving certificate from the same CA, so caBundle does not change.
  const rotated = aTempDir(t);
  const reissue = await runCli([
    '--namespace', cluster.namespace, '--service', cluster.service, '--out', rotated,
    '--ca-cert', join(dir, 'ca.crt'), '--ca-key', join(dir, 'ca.key'),
  ]);
  t.equal(reissue.code, 0);
  t.equal(readFileSync(join(rotated, 'ca.crt'), 'utf8'), readFileSync(join(dir, 'ca.crt'), 'utf8'), 'same CA');
  t.notOk(existsSync(join(rotated, 'ca.key')), 'the CA key is not copied around');
  const caCert = new X509Certificate(readFileSync(join(dir, 'ca.crt')));
  t.ok(new X509Certificate(readFileSync(join(rotated, 'tls.crt'))).verify(caCert.publicKey), 'new serving cert verifies with the old CA');

  const forced = await runCli(['--namespace', cluster.namespace, '--service', cluster.service, '--out', dir, '--force']);
  t.equal(forced.code, 0);
  t.not(readFileSync(join(dir, 'ca.crt'), 'utf8'), caCert.toString(), '--force replaced the CA');
});

t.test('CLI: usage errors exit 2 with a message and write nothing', async (t) => {
  const dir = aTempDir(t);
  const out = join(dir, 'out');
  const base = ['--namespace', 'ns', '--service', 'svc'];
  const cases: Array<[string, string[], RegExp]> = [
    ['missing flags', ['--out', out], /missing --namespace, --service/],
    ['days not a number', [...base, '--out', out, '--days', 'ten'], /--days must be a whole number of days, got "ten"/],
    ['days out of range', [...base, '--out', out, '--days', '0'], /days must be an integer from 1 to 3650, got 0/],
    ['unknown flag', [...base, '--out', out, '--dayz', '3'], /Unknown option '--dayz'/],
    ['half a CA', [...base, '--out', out, '--ca-cert', 'x'], /--ca-cert and --ca-key go together/],
    ['CA days with an existing CA', [...base, '--out', out, '--ca-cert', 'x', '--ca-key', 'y', '--ca-days', '3'], /--ca-days has no effect/],
    ['bad service name', ['--namespace', 'ns', '--service', 'Svc', '--out', out], /service "Svc" must be a DNS-1123 label/],
    ['kustomize with another Service', [...base, '--out', out, '--kustomize'], /--kustomize builds on the base, whose Service is tekton-zscaler-webhook/],
  ];
  for (const [name, argv, message] of cases) {
    const result = await runCli(argv);
    t.equal(result.code, 2, name);
    t.match(result.stderr, message, name);
  }
  t.notOk(existsSync(out), 'nothing written');
  const missing = await runCli([...base, '--out', out, '--ca-cert', join(dir, 'nope.crt'), '--ca-key', join(dir, 'nope.key')]);
  t.strictSame({ code: missing.code, wrote: existsSync(out) }, { code: 1, wrote: false });
  t.match(missing.stderr, /nope\.crt/);
  const help = await runCli(['--help']);
  t.strictSame({ code: help.code, usage: /^Usage: npx tsx certs\/generate\.ts/.test(help.stdout) }, { code: 0, usage: true });
});

t.test('CLI --kustomize: `kubectl kustomize DIR` renders the base with the TLS and signing Secrets and caBundle on both webhooks', async (t) => {
  // Both renders run at once; the assertions below walk the results in order.
  const runs = await Promise.all([cluster.namespace, 'ci-security'].map(async (namespace) => {
    const dir = aTempDir(t);
    const webhooksOut = join(dir, 'webhooks.yaml');
    const result = await runCli(['--namespace', namespace, '--service', cluster.service, '--out', dir, '--kustomize', '--signing-key', '--webhooks-out', webhooksOut]);
    const { stdout } = result.code === 0 ? await promisify(execFile)('kubectl', ['kustomize', dir], { maxBuffer: 32 * 1024 * 1024 }) : { stdout: '' };
    return { namespace, dir, webhooksOut, result, stdout };
  }));
  for (const { namespace, dir, webhooksOut, result, stdout } of runs) {
    t.equal(result.code, 0, result.stderr);
    const objects = parseAllDocuments(stdout).map((d) => withUnwrappedSecretData(d.toJS() as Obj));
    const file = (name: string) => readFileSync(join(dir, name), 'utf8');
    const b64 = (name: string) => Buffer.from(file(name)).toString('base64');
    const secrets = objects.filter((o) => o.kind === 'Secret').sort((a, b) => a.metadata.name.localeCompare(b.metadata.name)).map((o) => ({ name: o.metadata.name, namespace: o.metadata.namespace, type: o.type, keys: Object.keys(o.data).sort() }));
    t.strictSame(secrets, [
      { name: cluster.signingSecret, namespace, type: 'Opaque', keys: ['signing.key'] },
      { name: cluster.tlsSecret, namespace, type: 'kubernetes.io/tls', keys: ['tls.crt', 'tls.key'] },
    ], `${namespace}: Secrets`);
    const tls = objects.find((o) => o.metadata.name === cluster.tlsSecret);
    t.strictSame(tls?.data, { 'tls.crt': b64('tls.crt'), 'tls.key': b64('tls.key') });
    const webhooks = objects.filter((o) => o.kind.endsWith('WebhookConfiguration')).flatMap((o) => o.webhooks);
    t.strictSame(
      webhooks.map((w: any) => ({ caBundle: w.clientConfig.caBundle, namespace: w.clientConfig.service.namespace, excluded: w.namespaceSelector.matchExpressions[1].values })),
      [0, 1].map(() => ({ caBundle: b64('ca.crt'), namespace, excluded: [namespace, 'kube-system'] })),
      `${namespace}: caBundle, Service namespace and self-exclusion`,
    );
    t.equal(objects.find((o) => o.kind === 'Deployment')?.metadata.namespace, namespace);
    const standalone = parseAllDocuments(readFileSync(webhooksOut, 'utf8')).flatMap((d) => d.toJS().webhooks);
    t.strictSame(standalone.map((w: any) => w.clientConfig.caBundle), [b64('ca.crt'), b64('ca.crt')], '--webhooks-out matches');
    for (const object of objects.filter((o) => o.kind === 'Secret' || o.kind.endsWith('WebhookConfiguration'))) {
      const models = await import(`kubernetes-models/${object.apiVersion}`);
      t.doesNotThrow(() => new models[object.kind](object).validate(), `${object.kind}/${object.metadata.name} is schema-valid`);
    }
    t.match(parse(file('kustomization.yaml')).resources, [/^(\.\.\/)+.*manifests\/base$/], 'builds on the repo base by relative path');
  }
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string }; [k: string]: any };

/**
 * kustomize wraps long base64 Secret data at 70 columns; the API server's decoder (Go's
 * encoding/base64) skips the newlines, so compare and validate the unwrapped value.
 */
function withUnwrappedSecretData(object: Obj): Obj {
  if (object.kind !== 'Secret' || object.data === undefined) return object;
  return { ...object, data: Object.fromEntries(Object.entries(object.data as Record<string, string>).map(([k, v]) => [k, v.replace(/\s+/g, '')])) };
}

t.test('certs/generate.ts runs as a script (what `npx tsx certs/generate.ts` does)', async (t) => {
  const dir = aTempDir(t);
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', join(ROOT, 'certs', 'generate.ts'), '--namespace', cluster.namespace, '--service', cluster.service, '--out', dir, '--days', '365'], { cwd: ROOT });
  t.strictSame(stdout.trim().split('\n').map((l) => l.replace(dir, 'DIR')), ['wrote DIR/ca.crt', 'wrote DIR/ca.key', 'wrote DIR/tls.crt', 'wrote DIR/tls.key']);
  const cert = new X509Certificate(readFileSync(join(dir, 'tls.crt')));
  t.ok(cert.checkIssued(new X509Certificate(readFileSync(join(dir, 'ca.crt')))));
});
