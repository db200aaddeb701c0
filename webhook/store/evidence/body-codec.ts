/**
 * How a record's canonical body is stored: compressed, and given back byte for byte. The chain
 * hashes the canonical JSON text; the store keeps `[codec byte][payload]`, so verification
 * decompresses and hashes the stored bytes without parsing them.
 *
 * Both codecs use the preset dictionary DICTIONARY_V1 — canonical JSON of three typical records (a
 * patched Tekton pod with the injection patch under the default config, an allowed TaskRun, a
 * denied pod). Most of a record is key names and the injection patch, which repeat in every record;
 * the dictionary lets each record refer to them instead of carrying them. A codec, once records
 * use it, never changes: a new dictionary or algorithm is a new codec byte, and every codec ever
 * written stays readable.
 *
 * Codec 2 (written since 2026-12-03): one Zstandard frame (RFC 8878; level 3, content size in the
 * frame header, no checksum: the chain hash covers the bytes) with DICTIONARY_V1 as a raw-content
 * dictionary. The dictionary is digested once per thread (a CDict/DDict); zlib, by contrast,
 * re-hashes its 6.6 KB preset dictionary into every new deflate, which made that a fixed ~16 µs
 * per body. Measured on 2,000 bodies of the bench's 1M store (3,000 bytes each): codec 1 17.1 µs
 * and 334 bytes, codec 2 5.8 µs and 237 bytes; decompression 1.3 µs (codec 1, reused inflater)
 * vs 2.3 µs (codec 2, reused context).
 *
 * Codec 1 (written until 2026-12-03): deflate-raw with the same dictionary (fixed Huffman codes at
 * zlib level 3 from 2026-12-02, dynamic codes at level 1 before; any deflate stream inflates).
 */
import { createRequire } from 'node:module';
import { constants as zlibConst, createInflateRaw, deflateRawSync, inflateRawSync } from 'node:zlib';
import type * as Zstd from 'zstd-napi/binding.js';

// The package's low-level binding (a CommonJS native addon): CDict/DDict, which its high-level API
// does not expose.
const zstd = createRequire(import.meta.url)('zstd-napi/binding.js') as typeof Zstd;

export const CODEC_DEFLATE_DICT_V1 = 1;
export const CODEC_ZSTD_DICT_V2 = 2;

