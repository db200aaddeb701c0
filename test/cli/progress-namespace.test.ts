/**
 * Progress and Ctrl-C on the one-namespace bundle commands (`tzw decisions export --namespace N`,
 * `tzw decisions verify --bundle` of such a bundle), end to end: a real child process on a real
 * terminal (a pseudo-terminal from util-linux `script`, which Debian always has), a real SIGINT
 * from the terminal's Ctrl-C (the byte 0x03 typed into it), sent once the progress line shows the
 * work part way. Exit 130, the line erased before "Interrupted after …", and no file or `.tmp`
 * left. Also the plain-pipe case (SIGINT sent to the process) for the export.
 */
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createSqliteStore } from '../../webhook/store/sqlite/store.js';
import { loadOrCreateSigningKey, toJwks } from '../../webhook/store/evidence/signing.js';
import { toNamespaceEvidenceSource } from '../../webhook/store/namespace-source.js';
import { writeNamespaceBundle } from '../../webhook/store/evidence/namespace-bundle.js';
import { openStoreForRead } from '../../webhook/store/open-url.js';
import { aRecord, WRITER } from '../store/builders.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const MAIN = join(REPO, 'webhook/main.ts');
/**
 * 12,000 records of about 7 KB (a patched pod's record with its injected env, volumes and tunnel
 * sidecar), every tenth in data-science: 10,800 in payments, a namespace bundle of about 80 MB.
 * Exporting or verifying it outlasts the 500 ms before the first progress line by a wide margin on
 * a faster machine too (this 2-core box, idle: well over a second of CPU each), so Ctrl-C lands
 * part way.
 */
const RECORDS = 12_000;
const NS_RECORDS = 10_800;
const PATCH = Array.from({ length: 30 }, (_, i) => ({
  op: 'add' as const,
  path: `/spec/containers/${i % 3}/env/-`,
  value: { name: `TZW_SETTING_${i}`, value: `/var/run/secrets/tekton-zscaler.io/token-${i}`, note: 'x'.repeat(60) },
}));
const NS_TOTAL = NS_RECORDS.toLocaleString('en-US');

const hasScript = spawnSync('script', ['--version']).status === 0;
// Filling the store is most of this file's time; on a busy machine it takes longer than tap's default.
t.setTimeout(300_000);

