import t from 'tap';
import { createFactsIndex, parseNamespace } from '../../webhook/core/mapping-index.js';

const DOMAIN = 'tekton-zscaler.io';
const ARN = 'arn:aws:iam::123456789012:role/r';

function aNamespace(name: string, mode?: string, tags?: unknown): Record<string, unknown> {
  return {
    apiVersion: 'v1', kind: 'Namespace',
    metadata: {
      name,
      labels: { 'kubernetes.io/metadata.name': name, ...(mode === undefined ? {} : { [`${DOMAIN}/mode`]: mode }) },
      ...(tags === undefined ? {} : { annotations: { [`${DOMAIN}/policy-tags`]: tags } }),
    },
  };
}
function aServiceAccount(namespace: string, name: string): Record<string, unknown> {
  return { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { namespace, name, uid: 'x', annotations: { big: 'y'.repeat(100) } } };
}
function aMapping(name: string, sas: Array<[string, string]>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    apiVersion: 'tekton-zscaler.io/v1alpha1', kind: 'IdentityMapping', metadata: { name },
    spec: { serviceAccounts: sas.map(([namespace, n]) => ({ namespace, name: n })), provider: 'aws-iam', aws: { roleArn: ARN }, ...extra },
  };
}
const resolved = (name: string, sas: Array<[string, string]>, policyTags: string[] = []) => ({
  name, serviceAccounts: sas.map(([namespace, n]) => ({ namespace, name: n })), provider: 'aws-iam', tokenExpirationSeconds: 600,
  policyTags, subject: ARN, audience: 'sts.amazonaws.com', env: [['AWS_ROLE_ARN', ARN]],
});

t.test('parseNamespace reads the mode label and the policy-tags annotation', async (t) => {
  const cases: Array<[string, unknown, unknown]> = [
    ['enforce with tags', aNamespace('p', 'enforce', ' pci, b ,,pci,a'), { facts: { name: 'p', mode: 'enforce', policyTags: ['a', 'b', 'pci'] }, problems: [] }],
    ['audit', aNamespace('d', 'audit'), { facts: { name: 'd', mode: 'audit', policyTags: [] }, problems: [] }],
    ['not enrolled', aNamespace('s'), { facts: { name: 's', policyTags: [] }, problems: [] }],
    ['bad mode is reported and not enrolled', aNamespace('x', 'Enforce'), {
      facts: { name: 'x', policyTags: [] },
      problems: ['label tekton-zscaler.io/mode is "Enforce"; it must be enforce or audit, so the namespace is treated as not enrolled'],
    }],
    ['bad tag dropped and reported', aNamespace('y', 'audit', 'ok,-no'), {
      facts: { name: 'y', mode: 'audit', policyTags: ['ok'] },
      problems: ['annotation tekton-zscaler.io/policy-tags has the malformed tag "-no", which is ignored'],
    }],
    ['no name', { metadata: {} }, undefined],
    ['not an object', 7, undefined],
  ];
  for (const [name, obj, expected] of cases) t.strictSame(parseNamespace(obj, DOMAIN), expected, name);
  t.strictSame(parseNamespace(aNamespace('p'), 'example.com')?.facts, { name: 'p', policyTags: [] }, 'other domain: our key is not theirs');
  const other = { metadata: { name: 'p', labels: { 'example.com/mode': 'audit' } } };
  t.strictSame(parseNamespace(other, 'example.com')?.facts, { name: 'p', mode: 'audit', policyTags: [] }, 'the domain is configurable');
});

