/**
 * The verify workers' check that a stored record body (its canonical bytes) is JSON and that its
 * indexed fields are exactly the row's index columns, without building the record as a JS object.
 * Pure: no fs, no net, no clock.
 *
 * scanBody: one pass over the bytes validates the whole body (JSON.parse's grammar, UTF-8) and
 * notes where the top-level values verification compares sit; the comparisons then read those
 * bytes. scanSignedBody: the same positions from reading only the start of the body (up to
 * objectDigest) and its end (back to prevHash), for a body the writer's canonical JSON is known to
 * be (see its contract). The test is one-sided: `true` means the slow path (JSON.parse, columnProblem in rows.ts) would find the
 * body readable and every compared column equal; `false` only means "read this row the slow way",
 * which then decides, so anything unusual (whitespace, escapes in a compared value or a key, a
 * duplicated key, a number not written as plain digits, nesting deeper than 64) just answers false.
 */
import { isUtf8 } from 'node:buffer';

/** The body fields compared with columns; a value's bytes are at [at[2f], at[2f + 1]). */
export const FIELD = {
  id: 0,
  replica: 1,
  seq: 2,
  prevHash: 3,
  time: 4,
  namespace: 5,
  kind: 6,
  verdict: 7,
  tekton: 8,
  nsSeq: 9,
  objectDigest: 10,
  serviceAccounts: 11,
  /** kind.kind, tekton.taskRun, tekton.pipelineRun */
  kindKind: 12,
  taskRun: 13,
  pipelineRun: 14,
} as const;
const FIELDS = 15;
const MAX_DEPTH = 64;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const COMMA = 0x2c;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;
const MINUS = 0x2d;
const PLUS = 0x2b;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;

const OBJECT = 1;
const ARRAY = 2;

/** Whether bytes [s, s + name.length) are `name` (ASCII). */
function isName(b: Uint8Array, s: number, e: number, name: string): boolean {
  if (e - s !== name.length) return false;
  for (let k = 0; k < name.length; k++) if (b[s + k] !== name.charCodeAt(k)) return false;
  return true;
}

/** The top-level field a key (bytes [s, e), no escapes) names, or -1. */
function topField(b: Uint8Array, s: number, e: number): number {
  switch (e - s) {
    case 2:
      return isName(b, s, e, 'id') ? FIELD.id : -1;
    case 3:
      return isName(b, s, e, 'seq') ? FIELD.seq : -1;
    case 4:
      return isName(b, s, e, 'kind') ? FIELD.kind : isName(b, s, e, 'time') ? FIELD.time : -1;
    case 5:
      return isName(b, s, e, 'nsSeq') ? FIELD.nsSeq : -1;
    case 6:
      return isName(b, s, e, 'tekton') ? FIELD.tekton : -1;
    case 7:
      return isName(b, s, e, 'replica') ? FIELD.replica : isName(b, s, e, 'verdict') ? FIELD.verdict : -1;
    case 8:
      return isName(b, s, e, 'prevHash') ? FIELD.prevHash : -1;
    case 9:
      return isName(b, s, e, 'namespace') ? FIELD.namespace : -1;
    case 12:
      return isName(b, s, e, 'objectDigest') ? FIELD.objectDigest : -1;
    case 15:
      return isName(b, s, e, 'serviceAccounts') ? FIELD.serviceAccounts : -1;
    default:
      return -1;
  }
}

/** The field a key names inside the `kind` or `tekton` object (`parent`), or -1. */
function innerField(parent: number, b: Uint8Array, s: number, e: number): number {
  if (parent === FIELD.kind) return isName(b, s, e, 'kind') ? FIELD.kindKind : -1;
  if (parent === FIELD.tekton) return isName(b, s, e, 'taskRun') ? FIELD.taskRun : isName(b, s, e, 'pipelineRun') ? FIELD.pipelineRun : -1;
  return -1;
}

const isDigit = (c: number | undefined): boolean => c !== undefined && c >= ZERO && c <= NINE;

