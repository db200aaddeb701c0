/**
 * One record placed on a writer's chain: the canonical body that is hashed and stored, and its
 * hash. Pure. Split from chain.ts (verification, signatures) so the writer thread loads only this.
 */
import type { ChainedRecord } from '../../core/record.js';
import { canonicalJson, hashCanonical, sha256Hex } from './canonical.js';

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
