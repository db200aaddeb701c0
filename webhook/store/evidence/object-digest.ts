/**
 * objectDigest (DESIGN "Decision records"): sha256 lowercase hex of the RFC 8785 canonical JSON of
 * `request.object`, so an auditor can reproduce it from any copy of the object (the audit log's
 * requestObject, a saved manifest) with `tzw decisions digest -f FILE`. Pure.
 */
import { hash } from 'node:crypto';
import { createRequire } from 'node:module';
import type * as Jcs from '@tzw/jcs-native';
import { hashCanonical } from './canonical.js';
import { fromStoredBody } from './body-codec.js';

/**
 * The project's own addon (native/jcs): simdjson parses the raw review, C++ writes the RFC 8785 form
 * of its request.object, or null where it declines. Loaded here only; exported for the micro-benchmark.
 */
export const { canonicalObjectOfReview } = createRequire(import.meta.url)('@tzw/jcs-native') as typeof Jcs;

/** The digest of an object (null for null/undefined: a review without an object). Throws what canonicalJson throws. */
export function toDigestOfObject(object: unknown): string | null {
  return object === null || object === undefined ? null : hashCanonical(object).hash;
}

/**
 * Reviews above this size take the emitter: simdjson keeps buffers sized to the largest document
 * it has parsed (several times its size) for the life of the thread, and pods are far smaller.
 */
export const NATIVE_DIGEST_MAX_BYTES = 512 * 1024;

/**
 * toDigestOfObject(object), where `object` is request.object of the AdmissionReview whose raw
 * bytes are `body` (as received, before JSON.parse): written natively from those bytes (~20 µs
 * for the bench's 9 KB pod, against ~50 µs for the emitter on a freshly parsed object, and more
 * under load), with the same result. A body the addon leaves alone (null: see native/jcs), a
 * missing body and one above NATIVE_DIGEST_MAX_BYTES take the emitter on the parsed object.
 */
export function toDigestOfReview(body: Uint8Array | undefined, object: unknown): string | null {
  if (object === null || object === undefined) return null;
  const canonical = body === undefined || body.length > NATIVE_DIGEST_MAX_BYTES ? null : canonicalObjectOfReview(body);
  return canonical === null ? hashCanonical(object).hash : hash('sha256', canonical, 'hex');
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
