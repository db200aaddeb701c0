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

/** sortedValue's answer for anything the fast path does not take (the caller then uses the library). */
const ODD: unique symbol = Symbol('not plain JSON');

/**
 * The keys of a plain object in code-unit order (ordered: already so), or undefined when a copy
 * built in that order might not enumerate in it: `__proto__` (assigning it sets the prototype), or
 * an integer-like key among keys that need sorting (objects list those first, in numeric order).
 */
function sortedKeys(o: object): { keys: string[]; ordered: boolean } | undefined {
  const keys = Object.keys(o);
  let ordered = true;
  let digit = false;
  let prev = '';
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i] as string;
    const c = k.charCodeAt(0);
    if (c >= 48 && c <= 57) digit = true;
    // An own toJSON (or an own __proto__, which assigning would turn into the prototype): the library.
    else if ((c === 95 && k === '__proto__') || (c === 116 && k === 'toJSON')) return undefined;
    if (i > 0 && prev > k) ordered = false;
    prev = k;
  }
  if (ordered) return { keys, ordered };
  return digit ? undefined : { keys: keys.sort(), ordered };
}

/**
 * `v` with every object's keys in code-unit order, so JSON.stringify of the answer is the RFC 8785
 * form: subtrees already in order are returned as they are (no copy), others are copied with their
 * keys inserted sorted. One walk; the native JSON.stringify then writes the text. Answers ODD for
 * anything but plain JSON data (toJSON, class instances, functions, symbols and bigints as values,
 * non-finite numbers, sparse arrays, unsortable keys: see sortedKeys), which the library serialises.
 * Undefined members and undefined/symbol array items are kept: JSON.stringify treats them as the
 * library does (left out; null).
 */
function sortedValue(v: unknown): unknown {
  if (typeof v !== 'object') {
    if (typeof v === 'string' || typeof v === 'boolean') return v;
    return typeof v === 'number' && Number.isFinite(v) ? v : ODD;
  }
  if (v === null) return v;
  if (Array.isArray(v)) {
    if (typeof (v as { toJSON?: unknown }).toJSON === 'function') return ODD;
    let copy: unknown[] | undefined;
    for (let i = 0; i < v.length; i++) {
      if (!(i in v)) return ODD;
      const item: unknown = v[i];
      const s = item === undefined || typeof item === 'symbol' ? item : sortedValue(item);
      if (s === ODD) return ODD;
      if (copy) copy.push(s);
      else if (s !== item) {
        copy = v.slice(0, i);
        copy.push(s);
      }
    }
    return copy ?? v;
  }
  const proto: unknown = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) return ODD;
  const o = v as Record<string, unknown>;
  const sorted = sortedKeys(o);
  if (!sorted) return ODD;
  const { keys } = sorted;
  let copy: Record<string, unknown> | undefined = sorted.ordered ? undefined : {};
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i] as string;
    const member = o[k];
    if (member === undefined || typeof member === 'symbol') continue;
    const s = sortedValue(member);
    if (s === ODD) return ODD;
    if (copy) copy[k] = s;
    else if (s !== member) {
      // Keys in order, a member copied: copy the object from here on (same key order).
      copy = {};
      for (let j = 0; j < i; j++) {
        const kj = keys[j] as string;
        const mj = o[kj];
        if (mj !== undefined && typeof mj !== 'symbol') copy[kj] = mj;
      }
      copy[k] = s;
    }
  }
  return copy ?? v;
}

/** True when `v` is a plain object with a CanonicalText member. */
function hasCanonicalText(v: unknown): boolean {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto: unknown = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) return false;
  for (const k in v) if ((v as Record<string, unknown>)[k] instanceof CanonicalText) return true;
  return false;
}

/**
 * RFC 8785 text of plain JSON data without the library (undefined for anything else), with
 * CanonicalText members of the top-level object written as they are: the members between them
 * are stringified a run at a time.
 */
function sortedStringify(v: unknown): string | undefined {
  if (v instanceof CanonicalText) return v.text;
  if (!hasCanonicalText(v)) {
    // Already in order (e.g. a record parsed from its stored body): v itself, one native stringify.
    const s = sortedValue(v);
    return s === ODD ? undefined : JSON.stringify(s);
  }
  const o = v as Record<string, unknown>;
  if (typeof o.toJSON === 'function') return undefined;
  const sorted = sortedKeys(o);
  if (!sorted) return undefined;
  let out = '{';
  let run: Record<string, unknown> | undefined;
  const endRun = (): void => {
    if (!run) return;
    const s = JSON.stringify(run);
    if (s.length > 2) out += (out.length > 1 ? ',' : '') + s.slice(1, -1);
    run = undefined;
  };
  for (const k of sorted.keys) {
    const member = o[k];
    if (member instanceof CanonicalText) {
      endRun();
      out += `${out.length > 1 ? ',' : ''}${JSON.stringify(k)}:${member.text}`;
      continue;
    }
    if (member === undefined || typeof member === 'symbol') continue;
    const s = sortedValue(member);
    if (s === ODD) return undefined;
    (run ??= {})[k] = s;
  }
  endRun();
  return `${out}}`;
}

/**
 * RFC 8785 (JCS) canonical JSON, byte-identical to the `canonicalize` package: plain JSON data
 * takes the faster sortedStringify (values already in canonical key order, e.g. verification of
 * millions of stored records, are one native JSON.stringify), anything else the library. Throws
 * on values JSON cannot carry (NaN, Infinity).
 */
export function canonicalJson(value: unknown): string {
  // Already in canonical order (a record parsed from its stored body, as bundle verification hashes
  // them): one walk without copies, one native stringify. Cheap when it fails: it stops at the first
  // key out of order.
  if (isSortedJson(value)) return JSON.stringify(value);
  // sortedValue looks for own toJSON members only: an inherited one (a patched prototype) is the library's.
  const fast = (Object.prototype as { toJSON?: unknown }).toJSON === undefined ? sortedStringify(value) : undefined;
  if (fast !== undefined) return fast;
  const s = canonicalize(value);
  if (s === undefined) throw new TypeError('value has no JSON representation');
  return s;
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

