/**
 * objectDigest (DESIGN "Decision records"): sha256 lowercase hex of the RFC 8785 canonical JSON of
 * `request.object`, so an auditor can reproduce it from any copy of the object (the audit log's
 * requestObject, a saved manifest) with `tzw decisions digest -f FILE`. Pure.
 */
import { canonicalJson, sha256Hex } from './canonical.js';

/** The digest of an object (null for null/undefined: a review without an object). Throws what canonicalJson throws. */
export function toDigestOfObject(object: unknown): string | null {
  return object === null || object === undefined ? null : sha256Hex(canonicalJson(object));
}

/**
 * The digest of `request.object` in an AdmissionReview body as received (JSON bytes): null when the
 * review has no object. Throws on bytes that are not a JSON object.
 */
export function toObjectDigest(review: Uint8Array): string | null {
  const parsed = JSON.parse(Buffer.from(review.buffer, review.byteOffset, review.byteLength).toString('utf8')) as { request?: { object?: unknown } } | null;
  return toDigestOfObject(parsed?.request?.object);
}
