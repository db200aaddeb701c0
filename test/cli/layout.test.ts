// The dispatcher (webhook/cli/run.ts) is the only CLI module that knows every command: command
// modules depend on the command interface (command.ts), never on the dispatcher.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { run } from '../../webhook/cli/run.js';

const CLI_DIR = join(import.meta.dirname, '../../webhook/cli');

t.test('no CLI module imports the dispatcher', async (t) => {
  const importers = readdirSync(CLI_DIR)
    .filter((f) => f.endsWith('.ts') && f !== 'run.ts')
    .filter((f) => /from '\.\/run\.js'|import\('\.\/run\.js'\)/.test(readFileSync(join(CLI_DIR, f), 'utf8')));
  t.strictSame(importers, []);
});

t.test('unknown and partial commands are usage errors; help lists every command', async (t) => {
  for (const argv of [['mappings'], ['decisions'], ['decisions', 'constructor'], ['nope']]) {
    let err = '';
    const code = await run(argv, { stdout: () => {}, stderr: (s) => { err += s; }, env: {}, cwd: '/', hostname: 'h', readFile: () => '', onSignal: () => {} });
    t.equal(code, 2, argv.join(' '));
    t.match(err, /unknown command/);
  }
});
