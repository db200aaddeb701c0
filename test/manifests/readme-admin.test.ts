// The README's cluster-admin parts stay true: the `kubectl get idm` sample has the CRD's printer
// columns, the Helm commands name files that exist, and values.yaml has every value DESIGN lists.
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { toIdentityMappingCrd } from '../../webhook/core/mapping-schema.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');

t.test('the kubectl get idm sample shows the CRD\'s default printer columns', async (t) => {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const version = (toIdentityMappingCrd() as any).spec.versions[0];
  const columns = ['NAME', ...(version.additionalPrinterColumns as Array<{ name: string; priority?: number }>).filter((c) => !c.priority).map((c) => c.name.toUpperCase())];
  const sample = /```\n(NAME [^\n]*)\n/.exec(readme)?.[1];
  t.strictSame(sample?.split(/\s+/), columns);
  t.ok(columns.includes('READY') && columns.includes('REASON'));
});

t.test('Helm commands in the README name files that exist', async (t) => {
  const paths = [...readme.matchAll(/(manifests\/charts\/[\w./-]+)/g)].map((m) => m[1]!.replace(/[.,)]+$/, ''));
  t.ok(paths.length >= 2);
  t.strictSame(paths.filter((p) => !existsSync(join(ROOT, p))), []);
});

t.test('values.yaml has every value DESIGN "Cluster admins" lists', async (t) => {
  const values = parse(readFileSync(join(ROOT, 'manifests/charts/tekton-zscaler-webhook/values.yaml'), 'utf8'));
  const listed = ['replicaCount', 'image.repository', 'image.tag', 'image.pullPolicy', 'resources', 'podDisruptionBudget', 'priorityClassName', 'affinity',
    'tolerations', 'nodeSelector', 'topologySpreadConstraints', 'networkPolicy.enabled', 'webhook.failurePolicy', 'webhook.timeoutSeconds',
    'webhook.namespaceSelector', 'certificates.mode', 'store', 'auditApi.auth', 'serviceMonitor.enabled', 'prometheusRule.enabled', 'grafanaDashboard.enabled', 'config'];
  const has = (path: string) => path.split('.').reduce<unknown>((v, k) => (v as Record<string, unknown> | undefined)?.[k], values) !== undefined;
  t.strictSame(listed.filter((p) => !has(p)), []);
});
