/**
 * `npx tsx bench/profile-summary.ts FILE.cpuprofile [--top N] [--bundle bench/out/server.mjs]`
 *
 * Summarises a V8 CPU profile (`node --cpu-prof`): self time by function and by source file or
 * package, and total (inclusive) time for the top functions. With --bundle, lines of an esbuild
 * bundle are attributed to the source module they came from (esbuild marks each module with a
 * `// path` comment in non-minified output).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Maps a 0-based bundle line to the module comment above it. */
function bundleModules(path: string): (line: number) => string | undefined {
  const starts: Array<[number, string]> = [];
  readFileSync(path, 'utf8')
    .split('\n')
    .forEach((text, i) => {
      const m = /^\/\/ ((?:webhook|bench|certs|node_modules)\/\S+\.(?:ts|js|mjs|cjs))$/.exec(text);
      if (m?.[1]) starts.push([i, m[1]]);
    });
  return (line) => {
    let lo = 0;
    let hi = starts.length - 1;
    let found: string | undefined;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (starts[mid]![0] <= line) {
        found = starts[mid]![1];
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  };
}

function fileOf(frame: CallFrame, moduleAt: ((line: number) => string | undefined) | undefined, bundleUrl: string | undefined): string {
  const url = frame.url;
  if (!url) return frame.functionName.startsWith('(') ? frame.functionName : '(native)';
  if (moduleAt && bundleUrl && url.endsWith(bundleUrl)) return moduleAt(frame.lineNumber) ?? 'bundle';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm?.[1]) return `npm:${nm[1]}`;
  if (url.startsWith('node:')) return url;
  const local = /\/work\/main\/(.+)$/.exec(url);
  return local?.[1] ?? url;
}

function main(): void {
  const { values, positionals } = parseArgs({ options: { top: { type: 'string', default: '30' }, bundle: { type: 'string' } }, allowPositionals: true });
  const file = positionals[0];
  if (!file) throw new Error('usage: profile-summary.ts FILE.cpuprofile [--top N] [--bundle bench/out/server.mjs]');
  const top = Number(values.top);
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const moduleAt = values.bundle ? bundleModules(values.bundle) : undefined;
  const bundleUrl = values.bundle?.split('/').pop();
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfUs = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) selfUs.set(p.samples[i]!, (selfUs.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i] ?? 0));
  const total = [...selfUs.values()].reduce((a, b) => a + b, 0);
  const idle = [...selfUs.entries()].filter(([id]) => byId.get(id)?.callFrame.functionName === '(idle)').reduce((a, [, v]) => a + v, 0);
  const busy = total - idle;

  const key = (n: ProfileNode) => `${n.callFrame.functionName || '(anonymous)'} ${fileOf(n.callFrame, moduleAt, bundleUrl)}:${n.callFrame.lineNumber + 1}`;
  const selfByFn = new Map<string, number>();
  const selfByFile = new Map<string, number>();
  const inclByFn = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const n = byId.get(id)!;
    if (n.callFrame.functionName === '(idle)') continue;
    selfByFn.set(key(n), (selfByFn.get(key(n)) ?? 0) + us);
    const f = fileOf(n.callFrame, moduleAt, bundleUrl);
    selfByFile.set(f, (selfByFile.get(f) ?? 0) + us);
    // Inclusive: credit each distinct function on the stack once.
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const k = key(byId.get(cur)!);
      if (seen.has(k)) continue;
      seen.add(k);
      inclByFn.set(k, (inclByFn.get(k) ?? 0) + us);
    }
  }
  const pct = (us: number) => `${((100 * us) / busy).toFixed(1).padStart(5)}%`;
  const print = (title: string, m: Map<string, number>, n: number) => {
    console.log(`\n${title}`);
    for (const [k, us] of [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, n)) console.log(`${pct(us)} ${(us / 1000).toFixed(0).padStart(7)} ms  ${k}`);
  };
  console.log(`${file}: ${(total / 1e6).toFixed(1)} s sampled, ${(busy / 1e6).toFixed(1)} s busy (${((100 * busy) / total).toFixed(0)}%); percentages are of busy time`);
  print('self time by file/package', selfByFile, top);
  print('self time by function', selfByFn, top);
  print('inclusive time by function', inclByFn, top);
}

main();
