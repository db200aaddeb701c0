/**
 * The Dockerfile, checked statically (no Docker daemon here): stages, Node major, non-root user,
 * what reaches the runtime image, the command, and that the build context holds every source file
 * tsc compiles and every package the server imports at run time is a production dependency.
 */
import t from 'tap';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, posix, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { command, nodeMajor, ports } from './server-contract.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const read = (file: string) => readFileSync(join(ROOT, file), 'utf8');

interface Instruction {
  keyword: string;
  args: string;
}
interface Stage {
  from: string;
  as: string | undefined;
  instructions: Instruction[];
}

/** Dockerfile → stages. Joins `\` continuations, drops comments and blank lines. */
function parseDockerfile(text: string): Stage[] {
  const logical = text
    .replace(/\\\r?\n/g, ' ')
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
  const stages: Stage[] = [];
  for (const line of logical) {
    const match = /^(\w+)\s+(.*)$/.exec(line);
    if (match === null) throw new Error(`cannot read Dockerfile line: ${line}`);
    const keyword = match[1]!.toUpperCase();
    const args = match[2]!.replace(/\s+/g, ' ');
    if (keyword === 'FROM') {
      const from = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      if (from === null) throw new Error(`cannot read FROM ${args}`);
      stages.push({ from: from[1]!, as: from[2], instructions: [] });
    } else {
      const stage = stages.at(-1);
      if (stage === undefined) throw new Error(`${keyword} before FROM`);
      stage.instructions.push({ keyword, args });
    }
  }
  return stages;
}

interface Copy {
  from: string | undefined;
  sources: string[];
  destination: string;
}

function toCopies(stage: Stage): Copy[] {
  return stage.instructions
    .filter((i) => i.keyword === 'COPY')
    .map((i) => {
      const words = i.args.split(' ');
      const flags = words.filter((w) => w.startsWith('--'));
      const paths = words.filter((w) => !w.startsWith('--'));
      const from = flags.find((f) => f.startsWith('--from='))?.slice('--from='.length);
      return { from, sources: paths.slice(0, -1), destination: paths.at(-1)! };
    });
}

function execForm(stage: Stage, keyword: string): unknown {
  const found = stage.instructions.filter((i) => i.keyword === keyword);
  if (found.length !== 1) throw new Error(`expected one ${keyword}, found ${found.length}`);
  return JSON.parse(found[0]!.args);
}

/** A Docker/.dockerignore pattern as a RegExp over slash paths (`*` within a segment, `**` across). */
function toPatternRegExp(pattern: string): RegExp {
  const body = pattern
    .replace(/^\/+|\/+$/g, '')
    .split('**')
    .map((part) => part.replace(/[.+^${}()|[\]\\?]/g, '\\$&').replace(/\*/g, '[^/]*'))
    .join('.*');
  return new RegExp(`^${body}$`);
}

/** .dockerignore semantics: the last pattern matching the path or one of its parents decides. */
function isInContext(path: string, dockerignore: string[]): boolean {
  const candidates = path.split('/').map((_, i, parts) => parts.slice(0, i + 1).join('/'));
  let included = true;
  for (const line of dockerignore) {
    const negated = line.startsWith('!');
    const regexp = toPatternRegExp(negated ? line.slice(1) : line);
    if (candidates.some((c) => regexp.test(c))) included = negated;
  }
  return included;
}

