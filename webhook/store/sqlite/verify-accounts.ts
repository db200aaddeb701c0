/**
 * The ServiceAccount index (decision_sas) checked set-wise by the parallel verifier, instead of
 * one lookup per record: every index row, as the line `time⇥decision_id⇥namespace⇥kind⇥verdict⇥writer⇥key`,
 * is hashed with a key drawn for this verification and the hashes summed; the verify workers sum
 * the lines each verified record implies (its keys, saKeysOf, with its own columns) with the same
 * key. Equal sums and counts mean the index holds exactly the implied rows (a forger cannot aim at
 * a sum under a key drawn after the edit); any difference sends the verification to the per-record
 * check (verify.ts), which names the record.
 *
 * Lines are compared as text: an implied line has exactly six tabs and no newline (its fields are
 * checked for both), so an index row whose fields hold tabs or newlines can never equal one, and
 * an index row whose line equals an implied line holds exactly that line's fields. A field that
 * is not text where the per-record check compares with `=` makes the row's line a lone newline.
 * The hash is HalfSipHash-1-3 (64-bit output) over the line's UTF-16 code units, two per word.
 */
import type Database from 'better-sqlite3';

/** A sum of line hashes: lines counted, and the 64-bit hashes summed as two 32-bit lanes. */
export interface AccountSum {
  lines: number;
  lo: number;
  hi: number;
}

/** The hash key: two 32-bit words. */
export type AccountKey = readonly [number, number];

export function emptyAccountSum(): AccountSum {
  return { lines: 0, lo: 0, hi: 0 };
}

export function addAccountSums(a: AccountSum, b: AccountSum): AccountSum {
  return { lines: a.lines + b.lines, lo: (a.lo + b.lo) >>> 0, hi: (a.hi + b.hi) >>> 0 };
}

export function sameAccountSums(a: AccountSum, b: AccountSum): boolean {
  return a.lines === b.lines && a.lo === b.lo && a.hi === b.hi;
}

/** The last HalfSipHash-1-3 steps (the final word, then the 64-bit output) of a line of `units` code units; adds the output to `sum`. */
function finish(sum: AccountSum, v0: number, v1: number, v2: number, v3: number, units: number, tail: number): void {
  const last = ((units & 0xff) << 24) | tail;
  v3 ^= last;
  v0 = (v0 + v1) | 0; v1 = (v1 << 5) | (v1 >>> 27); v1 ^= v0; v0 = (v0 << 16) | (v0 >>> 16);
  v2 = (v2 + v3) | 0; v3 = (v3 << 8) | (v3 >>> 24); v3 ^= v2;
  v0 = (v0 + v3) | 0; v3 = (v3 << 7) | (v3 >>> 25); v3 ^= v0;
  v2 = (v2 + v1) | 0; v1 = (v1 << 13) | (v1 >>> 19); v1 ^= v2; v2 = (v2 << 16) | (v2 >>> 16);
  v0 ^= last;
  v2 ^= 0xee;
  for (let r = 0; r < 6; r++) {
    if (r === 3) {
      sum.lo = (sum.lo + (v1 ^ v3)) >>> 0;
      v1 ^= 0xdd;
    }
    v0 = (v0 + v1) | 0; v1 = (v1 << 5) | (v1 >>> 27); v1 ^= v0; v0 = (v0 << 16) | (v0 >>> 16);
    v2 = (v2 + v3) | 0; v3 = (v3 << 8) | (v3 >>> 24); v3 ^= v2;
    v0 = (v0 + v3) | 0; v3 = (v3 << 7) | (v3 >>> 25); v3 ^= v0;
    v2 = (v2 + v1) | 0; v1 = (v1 << 13) | (v1 >>> 19); v1 ^= v2; v2 = (v2 << 16) | (v2 >>> 16);
  }
  sum.hi = (sum.hi + (v1 ^ v3)) >>> 0;
  sum.lines++;
}

/** Adds the hash of the line `s` under `key` to `sum`. */
export function addLine(sum: AccountSum, key: AccountKey, s: string): void {
  addLines(sum, key, s, ['']);
}

/**
 * Adds the hash of the line `prefix + suffix` under `key` to `sum`, for each suffix; the prefix
 * is taken once (its state is copied per suffix).
 */