/** Per-thread scratch: container kinds and the member being read at each depth. */
const containers = new Uint8Array(MAX_DEPTH + 1);
const memberField = new Int8Array(MAX_DEPTH + 1);
const memberStart = new Int32Array(MAX_DEPTH + 1);

/**
 * Validates `b` (all of it) as JSON with no whitespace outside strings and notes in `at` (length
 * 30, filled here) where the compared fields' values are (-1: absent). False when it is not such
 * JSON, when a compared key repeats or is written with escapes, or when nesting is deeper than 64.
 */
export function scanBody(b: Uint8Array, at: Int32Array): boolean {
  at.fill(-1);
  const end = b.length;
  if (b[0] !== LBRACE) return false;
  let ascii = true;
  let depth = 0;
  let i = 0;
  let expectKey = false;
  for (;;) {
    if (expectKey) {
      // A member: "key":value (keys of the compared fields must be plain: no escapes).
      if (b[i] !== QUOTE) return false;
      const ks = i + 1;
      let escaped = false;
      i = ks;
      for (;;) {
        if (i >= end) return false;
        const c = b[i++]!;
        if (c === QUOTE) break;
        if (c === BACKSLASH) {
          escaped = true;
          const n = skipEscape(b, i, end);
          if (n < 0) return false;
          i = n;
        } else if (c < 0x20) return false;
        else if (c >= 0x80) ascii = false;
      }
      const ke = i - 1;
      if (b[i++] !== COLON) return false;
      let f = -1;
      if (depth === 1) f = topField(b, ks, ke);
      else if (depth === 2) f = innerField(memberField[1]!, b, ks, ke);
      if (f >= 0 && at[2 * f] !== -1) return false;
      if (escaped && (depth === 1 || (depth === 2 && (memberField[1] === FIELD.kind || memberField[1] === FIELD.tekton)))) return false;
      memberField[depth] = f;
      memberStart[depth] = i;
      expectKey = false;
    } else memberField[depth] = -1;

    // One value at i.
    const c = b[i];
    if (c === LBRACE || c === LBRACKET) {
      if (depth === MAX_DEPTH) return false;
      const kind = c === LBRACE ? OBJECT : ARRAY;
      containers[++depth] = kind;
      i++;
      if (b[i] !== (kind === OBJECT ? RBRACE : RBRACKET)) {
        expectKey = kind === OBJECT;
        continue;
      }
      i++;
      depth--;
    } else if (c === QUOTE) {
      i++;
      for (;;) {
        if (i >= end) return false;
        const d = b[i++]!;
        if (d === QUOTE) break;
        if (d === BACKSLASH) {
          i = skipEscape(b, i, end);
          if (i < 0) return false;
        } else if (d < 0x20) return false;
        else if (d >= 0x80) ascii = false;
      }
    } else if (c === MINUS || isDigit(c)) {
      if (c === MINUS) i++;
      if (b[i] === ZERO) i++;
      else if (isDigit(b[i])) while (isDigit(b[++i]));
      else return false;
      if (b[i] === DOT) {
        if (!isDigit(b[++i])) return false;
        while (isDigit(b[++i]));
      }
      if (b[i] === 0x65 || b[i] === 0x45) {
        i++;
        if (b[i] === PLUS || b[i] === MINUS) i++;
        if (!isDigit(b[i])) return false;
        while (isDigit(b[++i]));
      }
    } else if (c === 0x74) {
      if (!isName(b, i, i + 4, 'true') || i + 4 > end) return false;
      i += 4;
    } else if (c === 0x66) {
      if (!isName(b, i, i + 5, 'false') || i + 5 > end) return false;
      i += 5;
    } else if (c === 0x6e) {
      if (!isName(b, i, i + 4, 'null') || i + 4 > end) return false;
      i += 4;
    } else return false;

    // The value ended at i: note it if it is a compared field's, then close containers.
    for (;;) {
      if (depth === 0) return i === end && (ascii || isUtf8(b));
      const f = memberField[depth]!;
      if (f >= 0) {
        at[2 * f] = memberStart[depth]!;
        at[2 * f + 1] = i;
        memberField[depth] = -1;
      }
      const d = b[i];
      if (d === COMMA) {
        i++;
        expectKey = containers[depth] === OBJECT;
        break;
      }
      if (d !== (containers[depth] === OBJECT ? RBRACE : RBRACKET)) return false;
      i++;
      depth--;
    }
  }
}

