import t, { type Test } from 'tap';
import { KubeConfig } from '@kubernetes/client-node';
import { createFactsIndex, type FactsIndex } from '../../webhook/core/mapping-index.js';
import { createKubeSource, loadKubeConfig, type KubeSource, type KubeSourceOptions } from '../../webhook/kube/informers.js';
import { startFakeApiServer, type FakeApiServer } from './fake-api-server.js';
import { createLogRecorder } from './log-recorder.js';

const DOMAIN = 'tekton-zscaler.io';
const ARN = 'arn:aws:iam::123456789012:role/r';

const aNamespace = (name: string, mode?: string, tags?: string) => ({
  metadata: {
    name,
    labels: { 'kubernetes.io/metadata.name': name, ...(mode ? { [`${DOMAIN}/mode`]: mode } : {}) },
    annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{"big":"blob"}', ...(tags ? { [`${DOMAIN}/policy-tags`]: tags } : {}) },
  },
});
const aServiceAccount = (namespace: string, name: string) => ({ metadata: { namespace, name }, secrets: [{ name: `${name}-token` }] });
const aMapping = (name: string, sas: Array<[string, string]>, extra: Record<string, unknown> = {}) => ({
  metadata: { name },
  spec: { serviceAccounts: sas.map(([namespace, n]) => ({ namespace, name: n })), provider: 'aws-iam', aws: { roleArn: ARN }, ...extra },
});

