/**
 * `tzw decisions list|get|export|verify` through run(argv, io) against a real SQLite store, with the
 * audit API on the same store as the reference for filter parity.
 */
import t, { type Test } from 'tap';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { run } from '../../webhook/cli/run.js';
import type { CliIo } from '../../webhook/cli/io.js';
import { toFlagName } from '../../webhook/cli/decisions.js';
import { CSV_COLUMNS } from '../../webhook/cli/output.js';
import { buildAuditApp } from '../../webhook/http/audit.js';
import type { ChainedRecord, DecisionRecord } from '../../webhook/core/record.js';
import { createSqliteStore } from '../../webhook/store/sqlite/store.js';
import { fromStoredBody, toStoredBody } from '../../webhook/store/evidence/body-codec.js';
import { loadOrCreateSigningKey, toJwks } from '../../webhook/store/evidence/signing.js';
import { aRecord, idOf, timeAt, WRITER } from '../store/builders.js';

interface Captured {
  code: number;
  stdout: string;
  stderr: string;
}

function createIo(cwd: string, env: Record<string, string> = {}): CliIo & { out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return {
    out,
    err,
    stdout: (s) => out.push(s),
    stderr: (s) => err.push(s),
    env,
    cwd,
    hostname: 'test-host',
    readFile: (p) => readFileSync(p, 'utf8'),
    onSignal: () => undefined,
  };
}

async function tzw(cwd: string, ...argv: string[]): Promise<Captured> {
  const io = createIo(cwd);
  const code = await run(argv, io);
  return { code, stdout: io.out.join(''), stderr: io.err.join('') };
}

const POD = { group: '', version: 'v1', kind: 'Pod' };
const TASK_RUN = { group: 'tekton.dev', version: 'v1', kind: 'TaskRun' };

/** Six records with distinct namespaces/SAs/verdicts/kinds/links; n = 1..6, one second apart. */
const FIXTURE: DecisionRecord[] = [
  aRecord({ n: 1 }),
  aRecord({ n: 2, endpoint: 'validate', kind: TASK_RUN, name: 'build-2', verdict: 'allowed', patch: [], reasons: [{ code: 'TASKRUN_SA_MAPPED', message: 'mapped' }] }),
  aRecord({ n: 3, endpoint: 'validate', kind: TASK_RUN, name: 'deploy-3', serviceAccounts: ['payments/deployer'], verdict: 'denied', mapping: null, policyTags: [], patch: [], tekton: { taskRun: 'deploy-3' }, reasons: [{ code: 'TASKRUN_SA_UNMAPPED', message: 'no mapping' }] }),
  aRecord({ n: 4, namespace: 'data-science', verdict: 'warned', mode: 'audit', mapping: null, patch: [], tekton: { taskRun: 'train-4', pipelineRun: 'train' }, reasons: [{ code: 'POD_SA_UNMAPPED', message: 'no mapping' }] }),
  aRecord({ n: 5, namespace: 'data-science', kind: POD, serviceAccounts: ['data-science/trainer'], tekton: { taskRun: 'train-5', pipelineRun: 'train' } }),
  aRecord({ n: 6, namespace: '', kind: { group: '', version: '', kind: '' }, name: '', operation: '', serviceAccounts: [], mode: null, verdict: 'rejected', mapping: null, policyTags: [], patch: [], tekton: {}, objectDigest: null, reasons: [{ code: 'REVIEW_MALFORMED', message: 'not JSON' }] }),
];

interface Setup {
  dir: string;
  url: string;
  dbPath: string;
  jwksPath: string;
  stored: ChainedRecord[];
}

/** A store with the fixture and a checkpoint, closed again; the signing key where the server keeps it by default. */
async function setup(tt: Test, records: DecisionRecord[] = FIXTURE, inDir?: string): Promise<Setup> {
  const dir = inDir ?? tt.testdir({ '.tzw': {} });
  mkdirSync(join(dir, '.tzw'), { recursive: true });
  const dbPath = join(dir, 'decisions.db');
  const key = await loadOrCreateSigningKey(join(dir, '.tzw', 'signing-key.pem'), { create: true });
  const store = await createSqliteStore({ path: dbPath, replica: WRITER, signer: key, checkpointEvery: { records: 4, seconds: 3600 } });
  const stored: ChainedRecord[] = [];
  for (const r of records) stored.push(await store.append(r));
  await store.checkpointNow();
  await store.close();
  const jwksPath = join(dir, 'jwks.json');
  writeFileSync(jwksPath, JSON.stringify(toJwks(key.publicJwk)));
  return { dir, url: 'sqlite:decisions.db', dbPath, jwksPath, stored };
}