/** After a backslash at i - 1: the index after the escape, or -1 when it is not a JSON escape. */
function skipEscape(b: Uint8Array, i: number, end: number): number {
  const c = b[i];
  if (c === QUOTE || c === BACKSLASH || c === 0x2f || c === 0x62 || c === 0x66 || c === 0x6e || c === 0x72 || c === 0x74) return i + 1;
  if (c !== 0x75 || i + 5 > end) return -1;
  for (let k = 1; k <= 4; k++) {
    const h = b[i + k]!;
    if (!((h >= ZERO && h <= NINE) || (h >= 0x41 && h <= 0x46) || (h >= 0x61 && h <= 0x66))) return -1;
  }
  return i + 5;
}

/** A scratch array for scanBody's field positions. */
export function createFieldPositions(): Int32Array {
  return new Int32Array(2 * FIELDS);
}

/**
 * Whether field `f` is the JSON string `value` written as plain ASCII without escapes (then it
 * parses to exactly `value`; a byte of a multi-byte UTF-8 character is never taken for a
 * character of `value`). False when absent.
 */
export function isStringField(b: Uint8Array, at: Int32Array, f: number, value: string): boolean {
  const s = at[2 * f]!;
  const e = at[2 * f + 1]!;
  if (s < 0 || e - s !== value.length + 2 || b[s] !== QUOTE) return false;
  for (let k = 0; k < value.length; k++) {
    const c = b[s + 1 + k]!;
    if (c !== value.charCodeAt(k) || c === BACKSLASH || c >= 0x80) return false;
  }
  return true;
}

/**
 * Whether field `f` is the JSON string of `upperHex` (hex digits as SQLite's hex() writes them,
 * upper case) in lower case: isStringField(lower(upperHex)) without building that string.
 */
export function isLowerHexField(b: Uint8Array, at: Int32Array, f: number, upperHex: string): boolean {
  const s = at[2 * f]!;
  const e = at[2 * f + 1]!;
  if (s < 0 || e - s !== upperHex.length + 2 || b[s] !== QUOTE) return false;
  for (let k = 0; k < upperHex.length; k++) {
    const c = upperHex.charCodeAt(k);
    // 0-9 have bit 0x20 set already; A-F | 0x20 is a-f.
    if (!((c >= ZERO && c <= NINE) || (c >= 0x41 && c <= 0x46)) || b[s + 1 + k] !== (c | 0x20)) return false;
  }
  return true;
}

/** Whether field `f` is written as plain digits whose value is the safe integer `value`. */
export function isIntegerField(b: Uint8Array, at: Int32Array, f: number, value: number): boolean {
  const s = at[2 * f]!;
  const e = at[2 * f + 1]!;
  if (s < 0 || e - s > 15 || !Number.isSafeInteger(value)) return false;
  let n = 0;
  for (let k = s; k < e; k++) {
    const c = b[k]!;
    if (c < ZERO || c > NINE) return false;
    n = n * 10 + (c - ZERO);
  }
  return e > s && n === value;
}

/** Whether field `f`'s bytes are exactly the characters of `text`, all ASCII. False when absent. */
export function isRawField(b: Uint8Array, at: Int32Array, f: number, text: string): boolean {
  const s = at[2 * f]!;
  if (s < 0 || at[2 * f + 1]! - s !== text.length) return false;
  for (let k = 0; k < text.length; k++) {
    const c = b[s + k]!;
    if (c !== text.charCodeAt(k) || c >= 0x80) return false;
  }
  return true;
}

