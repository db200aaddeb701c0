/**
 * The RFC 8785 (JCS) bytes of `body.request.object` for the raw AdmissionReview `body`, or null when
 * the caller must compute them from the parsed object (a body simdjson refuses, no or a null
 * object, duplicate keys, keys at or above U+E000).
 */
export function canonicalObjectOfReview(body: Uint8Array): Buffer | null;