t.test('list -o json|jsonl|csv|table', async (t) => {
  const { dir, url, stored } = await setup(t);

  const json = await tzw(dir, 'decisions', 'list', '--store', url, '-o', 'json');
  t.equal(json.code, 0, json.stderr);
  t.strictSame(JSON.parse(json.stdout), { items: stored, nextCursor: null });

  const jsonl = await tzw(dir, 'decisions', 'list', '--store', url, '-o', 'jsonl', '--namespace', 'data-science');
  t.equal(jsonl.code, 0);
  t.strictSame(jsonl.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as unknown), [stored[3], stored[4]]);

  const csv = await tzw(dir, 'decisions', 'list', '--store', url, '-o', 'csv', '--verdict', 'denied');
  t.equal(csv.code, 0);
  t.strictSame(csv.stdout.trimEnd().split('\n'), [
    CSV_COLUMNS.join(','),
    `${idOf(3)},${timeAt(3000)},validate,denied,payments,deploy-3,TaskRun,CREATE,system:serviceaccount:tekton-pipelines:tekton-pipelines-controller,payments/deployer,,,,,TASKRUN_SA_UNMAPPED: no mapping,uid-3,false,${WRITER},1.5,${stored[2]!.hash}`,
  ]);

  const table = await tzw(dir, 'decisions', 'list', '--store', url, '--until', timeAt(4000));
  t.equal(table.code, 0);
  t.equal(table.stderr, '');
  const id = (n: number) => idOf(n);
  t.equal(
    table.stdout,
    [
      'ID                                     TIME                          VERDICT   ENDPOINT   NAMESPACE   NAME          KIND      SERVICE ACCOUNTS      REASONS',
      `${id(1)}   ${timeAt(1000)}   patched   mutate     payments    build-1-pod   Pod       payments/ci-builder   POD_INJECTED`,
      `${id(2)}   ${timeAt(2000)}   allowed   validate   payments    build-2       TaskRun   payments/ci-builder   TASKRUN_SA_MAPPED`,
      `${id(3)}   ${timeAt(3000)}   denied    validate   payments    deploy-3      TaskRun   payments/deployer     TASKRUN_SA_UNMAPPED`,
      '',
    ].join('\n'),
  );

  const rejected = await tzw(dir, 'decisions', 'list', '--store', url, '--verdict', 'rejected', '-o', 'table');
  t.match(rejected.stdout, new RegExp(`${id(6)}   ${timeAt(6000)}   rejected   mutate     <none>      <none>   <none>   <none>             REVIEW_MALFORMED\\n$`));

  const none = await tzw(dir, 'decisions', 'list', '--store', url, '--namespace', 'sandbox');
  t.strictSame(none, { code: 0, stdout: '', stderr: 'No decisions found.\n' });
});