// Generated once (2026-12-02) from bench/fixtures.ts fillRecord + benchPodPatch; frozen.
const DICTIONARY_V1 = Buffer.from(
  "{\"dryRun\":false,\"durationMs\":0.408,\"endpoint\":\"mutate\",\"id\":\"01900000-002a-7182-85f7-3668841a002a\",\"kind\":{\"group\":\"\",\"kind\":\"Pod\",\"version\":\"v1\"},\"mapping\":null,\"mode\":\"enforce\",\"name\":\"build-094ea907-pod\",\"namespace\":\"team-0081\",\"nsPrevHash\":\"0000000000000000000000000000000000000000000000000000000000000000\",\"nsSeq\":1,\"objectDigest\":\"40de2f0d40de2f0d40de2f0d40de2f0d40de2f0d40de2f0d40de2f0d40de2f0d\",\"operation\":\"CREATE\",\"patch\":[],\"policyTags\":[],\"prevHash\":\"0000000000000000000000000000000000000000000000000000000000000000\",\"reasons\":[{\"code\":\"POD_SA_UNMAPPED\",\"message\":\"ServiceAccount team-0081/builder-17 has no IdentityMapping\"}],\"replica\":\"tzw-0\",\"requestUid\":\"fb951aad-6393-11e8-b7cc-00000000002a\",\"seq\":1,\"serviceAccounts\":[\"team-0081/builder-17\"],\"tekton\":{\"pipelineRun\":\"build-094ea907\",\"pipelineTask\":\"build\",\"task\":\"build\",\"taskRun\":\"build-094ea907-build\"},\"time\":\"2025-12-03T06:14:24.000000Z\",\"user\":{\"groups\":[\"system:serviceaccounts\",\"system:authenticated\"],\"username\":\"system:serviceaccount:tekton-pipelines:tekton-pipelines-controller\"},\"verdict\":\"denied\"}{\"dryRun\":false,\"durationMs\":1.953,\"endpoint\":\"validate\",\"id\":\"01900000-0001-7067-8c13-1ef98f490001\",\"kind\":{\"group\":\"tekton.dev\",\"kind\":\"TaskRun\",\"version\":\"v1\"},\"mapping\":{\"name\":\"team-0022-builder-6\",\"provider\":\"aws-iam\",\"subject\":\"arn:aws:iam::123456789012:role/team-0022-builder-6\"},\"mode\":\"enforce\",\"name\":\"build-08f50766\",\"namespace\":\"team-0022\",\"nsPrevHash\":\"0000000000000000000000000000000000000000000000000000000000000000\",\"nsSeq\":1,\"objectDigest\":\"16609bee16609bee16609bee16609bee16609bee16609bee16609bee16609bee\",\"operation\":\"CREATE\",\"patch\":[],\"policyTags\":[\"ci\",\"egress-restricted\"],\"prevHash\":\"0000000000000000000000000000000000000000000000000000000000000000\",\"reasons\":[],\"replica\":\"tzw-0\",\"requestUid\":\"cd0bc081-6393-11e8-b7cc-000000000001\",\"seq\":1,\"serviceAccounts\":[\"team-0022/builder-6\"],\"tekton\":{\"taskRun\":\"build-08f50766\"},\"time\":\"2025-12-02T00:43:12.000000Z\",\"user\":{\"groups\":[\"system:serviceaccounts\",\"system:authenticated\"],\"username\":\"system:serviceaccount:tekton-pipelines:tekton-pipelines-controller\"},\"verdict\":\"allowed\"}{\"dryRun\":false,\"durationMs\":0.527,\"endpoint\":\"mutate\",\"id\":\"01900000-0000-7c3a-8ff6-db663f370000\",\"kind\":{\"group\":\"\",\"kind\":\"Pod\",\"version\":\"v1\"},\"mapping\":{\"name\":\"team-0155-builder-7\",\"provider\":\"aws-iam\",\"subject\":\"arn:aws:iam::123456789012:role/team-0155-builder-7\"},\"mode\":\"enforce\",\"name\":\"build-a7e08f9f-pod\",\"namespace\":\"team-0155\",\"nsPrevHash\":\"0000000000000000000000000000000000000000000000000000000000000000\",\"nsSeq\":1,\"objectDigest\":\"826d104b826d104b826d104b826d104b826d104b826d104b826d104b826d104b\",\"operation\":\"CREATE\",\"patch\":[{\"op\":\"add\",\"path\":\"/spec/volumes/-\",\"value\":{\"name\":\"tekton-zscaler-token\",\"projected\":{\"sources\":[{\"serviceAccountToken\":{\"audience\":\"sts.amazonaws.com\",\"expirationSeconds\":600,\"path\":\"token\"}}]}}},{\"op\":\"add\",\"path\":\"/spec/containers/0/volumeMounts/-\",\"value\":{\"mountPath\":\"/var/run/secrets/tekton-zscaler.io/serviceaccount\",\"name\":\"tekton-zscaler-token\",\"readOnly\":true}},{\"op\":\"add\",\"path\":\"/spec/containers/0/env/-\",\"value\":{\"name\":\"AWS_ROLE_ARN\",\"value\":\"arn:aws:iam::100000000000:role/ci-0\"}},{\"op\":\"add\",\"path\":\"/spec/containers/0/env/-\",\"value\":{\"name\":\"AWS_WEB_IDENTITY_TOKEN_FILE\",\"value\":\"/var/run/secrets/tekton-zscaler.io/serviceaccount/token\"}},{\"op\":\"add\",\"path\":\"/spec/containers/0/env/-\",\"value\":{\"name\":\"TZW_OIDC_TOKEN_FILE\",\"value\":\"/var/run/secrets/tekton-zscaler.io/serviceaccount/token\"}},{\"op\":\"add\",\"path\":\"/spec/containers/1/volumeMounts/-\",\"value\":{\"mountPath\":\"/var/run/secrets/tekton-zscaler.io/serviceaccount\",\"name\":\"tekton-zscaler-token\",\"readOnly\":true}},{\"op\":\"add\",\"path\":\"/spec/containers/1/env/-\",\"value\":{\"name\":\"AWS_ROLE_ARN\",\"value\":\"arn:aws:iam::100000000000:role/ci-0\"}},{\"op\":\"add\",\"path\":\"/spec/containers/1/env/-\",\"value\":{\"name\":\"AWS_WEB_IDENTITY_TOKEN_FILE\",\"value\":\"/var/run/secrets/tekton-zscaler.io/serviceaccount/token\"}},{\"op\":\"add\",\"path\":\"/spec/containers/1/env/-\",\"value\":{\"name\":\"TZW_OIDC_TOKEN_FILE\",\"value\":\"/var/run/secrets/tekton-zscaler.io/serviceaccount/token\"}},{\"op\":\"add\",\"path\":\"/spec/containers/2/volumeMounts/-\",\"value\":{\"mountPath\":\"/var/run/secrets/tekton-zscaler.io/serviceaccount\",\"name\":\"tekton-zscaler-token\",\"readOnly\":true}},{\"op\":\"add\",\"path\":\"/spec/containers/2/env/-\",\"value\":{\"name\":\"AWS_ROLE_ARN\",\"value\":\"arn:aws:iam::100000000000:role/ci-0\"}},{\"op\":\"add\",\"path\":\"/spec/containers/2/env/-\",\"value\":{\"name\":\"AWS_WEB_IDENTITY_TOKEN_FILE\",\"value\":\"/var/run/secrets/tekton-zscaler.io/serviceaccount/token\"}},{\"op\":\"add\",\"path\":\"/spec/containers/2/env/-\",\"value\":{\"name\":\"TZW_OIDC_TOKEN_FILE\",\"value\":\"/var/run/secrets/tekton-zscaler.io/serviceaccount/token\"}},{\"op\":\"add\",\"path\":\"/spec/initContainers/0\",\"value\":{\"args\":[\"--mode=tunnel\",\"--health-port=15021\"],\"env\":[{\"name\":\"TZW_OIDC_TOKEN_FILE\",\"value\":\"/var/run/secrets/tekton-zscaler.io/serviceaccount/token\"}],\"image\":\"zscaler/zpa-connector-tunnel:1.0.0\",\"name\":\"zscaler-tunnel\",\"resources\":{\"limits\":{\"memory\":\"128Mi\"},\"requests\":{\"cpu\":\"10m\",\"memory\":\"32Mi\"}},\"restartPolicy\":\"Always\",\"securityContext\":{\"allowPrivilegeEscalation\":false,\"capabilities\":{\"drop\":[\"ALL\"]},\"readOnlyRootFilesystem\":true,\"runAsNonRoot\":true,\"runAsUser\":65532,\"seccompProfile\":{\"type\":\"RuntimeDefault\"}},\"startupProbe\":{\"failureThreshold\":30,\"httpGet\":{\"path\":\"/ready\",\"port\":15021},\"periodSeconds\":1},\"volumeMounts\":[{\"mountPath\":\"/var/run/secrets/tekton-zscaler.io/serviceaccount\",\"name\":\"tekton-zscaler-token\",\"readOnly\":true}]}},{\"op\":\"add\",\"path\":\"/metadata/annotations/tekton-zscaler.io~1policy-tags\",\"value\":\"build,ci,egress-restricted,team-0\"},{\"op\":\"add\",\"path\":\"/metadata/annotations/tekton-zscaler.io~1provider\",\"value\":\"aws-iam\"},{\"op\":\"add\",\"path\":\"/metadata/annotations/tekton-zscaler.io~1identity-mapping\",\"value\":\"bench-0\"},{\"op\":\"add\",\"path\":\"/metadata/annotations/tekton-zscaler.io~1decision-id\",\"value\":\"01900000-0000-7000-8000-000000000000\"},{\"op\":\"add\",\"path\":\"/metadata/annotations/tekton-zscaler.io~1status\",\"value\":\"injected\"}],\"policyTags\":[\"ci\",\"egress-restricted\"],\"prevHash\":\"0000000000000000000000000000000000000000000000000000000000000000\",\"reasons\":[],\"replica\":\"tzw-0\",\"requestUid\":\"8ca71e77-6393-11e8-b7cc-000000000000\",\"seq\":1,\"serviceAccounts\":[\"team-0155/builder-7\"],\"tekton\":{\"pipelineRun\":\"build-a7e08f9f\",\"pipelineTask\":\"build\",\"task\":\"build\",\"taskRun\":\"build-a7e08f9f-build\"},\"time\":\"2025-12-02T00:00:00.000000Z\",\"user\":{\"groups\":[\"system:serviceaccounts\",\"system:authenticated\"],\"username\":\"system:serviceaccount:tekton-pipelines:tekton-pipelines-controller\"},\"verdict\":\"patched\"}",
  'utf8',
);

