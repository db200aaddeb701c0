/**
 * "The store is full" across adapters: SQLite's SQLITE_FULL (its own page limit, or the OS refusing
 * a write with ENOSPC, which SQLite reports as SQLITE_FULL), the OS's ENOSPC/EDQUOT on any other
 * file the store writes, and PostgreSQL's SQLSTATE 53100 (disk_full) — 53xxx is "insufficient
 * resources", but only 53100 is a full disk. A full store fails closed like any store error; the
 * adapters use this to log "store full" / "store recovered" instead of a generic write failure, so
 * an operator knows to free space rather than to look for a bug.
 */

/** Codes that mean "no space left", by where they come from. */
export const FULL_CODES: ReadonlySet<string> = new Set(['SQLITE_FULL', 'ENOSPC', 'EDQUOT', '53100']);

/**
 * The code that says `err` (or an error in its `cause` chain) is a full disk or database, e.g.
 * `SQLITE_FULL`, `ENOSPC`, `53100`; undefined for any other error. Pure.
 */
export function toFullCode(err: unknown): string | undefined {
  let e: unknown = err;
  for (let depth = 0; depth < 8 && typeof e === 'object' && e !== null; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && FULL_CODES.has(code)) return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}
