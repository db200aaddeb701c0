/** Bundling bench entry points to plain JavaScript, as the built image runs them. */
import { basename, dirname, extname, join } from 'node:path';

/**
 * Bundles each `[entry, outfile]` (paths under `root`) with esbuild for Node 20 as ESM, npm packages
 * left external. A worker module goes beside the bundle that starts it: store/thread.ts starts its
 * workers from the calling module's folder when it runs as built JavaScript.
 *
 * `split`: code behind a dynamic import() goes into chunks beside the bundle (esbuild splitting),
 * loaded when imported, with the npm packages it imports, as the built image (tsc output) loads
 * modules. Without it every npm package any module imports is loaded at start: the CLI's bundle
 * then loaded fastify, the Kubernetes client, pg and the rest for `decisions verify` (~1 s of
 * start-up the built `tzw` does not have).
 */
export async function bundleForNode(root: string, pairs: ReadonlyArray<readonly [entry: string, outfile: string]>, opts: { split?: boolean } = {}): Promise<void> {
  const esbuild = await import('esbuild');
  const common = { bundle: true, platform: 'node', format: 'esm', target: 'node20', packages: 'external', logLevel: 'warning' } as const;
  for (const [entry, outfile] of pairs) {
    if (opts.split) {
      const ext = extname(outfile);
      await esbuild.build({ ...common, entryPoints: { [basename(outfile, ext)]: join(root, entry) }, splitting: true, outdir: join(root, dirname(outfile)), outExtension: { '.js': ext } });
    } else {
      await esbuild.build({ ...common, entryPoints: [join(root, entry)], outfile: join(root, outfile) });
    }
  }
}
