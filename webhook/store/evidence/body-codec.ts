/**
 * How a record's canonical body is stored: compressed, and given back byte for byte. The chain
 * hashes the canonical JSON text; the store keeps `[codec byte][payload]`, so verification
 * inflates and hashes the stored bytes without parsing them.
 *
 * Codec 1: deflate-raw (written with fixed Huffman codes at zlib level 3; any deflate stream
 * inflates, so bodies written before with dynamic codes at level 1 read the same) with the preset
 * dictionary DICTIONARY_V1 — canonical JSON of
 * three typical records (a patched Tekton pod with the injection patch under the default config,
 * an allowed TaskRun, a denied pod). Most of a record is key names and the injection patch, which
 * repeat in every record; the dictionary lets each record refer to them instead of carrying them.
 * A codec, once records use it, never changes: a new dictionary is a new codec byte.
 */
import { constants as zlibConst, createDeflateRaw, createInflateRaw, deflateRawSync, inflateRawSync } from 'node:zlib';

export const CODEC_DEFLATE_DICT_V1 = 1;

// Generated once (2026-12-02) from bench/fixtures.ts fillRecord + benchPodPatch; frozen.
const DICTIONARY_V1 = Buffer.from(
  "{\"dryRun\":false,\"durationMs\":0.408,\"endpoint\":\"mutate\",\"id\":\"01900000-002a-7182-85f7-3668841a002a\",\"kind\":{\"group\":\"\",\"kind\":\"Pod\",\"version\":\"v1\"},\"mapping\":null,\"mode\":\"enforce\",\"name\":\"build-094ea907-pod\",\"namespace\":\"team-0081\",\"nsPrevHash\":\"0000000000000000000000000000000000000000000000000000000000000000\",\"nsSeq\":1,\"objectDigest\":\"40de2f0d40de2f0d40de2f0d40de2f0d40de2f0d40de2f0d40de2f0d40de2f0d\",\"operation\":\"CREATE\",\"patch\":[],\"policyTags\":[],\"prevHash\":\"0000000000000000000000000000000000000000000000000000000000000000\",\"reasons\":[{\"code\":\"POD_SA_UNMAPPED\",\"message\":\"ServiceAccount team-0081/builder-17 has no IdentityMapping\"}],\"replica\":\"tzw-0\",\"requestUid\":\"fb951aad-6393-11e8-b7cc-00000000002a\",\"seq\":1,\"serviceAccounts\":[\"team-0081/builder-17\"],\"tekton\":{\"pipelineRun\":\"build-094ea907\",\"pipelineTask\":\"build\",\"task\":\"build\",\"taskRun\":\"build-094ea907-build\"},\"time\":\"2025-12-03T06:14:24.000000Z\",\"user\":{\"groups\":[\"system:serviceaccounts\",\"system:authenticated\"],\"username\":\"system:serviceaccount:tekton-pipelines:tekton-pipelines-controller\"},\"verdict\":\"denied\"}{\"dryRun\":false,\"durationMs\":1.953,\"endpoint\":\"validate\",\"id\":\"01900000-0001-7067-8c13-1ef98f490001\",\"kind\":{\"group\":\"tekton.dev\",\"kind\":\"TaskRun\",\"version\":\"v1\"},\"mapping\":{\"name\":\"team-0022-builder-6\",\"provider\":\"aws-iam\",\"subject\":\"arn:aws:iam::123456789012:role/team-0022-builder-6\"},\"mode\":\"enforce\",\"name\":\"build-08f50766\",\"namespace\":\"team-0022\",\"nsPrevHash\":\"0000000000000000000000000000000000000000000000000000000000000000\",\"nsSeq\":1,\"objectDigest\":\"16609bee16609bee16609bee16609bee16609bee16609bee16609bee16609bee\",\"operation\":\"CREATE\",\"patch\":[],\"policyTags\":[\"ci\",\"egress-restricted\"],\"prevHash\":\"0000000000000000000000000000000000000000000000000000000000000000\",\"reasons\":[],\"replica\":\"tzw-0\",\"requestUid\":\"cd0bc081-6393-11e8-b7cc-000000000001\",\"seq\":1,\"serviceAccounts\":[\"team-0022/builder-6\"],\"tekton\":{\"taskRun\":\"build-08f50766\"},\"time\":\"2025-12-02T00:43:12.000000Z\",\"user\":{\"groups\":[\"system:serviceaccounts\",\"system:authenticated\"],\"username\":\"system:serviceaccount:tekton-pipelines:tekton-pipelines-controller\"},\"verdict\":\"allowed\"}{\"dryRun\":false,\"durationMs\":0.527,\"endpoint\":\"mutate\",\"id\":\"01900000-0000-7c3a-8ff6-db663f370000\",\"kind\":{\"group\":\"\",\"kind\":\"Pod\",\"version\":\"v1\"},\"mapping\":{\"name\":\"team-0155-builder-7\",\"provider\":\"aws-iam\",\"subject\":\"arn:aws:iam::123456789012:role/team-0155-builder-7\"},\"mode\":\"enforce\",\"name\":\"build-a7e08f9f-pod\",\"namespace\":\"team-0155\",\"nsPrevHash\":\"0000000000000000000000000000000000000000000000000000000000000000\",\"nsSeq\":1,\"objectDigest\":\"826d104b826d104b826d104b826d104b826d104b826d104b826d104b826d104b\",\"operation\":\"CREATE\",\"patch\":[{\"op\":\"add\",\"path\":\"/spec/volumes/-\",\"value\":{\"name\":\"tekton-zscaler-token\",\"projected\":{\"sources\":[{\"serviceAccountToken\":{\"audience\":\"sts.amazonaws.com\",\"expirationSeconds\":600,\"path\":\"token\"}}]}}},{\"op\":\"add\",\"path\":\"/spec/containers/0/volumeMounts/-\",\"value\":{\"mountPath\":\"/var/run/secrets/tekton-zscaler.io/serviceaccount\",\"name\":\"tekton-zscaler-token\",\"readOnly\":true}},{\"op\":\"add\",\"path\":\"/spec/containers/0/env/-\",\"value\":{\"name\":\"AWS_ROLE_ARN\",\"value\":\"arn:aws:iam::100000000000:role/ci-0\"}},{\"op\":\"add\",\"path\":\"/spec/containers/0/env/-\",\"value\":{\"name\":\"AWS_WEB_IDENTITY_TOKEN_FILE\",\"value\":\"/var/run/secrets/tekton-zscaler.io/serviceaccount/token\"}},{\"op\":\"add\",\"path\":\"/spec/containers/0/env/-\",\"value\":{\"name\":\"TZW_OIDC_TOKEN_FILE\",\"value\":\"/var/run/secrets/tekton-zscaler.io/serviceaccount/token\"}},{\"op\":\"add\",\"path\":\"/spec/containers/1/volumeMounts/-\",\"value\":{\"mountPath\":\"/var/run/secrets/tekton-zscaler.io/serviceaccount\",\"name\":\"tekton-zscaler-token\",\"readOnly\":true}},{\"op\":\"add\",\"path\":\"/spec/containers/1/env/-\",\"value\":{\"name\":\"AWS_ROLE_ARN\",\"value\":\"arn:aws:iam::100000000000:role/ci-0\"}},{\"op\":\"add\",\"path\":\"/spec/containers/1/env/-\",\"value\":{\"name\":\"AWS_WEB_IDENTITY_TOKEN_FILE\",\"value\":\"/var/run/secrets/tekton-zscaler.io/serviceaccount/token\"}},{\"op\":\"add\",\"path\":\"/spec/containers/1/env/-\",\"value\":{\"name\":\"TZW_OIDC_TOKEN_FILE\",\"value\":\"/var/run/secrets/tekton-zscaler.io/serviceaccount/token\"}},{\"op\":\"add\",\"path\":\"/spec/containers/2/volumeMounts/-\",\"value\":{\"mountPath\":\"/var/run/secrets/tekton-zscaler.io/serviceaccount\",\"name\":\"tekton-zscaler-token\",\"readOnly\":true}},{\"op\":\"add\",\"path\":\"/spec/containers/2/env/-\",\"value\":{\"name\":\"AWS_ROLE_ARN\",\"value\":\"arn:aws:iam::100000000000:role/ci-0\"}},{\"op\":\"add\",\"path\":\"/spec/containers/2/env/-\",\"value\":{\"name\":\"AWS_WEB_IDENTITY_TOKEN_FILE\",\"value\":\"/var/run/secrets/tekton-zscaler.io/serviceaccount/token\"}},{\"op\":\"add\",\"path\":\"/spec/containers/2/env/-\",\"value\":{\"name\":\"TZW_OIDC_TOKEN_FILE\",\"value\":\"/var/run/secrets/tekton-zscaler.io/serviceaccount/token\"}},{\"op\":\"add\",\"path\":\"/spec/initContainers/0\",\"value\":{\"args\":[\"--mode=tunnel\",\"--health-port=15021\"],\"env\":[{\"name\":\"TZW_OIDC_TOKEN_FILE\",\"value\":\"/var/run/secrets/tekton-zscaler.io/serviceaccount/token\"}],\"image\":\"zscaler/zpa-connector-tunnel:1.0.0\",\"name\":\"zscaler-tunnel\",\"resources\":{\"limits\":{\"memory\":\"128Mi\"},\"requests\":{\"cpu\":\"10m\",\"memory\":\"32Mi\"}},\"restartPolicy\":\"Always\",\"securityContext\":{\"allowPrivilegeEscalation\":false,\"capabilities\":{\"drop\":[\"ALL\"]},\"readOnlyRootFilesystem\":true,\"runAsNonRoot\":true,\"runAsUser\":65532,\"seccompProfile\":{\"type\":\"RuntimeDefault\"}},\"startupProbe\":{\"failureThreshold\":30,\"httpGet\":{\"path\":\"/ready\",\"port\":15021},\"periodSeconds\":1},\"volumeMounts\":[{\"mountPath\":\"/var/run/secrets/tekton-zscaler.io/serviceaccount\",\"name\":\"tekton-zscaler-token\",\"readOnly\":true}]}},{\"op\":\"add\",\"path\":\"/metadata/annotations/tekton-zscaler.io~1policy-tags\",\"value\":\"build,ci,egress-restricted,team-0\"},{\"op\":\"add\",\"path\":\"/metadata/annotations/tekton-zscaler.io~1provider\",\"value\":\"aws-iam\"},{\"op\":\"add\",\"path\":\"/metadata/annotations/tekton-zscaler.io~1identity-mapping\",\"value\":\"bench-0\"},{\"op\":\"add\",\"path\":\"/metadata/annotations/tekton-zscaler.io~1decision-id\",\"value\":\"01900000-0000-7000-8000-000000000000\"},{\"op\":\"add\",\"path\":\"/metadata/annotations/tekton-zscaler.io~1status\",\"value\":\"injected\"}],\"policyTags\":[\"ci\",\"egress-restricted\"],\"prevHash\":\"0000000000000000000000000000000000000000000000000000000000000000\",\"reasons\":[],\"replica\":\"tzw-0\",\"requestUid\":\"8ca71e77-6393-11e8-b7cc-000000000000\",\"seq\":1,\"serviceAccounts\":[\"team-0155/builder-7\"],\"tekton\":{\"pipelineRun\":\"build-a7e08f9f\",\"pipelineTask\":\"build\",\"task\":\"build\",\"taskRun\":\"build-a7e08f9f-build\"},\"time\":\"2025-12-02T00:00:00.000000Z\",\"user\":{\"groups\":[\"system:serviceaccounts\",\"system:authenticated\"],\"username\":\"system:serviceaccount:tekton-pipelines:tekton-pipelines-controller\"},\"verdict\":\"patched\"}",
  'utf8',
);