t.test('lookups: mapped, unmapped, invalid, conflict, and their resolution', async (t) => {
  const idx = createFactsIndex(DOMAIN);
  t.strictSame(idx.lookup('payments', 'ci'), { kind: 'unmapped' });

  t.strictSame(idx.upsertMapping(aMapping('a', [['payments', 'ci']], { policyTags: ['z', 'y'] })), []);
  t.strictSame(idx.lookup('payments', 'ci'), { kind: 'mapped', mapping: resolved('a', [['payments', 'ci']], ['y', 'z']) });
  t.strictSame(idx.lookup('payments', 'other'), { kind: 'unmapped' });

  // Update in place: the claim moves.
  idx.upsertMapping(aMapping('a', [['payments', 'deployer']]));
  t.strictSame(idx.lookup('payments', 'ci'), { kind: 'unmapped' });
  t.strictSame(idx.lookup('payments', 'deployer'), { kind: 'mapped', mapping: resolved('a', [['payments', 'deployer']]) });

  // A second mapping claims the same SA: conflict, reported by the upsert and by problems().
  const conflict = {
    kind: 'conflict', serviceAccount: { namespace: 'payments', name: 'deployer' }, mappings: ['a', 'b'],
    message: 'ServiceAccount payments/deployer is claimed by more than one IdentityMapping (a, b); runs using it are denied until only one claims it',
  };
  t.strictSame(idx.upsertMapping(aMapping('b', [['payments', 'deployer'], ['payments', 'x']])), [conflict]);
  t.strictSame(idx.lookup('payments', 'deployer'), { kind: 'conflict', mappings: ['a', 'b'] });
  t.strictSame(idx.lookup('payments', 'x'), { kind: 'mapped', mapping: resolved('b', [['payments', 'deployer'], ['payments', 'x']]) });
  t.strictSame(idx.problems(), [conflict]);
  t.strictSame(idx.counts(), { namespaces: 0, serviceAccounts: 0, mappings: 2, invalid: 0, conflicts: 1 });

  // A third claimant, then an invalid update of one claimant: still a conflict (invalid mappings claim too).
  idx.upsertMapping(aMapping('c', [['payments', 'deployer']]));
  t.strictSame(idx.lookup('payments', 'deployer'), { kind: 'conflict', mappings: ['a', 'b', 'c'] });
  const badProblems = ['spec.tokenExpirationSeconds must be >= 600 (got 5)'];
  const invalidC = {
    kind: 'invalid-mapping', mapping: 'c', serviceAccounts: [{ namespace: 'payments', name: 'deployer' }], problems: badProblems,
    message: 'IdentityMapping c is invalid: spec.tokenExpirationSeconds must be >= 600 (got 5)',
  };
  t.strictSame(idx.upsertMapping(aMapping('c', [['payments', 'deployer']], { tokenExpirationSeconds: 5 })), [
    invalidC, { ...conflict, mappings: ['a', 'b', 'c'], message: conflict.message.replace('(a, b)', '(a, b, c)') },
  ]);
  idx.deleteMapping('a');
  idx.deleteMapping('b');
  // Only the invalid one is left: the SA looks up as "claimed by an invalid mapping", not unmapped.
  t.strictSame(idx.lookup('payments', 'deployer'), { kind: 'invalid', mapping: 'c', problems: badProblems });
  t.strictSame(idx.lookup('payments', 'x'), { kind: 'unmapped' });
  t.strictSame(idx.problems(), [invalidC]);
  t.strictSame(idx.counts(), { namespaces: 0, serviceAccounts: 0, mappings: 1, invalid: 1, conflicts: 0 });

  // Fixing it makes it mapped again; deleting makes it unmapped; deleting twice is harmless.
  idx.upsertMapping(aMapping('c', [['payments', 'deployer']]));
  t.strictSame(idx.lookup('payments', 'deployer'), { kind: 'mapped', mapping: resolved('c', [['payments', 'deployer']]) });
  t.strictSame(idx.problems(), []);
  idx.deleteMapping('c');
  idx.deleteMapping('c');
  t.strictSame(idx.lookup('payments', 'deployer'), { kind: 'unmapped' });
  t.strictSame(idx.counts(), { namespaces: 0, serviceAccounts: 0, mappings: 0, invalid: 0, conflicts: 0 });
});

t.test('an unnamed mapping is reported but not tracked', async (t) => {
  const idx = createFactsIndex(DOMAIN);
  const out = idx.upsertMapping({ spec: { serviceAccounts: [{ namespace: 'a', name: 'b' }], provider: 'okta' } });
  t.strictSame(out.map((p) => p.kind), ['invalid-mapping']);
  t.strictSame(idx.lookup('a', 'b'), { kind: 'unmapped' });
  t.strictSame(idx.counts().mappings, 0);
});

t.test('namespaces and ServiceAccounts: upsert, delete, iterate, problems', async (t) => {
  const idx = createFactsIndex(DOMAIN);
  idx.upsertNamespace(aNamespace('payments', 'enforce', 'pci'));
  idx.upsertNamespace(aNamespace('sandbox'));
  idx.upsertNamespace(aNamespace('typo', 'enforced'));
  idx.upsertNamespace({ metadata: {} });
  t.strictSame(idx.namespace('payments'), { name: 'payments', mode: 'enforce', policyTags: ['pci'] });
  t.strictSame(idx.namespace('sandbox'), { name: 'sandbox', policyTags: [] });
  t.equal(idx.namespace('nope'), undefined);
  t.strictSame([...idx.namespaces()].map((n) => n.name), ['payments', 'sandbox', 'typo']);
  t.strictSame(idx.problems().map((p) => p.message), [
    'Namespace typo: label tekton-zscaler.io/mode is "enforced"; it must be enforce or audit, so the namespace is treated as not enrolled',
  ]);
  idx.upsertNamespace(aNamespace('typo', 'enforce'));
  t.strictSame(idx.problems(), []);
  idx.upsertNamespace(aNamespace('payments', 'audit'));
  t.strictSame(idx.namespace('payments'), { name: 'payments', mode: 'audit', policyTags: [] });
  idx.deleteNamespace('payments');
  t.equal(idx.namespace('payments'), undefined);

  idx.upsertServiceAccount(aServiceAccount('a', 'x'));
  idx.upsertServiceAccount(aServiceAccount('a', 'x'));
  idx.upsertServiceAccount(aServiceAccount('a', 'y'));
  idx.upsertServiceAccount(aServiceAccount('b', 'x'));
  idx.upsertServiceAccount({ metadata: { name: 'no-namespace' } });
  t.strictSame([...idx.serviceAccounts()], [{ namespace: 'a', name: 'x' }, { namespace: 'a', name: 'y' }, { namespace: 'b', name: 'x' }]);
  t.equal(idx.counts().serviceAccounts, 3);
  idx.deleteServiceAccount('a', 'x');
  idx.deleteServiceAccount('a', 'x');
  idx.deleteServiceAccount('b', 'x');
  idx.deleteServiceAccount('zz', 'x');
  t.strictSame([...idx.serviceAccounts()], [{ namespace: 'a', name: 'y' }]);
  t.strictSame(idx.counts(), { namespaces: 2, serviceAccounts: 1, mappings: 0, invalid: 0, conflicts: 0 });
});