/** Whether a COPY source (a file, directory or glob) brings `path` into the image stage. */
function isCopiedBy(path: string, source: string): boolean {
  const clean = source.replace(/^\.\//, '').replace(/\/+$/, '');
  return clean === '.' || path === clean || path.startsWith(`${clean}/`) || toPatternRegExp(clean).test(path);
}

const stages = parseDockerfile(read('Dockerfile'));
const dockerignore = read('.dockerignore').split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
const packageJson = JSON.parse(read('package.json')) as { dependencies: Record<string, string>; devDependencies: Record<string, string>; scripts: Record<string, string>; bin: Record<string, string> };
const build = stages[0]!;
const runtime = stages.at(-1)!;

t.test('two stages: node:20-bookworm-slim build, distroless nodejs20 nonroot runtime', async (t) => {
  t.strictSame(
    stages.map((s) => ({ from: s.from, as: s.as })),
    [
      { from: 'node:20-bookworm-slim', as: 'build' },
      { from: 'gcr.io/distroless/nodejs20-debian12:nonroot', as: undefined },
    ],
  );
});

t.test('both images use the Node major of package.json engines (and .nvmrc when there is one)', async (t) => {
  const majors = [Number(/^node:(\d+)/.exec(build.from)?.[1]), Number(/nodejs(\d+)/.exec(runtime.from)?.[1])];
  t.strictSame(majors, [nodeMajor, nodeMajor]);
  t.equal(nodeMajor, 20);
  if (existsSync(join(ROOT, '.nvmrc'))) t.equal(Number(/(\d+)/.exec(read('.nvmrc'))?.[1]), nodeMajor, '.nvmrc');
});

t.test('build stage: native toolchain, npm ci, build, then prune to production dependencies', async (t) => {
  const runs = build.instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args);
  const apt = runs.find((r) => r.includes('apt-get install')) ?? '';
  t.strictSame(['python3', 'make', 'g++'].filter((p) => !apt.split(' ').includes(p)), [], 'python3, make and g++ for node-gyp');
  const steps = runs.join(' && ').split(/\s*&&\s*/);
  const at = (prefix: string) => steps.findIndex((s) => s.startsWith(prefix));
  t.ok(at('npm ci') >= 0 && at('npm ci') < at('npm run build') && at('npm run build') < at('npm prune --omit=dev'), `order: ${steps.join(' | ')}`);
  t.ok(at('sh scripts/slim-node-modules.sh node_modules') > at('npm prune --omit=dev'), 'then the build-only files go (scripts/slim-node-modules.sh, tested on its own)');
  t.ok(steps.every((s) => !s.startsWith('npm install')), 'npm ci, never npm install (the lock file decides)');
  t.match(packageJson.scripts.build, /^tsc -p \. && tsx scripts\/build-console\.ts dist\/console$/, 'npm run build is tsc on tsconfig.json, then the console bundle into dist/');
  const buildSources = toCopies(build).filter((c) => c.from === undefined).flatMap((c) => c.sources);
  t.ok(['scripts/build-console.ts', 'webhook/console/ui/main.ts'].every((f) => isInContext(f, dockerignore) && buildSources.some((s) => isCopiedBy(f, s))), 'the console source and its build script reach the build stage');
});

t.test('runtime stage: non-root numeric USER, only dist + production node_modules + package.json, no shell use', async (t) => {
  const users = runtime.instructions.filter((i) => i.keyword === 'USER').map((i) => i.args);
  t.strictSame(users, ['65532:65532']);
  t.strictSame(
    toCopies(runtime).map((c) => ({ from: c.from, sources: c.sources })),
    [
      { from: 'build', sources: ['/app/package.json'] },
      { from: 'build', sources: ['/app/node_modules'] },
      { from: 'build', sources: ['/app/dist'] },
    ],
  );
  t.strictSame(runtime.instructions.filter((i) => i.keyword === 'RUN'), [], 'distroless has no shell to RUN in');
  // node_modules is copied only after `npm prune --omit=dev` ran in the build stage (checked above).
  const last = build.instructions.filter((i) => i.keyword === 'RUN').at(-1)?.args ?? '';
  t.match(last, /npm prune --omit=dev/, 'pruning is the last build step, so no later step re-adds dev dependencies');
});

t.test('entrypoint and command start `tzw serve` with the config the Deployment mounts', async (t) => {
  t.strictSame(execForm(runtime, 'ENTRYPOINT'), ['/nodejs/bin/node', command.bin]);
  t.strictSame(execForm(runtime, 'CMD'), command.args);
  t.equal(packageJson.bin.tzw, command.bin);
  t.strictSame(runtime.instructions.filter((i) => i.keyword === 'EXPOSE').map((i) => i.args.split(' ').map(Number)), [[ports.admission, ports.audit, ports.metrics]]);
  // tsconfig compiles webhook/**/*.ts into dist/ keeping paths, so the bin's source must exist.
  const source = command.bin.replace(/^dist\//, '').replace(/\.js$/, '.ts');
  t.ok(existsSync(join(ROOT, source)), `${source} exists`);
});

/** .gitignore patterns (the simple forms ours uses): `dir/` or `*.db` at any depth, `a/b/` from the root. */
const gitignore = read('.gitignore').split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
function isGitIgnored(path: string): boolean {
  const ancestors = path.split('/').map((_, i, parts) => parts.slice(0, i + 1).join('/'));
  return gitignore.some((line) => {
    const pattern = line.replace(/^\/|\/$/g, '');
    const regexp = toPatternRegExp(pattern);
    return pattern.includes('/') ? ancestors.some((a) => regexp.test(a)) : ancestors.some((a) => regexp.test(posix.basename(a)));
  });
}

/** The repository's files under `dir` ('' = the root), without what .gitignore ignores (build output). */
function repositoryFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const path = dir === '' ? e.name : posix.join(dir, e.name);
    if (isGitIgnored(path)) return [];
    return e.isDirectory() ? repositoryFiles(path) : [path];
  });
}

// Every local file tsc compiles: webhook/**/*.ts plus what they import relatively (e.g. certs/lib.ts).
function toCompiledSources(): string[] {
  const seen = new Set<string>();
  const queue = repositoryFiles('webhook').filter((f) => f.endsWith('.ts'));
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    for (const specifier of toImports(read(file)).filter((s) => s.startsWith('.'))) {
      const target = relative(ROOT, join(ROOT, dirname(file), specifier.replace(/\.js$/, '.ts'))).split('\\').join('/');
      if (existsSync(join(ROOT, target))) queue.push(target);
    }
  }
  return [...seen].sort();
}

