/**
 * `tzw namespaces readiness`: a real server records decisions for the example objects (payments is
 * enforce, data-science is audit); the command reads the warned ones back through the store
 * (--store) and through the audit API (--server), with the same result.
 */
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../webhook/config/load.js';
import { toNamespaceReadiness } from '../../webhook/core/readiness.js';
import { parseSince } from '../../webhook/cli/namespaces.js';
import { run } from '../../webhook/cli/run.js';
import { startServer } from '../../webhook/server.js';

const repo = new URL('../../', import.meta.url).pathname;
const examples = join(repo, 'manifests/examples');

function cli(argv: string[], cwd: string, env: Record<string, string> = {}): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  return run(argv, { stdout: (s) => void (out += s), stderr: (s) => void (err += s), env, cwd, hostname: 'h', readFile: (p) => readFileSync(p, 'utf8'), onSignal: () => {} })
    .then((code) => ({ code, out, err }));
}

function post(url: string, ca: string, body: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', ca, headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', () => resolve());
    });
    req.on('error', reject);
    req.end(body);
  });
}

t.test('lists the runs enforce would deny per audit namespace, and the ServiceAccounts behind them; --store and --server agree', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tzw-readiness-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const storeUrl = `sqlite:${join(dir, 'decisions.db')}`;
  const loaded = loadConfig({
    env: {
      TZW_STATE_DIR: dir, TZW_STORE_URL: storeUrl, TZW_SOURCE_PATHS: examples, TZW_ADMISSION_LISTEN: '127.0.0.1:0',
      TZW_AUDIT_API_LISTEN: '127.0.0.1:0', TZW_METRICS_LISTEN: '127.0.0.1:0', TZW_LOG_LEVEL: 'silent',
    },
    readFile: (p) => readFileSync(p, 'utf8'), hostname: 'tzw-0',
  });
  if (!loaded.ok) throw new Error(loaded.errors.join('; '));
  const server = await startServer(loaded.config);
  t.teardown(() => server.close());
  const ca = readFileSync(join(dir, 'ca.crt'), 'utf8');

  // Before anything is recorded: ready (exit 0).
  const empty = await cli(['namespaces', 'readiness', '--store', storeUrl], dir);
  t.equal(empty.code, 0, empty.err);
  t.match(empty.out, /Ready to enforce/);

  const review = (name: string) => readFileSync(join(examples, 'reviews', name), 'utf8');
  for (const name of ['pipelinerun-audit.json', 'pipelinerun-audit.json', 'taskrun-unmapped.json', 'taskrun-mapped.json']) {
    await post(`${server.urls.admission}/validate`, ca, review(name));
  }

  const fromStore = await cli(['namespaces', 'readiness', '--store', storeUrl, '-o', 'json'], dir);
  t.equal(fromStore.code, 1, 'problems found: exit 1');
  const report = JSON.parse(fromStore.out);
  t.strictSame(report.namespaces.map((n: { namespace: string }) => n.namespace), ['data-science'], 'only the audit namespace (payments enforces: its denial is not a readiness finding)');
  const ns = report.namespaces[0];
  t.equal(ns.runs.length, 2);
  t.match(ns.runs[0], { kind: 'PipelineRun', name: 'train-', reasons: ['PIPELINERUN_SA_UNMAPPED'], serviceAccounts: ['data-science/default'] });
  t.strictSame(ns.serviceAccounts, [{ serviceAccount: 'data-science/default', runs: 2, reasons: ['PIPELINERUN_SA_UNMAPPED'] }], 'the mapped notebook-runner beside it is not listed');

  const fromServer = await cli(['namespaces', 'readiness', '--server', server.urls.audit, '--cacert', join(dir, 'ca.crt'), '-o', 'json'], dir);
  t.equal(fromServer.code, 1, fromServer.err);
  t.strictSame(JSON.parse(fromServer.out).namespaces, report.namespaces, '--server reads the same records through the audit API');

  const text = await cli(['namespaces', 'readiness', '--store', storeUrl], dir);
  t.match(text.out, /NAMESPACE\s+RUNS\s+SERVICEACCOUNTS TO MAP OR FIX\ndata-science\s+2\s+data-science\/default \(2\)/);
  t.match(text.out, /PipelineRun train-\s+PIPELINERUN_SA_UNMAPPED\s+data-science\/default\s+decision [0-9a-f-]{36}/);

  const future = await cli(['namespaces', 'readiness', '--store', storeUrl, '--since', '2999-01-01T00:00:00Z'], dir);
  t.equal(future.code, 0, 'nothing since then');
});

