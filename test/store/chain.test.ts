import { createHash } from 'node:crypto';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import fc from 'fast-check';
import canonicalizeCjs from 'canonicalize';
import type { ChainedRecord } from '../../webhook/core/record.js';
import { canonicalJson, GENESIS_HASH, hashRecord, verifyChain, type ChainProblem } from '../../webhook/store/evidence/chain.js';
import type { Anchor, Checkpoint } from '../../webhook/store/port.js';
import { ANCHOR_TYP, CHECKPOINT_TYP, loadOrCreateSigningKey, toJwks, type SigningKey } from '../../webhook/store/evidence/signing.js';
import { aCheckpoint, anAnchor, aRecord, chainOf, WRITER } from './builders.js';

const canonicalize = canonicalizeCjs as unknown as (v: unknown) => string | undefined;

t.test('canonicalJson is the canonicalize package output, fast path or not', async (t) => {
  fc.assert(
    fc.property(fc.jsonValue(), (v) => {
      const expected = canonicalize(v);
      t.equal(canonicalJson(v), expected);
      // Already-sorted input takes the JSON.stringify fast path; it must not change the result.
      t.equal(canonicalJson(JSON.parse(expected ?? 'null')), expected);
    }),
    { numRuns: 300 },
  );
  const cases: Array<[string, unknown, string]> = [
    ['keys sorted by code unit', { b: 1, a: { d: [3, { z: 1, y: 2 }], c: null } }, '{"a":{"c":null,"d":[3,{"y":2,"z":1}]},"b":1}'],
    ['integer-like keys sort as strings', { 9: 'a', 10: 'b', x: 1 }, '{"10":"b","9":"a","x":1}'],
    ['undefined members skipped', { a: undefined, b: [undefined] }, '{"b":[null]}'],
    ['numbers in ES form', { n: 1e21, m: 0.1, z: -0 }, '{"m":0.1,"n":1e+21,"z":0}'],
    ['unicode keys by UTF-16 unit', { '\u{1F600}': 1, '\uFFFF': 2 }, '{"\u{1F600}":1,"\uFFFF":2}'],
  ];
  for (const [name, v, want] of cases) t.equal(canonicalJson(v), want, name);
  // eslint-disable-next-line no-sparse-arrays
  const sparse = [1, , 3];
  t.equal(canonicalJson({ a: sparse }), canonicalize({ a: sparse }), 'sparse arrays follow the library');
  t.throws(() => canonicalJson({ x: NaN }), /NaN/);
  t.throws(() => canonicalJson({ x: Infinity }), /Infinity/);
});

t.test('hashRecord is sha256(prevHash + canonical JSON without hash)', async (t) => {
  const [r] = chainOf([aRecord()]);
  if (!r) throw new Error('no record');
  const { hash, ...rest } = r;
  const expected = createHash('sha256').update(GENESIS_HASH + canonicalize(rest)).digest('hex');
  t.equal(hashRecord(GENESIS_HASH, rest), expected);
  t.equal(hash, expected);
  t.equal(r.prevHash, '0'.repeat(64));
});

async function keys(t: Test): Promise<{ key: SigningKey; other: SigningKey }> {
  const dir = t.testdir({});
  return {
    key: await loadOrCreateSigningKey(join(dir, 'key.pem'), { create: true }),
    other: await loadOrCreateSigningKey(join(dir, 'other.pem'), { create: true }),
  };
}

const records = (n: number, writer = WRITER) => chainOf(Array.from({ length: n }, (_, i) => aRecord({ n: i + 1, replica: writer, id: `${writer}-${i + 1}` })));

async function signedCheckpoint(key: SigningKey, payload: Omit<Checkpoint, 'jws'>): Promise<Checkpoint> {
  return { ...payload, jws: await key.sign(payload, CHECKPOINT_TYP) };
}

const bad = (kind: ChainProblem['kind'], id: string, seq: number, writer = WRITER) => ({ kind, id, writer, seq });

t.test('verifyChain: intact chains verify and report counts', async (t) => {
  const { key } = await keys(t);
  const jwks = toJwks(key.publicJwk);
  const a = records(12, 'a');
  const b = records(5, 'b');
  const cps = [await aCheckpoint(key, a, 5), await aCheckpoint(key, a, 10), await aCheckpoint(key, b, 5)];
  // Writers interleave freely; each is in seq order.
  const mixed = [a[0], b[0], a[1], b[1], b[2], ...a.slice(2), ...b.slice(3)] as ChainedRecord[];
  t.strictSame(await verifyChain(mixed, cps, jwks), { ok: true, records: 17, writers: 2, checkpoints: 3, anchors: 0, unsigned: 2, warnings: [] });
  t.strictSame(await verifyChain([], [], jwks), { ok: true, records: 0, writers: 0, checkpoints: 0, anchors: 0, unsigned: 0, warnings: [] });
  async function* asyncRecords() {
    yield* a;
  }
  t.match(await verifyChain(asyncRecords(), cps.slice(0, 2), jwks), { ok: true, records: 12 });
});

