/**
 * canonicalJson (evidence/canonical.ts) against the `canonicalize` package, the RFC 8785 reference
 * the store was built on: equal text for random JSON with keys in any order and awkward keys
 * (integer-like, `__proto__`, `toJSON`), for odd values (undefined, symbols, Dates, sparse
 * arrays), for CanonicalText members, and for every object of the repository's corpus. The UTF-8
 * emitter behind it (canonicalUtf8) is checked byte for byte on strings of any UTF-16 code units
 * (controls, quotes, backslashes, lone and paired surrogates, long strings), keys sorted by code
 * units included; objectDigest and the chain hash equal hashes of the library's text.
 */
import t from 'tap';
import fc from 'fast-check';
import canonicalizeCjs from 'canonicalize';
import { createHash } from 'node:crypto';
import { CanonicalText, canonicalJson, canonicalUtf8 } from '../../webhook/store/evidence/canonical.js';
import { toDigestOfObject } from '../../webhook/store/evidence/object-digest.js';
import { chainNamespaceRecord, chainNamespaceRecordUtf8 } from '../../webhook/store/evidence/link.js';
import { corpusObjects } from '../corpus.js';

const canonicalize = canonicalizeCjs as unknown as (v: unknown) => string | undefined;

/** Keys that sort differently by code unit than objects enumerate them, or that mean something to JS. */
const awkwardKey = fc.constantFrom('0', '1', '9', '10', '01', '4294967295', '-1', ' ', '!', 'a', 'B', '__proto__', 'toJSON', 'constructor', '\u{1F600}', '\uFFFF', 'é', 'e\u0301');
const key = fc.oneof(fc.string(), awkwardKey);

/** JSON-ish values whose objects are built by defineProperty (so `__proto__` stays an own member) in a random key order. */
const value = fc.letrec((tie) => ({
  leaf: fc.oneof(fc.string(), fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), fc.constant(null), fc.constant(-0)),
  node: fc.oneof({ depthSize: 'small' }, tie('leaf'), tie('array'), tie('object')),
  array: fc.array(tie('node'), { maxLength: 5 }),
  object: fc.array(fc.tuple(key, tie('node')), { maxLength: 7 }).map((entries) => {
    const o: Record<string, unknown> = {};
    for (const [k, v] of entries) Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
    return o;
  }),
}));

t.test('canonicalJson equals the canonicalize package on random JSON, any key order and awkward keys', async (t) => {
  let n = 0;
  fc.assert(
    fc.property(value.node, (v) => {
      n++;
      const want = canonicalize(v);
      if (canonicalJson(v) !== want) return false;
      // The same value parsed back from canonical text (every subtree already in order).
      return want === undefined || canonicalJson(JSON.parse(want)) === want;
    }),
    { numRuns: 2000 },
  );
  t.equal(n, 2000);
});

t.test('CanonicalText members and odd values give the library text', async (t) => {
  fc.assert(
    fc.property(fc.array(fc.tuple(key, value.node), { maxLength: 8 }), fc.integer({ min: 0, max: 8 }), (entries, at) => {
      const plain: Record<string, unknown> = {};
      for (const [k, v] of entries) Object.defineProperty(plain, k, { value: v, enumerable: true, writable: true, configurable: true });
      const keys = Object.keys(plain);
      const withText: Record<string, unknown> = { ...plain };
      const k = keys[at % Math.max(keys.length, 1)];
      if (k !== undefined && k !== '__proto__') withText[k] = new CanonicalText(canonicalize(plain[k]) ?? 'null');
      return canonicalJson(withText) === canonicalize(plain);
    }),
    { numRuns: 1000 },
  );
  // eslint-disable-next-line no-sparse-arrays
  const sparse = [1, , 3];
  const odd: Array<[string, unknown]> = [
    ['undefined and symbol members left out, null in arrays', { b: undefined, a: Symbol('s'), c: [undefined, Symbol('t')] }],
    ['Date member (toJSON)', { z: 1, when: new Date(0) }],
    ['own toJSON member', { b: 1, toJSON: () => ({ x: 1 }) }],
    ['array with its own toJSON', Object.assign([1, 2], { toJSON: () => 'arr' })],
    ['sparse array', { a: sparse }],
    ['integer-like keys out of code-unit order, nested under a sorted object', { a: { 10: 'x', 9: 'y', '-': 1 } }],
    ['class instance', { a: new (class K { x = 1; })() }],
    ['null prototype', Object.assign(Object.create(null) as object, { b: 1, a: { d: 1, c: 2 } })],
    ['a string', 'x\u2028\ud800'],
    ['top-level array of unsorted objects', [{ b: 1, a: 2 }, 'x', [{ d: 1, c: 2 }]]],
  ];
  for (const [name, v] of odd) t.equal(canonicalJson(v), canonicalize(v), name);
  t.throws(() => canonicalJson({ a: [1, { b: NaN }] }), /NaN/);
  t.throws(() => canonicalJson({ b: 1, a: 10n }), /BigInt/);
});