/**
 * The most a stored body may say it holds. A record is kilobytes (its largest part is the patch);
 * a frame that claims more is damaged or forged and is refused before anything is allocated.
 */
export const MAX_BODY_BYTES = 64 * 1024 * 1024;

function bodyError(message: string): Error {
  return Object.assign(new Error(message), { code: 'ERR_STORE_BODY' });
}

/** Codec 2's compression level (zstd's default): level 1 measured 5.8 µs and 252 bytes, 5 11.6 µs and 231. */
const ZSTD_LEVEL = 3;

/** A body as UTF-8 bytes: text is encoded into `scratch` (grown when short), bytes pass through. */
function toUtf8(canonical: string | Uint8Array, scratch: { buf: Buffer }): Uint8Array {
  if (typeof canonical !== 'string') return canonical;
  const max = canonical.length * 3;
  if (max > scratch.buf.length) scratch.buf = Buffer.allocUnsafe(Math.max(max, scratch.buf.length * 2));
  return scratch.buf.subarray(0, scratch.buf.write(canonical, 0, 'utf8'));
}

/**
 * A codec-2 compressor reused body after body: one compression context and the dictionary
 * digested once. The returned bytes are `[codec][frame]`, a Buffer of their own.
 */
export function createBodyCompressor(): (canonical: string | Uint8Array) => Buffer {
  const cctx = new zstd.CCtx();
  const dict = new zstd.CDict(DICTIONARY_V1, ZSTD_LEVEL);
  const scratch = { buf: Buffer.allocUnsafe(16 * 1024) };
  let out = Buffer.allocUnsafe(64 * 1024);
  return (canonical) => {
    const bytes = toUtf8(canonical, scratch);
    const bound = zstd.compressBound(bytes.length) + 1;
    if (bound > out.length) out = Buffer.allocUnsafe(Math.max(bound, out.length * 2));
    out[0] = CODEC_ZSTD_DICT_V2;
    const n = cctx.compressUsingCDict(out.subarray(1), bytes, dict);
    return Buffer.from(out.subarray(0, n + 1));
  };
}

