/**
 * Writes a stream of lines to a file atomically: into `PATH.tmp`, renamed to `PATH` only once every
 * line is written and flushed, so an interrupted or failed export never leaves a partial file under
 * the final name. Honours back-pressure. Errors: the lines' own, or fs errors naming the path; the
 * temporary file is removed on any error.
 */
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { once } from 'node:events';

export async function writeLinesAtomically(outPath: string, lines: AsyncIterable<string>, onLine?: (line: string) => void): Promise<void> {
  const tmp = `${outPath}.tmp`;
  const out = createWriteStream(tmp, { encoding: 'utf8' });
  const failed = new Promise<never>((_, reject) => out.once('error', reject));
  // Observed through Promise.race below; this handler only keeps an early error from being unhandled.
  failed.catch(() => undefined);
  try {
    for await (const line of lines) {
      onLine?.(line);
      if (!out.write(line + '\n')) await Promise.race([once(out, 'drain'), failed]);
    }
    out.end();
    await Promise.race([once(out, 'finish'), failed]);
    await rename(tmp, outPath);
  } catch (err) {
    // The stream may still be opening the file (its open is asynchronous): wait until it has let
    // go of it, or the open would create the .tmp again after it was removed.
    if (!out.closed) {
      const closed = new Promise<void>((resolve) => out.once('close', () => resolve()));
      out.destroy();
      await closed;
    }
    await rm(tmp, { force: true });
    throw err;
  }
}
