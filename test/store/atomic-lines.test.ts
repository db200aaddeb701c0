/**
 * writeLinesAtomically (evidence/atomic-lines.ts): the file appears under its name only complete,
 * and a failure leaves neither the file nor its `.tmp`, however early the lines fail.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { writeLinesAtomically } from '../../webhook/store/evidence/atomic-lines.js';

const dir = mkdtempSync(join(tmpdir(), 'tzw-atomic-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

async function* linesThenFail(n: number): AsyncGenerator<string> {
  for (let i = 0; i < n; i++) yield `line ${i}`;
  throw Object.assign(new Error('stop'), { code: 'ERR_INTERRUPTED' });
}

t.test('complete: every line, under the final name, no .tmp', async (t) => {
  const path = join(dir, 'ok.jsonl');
  async function* three(): AsyncGenerator<string> {
    yield* ['a', 'b', 'c'];
  }
  await writeLinesAtomically(path, three());
  t.equal(readFileSync(path, 'utf8'), 'a\nb\nc\n');
  t.notOk(existsSync(`${path}.tmp`));
});

t.test('a failure before, at or after the first line leaves no file and no .tmp (the stream may still be opening it)', async (t) => {
  // Failing at once races the write stream's asynchronous open: the .tmp must not appear after
  // the cleanup ran. Many rounds, since the open's timing varies.
  for (const n of [0, 1, 5]) {
    let left = 0;
    for (let round = 0; round < 40; round++) {
      const path = join(dir, `fail-${n}-${round}.jsonl`);
      await t.rejects(writeLinesAtomically(path, linesThenFail(n)), { code: 'ERR_INTERRUPTED' });
      if (existsSync(path) || existsSync(`${path}.tmp`)) left++;
    }
    t.equal(left, 0, `failing after ${n} line(s): nothing left in 40 rounds`);
  }
});
