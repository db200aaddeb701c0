/**
 * RFC 8785 (JCS) canonical JSON and sha256. Pure. Split from chain.ts so signing.ts can use it
 * without an import cycle.
 */
import { hash as digest } from 'node:crypto';
import canonicalizeCjs from 'canonicalize';

// The package is CommonJS (`module.exports = fn`) while its types declare `export default`; under
// NodeNext the default import is the function at runtime, so only the type needs the cast.
const canonicalize = canonicalizeCjs as unknown as (input: unknown) => string | undefined;

/**
 * A member whose canonical JSON text the caller already holds (a decision's patch, serialised once
 * for the response): canonicalJson writes the text as is instead of walking the value again. The
 * text MUST be the RFC 8785 form of the value (isCanonicalOrder(value) and JSON.stringify(value)).
 * The library path (odd input elsewhere in the record) sees toJSON and serialises the parsed value.
 */
export class CanonicalText {
  constructor(readonly text: string) {}
  toJSON(): unknown {
    return JSON.parse(this.text);
  }
}

/**
 * True when `v` is plain JSON data whose object keys are already in RFC 8785 order at every
 * level (e.g. anything parsed from canonical JSON). For such values JSON.stringify produces exactly
 * the canonical form: canonicalize also serialises primitives with JSON.stringify, and both skip
 * undefined members. Anything unusual (toJSON, functions, non-finite numbers, class instances)
 * answers false.
 */
function isSortedJson(v: unknown): boolean {
  if (typeof v !== 'object' || v === null) {
    const t = typeof v;
    return t === 'string' || t === 'boolean' || t === 'undefined' || (t === 'number' && Number.isFinite(v));
  }
  if (Array.isArray(v)) {
    // A hole (sparse array) is serialised differently by the library: leave it to the library.
    for (let i = 0; i < v.length; i++) if (!(i in v) || !isSortedJson(v[i])) return false;
    return true;
  }
  const proto: unknown = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) return false;
  if (typeof (v as { toJSON?: unknown }).toJSON === 'function') return false;
  let prev: string | undefined;
  for (const k in v) {
    // for..in lists integer-like keys first, in numeric order; when that differs from code-unit
    // order this check fails and the slow path sorts properly.
    if (prev !== undefined && prev > k) return false;
    prev = k;
    if (!isSortedJson((v as Record<string, unknown>)[k])) return false;
  }
  return true;
}

/** Thrown inside the emitter for anything but plain JSON data: the caller then uses the library. */
class NotPlainJson extends Error {}

/**
 * The UTF-8 buffer the emitter writes into, reused call after call on this thread (grown when a
 * value does not fit), and the next byte to write.
 */
const START_BYTES = 64 * 1024;
/** A buffer grown past this for one large value is given back at the next call instead of kept for the thread's life. */
const KEEP_BYTES = 1024 * 1024;
let out = Buffer.allocUnsafe(START_BYTES);
let at = 0;
/** Set while the emitter runs: a getter that canonicalises from inside it takes the library path. */
let emitting = false;

function reserve(bytes: number): void {
  if (at + bytes <= out.length) return;
  const bigger = Buffer.allocUnsafe(Math.max(out.length * 2, at + bytes));
  out.copy(bigger, 0, 0, at);
  out = bigger;
}

const HEX = '0123456789abcdef';
/** A character JSON.stringify escapes, or one above ASCII (the byte-at-a-time loop encodes it). */
const NOT_PLAIN_ASCII = /["\\\u0000-\u001f\u0080-\uffff]/;
/** From this length on, one native regex test and one native copy beat the loop below. */
const LONG_STRING = 32;

/**
 * Writes `s` as JSON.stringify(s) writes it (RFC 8785 3.2.2.2: `"` and `\` escaped, \b \t \n \f \r,
 * other controls as lowercase \u00xx, a lone surrogate as lowercase \udxxx), UTF-8 encoded.
 */
function emitString(s: string): void {
  const n = s.length;
  reserve(n * 6 + 2);
  const b = out;
  let p = at;
  b[p++] = 0x22;
  if (n >= LONG_STRING && !NOT_PLAIN_ASCII.test(s)) {
    p += b.write(s, p, 'latin1');
    b[p++] = 0x22;
    at = p;
    return;
  }
  for (let i = 0; i < n; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      if (c >= 0x20 && c !== 0x22 && c !== 0x5c) {
        b[p++] = c;
        continue;
      }
      b[p++] = 0x5c;
      if (c === 0x22 || c === 0x5c) b[p++] = c;
      else if (c === 0x08) b[p++] = 0x62;
      else if (c === 0x09) b[p++] = 0x74;
      else if (c === 0x0a) b[p++] = 0x6e;
      else if (c === 0x0c) b[p++] = 0x66;
      else if (c === 0x0d) b[p++] = 0x72;
      else {
        b[p++] = 0x75;
        b[p++] = 0x30;
        b[p++] = 0x30;
        b[p++] = HEX.charCodeAt(c >> 4);
        b[p++] = HEX.charCodeAt(c & 15);
      }
    } else if (c < 0x800) {
      b[p++] = 0xc0 | (c >> 6);
      b[p++] = 0x80 | (c & 63);
    } else if (c < 0xd800 || c > 0xdfff) {
      b[p++] = 0xe0 | (c >> 12);
      b[p++] = 0x80 | ((c >> 6) & 63);
      b[p++] = 0x80 | (c & 63);
    } else {
      const d = i + 1 < n ? s.charCodeAt(i + 1) : 0;
      if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
        i++;
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        b[p++] = 0xf0 | (c >> 18);
        b[p++] = 0x80 | ((c >> 12) & 63);
        b[p++] = 0x80 | ((c >> 6) & 63);
        b[p++] = 0x80 | (c & 63);
      } else {
        b[p++] = 0x5c;
        b[p++] = 0x75;
        b[p++] = HEX.charCodeAt(c >> 12);
        b[p++] = HEX.charCodeAt((c >> 8) & 15);
        b[p++] = HEX.charCodeAt((c >> 4) & 15);
        b[p++] = HEX.charCodeAt(c & 15);
      }
    }
  }
  b[p++] = 0x22;
  at = p;
}

