/** Small statistics for the benchmark. Pure. */

/** /proc's CPU times (steal in /proc/stat, a thread's utime and stime) count USER_HZ ticks: 100 per second on Linux. */
export const PROC_TICK_MS = 10;

/** Nearest-rank percentile of an ascending array (`q` in 0..1); NaN when empty. */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[rank - 1]!;
}

/** Median of unsorted numbers; NaN when empty. */
export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Rounds to `digits` decimals (for the JSON line and the table). */
export function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
