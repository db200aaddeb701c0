import t from 'tap';
import { readFileSync } from 'node:fs';
import { configTable, reasonTable } from '../scripts/readme-tables.js';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

t.test('README shows the two commands', async (t) => {
  t.match(readme, /npm ci && npm start/);
  t.match(readme, /npm ci && npm test/);
});

t.test('README config table is the one generated from the schema', async (t) => {
  t.ok(readme.includes(configTable()), 'regenerate with: npx tsx scripts/readme-tables.ts config');
});

t.test('README reason-code table is the one generated from the code', async (t) => {
  t.ok(readme.includes(reasonTable()), 'regenerate with: npx tsx scripts/readme-tables.ts reasons');
});

t.test('README has no unfilled placeholders', async (t) => {
  t.notMatch(readme, /\b[A-Z]+_(SECTION|TABLE|CODES|OUTPUT)\b/);
});
