/**
 * RFC 9162 (Certificate Transparency v2) Merkle trees over the namespace heads a checkpoint signs.
 * Pure: no fs, no net, no clock.
 *
 * - leaf hash = SHA-256(0x00 || leaf bytes), node hash = SHA-256(0x01 || left || right) (§2.1.1)
 * - MTH of the empty list = SHA-256("") (§2.1.1)
 * - inclusion proof = PATH(m, D[n]) (§2.1.3.1), verified with the algorithm of §2.1.3.2
 *
 * The namespace tree of a checkpoint: one leaf per namespace that has v2 records on that writer up to
 * the checkpoint's size, leaf bytes = RFC 8785 canonical JSON `{"namespace","nsHeadHash","nsSeq"}`,
 * leaves sorted by namespace (UTF-8 byte order, Buffer.compare). See ../../../notes/RECORD-V2.md.
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

/**
 * The leaf bytes of a namespace head: canonical JSON `{"namespace":N,"nsHeadHash":H,"nsSeq":S}`.
 * Throws MerkleInputError when nsSeq is not an integer ≥ 1 or nsHeadHash is not 64 lowercase hex.
 */
export function toNamespaceLeaf(head: NamespaceHead): Buffer {
  if (typeof head.namespace !== 'string') throw new MerkleInputError('namespace head: namespace must be a string');
  if (!Number.isSafeInteger(head.nsSeq) || head.nsSeq < 1) {
    throw new MerkleInputError(`namespace head ${JSON.stringify(head.namespace)}: nsSeq must be an integer >= 1`);
  }
  if (typeof head.nsHeadHash !== 'string' || !HEX_HASH.test(head.nsHeadHash)) {
    throw new MerkleInputError(`namespace head ${JSON.stringify(head.namespace)}: nsHeadHash must be 64 lowercase hex`);
  }
  return Buffer.from(canonicalJson({ namespace: head.namespace, nsHeadHash: head.nsHeadHash, nsSeq: head.nsSeq }), 'utf8');
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

/** The heads sorted by namespace (UTF-8 byte order). Throws MerkleInputError on a duplicate namespace. */
export function toSortedHeads(heads: Iterable<NamespaceHead>): NamespaceHead[] {
  const keyed = [...heads].map((h) => ({ h, key: Buffer.from(String(h.namespace), 'utf8') }));
  keyed.sort((a, b) => Buffer.compare(a.key, b.key));
  for (let i = 1; i < keyed.length; i++) {
    if (keyed[i - 1]!.key.equals(keyed[i]!.key)) {
      throw new MerkleInputError(`namespace heads: ${JSON.stringify(keyed[i]!.h.namespace)} appears twice`);
    }
  }
  return keyed.map((k) => k.h);
}

/**
 * What a checkpoint signs about its namespace heads: the RFC 9162 root (hex) over the leaves sorted by
 * namespace, and the number of leaves. Throws MerkleInputError on a bad head or a duplicate namespace.
 */
export function toNamespaceRoot(heads: Iterable<NamespaceHead>): { nsRoot: string; nsSize: number } {
  const sorted = toSortedHeads(heads);
  return { nsRoot: merkleRoot(sorted.map((h) => leafHash(toNamespaceLeaf(h)))).toString('hex'), nsSize: sorted.length };
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
