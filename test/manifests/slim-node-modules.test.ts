/**
 * scripts/slim-node-modules.sh, which the image's build stage runs on its pruned node_modules: run
 * with sh on a node_modules tree shaped like the real one, then what is left is listed.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';

const SCRIPT = fileURLToPath(new URL('../../scripts/slim-node-modules.sh', import.meta.url));

function run(...args: string[]) {
  return spawnSync('sh', [SCRIPT, ...args], { encoding: 'utf8' });
}

function files(root: string, dir = ''): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((e) => {
    const path = posix.join(dir, e.name);
    return e.isDirectory() ? [`${path}/`, ...files(root, path)] : [path];
  });
}

const TREE = [
  // Build-only packages.
  'esbuild/package.json',
  'esbuild/LICENSE.md',
  'esbuild/bin/esbuild',
  '@esbuild/linux-x64/bin/esbuild',
  'uplot/dist/uPlot.esm.js',
  '@nozbe/simdjson/LICENSE',
  '@nozbe/simdjson/src/simdjson.cpp',
  // A native addon built by node-gyp, with its sources.
  'better-sqlite3/package.json',
  'better-sqlite3/binding.gyp',
  'better-sqlite3/lib/index.js',
  'better-sqlite3/LICENSE',
  'better-sqlite3/build/Makefile',
  'better-sqlite3/build/config.gypi',
  'better-sqlite3/build/Release/better_sqlite3.node',
  'better-sqlite3/build/Release/obj.target/better_sqlite3.node',
  'better-sqlite3/build/Release/obj.target/better_sqlite3/src/better_sqlite3.o',
  'better-sqlite3/build/Release/sqlite3.a',
  'better-sqlite3/deps/sqlite3/sqlite3.c',
  'better-sqlite3/src/better_sqlite3.cpp',
  // One whose bundled library's licenses must stay.
  'zstd-napi/binding.gyp',
  'zstd-napi/binding.js',
  'zstd-napi/NOTICE',
  'zstd-napi/build/Release/binding.node',
  'zstd-napi/deps/zstd/LICENSE',
  'zstd-napi/deps/zstd/COPYING',
  'zstd-napi/deps/zstd/lib/zstd.c',
  'zstd-napi/src/binding.cc',
  // A scoped local addon with a nested build-only dependency.
  '@tzw/jcs-native/binding.gyp',
  '@tzw/jcs-native/index.cjs',
  '@tzw/jcs-native/src/jcs.cc',
  '@tzw/jcs-native/build/Release/jcs.node',
  '@tzw/jcs-native/node_modules/node-addon-api/LICENSE.md',
  '@tzw/jcs-native/node_modules/node-addon-api/napi.h',
  // Plain packages, untouched (a src/ or build/ folder of a package without binding.gyp stays).
  'fastify/package.json',
  'fastify/fastify.js',
  'pino/src/index.js',
  'pino/build/x.js',
];

t.test('keeps what runs and license files; drops build-only packages, addon objects and sources', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'tzw-slim-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  for (const f of TREE) {
    mkdirSync(dirname(join(root, f)), { recursive: true });
    writeFileSync(join(root, f), f);
  }
  const r = run(root);
  t.equal(r.status, 0, r.stderr);
  t.strictSame(
    files(root).filter((f) => !f.endsWith('/')).sort(),
    [
      '@nozbe/simdjson/LICENSE',
      '@tzw/jcs-native/binding.gyp',
      '@tzw/jcs-native/build/Release/jcs.node',
      '@tzw/jcs-native/index.cjs',
      '@tzw/jcs-native/node_modules/node-addon-api/LICENSE.md',
      'better-sqlite3/LICENSE',
      'better-sqlite3/binding.gyp',
      'better-sqlite3/build/Release/better_sqlite3.node',
      'better-sqlite3/lib/index.js',
      'better-sqlite3/package.json',
      'fastify/fastify.js',
      'fastify/package.json',
      'pino/build/x.js',
      'pino/src/index.js',
      'zstd-napi/NOTICE',
      'zstd-napi/binding.gyp',
      'zstd-napi/binding.js',
      'zstd-napi/build/Release/binding.node',
      'zstd-napi/deps/zstd/COPYING',
      'zstd-napi/deps/zstd/LICENSE',
    ],
  );
  t.notOk(files(root).some((f) => f.startsWith('esbuild') || f.startsWith('@esbuild') || f.startsWith('uplot') || f.includes('/src/') && !f.startsWith('pino/')), 'no empty folders left where everything went');
  t.equal(run(root).status, 0, 'a second run changes nothing and succeeds');
});

t.test('a wrong call is refused with a clear message and touches nothing', async (t) => {
  const none = run();
  t.equal(none.status, 2);
  t.match(none.stderr, /^usage: sh scripts\/slim-node-modules\.sh NODE_MODULES_DIR/);
  const missing = run(join(tmpdir(), 'tzw-no-such-node-modules'));
  t.equal(missing.status, 2);
  t.match(missing.stderr, /is not a directory/);
  const two = run('a', 'b');
  t.equal(two.status, 2);
});
