/**
 * `tzw decisions … --server`: the CLI against a real audit API over real HTTPS (a CA made for the
 * test, the server on 127.0.0.1) on a real SQLite store, compared with `--store` on the same file.
 * The output must be the same bytes for every -o, filter and page. Auth here is mode none
 * (loopback); signing in with Kubernetes tokens is tested in test/kube/audit-cli.test.ts.
 */
import t, { type Test } from 'tap';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import Database from 'better-sqlite3';
import { fromStoredBody, toStoredBody } from '../../webhook/store/evidence/body-codec.js';
import { join } from 'node:path';
import { createServer, type AddressInfo } from 'node:net';
import { once } from 'node:events';
import { pino } from 'pino';
import { run } from '../../webhook/cli/run.js';
import type { CliIo } from '../../webhook/cli/io.js';
import { toFilterQuery, parseServerUrl } from '../../webhook/cli/remote.js';
import { buildAuditApp } from '../../webhook/http/audit.js';
import type { DecisionRecord } from '../../webhook/core/record.js';
import { createSqliteStore } from '../../webhook/store/sqlite/store.js';
import { loadOrCreateSigningKey, toJwks } from '../../webhook/store/evidence/signing.js';
import { createCertificateAuthority, createServingCertificate } from '../../certs/lib.js';
import { aRecord, timeAt, WRITER } from '../store/builders.js';

interface Captured {
  code: number;
  stdout: string;
  stderr: string;
}

async function tzw(cwd: string, env: Record<string, string>, ...argv: string[]): Promise<Captured> {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { stdout: (s) => out.push(s), stderr: (s) => err.push(s), env, cwd, hostname: 'test-host', readFile: (p) => readFileSync(p, 'utf8'), onSignal: () => undefined };
  const code = await run(argv, io);
  return { code, stdout: out.join(''), stderr: err.join('') };
}

const TASK_RUN = { group: 'tekton.dev', version: 'v1', kind: 'TaskRun' };
const FIXTURE: DecisionRecord[] = [
  aRecord({ n: 1 }),
  aRecord({ n: 2, endpoint: 'validate', kind: TASK_RUN, name: 'build-2', verdict: 'allowed', patch: [], reasons: [{ code: 'TASKRUN_SA_MAPPED', message: 'mapped, "quoted", =formula' }] }),
  aRecord({ n: 3, endpoint: 'validate', kind: TASK_RUN, name: 'deploy-3', serviceAccounts: ['payments/deployer'], verdict: 'denied', mapping: null, policyTags: [], patch: [], tekton: { taskRun: 'deploy-3' }, reasons: [{ code: 'TASKRUN_SA_UNMAPPED', message: 'no mapping' }] }),
  aRecord({ n: 4, namespace: 'data-science', verdict: 'warned', mode: 'audit', mapping: null, patch: [], tekton: { taskRun: 'train-4', pipelineRun: 'train' }, reasons: [{ code: 'POD_SA_UNMAPPED', message: 'no mapping' }], durationMs: 0.125 }),
  aRecord({ n: 5, namespace: 'data-science', name: 'tab\there\u2028and ünïcode', serviceAccounts: ['data-science/trainer'], tekton: { taskRun: 'train-5', pipelineRun: 'train' } }),
  aRecord({ n: 6, namespace: '', kind: { group: '', version: '', kind: '' }, name: '', operation: '', serviceAccounts: [], mode: null, verdict: 'rejected', mapping: null, policyTags: [], patch: [], tekton: {}, objectDigest: null, reasons: [{ code: 'REVIEW_MALFORMED', message: 'not JSON' }] }),
  ...[7, 8, 9].map((n) => aRecord({ n, time: timeAt(7000) })), // same microsecond: pages split them by id
];

interface Server {
  dir: string;
  store: string;
  server: string;
  caFile: string;
}

