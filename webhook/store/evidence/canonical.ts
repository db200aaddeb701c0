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
 * answers false and takes the library path.
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

/**
 * Canonical JSON of plain JSON data, written like the library writes it (object keys sorted by
 * code unit, undefined and symbol members left out, undefined and symbols in arrays as null,
 * strings and numbers via JSON.stringify), except that every subtree already in canonical key
 * order goes to the native JSON.stringify in one call. A decision record (unsorted top level,
 * many small sorted values such as env entries) costs ~20% less than with the library. Answers
 * undefined for anything else (toJSON, class instances, functions, non-finite numbers, sparse
 * arrays): the caller then uses the library, so odd input is serialised exactly as before.
 */
function sortedStringify(v: unknown): string | undefined {
  switch (typeof v) {
    case 'string':
      return JSON.stringify(v);
    case 'number':
      return Number.isFinite(v) ? JSON.stringify(v) : undefined;
    case 'boolean':
      return v ? 'true' : 'false';
    case 'object':
      break;
    default:
      return undefined;
  }
  if (v === null) return 'null';
  if (v instanceof CanonicalText) return v.text;
  if (isSortedJson(v)) return JSON.stringify(v);
  if (Array.isArray(v)) {
    let out = '[';
    for (let i = 0; i < v.length; i++) {
      if (!(i in v)) return undefined;
      const item: unknown = v[i];
      const s = item === undefined || typeof item === 'symbol' ? 'null' : sortedStringify(item);
      if (s === undefined) return undefined;
      out += i === 0 ? s : `,${s}`;
    }
    return `${out}]`;
  }
  const proto: unknown = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) return undefined;
  if (typeof (v as { toJSON?: unknown }).toJSON === 'function') return undefined;
  const o = v as Record<string, unknown>;
  // The library sorts Object.keys with the default (code-unit) order; so does this.
  const keys = Object.keys(o).sort();
  let out = '{';
  for (const k of keys) {
    const member = o[k];
    if (member === undefined || typeof member === 'symbol') continue;
    const s = sortedStringify(member);
    if (s === undefined) return undefined;
    out += `${out.length === 1 ? '' : ','}${JSON.stringify(k)}:${s}`;
  }
  return `${out}}`;
}

/**
 * RFC 8785 (JCS) canonical JSON, byte-identical to the `canonicalize` package: plain JSON data
 * takes the faster sortedStringify (values already in canonical key order, e.g. verification of
 * millions of stored records, are one native JSON.stringify), anything else the library. Throws
 * on values JSON cannot carry (NaN, Infinity).
 */
export function canonicalJson(value: unknown): string {
  const fast = sortedStringify(value);
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