t.test('usage errors and --since parsing', async (t) => {
  const now = new Date('2026-12-02T00:00:00Z');
  t.equal(parseSince('7d', now), '2026-11-25T00:00:00.000000Z');
  t.equal(parseSince('36h', now), '2026-11-30T12:00:00.000000Z');
  t.equal(parseSince('2026-11-01T00:00:00+01:00', now), '2026-10-31T23:00:00.000000Z');
  t.throws(() => parseSince('a week', now), /neither a duration/);
  for (const argv of [['namespaces', 'readiness'], ['namespaces', 'readiness', '--store', 'sqlite:x', '--server', 'https://x'], ['namespaces', 'readiness', '--store', 'sqlite:x', '-o', 'yaml']]) {
    const r = await cli(argv, '/tmp');
    t.equal(r.code, 2, argv.join(' '));
  }
});

t.test('toNamespaceReadiness: only warned audit records; a TaskRun\'s pod is not listed twice; hostNetwork counts', async (t) => {
  const rec = (over: Record<string, unknown>) => ({
    id: 'id', time: '2026-12-01T00:00:00.000000Z', namespace: 'ds', name: 'x', kind: { group: 'tekton.dev', version: 'v1', kind: 'TaskRun' },
    mode: 'audit', verdict: 'warned', reasons: [], tekton: {}, ...over,
  }) as Parameters<typeof toNamespaceReadiness>[0] extends Iterable<infer R> ? R : never;
  const report = toNamespaceReadiness([
    rec({ id: 'a', name: 'build-1', reasons: [{ code: 'TASKRUN_SA_UNMAPPED', message: 'ServiceAccount ds/ci has no IdentityMapping.' }] }),
    rec({ id: 'b', name: 'build-1-pod', kind: { group: '', version: 'v1', kind: 'Pod' }, tekton: { taskRun: 'build-1' }, reasons: [{ code: 'POD_SA_UNMAPPED', message: 'ServiceAccount ds/ci has no IdentityMapping.' }] }),
    rec({ id: 'c', name: 'net-pod', kind: { group: '', version: 'v1', kind: 'Pod' }, tekton: { taskRun: 'other' }, reasons: [{ code: 'POD_HOSTNETWORK_DENIED', message: 'hostNetwork' }] }),
    rec({ id: 'd', verdict: 'denied', mode: 'enforce', namespace: 'pay' }),
    rec({ id: 'e', verdict: 'allowed' }),
    rec({ id: 'f', name: 'conflicted', time: '2026-12-01T01:00:00.000000Z', reasons: [{ code: 'MAPPING_CONFLICT', message: 'ServiceAccount ds/shared is claimed by more than one IdentityMapping: a, b.' }] }),
  ]);
  t.strictSame(report.map((n) => ({ ns: n.namespace, runs: n.runs.map((r) => r.decisionId), sas: n.serviceAccounts })), [{
    ns: 'ds', runs: ['f', 'a', 'c'],
    sas: [{ serviceAccount: 'ds/ci', runs: 1, reasons: ['TASKRUN_SA_UNMAPPED'] }, { serviceAccount: 'ds/shared', runs: 1, reasons: ['MAPPING_CONFLICT'] }],
  }]);
});
