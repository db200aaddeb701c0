/** Bundling bench entry points to plain JavaScript, as the built image runs them. */
import { join } from 'node:path';

/**
 * Bundles each `[entry, outfile]` (paths under `root`) with esbuild for Node 20 as ESM, npm packages
 * left external. A worker module goes beside the bundle that starts it: store/thread.ts starts its
 * workers from the calling module's folder when it runs as built JavaScript.
 */
export async function bundleForNode(root: string, pairs: ReadonlyArray<readonly [entry: string, outfile: string]>): Promise<void> {
  const esbuild = await import('esbuild');
  for (const [entry, outfile] of pairs) {
    await esbuild.build({ entryPoints: [join(root, entry)], bundle: true, platform: 'node', format: 'esm', target: 'node20', packages: 'external', outfile: join(root, outfile), logLevel: 'warning' });
  }
}
