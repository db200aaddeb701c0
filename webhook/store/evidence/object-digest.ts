/**
 * objectDigest (DESIGN "Decision records"): sha256 lowercase hex of the RFC 8785 canonical JSON of
 * `request.object`, so an auditor can reproduce it from any copy of the object (the audit log's
 * requestObject, a saved manifest) with `tzw decisions digest -f FILE`. Pure.
 */
import { hashCanonical } from './canonical.js';
import { fromStoredBody } from './body-codec.js';

/** The digest of an object (null for null/undefined: a review without an object). Throws what canonicalJson throws. */
export function toDigestOfObject(object: unknown): string | null {
  return object === null || object === undefined ? null : hashCanonical(object).hash;
}

const DIGEST_HEX = /^[0-9a-f]{64}$/;

/**
 * The 32 bytes the stores index a record's objectDigest as (the `object_digest` column the
 * `objectDigest` filter compares), or null when it is not a sha256 hex digest (null, or a record
 * from elsewhere). Verification derives it again from the record and compares.
 */
export function toDigestBytes(digest: unknown): Buffer | null {
  return typeof digest === 'string' && DIGEST_HEX.test(digest) ? Buffer.from(digest, 'hex') : null;
}

/**
 * The object_digest bytes of a v2 row, whose objectDigest sits inside its compressed body (a
 * migration's backfill reads each once); null for an unreadable body (verify reports that row).
 */
export function toDigestBytesOfStoredBody(body: Uint8Array): Buffer | null {
  try {
    return toDigestBytes((JSON.parse(fromStoredBody(body)) as { objectDigest?: unknown }).objectDigest);
  } catch {
    return null;
  }
}