/**
 * How new bodies are deflated: fixed Huffman codes (Z_FIXED) at level 3. A body is mostly matches
 * into the dictionary, so per-body Huffman tables buy few bytes, and building them is what an
 * inflate of a dynamic block spends half its time on (verify reads every body). Measured on 20,000
 * bodies of the bench's 1M store: dynamic at level 1 (before 2026-12-02 s6) 297 bytes, inflate
 * 3.9 µs, deflate 19 µs; fixed at level 3 335 bytes, deflate 17 µs (fixed codes inflate in 1.3 µs
 * at level 6 and 1.6 at level 1; level 6 would save 16 bytes for 6 µs more deflate per record).
 */
const DEFLATE_OPTIONS = { level: 3, strategy: zlibConst.Z_FIXED } as const;

/** The part of a node:zlib stream's native handle that the reused deflater and inflater drive. */
interface DeflateHandle {
  reset(): void;
  writeSync(flush: number, input: Uint8Array, inOff: number, inLen: number, out: Uint8Array, outOff: number, outLen: number): void;
  onerror: (...args: unknown[]) => void;
}

/**
 * The native handle and write state of a new node:zlib stream, for the reused deflater and
 * inflater below; both undefined when this Node's internals do not look as expected (the callers
 * then use the one-shot API). `onError` is called by the handle on a zlib error.
 */
