/**
 * RFC 9162 (Certificate Transparency v2) Merkle trees over the namespace heads a checkpoint signs.
 * Pure: no fs, no net, no clock.
 *
 * - leaf hash = SHA-256(0x00 || leaf data), node hash = SHA-256(0x01 || left || right) (§2.1.1)
 * - MTH of the empty list = SHA-256("") (§2.1.1)
 * - inclusion proof = PATH(m, D[n]) (§2.1.3.1), verified with the algorithm of §2.1.3.2
 *
 * The namespace tree of a checkpoint (notes/RECORD-V2.md, refinement 1): one leaf per namespace that
 * has v2 records on that writer up to the checkpoint's size.
 *   nsKey     = SHA-256(UTF-8 namespace)                                    (32 bytes)
 *   leaf data = nsKey || SHA-256(canonical JSON {"namespace","nsHeadHash","nsSeq"})  (64 bytes)
 * and leaves are sorted by nsKey. Sorting by the key rather than the name keeps a leaf's index from
 * telling an auditor how many namespaces sort before theirs, and lets an absence proof show the two
 * neighbouring leaves as (nsKey, inner hash) — hashes only, never another namespace's name, seq or head.
 */
import { createHash } from 'node:crypto';
import { canonicalJson } from './canonical.js';

/** The head of one namespace chain on one writer: its last record's nsSeq and hash. */
export interface NamespaceHead {
  namespace: string;
  nsSeq: number;
  nsHeadHash: string;
}

/** Thrown for a head that cannot be a leaf (bad nsSeq or hash) or a duplicate namespace. */
export class MerkleInputError extends Error {
  readonly code = 'ERR_TZW_MERKLE_INPUT';
  override readonly name = 'MerkleInputError';
}

const LEAF_PREFIX = Buffer.from([0x00]);
const NODE_PREFIX = Buffer.from([0x01]);
const HASH_BYTES = 32;
const HEX_HASH = /^[0-9a-f]{64}$/;