/** The fixture in a SQLite file, and the audit API serving it over HTTPS from a second (read-only) handle. */
async function setup(tt: Test): Promise<Server> {
  const dir = tt.testdir({});
  mkdirSync(join(dir, '.tzw'), { recursive: true });
  const key = await loadOrCreateSigningKey(join(dir, '.tzw', 'signing-key.pem'), { create: true });
  const writer = await createSqliteStore({ path: join(dir, 'decisions.db'), replica: WRITER, signer: key, checkpointEvery: { records: 4, seconds: 3600 } });
  for (const r of FIXTURE) await writer.append(r);
  await writer.checkpointNow();
  await writer.close();
  const ca = await createCertificateAuthority({ commonName: 'tzw-test-ca' });
  const leaf = await createServingCertificate(ca, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  const caFile = join(dir, 'ca.crt');
  writeFileSync(caFile, ca.certPem);
  writeFileSync(join(dir, 'jwks-from-server.json'), JSON.stringify(toJwks(key.publicJwk)));
  const store = await createSqliteStore({ path: join(dir, 'decisions.db'), replica: 'reader', readonly: true });
  tt.teardown(() => store.close());
  const app = await buildAuditApp({ store, jwks: () => toJwks(key.publicJwk), auth: { mode: 'none', groupsClaim: 'groups' }, logger: pino({ level: 'silent' }), https: { cert: leaf.certPem, key: leaf.keyPem } });
  tt.teardown(() => app.close());
  const server = await app.listen({ host: '127.0.0.1', port: 0 });
  return { dir, store: 'sqlite:decisions.db', server, caFile };
}

t.test('--server prints the same bytes as --store: every -o, filters, pages, get', async (t) => {
  const s = await setup(t);
  const remote = ['--server', s.server, '--cacert', s.caFile];
  const local = ['--store', s.store];
  const lists: string[][] = [
    [],
    ['--namespace', 'payments'],
    ['--namespace', 'data-science', '--verdict', 'warned'],
    ['--service-account', 'payments/deployer'],
    ['--kind', 'TaskRun'],
    ['--task-run', 'train-5'],
    ['--pipeline-run', 'train'],
    ['--since', timeAt(2000), '--until', '2026-01-01T01:00:05+01:00'],
    ['--namespace', 'sandbox'], // nothing matches
    ['--limit', '2'],
    ['--limit', '4'], // ends inside the three records of one microsecond
  ];
  let compared = 0;
  for (const filters of lists) {
    for (const o of ['table', 'json', 'jsonl', 'csv']) {
      const byStore = await tzw(s.dir, {}, 'decisions', 'list', ...local, ...filters, '-o', o);
      const byServer = await tzw(s.dir, {}, 'decisions', 'list', ...remote, ...filters, '-o', o);
      t.equal(byStore.code, 0, `${filters.join(' ')} -o ${o}: ${byStore.stderr}`);
      t.strictSame(byServer, byStore, `list ${filters.join(' ') || '(all)'} -o ${o}: same exit code, stdout and stderr`);
      compared++;
      // Follow the pages: the cursor the server hands out works with --store and the other way round.
      const cursor = /--cursor (\S+)/.exec(byStore.stderr)?.[1];
      if (cursor) {
        const next = ['--cursor', cursor, ...filters];
        t.strictSame(await tzw(s.dir, {}, 'decisions', 'list', ...remote, ...next, '-o', o), await tzw(s.dir, {}, 'decisions', 'list', ...local, ...next, '-o', o), `next page ${filters.join(' ')} -o ${o}`);
      }
    }
  }
  t.equal(compared, lists.length * 4);
  const all = JSON.parse((await tzw(s.dir, {}, 'decisions', 'list', ...local, '-o', 'json')).stdout) as { items: Array<{ id: string }> };
  for (const { id } of all.items) {
    for (const o of ['table', 'json']) {
      t.strictSame(await tzw(s.dir, {}, 'decisions', 'get', id, ...remote, '-o', o), await tzw(s.dir, {}, 'decisions', 'get', id, ...local, '-o', o), `get ${id} -o ${o}`);
    }
  }
  // Absent id: the same exit code; the message names where it looked.
  const missing = '01944000-0000-7000-8000-0000000000ff';
  const absent = await tzw(s.dir, {}, 'decisions', 'get', missing, ...remote);
  t.strictSame(absent, { code: 1, stdout: '', stderr: `tzw: no decision with id "${missing}" in ${s.server}\n` });
});

t.test('--server errors: TLS not trusted, not https, unreachable, wrong flags, unreadable files', async (t) => {
  const s = await setup(t);
  const untrusted = await tzw(s.dir, {}, 'decisions', 'list', '--server', s.server);
  t.equal(untrusted.code, 1);
  t.match(untrusted.stderr, /cannot connect to https:\/\/127\.0\.0\.1:\d+ over TLS: its certificate is not signed by a CA you trust; pass --cacert FILE .*\(ERR_REMOTE_TLS\)/);
  const otherCa = await createCertificateAuthority({ commonName: 'someone-else' });
  writeFileSync(join(s.dir, 'other-ca.crt'), otherCa.certPem);
  t.match((await tzw(s.dir, {}, 'decisions', 'list', '--server', s.server, '--cacert', 'other-ca.crt')).stderr, /over TLS: .*--cacert/);

  // The certificate names localhost and 127.0.0.1: another expected name fails, a listed one works
  // (how an auditor connects through port-forward to a certificate made for the Service name).
  const wrongName = await tzw(s.dir, {}, 'decisions', 'list', '--server', s.server, '--cacert', s.caFile, '--tls-server-name', 'tekton-zscaler-webhook.tekton-zscaler.svc');
  t.equal(wrongName.code, 1);
  t.match(wrongName.stderr, /its certificate is not for this host name; pass --tls-server-name .*\(ERR_TLS_CERT_ALTNAME_INVALID\) \(ERR_REMOTE_TLS\)/);
  t.equal((await tzw(s.dir, {}, 'decisions', 'list', '--server', s.server, '--cacert', s.caFile, '--tls-server-name', 'localhost')).code, 0);
  const probe = createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const closedPort = (probe.address() as AddressInfo).port;
  await new Promise((resolve) => probe.close(resolve));
  const cases: Array<[string[], number, RegExp]> = [
    [['--server', s.server.replace('https:', 'http:')], 2, /--server must be an https:\/\/ URL/],
    [['--server', 'not a url'], 2, /--server "not a url" is not a URL/],
    [['--server', `https://user:pw@127.0.0.1:1`], 2, /must not carry credentials/],
    [['--server', s.server, '--store', s.store], 2, /one of --store URL or --server URL, not both/],
    [['--store', s.store, '--cacert', 'ca.crt'], 2, /--cacert applies to --server only/],
    [['--store', s.store, '--token-file', 't'], 2, /--token-file applies to --server only/],
    [['--store', s.store, '--tls-server-name', 'x'], 2, /--tls-server-name applies to --server only/],
    [[], 2, /--store URL .* is required, or --server https:\/\/HOST:PORT/],
    [['--server', s.server, '--cacert', 'nope.crt'], 1, /--cacert .*nope\.crt cannot be read \(ENOENT\)/],
    [['--server', s.server, '--cacert', s.caFile, '--token-file', 'nope'], 1, /--token-file .*nope cannot be read \(ENOENT\)/],
    [['--server', `https://127.0.0.1:${closedPort}`, '--cacert', s.caFile], 1, new RegExp(`cannot reach https://127\\.0\\.0\\.1:${closedPort}: ECONNREFUSED \\(ERR_REMOTE_UNREACHABLE\\)`)],
    [['--server', s.server, '--cacert', s.caFile, '--since', 'yesterday'], 2, /--since "yesterday" is not an RFC 3339 date-time/],
  ];
  for (const [flags, code, message] of cases) {
    const res = await tzw(s.dir, {}, 'decisions', 'list', ...flags);
    t.equal(res.code, code, flags.join(' '));
    t.match(res.stderr, message, flags.join(' '));
  }
  writeFileSync(join(s.dir, 'empty-token'), '\n');
  t.match((await tzw(s.dir, {}, 'decisions', 'list', '--server', s.server, '--cacert', s.caFile, '--token-file', 'empty-token')).stderr, /--token-file empty-token is empty/);
  // Not the audit API: a server that answers something else.
  t.match((await tzw(s.dir, {}, 'decisions', 'get', 'x', '--server', `${s.server}/elsewhere`, '--cacert', s.caFile)).stderr, /no decision with id "x"|answered HTTP 404/);
});

t.test('toFilterQuery and parseServerUrl (pure)', async (t) => {
  t.equal(toFilterQuery({ namespace: 'payments', serviceAccount: 'payments/ci', since: '2026-01-01T00:00:00.000000Z', limit: 100 }), '?namespace=payments&serviceAccount=payments%2Fci&since=2026-01-01T00%3A00%3A00.000000Z&limit=100');
  t.equal(toFilterQuery({}), '');
  t.equal(parseServerUrl('https://localhost:8444/').toString(), 'https://localhost:8444/');
  t.equal(parseServerUrl('https://proxy.example.com/tzw').pathname, '/tzw');
  t.throws(() => parseServerUrl('https://h:1/?namespace=x'), /must not carry a query/);
});

t.test('export --server and verify --server: the bundle of GET /api/v1/export, verified here', async (t) => {
  const s = await setup(t);
  const remote = ['--server', s.server, '--cacert', s.caFile];
  writeFileSync(join(s.dir, 'jwks.json'), readFileSync(join(s.dir, 'jwks-from-server.json'), 'utf8'));

  // Export: the same summary on stdout, the same bundle lines (only the header's creation time differs).
  const byStore = await tzw(s.dir, {}, 'decisions', 'export', '--store', s.store, '--jwks', 'jwks.json', '--out', 'store.jsonl');
  const byServer = await tzw(s.dir, {}, 'decisions', 'export', ...remote, '--out', 'server.jsonl');
  t.equal(byServer.code, 0, byServer.stderr);
  t.equal(byServer.stdout, byStore.stdout.replace('store.jsonl', 'server.jsonl'));
  t.match(byServer.stdout, /^Wrote 9 records, \d+ checkpoints and 0 anchors to .*server\.jsonl\.\n$/);
  const lines = (f: string) => readFileSync(join(s.dir, f), 'utf8').split('\n').map((l, i) => (i === 0 ? l.replace(/"created":"[^"]+"/, '') : l));
  t.strictSame(lines('server.jsonl'), lines('store.jsonl'));
  t.notOk(existsSync(join(s.dir, 'server.jsonl.tmp')), 'no partial file left');
  // One namespace: a namespace bundle, announced with the same line either way.
  const nsStore = await tzw(s.dir, {}, 'decisions', 'export', '--store', s.store, '--jwks', 'jwks.json', '--namespace', 'payments', '--out', 'ns.jsonl');
  const nsServer = await tzw(s.dir, {}, 'decisions', 'export', ...remote, '--namespace', 'payments', '--out', 'ns.jsonl');
  t.equal(nsServer.code, 0, nsServer.stderr);
  t.strictSame(nsServer, nsStore, 'namespace export: same exit code, stdout and stderr');
  t.match(nsServer.stdout, /^Wrote \d+ records of namespace payments and \d+ checkpoints of 1 writer\(s\)/);
  const filtered = await tzw(s.dir, {}, 'decisions', 'export', ...remote, '--verdict', 'denied', '--out', 'denied.jsonl');
  t.equal(filtered.code, 0);
  t.match(filtered.stdout, /^Wrote 1 records/);
  t.match(filtered.stderr, /filtered export/);
  t.match((await tzw(s.dir, {}, 'decisions', 'export', ...remote, '--jwks', 'jwks.json', '--out', 'x.jsonl')).stderr, /--jwks does not apply to export --server/);

  // Verify: intact, against the server's keys (said so) or keys the auditor holds.
  const ok = await tzw(s.dir, {}, 'decisions', 'verify', ...remote);
  t.equal(ok.code, 0, ok.stdout + ok.stderr);
  t.match(ok.stdout, new RegExp(`^OK: server ${s.server.replace(/\./g, '\\.')} is intact\\.\\n  records verified:     9\\n`));
  t.match(ok.stdout, /warning: verified with the public keys .*\/api\/v1\/jwks serves; pass --jwks FILE/);
  const withKeys = await tzw(s.dir, {}, 'decisions', 'verify', ...remote, '--jwks', 'jwks.json', '-o', 'json');
  t.equal(withKeys.code, 0);
  t.strictSame(JSON.parse(withKeys.stdout).warnings, []);
  t.strictSame(readdirSync(tmpdir()).filter((f) => f.startsWith('tzw-verify-')), [], 'the temporary bundle is gone');

  // A record edited in the database: verify --server fails (exit 3) naming it, like --store.
  const db = new Database(join(s.dir, 'decisions.db'));
  // v2 rows keep the canonical body compressed (evidence/body-codec.ts); edit it as an attacker with the code would.
  const row = db.prepare('SELECT body FROM decisions WHERE seq = 3').get() as { body: Buffer };
  const edited = fromStoredBody(row.body).replace('"verdict":"denied"', '"verdict":"allowed"');
  t.not(edited, fromStoredBody(row.body), 'record 3 is a denial to flip');
  db.prepare('UPDATE decisions SET body = ? WHERE seq = 3').run(toStoredBody(edited));
  db.close();
  const tampered = await tzw(s.dir, {}, 'decisions', 'verify', ...remote, '--jwks', 'jwks.json');
  const local = await tzw(s.dir, {}, 'decisions', 'verify', '--store', s.store, '--jwks', 'jwks.json');
  t.equal(tampered.code, 3);
  t.equal(local.code, 3);
  t.match(tampered.stdout, /^VERIFICATION FAILED: server https:\/\/127\.0\.0\.1:\d+\nFirst bad record 01944000-0000-7000-8000-000000000003 \(writer tzw-0, seq 3\)/);
  t.equal(/First bad record (\S+)/.exec(tampered.stdout)?.[1], /First bad record (\S+)/.exec(local.stdout)?.[1], 'the same first bad record as --store');
});

/**
 * tzw with stderr a fake terminal (80 columns) or a pipe, a fake clock that moves 200 ms at every
 * read (so nine records look like seconds of work), and optionally Ctrl-C pressed as soon as the
 * command listens for it.
 */
async function tzwOn(terminal: 'tty' | 'pipe', cwd: string, argv: string[], o: { sigint?: boolean } = {}): Promise<Captured & { log: Array<['stdout' | 'stderr', string]> }> {
  const log: Array<['stdout' | 'stderr', string]> = [];
  let clock = 0;
  const io: CliIo = {
    stdout: (s) => log.push(['stdout', s]),
    stderr: (s) => log.push(['stderr', s]),
    env: { TERM: 'xterm-256color' },
    cwd,
    hostname: 'test-host',
    readFile: (p) => readFileSync(p, 'utf8'),
    onSignal: (signal, fn) => {
      if (o.sigint && signal === 'SIGINT') setImmediate(fn);
      return () => undefined;
    },
    ...(terminal === 'tty' ? { stderrTerminal: { isTTY: true, columns: 80 } } : {}),
    now: () => (clock += 200),
  };
  const code = await run(argv, io);
  const text = (k: 'stdout' | 'stderr') => log.filter(([x]) => x === k).map(([, s]) => s).join('');
  return { code, stdout: text('stdout'), stderr: text('stderr'), log };
}

t.test('--server on a terminal: a progress line (downloading, then verifying), erased before the result; none on a pipe or with --quiet; stdout the same', async (t) => {
  const s = await setup(t);
  const remote = ['--server', s.server, '--cacert', s.caFile];
  writeFileSync(join(s.dir, 'jwks.json'), readFileSync(join(s.dir, 'jwks-from-server.json'), 'utf8'));
  const commands: Array<[string, string[]]> = [
    ['export --server', ['decisions', 'export', ...remote, '--out', 'p.jsonl']],
    ['export --server --namespace', ['decisions', 'export', ...remote, '--namespace', 'payments', '--out', 'pns.jsonl']],
    ['verify --server', ['decisions', 'verify', ...remote, '--jwks', 'jwks.json']],
    ['verify --server --namespace', ['decisions', 'verify', ...remote, '--namespace', 'payments', '--jwks', 'jwks.json']],
  ];
  for (const [name, argv] of commands) {
    const tty = await tzwOn('tty', s.dir, argv);
    const pipe = await tzwOn('pipe', s.dir, argv);
    const quiet = await tzwOn('tty', s.dir, [...argv, '--quiet']);
    t.equal(tty.code, 0, `${name}: ${tty.stdout}${tty.stderr}`);
    t.equal(pipe.stdout, tty.stdout, `${name}: stdout byte-identical on a pipe and a terminal`);
    t.equal(quiet.stdout, tty.stdout, `${name}: and with --quiet`);
    const lines = tty.log.filter(([k, x]) => k === 'stderr' && x !== '\r\x1b[K').map(([, x]) => x);
    t.ok(lines.length >= 1, `${name}: ${lines.length} progress line(s) on the terminal`);
    for (const l of lines) t.match(l, /^\r\x1b\[1m(export|verify)\x1b\[22m: (downloading )?(records|checkpoints|anchors|lines) [\d,.]+( MB)?(\/[\d,.]+( MB)? \(\d+%\))?.*\x1b\[K$/, `${name}: one updating line`);
    if (name.startsWith('verify')) t.ok(lines.some((l) => l.includes('downloading ')), `${name}: the download phase is shown`);
    const firstOut = tty.log.findIndex(([k]) => k === 'stdout');
    t.strictSame(tty.log[firstOut - 1], ['stderr', '\r\x1b[K'], `${name}: the line is erased just before the result`);
    t.notOk(/[\r\x1b]/.test(pipe.stderr), `${name}: no animation on a pipe`);
    t.notOk(/[\r\x1b]/.test(quiet.stderr), `${name}: nothing with --quiet`);
  }
});

t.test('Ctrl-C during export --server and verify --server: exit 130, nothing under the final name, no .tmp, no temporary bundle', async (t) => {
  const s = await setup(t);
  const remote = ['--server', s.server, '--cacert', s.caFile];
  for (const ns of [[], ['--namespace', 'payments']]) {
    const out = join(s.dir, `stopped${ns.length ? '-ns' : ''}.jsonl`);
    const r = await tzwOn('tty', s.dir, ['decisions', 'export', ...remote, ...ns, '--out', out], { sigint: true });
    t.equal(r.code, 130, r.stderr);
    t.equal(r.stdout, '');
    t.match(r.stderr, new RegExp(`Interrupted after [\\d.]+ s: export had (not started|reached .*)\\. Nothing was written to ${out.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.\\n$`));
    t.notOk(existsSync(out), 'nothing under the final name');
    t.notOk(existsSync(`${out}.tmp`), 'no temporary file');
  }
  const before = readdirSync(tmpdir()).filter((f) => f.startsWith('tzw-verify-')).length;
  const v = await tzwOn('pipe', s.dir, ['decisions', 'verify', ...remote, '--namespace', 'payments'], { sigint: true });
  t.equal(v.code, 130, v.stderr);
  t.equal(v.stdout, '');
  t.match(v.stderr, /Interrupted after [\d.]+ s: verify had (not started|reached .*)\. Verification of server https:\/\/127\.0\.0\.1:\d+ did not finish; nothing was changed\.\n$/);
  t.equal(readdirSync(tmpdir()).filter((f) => f.startsWith('tzw-verify-')).length, before, 'the temporary bundle is removed');
});
