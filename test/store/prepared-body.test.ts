/**
 * The prepared chain body (link.ts prepareChainBody on the request side, chainPreparedBody on the
 * writer thread) must give exactly the body bytes and hash that chaining the record itself gives
 * (chainNamespaceRecordUtf8), for any plain JSON record; anything else is left to that path.
 */
import t from 'tap';
import fc from 'fast-check';
import { CanonicalText } from '../../webhook/store/evidence/canonical.js';
import { chainNamespaceRecordUtf8, chainPreparedBody, GENESIS_HASH, prepareChainBody, type NamespaceChainHead } from '../../webhook/store/evidence/link.js';
import { aRecord } from './builders.js';

function both(record: object, head: { seq: number; hash: string }, nsHead: NamespaceChainHead | undefined, patchJson?: string) {
  const prepared = prepareChainBody(record, patchJson);
  if (!prepared) return undefined;
  // The request side copies its view out before the next canonical call, as the store does.
  const fast = chainPreparedBody({ bytes: Buffer.from(prepared.bytes), slots: prepared.slots }, head, nsHead);
  const got = { ...fast, body: fast.body.toString('utf8') };
  const ref = chainNamespaceRecordUtf8(patchJson === undefined ? record : { ...record, patch: new CanonicalText(patchJson) }, head, nsHead);
  return { got, want: { ...ref, body: Buffer.from(ref.body).toString('utf8') } };
}

t.test('a prepared body chains to the same bytes and hash as the record', async (t) => {
  const head = { seq: 41, hash: 'ab'.repeat(32) };
  const nsHead = { nsSeq: 6, hash: 'cd'.repeat(32) };
  const patch = [{ op: 'add', path: '/metadata/annotations/tekton-zscaler.io~1status', value: 'injected' }];
  const cases: Array<[string, object, NamespaceChainHead | undefined, string | undefined]> = [
    ['a record, genesis namespace chain', aRecord({ n: 1 }), undefined, undefined],
    ['a record after a namespace head', aRecord({ n: 2 }), nsHead, undefined],
    ['with the patch as canonical text', aRecord({ n: 3 }), nsHead, JSON.stringify(patch)],
    ['a record that already carries chain members (re-chained: replaced, hash left out)', { ...aRecord({ n: 4 }), seq: 9, prevHash: 'x', hash: 'y', nsSeq: 'z', nsPrevHash: null }, nsHead, undefined],
    ['non-ASCII and escapes', { ...aRecord({ n: 5 }), name: 'bé\u{1F600}\n"\\\u0001', namespace: 'ñs' }, nsHead, undefined],
    ['a body larger than the writer buffer', { ...aRecord({ n: 6 }), name: 'x'.repeat(70_000) }, nsHead, undefined],
    ['integer-like keys', { ...aRecord({ n: 7 }), 10: 'a', 9: 'b' }, undefined, undefined],
  ];
  for (const [name, record, ns, patchJson] of cases) {
    const r = both(record, head, ns, patchJson);
    t.ok(r, `${name}: prepared`);
    if (r) t.strictSame(r.got, r.want, name);
  }
  // The genesis writer chain and a large seq write their numbers as canonical JSON does.
  const big = both(aRecord({ n: 8 }), { seq: 2 ** 40, hash: GENESIS_HASH }, { nsSeq: 123_456_789, hash: GENESIS_HASH });
  t.strictSame(big?.got, big?.want, 'large seq and nsSeq');
});

t.test('any plain JSON record prepares to the same chain link', async (t) => {
  fc.assert(
    fc.property(fc.dictionary(fc.string(), fc.jsonValue()), fc.nat(), fc.option(fc.nat()), (extra, seq, nsSeq) => {
      const record = { ...aRecord({ n: 1 }), ...extra };
      const r = both(record, { seq, hash: 'ef'.repeat(32) }, nsSeq === null ? undefined : { nsSeq, hash: '01'.repeat(32) });
      if (!r) return false;
      t.strictSame(r.got, r.want);
      return true;
    }),
    { numRuns: 300 },
  );
});

t.test('what is not plain JSON data is not prepared (the writer chains and refuses it)', async (t) => {
  for (const [name, record] of [
    ['NaN', { ...aRecord({ n: 1 }), durationMs: NaN }],
    ['a function member', { ...aRecord({ n: 1 }), f: () => 1 }],
    ['a Date', { ...aRecord({ n: 1 }), when: new Date(0) }],
    ['a BigInt', { ...aRecord({ n: 1 }), big: 1n }],
    ['a class instance', Object.assign(new (class R {})(), aRecord({ n: 1 }))],
  ] as Array<[string, object]>) {
    t.equal(prepareChainBody(record), undefined, name);
  }
});