function openZlibHandle(create: () => unknown, onError: () => void): { handle?: DeflateHandle; state?: Uint32Array } {
  try {
    const stream = create() as { _handle?: DeflateHandle; _writeState?: Uint32Array };
    const h = stream._handle;
    if (h && typeof h.reset === 'function' && typeof h.writeSync === 'function' && stream._writeState instanceof Uint32Array) {
      h.onerror = onError;
      return { handle: h, state: stream._writeState };
    }
  } catch {
    // fall through: no reusable handle
  }
  return {};
}

/** One-shot deflate (a new zlib stream per call): the reference the reused deflater must equal. */
export function deflateBodyOnce(input: Uint8Array): Buffer {
  return deflateRawSync(input, { dictionary: DICTIONARY_V1, ...DEFLATE_OPTIONS });
}

/**
 * A deflater reused body after body: node:zlib's sync API builds a stream per call (a Transform,
 * ~256 KiB of zlib state, then the 7 KiB dictionary hashed in), which was ~30% of the writer's
 * compression cost and churned the writer thread's malloc arena. node:zlib has no public sync
 * reset, so this drives the stream's native handle as zlib.js's own sync path does and resets it
 * between bodies (a reset re-applies the dictionary). Byte-identical to deflateBodyOnce (test
 * store/body-codec.test.ts); on any surprise (another Node's internals, an error, output that does
 * not fit) it uses deflateBodyOnce for that body. The returned bytes are `[codec][payload]`.
 */
