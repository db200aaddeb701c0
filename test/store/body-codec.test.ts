/**
 * The stored-body codec (evidence/body-codec.ts): the deflater reused record after record gives the
 * same bytes as a fresh zlib stream per body, in any order, for bodies that do not fit its buffer
 * too, and every stored body inflates back to the canonical text.
 */
import t from 'tap';
import { chainRecord } from '../../webhook/store/evidence/link.js';
import { CODEC_DEFLATE_DICT_V1, createBodyDeflater, createBodyInflater, deflateBodyOnce, fromStoredBody, toCanonicalBytes, toStoredBody } from '../../webhook/store/evidence/body-codec.js';
import { benchPodPatch, createRandom, fillRecord } from '../../bench/fixtures.js';

function bodies(n: number): string[] {
  const rnd = createRandom(11);
  const patch = benchPodPatch();
  return Array.from({ length: n }, (_, i) => chainRecord({ ...fillRecord(i, n, 'tzw-0', rnd, patch), nsSeq: 1, nsPrevHash: '0'.repeat(64) }, { seq: i, hash: '0'.repeat(64) }).body);
}

const once = (text: string): Buffer => Buffer.concat([Buffer.from([CODEC_DEFLATE_DICT_V1]), deflateBodyOnce(Buffer.from(text, 'utf8'))]);

t.test('the reused deflater equals a fresh stream per body, body after body and in reverse order', async (t) => {
  const texts = bodies(300);
  // Not ASCII, and larger than the deflater's 64 KiB output buffer (incompressible): the one-shot path.
  const rnd = createRandom(3);
  const noise = Array.from({ length: 120_000 }, () => String.fromCharCode(0x20 + Math.floor(rnd() * 0x2000))).join('');
  texts.push(JSON.stringify({ message: `ServiceAccount ci/büild-ü has no IdentityMapping ✓ ${noise}` }), '{}');
  const forward = createBodyDeflater();
  const backward = createBodyDeflater();
  const a = texts.map((x) => forward(x));
  const b = texts.slice().reverse().map((x) => backward(x)).reverse();
  let same = 0;
  texts.forEach((x, i) => {
    const ref = once(x);
    if (a[i]!.equals(ref) && b[i]!.equals(ref) && fromStoredBody(a[i]!) === x) same++;
  });
  t.equal(same, texts.length, 'every body: identical bytes either way, and inflates back to its text');
  t.ok(a[0]!.length < Buffer.byteLength(texts[0]!) / 3, `compressed (${a[0]!.length} of ${Buffer.byteLength(texts[0]!)} bytes)`);
  t.equal(a[a.length - 2]![0], CODEC_DEFLATE_DICT_V1);
});

t.test('toStoredBody (the shared deflater) round-trips and refuses nothing it stored', async (t) => {
  for (const x of bodies(20)) t.equal(fromStoredBody(toStoredBody(x)), x);
  t.throws(() => fromStoredBody(Buffer.from([9, 1, 2])), { code: 'ERR_STORE_BODY' }, 'unknown codec');
  t.throws(() => fromStoredBody(Buffer.from([CODEC_DEFLATE_DICT_V1, 0xff, 0xff, 0xff])), { code: 'ERR_STORE_BODY' }, 'bytes that do not inflate');
});

t.test('the reused inflater (verification) gives the canonical bytes, with headroom, and survives bad input', async (t) => {
  const texts = bodies(200);
  const rnd = createRandom(5);
  // Larger than the inflater's 64 KiB buffer: the one-shot path, then a larger buffer.
  texts.push(JSON.stringify({ message: Array.from({ length: 100_000 }, () => String.fromCharCode(0x20 + Math.floor(rnd() * 0x2000))).join('') }), '{}');
  const stored = texts.map((x) => toStoredBody(x));
  const plain = createBodyInflater();
  const roomy = createBodyInflater(64);
  let same = 0;
  for (const [i, s] of stored.entries()) {
    const want = toCanonicalBytes(s);
    if (want.toString('utf8') !== texts[i]) t.fail(`body ${i} round-trip`);
    const a = plain(s);
    const b = roomy(s);
    if (a.equals(want) && b.equals(want) && b.byteOffset >= 64) same++;
  }
  t.equal(same, stored.length, 'every body, byte for byte');
  // Truncated, corrupted and unknown-codec bodies throw as toCanonicalBytes does; the next good body still inflates.
  const good = stored[0]!;
  for (const bad of [good.subarray(0, 20), Buffer.concat([good.subarray(0, 5), Buffer.alloc(40, 0xff)]), Buffer.from([9, 1, 2, 3])]) {
    t.throws(() => plain(bad), { code: 'ERR_STORE_BODY' });
    t.ok(plain(good).equals(toCanonicalBytes(good)), 'the inflater still works after a bad body');
  }
});

t.test('new bodies use fixed Huffman codes; bodies stored with dynamic codes (before 2026-12-02) read the same', async (t) => {
  const texts = bodies(300);
  // The first deflate block header of a new body: BFINAL=1, BTYPE=01 (fixed Huffman codes).
  const fresh = texts.slice(0, 50).map((x) => toStoredBody(x));
  t.equal(fresh.filter((s) => (s[1]! & 0b111) === 0b011).length, fresh.length, 'every new body is one final fixed-Huffman block');
  // Stored by the level-1 dynamic-Huffman encoder this store used until then (BTYPE=10), for
  // bodies(300)[0..2]: same codec byte, same dictionary, so they read back byte for byte.
  const old = [
    'Ad3YOw6AIBBF0RVhhhkZnF24BaOwAPdfGPygWIifxEQrO2Ly4BbnEF+wIMsJvhy5LChbsqiKDCsRYIQO51H3/DL9Z+qy9Wa88yATXtk4jOsVhY2XtqxNuQwy6ZlZkNFIViOHuxPWSjFmwZO3MMY7tF0j1c1vDmM+URrvRDfGt09LAwCxNJQvTbwH/0hE9NkB',
    'AdXYQQqAIBCF4RMZOY3pdIquoGPd/whhkFaUYovAlTs3T37ky+KL7FCrC74UXJb9IIwkFmZRvC6WK1x2Po1XATKYHJXCxkdbUlPqQeZyZxFkxt6PXvvAQWGtG8bgrzYLlgxrcF/PEsY0URro7UAOTaY00Wb3L8VbaTDZLJVLE9/BcyJgAmwpEdFnNw==',
    'AdXYYQrDIAyG4RM5kmnIl93GrXr/I4x01GE3LO1g0F/+EyHhRZ4hvvAlwTp8GbnsNWhEDpBSgk5MgPi3yG1yzS+vd/7ssmoNThg+4CUs76Ds1hjqL93kmJorgeMssB8UQ2oe9X9RjGp+TAY5em5RzCk6U2qSKPcy6IwPa+5MHHSG1FpnGH1o1o1oS/C9DumWcKY6NJp9Ag==',
  ].map((b) => Buffer.from(b, 'base64'));
  t.same(old.map((s) => (s[1]! >> 1) & 0b11), [2, 2, 2], 'the fixtures are dynamic-Huffman blocks');
  const inflate = createBodyInflater(64);
  old.forEach((s, i) => {
    t.equal(fromStoredBody(s), texts[i], `old body ${i} reads as its text`);
    t.equal(inflate(s).toString('utf8'), texts[i], `old body ${i} through verify's reused inflater`);
    t.equal(inflate(fresh[i]!).toString('utf8'), texts[i], `new body ${i} through verify's reused inflater`);
  });
});