function sha256(...parts: Buffer[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

/** RFC 9162 MTH({}): the root of a tree with no leaves. */
export const EMPTY_ROOT: Buffer = sha256();

/** The sort key of a namespace in the tree: SHA-256 of its UTF-8 name. */
export function toNamespaceKey(namespace: string): Buffer {
  return sha256(Buffer.from(namespace, 'utf8'));
}

/**
 * The leaf data of a namespace head: nsKey || SHA-256(canonical JSON
 * `{"namespace":N,"nsHeadHash":H,"nsSeq":S}`) (64 bytes). Throws MerkleInputError when nsSeq is not
 * an integer ≥ 1 or nsHeadHash is not 64 lowercase hex.
 */
export function toNamespaceLeaf(head: NamespaceHead): Buffer {
  if (typeof head.namespace !== 'string') throw new MerkleInputError('namespace head: namespace must be a string');
  if (!Number.isSafeInteger(head.nsSeq) || head.nsSeq < 1) {
    throw new MerkleInputError(`namespace head ${JSON.stringify(head.namespace)}: nsSeq must be an integer >= 1`);
  }
  if (typeof head.nsHeadHash !== 'string' || !HEX_HASH.test(head.nsHeadHash)) {
    throw new MerkleInputError(`namespace head ${JSON.stringify(head.namespace)}: nsHeadHash must be 64 lowercase hex`);
  }
  const inner = sha256(Buffer.from(canonicalJson({ namespace: head.namespace, nsHeadHash: head.nsHeadHash, nsSeq: head.nsSeq }), 'utf8'));
  return Buffer.concat([toNamespaceKey(head.namespace), inner]);
}

/** RFC 9162 leaf hash: SHA-256(0x00 || bytes). */
export function leafHash(bytes: Buffer | Uint8Array): Buffer {
  return sha256(LEAF_PREFIX, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
}

function nodeHash(left: Buffer, right: Buffer): Buffer {
  return sha256(NODE_PREFIX, left, right);
}

/** Largest power of two strictly less than n (n ≥ 2). */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function mth(hashes: Buffer[], from: number, to: number): Buffer {
  const n = to - from;
  if (n === 1) return hashes[from]!;
  const k = splitPoint(n);
  return nodeHash(mth(hashes, from, from + k), mth(hashes, from + k, to));
}

/** RFC 9162 Merkle tree hash over already-hashed leaves (in order); EMPTY_ROOT for none. */
export function merkleRoot(leafHashes: Buffer[]): Buffer {
  if (leafHashes.length === 0) return EMPTY_ROOT;
  return mth(leafHashes, 0, leafHashes.length);
}

function path(hashes: Buffer[], m: number, from: number, to: number, out: Buffer[]): void {
  const n = to - from;
  if (n <= 1) return;
  const k = splitPoint(n);
  if (m < k) {
    path(hashes, m, from, from + k, out);
    out.push(mth(hashes, from + k, to));
  } else {
    path(hashes, m - k, from + k, to, out);
    out.push(mth(hashes, from, from + k));
  }
}

/**
 * RFC 9162 §2.1.3.1 PATH(index, D[n]): the sibling hashes from the leaf up to the root.
 * Throws MerkleInputError when index is not in [0, leafHashes.length).
 */
export function inclusionProof(leafHashes: Buffer[], index: number): Buffer[] {
  if (!Number.isSafeInteger(index) || index < 0 || index >= leafHashes.length) {
    throw new MerkleInputError(`inclusion proof: index ${index} is outside a tree of size ${leafHashes.length}`);
  }
  const out: Buffer[] = [];
  path(leafHashes, index, 0, leafHashes.length, out);
  return out;
}

/**
 * RFC 9162 §2.1.3.2: true when `proof` shows `leafHash` at `index` in the tree of `size` leaves whose
 * root is `root`. Never throws: any malformed input (index ≥ size, wrong proof length, a hash that is
 * not 32 bytes) answers false. The proof does not bind `size` on its own (index 0 of 3 leaves and of
 * 4 leaves take the same steps): take `size` from the signed tree head, never from the proof.
 */
export function verifyInclusion(leafHash: Buffer, index: number, size: number, proof: Buffer[], root: Buffer): boolean {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) return false;
  if (leafHash.length !== HASH_BYTES || root.length !== HASH_BYTES || !Array.isArray(proof)) return false;
  // Numbers above 2^31 would break the bit operations below; a tree of namespaces never gets there.
  if (size > 0x7fffffff) return false;
  let fn = index;
  let sn = size - 1;
  let r = leafHash;
  for (const p of proof) {
    if (!Buffer.isBuffer(p) || p.length !== HASH_BYTES) return false;
    if (sn === 0) return false;
    if ((fn & 1) === 1 || fn === sn) {
      r = nodeHash(p, r);
      if ((fn & 1) === 0) {
        while ((fn & 1) === 0 && fn !== 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  return sn === 0 && r.equals(root);
}

/** The heads in tree order (by nsKey). Throws MerkleInputError on a duplicate namespace. */
export function toSortedHeads(heads: Iterable<NamespaceHead>): NamespaceHead[] {
  const keyed = [...heads].map((h) => ({ h, key: toNamespaceKey(String(h.namespace)) }));
  keyed.sort((a, b) => Buffer.compare(a.key, b.key));
  for (let i = 1; i < keyed.length; i++) {
    if (keyed[i - 1]!.key.equals(keyed[i]!.key)) {
      throw new MerkleInputError(`namespace heads: ${JSON.stringify(keyed[i]!.h.namespace)} appears twice`);
    }
  }
  return keyed.map((k) => k.h);
}

/**
 * What a checkpoint signs about its namespace heads: the RFC 9162 root (hex) over the leaves in tree
 * order (by nsKey), and the number of leaves. Throws MerkleInputError on a bad head or a duplicate namespace.
 */
export function toNamespaceRoot(heads: Iterable<NamespaceHead>): { nsRoot: string; nsSize: number } {
  // Each leaf's data starts with its sort key: build the leaves once and sort them by it.
  const leaves = [...heads].map((h) => ({ h, leaf: toNamespaceLeaf(h) }));
  leaves.sort((a, b) => Buffer.compare(a.leaf.subarray(0, HASH_BYTES), b.leaf.subarray(0, HASH_BYTES)));
  for (let i = 1; i < leaves.length; i++) {
    if (leaves[i - 1]!.leaf.subarray(0, HASH_BYTES).equals(leaves[i]!.leaf.subarray(0, HASH_BYTES))) {
      throw new MerkleInputError(`namespace heads: ${JSON.stringify(leaves[i]!.h.namespace)} appears twice`);
    }
  }
  return { nsRoot: merkleRoot(leaves.map((x) => leafHash(x.leaf))).toString('hex'), nsSize: leaves.length };
}

/** The inclusion proof of one namespace's head in the tree over `heads`, as a bundle carries it (hex). */
export interface NamespaceInclusion {
  head: NamespaceHead;
  index: number;
  size: number;
  proof: string[];
}

/**
 * The proof that `namespace`'s head is a leaf of the namespace tree over `heads` (what an exporter
 * puts in a bundle), or undefined when the namespace has no head there. Throws what toNamespaceRoot throws.
 */
export function toNamespaceInclusion(heads: Iterable<NamespaceHead>, namespace: string): NamespaceInclusion | undefined {
  const sorted = toSortedHeads(heads);
  const index = sorted.findIndex((h) => h.namespace === namespace);
  if (index < 0) return undefined;
  const hashes = sorted.map((h) => leafHash(toNamespaceLeaf(h)));
  const head = sorted[index]!;
  return {
    head: { namespace: head.namespace, nsSeq: head.nsSeq, nsHeadHash: head.nsHeadHash },
    index,
    size: sorted.length,
    proof: inclusionProof(hashes, index).map((b) => b.toString('hex')),
  };
}

/**
 * True when `inclusion` proves its head is leaf `index` of a tree of `nsSize` leaves with root
 * `nsRoot` (hex) — what a verifier checks against a signed checkpoint. Never throws.
 */
export function verifyNamespaceInclusion(inclusion: NamespaceInclusion, nsRoot: string, nsSize: number): boolean {
  try {
    if (inclusion.size !== nsSize || !HEX_HASH.test(nsRoot)) return false;
    if (!Array.isArray(inclusion.proof) || !inclusion.proof.every((p) => typeof p === 'string' && HEX_HASH.test(p))) return false;
    return verifyInclusion(
      leafHash(toNamespaceLeaf(inclusion.head)),
      inclusion.index,
      nsSize,
      inclusion.proof.map((p) => Buffer.from(p, 'hex')),
      Buffer.from(nsRoot, 'hex'),
    );
  } catch (err) {
    if (err instanceof MerkleInputError) return false;
    throw err;
  }
}

/** A leaf shown without its content: its index, nsKey and inner hash (hex), and its inclusion proof. */
export interface HiddenLeaf {
  index: number;
  nsKey: string;
  inner: string;
  proof: string[];
}

/**
 * Proof that a namespace has no leaf in a tree of `size` leaves: its key falls strictly between two
 * adjacent leaves (or before the first, after the last, or the tree is empty). Neighbours are shown
 * as hashes only.
 */
export interface NamespaceAbsence {
  size: number;
  left?: HiddenLeaf;
  right?: HiddenLeaf;
}

/**
 * The proof that `namespace` has no head among `heads`, or undefined when it has one.
 * Throws what toNamespaceRoot throws.
 */
export function toNamespaceAbsence(heads: Iterable<NamespaceHead>, namespace: string): NamespaceAbsence | undefined {
  const sorted = toSortedHeads(heads);
  const key = toNamespaceKey(namespace);
  const leaves = sorted.map((h) => toNamespaceLeaf(h));
  let right = 0;
  while (right < leaves.length) {
    const c = Buffer.compare(leaves[right]!.subarray(0, HASH_BYTES), key);
    if (c === 0) return undefined;
    if (c > 0) break;
    right++;
  }
  const hashes = leaves.map((l) => leafHash(l));
  const hidden = (index: number): HiddenLeaf => ({
    index,
    nsKey: leaves[index]!.subarray(0, HASH_BYTES).toString('hex'),
    inner: leaves[index]!.subarray(HASH_BYTES).toString('hex'),
    proof: inclusionProof(hashes, index).map((b) => b.toString('hex')),
  });
  return {
    size: leaves.length,
    ...(right > 0 ? { left: hidden(right - 1) } : {}),
    ...(right < leaves.length ? { right: hidden(right) } : {}),
  };
}

function verifyHidden(leaf: HiddenLeaf, nsRoot: Buffer, nsSize: number): Buffer | undefined {
  if (!HEX_HASH.test(leaf.nsKey) || !HEX_HASH.test(leaf.inner)) return undefined;
  if (!Array.isArray(leaf.proof) || !leaf.proof.every((p) => typeof p === 'string' && HEX_HASH.test(p))) return undefined;
  const key = Buffer.from(leaf.nsKey, 'hex');
  const ok = verifyInclusion(
    leafHash(Buffer.concat([key, Buffer.from(leaf.inner, 'hex')])),
    leaf.index,
    nsSize,
    leaf.proof.map((p) => Buffer.from(p, 'hex')),
    nsRoot,
  );
  return ok ? key : undefined;
}

/**
 * True when `absence` proves `namespace` has no leaf in the tree of `nsSize` leaves with root
 * `nsRoot` (hex): both neighbours are leaves of that tree, adjacent, and their keys bracket the
 * namespace's key; at the ends only one neighbour is needed; an empty tree needs none. Relies on the
 * signer having sorted the leaves by key (the writer does; the checkpoint signature vouches for it).
 * Never throws.
 */
export function verifyNamespaceAbsence(absence: NamespaceAbsence, namespace: string, nsRoot: string, nsSize: number): boolean {
  try {
    if (absence.size !== nsSize || !HEX_HASH.test(nsRoot) || !Number.isSafeInteger(nsSize) || nsSize < 0) return false;
    const root = Buffer.from(nsRoot, 'hex');
    const key = toNamespaceKey(namespace);
    if (nsSize === 0) return !absence.left && !absence.right && root.equals(EMPTY_ROOT);
    const { left, right } = absence;
    if (!left && !right) return false;
    if (left) {
      const k = verifyHidden(left, root, nsSize);
      if (!k || Buffer.compare(k, key) >= 0) return false;
      if (!right && left.index !== nsSize - 1) return false;
    }
    if (right) {
      const k = verifyHidden(right, root, nsSize);
      if (!k || Buffer.compare(k, key) <= 0) return false;
      if (!left && right.index !== 0) return false;
    }
    return !left || !right || right.index === left.index + 1;
  } catch (err) {
    if (err instanceof MerkleInputError) return false;
    throw err;
  }
}
