/**
 * A reserve file beside a store that can fill its own disk (the PostgreSQL spool on a volume
 * smaller than its limit): a few MiB of zeros written while there is room, given back when the
 * disk is full and the store needs room to *remove* data (forwarded records: a SQLite DELETE must
 * still write pages to its WAL). Without it a spool that filled its disk during a database outage
 * could never remove what it forwarded, and would stay full (and unready) after the database was
 * back. Appends never get the reserve: they fail closed until removals make room.
 */
import { closeSync, openSync, statSync, unlinkSync, writeSync } from 'node:fs';

export const DEFAULT_RESERVE_BYTES = 1024 * 1024;

export interface Reserve {
  readonly path: string;
  /** Writes the reserve if it is missing or short; false when the disk has no room for it yet (retry later). */
  restore(): boolean;
  /** Deletes the reserve; false when there was none to give. */
  release(): boolean;
}

/** The reserve at `path` (not created until restore()). */
export function createReserve(path: string, bytes = DEFAULT_RESERVE_BYTES): Reserve {
  const size = (): number => {
    try {
      return statSync(path).size;
    } catch {
      return -1;
    }
  };
  return {
    path,
    restore() {
      if (size() >= bytes) return true;
      let fd: number | undefined;
      try {
        fd = openSync(path, 'w', 0o600);
        const chunk = Buffer.alloc(Math.min(bytes, 64 * 1024));
        for (let written = 0; written < bytes; ) written += writeSync(fd, chunk, 0, Math.min(chunk.length, bytes - written));
        closeSync(fd);
        return true;
      } catch {
        // No room yet (ENOSPC) or not writable: no partial reserve, try again at the next recovery.
        if (fd !== undefined) closeSync(fd);
        try {
          unlinkSync(path);
        } catch {
          // already gone
        }
        return false;
      }
    },
    release() {
      try {
        unlinkSync(path);
        return true;
      } catch {
        return false;
      }
    },
  };
}
