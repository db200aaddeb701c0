/**
 * Progress on the real commands (`tzw decisions verify|export`) against a real SQLite store:
 * a fake TTY on stderr sees an updating line that is erased before the result, a pipe sees none,
 * `--quiet` silences it, stdout is byte-identical in all three; Ctrl-C stops verify (in process)
 * and export (a real child process and a real SIGINT) with exit 130 and no file under the final name.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../../webhook/cli/run.js';
import type { CliIo } from '../../webhook/cli/io.js';
import { createSqliteStore } from '../../webhook/store/sqlite/store.js';
import { loadOrCreateSigningKey, toJwks } from '../../webhook/store/evidence/signing.js';
import type { DecisionRecord } from '../../webhook/core/record.js';
import { aRecord, WRITER } from '../store/builders.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const MAIN = join(REPO, 'webhook/main.ts');
const RECORDS = 6000;
// Every command runs three times (terminal, pipe, --quiet) on a filled store: slower than tap's default on a busy machine.
t.setTimeout(300_000);
/** Every third record: a run an audit namespace admitted that enforce would deny (what readiness lists). */
const WARNED: Partial<DecisionRecord> = { namespace: 'data-science', verdict: 'warned', mode: 'audit', mapping: null, patch: [], serviceAccounts: ['data-science/trainer'], reasons: [{ code: 'POD_SA_UNMAPPED', message: 'ServiceAccount data-science/trainer has no IdentityMapping.' }] };

