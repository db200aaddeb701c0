/**
 * `certs/generate.ts --apiserver-client`: the API server's client certificate, the kubeconfig of its
 * AdmissionConfiguration (credentials inline) and the overlay that makes the webhook require it —
 * checked end to end: the credentials taken out of the written kubeconfig are accepted by a real
 * server configured as the overlay configures it, and a client without them is refused.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse, parseAllDocuments } from 'yaml';
import { run } from '../../certs/generate.js';
import { loadConfig } from '../../webhook/config/load.js';
import { startServer } from '../../webhook/server.js';
import { cluster } from './server-contract.js';

const repo = new URL('../../', import.meta.url).pathname;
const examples = join(repo, 'manifests/examples');

async function cli(argv: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const code = await run(argv, { stdout: (s) => (out += s), stderr: (s) => (out += s) });
  return { code, out };
}

t.test('--apiserver-client writes a client certificate, a standalone kubeconfig and the AdmissionConfiguration that the webhook accepts', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tzw-apic-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'deploy');
  const svcDns = `${cluster.service}.${cluster.namespace}.svc`;
  const r = await cli(['--namespace', cluster.namespace, '--service', cluster.service, '--out', out, '--kustomize', '--signing-key', '--apiserver-client', '--kubeconfig-user', svcDns]);
  t.equal(r.code, 0, r.out);
  for (const f of ['client-ca.key', 'apiserver-client.key', 'admission-kubeconfig.yaml']) t.equal(statSync(join(out, f)).mode & 0o777, 0o600, `${f} is private`);

  const kubeconfig = parse(readFileSync(join(out, 'admission-kubeconfig.yaml'), 'utf8')) as { kind: string; users: Array<{ name: string; user: Record<string, string> }> };
  t.equal(kubeconfig.kind, 'Config');
  t.strictSame(kubeconfig.users.map((u) => [u.name, Object.keys(u.user).sort()]), [[svcDns, ['client-certificate-data', 'client-key-data']]], 'user = the Service DNS name, credentials inline');
  const certPem = Buffer.from(kubeconfig.users[0]!.user['client-certificate-data']!, 'base64').toString();
  const keyPem = Buffer.from(kubeconfig.users[0]!.user['client-key-data']!, 'base64').toString();
  const cert = new X509Certificate(certPem);
  t.match(cert.subject, /CN=kube-apiserver/);
  t.ok(cert.verify(new X509Certificate(readFileSync(join(out, 'client-ca.crt'))).publicKey), 'signed by client-ca.crt');
  t.notOk(cert.verify(new X509Certificate(readFileSync(join(out, 'ca.crt'))).publicKey), 'not by the serving CA');
  t.ok(cert.keyUsage?.includes('1.3.6.1.5.5.7.3.2'), 'extended key usage clientAuth');

  const admission = parse(readFileSync(join(out, 'admission-configuration.yaml'), 'utf8')) as { kind: string; plugins: Array<{ name: string; configuration: { kind: string; kubeConfigFile: string } }> };
  t.equal(admission.kind, 'AdmissionConfiguration');
  t.strictSame(admission.plugins.map((p) => [p.name, p.configuration.kind, p.configuration.kubeConfigFile]), [
    ['ValidatingAdmissionWebhook', 'WebhookAdmissionConfiguration', '/etc/kubernetes/tzw/admission-kubeconfig.yaml'],
    ['MutatingAdmissionWebhook', 'WebhookAdmissionConfiguration', '/etc/kubernetes/tzw/admission-kubeconfig.yaml'],
  ]);

  // The overlay: Secret tzw-client-ca mounted, and the env that turns the requirement on.
  const { stdout } = await promisify(execFile)('kubectl', ['kustomize', out], { maxBuffer: 32 * 1024 * 1024, env: { ...process.env, KUBECONFIG: '/dev/null' } });
  const objects = parseAllDocuments(stdout).map((d) => d.toJS() as { kind: string; metadata: { name: string }; data?: Record<string, string>; spec?: any }); // eslint-disable-line @typescript-eslint/no-explicit-any
  const secret = objects.find((o) => o.kind === 'Secret' && o.metadata.name === 'tzw-client-ca');
  t.equal(Buffer.from(secret?.data?.['ca.crt'] ?? '', 'base64').toString(), readFileSync(join(out, 'client-ca.crt'), 'utf8'), 'Secret tzw-client-ca holds the client CA (no key)');
  const pod = objects.find((o) => o.kind === 'Deployment')!.spec.template.spec;
  const env = Object.fromEntries((pod.containers[0].env as Array<{ name: string; value: string }>).map((e) => [e.name, e.value]));
  t.equal(env.TZW_ADMISSION_TLS_CLIENT_CA_FILE, '/etc/tzw/client-ca/ca.crt');
  t.equal(env.TZW_ADMISSION_TLS_CLIENT_NAMES, 'kube-apiserver');
  t.ok((pod.volumes as Array<{ secret?: { secretName: string } }>).some((v) => v.secret?.secretName === 'tzw-client-ca'));

  // End to end: the server configured as the overlay configures it, the files as mounted.
  const state = join(dir, 'state');
  const loaded = loadConfig({
    env: {
      TZW_STATE_DIR: state, TZW_STORE_URL: `sqlite:${join(state, 'd.db')}`, TZW_SOURCE_PATHS: examples, TZW_LOG_LEVEL: 'silent',
      TZW_ADMISSION_LISTEN: '127.0.0.1:0', TZW_AUDIT_API_LISTEN: '127.0.0.1:0', TZW_METRICS_LISTEN: '127.0.0.1:0',
      TZW_ADMISSION_TLS_CERT_FILE: join(out, 'tls.crt'), TZW_ADMISSION_TLS_KEY_FILE: join(out, 'tls.key'),
      TZW_ADMISSION_TLS_CLIENT_CA_FILE: join(out, 'client-ca.crt'), TZW_ADMISSION_TLS_CLIENT_NAMES: env.TZW_ADMISSION_TLS_CLIENT_NAMES!,
    },
    readFile: (p) => readFileSync(p, 'utf8'), hostname: 'h',
  });
  if (!loaded.ok) throw new Error(loaded.errors.join('; '));
  const server = await startServer(loaded.config);
  t.teardown(() => server.close());
  const port = new URL(server.urls.admission).port;
  const call = (client: { cert?: string; key?: string }) => new Promise<number | string>((resolve) => {
    // The API server dials the Service name and checks it against caBundle (= ca.crt).
    const req = httpsRequest({ host: '127.0.0.1', port, path: '/validate', method: 'POST', servername: svcDns, ca: readFileSync(join(out, 'ca.crt')), ...client, agent: false, headers: { 'content-type': 'application/json' }, checkServerIdentity: () => undefined }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    req.end(readFileSync(join(examples, 'reviews', 'taskrun-mapped.json')));
  });
  t.equal(await call({ cert: certPem, key: keyPem }), 200, 'the kubeconfig credentials are accepted');
  t.type(await call({}), 'string', 'no client certificate: refused');
});

t.test('--apiserver-client usage errors exit 2', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tzw-apic-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const base = ['--namespace', 'ns', '--service', 'svc', '--out', join(dir, 'o')];
  t.match(await cli([...base, '--client-cn', 'x']), { code: 2, out: /--client-cn need --apiserver-client/ });
  t.match(await cli([...base, '--apiserver-client', '--kubeconfig-user', 'svc.other.svc']), { code: 2, out: /'\*' or the Service DNS name the API server dials \(svc\.ns\.svc\)/ });
  t.match(await cli([...base, '--apiserver-client', '--client-ca-cert', 'a']), { code: 2, out: /--client-ca-cert and --client-ca-key go together/ });
  t.match(await cli([...base, '--apiserver-client', '--client-cn', 'evil*']), { code: 2, out: /without wildcards/ });
});

t.test('--apiserver-client --base manifests/overlays/ha: the StatefulSet gets the client CA too', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tzw-apic-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'deploy');
  const r = await cli(['--namespace', cluster.namespace, '--service', cluster.service, '--out', out, '--kustomize', '--signing-key', '--apiserver-client', '--base', join(repo, 'manifests/overlays/ha')]);
  t.equal(r.code, 0, r.out);
  const { stdout } = await promisify(execFile)('kubectl', ['kustomize', out], { maxBuffer: 32 * 1024 * 1024, env: { ...process.env, KUBECONFIG: '/dev/null' } });
  const objects = parseAllDocuments(stdout).map((d) => d.toJS() as { kind: string; spec?: any }); // eslint-disable-line @typescript-eslint/no-explicit-any
  t.strictSame(objects.filter((o) => o.kind === 'Deployment'), [], 'no Deployment in the HA overlay');
  const pod = objects.find((o) => o.kind === 'StatefulSet')!.spec.template.spec;
  const env = Object.fromEntries((pod.containers[0].env as Array<{ name: string; value?: string }>).map((e) => [e.name, e.value]));
  t.equal(env.TZW_ADMISSION_TLS_CLIENT_CA_FILE, '/etc/tzw/client-ca/ca.crt');
  t.ok((pod.volumes as Array<{ secret?: { secretName: string } }>).some((v) => v.secret?.secretName === 'tzw-client-ca'));
});
