import t from 'tap';
import { createMemoryFacts } from '../../webhook/core/facts-memory.js';
import { aMapping, aNamespace } from '../builders.js';

const sa = (namespace: string, name: string) => ({ namespace, name });

t.test('namespaces are found by name; a later entry replaces an earlier one', async (t) => {
  const facts = createMemoryFacts({
    namespaces: [aNamespace({ name: 'a', mode: 'audit', policyTags: ['x'] }), aNamespace({ name: 'b', mode: undefined }), aNamespace({ name: 'a', mode: 'enforce' })],
    mappings: [],
  });
  t.strictSame(facts.namespace('a'), { name: 'a', mode: 'enforce', policyTags: [] });
  t.strictSame(facts.namespace('b'), { name: 'b', policyTags: [] });
  t.equal(facts.namespace('c'), undefined);
});

t.test('lookup: mapped, unmapped, conflict, invalid', async (t) => {
  const one = aMapping({ name: 'one', serviceAccounts: [sa('ns', 'a'), sa('ns', 'shared'), sa('ns', 'a')] });
  const two = aMapping({ name: 'two', serviceAccounts: [sa('ns', 'shared'), sa('other', 'a')] });
  const facts = createMemoryFacts({
    namespaces: [],
    mappings: [two, one],
    invalid: [
      { mapping: 'bad', problems: ['p1', 'p2'], serviceAccounts: [sa('ns', 'broken'), sa('ns', 'a')] },
    ],
    conflicts: [{ serviceAccount: sa('ns', 'forced'), mappings: ['z', 'y'] }],
  });
  const cases: Array<[string, string, string, unknown]> = [
    ['one valid claim', 'other', 'a', { kind: 'mapped', mapping: two }],
    ['no claim', 'ns', 'nobody', { kind: 'unmapped' }],
    ['same name, other namespace', 'nope', 'a', { kind: 'unmapped' }],
    ['two valid claims', 'ns', 'shared', { kind: 'conflict', mappings: ['one', 'two'] }],
    ['a valid and an invalid claim', 'ns', 'a', { kind: 'conflict', mappings: ['bad', 'one'] }],
    ['one invalid claim', 'ns', 'broken', { kind: 'invalid', mapping: 'bad', problems: ['p1', 'p2'] }],
    ['explicit conflict', 'ns', 'forced', { kind: 'conflict', mappings: ['y', 'z'] }],
  ];
  for (const [name, ns, account, want] of cases) t.strictSame(facts.lookup(ns, account), want, name);
  const found = facts.lookup('other', 'a');
  t.equal(found.kind === 'mapped' ? found.mapping : undefined, two, 'the mapping object itself, not a copy');
});
