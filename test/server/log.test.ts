/**
 * The server's logger (webhook/log.ts): a line reaches its destination at once, redacted, and lines
 * logged just before the process exits are not lost to the asynchronous destination.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../../webhook/log.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const lines = (file: string): Array<Record<string, unknown>> =>
  readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);

t.test('a line is written at once, with the replica and redaction', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tzw-log-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'out.log');
  const logger = createLogger({ level: 'info', replica: 'r-0', dest: openSync(file, 'a') });
  logger.info({ decision: { id: 'd1' }, auth: { token: 'secret-token' } }, 'admission decision');
  await sleep(100);
  const got = lines(file);
  t.equal(got.length, 1);
  t.match(got[0], { replica: 'r-0', msg: 'admission decision', decision: { id: 'd1' }, auth: { token: '[redacted]' } });
  t.notMatch(readFileSync(file, 'utf8'), /secret-token/);
});

t.test('lines logged just before the process exits are written', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tzw-log-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'out.log');
  // A file descriptor, as the server's stdout is.
  const script = `import { openSync } from 'node:fs';
import { createLogger } from ${JSON.stringify(new URL('../../webhook/log.ts', import.meta.url).href)};
const logger = createLogger({ level: 'info', replica: 'r-1', dest: openSync(${JSON.stringify(file)}, 'a') });
for (let i = 0; i < 200; i++) logger.info({ i }, 'line');
logger.info('last words'); process.exit(0);`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
  t.equal(r.status, 0, r.stderr);
  const got = lines(file);
  t.equal(got.length, 201, 'all 201 lines');
  t.match(got.at(-1), { replica: 'r-1', msg: 'last words' });
});