/** Polls until `pred` holds (informer events arrive asynchronously). */
async function until(pred: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function setup(t: Test, opts: Partial<KubeSourceOptions> = {}): Promise<{
  api: FakeApiServer; index: FactsIndex; logger: ReturnType<typeof createLogRecorder>; source: KubeSource;
}> {
  const api = await startFakeApiServer();
  const index = createFactsIndex(DOMAIN);
  const logger = createLogRecorder();
  const source = createKubeSource({
    kubeConfig: api.kubeConfig(), index, logger, domain: DOMAIN, restartDelayMs: 20,
    listWatchOptions: { delayFn: async () => {} }, ...opts,
  });
  t.teardown(async () => {
    source.stop();
    await api.close();
  });
  return { api, index, logger, source };
}

t.test('start resolves only after all three resources are listed; synced() stays false until then', async (t) => {
  const { api, index, logger, source } = await setup(t);
  api.upsert('namespaces', aNamespace('payments', 'enforce', 'pci'));
  api.upsert('serviceaccounts', aServiceAccount('payments', 'ci'));
  api.upsert('identitymappings', aMapping('m', [['payments', 'ci']]));
  api.failNext('identitymappings', 'list', 500, 2);
  let resolved = false;
  const started = source.start().then(() => (resolved = true));
  await until(() => api.requests.filter((r) => r.resource === 'identitymappings' && !r.watch).length >= 2, 'two failed lists');
  t.equal(source.synced(), false);
  t.equal(resolved, false);
  t.match(source.lastError(), { resource: 'identitymappings', status: 500, message: 'HTTP 500: injected failure 500' });
  await started;
  t.equal(source.synced(), true);
  t.strictSame(index.namespace('payments'), { name: 'payments', mode: 'enforce', policyTags: ['pci'] });
  t.strictSame([...index.serviceAccounts()], [{ namespace: 'payments', name: 'ci' }]);
  t.equal(index.lookup('payments', 'ci').kind, 'mapped');
  t.match(logger.at('error'), [/^list\/watch of identitymappings failed: HTTP 500: injected failure 500; retrying$/]);
  t.match(logger.at('info'), ['objects synced']);
});

t.test('add, update and delete reach the index for every resource', async (t) => {
  const { api, index, source } = await setup(t);
  await source.start();

  api.upsert('namespaces', aNamespace('p', 'audit'));
  await until(() => index.namespace('p')?.mode === 'audit', 'namespace added');
  api.upsert('namespaces', aNamespace('p', 'enforce', 'a,b'));
  await until(() => index.namespace('p')?.mode === 'enforce', 'namespace updated');
  t.strictSame(index.namespace('p'), { name: 'p', mode: 'enforce', policyTags: ['a', 'b'] });
  api.remove('namespaces', 'p');
  await until(() => index.namespace('p') === undefined, 'namespace deleted');

  api.upsert('serviceaccounts', aServiceAccount('p', 'x'));
  api.upsert('serviceaccounts', aServiceAccount('q', 'x'));
  await until(() => index.counts().serviceAccounts === 2, 'service accounts added');
  api.upsert('serviceaccounts', { ...aServiceAccount('p', 'x'), automountServiceAccountToken: false });
  api.remove('serviceaccounts', 'x', 'q');
  await until(() => index.counts().serviceAccounts === 1, 'service account deleted');
  t.strictSame([...index.serviceAccounts()], [{ namespace: 'p', name: 'x' }]);

  api.upsert('identitymappings', aMapping('m', [['p', 'x']]));
  await until(() => index.lookup('p', 'x').kind === 'mapped', 'mapping added');
  api.upsert('identitymappings', aMapping('m', [['p', 'x']], { policyTags: ['t'] }));
  await until(() => {
    const l = index.lookup('p', 'x');
    return l.kind === 'mapped' && l.mapping.policyTags.length === 1;
  }, 'mapping updated');
  api.remove('identitymappings', 'm');
  await until(() => index.lookup('p', 'x').kind === 'unmapped', 'mapping deleted');
  t.strictSame(index.counts(), { namespaces: 0, serviceAccounts: 1, mappings: 0, invalid: 0, conflicts: 0 });
});

t.test('410 Gone, in the stream or as HTTP status, makes the informer relist and catch up on missed changes', async (t) => {
  const { api, index, source } = await setup(t);
  api.upsert('namespaces', aNamespace('keep', 'audit'));
  api.upsert('namespaces', aNamespace('lost', 'audit'));
  api.upsert('identitymappings', aMapping('m', [['keep', 'sa']]));
  await source.start();
  const lists = (r: string) => api.requests.filter((q) => q.resource === r && !q.watch).length;

  // In-stream ERROR 410 after a change the client never saw.
  api.remove('namespaces', 'lost', undefined, { silent: true });
  api.upsert('namespaces', aNamespace('keep', 'enforce'), { silent: true });
  t.equal(index.namespace('lost')?.mode, 'audit', 'the silent change is not seen yet');
  const before = lists('namespaces');
  api.endWatches('namespaces', 'gone');
  await until(() => index.namespace('lost') === undefined && index.namespace('keep')?.mode === 'enforce', 'relist applied');
  t.equal(lists('namespaces'), before + 1, 'exactly one relist');

  // HTTP 410 on re-watch.
  api.upsert('identitymappings', aMapping('m', [['keep', 'other']]), { silent: true });
  api.failNext('identitymappings', 'watch', 410);
  const beforeMappings = lists('identitymappings');
  api.endWatches('identitymappings', 'close');
  await until(() => index.lookup('keep', 'other').kind === 'mapped', 'relist after HTTP 410');
  t.equal(index.lookup('keep', 'sa').kind, 'unmapped');
  t.equal(lists('identitymappings'), beforeMappings + 1);

  // A plain close re-watches from the last resourceVersion without relisting.
  const beforeClose = lists('namespaces');
  api.endWatches('namespaces', 'close');
  await until(() => api.openWatches('namespaces') === 1, 're-watch');
  api.upsert('namespaces', aNamespace('new', 'audit'));
  await until(() => index.namespace('new') !== undefined, 'event after re-watch');
  t.equal(lists('namespaces'), beforeClose, 'no relist after a clean close');
  t.equal(source.lastError(), undefined, '410 is not an error');
});

t.test('a 500 on the watch stops client-node informers; we restart and recover', async (t) => {
  const { api, index, logger, source } = await setup(t);
  await source.start();
  api.failNext('serviceaccounts', 'watch', 500, 2);
  api.endWatches('serviceaccounts', 'close');
  await until(() => source.lastError()?.status === 500, 'error recorded');
  t.equal(source.synced(), true, 'still synced: the index holds the last snapshot');
  api.upsert('serviceaccounts', aServiceAccount('p', 'after'));
  await until(() => index.counts().serviceAccounts === 1, 'events flow again after the restart');
  t.strictSame(logger.at('error'), [
    'list/watch of serviceaccounts failed: HTTP 500; retrying',
    'list/watch of serviceaccounts failed: HTTP 500; retrying',
  ]);
  t.match(logger.lines.find((l) => l.level === 'error')?.fields, { source: 'kubernetes', resource: 'serviceaccounts', err: { status: 500 }, restartInMs: 20 });
});

t.test('conflicting and invalid mappings are logged as warnings and looked up as such', async (t) => {
  const { api, index, logger, source } = await setup(t);
  api.upsert('identitymappings', aMapping('a', [['p', 'shared']]));
  api.upsert('identitymappings', aMapping('b', [['p', 'shared']]));
  api.upsert('identitymappings', aMapping('bad', [['p', 'solo']], { provider: 'azure-ad' }));
  await source.start();
  t.strictSame(index.lookup('p', 'shared'), { kind: 'conflict', mappings: ['a', 'b'] });
  t.strictSame(index.lookup('p', 'solo'), {
    kind: 'invalid', mapping: 'bad', problems: ['spec.azure is required when provider is azure-ad', 'spec.aws is only allowed when provider is aws-iam'],
  });
  t.strictSame(index.counts(), { namespaces: 0, serviceAccounts: 0, mappings: 3, invalid: 1, conflicts: 1 });
  t.strictSame(logger.at('warn').sort(), [
    'IdentityMapping bad is invalid: spec.azure is required when provider is azure-ad; spec.aws is only allowed when provider is aws-iam',
    'ServiceAccount p/shared is claimed by more than one IdentityMapping (a, b); runs using it are denied until only one claims it',
  ]);
  api.remove('identitymappings', 'b');
  await until(() => index.lookup('p', 'shared').kind === 'mapped', 'conflict resolved by delete');
});

t.test('lists are paged with limit and continue', async (t) => {
  const { api, index, source } = await setup(t, { pageSize: 2 });
  for (let i = 0; i < 5; i++) api.upsert('serviceaccounts', aServiceAccount(`ns${i % 2}`, `sa${i}`));
  await source.start();
  t.equal(index.counts().serviceAccounts, 5);
  const pages = api.requests.filter((r) => r.resource === 'serviceaccounts' && !r.watch);
  t.strictSame(pages.map((p) => [p.query.limit, p.query.continue !== undefined]), [['2', false], ['2', true], ['2', true]]);
});

t.test('errors carry a hint for the admin', async (t) => {
  const cases: Array<[string, Partial<KubeSourceOptions> | undefined, (api: FakeApiServer) => void, RegExp]> = [
    ['CRD missing', undefined, (api) => api.failNext('identitymappings', 'list', 404), /identitymappings failed: HTTP 404: injected failure 404; the IdentityMapping CRD is not installed: kubectl apply -f manifests\/crd\/identitymapping\.yaml; retrying/],
    ['RBAC', undefined, (api) => api.failNext('serviceaccounts', 'list', 403), /serviceaccounts failed: HTTP 403: .*needs list and watch on serviceaccounts/],
  ];
  for (const [name, opts, arrange, re] of cases) {
    const { api, logger, source } = await setup(t, opts);
    arrange(api);
    await source.start();
    t.match(logger.at('error')[0], re, name);
  }
  // Wrong credentials: every request fails with 401 until someone fixes them.
  const api = await startFakeApiServer();
  const kc = api.kubeConfig();
  const bad = new KubeConfig();
  bad.loadFromOptions({ clusters: kc.clusters, users: [{ name: 'u', token: 'wrong' }], contexts: kc.contexts, currentContext: kc.currentContext });
  const logger = createLogRecorder();
  const source = createKubeSource({ kubeConfig: bad, index: createFactsIndex(DOMAIN), logger, domain: DOMAIN, restartDelayMs: 1000, initialSyncTimeoutMs: 300 });
  t.teardown(async () => {
    source.stop();
    await api.close();
  });
  await t.rejects(source.start(), { code: 'ERR_TZW_SOURCE_TIMEOUT', message: /not listed within 300 ms; last error \(\w+\): HTTP 401/ });
  t.match(logger.at('error')[0], /HTTP 401.*check the kubeconfig or the mounted ServiceAccount token/);
  t.equal(source.synced(), false);
});

t.test('loadKubeConfig reads the default kubeconfig outside a cluster', async (t) => {
  const api = await startFakeApiServer();
  t.teardown(() => api.close());
  const dir = t.testdir({ config: api.kubeConfig().exportConfig() });
  const saved = process.env.KUBECONFIG;
  process.env.KUBECONFIG = `${dir}/config`;
  t.teardown(() => {
    if (saved === undefined) delete process.env.KUBECONFIG;
    else process.env.KUBECONFIG = saved;
  });
  const kc = loadKubeConfig({});
  t.equal(kc.getCurrentCluster()?.server, api.url);
  // In a pod: the mounted ServiceAccount token and CA, whatever KUBECONFIG says.
  const inCluster = loadKubeConfig({ KUBERNETES_SERVICE_HOST: '10.0.0.1' });
  t.strictSame([inCluster.getCurrentCluster()?.name, inCluster.getCurrentCluster()?.caFile], ['inCluster', '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt']);
});

t.test('stop() during a list aborts it and opens no watch afterwards', async (t) => {
  const { api, source } = await setup(t, { initialSyncTimeoutMs: 200 });
  api.hold('identitymappings', 'list');
  await t.rejects(source.start(), { code: 'ERR_TZW_SOURCE_TIMEOUT', message: /^identitymappings not listed within 200 ms$/ });
  source.stop();
  api.release();
  await new Promise((r) => setTimeout(r, 100));
  t.equal(api.openWatches('identitymappings'), 0);
  t.strictSame(api.requests.filter((r) => r.resource === 'identitymappings').map((r) => r.watch), [false]);
  t.equal(source.lastError(), undefined, 'our own abort is not an error');
  t.equal(source.synced(), false);
});
