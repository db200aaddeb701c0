import t from 'tap';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { CustomResourceDefinition } from 'kubernetes-models/apiextensions.k8s.io/v1';
import { CRD_PATH, renderCrd } from '../../scripts/gen-crd.js';
import { IDENTITY_MAPPING_SPEC_SCHEMA, parseIdentityMapping } from '../../webhook/core/mapping-schema.js';

const committed = readFileSync(CRD_PATH, 'utf8');
const crd = parse(committed) as {
  metadata: { name: string };
  spec: {
    group: string; scope: string;
    names: Record<string, unknown>;
    versions: Array<{ name: string; served: boolean; storage: boolean; schema: { openAPIV3Schema: { properties: { spec: Record<string, unknown> } } } }>;
  };
};

t.test('the committed CRD is exactly what scripts/gen-crd.ts generates (run `npx tsx scripts/gen-crd.ts`)', async (t) => {
  t.equal(committed, renderCrd());
});

t.test('the CRD is a valid apiextensions.k8s.io/v1 object with the names the design fixes', async (t) => {
  t.doesNotThrow(() => new CustomResourceDefinition(crd as never).validate());
  t.equal(crd.metadata.name, 'identitymappings.tekton-zscaler.io');
  t.strictSame(
    { group: crd.spec.group, scope: crd.spec.scope, names: crd.spec.names },
    {
      group: 'tekton-zscaler.io',
      scope: 'Cluster',
      names: { plural: 'identitymappings', singular: 'identitymapping', kind: 'IdentityMapping', listKind: 'IdentityMappingList', shortNames: ['idm'] },
    },
  );
  t.strictSame(crd.spec.versions.map((v) => [v.name, v.served, v.storage]), [['v1alpha1', true, true]]);
  t.strictSame(crd.spec.versions[0]?.schema.openAPIV3Schema.properties.spec, JSON.parse(JSON.stringify(IDENTITY_MAPPING_SPEC_SCHEMA)));
});

t.test('every CEL rule in the CRD is enforced in code with the same message', async (t) => {
  const rules = crd.spec.versions[0]?.schema.openAPIV3Schema.properties.spec['x-kubernetes-validations'] as Array<{ rule: string; message: string }>;
  const sa = [{ namespace: 'a', name: 'b' }];
  const blocks = {
    aws: { roleArn: 'arn:aws:iam::123456789012:role/r' },
    azure: { clientId: '11111111-2222-3333-4444-555555555555', tenantId: 'contoso.onmicrosoft.com' },
    okta: { issuer: 'https://example.okta.com/oauth2/default', clientId: '0oa1' },
  };
  const seen = new Set<string>();
  for (const [provider, block] of [['aws-iam', 'aws'], ['azure-ad', 'azure'], ['okta', 'okta']] as const) {
    // Missing own block.
    const missing = parseIdentityMapping({ metadata: { name: 'm' }, spec: { serviceAccounts: sa, provider } });
    t.equal(missing.ok, false, `${provider} without ${block}`);
    if (!missing.ok) missing.problems.forEach((p) => seen.add(p));
    // Own block plus another provider's block.
    const other = ({ aws: 'azure', azure: 'okta', okta: 'aws' } as const)[block];
    const stray = parseIdentityMapping({ metadata: { name: 'm' }, spec: { serviceAccounts: sa, provider, [block]: blocks[block], [other]: blocks[other] } });
    t.equal(stray.ok, false, `${provider} with ${other}`);
    if (!stray.ok) stray.problems.forEach((p) => seen.add(p));
  }
  t.equal(rules.length, 6);
  for (const r of rules) t.ok(seen.has(r.message), `code enforces: ${r.rule}`);
});
