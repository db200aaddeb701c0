import t from 'tap';
import { fileURLToPath } from 'node:url';
import { createFactsIndex } from '../../webhook/core/mapping-index.js';
import { createFileSource } from '../../webhook/kube/files.js';
import { createLogRecorder } from './log-recorder.js';

const EXAMPLES = fileURLToPath(new URL('../../manifests/examples/', import.meta.url));

t.test('the standalone example set loads with zero problems and maps what the demo needs', async (t) => {
  const index = createFactsIndex('tekton-zscaler.io');
  const logger = createLogRecorder();
  const source = createFileSource({ paths: [EXAMPLES], index, logger, watch: false });
  await source.start();
  await source.close();
  t.strictSame(index.problems(), []);
  t.strictSame(logger.at('warn'), []);
  t.strictSame(index.counts(), { namespaces: 3, serviceAccounts: 5, mappings: 3, invalid: 0, conflicts: 0 });
  t.strictSame([...index.namespaces()].sort((a, b) => a.name.localeCompare(b.name)), [
    { name: 'data-science', mode: 'audit', policyTags: [] },
    { name: 'payments', mode: 'enforce', policyTags: ['pci'] },
    { name: 'sandbox', policyTags: [] },
  ]);
  const summary = (ns: string, sa: string) => {
    const l = index.lookup(ns, sa);
    return l.kind === 'mapped' ? [l.mapping.name, l.mapping.provider, l.mapping.audience, l.mapping.tokenExpirationSeconds, l.mapping.policyTags] : l.kind;
  };
  t.strictSame(
    [['payments', 'ci-builder'], ['payments', 'deployer'], ['payments', 'default'], ['data-science', 'notebook-runner'], ['data-science', 'default']].map(([ns, sa]) => summary(ns!, sa!)),
    [
      ['payments-ci', 'aws-iam', 'sts.amazonaws.com', 600, ['ci', 'payments-artifacts']],
      ['payments-deploy', 'azure-ad', 'api://AzureADTokenExchange', 900, ['deploy']],
      'unmapped',
      ['ds-notebooks', 'okta', '0oa8f3k2j1h0g9f8e7d6', 600, ['notebooks']],
      'unmapped',
    ],
  );
  // Every mapped ServiceAccount exists, so the demo's mappings are not dangling.
  const sas = new Set([...index.serviceAccounts()].map((s) => `${s.namespace}/${s.name}`));
  for (const key of ['payments/ci-builder', 'payments/deployer', 'data-science/notebook-runner']) t.ok(sas.has(key), key);
});
