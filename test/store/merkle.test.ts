import { createHash } from 'node:crypto';
import t from 'tap';
import fc from 'fast-check';
import {
  EMPTY_ROOT,
  inclusionProof,
  leafHash,
  merkleRoot,
  toNamespaceAbsence,
  toNamespaceInclusion,
  toNamespaceKey,
  toNamespaceLeaf,
  toSortedHeads,
  toNamespaceRoot,
  verifyInclusion,
  verifyNamespaceAbsence,
  verifyNamespaceInclusion,
  type NamespaceAbsence,
  type NamespaceHead,
} from '../../webhook/store/evidence/merkle.js';

const sha = (...parts: Buffer[]) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};
const hex = (s: string) => Buffer.from(s, 'hex');

// The reference tree of Certificate Transparency (transparency-dev/merkle testonly): leaf inputs,
// roots for sizes 0..8, and inclusion proofs from its reference_test.go.
const CT_LEAVES = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'].map(hex);
const CT_ROOTS = [
  'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
];
const CT_PROOFS: Array<{ index: number; size: number; proof: string[] }> = [
  { index: 0, size: 1, proof: [] },
  { index: 0, size: 2, proof: ['96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7'] },
  { index: 1, size: 2, proof: ['6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d'] },
  { index: 2, size: 3, proof: ['fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125'] },
  {
    index: 0,
    size: 8,
    proof: [
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ],
  },
  {
    index: 5,
    size: 8,
    proof: [
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  },
];

/** An independent MTH written straight from RFC 9162 §2.1.1 (recursion over slices). */
function referenceRoot(hashes: Buffer[]): Buffer {
  if (hashes.length === 0) return sha();
  if (hashes.length === 1) return hashes[0]!;
  let k = 1;
  while (k << 1 < hashes.length) k <<= 1;
  return sha(Buffer.from([1]), referenceRoot(hashes.slice(0, k)), referenceRoot(hashes.slice(k)));
}

const leavesOf = (n: number) => Array.from({ length: n }, (_, i) => leafHash(Buffer.from(`leaf-${i}`)));

t.test('roots and proofs match the Certificate Transparency reference vectors', async (t) => {
  const hashes = CT_LEAVES.map((l) => leafHash(l));
  t.equal(hashes[0]!.toString('hex'), CT_ROOTS[1], 'leaf hash is SHA-256(0x00 || data)');
  for (let n = 0; n <= 8; n++) t.equal(merkleRoot(hashes.slice(0, n)).toString('hex'), CT_ROOTS[n], `root of ${n} leaves`);
  t.equal(EMPTY_ROOT.toString('hex'), CT_ROOTS[0]);
  for (const v of CT_PROOFS) {
    const proof = inclusionProof(hashes.slice(0, v.size), v.index);
    t.strictSame(proof.map((p) => p.toString('hex')), v.proof, `PATH(${v.index}, D[${v.size}])`);
    t.ok(verifyInclusion(hashes[v.index]!, v.index, v.size, proof, hex(CT_ROOTS[v.size]!)));
  }
});

t.test('for sizes 1..64 and every index the proof verifies, and every tampering fails', async (t) => {
  let checked = 0;
  for (let n = 1; n <= 64; n++) {
    const hashes = leavesOf(n);
    const root = merkleRoot(hashes);
    t.ok(root.equals(referenceRoot(hashes)), `root of ${n} equals the RFC recursion`);
    for (let m = 0; m < n; m++) {
      const proof = inclusionProof(hashes, m);
      const ok = verifyInclusion(hashes[m]!, m, n, proof, root);
      const fails: Array<[string, boolean]> = [
        ['other leaf', verifyInclusion(leafHash(Buffer.from('other')), m, n, proof, root)],
        ['neighbour leaf', n > 1 && verifyInclusion(hashes[(m + 1) % n]!, m, n, proof, root)],
        ['index + 1', verifyInclusion(hashes[m]!, m + 1, n, proof, root)],
        ['index - 1', m > 0 && verifyInclusion(hashes[m]!, m - 1, n, proof, root)],
        // The size is not bound by the proof alone (RFC 9162: index 0 of 3 and of 4 share a path
        // and a root computation), so verifiers take it from the signed checkpoint; tested below.
        ['size too small for the index', verifyInclusion(hashes[m]!, m, m, proof, root)],
        ['other root', verifyInclusion(hashes[m]!, m, n, proof, leafHash(Buffer.from('x')))],
        ['proof truncated', proof.length > 0 && verifyInclusion(hashes[m]!, m, n, proof.slice(0, -1), root)],
        ['proof extended', verifyInclusion(hashes[m]!, m, n, [...proof, root], root)],
        ['proof node flipped', proof.length > 0 && verifyInclusion(hashes[m]!, m, n, proof.map((p, i) => (i === 0 ? flip(p) : p)), root)],
        ['proof reversed', proof.length > 1 && verifyInclusion(hashes[m]!, m, n, [...proof].reverse(), root)],
      ];
      const accepted = fails.filter(([, v]) => v).map(([name]) => name);
      if (!ok || accepted.length > 0) {
        t.fail(`n=${n} m=${m}: intact ${ok}, tampered accepted: ${accepted.join(', ')}`);
        return;
      }
      checked++;
    }
  }
  t.equal(checked, (64 * 65) / 2, 'every (size, index) pair checked');
});

function flip(b: Buffer): Buffer {
  const c = Buffer.from(b);
  c[0] = c[0]! ^ 1;
  return c;
}

t.test('malformed input: proofs refuse bad indexes, verification answers false', async (t) => {
  const hashes = leavesOf(3);
  t.throws(() => inclusionProof(hashes, 3), { code: 'ERR_TZW_MERKLE_INPUT', name: 'MerkleInputError' });
  t.throws(() => inclusionProof(hashes, -1), { code: 'ERR_TZW_MERKLE_INPUT' });
  t.throws(() => inclusionProof([], 0), { code: 'ERR_TZW_MERKLE_INPUT' });
  const root = merkleRoot(hashes);
  const proof = inclusionProof(hashes, 1);
  t.notOk(verifyInclusion(hashes[1]!, 1, 0, proof, root), 'size 0');
  t.notOk(verifyInclusion(hashes[1]!, 1.5, 3, proof, root), 'fractional index');
  t.notOk(verifyInclusion(hashes[1]!.subarray(0, 31), 1, 3, proof, root), 'short leaf hash');
  t.notOk(verifyInclusion(hashes[1]!, 1, 3, [proof[0]!.subarray(1), proof[1]!], root), 'short proof node');
  t.notOk(verifyInclusion(hashes[0]!, 0, 1, [], root), 'size 1 wants the leaf as root');
  t.ok(verifyInclusion(hashes[0]!, 0, 1, [], hashes[0]!));
});

const h = (c: string) => c.repeat(64);

t.test('namespace leaves are nsKey || sha256(canonical JSON), sorted by nsKey', async (t) => {
  const head = { namespace: 'team-a', nsSeq: 3, nsHeadHash: h('a') };
  const json = `{"namespace":"team-a","nsHeadHash":"${h('a')}","nsSeq":3}`;
  t.strictSame(toNamespaceLeaf(head), Buffer.concat([sha(Buffer.from('team-a')), sha(Buffer.from(json))]));
  t.strictSame(toNamespaceKey('team-a'), sha(Buffer.from('team-a', 'utf8')));
  t.throws(() => toNamespaceLeaf({ namespace: 'x', nsSeq: 0, nsHeadHash: h('a') }), { code: 'ERR_TZW_MERKLE_INPUT', message: /nsSeq/ });
  t.throws(() => toNamespaceLeaf({ namespace: 'x', nsSeq: 1, nsHeadHash: h('A') }), { message: /nsHeadHash/ });
  t.strictSame(toNamespaceRoot([]), { nsRoot: EMPTY_ROOT.toString('hex'), nsSize: 0 });

  const heads: NamespaceHead[] = ['\u{1F600}', 'b', '\uFFFF', '', 'a', 'team-a', 'kube-system'].map((namespace, i) => ({ namespace, nsSeq: i + 1, nsHeadHash: h(String(i)) }));
  // Independent order: by sha256(name) as hex strings (hex order = byte order).
  const order = [...heads].sort((x, y) => (sha(Buffer.from(x.namespace)).toString('hex') < sha(Buffer.from(y.namespace)).toString('hex') ? -1 : 1));
  const want = merkleRoot(order.map((x) => leafHash(toNamespaceLeaf(x)))).toString('hex');
  t.strictSame(toNamespaceRoot(heads), { nsRoot: want, nsSize: heads.length });
  t.strictSame(toNamespaceRoot([...heads].reverse()), { nsRoot: want, nsSize: heads.length }, 'input order does not matter');
  for (const [i, x] of order.entries()) t.equal(toNamespaceInclusion(heads, x.namespace)!.index, i, `${JSON.stringify(x.namespace)} at ${i}`);
  t.throws(() => toNamespaceRoot([...heads, { namespace: 'a', nsSeq: 9, nsHeadHash: h('9') }]), { message: /"a" appears twice/ });
  t.equal(toNamespaceInclusion(heads, 'absent'), undefined);
  t.equal(toNamespaceAbsence(heads, 'a'), undefined, 'no absence proof for a present namespace');
});

t.test('absence proofs: hashes only, adjacent neighbours bracketing the key', async (t) => {
  t.strictSame(toNamespaceAbsence([], 'x'), { size: 0 });
  t.ok(verifyNamespaceAbsence({ size: 0 }, 'x', EMPTY_ROOT.toString('hex'), 0), 'empty tree');
  t.notOk(verifyNamespaceAbsence({ size: 0 }, 'x', h('0'), 0), 'empty tree wants the empty root');
  fc.assert(
    fc.property(
      fc.uniqueArray(fc.string({ maxLength: 5 }), { minLength: 1, maxLength: 30 }),
      fc.string({ maxLength: 5 }),
      (names, probe) => {
        const heads = names.map((namespace, i) => ({ namespace, nsSeq: i + 1, nsHeadHash: sha(Buffer.from(namespace)).toString('hex') }));
        const { nsRoot, nsSize } = toNamespaceRoot(heads);
        const absence = toNamespaceAbsence(heads, probe);
        if (names.includes(probe)) return absence === undefined;
        if (!absence || !verifyNamespaceAbsence(absence, probe, nsRoot, nsSize)) return false;
        // Never any name, seq or head of another namespace in the proof.
        const text = JSON.stringify(absence);
        if (names.some((n) => n.length > 2 && text.includes(JSON.stringify(n)))) return false;
        // A present namespace cannot be proven absent with the same neighbours.
        for (const n of names) if (verifyNamespaceAbsence(absence, n, nsRoot, nsSize)) return false;
        const broken: NamespaceAbsence[] = [
          { ...absence, size: absence.size + 1 },
          ...(absence.left ? [{ ...absence, left: undefined }, { ...absence, left: { ...absence.left, inner: h('e') } }, { ...absence, left: { ...absence.left, index: absence.left.index - 1 } }] : []),
          ...(absence.right ? [{ ...absence, right: undefined }, { ...absence, right: { ...absence.right, nsKey: h('f') } }] : []),
          ...(absence.left && absence.right ? [{ ...absence, left: absence.right, right: absence.left }] : []),
        ];
        return broken.every((b) => !verifyNamespaceAbsence(b, probe, nsRoot, nsSize));
      },
    ),
    { numRuns: 300 },
  );
  // Leaves that are not adjacent do not prove absence even though their keys bracket the probe.
  const heads = Array.from({ length: 8 }, (_, i) => ({ namespace: `ns-${i}`, nsSeq: 1, nsHeadHash: h('1') }));
  const { nsRoot, nsSize } = toNamespaceRoot(heads);
  const probe = Array.from({ length: 100 }, (_, i) => `p-${i}`).find((p) => {
    const a = toNamespaceAbsence(heads, p)!;
    return a.left && a.right && a.left.index >= 1;
  })!;
  const a = toNamespaceAbsence(heads, probe)!;
  const further = toNamespaceAbsence(heads.filter((_, i) => i !== a.left!.index), probe);
  t.ok(verifyNamespaceAbsence(a, probe, nsRoot, nsSize));
  const skipLeft = toNamespaceInclusion(heads, toSortedHeads(heads)[a.left!.index - 1]!.namespace)!;
  const hidden = { index: skipLeft.index, nsKey: toNamespaceLeaf(skipLeft.head).subarray(0, 32).toString('hex'), inner: toNamespaceLeaf(skipLeft.head).subarray(32).toString('hex'), proof: skipLeft.proof };
  t.notOk(verifyNamespaceAbsence({ ...a, left: hidden }, probe, nsRoot, nsSize), 'a gap of one leaf is refused');
  t.ok(further, 'sanity: the probe is absent from the smaller tree too');
});

t.test('a namespace inclusion verifies against its root, and nothing else does', async (t) => {
  fc.assert(
    fc.property(
      fc.uniqueArray(fc.string({ maxLength: 6 }), { minLength: 1, maxLength: 40 }),
      fc.nat(),
      (names, pick) => {
        const heads = names.map((namespace, i) => ({ namespace, nsSeq: i + 1, nsHeadHash: sha(Buffer.from(namespace)).toString('hex') }));
        const { nsRoot, nsSize } = toNamespaceRoot(heads);
        const target = names[pick % names.length]!;
        const inc = toNamespaceInclusion(heads, target)!;
        if (!verifyNamespaceInclusion(inc, nsRoot, nsSize)) return false;
        const other = heads.find((x) => x.namespace !== target);
        const tampered = [
          { ...inc, head: { ...inc.head, nsSeq: inc.head.nsSeq + 1 } },
          { ...inc, head: { ...inc.head, nsHeadHash: h('f') } },
          { ...inc, head: { ...inc.head, namespace: `${target}x` } },
          { ...inc, size: inc.size + 1 },
          { ...inc, proof: [...inc.proof, h('0')] },
          ...(other ? [{ ...inc, head: other }] : []),
        ];
        return tampered.every((x) => !verifyNamespaceInclusion(x, nsRoot, nsSize)) && !verifyNamespaceInclusion(inc, nsRoot, nsSize + 1);
      },
    ),
    { numRuns: 200 },
  );
  const inc = toNamespaceInclusion([{ namespace: 'a', nsSeq: 1, nsHeadHash: h('a') }], 'a')!;
  t.notOk(verifyNamespaceInclusion({ ...inc, proof: ['zz'] }, toNamespaceRoot([inc.head]).nsRoot, 1), 'bad hex in proof');
  t.notOk(verifyNamespaceInclusion({ ...inc, head: { ...inc.head, nsSeq: -1 } }, toNamespaceRoot([inc.head]).nsRoot, 1), 'bad head');
  t.notOk(verifyNamespaceInclusion(inc, 'nothex', 1), 'bad root');

  // Index 0 of a 3-leaf and of a 4-leaf tree share their proof's shape; the proof's own size field
  // must equal the signed nsSize or the proof is refused.
  const four = ['a', 'b', 'c', 'd'].map((namespace) => ({ namespace, nsSeq: 1, nsHeadHash: h('1') }));
  const three = four.slice(0, 3);
  const inc3 = toNamespaceInclusion(three, 'a')!;
  const root3 = toNamespaceRoot(three).nsRoot;
  t.ok(verifyNamespaceInclusion(inc3, root3, 3));
  t.notOk(verifyNamespaceInclusion(inc3, root3, 4), 'size differs from the signed nsSize');
  t.notOk(verifyNamespaceInclusion({ ...inc3, size: 4 }, root3, 3), 'proof claims another size');
});
