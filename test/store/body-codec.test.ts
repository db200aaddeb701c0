/**
 * The stored-body codec (evidence/body-codec.ts): new bodies are codec 2 (zstd with the preset
 * dictionary), the compressor reused record after record gives the same bytes as a fresh one in
 * any order, every stored body of either codec decompresses back to the canonical text (one-shot
 * and through verification's reused decoder, with headroom), and damaged bodies are refused with
 * ERR_STORE_BODY without taking the decoder down.
 */
import t from 'tap';
import { chainRecord } from '../../webhook/store/evidence/link.js';
import { CODEC_DEFLATE_DICT_V1, CODEC_ZSTD_DICT_V2, MAX_BODY_BYTES, createBodyCompressor, createBodyDecoder, fromStoredBody, toCanonicalBytes, toStoredBody, toStoredBodyV1 } from '../../webhook/store/evidence/body-codec.js';
import { benchPodPatch, createRandom, fillRecord } from '../../bench/fixtures.js';

function bodies(n: number): string[] {
  const rnd = createRandom(11);
  const patch = benchPodPatch();
  return Array.from({ length: n }, (_, i) => chainRecord({ ...fillRecord(i, n, 'tzw-0', rnd, patch), nsSeq: 1, nsPrevHash: '0'.repeat(64) }, { seq: i, hash: '0'.repeat(64) }).body);
}

/** Text of `n` random characters from U+0020 to U+201F (not ASCII, barely compressible). */
function noise(seed: number, n: number): string {
  const rnd = createRandom(seed);
  return Array.from({ length: n }, () => String.fromCharCode(0x20 + Math.floor(rnd() * 0x2000))).join('');
}

t.test('the reused compressor equals a fresh one per body, body after body and in reverse order, text or bytes', async (t) => {
  const texts = bodies(300);
  // Not ASCII, and larger than the compressor's 64 KiB output buffer: it grows.
  texts.push(JSON.stringify({ message: `ServiceAccount ci/büild-ü has no IdentityMapping ✓ ${noise(3, 120_000)}` }), '{}');
  const forward = createBodyCompressor();
  const backward = createBodyCompressor();
  const a = texts.map((x) => forward(x));
  const b = texts.slice().reverse().map((x) => backward(Buffer.from(x, 'utf8'))).reverse();
  let same = 0;
  texts.forEach((x, i) => {
    const ref = createBodyCompressor()(x);
    if (a[i]!.equals(ref) && b[i]!.equals(ref) && fromStoredBody(a[i]!) === x) same++;
  });
  t.equal(same, texts.length, 'every body: identical bytes either way, and decompresses back to its text');
  t.ok(a.every((s) => s[0] === CODEC_ZSTD_DICT_V2), 'every new body is codec 2');
  // The dictionary at work: a typical record keeps under a fifth of its canonical bytes.
  t.ok(a[0]!.length < Buffer.byteLength(texts[0]!) / 5, `compressed (${a[0]!.length} of ${Buffer.byteLength(texts[0]!)} bytes)`);
});

t.test('toStoredBody (the shared compressor) round-trips; damaged bodies are refused with ERR_STORE_BODY', async (t) => {
  const texts = bodies(20);
  for (const x of texts) t.equal(fromStoredBody(toStoredBody(x)), x);
  const good = toStoredBody(texts[0]!);
  const cases: Array<[string, Buffer]> = [
    ['unknown codec', Buffer.from([9, 1, 2])],
    ['empty', Buffer.alloc(0)],
    ['codec 1 bytes that do not inflate', Buffer.from([CODEC_DEFLATE_DICT_V1, 0xff, 0xff, 0xff])],
    ['codec 2 bytes that are no frame', Buffer.from([CODEC_ZSTD_DICT_V2, 0xff, 0xff, 0xff])],
    ['codec 2 frame cut short', good.subarray(0, good.length - 5)],
    ['codec 2 frame with bytes after it', Buffer.concat([good, Buffer.from([1, 2, 3, 4])])],
    ['codec 2 frame with a byte changed', Buffer.concat([good.subarray(0, 40), Buffer.from([good[40]! ^ 0x55]), good.subarray(41)])],
    // Magic number, then a single-segment header with an 8-byte content size of 2^40.
    ['codec 2 frame claiming a terabyte', Buffer.from([CODEC_ZSTD_DICT_V2, 0x28, 0xb5, 0x2f, 0xfd, 0xe0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0])],
  ];
  for (const [what, bad] of cases) {
    let text: string | undefined;
    try {
      text = fromStoredBody(bad);
    } catch (err) {
      t.equal((err as { code?: string }).code, 'ERR_STORE_BODY', `${what}: ${(err as Error).message}`);
      continue;
    }
    // A changed byte may land in a literal and still decompress: then it is a different text, which the chain hash catches.
    t.not(text, texts[0], `${what}: decodes to other text than was stored`);
  }
  t.ok(MAX_BODY_BYTES < 2 ** 40);
});