t.test('canonicalJson equals the canonicalize package on every corpus object', async (t) => {
  const objects = corpusObjects();
  for (const { file, value } of objects) t.equal(canonicalJson(value), canonicalize(value), file);
  t.ok(objects.length > 20, `${objects.length} corpus objects`);
});

/** Any UTF-16 code unit, weighted towards the ones JSON.stringify escapes or UTF-8 encodes in several bytes. */
const codeUnit = fc.oneof(
  fc.integer({ min: 0x20, max: 0x7e }),
  fc.integer({ min: 0, max: 0x1f }),
  fc.constantFrom(0x22, 0x5c, 0x7f, 0x80, 0x7ff, 0x800, 0x2028, 0xfeff, 0xffff),
  fc.integer({ min: 0xd800, max: 0xdfff }),
  fc.integer({ min: 0, max: 0xffff }),
).map((c) => String.fromCharCode(c));
const anyString = fc.oneof(
  fc.string({ unit: codeUnit, maxLength: 12 }),
  // From 32 code units on the emitter tests the whole string natively first.
  fc.string({ unit: codeUnit, minLength: 30, maxLength: 80 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
);
const unicodeValue = fc.letrec((tie) => ({
  leaf: fc.oneof(anyString, fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), fc.constant(null)),
  node: fc.oneof({ depthSize: 'small' }, tie('leaf'), tie('array'), tie('object')),
  array: fc.array(tie('node'), { maxLength: 5 }),
  object: fc.array(fc.tuple(fc.oneof(anyString, awkwardKey), tie('node')), { maxLength: 7 }).map((entries) => {
    const o: Record<string, unknown> = {};
    for (const [k, v] of entries) Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
    return o;
  }),
}));

t.test('canonicalUtf8 writes the UTF-8 of the library text for strings of any code units; digests and chain hashes agree', async (t) => {
  const sha = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');
  fc.assert(
    fc.property(unicodeValue.node, anyString, (v, prefix) => {
      const want = canonicalize(v) as string;
      const bytes = canonicalUtf8(v, prefix);
      if (bytes === undefined || !bytes.equals(Buffer.from(prefix + want, 'utf8'))) return false;
      if (canonicalJson(v) !== want) return false;
      return v === null || toDigestOfObject(v) === sha(want);
    }),
    { numRuns: 3000 },
  );
  fc.assert(
    fc.property(fc.dictionary(fc.oneof(anyString, awkwardKey), unicodeValue.node, { maxKeys: 8 }), fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: 64, maxLength: 64 }), (record, prevHash) => {
      const head = { seq: 4, hash: prevHash };
      const link = chainNamespaceRecord(record, head, { nsSeq: 2, hash: 'c'.repeat(64) });
      const bytes = chainNamespaceRecordUtf8(record, head, { nsSeq: 2, hash: 'c'.repeat(64) });
      const want = canonicalize({ ...record, nsSeq: 3, nsPrevHash: 'c'.repeat(64), seq: 5, prevHash }) as string;
      return link.body === want && link.hash === sha(prevHash + want) && bytes.hash === link.hash && Buffer.from(bytes.body).toString('utf8') === want;
    }),
    { numRuns: 1000 },
  );
});

t.test('canonicalUtf8: large values, getters that canonicalise, odd input', async (t) => {
  const big = { z: 'x'.repeat(300_000), a: Array.from({ length: 5000 }, (_, i) => ({ b: i, a: `é${i}\u{1F600}` })) };
  const bigBytes = canonicalUtf8(big);
  t.ok(bigBytes?.equals(Buffer.from(canonicalize(big) as string, 'utf8')), 'grows past its first buffer');
  const bigCopy = Buffer.from(bigBytes!);
  t.equal(canonicalUtf8({ b: 1, a: 'é' })?.toString(), '{"a":"é","b":1}', 'a small value after a large one');
  t.ok(bigBytes?.equals(bigCopy), 'the large value\'s view is intact after the buffer was given back');
  const inner = { d: 1, c: 2 };
  const withGetter = { b: 1, get a() { return canonicalJson(inner); } };
  t.equal(canonicalJson(withGetter), canonicalize(withGetter), 'a getter that canonicalises meanwhile');
  t.equal(canonicalUtf8({ a: new Date(0) }), undefined, 'toJSON: the library path');
  t.equal(canonicalUtf8({ a: 1n }), undefined, 'bigint: the library path');
  t.equal(canonicalUtf8({ a: Infinity }), undefined, 'non-finite: the library path');
  t.equal(canonicalUtf8({ a: () => 1 }), undefined, 'function member: the library path');
  t.equal(canonicalUtf8({ b: 1, a: new CanonicalText('[1,{"x":2}]') })?.toString(), '{"a":[1,{"x":2}],"b":1}', 'CanonicalText as is');
});
