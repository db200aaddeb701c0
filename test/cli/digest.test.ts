/**
 * `tzw decisions digest -f FILE` = the objectDigest the writer put in the record = an independent
 * RFC 8785 hash (the `canonicalize` package + node:crypto), for JSON and YAML copies of the object.
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import canonicalizeCjs from 'canonicalize';
import { stringify } from 'yaml';
import { run } from '../../webhook/cli/run.js';
import type { CliIo } from '../../webhook/cli/io.js';
import { aTaskRun } from '../builders.js';
import { createTestApp, review } from '../http/support.js';

const canonicalize = canonicalizeCjs as unknown as (v: unknown) => string;

async function digest(cwd: string, file: string): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { stdout: (s) => out.push(s), stderr: (s) => err.push(s), env: {}, cwd, hostname: 'h', readFile: (p) => readFileSync(join(cwd, p), 'utf8'), onSignal: () => undefined };
  const code = await run(['decisions', 'digest', '-f', file], io);
  return { code, out: out.join(''), err: err.join('') };
}

t.test('CLI digest = record objectDigest = independent RFC 8785 sha256', async (t) => {
  const dir = t.testdir({});
  // Keys out of order, unicode and numbers: canonical form differs from JSON.stringify's.
  const object = { ...aTaskRun({ serviceAccountName: 'ci-builder' }), zeta: { b: 1.5e3, a: 'ü\u2028' }, alpha: [3, 1, 2] };
  const independent = createHash('sha256').update(canonicalize(object), 'utf8').digest('hex');
  writeFileSync(join(dir, 'obj.json'), JSON.stringify(object, null, 2));
  writeFileSync(join(dir, 'obj.yaml'), stringify(object));
  const fromJson = await digest(dir, 'obj.json');
  const fromYaml = await digest(dir, 'obj.yaml');
  t.equal(fromJson.code, 0, fromJson.err);
  t.equal(fromJson.out, `${independent}\n`);
  t.equal(fromYaml.out, `${independent}\n`, 'a YAML copy of the object has the same digest');

  const { app, records, store } = await createTestApp(t);
  await app.inject({ method: 'POST', url: '/validate', payload: JSON.stringify(review(object)), headers: { 'content-type': 'application/json' } });
  const [rec] = await records();
  t.equal(rec?.objectDigest, independent, 'the record holds the same digest');

  // The digest finds the record: `decisions list --object-digest`, as printed and upper-cased.
  const list = async (hex: string) => {
    const out: string[] = [];
    const err: string[] = [];
    const io: CliIo = { stdout: (x) => out.push(x), stderr: (x) => err.push(x), env: {}, cwd: dir, hostname: 'h', readFile: (p) => readFileSync(p, 'utf8'), onSignal: () => undefined };
    const code = await run(['decisions', 'list', '--store', `sqlite:${store.path}`, '--object-digest', hex, '-o', 'json'], io);
    return { code, items: code === 0 ? (JSON.parse(out.join('')) as { items: Array<{ id: string }> }).items : [], err: err.join('') };
  };
  t.strictSame((await list(independent)).items.map((r) => r.id), [rec?.id], 'list --object-digest finds the record');
  t.strictSame((await list(independent.toUpperCase())).items.map((r) => r.id), [rec?.id], 'in either case');
  t.strictSame((await list('0'.repeat(64))).items, [], 'another digest finds nothing');
  t.match(await list('xyz'), { code: 2, err: /--object-digest "xyz" is not a sha256 digest/ }, 'a bad digest is a usage error');
});

t.test('clear errors for bad input', async (t) => {
  const dir = t.testdir({ 'list.json': '[1,2]', 'two.yaml': 'a: 1\n---\nb: 2\n', 'bad.yaml': 'a: [1,\n' });
  t.match(await digest(dir, 'list.json'), { code: 1, err: /not an object/ });
  t.match(await digest(dir, 'two.yaml'), { code: 1, err: /exactly one object/ });
  t.match(await digest(dir, 'bad.yaml'), { code: 1, err: /not JSON or YAML/ });
  t.match(await digest(dir, 'absent.json'), { code: 1, err: /cannot read absent\.json/ });
  t.equal(await run(['decisions', 'digest'], { stdout() {}, stderr() {}, env: {}, cwd: dir, hostname: 'h', readFile: () => '', onSignal: () => undefined }), 2, 'no -f: usage error');
});
