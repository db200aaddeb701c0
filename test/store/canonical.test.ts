/**
 * canonicalJson (evidence/canonical.ts) against the `canonicalize` package, the RFC 8785 reference
 * the store was built on: equal text for random JSON with keys in any order and awkward keys
 * (integer-like, `__proto__`, `toJSON`), for odd values (undefined, symbols, Dates, sparse
 * arrays), for CanonicalText members, and for every object of the repository's corpus.
 */
import t from 'tap';
import fc from 'fast-check';
import canonicalizeCjs from 'canonicalize';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { CanonicalText, canonicalJson } from '../../webhook/store/evidence/canonical.js';
import { CORPUS_DIR } from '../corpus.js';

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
  const files: string[] = [];
  const walk = (dir: string): void => {
    for (const f of readdirSync(dir)) {
      const p = join(dir, f);
      if (statSync(p).isDirectory()) walk(p);
      else if (/\.(ya?ml|json)$/.test(f)) files.push(p);
    }
  };
  walk(CORPUS_DIR);
  let objects = 0;
  for (const file of files) {
    for (const doc of parseAllDocuments(readFileSync(file, 'utf8'))) {
      const v: unknown = doc.toJS();
      if (v === null || typeof v !== 'object') continue;
      objects++;
      t.equal(canonicalJson(v), canonicalize(v), file);
    }
  }
  t.ok(objects > 20, `${objects} corpus objects`);
});