export function createBodyDeflater(): (canonical: string | Uint8Array) => Buffer {
  let input = Buffer.allocUnsafe(16 * 1024);
  const out = Buffer.allocUnsafe(64 * 1024);
  let handle: DeflateHandle | undefined;
  let state: Uint32Array | undefined;
  let failed = false;
  const open = (): void => {
    ({ handle, state } = openZlibHandle(() => createDeflateRaw({ dictionary: DICTIONARY_V1, ...DEFLATE_OPTIONS }), () => {
      failed = true;
    }));
  };
  const once = (bytes: Uint8Array): Buffer => {
    const payload = deflateBodyOnce(bytes);
    const stored = Buffer.allocUnsafe(payload.length + 1);
    stored[0] = CODEC_DEFLATE_DICT_V1;
    payload.copy(stored, 1);
    return stored;
  };
  open();
  return (canonical) => {
    let bytes: Uint8Array;
    if (typeof canonical === 'string') {
      const max = canonical.length * 3;
      if (max > input.length) input = Buffer.allocUnsafe(Math.max(max, input.length * 2));
      bytes = input.subarray(0, input.write(canonical, 0, 'utf8'));
    } else bytes = canonical;
    if (!handle || !state) return once(bytes);
    failed = false;
    // The codec byte first, the payload after it: one copy out at the end.
    out[0] = CODEC_DEFLATE_DICT_V1;
    try {
      handle.writeSync(zlibConst.Z_FINISH, bytes, 0, bytes.length, out, 1, out.length - 1);
    } catch {
      failed = true;
    }
    if (failed) {
      // After an error node's handle refuses further writes: never touch it again.
      open();
      return once(bytes);
    }
    // Z_FINISH with output space left means the stream ended; no space left, it did not fit.
    const availOut = state[0] ?? 0;
    const availIn = state[1] ?? 1;
    const payloadEnd = out.length - availOut;
    try {
      handle.reset();
    } catch {
      open();
    }
    if (availIn !== 0 || availOut === 0) return once(bytes);
    return Buffer.from(out.subarray(0, payloadEnd));
  };
}