/** Module specifiers a file loads at run time (type-only imports are erased by tsc). */
function toImports(text: string): string[] {
  const statics = [...text.matchAll(/^\s*(?:import|export)\s+(?!type\s)(?:[^'";]*?\sfrom\s+)?['"]([^'"]+)['"]/gm)].map((m) => m[1]!);
  const dynamics = [...text.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)].map((m) => m[1]!);
  return [...statics, ...dynamics];
}

t.test('the build context and the COPY lines hold every file tsc compiles, and nothing secret', async (t) => {
  const sources = toCompiledSources();
  t.ok(sources.includes('certs/lib.ts'), 'the walk follows imports out of webhook/ (server.ts uses certs/lib.ts)');
  const buildSources = toCopies(build).filter((c) => c.from === undefined).flatMap((c) => c.sources);
  t.strictSame(sources.filter((f) => !isInContext(f, dockerignore)), [], 'excluded by .dockerignore');
  t.strictSame(sources.filter((f) => !buildSources.some((s) => isCopiedBy(f, s))), [], 'not copied into the build stage');
  t.strictSame(['package.json', 'package-lock.json', 'tsconfig.json'].filter((f) => !isInContext(f, dockerignore)), []);
  const secret = ['.tzw/tls.key', '.tzw/decisions.db', 'node_modules/x/index.js', '.git/config', 'certs/out/tls.key', 'certs/README.md', 'dist/x.js', 'test/x.test.ts', '.env'];
  t.strictSame(secret.filter((f) => isInContext(f, dockerignore)), [], 'kept out of the build context');
});

/** The repository's own files (not git-ignored build output) a COPY source names: a file, a folder or a glob in one folder. */
function filesOfCopySource(source: string): string[] {
  const clean = source.replace(/^\.\//, '').replace(/\/+$/, '');
  if (!clean.includes('*')) return existsSync(join(ROOT, clean)) ? (statSync(join(ROOT, clean)).isDirectory() ? repositoryFiles(clean) : [clean]) : [];
  const dir = posix.dirname(clean);
  return repositoryFiles(dir === '.' ? '' : dir).filter((f) => isCopiedBy(f, clean));
}

t.test('every file a build-stage COPY names is in the build context (or `docker build` stops at that COPY)', async (t) => {
  for (const source of toCopies(build).filter((c) => c.from === undefined).flatMap((c) => c.sources)) {
    const files = filesOfCopySource(source);
    t.ok(files.length > 0, `COPY ${source} names files of the repository`);
    t.strictSame(files.filter((f) => !isInContext(f, dockerignore)), [], `COPY ${source}: excluded by .dockerignore`);
  }
  t.ok(isInContext('native/jcs/src/jcs.cc', dockerignore) && !isInContext('native/jcs/build/Release/jcs.node', dockerignore), 'the addon sources are in the context, a local build of it is not');
  t.strictSame(['native/jcs/build/Release/jcs.node', 'node_modules/x/y.js', 'a/b.db', 'native/jcs/src/jcs.cc', 'webhook/main.ts'].map(isGitIgnored), [true, true, true, false, false], 'the .gitignore reading');
});

t.test('every package the compiled server imports is a production dependency (npm prune keeps it)', async (t) => {
  const packages = new Set(
    toCompiledSources()
      .flatMap((f) => toImports(read(f)))
      .filter((s) => !s.startsWith('.') && !s.startsWith('node:'))
      .map((s) => (s.startsWith('@') ? s.split('/').slice(0, 2).join('/') : s.split('/')[0]!)),
  );
  t.ok(packages.has('fastify'), 'the scan sees the server imports');
  t.strictSame([...packages].filter((p) => packageJson.dependencies[p] === undefined).sort(), []);
});

t.test('the Dockerfile and .dockerignore helpers read what Docker reads', async (t) => {
  t.strictSame(
    ['webhook/a.ts', 'certs/lib.ts', 'certs/out/tls.key', 'README.md'].map((p) => isInContext(p, ['*', '!webhook/', '!certs/*.ts'])),
    [true, true, false, false],
  );
  t.strictSame(
    ['webhook/x/y.ts', 'certs/lib.ts', 'other.ts'].map((p) => ['webhook', 'certs/*.ts'].some((s) => isCopiedBy(p, s))),
    [true, true, false],
  );
  t.strictSame(toImports("import type { A } from 'a';\nimport b from 'b';\nexport { c } from './c.js';\nconst d = await import('d');\nimport 'e';"), ['b', './c.js', 'e', 'd']);
  t.strictSame(parseDockerfile('# c\nFROM a AS b\nRUN x \\\n  && y\n').map((s) => s.instructions), [[{ keyword: 'RUN', args: 'x && y' }]]);
});