let compressor: ((canonical: string | Uint8Array) => Buffer) | undefined;

/** The stored bytes (codec 2) of a canonical body, given as text or as its UTF-8 bytes (one reused compressor per thread). */
export function toStoredBody(canonical: string | Uint8Array): Buffer {
  compressor ??= createBodyCompressor();
  return compressor(canonical);
}

/**
 * Codec 1 as the writers stored it from 2026-12-02 until 2026-12-03 (deflate-raw, fixed Huffman
 * codes, level 3): `[1][payload]`. Nothing writes it any more; tests use it to make old bodies.
 */
export function toStoredBodyV1(canonical: string | Uint8Array): Buffer {
  const payload = deflateRawSync(typeof canonical === 'string' ? Buffer.from(canonical, 'utf8') : canonical, { dictionary: DICTIONARY_V1, level: 3, strategy: zlibConst.Z_FIXED });
  return Buffer.concat([Buffer.from([CODEC_DEFLATE_DICT_V1]), payload]);
}

/** This thread's decompression context and digested dictionary for codec 2 (made on first use). */
let dctx: Zstd.DCtx | undefined;
let ddict: Zstd.DDict | undefined;

/** How many bytes a codec-2 body's frame (the bytes after the codec byte) holds, from its header. Throws ERR_STORE_BODY when it does not say, or says too much. */
function frameSize(frame: Uint8Array): number {
  let size: number | null;
  try {
    size = zstd.getFrameContentSize(frame);
  } catch (err) {
    throw bodyError(`stored body does not decompress: ${(err as Error).message}`);
  }
  if (size === null) throw bodyError('stored body does not decompress: its frame does not give its size');
  if (size > MAX_BODY_BYTES) throw bodyError(`stored body does not decompress: its frame claims ${size} bytes, more than ${MAX_BODY_BYTES}`);
  return size;
}

/** Decompresses a codec-2 frame of `size` bytes into `out` at `at`. Throws ERR_STORE_BODY on bytes that do not decompress to exactly that. */
function decompressInto(frame: Uint8Array, size: number, out: Buffer, at: number): void {
  dctx ??= new zstd.DCtx();
  ddict ??= new zstd.DDict(DICTIONARY_V1);
  let n: number;
  try {
    n = dctx.decompressUsingDDict(out.subarray(at, at + size), frame, ddict);
  } catch (err) {
    throw bodyError(`stored body does not decompress: ${(err as Error).message}`);
  }
  if (n !== size) throw bodyError(`stored body does not decompress: ${n} bytes where its frame says ${size}`);
}