t.test('problems() lists namespaces, then invalid mappings, then conflicts, each sorted', async (t) => {
  const idx = createFactsIndex(DOMAIN);
  idx.upsertMapping(aMapping('m2', [['b', 'sa']]));
  idx.upsertMapping(aMapping('m1', [['b', 'sa']]));
  idx.upsertMapping(aMapping('m4', [['a', 'sa']]));
  idx.upsertMapping(aMapping('m3', [['a', 'sa']]));
  idx.upsertMapping(aMapping('zz', [['c', 'sa']], { provider: 'okta' }));
  idx.upsertMapping(aMapping('aa', [['c', 'sb']], { provider: 'nope' }));
  idx.upsertNamespace(aNamespace('n', 'x'));
  t.strictSame(idx.problems().map((p) => [p.kind, p.kind === 'conflict' ? p.mappings.join() : p.kind === 'invalid-mapping' ? p.mapping : p.namespace]), [
    ['invalid-namespace', 'n'], ['invalid-mapping', 'aa'], ['invalid-mapping', 'zz'], ['conflict', 'm3,m4'], ['conflict', 'm1,m2'],
  ]);
});

t.test('a hundred thousand mappings: each update stays cheap and lookups stay exact', async (t) => {
  const idx = createFactsIndex(DOMAIN);
  const N = 100_000;
  for (let i = 0; i < N; i++) idx.upsertMapping(aMapping(`m${i}`, [[`ns${i % 500}`, `sa${i}`]]));
  t.strictSame(idx.counts(), { namespaces: 0, serviceAccounts: 0, mappings: N, invalid: 0, conflicts: 0 });
  // The cost of one more update must not grow with the index (a full rebuild would be ~N times slower).
  const start = process.hrtime.bigint();
  for (let i = 0; i < 1000; i++) idx.upsertMapping(aMapping(`m${i}`, [[`ns${i % 500}`, `sa${i}`]], { policyTags: ['x'] }));
  const perUpdateMs = Number(process.hrtime.bigint() - start) / 1e6 / 1000;
  t.ok(perUpdateMs < 5, `one update took ${perUpdateMs.toFixed(3)} ms`);
  t.strictSame(idx.lookup('ns7', 'sa7'), { kind: 'mapped', mapping: resolved('m7', [['ns7', 'sa7']], ['x']) });
  t.strictSame(idx.lookup('ns7', 'sa8'), { kind: 'unmapped' });
});

t.test('equal tag lists are stored once, frozen, and survive the deletion of one user', async (t) => {
  const idx = createFactsIndex(DOMAIN);
  idx.upsertMapping(aMapping('a', [['p', 'a']], { policyTags: ['y', 'x'] }));
  idx.upsertMapping(aMapping('b', [['p', 'b']], { policyTags: ['x', 'y', 'x'] }));
  const tagsOf = (sa: string) => {
    const l = idx.lookup('p', sa);
    return l.kind === 'mapped' ? l.mapping.policyTags : undefined;
  };
  t.equal(tagsOf('a'), tagsOf('b'), 'one shared array');
  t.ok(Object.isFrozen(tagsOf('a')), 'frozen: a consumer cannot change another mapping\'s tags');
  idx.deleteMapping('a');
  t.strictSame(tagsOf('b'), ['x', 'y']);
  idx.upsertMapping(aMapping('b', [['p', 'b']], { policyTags: ['z'] }));
  idx.upsertMapping(aMapping('c', [['p', 'c']], { policyTags: ['x', 'y'] }));
  t.strictSame([tagsOf('b'), tagsOf('c')], [['z'], ['x', 'y']]);
});