let deflater: ((canonical: string | Uint8Array) => Buffer) | undefined;

/** The stored bytes of a canonical body, given as text or as its UTF-8 bytes (one reused deflater per thread). */
export function toStoredBody(canonical: string | Uint8Array): Buffer {
  deflater ??= createBodyDeflater();
  return deflater(canonical);
}

/** The canonical body from stored bytes. Throws (ERR_STORE_BODY) on an unknown codec or bytes that do not inflate. */
export function fromStoredBody(stored: Uint8Array): string {
  if (stored[0] !== CODEC_DEFLATE_DICT_V1) throw Object.assign(new Error(`stored body has unknown codec ${stored[0]}`), { code: 'ERR_STORE_BODY' });
  try {
    return inflateRawSync(stored.subarray(1), { dictionary: DICTIONARY_V1 }).toString('utf8');
  } catch (err) {
    throw Object.assign(new Error(`stored body does not inflate: ${(err as Error).message}`), { code: 'ERR_STORE_BODY' });
  }
}

/**
 * The canonical body's UTF-8 bytes from stored bytes, not decoded into a string (verification
 * hashes these). Throws like fromStoredBody.
 */
export function toCanonicalBytes(stored: Uint8Array): Buffer {
  if (stored[0] !== CODEC_DEFLATE_DICT_V1) throw Object.assign(new Error(`stored body has unknown codec ${stored[0]}`), { code: 'ERR_STORE_BODY' });
  try {
    return inflateRawSync(stored.subarray(1), { dictionary: DICTIONARY_V1 });
  } catch (err) {
    throw Object.assign(new Error(`stored body does not inflate: ${(err as Error).message}`), { code: 'ERR_STORE_BODY' });
  }
}


/**
 * A reusable inflater for stored bodies, for verification of many records: the same bytes as
 * toCanonicalBytes, ~4x cheaper per record, because one zlib stream (its 32 KiB window and the
 * dictionary) is reset per body instead of created (node:zlib's sync API always creates one).
 * node:zlib offers no public synchronous reset-and-reuse, so this drives the stream's native
 * handle as zlib.js's own sync path does; whenever that is not possible (another Node version,
 * an error, output larger than the buffer) it falls back to toCanonicalBytes. The returned Buffer
 * is only valid until the next call; it starts `headroom` bytes into a buffer the caller may write
 * (e.g. a prefix to hash with the body: `result.buffer` from `result.byteOffset - headroom`).
 * Throws like toCanonicalBytes.
 */
export function createBodyInflater(headroom = 0): (stored: Uint8Array) => Buffer {
  let out = Buffer.allocUnsafe(64 * 1024);
  let handle: DeflateHandle | undefined;
  let state: Uint32Array | undefined;
  let failed = false;
  const open = (): void => {
    ({ handle, state } = openZlibHandle(() => createInflateRaw({ dictionary: DICTIONARY_V1 }), () => {
      failed = true;
    }));
  };
  open();
  return (stored) => {
    if (!handle || !state || stored[0] !== CODEC_DEFLATE_DICT_V1) return toCanonicalBytes(stored);
    failed = false;
    try {
      handle.reset();
      handle.writeSync(zlibConst.Z_FINISH, stored, 1, stored.length - 1, out, headroom, out.length - headroom);
    } catch {
      failed = true;
    }
    const availOut = state[0] ?? 0;
    const availIn = state[1] ?? 1;
    if (failed || availIn !== 0 || availOut === 0) {
      // An error, or more output than fits: a fresh stream next time, and the one-shot path now.
      if (failed) open();
      else if (availOut === 0) out = Buffer.allocUnsafe(out.length * 2);
      const bytes = toCanonicalBytes(stored);
      if (headroom === 0) return bytes;
      const copy = Buffer.allocUnsafe(headroom + bytes.length);
      bytes.copy(copy, headroom);
      return copy.subarray(headroom);
    }
    return out.subarray(headroom, out.length - availOut);
  };
}