export function addLines(sum: AccountSum, key: AccountKey, prefix: string, suffixes: readonly string[]): void {
  let a0 = key[0];
  let a1 = key[1] ^ 0xee;
  let a2 = 0x6c796765 ^ key[0];
  let a3 = 0x74656462 ^ key[1];
  const n = prefix.length;
  let i = 0;
  for (; i + 1 < n; i += 2) {
    const m = prefix.charCodeAt(i) | (prefix.charCodeAt(i + 1) << 16);
    a3 ^= m;
    a0 = (a0 + a1) | 0; a1 = (a1 << 5) | (a1 >>> 27); a1 ^= a0; a0 = (a0 << 16) | (a0 >>> 16);
    a2 = (a2 + a3) | 0; a3 = (a3 << 8) | (a3 >>> 24); a3 ^= a2;
    a0 = (a0 + a3) | 0; a3 = (a3 << 7) | (a3 >>> 25); a3 ^= a0;
    a2 = (a2 + a1) | 0; a1 = (a1 << 13) | (a1 >>> 19); a1 ^= a2; a2 = (a2 << 16) | (a2 >>> 16);
    a0 ^= m;
  }
  // A prefix of odd length leaves a code unit waiting for the suffix's first.
  const odd = i < n;
  const pending = odd ? prefix.charCodeAt(i) : 0;
  for (const suffix of suffixes) {
    let v0 = a0;
    let v1 = a1;
    let v2 = a2;
    let v3 = a3;
    const len = suffix.length;
    let j = 0;
    let tail = 0;
    if (odd) {
      if (len === 0) tail = pending;
      else {
        const m = pending | (suffix.charCodeAt(0) << 16);
        v3 ^= m;
        v0 = (v0 + v1) | 0; v1 = (v1 << 5) | (v1 >>> 27); v1 ^= v0; v0 = (v0 << 16) | (v0 >>> 16);
        v2 = (v2 + v3) | 0; v3 = (v3 << 8) | (v3 >>> 24); v3 ^= v2;
        v0 = (v0 + v3) | 0; v3 = (v3 << 7) | (v3 >>> 25); v3 ^= v0;
        v2 = (v2 + v1) | 0; v1 = (v1 << 13) | (v1 >>> 19); v1 ^= v2; v2 = (v2 << 16) | (v2 >>> 16);
        v0 ^= m;
        j = 1;
      }
    }
    for (; j + 1 < len; j += 2) {
      const m = suffix.charCodeAt(j) | (suffix.charCodeAt(j + 1) << 16);
      v3 ^= m;
      v0 = (v0 + v1) | 0; v1 = (v1 << 5) | (v1 >>> 27); v1 ^= v0; v0 = (v0 << 16) | (v0 >>> 16);
      v2 = (v2 + v3) | 0; v3 = (v3 << 8) | (v3 >>> 24); v3 ^= v2;
      v0 = (v0 + v3) | 0; v3 = (v3 << 7) | (v3 >>> 25); v3 ^= v0;
      v2 = (v2 + v1) | 0; v1 = (v1 << 13) | (v1 >>> 19); v1 ^= v2; v2 = (v2 << 16) | (v2 >>> 16);
      v0 ^= m;
    }
    if (j < len) tail = suffix.charCodeAt(j);
    finish(sum, v0, v1, v2, v3, n + len, tail);
  }
}

/** Whether `s` can be a field of an implied line (no tab, no newline). */
export function isLineField(s: string): boolean {
  return s.indexOf('\t') < 0 && s.indexOf('\n') < 0;
}

/** Index rows per read of sumAccountRows (about: a read ends at a key's last row). */
const ACCOUNT_CHUNK = 50_000;

/**
 * Sums every decision_sas row of `db` under `key`, in reads of whole keys (awaiting between them
 * so the caller's event loop runs). Read inside one transaction the caller holds, so the rows are
 * those of the snapshot the verification planned from.
 */
export async function sumAccountRows(db: Database.Database, key: AccountKey): Promise<AccountSum> {
  const sum = emptyAccountSum();
  db.function('tzw_account_line', { deterministic: false }, (line: unknown) => {
    addLine(sum, key, typeof line === 'string' ? line : '\n');
    return 1;
  });
  // The per-record check compares decision_id, namespace, kind, verdict and writer as text (=):
  // a row holding a blob there is marked (a newline) so that it cannot pass for a line.
  const line = `tzw_account_line(CASE WHEN typeof(s.decision_id) = 'text' AND typeof(s.namespace) = 'text' AND typeof(s.kind) = 'text' AND typeof(s.verdict) = 'text' AND typeof(s.writer) = 'text'
    THEN s.time || char(9) || s.decision_id || char(9) || s.namespace || char(9) || s.kind || char(9) || s.verdict || char(9) || s.writer || char(9) || s.key ELSE char(10) END)`;
  // Reads of keys (lo, hi] in the primary key's order; the first has no lower bound, the last no upper.
  const boundary = db.prepare('SELECT key FROM decision_sas WHERE key > ? ORDER BY key LIMIT 1 OFFSET ?').pluck();
  const firstBoundary = db.prepare('SELECT key FROM decision_sas ORDER BY key LIMIT 1 OFFSET ?').pluck();
  const upTo = db.prepare(`SELECT count(${line}) FROM decision_sas s WHERE s.key <= ?`);
  const between = db.prepare(`SELECT count(${line}) FROM decision_sas s WHERE s.key > ? AND s.key <= ?`);
  const from = db.prepare(`SELECT count(${line}) FROM decision_sas s WHERE s.key > ?`);
  const all = db.prepare(`SELECT count(${line}) FROM decision_sas s`);
  let lo = firstBoundary.get(ACCOUNT_CHUNK) as unknown;
  if (lo === undefined) {
    all.get();
    return sum;
  }
  upTo.get(lo);
  for (;;) {
    await new Promise((resolve) => setImmediate(resolve));
    const hi = boundary.get(lo, ACCOUNT_CHUNK) as unknown;
    if (hi === undefined) {
      from.get(lo);
      return sum;
    }
    between.get(lo, hi);
    lo = hi;
  }
}