/** Writes ASCII text (a number, a literal, punctuation) as is. */
function emitAscii(s: string): void {
  const n = s.length;
  reserve(n);
  const b = out;
  let p = at;
  for (let i = 0; i < n; i++) b[p++] = s.charCodeAt(i);
  at = p;
}

function emitByte(c: number): void {
  reserve(1);
  out[at++] = c;
}

/** Sorts object keys in place by UTF-16 code units, as Array.prototype.sort does (objects have few keys: insertion sort). */
function sortKeys(keys: string[]): void {
  for (let i = 1; i < keys.length; i++) {
    const k = keys[i] as string;
    let j = i - 1;
    while (j >= 0 && (keys[j] as string) > k) {
      keys[j + 1] = keys[j] as string;
      j--;
    }
    keys[j + 1] = k;
  }
}

/**
 * Writes the RFC 8785 form of plain JSON data: objects with Object.prototype or null as prototype
 * (keys sorted by code units; undefined and symbol members left out), arrays without holes
 * (undefined and symbol items as null), strings, finite numbers (JSON.stringify's form, which is
 * RFC 8785's), booleans, null, and CanonicalText (its text as is). Throws NotPlainJson on anything
 * else (toJSON, class instances, functions, bigints, non-finite numbers, sparse arrays), which the
 * library then serialises.
 */
function emitValue(v: unknown): void {
  switch (typeof v) {
    case 'string':
      emitString(v);
      return;
    case 'number':
      if (!Number.isFinite(v)) throw new NotPlainJson();
      emitAscii(JSON.stringify(v));
      return;
    case 'boolean':
      emitAscii(v ? 'true' : 'false');
      return;
    case 'object':
      break;
    default:
      throw new NotPlainJson();
  }
  if (v === null) {
    emitAscii('null');
    return;
  }
  if (Array.isArray(v)) {
    if (typeof (v as { toJSON?: unknown }).toJSON === 'function') throw new NotPlainJson();
    emitByte(0x5b);
    for (let i = 0; i < v.length; i++) {
      if (i > 0) emitByte(0x2c);
      const item: unknown = v[i];
      if (item === undefined) {
        // A hole (sparse array) is serialised differently by the library.
        if (!(i in v)) throw new NotPlainJson();
        emitAscii('null');
      } else if (typeof item === 'symbol') emitAscii('null');
      else emitValue(item);
    }
    emitByte(0x5d);
    return;
  }
  if (v instanceof CanonicalText) {
    const text = v.text;
    reserve(text.length * 3);
    at += out.write(text, at, 'utf8');
    return;
  }
  const proto: unknown = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) throw new NotPlainJson();
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o);
  sortKeys(keys);
  emitMembers(keys, o, undefined);
}

/**
 * Writes an object's members in the order of `keys` (sorted), each value from `extra` when the key
 * is one of its own members, else from `o`; undefined and symbol values are left out. A
 * CanonicalSlot value writes nothing: its offset is recorded in `slotsAt` instead.
 */
function emitMembers(keys: string[], o: Record<string, unknown>, extra: Record<string, unknown> | undefined): void {
  emitByte(0x7b);
  let first = true;
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i] as string;
    const fromExtra = extra !== undefined && Object.hasOwn(extra, k);
    const member = fromExtra ? (extra as Record<string, unknown>)[k] : o[k];
    const slot = fromExtra && member === CANONICAL_SLOT;
    if (!slot && (member === undefined || typeof member === 'symbol')) continue;
    if (typeof member === 'function') throw new NotPlainJson();
    if (first) first = false;
    else emitByte(0x2c);
    emitString(k);
    emitByte(0x3a);
    if (slot) slotsAt.push(at);
    else emitValue(member);
  }
  emitByte(0x7d);
}

/**
 * A member value written later by someone else (canonicalUtf8Merged): the chain's seq, prevHash,
 * nsSeq and nsPrevHash, known only on the writer thread. Only accepted as a value of `extra`.
 */
