/**
 * The ServiceAccount index (decision_sas) checked set-wise by the parallel verifier, instead of
 * one lookup per record: every index row, as the line `key⇥time⇥decision_id⇥namespace⇥kind⇥verdict⇥writer`,
 * is hashed with a key drawn for this verification and the hashes summed; the verify workers sum
 * the lines each verified record implies (its keys, saKeysOf, with its own columns) with the same
 * key. Equal sums and counts mean the index holds exactly the implied rows (a forger cannot aim at
 * a sum under a key drawn after the edit); any difference sends the verification to the per-record
 * check (verify.ts), which names the record.
 *
 * Lines are compared as text: an implied line has exactly six tabs and no newline (its fields are
 * checked for both), so an index row whose fields hold tabs or newlines can never equal one.
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

/** Adds the hash of `s`'s code units [from, to) under `key` to `sum`. */
export function addLine(sum: AccountSum, key: AccountKey, s: string, from = 0, to = s.length): void {
  const k0 = key[0];
  const k1 = key[1];
  let v0 = k0;
  let v1 = k1 ^ 0xee;
  let v2 = 0x6c796765 ^ k0;
  let v3 = 0x74656462 ^ k1;
  let i = from;
  for (; i + 1 < to; i += 2) {
    const m = s.charCodeAt(i) | (s.charCodeAt(i + 1) << 16);
    v3 ^= m;
    v0 = (v0 + v1) | 0; v1 = (v1 << 5) | (v1 >>> 27); v1 ^= v0; v0 = (v0 << 16) | (v0 >>> 16);
    v2 = (v2 + v3) | 0; v3 = (v3 << 8) | (v3 >>> 24); v3 ^= v2;
    v0 = (v0 + v3) | 0; v3 = (v3 << 7) | (v3 >>> 25); v3 ^= v0;
    v2 = (v2 + v1) | 0; v1 = (v1 << 13) | (v1 >>> 19); v1 ^= v2; v2 = (v2 << 16) | (v2 >>> 16);
    v0 ^= m;
  }
  const last = (((to - from) & 0xff) << 24) | (i < to ? s.charCodeAt(i) : 0);
  v3 ^= last;
  v0 = (v0 + v1) | 0; v1 = (v1 << 5) | (v1 >>> 27); v1 ^= v0; v0 = (v0 << 16) | (v0 >>> 16);
  v2 = (v2 + v3) | 0; v3 = (v3 << 8) | (v3 >>> 24); v3 ^= v2;
  v0 = (v0 + v3) | 0; v3 = (v3 << 7) | (v3 >>> 25); v3 ^= v0;
  v2 = (v2 + v1) | 0; v1 = (v1 << 13) | (v1 >>> 19); v1 ^= v2; v2 = (v2 << 16) | (v2 >>> 16);
  v0 ^= last;
  v2 ^= 0xee;
  for (let r = 0; r < 3; r++) {
    v0 = (v0 + v1) | 0; v1 = (v1 << 5) | (v1 >>> 27); v1 ^= v0; v0 = (v0 << 16) | (v0 >>> 16);
    v2 = (v2 + v3) | 0; v3 = (v3 << 8) | (v3 >>> 24); v3 ^= v2;
    v0 = (v0 + v3) | 0; v3 = (v3 << 7) | (v3 >>> 25); v3 ^= v0;
    v2 = (v2 + v1) | 0; v1 = (v1 << 13) | (v1 >>> 19); v1 ^= v2; v2 = (v2 << 16) | (v2 >>> 16);
  }
  const out0 = v1 ^ v3;
  v1 ^= 0xdd;
  for (let r = 0; r < 3; r++) {
    v0 = (v0 + v1) | 0; v1 = (v1 << 5) | (v1 >>> 27); v1 ^= v0; v0 = (v0 << 16) | (v0 >>> 16);
    v2 = (v2 + v3) | 0; v3 = (v3 << 8) | (v3 >>> 24); v3 ^= v2;
    v0 = (v0 + v3) | 0; v3 = (v3 << 7) | (v3 >>> 25); v3 ^= v0;
    v2 = (v2 + v1) | 0; v1 = (v1 << 13) | (v1 >>> 19); v1 ^= v2; v2 = (v2 << 16) | (v2 >>> 16);
  }
  sum.lines++;
  sum.lo = (sum.lo + out0) >>> 0;
  sum.hi = (sum.hi + (v1 ^ v3)) >>> 0;
}

/** Whether `s` can be a field of an implied line (no tab, no newline). */
export function isLineField(s: string): boolean {
  return s.indexOf('\t') < 0 && s.indexOf('\n') < 0;
}

/** Index rows per read of sumAccountRows. */
const ACCOUNT_CHUNK = 20_000;

/**
 * Sums every decision_sas row of `db` under `key`, in chunks (awaiting between them so the
 * caller's event loop runs). Read inside one transaction the caller holds, so the rows are those
 * of the snapshot the verification planned from. Undefined when a row's fields hold a newline (the
 * lines could not be told apart; the per-record check decides then).
 */
export async function sumAccountRows(db: Database.Database, key: AccountKey): Promise<AccountSum | undefined> {
  const line = "s.key || char(9) || s.time || char(9) || s.decision_id || char(9) || s.namespace || char(9) || s.kind || char(9) || s.verdict || char(9) || s.writer";
  const first = db.prepare(`SELECT group_concat(line, char(10)) AS lines, count(*) AS n FROM (SELECT ${line} AS line FROM decision_sas s ORDER BY s.key, s.time, s.decision_id LIMIT ?)`);
  const next = db.prepare(
    `SELECT group_concat(line, char(10)) AS lines, count(*) AS n FROM (SELECT ${line} AS line FROM decision_sas s WHERE (s.key, s.time, s.decision_id) > (?, ?, ?) ORDER BY s.key, s.time, s.decision_id LIMIT ?)`,
  );
  const sum = emptyAccountSum();
  let after: [string, string, string] | undefined;
  for (;;) {
    const { lines, n } = (after ? next.get(...after, ACCOUNT_CHUNK) : first.get(ACCOUNT_CHUNK)) as { lines: string | null; n: number };
    if (lines === null || n === 0) return sum;
    let from = 0;
    let count = 0;
    for (;;) {
      const to = lines.indexOf('\n', from);
      addLine(sum, key, lines, from, to < 0 ? lines.length : to);
      count++;
      if (to < 0) break;
      from = to + 1;
    }
    if (count !== n) return undefined;
    if (n < ACCOUNT_CHUNK) return sum;
    const lastFields = lines.slice(from).split('\t');
    if (lastFields.length !== 7) return undefined;
    after = [lastFields[0]!, lastFields[1]!, lastFields[2]!];
    await new Promise((resolve) => setImmediate(resolve));
  }
}