const dir = mkdtempSync(join(tmpdir(), 'tzw-progress-ns-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const dbPath = join(dir, 'decisions.db');
const jwksPath = join(dir, 'jwks.json');
const bundlePath = join(dir, 'payments.jsonl');
const url = `sqlite:${dbPath}`;

t.before(async () => {
  const key = await loadOrCreateSigningKey(join(dir, 'signing-key.pem'), { create: true });
  const jwks = toJwks(key.publicJwk);
  writeFileSync(jwksPath, JSON.stringify(jwks));
  const store = await createSqliteStore({ path: dbPath, replica: WRITER, signer: key, checkpointEvery: { records: 1000, seconds: 3600 } });
  for (let i = 1; i <= RECORDS; i += 1000) {
    await Promise.all(Array.from({ length: 1000 }, (_, j) => store.append(aRecord({ n: i + j, patch: PATCH, ...((i + j) % 10 === 0 ? { namespace: 'data-science' } : {}) }))));
  }
  await store.checkpointNow();
  await store.close();
  const read = await openStoreForRead(url, { cwd: dir });
  try {
    const summary = await writeNamespaceBundle(toNamespaceEvidenceSource(read), { namespace: 'payments' }, bundlePath, jwks);
    if (summary.records !== NS_RECORDS) throw new Error(`expected ${NS_RECORDS} records in the bundle, got ${summary.records}`);
  } finally {
    await read.close();
  }
});

const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

interface TerminalRun {
  code: number | null;
  /** What the terminal showed (stdout and stderr share it), line ends as the program wrote them. */
  screen: string;
  /** The screen up to the moment Ctrl-C was typed. */
  before: string;
  /** Milliseconds from Ctrl-C to exit. */
  took: number;
  interrupted: boolean;
}

/**
 * Runs tzw on a pseudo-terminal and types Ctrl-C once `partWay` matches what the terminal shows.
 * `script -e` exits with the program's exit code; `exec` makes tzw the terminal's foreground
 * process, so the terminal's SIGINT reaches it (and nothing in between).
 */
async function onTerminal(argv: string[], partWay: RegExp): Promise<TerminalRun> {
  const command = `exec ${[process.execPath, '--import', 'tsx', MAIN, ...argv].map(quote).join(' ')}`;
  const env: NodeJS.ProcessEnv = { ...process.env, TERM: 'xterm-256color' };
  delete env.NO_COLOR;
  const child = spawn('script', ['-qec', command, '/dev/null'], { cwd: REPO, env, stdio: ['pipe', 'pipe', 'pipe'] });
  let screen = '';
  let before = '';
  let sent = 0;
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  child.stdout.on('data', (d: Buffer) => {
    screen += d.toString();
    // The pseudo-terminal turns "\n" into "\r\n" (onlcr); undo that to compare with what tzw wrote.
    if (!sent && partWay.test(screen.replace(/\r\n/g, '\n'))) {
      sent = Date.now();
      before = screen;
      child.stdin.write('\x03');
    }
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  const code = await exited;
  clearTimeout(timer);
  const norm = (s: string): string => s.replace(/\r\n/g, '\n');
  return { code, screen: norm(screen), before: norm(before), took: sent ? Date.now() - sent : -1, interrupted: sent > 0 };
}

const BOLD = (title: string): string => `\\r\\x1b\\[1m${title}\\x1b\\[22m: `;

t.test('Ctrl-C on a terminal during export --namespace: the progress line part way, exit 130, the line erased, no file and no .tmp', { skip: hasScript ? false : 'needs util-linux script for a pseudo-terminal' }, async (t) => {
  const out = join(dir, 'interrupted-tty.jsonl');
  // Part way: a progress line with records done < total (the line is rewritten; any such frame will do).
  const partWay = new RegExp(`${BOLD('export')}records ([\\d,]+)/${NS_TOTAL} \\((\\d+)%\\)[^\\r]*\\x1b\\[K`);
  const r = await onTerminal(['decisions', 'export', '--store', url, '--namespace', 'payments', '--jwks', jwksPath, '--out', out], partWay);
  t.ok(r.interrupted, `Ctrl-C was typed once the export was part way (screen: ${JSON.stringify(r.screen.slice(-300))})`);
  t.equal(r.code, 130, 'exit 130');
  t.ok(r.took < 5000, `stopped ${r.took} ms after Ctrl-C`);
  const frames = [...r.before.matchAll(new RegExp(partWay.source, 'g'))];
  t.ok(frames.length >= 1, `${frames.length} progress frame(s) before Ctrl-C`);
  for (const f of frames) t.ok(Number(f[1]!.replace(/,/g, '')) < NS_RECORDS, `part way: ${f[1]}/${NS_TOTAL}`);
  t.match(
    r.screen,
    new RegExp(`\\x1b\\[K(\\^C)?\\r\\x1b\\[K(\\^C)?Interrupted after [\\d.]+ s: export had reached records [\\d,]+/${NS_TOTAL} \\(\\d+%\\)\\. Nothing was written to ${escapeRe(out)}\\.\\n$`),
    'the line is erased, then how far it got',
  );
  t.notOk(r.screen.includes('Wrote '), 'no result line');
  t.notOk(existsSync(out), 'nothing under the final name');
  t.notOk(existsSync(`${out}.tmp`), 'no temporary file left');
  t.strictSame(readdirSync(dir).filter((f) => f.startsWith('interrupted-tty')), [], 'nothing at all of the export left');
});

t.test('Ctrl-C on a terminal during verify --bundle of a namespace bundle: the progress line part way, exit 130, no verdict, the bundle untouched', { skip: hasScript ? false : 'needs util-linux script for a pseudo-terminal' }, async (t) => {
  const bytes = readFileSync(bundlePath);
  const mb = (statSync(bundlePath).size / 1e6).toFixed(1);
  // Part way: a frame showing the records phase below 90% of the file.
  const partWay = new RegExp(`${BOLD('verify')}records [\\d.]+ MB/${escapeRe(mb)} MB \\(([0-8]?\\d)%\\)[^\\r]*\\x1b\\[K`);
  const r = await onTerminal(['decisions', 'verify', '--bundle', bundlePath, '--jwks', jwksPath], partWay);
  t.ok(r.interrupted, `Ctrl-C was typed once verify was part way (screen: ${JSON.stringify(r.screen.slice(-300))})`);
  t.equal(r.code, 130, 'exit 130');
  t.ok(r.took < 5000, `stopped ${r.took} ms after Ctrl-C`);
  t.match(
    r.screen,
    new RegExp(`\\x1b\\[K(\\^C)?\\r\\x1b\\[K(\\^C)?Interrupted after [\\d.]+ s: verify had reached records [\\d.]+ MB/${escapeRe(mb)} MB \\(\\d+%\\)\\. Verification of bundle ${escapeRe(bundlePath)} did not finish; nothing was changed\\.\\n$`),
    'the line is erased, then how far it got',
  );
  t.notOk(/complete for namespace|VERIFICATION FAILED|NOT PROVEN/.test(r.screen), 'no verdict printed');
  t.ok(readFileSync(bundlePath).equals(bytes), 'the bundle is unchanged');
});

t.test('Ctrl-C (SIGINT to the process) during export --namespace with stderr a pipe: exit 130, the older file untouched, no .tmp', async (t) => {
  const out = join(dir, 'interrupted-pipe.jsonl');
  const tmp = `${out}.tmp`;
  writeFileSync(out, 'an older bundle\n');
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'decisions', 'export', '--store', url, '--namespace', 'payments', '--jwks', jwksPath, '--out', out], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  // Mid-export: the temporary file holds records (and the export is far from its 10,800).
  const deadline = Date.now() + 60_000;
  while (!(existsSync(tmp) && statSync(tmp).size > 100_000)) {
    if (Date.now() > deadline || child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 2));
  }
  t.ok(existsSync(tmp), 'the export was writing its temporary file');
  const sent = Date.now();
  child.kill('SIGINT');
  const code = await exited;
  t.equal(code, 130, `exit 130 (stderr: ${stderr})`);
  t.ok(Date.now() - sent < 5000, 'stopped promptly');
  t.equal(stdout, '', 'no "Wrote …" line');
  // Not a terminal: no animation; this short run prints no plain line either (one per ~10 s).
  t.match(stderr, new RegExp(`^Interrupted after [\\d.]+ s: export had reached records [\\d,]+/${NS_TOTAL} \\(\\d+%\\)\\. Nothing was written to ${escapeRe(out)}\\.\\n$`));
  t.equal(readFileSync(out, 'utf8'), 'an older bundle\n', 'the file under the final name is untouched');
  t.notOk(existsSync(tmp), 'the partial temporary file is removed');
});
