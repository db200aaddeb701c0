/**
 * Prints the README's generated tables (config keys, reason codes) from the code, so they cannot
 * drift: `npx tsx scripts/readme-tables.ts config|reasons`. test/readme.test.ts checks the README.
 */
import { configLeaves } from '../webhook/config/load.js';
import { defaultConfig } from '../webhook/config/schema.js';
import { REASONS } from '../webhook/core/reasons.js';

export function configTable(): string {
  const defaults = defaultConfig('(hostname)') as unknown as Record<string, unknown>;
  const rows = ['| key | env override | type | default | meaning |', '|---|---|---|---|---|'];
  for (const leaf of configLeaves()) {
    let v: unknown = defaults;
    for (const p of leaf.path) v = (v as Record<string, unknown> | undefined)?.[p];
    const s = leaf.schema as { enum?: string[]; type?: string; description?: string };
    const type = s.enum ? s.enum.join(' \\| ') : s.type ?? '';
    const def = v === undefined ? '—' : '`' + JSON.stringify(v).replace(/\|/g, '\\|') + '`';
    rows.push(`| \`${leaf.path.join('.')}\` | \`${leaf.env}\` | ${type} | ${def} | ${s.description ?? ''} |`);
  }
  return rows.join('\n');
}

export function reasonTable(): string {
  const rows = ['| code | meaning |', '|---|---|'];
  for (const [code, text] of Object.entries(REASONS)) rows.push(`| \`${code}\` | ${text} |`);
  return rows.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const what = process.argv[2];
  if (what === 'config') console.log(configTable());
  else if (what === 'reasons') console.log(reasonTable());
  else {
    console.error('usage: readme-tables.ts config|reasons');
    process.exitCode = 2;
  }
}
