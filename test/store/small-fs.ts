/**
 * A size-limited filesystem for disk-full tests: a tmpfs the test mounts (needs root, or at least
 * CAP_SYS_ADMIN) on a temporary directory and unmounts at teardown, with a filler file that takes
 * every free byte and gives it back. Where mounting is not permitted the caller falls back to
 * SQLite's max_page_count (SqliteStore.capPages) and says so. TZW_TEST_DISK_FULL=pages forces that
 * fallback even as root, to exercise it.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface SmallFs {
  dir: string;
  /** Fills every free byte with a filler file; returns its size. */
  fill(): number;
  /** Removes the filler file: the space is back. */
  free(): void;
}

export type SmallFsResult = { ok: true; fs: SmallFs } | { ok: false; why: string };

interface Teardown {
  teardown(fn: () => void | Promise<void>): void;
}

/** Why no tmpfs can be mounted here (tries one), for tap's `skip`; undefined when it can. */
export function smallFsUnavailable(): string | undefined {
  const probe = mountSmallFs({ teardown: () => undefined }, 64 * 1024);
  if (!probe.ok) return probe.why;
  execFileSync('umount', [probe.fs.dir]);
  rmSync(probe.fs.dir, { recursive: true, force: true });
  return undefined;
}

/** Mounts a tmpfs of `sizeBytes` (owned by `owner` when given) or says why it cannot. */
export function mountSmallFs(t: Teardown, sizeBytes: number, owner?: { uid: number; gid: number }): SmallFsResult {
  if (process.env.TZW_TEST_DISK_FULL === 'pages') return { ok: false, why: 'TZW_TEST_DISK_FULL=pages asks for the max_page_count fallback' };
  if (process.getuid?.() !== 0) return { ok: false, why: 'not root: cannot mount a tmpfs' };
  const dir = mkdtempSync(join(tmpdir(), 'tzw-smallfs-'));
  const options = [`size=${sizeBytes}`, 'mode=0700', ...(owner ? [`uid=${owner.uid}`, `gid=${owner.gid}`] : [])].join(',');
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    const stderr = String((err as { stderr?: Buffer }).stderr ?? '').trim();
    return { ok: false, why: `mount -t tmpfs refused: ${stderr || (err as Error).message}` };
  }
  t.teardown(() => {
    // Lazy: a connection a failed test left open must not keep the mount (and the test) alive.
    execFileSync('umount', ['-l', dir]);
    rmSync(dir, { recursive: true, force: true });
  });
  const filler = join(dir, 'filler');
  return {
    ok: true,
    fs: {
      dir,
      fill() {
        const fd = openSync(filler, 'a');
        let size = 0;
        try {
          // Big chunks first, then single pages and bytes, so nothing is left over.
          for (const chunk of [1 << 16, 4096, 1].map((n) => Buffer.alloc(n, 0x5a))) {
            for (;;) {
              try {
                const n = writeSync(fd, chunk);
                size += n;
                if (n < chunk.length) break;
              } catch (err) {
                if ((err as { code?: string }).code === 'ENOSPC') break;
                throw err;
              }
            }
          }
        } finally {
          closeSync(fd);
        }
        return size;
      },
      free() {
        rmSync(filler, { force: true });
      },
    },
  };
}
