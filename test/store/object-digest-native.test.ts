/**
 * The native objectDigest path (native/jcs: simdjson + a C++ RFC 8785 writer over the raw review)
 * against the `canonicalize` package: byte for byte on every corpus object and on random JSON sent
 * as JSON.stringify would send it, awkward numbers and strings included. Where the addon declines
 * (null), toDigestOfReview falls back to the emitter on the parsed object; the cases it must
 * decline are asserted one by one, and random bytes never crash it.
 */
import t from 'tap';
import fc from 'fast-check';
import canonicalizeCjs from 'canonicalize';
import { createHash } from 'node:crypto';
import { NATIVE_DIGEST_MAX_BYTES, canonicalObjectOfReview, toDigestOfObject, toDigestOfReview } from '../../webhook/store/evidence/object-digest.js';
import { corpusObjects } from '../corpus.js';

const canonicalize = canonicalizeCjs as unknown as (v: unknown) => string | undefined;
const sha = (s: string | Buffer): string => createHash('sha256').update(s).digest('hex');

/** A review body around `objectJson` (the object's JSON text as the API server would send it). */
const review = (objectJson: string): Buffer => Buffer.from(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","object":${objectJson},"oldObject":null}}`);
const native = (objectJson: string): string | null => canonicalObjectOfReview(review(objectJson))?.toString('utf8') ?? null;

t.test('every corpus object: the addon writes the canonicalize text, and the digest matches', async (t) => {
  const objects = corpusObjects();
  for (const { file, value } of objects) {
    const body = review(JSON.stringify(value));
    const want = canonicalize(value)!;
    t.equal(canonicalObjectOfReview(body)?.toString('utf8'), want, file);
    t.equal(toDigestOfReview(body, value), sha(want), `${file}: digest`);
  }
  t.ok(objects.length > 20, `${objects.length} corpus objects`);
});

/** JSON values with awkward keys, strings of any code units, and numbers of every magnitude. */
const codeUnit = fc.oneof(
  fc.integer({ min: 0x20, max: 0x7e }),
  fc.integer({ min: 0, max: 0x1f }),
  fc.constantFrom(0x22, 0x5c, 0x7f, 0x80, 0x7ff, 0x800, 0x2028, 0xd7ff, 0xfeff, 0xffff),
  fc.integer({ min: 0, max: 0xffff }),
).map((c) => String.fromCharCode(c));
const text = fc.oneof(fc.string({ unit: codeUnit, maxLength: 12 }), fc.string({ unit: codeUnit, minLength: 7, maxLength: 40 }), fc.string({ unit: 'grapheme', maxLength: 20 }));
const awkwardKey = fc.constantFrom('0', '1', '10', '01', '-1', ' ', 'a', 'B', 'é', 'e\u0301', '\u{1F600}', '\uFFFF', '\uE000', 'z\u{10000}');
const number = fc.oneof(
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.constantFrom(0, -0, 1e21, 1e-7, 1e-6, 123e-20, 0.1, 5e-324, 1.7976931348623157e308, 2 ** 53, -(2 ** 53), 2 ** 53 + 2, 1.5e300, 100, 1e20, 123456789012345680000),
);
const value = fc.letrec((tie) => ({
  leaf: fc.oneof(text, number, fc.boolean(), fc.constant(null)),
  node: fc.oneof({ depthSize: 'small' }, tie('leaf'), tie('array'), tie('object')),
  array: fc.array(tie('node'), { maxLength: 5 }),
  object: fc.array(fc.tuple(fc.oneof(text, awkwardKey), tie('node')), { maxLength: 7 }).map((entries) => Object.fromEntries(entries)),
}));

t.test('random JSON: the addon writes the canonicalize text or declines; the digest always matches', async (t) => {
  let written = 0;
  let declined = 0;
  fc.assert(
    fc.property(value.node, (v) => {
      const json = JSON.stringify(v);
      const parsed: unknown = JSON.parse(json);
      const want = canonicalize(parsed)!;
      const got = native(json);
      if (got === null) declined++;
      else written++;
      return (got === null || got === want) && toDigestOfReview(review(json), parsed) === (parsed === null ? null : sha(want));
    }),
    { numRuns: 3000 },
  );
  // Lone surrogates, keys at or above U+E000 and null objects are all declined by design.
  t.ok(written > 1000, `the addon wrote ${written} and declined ${declined}`);
});

/** What Kubernetes objects hold: no lone surrogates, keys below U+E000, no integer text past 64 bits (simdjson refuses it). */
const plainNumber = number.filter((n) => {
  const s = JSON.stringify(n);
  return !/^-?\d+$/.test(s) || (BigInt(s) >= -(2n ** 63n) && BigInt(s) < 2n ** 64n);
});
const plainUnit = fc.oneof(fc.integer({ min: 0x20, max: 0x7e }), fc.integer({ min: 0, max: 0x1f }), fc.integer({ min: 0x80, max: 0xd7ff })).map((c) => String.fromCharCode(c));
const plainText = fc.oneof(fc.string({ unit: plainUnit, maxLength: 12 }), fc.string({ unit: plainUnit, minLength: 7, maxLength: 40 }));
const plain = fc.letrec((tie) => ({
  leaf: fc.oneof(plainText, plainNumber, fc.boolean(), fc.constant(null)),
  node: fc.oneof({ depthSize: 'small' }, tie('leaf'), tie('array'), tie('object')),
  array: fc.array(tie('node'), { maxLength: 5 }),
  object: fc.array(fc.tuple(plainText, tie('node')), { maxLength: 7 }).map((entries) => Object.fromEntries(entries)),
}));

t.test('ordinary objects (no lone surrogates, keys below U+E000, integers within 64 bits) are always written natively, as canonicalize writes them', async (t) => {
  fc.assert(
    fc.property(plain.object, fc.string({ unit: plainUnit, maxLength: 5 }), (v, emoji) => {
      const o = { ...v, [`k${emoji}`]: `\u{1F600}${emoji}` };
      return native(JSON.stringify(o)) === canonicalize(o);
    }),
    { numRuns: 3000 },
  );
  t.pass('3000 objects');
});

t.test('numbers are written as ECMAScript writes them', async (t) => {
  for (const n of [0, -0, 1, -1, 0.5, 1e21, 1e-7, 1e-6, 1.5e-7, 123e-20, 0.1, 0.000001234, 5e-324, 1.7976931348623157e308, 2 ** 53, -(2 ** 53), 1e19, 12345.678, -98765.4321e-10, 4.35, 1 / 3]) {
    t.equal(native(JSON.stringify({ n })), `{"n":${JSON.stringify(n)}}`, String(n));
  }
  // Integers beyond 2^53 as JSON.parse rounds them; written as the API server may: exponents, trailing zeros, a plus sign.
  for (const text of ['9007199254740993', '-9007199254740993', '18446744073709551615', '9223372036854775807', '-9223372036854775808', '12345678901234567890']) {
    t.equal(native(`{"n":${text}}`), `{"n":${JSON.stringify(JSON.parse(text))}}`, text);
  }
  t.equal(native('{"a":1.0,"b":1E2,"c":2.50e+1,"d":-0.0,"e":1e-07}'), '{"a":1,"b":100,"c":25,"d":0,"e":1e-7}');
});

t.test('strings: escapes in, JSON.stringify escapes out, UTF-8 as is', async (t) => {
  t.equal(native('{"s":"\\u00e9\\u0041\\/\\"\\\\\\b\\f\\n\\r\\t\\u0001\\u001f\\u007f\\ud83d\\ude00\\u2028"}'), JSON.stringify({ s: 'éA/"\\\b\f\n\r\t\u0001\u001f\u007f\u{1F600}\u2028' }));
  t.equal(native('{"s":"plain text that runs past eight bytes, twice over"}'), '{"s":"plain text that runs past eight bytes, twice over"}');
  t.equal(native(JSON.stringify({ k: 'é'.repeat(20) + '"' })), JSON.stringify({ k: 'é'.repeat(20) + '"' }));
});

t.test('declines what it cannot write exactly as JSON.parse + RFC 8785 would, and the digest still matches', async (t) => {
  const cases: Array<[string, string]> = [
    ['{"a":1,"a":2}', 'duplicate key (JSON.parse keeps the last)'],
    ['{"a":{"x":1,"y":2,"x":3}}', 'nested duplicate key'],
    ['{"s":"\\ud800"}', 'lone surrogate escape'],
    ['{"n":1e400}', 'out of range (JSON.parse: Infinity)'],
    ['{"n":100000000000000000000}', 'integer text beyond 64 bits'],
    ['{"\uE000":1,"\u{10000}":2}', 'keys where UTF-16 order differs from byte order'],
  ];
  for (const [json, why] of cases) {
    t.equal(native(json), null, why);
    let parsed: unknown;
    try {
      parsed = (JSON.parse(review(json).toString()) as { request: { object: unknown } }).request.object;
    } catch {
      continue;
    }
    let want: string | undefined;
    try {
      want = canonicalize(parsed);
    } catch {
      want = undefined;
    }
    if (want !== undefined) t.equal(toDigestOfReview(review(json), parsed), sha(want), `${why}: digest from the parsed object`);
    else t.throws(() => toDigestOfReview(review(json), parsed), `${why}: no RFC 8785 form`);
  }
  const o = { a: 1 };
  t.equal(canonicalObjectOfReview(Buffer.from('{"request":{"object":null}}')), null, 'null object');
  t.equal(canonicalObjectOfReview(Buffer.from('{"request":{}}')), null, 'no object');
  t.equal(canonicalObjectOfReview(Buffer.from('{"request":{"object":{"a":1}},"request":{"object":{"a":2}}}')), null, 'duplicate request');
  t.equal(canonicalObjectOfReview(Buffer.from('{"request":{"object":{"a":1},"object":{"a":2}}}')), null, 'duplicate object');
  t.equal(canonicalObjectOfReview(Buffer.from('\uFEFF{"request":{"object":{"b":1,"a":1}}}'))?.toString(), '{"a":1,"b":1}', 'a byte order mark is skipped, as fastify\'s parser skips it');
  t.equal(canonicalObjectOfReview(Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d])), null, 'invalid UTF-8');
  t.equal(canonicalObjectOfReview(Buffer.from('[1,2]')), null, 'not an object');
  const inside = Buffer.concat([Buffer.from('garbage{"request":'), review('{"b":[1],"a":"x"}')]).subarray(18);
  t.equal(canonicalObjectOfReview(inside)?.toString(), '{"a":"x","b":[1]}', 'a view at an offset into a larger buffer reads only its own bytes');
  t.equal(toDigestOfReview(undefined, o), toDigestOfObject(o), 'no body: the emitter');
  const big = { metadata: { annotations: { z: 'x'.repeat(NATIVE_DIGEST_MAX_BYTES), a: 'é"' } } };
  t.equal(toDigestOfReview(review(JSON.stringify(big)), big), sha(canonicalize(big)!), 'a review above the native limit: the emitter, same digest');
  t.equal(toDigestOfReview(review('{"a":1}'), null), null, 'no object, no digest');
  t.throws(() => canonicalObjectOfReview('text' as unknown as Uint8Array), /Uint8Array/, 'wrong argument type');
});

t.test('random bytes and cut-off reviews never crash it', async (t) => {
  const body = review(JSON.stringify({ metadata: { name: 'p', labels: { a: 'b' } }, spec: { containers: [{ name: 'c', env: [{ name: 'X', value: 'y' }] }] } }));
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat(body.length), (bytes, cut) => {
      const a = canonicalObjectOfReview(bytes);
      const b = canonicalObjectOfReview(body.subarray(0, cut));
      return (a === null || Buffer.isBuffer(a)) && (b === null || cut === body.length);
    }),
    { numRuns: 2000 },
  );
  t.pass('no crash');
});
