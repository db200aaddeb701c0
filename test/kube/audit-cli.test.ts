/**
 * A new auditor's path, end to end: the real server (startServer, real HTTPS, real SQLite) in
 * `auditApi.auth.mode: kubernetes`, reaching the loopback fake API server through KUBECONFIG like a
 * workstation would; decisions recorded by posting the example AdmissionReviews; then the auditor
 * uses `tzw decisions … --server` with a token from --token-file or TZW_TOKEN, and curl-like raw
 * HTTPS requests. RBAC is the shipped manifests' (audit-rbac.yaml, examples/auditor-rbac.yaml).
 */
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { run } from '../../webhook/cli/run.js';
import type { CliIo } from '../../webhook/cli/io.js';
import { loadConfig } from '../../webhook/config/load.js';
import { startServer } from '../../webhook/server.js';
import { startFakeApiServer } from './fake-api-server.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const examples = join(ROOT, 'manifests/examples');
const loadYaml = (path: string) => parseAllDocuments(readFileSync(join(ROOT, path), 'utf8')).map((d) => d.toJS()).filter((o) => o !== null);

function fetchHttps(url: string, ca: string, opts: { method?: string; body?: string; token?: string } = {}): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (opts.body) headers['content-type'] = 'application/json';
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    const req = httpsRequest(url, { method: opts.method ?? 'GET', ca, headers, agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

t.test('a namespaced auditor with the CLI and raw HTTPS against a real server in kubernetes mode', async (t) => {
  const api = await startFakeApiServer();
  t.teardown(() => api.close());
  api.authz.apply(...loadYaml('manifests/base/audit-rbac.yaml'), ...loadYaml('manifests/examples/auditor-rbac.yaml'));
  const dir = mkdtempSync(join(tmpdir(), 'tzw-audit-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // The server reaches the API server like a workstation: KUBECONFIG (loadKubeConfig → loadFromDefault).
  writeFileSync(join(dir, 'kubeconfig'), api.kubeConfig().exportConfig());
  const savedKubeconfig = process.env.KUBECONFIG;
  process.env.KUBECONFIG = join(dir, 'kubeconfig');
  t.teardown(() => {
    if (savedKubeconfig === undefined) delete process.env.KUBECONFIG;
    else process.env.KUBECONFIG = savedKubeconfig;
  });
  const logs: string[] = [];
  const loaded = loadConfig({
    env: {
      TZW_STATE_DIR: dir, TZW_STORE_URL: `sqlite:${join(dir, 'decisions.db')}`, TZW_SOURCE_PATHS: examples,
      TZW_ADMISSION_LISTEN: '127.0.0.1:0', TZW_AUDIT_API_LISTEN: '127.0.0.1:0', TZW_METRICS_LISTEN: '127.0.0.1:0',
      TZW_LOG_LEVEL: 'info', TZW_REPLICA: 'tzw-0', TZW_AUDIT_API_AUTH_MODE: 'kubernetes',
    },
    readFile: (p) => readFileSync(p, 'utf8'),
    hostname: 'h',
  });
  if (!loaded.ok) throw new Error(loaded.errors.join('; '));
  const server = await startServer(loaded.config, { logStream: { write: (s: string) => logs.push(s) } as unknown as NodeJS.WritableStream, env: {} });
  t.teardown(() => server.close());
  const caFile = join(dir, 'ca.crt');
  const ca = readFileSync(caFile, 'utf8');
  for (const name of ['taskrun-mapped.json', 'taskrun-unmapped.json', 'pipelinerun-audit.json', 'pod-mapped.json']) {
    const res = await fetchHttps(`${server.urls.admission}/${name.startsWith('pod') ? 'mutate' : 'validate'}`, ca, { method: 'POST', body: readFileSync(join(examples, 'reviews', name), 'utf8') });
    t.equal(res.status, 200, name);
  }

  const alice = api.authz.issueToken({ username: 'alice@example.com' });
  const compliance = api.authz.issueToken({ username: 'carol@example.com', groups: ['compliance'] });
  writeFileSync(join(dir, 'alice.token'), `${alice}\n`);
  const tzw = async (env: Record<string, string>, ...argv: string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const io: CliIo = { stdout: (s) => out.push(s), stderr: (s) => err.push(s), env, cwd: dir, hostname: 'h', readFile: (p) => readFileSync(p, 'utf8'), onSignal: () => undefined };
    const code = await run(argv, io);
    return { code, stdout: out.join(''), stderr: err.join('') };
  };
  const remote = ['--server', server.urls.audit, '--cacert', caFile];

  // Everything there is, as the cluster-wide auditor sees it.
  const everything = JSON.parse((await tzw({ TZW_TOKEN: compliance }, 'decisions', 'list', ...remote, '-o', 'json')).stdout) as { items: Array<{ id: string; namespace: string }> };
  const namespaces = [...new Set(everything.items.map((r) => r.namespace))].sort();
  t.ok(namespaces.length >= 2, `records in several namespaces: ${namespaces.join(', ')}`);
  t.ok(namespaces.includes('payments'));

  // Alice, reading payments only: without --namespace she is told to add it.
  const noNs = await tzw({}, 'decisions', 'list', ...remote, '--token-file', 'alice.token');
  t.equal(noNs.code, 1);
  t.match(noNs.stderr, /refused to list decisions: user "alice@example\.com" may not list decisions\.audit\.tekton-zscaler\.io across all namespaces\. If you may read only some namespaces, add --namespace <namespace> \(check with: kubectl auth can-i list decisions\.audit\.tekton-zscaler\.io -n <namespace>\)/);
  t.match(noNs.stderr, /\(ERR_REMOTE_FORBIDDEN\)\n$/);
  const own = await tzw({}, 'decisions', 'list', ...remote, '--token-file', 'alice.token', '--namespace', 'payments', '-o', 'json');
  t.equal(own.code, 0, own.stderr);
  const ownIds = (JSON.parse(own.stdout) as { items: Array<{ id: string }> }).items.map((r) => r.id);
  t.strictSame(ownIds, everything.items.filter((r) => r.namespace === 'payments').map((r) => r.id), 'exactly the payments records');
  const viaEnv = await tzw({ TZW_TOKEN: alice }, 'decisions', 'list', ...remote, '--namespace', 'payments', '-o', 'json');
  t.equal(viaEnv.stdout, own.stdout, 'TZW_TOKEN works like --token-file');
  for (const ns of namespaces.filter((n) => n !== 'payments')) {
    const other = await tzw({ TZW_TOKEN: alice }, 'decisions', 'list', ...remote, '--namespace', ns || 'x');
    t.equal(other.code, 1, `namespace ${ns}: refused`);
    t.match(other.stderr, /may not list decisions\.audit\.tekton-zscaler\.io in namespace/);
  }
  const foreign = everything.items.find((r) => r.namespace !== 'payments')!;
  const getForeign = await tzw({ TZW_TOKEN: alice }, 'decisions', 'get', foreign.id, ...remote);
  t.equal(getForeign.code, 1);
  t.match(getForeign.stderr, /may not get decisions\.audit\.tekton-zscaler\.io/);
  t.equal((await tzw({ TZW_TOKEN: alice }, 'decisions', 'get', ownIds[0]!, ...remote, '-o', 'json')).code, 0);

  // A wrong token: 401 with what to do.
  const bad = await tzw({ TZW_TOKEN: 'eyJ.expired.token' }, 'decisions', 'list', ...remote, '--namespace', 'payments');
  t.equal(bad.code, 1);
  t.match(bad.stderr, /did not accept the token: invalid bearer token: the Kubernetes API did not accept it .*Get a fresh one \(in a cluster: kubectl create token <serviceaccount>\)\. \(ERR_REMOTE_UNAUTHENTICATED\)/);
  const none = await tzw({}, 'decisions', 'list', ...remote, '--namespace', 'payments');
  t.match(none.stderr, /did not accept a request without a token: missing bearer token.*Pass one with --token-file FILE or TZW_TOKEN/);

  // The API server failing: 503, the server's message, and when to retry.
  api.authz.failNext(500);
  const down = await tzw({ TZW_TOKEN: api.authz.issueToken({ username: 'alice@example.com' }) }, 'decisions', 'list', ...remote, '--namespace', 'payments');
  t.equal(down.code, 1);
  t.match(down.stderr, /cannot answer now: cannot reach the Kubernetes API to check your token; retry \(retry after 5 s\) \(ERR_REMOTE_UNAVAILABLE\)/);

  // Raw HTTPS, as with curl: the same answers.
  const curl = await fetchHttps(`${server.urls.audit}/api/v1/decisions?namespace=payments`, ca, { token: alice });
  t.equal(curl.status, 200);
  t.strictSame((JSON.parse(curl.body) as { items: Array<{ id: string }> }).items.map((r) => r.id), ownIds);
  const curlAll = await fetchHttps(`${server.urls.audit}/api/v1/decisions`, ca, { token: alice });
  t.equal(curlAll.status, 403);
  t.match(JSON.parse(curlAll.body).message, /add namespace=<namespace>/);
  t.equal((await fetchHttps(`${server.urls.audit}/api/v1/jwks`, ca)).status, 200, 'jwks needs no token');

  // The token is in no log line of the server.
  const log = logs.join('');
  for (const token of [alice, compliance]) t.notOk(log.includes(token.slice(0, 24)), 'no token in the server log');
  t.match(log, /"sub":"alice@example\.com"/);
});
