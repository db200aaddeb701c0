/**
 * Writes the auditor console's bundled assets to a folder (`npm run build` → dist/console/, which
 * the container image ships). The server serves that copy when present and otherwise bundles
 * webhook/console/ui/ on first use, so development needs no build step.
 */
import { resolve } from 'node:path';
import { writeConsoleAssets } from '../webhook/console/assets.js';

const out = resolve(process.argv[2] ?? 'dist/console');
await writeConsoleAssets(out);
process.stdout.write(`auditor console assets written to ${out}\n`);