t.test('table output escapes control characters from request data', async (t) => {
  const { dir, url } = await setup(t, [aRecord({ n: 1, name: 'evil\u001b[2J\nname' })]);
  const res = await tzw(dir, 'decisions', 'list', '--store', url);
  t.notOk(res.stdout.includes('\u001b'));
  t.match(res.stdout, /evil\\u001b\[2J\\u000aname/);
  t.equal(res.stdout.trimEnd().split('\n').length, 2, 'one header, one row');
});

t.test('every filter flag selects what the same API query parameter selects', async (t) => {
  const { dir, url, dbPath } = await setup(t);
  const store = await createSqliteStore({ path: dbPath, replica: 'reader', readonly: true });
  t.teardown(() => store.close());
  const app = await buildAuditApp({ store, jwks: () => ({ keys: [] }), auth: { mode: 'none', groupsClaim: 'groups' }, logger: pino({ level: 'silent' }) });
  t.teardown(() => app.close());
  const cases: Array<[Record<string, string>, number[]]> = [
    [{}, [1, 2, 3, 4, 5, 6]],
    [{ namespace: 'payments' }, [1, 2, 3]],
    [{ serviceAccount: 'payments/ci-builder' }, [1, 2]],
    [{ serviceAccount: 'ci-builder' }, [1, 2, 4]],
    [{ verdict: 'patched' }, [1, 5]],
    [{ kind: 'TaskRun' }, [2, 3]],
    [{ taskRun: 'deploy-3' }, [3]],
    [{ pipelineRun: 'train' }, [4, 5]],
    [{ since: timeAt(5000) }, [5, 6]],
    [{ until: timeAt(2000) }, [1]],
    [{ namespace: 'data-science', verdict: 'patched', since: '2026-01-01T01:00:01+01:00' }, [5]],
    [{ limit: '2' }, [1, 2]],
  ];
  for (const [params, want] of cases) {
    const flags = Object.entries(params).flatMap(([k, v]) => [`--${toFlagName(k)}`, v]);
    const cli = await tzw(dir, 'decisions', 'list', '--store', url, '-o', 'json', ...flags);
    t.equal(cli.code, 0, cli.stderr);
    const cliIds = (JSON.parse(cli.stdout) as { items: ChainedRecord[] }).items.map((r) => r.id);
    const api = await app.inject({ url: `/api/v1/decisions?${new URLSearchParams(params).toString()}` });
    const apiIds = (api.json() as { items: ChainedRecord[] }).items.map((r) => r.id);
    t.strictSame(cliIds, want.map((n) => idOf(n)), JSON.stringify(params));
    t.strictSame(cliIds, apiIds, `${JSON.stringify(params)}: CLI and API agree`);
  }
  // The same CSV from both.
  const cliCsv = await tzw(dir, 'decisions', 'list', '--store', url, '-o', 'csv', '--namespace', 'payments');
  const apiCsv = await app.inject({ url: '/api/v1/decisions?format=csv&namespace=payments' });
  t.equal(cliCsv.stdout, apiCsv.body);
});

t.test('list pages with --limit and --cursor until exhausted', async (t) => {
  const { dir, url } = await setup(t);
  const seen: string[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < 10; page++) {
    const res = await tzw(dir, 'decisions', 'list', '--store', url, '--limit', '4', '-o', 'jsonl', ...(cursor ? ['--cursor', cursor] : []));
    t.equal(res.code, 0);
    seen.push(...res.stdout.trimEnd().split('\n').map((l) => (JSON.parse(l) as ChainedRecord).id));
    cursor = /--cursor (\S+)/.exec(res.stderr)?.[1];
    if (!cursor) break;
  }
  t.strictSame(seen, [1, 2, 3, 4, 5, 6].map((n) => idOf(n)));
  const json = await tzw(dir, 'decisions', 'list', '--store', url, '--limit', '4', '-o', 'json');
  t.type((JSON.parse(json.stdout) as { nextCursor: unknown }).nextCursor, 'string');
});

t.test('get ID -o table|json, and a missing ID', async (t) => {
  const { dir, url, stored } = await setup(t);
  const json = await tzw(dir, 'decisions', 'get', idOf(3), '--store', url, '-o', 'json');
  t.equal(json.code, 0);
  t.strictSame(JSON.parse(json.stdout), stored[2]);
  const table = await tzw(dir, 'decisions', 'get', idOf(3), '--store', url);
  t.equal(table.code, 0);
  t.equal(table.stdout.split('\n').length, 3);
  t.match(table.stdout, /^ID +TIME +VERDICT +ENDPOINT +NAMESPACE +NAME +KIND +SERVICE ACCOUNTS +REASONS\n/);
  t.match(table.stdout, `${idOf(3)}   ${timeAt(3000)}   denied`);
  const missing = await tzw(dir, 'decisions', 'get', 'no-such-id', '--store', url);
  t.strictSame(missing, { code: 1, stdout: '', stderr: `tzw: no decision with id "no-such-id" in ${url}\n` });
});

t.test('usage errors exit 2 with a message; store problems exit 1', async (t) => {
  const { dir, url } = await setup(t);
  const cases: Array<[string[], RegExp]> = [
    [['decisions', 'list', '--store', url, '--bogus'], /Unknown option '--bogus'/],
    [['decisions', 'list', '--store', url, '-o', 'yaml'], /-o must be one of table, json, jsonl, csv, got "yaml"/],
    [['decisions', 'list', '--store', url, '--verdict', 'maybe'], /invalid filter:\n {2}- --verdict "maybe" is not one of allowed/],
    [['decisions', 'list', '--store', url, '--service-account', 'a/b/c', '--limit', '0'], /--service-account "a\/b\/c".*\n {2}- --limit "0"/s],
    [['decisions', 'list', '--store', url, '--namespace', 'a', '--namespace', 'b'], /namespace is given 2 times/],
    [['decisions', 'list', '--store', url, '--since', 'yesterday'], /--since "yesterday" is not an RFC 3339 date-time/],
    [['decisions', 'list'], /--store URL \(sqlite:PATH or postgres:\/\/…\) is required/],
    [['decisions', 'list', '--store', url, 'extra'], /unexpected argument "extra"/],
    [['decisions', 'get', '--store', url], /exactly one decision ID, got 0/],
    [['decisions', 'get', 'a', 'b', '--store', url], /exactly one decision ID, got 2/],
    [['decisions', 'get', 'a', '--store', url, '-o', 'csv'], /-o must be one of table, json/],
    [['decisions', 'export', '--store', url], /--out FILE is required/],
    [['decisions', 'export', '--store', url, '--out', 'x', '--limit', '5'], /Unknown option '--limit'/],
    [['decisions', 'verify'], /exactly one of --store URL, --bundle FILE or --server URL/],
    [['decisions', 'verify', '--store', url, '--bundle', 'b'], /exactly one of --store URL, --bundle FILE or --server URL/],
    [['decisions', 'frobnicate'], /unknown command "decisions frobnicate"/],
    [['decisions', 'constructor'], /unknown command "decisions constructor"/],
  ];
  for (const [argv, want] of cases) {
    const res = await tzw(dir, ...argv);
    t.equal(res.code, 2, argv.join(' '));
    t.match(res.stderr, want, argv.join(' '));
    t.equal(res.stdout, '', argv.join(' '));
  }

  const missing = await tzw(dir, 'decisions', 'list', '--store', 'sqlite:nothing-here.db');
  t.equal(missing.code, 1);
  t.match(missing.stderr, `no decision store at ${join(dir, 'nothing-here.db')}`);
  t.notOk(existsSync(join(dir, 'nothing-here.db')), 'reading never creates a store');
  const scheme = await tzw(dir, 'decisions', 'list', '--store', 'mysql://db');
  t.equal(scheme.code, 1);
  t.match(scheme.stderr, /must be sqlite:PATH or postgres/);
  writeFileSync(join(dir, 'not-a-db.db'), 'hello, I am not SQLite, but I am long enough to have a header of some kind at all');
  const notDb = await tzw(dir, 'decisions', 'list', '--store', 'sqlite:not-a-db.db');
  t.equal(notDb.code, 1);
  t.match(notDb.stderr, /cannot open the decision store/);
});

t.test('verify --store: 0 when intact, 3 naming the first record edited in the database', async (t) => {
  const { dir, url, dbPath, jwksPath } = await setup(t);
  const ok = await tzw(dir, 'decisions', 'verify', '--store', url, '--jwks', jwksPath);
  t.equal(ok.code, 0, ok.stdout + ok.stderr);
  t.equal(
    ok.stdout,
    `OK: store ${url} is intact.\n  records verified:     6\n  writers:              1\n  checkpoints verified: 2\n  anchors verified:     0\n`,
  );
  // Without --jwks: the public half of the signing key the server generated under .tzw/.
  const viaKey = await tzw(dir, 'decisions', 'verify', '--store', url);
  t.equal(viaKey.code, 0, viaKey.stderr);
  const json = await tzw(dir, 'decisions', 'verify', '--store', url, '--jwks', jwksPath, '-o', 'json');
  t.match(JSON.parse(json.stdout), { source: `store ${url}`, ok: true, records: 6, writers: 1, checkpoints: 2 });

  const db = new Database(dbPath);
  // The stored body (compressed canonical JSON) rewritten the way the writer would, one word changed.
  const stored = db.prepare('SELECT body FROM decisions WHERE id = ?').get(idOf(3)) as { body: Buffer };
  db.prepare('UPDATE decisions SET body = ? WHERE id = ?').run(toStoredBody(fromStoredBody(stored.body).replace('"verdict":"denied"', '"verdict":"allowed"')), idOf(3));
  db.close();
  const bad = await tzw(dir, 'decisions', 'verify', '--store', url, '--jwks', jwksPath);
  t.equal(bad.code, 3);
  t.equal(bad.stdout, `VERIFICATION FAILED: store ${url}\nFirst bad record ${idOf(3)} (writer ${WRITER}, seq 3): hash mismatch: the record was changed after it was written\n`);
  const badJson = await tzw(dir, 'decisions', 'verify', '--store', url, '--jwks', jwksPath, '-o', 'json');
  t.equal(badJson.code, 3);
  t.match(JSON.parse(badJson.stdout), { ok: false, firstBad: { kind: 'record', id: idOf(3), writer: WRITER, seq: 3 } });
});

t.test('verify --store without keys anywhere: a clear error', async (t) => {
  const { dir, url } = await setup(t);
  const elsewhere = t.testdir({});
  const res = await tzw(elsewhere, 'decisions', 'verify', '--store', `sqlite:${join(dir, 'decisions.db')}`);
  t.equal(res.code, 1);
  t.match(res.stderr, /signing key .*signing-key\.pem does not exist; pass --jwks FILE/);
  const badJwks = join(elsewhere, 'bad.json');
  writeFileSync(badJwks, '{"keys": []}');
  const empty = await tzw(dir, 'decisions', 'verify', '--store', url, '--jwks', badJwks);
  t.equal(empty.code, 1);
  t.match(empty.stderr, /JWKS .*bad\.json: the key set is empty/);
});

t.test('export → verify --bundle offline; an edited bundle line fails naming the record', async (t) => {
  const { dir, url, jwksPath, stored } = await setup(t);
  const exp = await tzw(dir, 'decisions', 'export', '--store', url, '--out', 'evidence.jsonl');
  t.equal(exp.code, 0, exp.stderr);
  t.equal(exp.stdout, `Wrote 6 records, 2 checkpoints and 0 anchors to ${join(dir, 'evidence.jsonl')}.\n`);
  const bundlePath = join(dir, 'evidence.jsonl');
  const lines = readFileSync(bundlePath, 'utf8').trimEnd().split('\n');
  t.equal(lines.length, 1 + 6 + 2);
  t.strictSame(JSON.parse(lines[0]!).jwks, JSON.parse(readFileSync(jwksPath, 'utf8')), 'the header carries the public keys');
  t.strictSame(lines.slice(1, 7).map((l) => (JSON.parse(l) as { record: unknown }).record), stored);

  const self = await tzw(dir, 'decisions', 'verify', '--bundle', 'evidence.jsonl');
  t.equal(self.code, 0, self.stdout);
  t.match(self.stdout, /records verified: +6\n/);
  t.match(self.stdout, /warning: verified with the keys inside the bundle/);
  const pinned = await tzw(dir, 'decisions', 'verify', '--bundle', bundlePath, '--jwks', jwksPath);
  t.equal(pinned.code, 0);
  t.notMatch(pinned.stdout, /warning/);

  // Someone edits record 4 in the bundle (audit → pretend it was enforced).
  const edited = lines.map((l, i) => (i === 4 ? l.replace('"mode":"audit"', '"mode":"enforce"') : l));
  t.not(edited[4], lines[4]);
  writeFileSync(bundlePath, edited.join('\n') + '\n');
  const bad = await tzw(dir, 'decisions', 'verify', '--bundle', bundlePath, '--jwks', jwksPath);
  t.equal(bad.code, 3);
  t.match(bad.stdout, new RegExp(`^VERIFICATION FAILED: bundle .*\\nFirst bad record ${idOf(4)} \\(writer ${WRITER}, seq 4\\): hash mismatch`));

  // A bundle checked against someone else's keys: its checkpoints are not trusted.
  writeFileSync(bundlePath, lines.join('\n') + '\n');
  const otherKey = await loadOrCreateSigningKey(join(dir, 'other.pem'), { create: true });
  writeFileSync(join(dir, 'other.json'), JSON.stringify(toJwks(otherKey.publicJwk)));
  const wrongKeys = await tzw(dir, 'decisions', 'verify', '--bundle', bundlePath, '--jwks', 'other.json');
  t.equal(wrongKeys.code, 3);
  t.match(wrongKeys.stdout, /First bad checkpoint at record .*not trustworthy/);

  const absent = await tzw(dir, 'decisions', 'verify', '--bundle', 'nope.jsonl');
  t.equal(absent.code, 1);
  t.match(absent.stderr, /cannot read bundle .*nope\.jsonl/);
});

t.test('verify --bundle --config trusts the config\'s signing key, not the keys inside the bundle', async (t) => {
  const legit = await setup(t);
  writeFileSync(join(legit.dir, 'config.yaml'), 'signing:\n  keyFile: .tzw/signing-key.pem\n');
  // A forger's store: same records, its own signing key; its export carries the forger's keys.
  const forgerDir = mkdtempSync(join(tmpdir(), 'tzw-forger-'));
  t.teardown(() => rmSync(forgerDir, { recursive: true, force: true }));
  const forged = await setup(t, FIXTURE, forgerDir);
  t.equal((await tzw(forged.dir, 'decisions', 'export', '--store', forged.url, '--out', 'forged.jsonl')).code, 0);
  t.equal((await tzw(legit.dir, 'decisions', 'export', '--store', legit.url, '--out', 'real.jsonl')).code, 0);
  const forgedPath = join(forged.dir, 'forged.jsonl');

  const self = await tzw(legit.dir, 'decisions', 'verify', '--bundle', forgedPath);
  t.equal(self.code, 0, 'self-consistent with its own keys');
  t.match(self.stdout, /warning: verified with the keys inside the bundle; pass .*--jwks.*--config/);

  const res = await tzw(legit.dir, 'decisions', 'verify', '--bundle', forgedPath, '--config', 'config.yaml');
  t.equal(res.code, 3, res.stdout + res.stderr);
  t.match(res.stdout, /^VERIFICATION FAILED: bundle .*forged\.jsonl\nFirst bad checkpoint at record .*not trustworthy/);

  const real = await tzw(legit.dir, 'decisions', 'verify', '--bundle', 'real.jsonl', '--config', 'config.yaml');
  t.equal(real.code, 0, real.stdout + real.stderr);
  t.notMatch(real.stdout, /warning/);
  const missing = await tzw(legit.dir, 'decisions', 'verify', '--bundle', 'real.jsonl', '--config', 'absent.yaml');
  t.equal(missing.code, 2);
  t.match(missing.stderr, /config file .*absent\.yaml: cannot be read/);
});

t.test('a filtered export is evidence, not a verifiable bundle; a one-namespace export of v2 records proves itself complete', async (t) => {
  const { dir, url } = await setup(t);
  const exp = await tzw(dir, 'decisions', 'export', '--store', url, '--out', 'denied.jsonl', '--namespace', 'data-science', '--verdict', 'warned');
  t.equal(exp.code, 0);
  t.match(exp.stdout, /^Wrote 1 records/);
  t.match(exp.stderr, /filtered export/);
  const res = await tzw(dir, 'decisions', 'verify', '--bundle', 'denied.jsonl');
  t.equal(res.code, 3);
  t.match(res.stdout, /First bad bundle: this bundle is a filtered export/);
  // The writer thread writes record format v2 (namespace chains, checkpoints over namespace heads).
  const ns = await tzw(dir, 'decisions', 'export', '--store', url, '--out', 'ds.jsonl', '--namespace', 'data-science');
  t.equal(ns.code, 0, ns.stderr);
  const nsRes = await tzw(dir, 'decisions', 'verify', '--bundle', 'ds.jsonl');
  t.equal(nsRes.code, 0, nsRes.stdout);
  t.match(nsRes.stdout, /complete for namespace data-science/);
});