export const CANONICAL_SLOT: unique symbol = Symbol('canonical slot');
/** Offsets of the slots written by the current canonicalUtf8Merged call. */
let slotsAt: number[] = [];

/**
 * The RFC 8785 (JCS) form of plain JSON data as UTF-8 bytes, after `prefix` (e.g. the previous
 * chain hash that a record's hash covers too), written straight from the value: no key-sorted
 * copies, no intermediate string. Undefined for anything but plain JSON data (see emitValue), for
 * which canonicalJson uses the library. The answer is a view of a buffer this thread reuses: valid
 * until the next call (copy it to keep it). Throws what a getter on the value throws.
 */
export function canonicalUtf8(value: unknown, prefix = ''): Buffer | undefined {
  return runEmitter(() => {
    if (prefix) {
      reserve(prefix.length * 3);
      at += out.write(prefix, 0, 'utf8');
    }
    emitValue(value);
  });
}

/**
 * Runs one emission into this thread's reused buffer and returns what it wrote (a view), or
 * undefined when the value is not plain JSON data (NotPlainJson) or an emission is already running
 * (a getter that canonicalises). The one place that guards, resets and releases the buffer.
 */
function runEmitter(write: () => void): Buffer | undefined {
  // A toJSON on Object.prototype (a patched prototype) applies to every object: the library's.
  if (emitting || (Object.prototype as { toJSON?: unknown }).toJSON !== undefined) return undefined;
  emitting = true;
  // A view handed out earlier keeps its own (old) buffer alive for as long as the caller holds it.
  if (out.length > KEEP_BYTES) out = Buffer.allocUnsafe(START_BYTES);
  at = 0;
  try {
    write();
  } catch (err) {
    if (err instanceof NotPlainJson) return undefined;
    throw err;
  } finally {
    emitting = false;
  }
  return out.subarray(0, at);
}

/**
 * The RFC 8785 form of `{ ...value, ...extra }` (extra's members replace value's; an undefined one
 * removes it) as UTF-8, without building that object, and where each CANONICAL_SLOT member of
 * `extra` goes: `slots[i]` is the byte offset, right after that member's `"key":`, at which its
 * value is to be written (in key order). The bytes with those values inserted are the canonical
 * form of the object with them. Undefined when `value` is not plain JSON data (see canonicalUtf8).
 * The bytes are a view of this thread's reused buffer, valid until the next canonical call.
 */
export function canonicalUtf8Merged(value: object, extra: Record<string, unknown>): { bytes: Buffer; slots: number[] } | undefined {
  const proto: unknown = Object.getPrototypeOf(value);
  if ((proto !== Object.prototype && proto !== null) || Array.isArray(value)) return undefined;
  const bytes = runEmitter(() => {
    // Inside the emitter: a nested call (a getter) is refused before it could reset the offsets.
    slotsAt = [];
    const o = value as Record<string, unknown>;
    const keys = Object.keys(o);
    for (const k in extra) if (!Object.hasOwn(o, k)) keys.push(k);
    sortKeys(keys);
    emitMembers(keys, o, extra);
  });
  return bytes && { bytes, slots: slotsAt };
}

/**
 * RFC 8785 (JCS) canonical JSON, byte-identical to the `canonicalize` package: values already in
 * canonical key order (e.g. verification of millions of stored records) are one native
 * JSON.stringify, other plain JSON data is written by canonicalUtf8, anything else by the library.
 * Throws on values JSON cannot carry (NaN, Infinity).
 */
export function canonicalJson(value: unknown): string {
  // Already in canonical order (a record parsed from its stored body, as bundle verification hashes
  // them): one walk without copies, one native stringify. Cheap when it fails: it stops at the first
  // key out of order.
  if (isSortedJson(value)) return JSON.stringify(value);
  const bytes = canonicalUtf8(value);
  if (bytes !== undefined) return bytes.toString('utf8');
  const s = canonicalize(value);
  if (s === undefined) throw new TypeError('value has no JSON representation');
  return s;
}

/**
 * sha256 hex of `prefix` + the RFC 8785 form of `value`, and that form: for plain JSON data the
 * bytes canonicalUtf8 wrote, hashed where they were written (a view of its buffer, valid until
 * the next canonical call on this thread: copy or consume it at once); otherwise the text
 * canonicalJson gives. The one place that chooses between the two (objectDigest, the chain).
 */
export function hashCanonical(value: unknown, prefix = ''): { hash: string; body: Buffer | string } {
  const bytes = canonicalUtf8(value, prefix);
  if (bytes !== undefined) return { hash: digest('sha256', bytes, 'hex'), body: bytes.subarray(Buffer.byteLength(prefix)) };
  const body = canonicalJson(value);
  return { hash: sha256Hex(prefix + body), body };
}

/**
 * True when JSON.stringify(v) is already the RFC 8785 form of `v`: plain JSON data with every
 * object's keys in code-unit order (e.g. a patch built from key-sorted fragments).
 */
export function isCanonicalOrder(v: unknown): boolean {
  return isSortedJson(v);
}

export function sha256Hex(text: string): string {
  return digest('sha256', text, 'hex');
}