/** Whether field `f` is absent from the body. */
export function isAbsent(at: Int32Array, f: number): boolean {
  return at[2 * f]! < 0;
}

/** Whether field `f` is present and an object. */
export function isObjectField(b: Uint8Array, at: Int32Array, f: number): boolean {
  const s = at[2 * f]!;
  return s >= 0 && b[s] === LBRACE;
}

/** -1, 0 or 1 as the key bytes [s, e) sort before, equal or after `name` (ASCII). */
function compareKey(b: Uint8Array, s: number, e: number, name: string): number {
  const n = Math.min(e - s, name.length);
  for (let k = 0; k < n; k++) {
    const d = b[s + k]! - name.charCodeAt(k);
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return e - s === name.length ? 0 : e - s < name.length ? -1 : 1;
}

/** The index after the string whose opening quote is at i - 1 (valid JSON assumed); -1 past the end. */
function endOfString(b: Uint8Array, i: number, end: number): number {
  while (i < end) {
    const c = b[i++];
    if (c === QUOTE) return i;
    if (c === BACKSLASH) i++;
  }
  return -1;
}

/** The index after the value starting at i (valid JSON assumed); -1 when it runs past the end. */
function skipForward(b: Buffer, i: number, end: number): number {
  const c = b[i];
  if (c === QUOTE) {
    // A string value: the next unescaped quote (Buffer indexOf beats a JS loop past ~12 bytes).
    for (let q = b.indexOf(QUOTE, i + 1); q >= 0; q = b.indexOf(QUOTE, q + 1)) {
      let k = q - 1;
      while (b[k] === BACKSLASH) k--;
      if ((q - 1 - k) % 2 === 0) return q + 1;
    }
    return -1;
  }
  if (c !== LBRACE && c !== LBRACKET) {
    while (i < end) {
      const d = b[i];
      if (d === COMMA || d === RBRACE || d === RBRACKET) return i;
      i++;
    }
    return -1;
  }
  let depth = 0;
  while (i < end) {
    const d = b[i++];
    if (d === QUOTE) {
      i = endOfString(b, i, end);
      if (i < 0) return -1;
    } else if (d === LBRACE || d === LBRACKET) depth++;
    else if (d === RBRACE || d === RBRACKET) {
      if (--depth === 0) return i;
    }
  }
  return -1;
}

/** The index of the opening quote of the string whose closing quote is at j (valid JSON assumed); -1 if none. */
function startOfString(b: Uint8Array, j: number): number {
  for (let q = j - 1; q >= 0; q--) {
    if (b[q] !== QUOTE) continue;
    let slashes = 0;
    while (q - 1 - slashes >= 0 && b[q - 1 - slashes] === BACKSLASH) slashes++;
    if (slashes % 2 === 0) return q;
  }
  return -1;
}

/** The index of the first byte of the value whose last byte is at j (valid JSON assumed); -1 if none. */
function skipBackward(b: Buffer, j: number): number {
  const c = b[j];
  if (c === QUOTE) {
    for (let q = b.lastIndexOf(QUOTE, j - 1); q >= 0; q = b.lastIndexOf(QUOTE, q - 1)) {
      let k = q - 1;
      while (k >= 0 && b[k] === BACKSLASH) k--;
      if ((q - 1 - k) % 2 === 0) return q;
      if (q === 0) break;
    }
    return -1;
  }
  if (c !== RBRACE && c !== RBRACKET) {
    while (j >= 0) {
      const d = b[j];
      if (d === COLON || d === COMMA || d === LBRACKET) return j + 1;
      j--;
    }
    return -1;
  }
  let depth = 0;
  while (j >= 0) {
    const d = b[j];
    if (d === QUOTE) {
      j = startOfString(b, j);
      if (j < 0) return -1;
    } else if (d === RBRACE || d === RBRACKET) depth++;
    else if (d === LBRACE || d === LBRACKET) {
      if (--depth === 0) return j;
    }
    j--;
  }
  return -1;
}

/** Notes the kind.kind / tekton.taskRun / tekton.pipelineRun member positions of the object at [s, e). */
function noteInner(b: Buffer, parent: number, s: number, e: number, at: Int32Array): boolean {
  if (b[s] !== LBRACE || b[e - 1] !== RBRACE) return false;
  let i = s + 1;
  if (b[i] === RBRACE) return true;
  for (;;) {
    if (b[i] !== QUOTE) return false;
    const ke = endOfString(b, i + 1, e);
    if (ke < 0 || b[ke] !== COLON) return false;
    const f = innerField(parent, b, i + 1, ke - 1);
    const vs = ke + 1;
    const ve = skipForward(b, vs, e);
    if (ve < 0) return false;
    if (f >= 0) {
      if (at[2 * f] !== -1) return false;
      at[2 * f] = vs;
      at[2 * f + 1] = ve;
    }
    if (b[ve] === RBRACE) return ve === e - 1;
    if (b[ve] !== COMMA) return false;
    i = ve + 1;
  }
}

/**
 * scanBody's positions for a body known to be the writer's canonical JSON (sorted keys, each
 * once, no whitespace): reads members from the start up to objectDigest and from the end back to
 * prevHash, and never the values between (the patch, most of a record's bytes). It does not
 * validate the rest: the caller may use it only where a later check fails unless the body is the
 * one the writer hashed (verify-range.ts: a record at or before a signed checkpoint, whose hash
 * chain up to it is checked; a body that is not the writer's then shows there, and verify.ts runs
 * the strict check to name it). False when the body does not read as expected.
 */
export function scanSignedBody(b: Buffer, at: Int32Array): boolean {
  at.fill(-1);
  const end = b.length;
  if (end < 2 || b[0] !== LBRACE || b[end - 1] !== RBRACE) return false;
  // From the start: members whose keys sort up to objectDigest.
  let i = 1;
  for (;;) {
    if (b[i] !== QUOTE) return false;
    const ke = endOfString(b, i + 1, end);
    if (ke < 0 || b[ke] !== COLON) return false;
    if (compareKey(b, i + 1, ke - 1, 'objectDigest') > 0) break;
    const f = topField(b, i + 1, ke - 1);
    const vs = ke + 1;
    const ve = skipForward(b, vs, end);
    if (ve < 0) return false;
    if (f >= 0) {
      at[2 * f] = vs;
      at[2 * f + 1] = ve;
    }
    if (b[ve] !== COMMA) return b[ve] === RBRACE && ve === end - 1 && noteInners(b, at);
    i = ve + 1;
  }
  // From the end: members whose keys sort from prevHash on.
  let j = end - 2;
  for (;;) {
    const vs = skipBackward(b, j);
    if (vs < 2 || b[vs - 1] !== COLON || b[vs - 2] !== QUOTE) return false;
    const ks = startOfString(b, vs - 2);
    if (ks < 1) return false;
    const order = compareKey(b, ks + 1, vs - 2, 'prevHash');
    if (order < 0) break;
    const f = topField(b, ks + 1, vs - 2);
    if (f >= 0) {
      at[2 * f] = vs;
      at[2 * f + 1] = j + 1;
    }
    if (order === 0 || b[ks - 1] !== COMMA) break;
    j = ks - 2;
  }
  return noteInners(b, at);
}

function noteInners(b: Buffer, at: Int32Array): boolean {
  const k = at[2 * FIELD.kind]!;
  if (k >= 0 && b[k] === LBRACE && !noteInner(b, FIELD.kind, k, at[2 * FIELD.kind + 1]!, at)) return false;
  const t = at[2 * FIELD.tekton]!;
  return !(t >= 0 && b[t] === LBRACE && !noteInner(b, FIELD.tekton, t, at[2 * FIELD.tekton + 1]!, at));
}
