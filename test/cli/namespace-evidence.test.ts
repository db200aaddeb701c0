/**
 * `tzw decisions verify --bundle` on namespace bundles written to real files, through run(argv, io).
 * (The export from a live store: test/store/namespace-store.test.ts.)
 */
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../../webhook/cli/run.js';
import type { CliIo } from '../../webhook/cli/io.js';
import { toNamespaceRange } from '../../webhook/store/namespace-source.js';
import { writeNamespaceBundle } from '../../webhook/store/evidence/namespace-bundle.js';
import { timeAt } from '../store/builders.js';
import { aNamespaceRecord, toMemorySource, V2Writer } from '../store/ns-builders.js';
import { createTestSigner } from '../store/setup.js';

async function tzw(cwd: string, ...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = {
    stdout: (s) => out.push(s),
    stderr: (s) => err.push(s),
    env: {},
    cwd,
    hostname: 'test-host',
    readFile: (p) => readFileSync(p, 'utf8'),
    onSignal: () => undefined,
  };
  const code = await run(argv, io);
  return { code, stdout: out.join(''), stderr: err.join('') };
}

const A = 'zq-team-a';

t.test('toNamespaceRange: only a one-namespace selection (with since/until) is a namespace bundle', async (t) => {
  t.strictSame(toNamespaceRange({ namespace: 'a' }), { namespace: 'a' });
  t.strictSame(toNamespaceRange({ namespace: 'a', since: 's', until: 'u' }), { namespace: 'a', since: 's', until: 'u' });
  t.equal(toNamespaceRange({ namespace: 'a', verdict: 'denied' }), undefined);
  t.equal(toNamespaceRange({ since: 's' }), undefined);
  t.equal(toNamespaceRange({}), undefined);
});

t.test('verify --bundle prints the complete line and exits 0; a tampered bundle exits 3 naming the record', async (t) => {
  const dir = t.testdir({});
  const { signer, jwks } = await createTestSigner(t, 'tzw-nscli-');
  writeFileSync(join(dir, 'jwks.json'), JSON.stringify(jwks));
  const w = new V2Writer('tzw-0', signer);
  for (let i = 0; i < 30; i++) {
    w.append(aNamespaceRecord(i % 3 ? 'zq-other' : A, 'tzw-0', 1000 * i));
    if (i % 5 === 4) await w.checkpoint(1000 * i + 500);
  }
  w.append(aNamespaceRecord(A, 'tzw-0', 31_000));
  const range = { namespace: A, since: timeAt(6000), until: timeAt(21_000) };
  const path = join(dir, 'a.jsonl');
  const summary = await writeNamespaceBundle(toMemorySource([w]), range, path, jwks, { clock: () => new Date(timeAt(40_000)) });
  t.match(summary, { path, writers: 1 });
  const last = w.checkpoints.at(-1)!;

  const ok = await tzw(dir, 'decisions', 'verify', '--bundle', 'a.jsonl', '--jwks', 'jwks.json');
  t.equal(ok.code, 0, ok.stdout + ok.stderr);
  t.match(ok.stdout, new RegExp(`^complete for namespace ${A} from ${range.since} to ${range.until} \\(checkpoint size ${last.size}, writer tzw-0\\)$`, 'm'));
  t.match(ok.stdout, /1 record\(s\) after checkpoint size \d+: not yet covered by a signed checkpoint \(0 in the range\)/);
  t.notMatch(ok.stdout, /warning/);
  const json = await tzw(dir, 'decisions', 'verify', '--bundle', path, '--jwks', 'jwks.json', '-o', 'json');
  t.match(JSON.parse(json.stdout), { ok: true, namespace: A, writers: [{ writer: 'tzw-0', status: 'complete', size: last.size }] });

  const lines = readFileSync(path, 'utf8').trimEnd().split('\n');
  const i = lines.findIndex((l) => l.startsWith('{"type":"record"') && l.includes(timeAt(9000)));
  const victim = (JSON.parse(lines[i]!) as { record: { id: string; nsSeq: number } }).record;
  writeFileSync(path, lines.filter((_, j) => j !== i).join('\n') + '\n');
  const bad = await tzw(dir, 'decisions', 'verify', '--bundle', path, '--jwks', 'jwks.json');
  t.equal(bad.code, 3);
  t.match(bad.stdout, new RegExp(`^VERIFICATION FAILED: bundle .*a\\.jsonl \\(namespace "${A}"\\)\\nwriter tzw-0, nsSeq ${victim.nsSeq + 1}, record .*: nsSeq ${victim.nsSeq + 1} found where nsSeq ${victim.nsSeq} was expected`));
});

t.test('a bundle from before the first namespace checkpoint says so and exits 3', async (t) => {
  const dir = t.testdir({});
  const { signer, jwks } = await createTestSigner(t, 'tzw-nscli-');
  writeFileSync(join(dir, 'jwks.json'), JSON.stringify(jwks));
  const w = new V2Writer('tzw-0', signer);
  for (let i = 0; i < 4; i++) w.appendV1(aNamespaceRecord(A, 'tzw-0', 1000 * i));
  await w.v1Checkpoint(5000);
  await writeNamespaceBundle(toMemorySource([w]), { namespace: A }, join(dir, 'old.jsonl'), jwks);
  const res = await tzw(dir, 'decisions', 'verify', '--bundle', 'old.jsonl', '--jwks', 'jwks.json');
  t.equal(res.code, 3);
  t.match(res.stdout, /^NOT PROVEN: bundle .*old\.jsonl is from before the first namespace checkpoint: no checkpoint in it commits to namespace heads, so completeness of namespace zq-team-a cannot be shown/);
  t.match(res.stdout, /writer tzw-0: before the first namespace checkpoint/);
});
