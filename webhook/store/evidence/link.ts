/**
 * One record placed on a writer's chain: the canonical body that is hashed and stored, and its
 * hash. Pure. Split from chain.ts (verification, signatures) so the writer thread loads only this.
 */
import type { ChainedRecord } from '../../core/record.js';
import { hash as digest } from 'node:crypto';
import { CANONICAL_SLOT, CanonicalText, canonicalJson, canonicalUtf8Merged, hashCanonical, sha256Hex } from './canonical.js';

export const GENESIS_HASH = '0'.repeat(64);

/** The chain hash of a record: sha256 hex of (prevHash + canonical JSON of the record without `hash`). */
export function hashRecord(prevHash: string, recordWithoutHash: Omit<ChainedRecord, 'hash'>): string {
  return sha256Hex(prevHash + canonicalJson(recordWithoutHash));
}

/** One record placed on a chain: its seq and prevHash, the canonical body that is hashed and stored, and its hash. */
export interface ChainLink {
  seq: number;
  prevHash: string;
  body: string;
  hash: string;
}

/**
 * Places `record` after `head` (the writer's last seq and hash). A record that already carries
 * chain fields (a re-import) is re-chained: its seq/prevHash are replaced and its hash is left out
 * of the hashed body. Throws what canonicalJson throws on a record that has no canonical JSON
 * (each adapter turns that into its own error).
 */
export function chainRecord(record: object, head: { seq: number; hash: string }): ChainLink {
  const seq = head.seq + 1;
  const body = canonicalJson({ ...record, seq, prevHash: head.hash, hash: undefined });
  return { seq, prevHash: head.hash, body, hash: sha256Hex(head.hash + body) };
}


/** A writer's head of one namespace chain: the last nsSeq and the hash of that record. */
export interface NamespaceChainHead {
  nsSeq: number;
  hash: string;
}

/** A v2 record placed on its writer's chain and on its namespace chain on that writer. */
export interface NamespaceLink extends ChainLink {
  nsSeq: number;
  nsPrevHash: string;
}

/**
 * Places a record in record format v2: after `head` on the writer's chain and after `nsHead` — the
 * writer's head of the record's namespace chain, undefined for its first record there (genesis) —
 * with nsSeq and nsPrevHash inside the hashed body. Every writer (SQLite, the PostgreSQL spool and
 * store) chains through this. Throws what chainRecord throws.
 */
export function chainNamespaceRecord(record: object, head: { seq: number; hash: string }, nsHead: NamespaceChainHead | undefined): NamespaceLink {
  const link = chainNamespaceRecordUtf8(record, head, nsHead);
  return { ...link, body: typeof link.body === 'string' ? link.body : link.body.toString('utf8') };
}

/**
 * chainNamespaceRecord with the body as the UTF-8 bytes that were hashed, when the record is plain
 * JSON data: a view of canonicalUtf8's buffer, valid until the next canonical call on this thread
 * (the SQLite writer compresses it at once). Otherwise the body is the string canonicalJson gives.
 */
export function chainNamespaceRecordUtf8(record: object, head: { seq: number; hash: string }, nsHead: NamespaceChainHead | undefined): Omit<NamespaceLink, 'body'> & { body: string | Buffer } {
  const nsSeq = (nsHead?.nsSeq ?? 0) + 1;
  const nsPrevHash = nsHead?.hash ?? GENESIS_HASH;
  // chainRecord({ ...record, nsSeq, nsPrevHash }, head) with one copy of the record instead of two.
  const seq = head.seq + 1;
  const chained = { ...record, nsSeq, nsPrevHash, seq, prevHash: head.hash, hash: undefined };
  // The hash covers prevHash + body: written in front of the body, hashed in one piece.
  const { hash, body } = hashCanonical(chained, head.hash);
  return { seq, prevHash: head.hash, body, hash, nsSeq, nsPrevHash };
}

/**
 * A record's canonical body made on the request side with its four chain members left open for
 * the writer thread, which alone knows them: `bytes` is the RFC 8785 form of the record with
 * nsPrevHash, nsSeq, prevHash and seq present but their values not written, and `slots` the byte
 * offsets where those four values go (in that order, which is key order). Built without a copy of
 * the record; the writer then fills the values in (chainPreparedBody) instead of walking the
 * record again, and the record crosses to the writer as these bytes rather than as an object
 * graph (a structured clone costs ~8 µs to write and ~16 µs to read back for a /validate record).
 */
export interface PreparedBody {
  bytes: Uint8Array;
  slots: number[];
}

const CHAIN_SLOTS = { nsPrevHash: CANONICAL_SLOT, nsSeq: CANONICAL_SLOT, prevHash: CANONICAL_SLOT, seq: CANONICAL_SLOT, hash: undefined };

/**
 * The prepared body of `record` (with `patch` replaced by `patchJson`, its canonical text, when
 * given), or undefined when the record is not plain JSON data: the caller then hands over the
 * record itself and the writer chains it with chainNamespaceRecordUtf8 (which rejects what has no
 * canonical form). `bytes` is a view of this thread's canonical buffer: copy it before the next
 * canonical call.
 */
export function prepareChainBody(record: object, patchJson?: string): PreparedBody | undefined {
  const extra = patchJson === undefined ? CHAIN_SLOTS : { ...CHAIN_SLOTS, patch: new CanonicalText(patchJson) };
  const out = canonicalUtf8Merged(record, extra);
  return out && out.slots.length === 4 ? { bytes: out.bytes, slots: out.slots } : undefined;
}

/** The writer thread's buffer for prevHash + body while a prepared body is completed and hashed. */
let chainBuf = Buffer.allocUnsafe(16 * 1024);

/**
 * Places a prepared body (prepareChainBody) after `head` and `nsHead`, as chainNamespaceRecordUtf8
 * places the record it came from: the same body bytes and hash. The body is a view of a buffer
 * this thread reuses, valid until the next call.
 */
export function chainPreparedBody(prepared: PreparedBody, head: { seq: number; hash: string }, nsHead: NamespaceChainHead | undefined): Omit<NamespaceLink, 'body'> & { body: Buffer } {
  const nsSeq = (nsHead?.nsSeq ?? 0) + 1;
  const nsPrevHash = nsHead?.hash ?? GENESIS_HASH;
  const seq = head.seq + 1;
  const { bytes, slots } = prepared;
  const [a = 0, b = 0, c = 0, d = 0] = slots;
  // The four values are ASCII: two quoted 64-digit hashes, two integers.
  const need = head.hash.length + bytes.length + 2 * (nsPrevHash.length + head.hash.length) + 4 + 40;
  if (need > chainBuf.length) chainBuf = Buffer.allocUnsafe(Math.max(need, chainBuf.length * 2));
  const buf = chainBuf;
  let p = buf.write(head.hash, 0, 'latin1');
  const start = p;
  const copy = (from: number, to: number): void => {
    buf.set(bytes.subarray(from, to), p);
    p += to - from;
  };
  copy(0, a);
  p += buf.write(`"${nsPrevHash}"`, p, 'latin1');
  copy(a, b);
  p += buf.write(String(nsSeq), p, 'latin1');
  copy(b, c);
  p += buf.write(`"${head.hash}"`, p, 'latin1');
  copy(c, d);
  p += buf.write(String(seq), p, 'latin1');
  copy(d, bytes.length);
  return { seq, prevHash: head.hash, body: buf.subarray(start, p), hash: digest('sha256', buf.subarray(0, p), 'hex'), nsSeq, nsPrevHash };
}
