/**
 * The server's buffered log destination (webhook/log.ts): a quiet server's line is written within
 * the flush interval, a busy one's lines go out in 4 KiB writes without waiting for it, lines
 * still waiting are written when the process exits, and redaction applies.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LOG_BUFFER_BYTES, LOG_FLUSH_MS, createLogger } from '../../webhook/log.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const lines = (file: string): Array<Record<string, unknown>> =>
  readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);

t.test('a single line waits in the buffer, then the timer writes it within the flush interval', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tzw-log-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'out.log');
  const logger = createLogger({ level: 'info', replica: 'r-0', dest: file });
  logger.info({ decision: { id: 'd1' }, auth: { token: 'secret-token' } }, 'admission decision');
  await sleep(50);
  t.same(lines(file), [], 'held back while under 4 KiB');
  await sleep(LOG_FLUSH_MS + 500);
  const got = lines(file);
  t.equal(got.length, 1);
  t.match(got[0], { replica: 'r-0', msg: 'admission decision', decision: { id: 'd1' }, auth: { token: '[redacted]' } });
});

t.test('a busy logger writes once 4 KiB wait, without waiting for the timer', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tzw-log-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'out.log');
  const logger = createLogger({ level: 'info', replica: 'r-0', dest: file });
  const n = Math.ceil((LOG_BUFFER_BYTES * 3) / 100);
  for (let i = 0; i < n; i++) logger.info({ i, pad: 'x'.repeat(40) }, 'line');
  await sleep(200);
  const got = lines(file);
  t.ok(got.length >= n / 2, `${got.length} of ${n} lines written before the first timer tick`);
  t.same(got.map((l) => l.i), got.map((_, i) => i), 'in order, none lost');
});

t.test('lines still waiting are written when the process exits', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tzw-log-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'out.log');
  // A file descriptor, as the server's stdout is (a path would still be opening at the exit).
  const script = `import { openSync } from 'node:fs';
import { createLogger } from ${JSON.stringify(new URL('../../webhook/log.ts', import.meta.url).href)};
const logger = createLogger({ level: 'info', replica: 'r-1', dest: openSync(${JSON.stringify(file)}, 'a') });
logger.info('last words'); process.exit(0);`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
  t.equal(r.status, 0, r.stderr);
  t.match(lines(file), [{ replica: 'r-1', msg: 'last words' }]);
});