function unknownCodec(stored: Uint8Array): Error {
  return bodyError(stored.length === 0 ? 'stored body is empty' : `stored body has unknown codec ${stored[0]}`);
}

/**
 * The canonical body's UTF-8 bytes from stored bytes (of either codec), a Buffer of their own, not
 * decoded into a string (verification hashes these). Throws (ERR_STORE_BODY) on an unknown codec
 * or bytes that do not decompress.
 */
export function toCanonicalBytes(stored: Uint8Array): Buffer {
  if (stored[0] === CODEC_ZSTD_DICT_V2) {
    const frame = stored.subarray(1);
    const size = frameSize(frame);
    const out = Buffer.allocUnsafe(size);
    decompressInto(frame, size, out, 0);
    return out;
  }
  if (stored[0] !== CODEC_DEFLATE_DICT_V1) throw unknownCodec(stored);
  try {
    return inflateRawSync(stored.subarray(1), { dictionary: DICTIONARY_V1 });
  } catch (err) {
    throw bodyError(`stored body does not inflate: ${(err as Error).message}`);
  }
}

/** The canonical body from stored bytes (of either codec). Throws like toCanonicalBytes. */
export function fromStoredBody(stored: Uint8Array): string {
  return toCanonicalBytes(stored).toString('utf8');
}

/** The part of a node:zlib stream's native handle that the reused inflater drives. */
interface ZlibHandle {
  reset(): void;
  writeSync(flush: number, input: Uint8Array, inOff: number, inLen: number, out: Uint8Array, outOff: number, outLen: number): void;
  onerror: (...args: unknown[]) => void;
}

/**
 * The native handle and write state of a new node:zlib stream, for the reused inflater below;
 * both undefined when this Node's internals do not look as expected (the caller then uses the
 * one-shot API). `onError` is called by the handle on a zlib error.
 */
function openZlibHandle(create: () => unknown, onError: () => void): { handle?: ZlibHandle; state?: Uint32Array } {
  try {
    const stream = create() as { _handle?: ZlibHandle; _writeState?: Uint32Array };
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

/**
 * A reusable decoder of stored bodies of either codec, for verification of many records: the same
 * bytes as toCanonicalBytes, written into one buffer reused body after body. The returned Buffer is
 * only valid until the next call; it starts `headroom` bytes into a buffer the caller may write
 * (e.g. a prefix to hash with the body: `result.buffer` from `result.byteOffset - headroom`).
 * Codec 2 uses this thread's context and digested dictionary. Codec 1 resets one zlib stream (its
 * 32 KiB window and the dictionary) per body instead of creating one (~4x cheaper): node:zlib
 * offers no public synchronous reset-and-reuse, so this drives the stream's native handle as
 * zlib.js's own sync path does, and falls back to toCanonicalBytes whenever that is not possible
 * (another Node version, an error, output larger than the buffer). Throws like toCanonicalBytes.
 */
export function createBodyDecoder(headroom = 0): (stored: Uint8Array) => Buffer {
  let out = Buffer.allocUnsafe(64 * 1024);
  let handle: ZlibHandle | undefined;
  let state: Uint32Array | undefined;
  let failed = false;
  const open = (): void => {
    ({ handle, state } = openZlibHandle(() => createInflateRaw({ dictionary: DICTIONARY_V1 }), () => {
      failed = true;
    }));
  };
  open();
  const oneShot = (stored: Uint8Array): Buffer => {
    const bytes = toCanonicalBytes(stored);
    if (headroom === 0) return bytes;
    const copy = Buffer.allocUnsafe(headroom + bytes.length);
    bytes.copy(copy, headroom);
    return copy.subarray(headroom);
  };
  return (stored) => {
    if (stored[0] === CODEC_ZSTD_DICT_V2) {
      const frame = stored.subarray(1);
      const size = frameSize(frame);
      if (headroom + size > out.length) out = Buffer.allocUnsafe(Math.max(headroom + size, out.length * 2));
      decompressInto(frame, size, out, headroom);
      return out.subarray(headroom, headroom + size);
    }
    if (!handle || !state || stored[0] !== CODEC_DEFLATE_DICT_V1) return oneShot(stored);
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
      return oneShot(stored);
    }
    return out.subarray(headroom, out.length - availOut);
  };
}