t.test('verifyChain names the first bad record or checkpoint', async (t) => {
  const { key, other } = await keys(t);
  const jwks = toJwks(key.publicJwk);
  const chain = records(12);
  const at = (seq: number) => chain[seq - 1] as ChainedRecord;
  const cp5 = await aCheckpoint(key, chain, 5);
  const cp10 = await aCheckpoint(key, chain, 10);
  const cps = [cp5, cp10];
  const without = (seq: number) => chain.filter((r) => r.seq !== seq);
  const swapped = [...chain];
  [swapped[6], swapped[7]] = [at(8), at(7)];
  const forged = { ...cp10, jws: (await aCheckpoint(other, chain, 10)).jws };
  const cases: Array<[string, ChainedRecord[], Checkpoint[], ReturnType<typeof bad>, RegExp]> = [
    ['a changed field', chain.map((r) => (r.seq === 4 ? { ...r, verdict: 'denied' as const } : r)), cps, bad('record', at(4).id, 4), /hash mismatch/],
    ['a changed nested field', chain.map((r) => (r.seq === 9 ? { ...r, user: { ...r.user, username: 'mallory' } } : r)), cps, bad('record', at(9).id, 9), /hash mismatch/],
    ['a changed hash', chain.map((r) => (r.seq === 2 ? { ...r, hash: 'f'.repeat(64) } : r)), cps, bad('record', at(2).id, 2), /hash mismatch/],
    ['a deleted record', without(6), cps, bad('record', at(7).id, 7), /seq 7 found where seq 6 was expected/],
    ['the first record deleted', without(1), cps, bad('record', at(2).id, 2), /records 1\.\.1 of this writer are missing/],
    ['two records swapped', swapped, cps, bad('record', at(8).id, 8), /seq 8 found where seq 7 was expected/],
    ['a duplicated record', [...chain.slice(0, 5), at(5), ...chain.slice(5)], cps, bad('record', at(5).id, 5), /comes after seq 5/],
    ['a record re-linked to skip one', [...chain.slice(0, 5), { ...at(7), seq: 6 }], [], bad('record', at(7).id, 6), /prevHash does not match/],
    ['a forged checkpoint (other key)', chain, [cp5, forged], bad('checkpoint', at(10).id, 10), /not trustworthy: ERR_JWKS_NO_MATCHING_KEY/],
    ['a checkpoint whose fields were edited', chain, [cp5, { ...cp10, headHash: at(9).hash }], bad('checkpoint', at(10).id, 10), /headHash differs from the signed payload/],
    ['a checkpoint with a mangled signature', chain, [{ ...cp5, jws: cp5.jws.slice(0, -4) + 'AAAA' }], bad('checkpoint', at(5).id, 5), /ERR_JWS_SIGNATURE_VERIFICATION_FAILED/],
    ['a truncated tail after a checkpoint', chain.slice(0, 8), cps, bad('record', at(8).id, 9), /chain ends at seq 8 \(record tzw-0-8\), but a signed checkpoint .* says it had 10 records/],
    ['a forged checkpoint beyond the end', chain, [{ ...(await aCheckpoint(other, chain, 20)) }], bad('checkpoint', at(12).id, 20), /not trustworthy/],
  ];
  for (const [name, input, checkpoints, want, problem] of cases) {
    const r = await verifyChain(input, checkpoints, jwks);
    t.equal(r.ok, false, name);
    if (r.ok) continue;
    const { problem: text, ...where } = r.firstBad;
    t.strictSame(where, want, name);
    t.match(text, problem, name);
  }
});

t.test('verifyChain: a rewritten chain (valid hashes) is caught by the signed checkpoint', async (t) => {
  const { key } = await keys(t);
  const original = records(10);
  const cp = await aCheckpoint(key, original, 10);
  const rewritten = chainOf(original.map(({ seq: _s, prevHash: _p, hash: _h, ...r }) => (r.id === 'tzw-0-3' ? { ...r, verdict: 'denied' as const } : r)));
  const r = await verifyChain(rewritten, [cp], toJwks(key.publicJwk));
  t.match(r, { ok: false, firstBad: { kind: 'checkpoint', id: 'tzw-0-10', seq: 10, problem: /names head hash/ } });
});