/** One store for the whole file (filling it is the slow part): RECORDS records, a checkpoint every 500. */
const dir = mkdtempSync(join(tmpdir(), 'tzw-progress-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const dbPath = join(dir, 'decisions.db');
const jwksPath = join(dir, 'jwks.json');
const url = `sqlite:${dbPath}`;

t.before(async () => {
  const key = await loadOrCreateSigningKey(join(dir, 'signing-key.pem'), { create: true });
  writeFileSync(jwksPath, JSON.stringify(toJwks(key.publicJwk)));
  const store = await createSqliteStore({ path: dbPath, replica: WRITER, signer: key, checkpointEvery: { records: 500, seconds: 3600 } });
  for (let i = 1; i <= RECORDS; i += 500) {
    await Promise.all(Array.from({ length: 500 }, (_, j) => store.append(aRecord({ n: i + j, ...((i + j) % 3 === 0 ? WARNED : {}) }))));
  }
  await store.checkpointNow();
  await store.close();
});

type Stream = 'stdout' | 'stderr';
type Terminal = 'tty' | 'pipe';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  /** Every write in order, to see what stderr held when stdout was first written. */
  log: Array<[Stream, string]>;
}

/**
 * Runs tzw in process. `tty`: stderr is a fake terminal (80 columns); the fake clock advances 25 ms
 * every time the progress module reads it, so a few thousand records look like seconds of work.
 */
async function tzw(terminal: Terminal, argv: string[], o: { sigint?: boolean } = {}): Promise<Run & { unsubscribed: boolean }> {
  const log: Array<[Stream, string]> = [];
  let clock = 0;
  let unsubscribed = false;
  const io: CliIo = {
    stdout: (s) => log.push(['stdout', s]),
    stderr: (s) => log.push(['stderr', s]),
    env: { TERM: 'xterm-256color' },
    cwd: dir,
    hostname: 'test-host',
    readFile: (p) => readFileSync(p, 'utf8'),
    onSignal: (signal, fn) => {
      // Ctrl-C pressed right after the command registered for it.
      if (o.sigint && signal === 'SIGINT') setImmediate(fn);
      return () => {
        unsubscribed = true;
      };
    },
    ...(terminal === 'tty' ? { stderrTerminal: { isTTY: true, columns: 80 } } : {}),
    now: () => (clock += 25),
  };
  const code = await run(argv, io);
  const text = (s: Stream): string => log.filter(([k]) => k === s).map(([, v]) => v).join('');
  return { code, stdout: text('stdout'), stderr: text('stderr'), log, unsubscribed };
}

const CLEAR = '\r\x1b[K';

t.test('verify --store, verify --bundle and export: identical stdout on a fake TTY, a pipe and with --quiet; the line shows only on the TTY and is erased first', async (t) => {
  const exported = await tzw('pipe', ['decisions', 'export', '--store', url, '--jwks', jwksPath, '--out', 'bundle.jsonl']);
  t.equal(exported.code, 0, exported.stderr);
  const commands: Array<[string, string[]]> = [
    ['verify --store', ['decisions', 'verify', '--store', url, '--jwks', jwksPath]],
    ['verify --store -o json', ['decisions', 'verify', '--store', url, '--jwks', jwksPath, '-o', 'json']],
    ['verify --store on two worker threads', ['decisions', 'verify', '--store', url, '--jwks', jwksPath, '--workers', '2']],
    ['verify --store on this thread only', ['decisions', 'verify', '--store', url, '--jwks', jwksPath, '--workers', '0']],
    ['verify --bundle', ['decisions', 'verify', '--bundle', 'bundle.jsonl', '--jwks', jwksPath]],
    ['export', ['decisions', 'export', '--store', url, '--jwks', jwksPath, '--out', 'again.jsonl']],
    ['namespaces readiness', ['namespaces', 'readiness', '--store', url, '--since', '2025-01-01T00:00:00Z']],
    // One namespace: the namespace bundle (4,000 of the records are in payments), and verifying it.
    ['export --namespace', ['decisions', 'export', '--store', url, '--namespace', 'payments', '--jwks', jwksPath, '--out', 'payments.jsonl']],
    ['verify --bundle (namespace)', ['decisions', 'verify', '--bundle', 'payments-first.jsonl', '--jwks', jwksPath]],
  ];
  const first = await tzw('pipe', ['decisions', 'export', '--store', url, '--namespace', 'payments', '--jwks', jwksPath, '--out', 'payments-first.jsonl']);
  t.equal(first.code, 0, first.stderr);
  for (const [name, argv] of commands) {
    const tty = await tzw('tty', argv);
    const pipe = await tzw('pipe', argv);
    const quiet = await tzw('tty', [...argv, '--quiet']);
    t.equal(tty.code, name === 'namespaces readiness' ? 1 : 0, `${name}: ${tty.stderr}`);
    t.equal(pipe.stdout, tty.stdout, `${name}: stdout byte-identical on a pipe and a TTY`);
    t.equal(quiet.stdout, tty.stdout, `${name}: and with --quiet`);
    t.match(
      tty.stdout,
      name === 'export --namespace'
        ? `Wrote ${(RECORDS * 2) / 3} records of namespace payments`
        : name === 'verify --bundle (namespace)'
          ? /^complete for namespace payments /
          : name.startsWith('export')
            ? `Wrote ${RECORDS} records`
            : name.startsWith('namespaces')
              ? `data-science  ${RECORDS / 3}  data-science/trainer`
              : /records/,
    );

    const lines = tty.log.filter(([k, s]) => k === 'stderr' && s !== CLEAR);
    t.ok(lines.length >= 2, `${name}: ${lines.length} progress lines on the TTY`);
    if (name === 'export --namespace') {
      // Checkpoints per writer planned, then the namespace's records against its head nsSeq.
      for (const [, s] of lines) t.match(s, /^\r\x1b\[1mexport\x1b\[22m: (checkpoints [\d,]+\/1 writers \(\d+%\)|records [\d,]+\/4,000 \(\d+%\))(, [\d,]+\/s(, \d+:\d\d left)?)?\x1b\[K$/, `${name}: one updating line`);
      t.ok(lines.some(([, s]) => /records [\d,]+\/4,000 \(\d+%\)/.test(s)), `${name}: done/total of the namespace's records`);
    } else if (name === 'verify --bundle (namespace)') {
      // One pass over the file: bytes read of its size.
      for (const [, s] of lines) t.match(s, /^\r\x1b\[1mverify\x1b\[22m: (checkpoints|records) [\d.]+ MB\/[\d.]+ MB \(\d+%\)(, [\d.]+ MB\/s(, \d+:\d\d left)?)?\x1b\[K$/, `${name}: one updating line`);
      t.ok(lines.some(([, s]) => /records [\d.]+ MB\/[\d.]+ MB \([1-9]\d?%\)/.test(s)), `${name}: part way through the records`);
    } else if (name === 'namespaces readiness') {
      // A filtered query has no cheap total: done and rate only.
      for (const [, s] of lines) t.match(s, /^\r\x1b\[1mreadiness\x1b\[22m: warned records [\d,]+(, [\d,]+\/s)?\x1b\[K$/, `${name}: one updating line`);
    } else {
      for (const [, s] of lines) t.match(s, /^\r\x1b\[1m(verify|export)\x1b\[22m: (records|checkpoints|anchors) [\d,.]+( MB)?\/[\d,.]+( MB)?( \(\d+%\).*)?\x1b\[K$/, `${name}: one updating line`);
      t.ok(lines.some(([, s]) => s.includes(`/${RECORDS.toLocaleString('en-US')} (`)), `${name}: done/total of records`);
    }
    const firstOut = tty.log.findIndex(([k]) => k === 'stdout');
    t.strictSame(tty.log[firstOut - 1], ['stderr', CLEAR], `${name}: the line is erased just before the result`);
    t.equal(tty.log.filter(([k, s]) => k === 'stderr' && s === CLEAR).length, 1, `${name}: erased once`);
    t.notOk(/[\r\x1b]/.test(pipe.stderr), `${name}: no \\r animation or escapes on a pipe`);
    for (const line of pipe.stderr.split('\n').slice(0, -1)) t.match(line, /^(verify|export|readiness): .* elapsed$/, `${name}: at most plain lines on a pipe`);
    t.equal(quiet.stderr, '', `${name}: nothing with --quiet`);
  }
  const strip = (f: string): string[] => readFileSync(join(dir, f), 'utf8').split('\n').slice(1);
  t.strictSame(strip('again.jsonl'), strip('bundle.jsonl'), 'the bundle is the same whether or not progress was shown (header time aside)');
  t.strictSame(strip('payments.jsonl'), strip('payments-first.jsonl'), 'so is the namespace bundle');
});

t.test('verify on worker threads: the same report as on this thread; --workers checked', async (t) => {
  const seen: string[] = [];
  const one = await tzw('pipe', ['decisions', 'verify', '--store', url, '--jwks', jwksPath, '--workers', '0', '-o', 'json']);
  const io: CliIo = {
    stdout: (s) => seen.push(s), stderr: () => undefined, env: {}, cwd: dir, hostname: 'h', readFile: (p) => readFileSync(p, 'utf8'),
    onSignal: () => () => undefined, stderrTerminal: { isTTY: true, columns: 200 }, now: () => 0,
  };
  t.equal(await run(['decisions', 'verify', '--store', url, '--jwks', jwksPath, '--workers', '2', '-o', 'json'], io), 0);
  t.equal(seen.join(''), one.stdout, 'same JSON report');
  t.match(JSON.parse(one.stdout), { ok: true, records: RECORDS });
  const bad = await tzw('pipe', ['decisions', 'verify', '--store', url, '--jwks', jwksPath, '--workers', 'many']);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /--workers must be a whole number from 0 to 64, got "many"/);
  const notStore = await tzw('pipe', ['decisions', 'verify', '--bundle', 'bundle.jsonl', '--workers', '2']);
  t.match(notStore.stderr, /--workers applies to verify --store only/);
});

t.test('verify on a pipe for a long time: plain lines, at most one per ~10 s, no \\r', async (t) => {
  // 25 fake ms per clock read; ~100 reads per verify of RECORDS records → several fake seconds.
  let clock = 0;
  const err: string[] = [];
  const code = await run(['decisions', 'verify', '--store', url, '--jwks', jwksPath], {
    stdout: () => undefined, stderr: (s) => err.push(s), env: {}, cwd: dir, hostname: 'h', readFile: (p) => readFileSync(p, 'utf8'),
    onSignal: () => undefined, now: () => (clock += 1000),
  });
  t.equal(code, 0);
  t.ok(err.length >= 2, `${err.length} plain lines`);
  for (const s of err) t.match(s, /^verify: (records|checkpoints) [\d,]+\/[\d,]+ \(\d+%\).*, [\d.:]+( s)? elapsed\n$/);
  t.notOk(err.join('').includes('\r'));
});

t.test('Ctrl-C during namespaces readiness (in process): exit 130 and no report', async (t) => {
  const r = await tzw('tty', ['namespaces', 'readiness', '--store', url, '--since', '2025-01-01T00:00:00Z'], { sigint: true });
  t.equal(r.code, 130);
  t.equal(r.stdout, '');
  t.match(r.stderr, /Interrupted after [\d.]+ s: readiness had (reached warned records [\d,]+|not started)\. No report for store sqlite:.*\.\n$/);
});

t.test('Ctrl-C during verify (in process): exit 130, how far it got, no result on stdout, the handler removed', async (t) => {
  for (const [terminal, workers] of [['tty', []], ['pipe', []], ['tty', ['--workers', '2']]] as const) {
    const r = await tzw(terminal, ['decisions', 'verify', '--store', url, '--jwks', jwksPath, ...workers], { sigint: true });
    t.equal(r.code, 130, `${terminal}: exit 130`);
    t.equal(r.stdout, '', `${terminal}: no verdict printed`);
    t.match(r.stderr, new RegExp(`Interrupted after [\\d.]+ s: verify had reached (records [\\d,]+/${RECORDS.toLocaleString('en-US')} \\(\\d+%\\)|checkpoints [\\d,]+/\\d+ \\(\\d+%\\))\\. Verification of store ${url.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} did not finish; nothing was changed\\.\\n$`));
    t.ok(r.unsubscribed, `${terminal}: the SIGINT handler is removed again`);
    if (terminal === 'tty') t.notOk(r.stderr.replace(/\r\x1b\[K(?=Interrupted)/, '').match(/\x1b\[1m.*Interrupted/s), 'the line was erased before the message');
  }
});

t.test('Ctrl-C during export (real child process, real SIGINT): exit 130 promptly, no file under the final name, no temporary left', async (t) => {
  const out = join(dir, 'interrupted.jsonl');
  const tmp = `${out}.tmp`;
  writeFileSync(out, 'an older bundle\n');
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'decisions', 'export', '--store', url, '--jwks', jwksPath, '--out', out], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  // Mid-export: the temporary file exists and has records in it.
  const deadline = Date.now() + 60_000;
  while (!(existsSync(tmp) && statSync(tmp).size > 50_000)) {
    if (Date.now() > deadline || child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 2));
  }
  t.ok(existsSync(tmp), 'the export was writing its temporary file');
  const sent = Date.now();
  child.kill('SIGINT');
  const code = await exited;
  const took = Date.now() - sent;
  t.equal(code, 130, `exit 130 (stderr: ${stderr})`);
  t.ok(took < 5000, `stopped ${took} ms after SIGINT`);
  t.equal(stdout, '', 'no "Wrote …" line');
  t.match(stderr, new RegExp(`^Interrupted after [\\d.]+ s: export had reached records [\\d,]+/${RECORDS.toLocaleString('en-US')} \\(\\d+%\\)\\. Nothing was written to ${out.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.\\n$`));
  t.equal(readFileSync(out, 'utf8'), 'an older bundle\n', 'the file under the final name is untouched');
  t.notOk(existsSync(tmp), 'the partial temporary file is removed');
});
