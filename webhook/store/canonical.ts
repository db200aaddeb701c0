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
 * RFC 8785 (JCS) canonical JSON via the `canonicalize` package, with a native fast path for values
 * already in canonical key order (verification of millions of stored records). Throws on values
 * JSON cannot carry (NaN, Infinity).
 */
export function canonicalJson(value: unknown): string {
  if (isSortedJson(value)) {
    const s = JSON.stringify(value);
    if (s !== undefined) return s;
  }
  const s = canonicalize(value);
  if (s === undefined) throw new TypeError('value has no JSON representation');
  return s;
}

export function sha256Hex(text: string): string {
  return digest('sha256', text, 'hex');
}