t.test('verifyChain: a checkpoint signature is not an anchor signature', async (t) => {
  const { key } = await keys(t);
  const chain = records(6);
  const rest = chain.slice(3);
  const at3 = chain[2] as ChainedRecord;
  const payload = { writer: WRITER, seq: 3, hash: at3.hash, time: '2026-01-01T00:00:09.000000Z' };
  const anchor: Anchor = { ...payload, jws: await key.sign(payload, CHECKPOINT_TYP) };
  const r = await verifyChain(rest, [], toJwks(key.publicJwk), [anchor]);
  t.match(r, { ok: false, firstBad: { kind: 'anchor', id: 'tzw-0-4', seq: 3, problem: /ERR_STATEMENT_INVALID.*typ/ } });
  const good: Anchor = { ...payload, jws: await key.sign(payload, ANCHOR_TYP) };
  t.match(await verifyChain(rest, [], toJwks(key.publicJwk), [good]), { ok: true, records: 3, anchors: 1 });
});

t.test('verifyChain: retention anchors', async (t) => {
  const { key, other } = await keys(t);
  const jwks = toJwks(key.publicJwk);
  const chain = records(10);
  const at = (seq: number) => chain[seq - 1] as ChainedRecord;
  const anchor4 = await anAnchor(key, WRITER, 4, at(4).hash);
  const cp2 = await aCheckpoint(key, chain, 2);
  const cp4 = await aCheckpoint(key, chain, 4);
  const cp8 = await aCheckpoint(key, chain, 8);
  const after4 = chain.slice(4);

  t.strictSame(await verifyChain(after4, [cp4, cp8], jwks, [anchor4]), { ok: true, records: 6, writers: 1, checkpoints: 2, anchors: 1, unsigned: 2, warnings: [] }, 'resumes at the anchor');
  t.match(await verifyChain(after4, [cp2, cp8], jwks, [anchor4]), { ok: true, checkpoints: 2 }, 'checkpoints in the pruned range are signature-checked only');
  t.match(await verifyChain(chain.slice(2), [cp8], jwks, [anchor4]), { ok: true, records: 8 }, 'a prune that stopped half way still verifies up to its anchor');
  t.match(await verifyChain([], [cp4], jwks, [anchor4]), { ok: true, records: 0, writers: 1 }, 'everything pruned');

  const cases: Array<[string, ChainedRecord[], Checkpoint[], Anchor[], ReturnType<typeof bad>, RegExp]> = [
    ['anchor deleted', after4, [cp8], [], bad('record', at(5).id, 5), /records 1\.\.4 of this writer are missing and no signed anchor/],
    ['anchor forged', after4, [cp8], [{ ...anchor4, jws: (await anAnchor(other, WRITER, 4, at(4).hash)).jws }], bad('anchor', at(5).id, 4), /not trustworthy/],
    ['anchor hash edited', after4, [cp8], [{ ...anchor4, hash: at(3).hash }], bad('anchor', at(5).id, 4), /hash differs from the signed payload/],
    ['record after the anchor deleted', chain.slice(5), [cp8], [anchor4], bad('record', at(6).id, 6), /records 1\.\.5 of this writer are missing/],
    ['half-way prune with a changed record', chain.slice(2).map((r) => (r.seq === 3 ? { ...r, namespace: 'x' } : r)), [], [anchor4], bad('record', at(3).id, 3), /hash mismatch/],
    ['half-way prune that does not reach its anchor', chain.slice(1, 3), [], [anchor4], bad('record', at(3).id, 4), /records 4\.\.4 are missing/],
    ['checkpoint at the anchor edited', after4, [{ ...(await aCheckpoint(key, chain, 4)), headHash: 'e'.repeat(64) }], [anchor4], bad('checkpoint', '', 4), /differs from the signed payload/],
    ['signed checkpoint at the anchor disagrees', after4, [await signedCheckpoint(key, { writer: WRITER, size: 4, headHash: 'e'.repeat(64), time: '2026-01-01T00:00:04.500000Z' })], [anchor4], bad('checkpoint', '', 4), /but the anchor there names/],
    ['truncated after pruning everything', [], [cp8], [anchor4], bad('record', '', 5), /chain ends at seq 4, but a signed checkpoint/],
  ];
  for (const [name, input, cps, anchors, want, problem] of cases) {
    const r = await verifyChain(input, cps, jwks, anchors);
    t.equal(r.ok, false, name);
    if (r.ok) continue;
    const { problem: text, ...where } = r.firstBad;
    t.strictSame(where, want, name);
    t.match(text, problem, name);
  }
});