t.test('the reused decoder (verification) gives the canonical bytes of either codec, with headroom, and survives bad input', async (t) => {
  const texts = bodies(200);
  // Larger than the decoder's 64 KiB buffer: it grows (codec 2) or takes the one-shot path (codec 1).
  texts.push(JSON.stringify({ message: noise(5, 100_000) }), '{}');
  // Both codecs, interleaved, as a store written across the change holds them.
  const stored = texts.map((x, i) => (i % 3 === 0 ? toStoredBodyV1(x) : toStoredBody(x)));
  const plain = createBodyDecoder();
  const roomy = createBodyDecoder(64);
  let same = 0;
  for (const [i, s] of stored.entries()) {
    const want = toCanonicalBytes(s);
    if (want.toString('utf8') !== texts[i]) t.fail(`body ${i} round-trip`);
    const a = plain(s);
    const b = roomy(s);
    if (a.equals(want) && b.equals(want) && b.byteOffset >= 64) same++;
  }
  t.equal(same, stored.length, 'every body, byte for byte');
  t.same([...new Set(stored.map((s) => s[0]))].sort(), [CODEC_DEFLATE_DICT_V1, CODEC_ZSTD_DICT_V2], 'both codecs were read');
  // Truncated, corrupted and unknown-codec bodies throw as toCanonicalBytes does; the next good body still decodes.
  for (const good of [stored[0]!, stored[1]!]) {
    for (const bad of [good.subarray(0, 20), Buffer.concat([good.subarray(0, 5), Buffer.alloc(40, 0xff)]), Buffer.from([9, 1, 2, 3])]) {
      t.throws(() => plain(bad), { code: 'ERR_STORE_BODY' });
      t.ok(plain(good).equals(toCanonicalBytes(good)), `the decoder still works after a bad body (codec ${good[0]})`);
    }
  }
});

t.test('codec 1 bodies read the same: fixed Huffman codes (2026-12-02) and dynamic codes (before)', async (t) => {
  const texts = bodies(300);
  // The first deflate block header of a codec-1 body: BFINAL=1, BTYPE=01 (fixed Huffman codes).
  const fresh = texts.slice(0, 50).map((x) => toStoredBodyV1(x));
  t.equal(fresh.filter((s) => (s[1]! & 0b111) === 0b011).length, fresh.length, 'every codec-1 body of 2026-12-02 is one final fixed-Huffman block');
  // Stored by the level-1 dynamic-Huffman encoder this store used until then (BTYPE=10), for
  // bodies(300)[0..2]: same codec byte, same dictionary, so they read back byte for byte.
  const old = [
    'Ad3YOw6AIBBF0RVhhhkZnF24BaOwAPdfGPygWIifxEQrO2Ly4BbnEF+wIMsJvhy5LChbsqiKDCsRYIQO51H3/DL9Z+qy9Wa88yATXtk4jOsVhY2XtqxNuQwy6ZlZkNFIViOHuxPWSjFmwZO3MMY7tF0j1c1vDmM+URrvRDfGt09LAwCxNJQvTbwH/0hE9NkB',
    'AdXYQQqAIBCF4RMZOY3pdIquoGPd/whhkFaUYovAlTs3T37ky+KL7FCrC74UXJb9IIwkFmZRvC6WK1x2Po1XATKYHJXCxkdbUlPqQeZyZxFkxt6PXvvAQWGtG8bgrzYLlgxrcF/PEsY0URro7UAOTaY00Wb3L8VbaTDZLJVLE9/BcyJgAmwpEdFnNw==',
    'AdXYYQrDIAyG4RM5kmnIl93GrXr/I4x01GE3LO1g0F/+EyHhRZ4hvvAlwTp8GbnsNWhEDpBSgk5MgPi3yG1yzS+vd/7ssmoNThg+4CUs76Ds1hjqL93kmJorgeMssB8UQ2oe9X9RjGp+TAY5em5RzCk6U2qSKPcy6IwPa+5MHHSG1FpnGH1o1o1oS/C9DumWcKY6NJp9Ag==',
  ].map((b) => Buffer.from(b, 'base64'));
  t.same(old.map((s) => (s[1]! >> 1) & 0b11), [2, 2, 2], 'the fixtures are dynamic-Huffman blocks');
  const inflate = createBodyDecoder(64);
  old.forEach((s, i) => {
    t.equal(fromStoredBody(s), texts[i], `old body ${i} reads as its text`);
    t.equal(inflate(s).toString('utf8'), texts[i], `old body ${i} through verify's reused decoder`);
    t.equal(inflate(fresh[i]!).toString('utf8'), texts[i], `codec-1 body ${i} through verify's reused decoder`);
  });
});
