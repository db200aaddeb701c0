import t, { type Test } from 'tap';
import { mkdtemp, mkdir, rm, symlink, writeFile, unlink, rename } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createFactsIndex } from '../../webhook/core/mapping-index.js';
import { createFileSource, type FileSource, type ReloadReport } from '../../webhook/kube/files.js';
import { createLogRecorder } from './log-recorder.js';

const DOMAIN = 'tekton-zscaler.io';
const ARN = 'arn:aws:iam::123456789012:role/r';

const nsYaml = (name: string, mode?: string) =>
  `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${name}\n${mode ? `  labels: {tekton-zscaler.io/mode: ${mode}}\n` : ''}`;
const saYaml = (ns: string, name: string) => `apiVersion: v1\nkind: ServiceAccount\nmetadata: {namespace: ${ns}, name: ${name}}\n`;
const mapYaml = (name: string, ns: string, sa: string, extra = '') =>
  `apiVersion: tekton-zscaler.io/v1alpha1\nkind: IdentityMapping\nmetadata: {name: ${name}}\nspec:\n  serviceAccounts: [{namespace: ${ns}, name: ${sa}}]\n  provider: aws-iam\n  aws: {roleArn: "${ARN}"}\n${extra}`;

async function aTmpDir(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tzw-files-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A started source over `paths`, with a queue of onChange reports to await. */
async function aSource(t: Test, paths: string[], watch = true) {
  const index = createFactsIndex(DOMAIN);
  const logger = createLogRecorder();
  const reports: ReloadReport[] = [];
  let waiter: ((r: ReloadReport) => void) | undefined;
  const source: FileSource = createFileSource({
    paths, index, logger, watch, debounceMs: 30,
    onChange: (r) => {
      reports.push(r);
      waiter?.(r);
    },
  });
  t.teardown(() => source.close());
  /** Resolves with the next automatic reload's report whose predicate holds. */
  const nextChange = (pred: (r: ReloadReport) => boolean = () => true, timeoutMs = 5000) =>
    new Promise<ReloadReport>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no reload within timeout')), timeoutMs);
      waiter = (r) => {
        if (!pred(r)) return;
        clearTimeout(timer);
        waiter = undefined;
        resolve(r);
      };
    });
  return { index, logger, source, reports, nextChange };
}

t.test('loads multi-document files, Lists and nested folders; ignores other kinds and dot entries', async (t) => {
  const dir = await aTmpDir(t);
  await mkdir(join(dir, 'nested', 'deeper'), { recursive: true });
  await mkdir(join(dir, '..data'));
  await writeFile(join(dir, 'all.yaml'), [nsYaml('payments', 'enforce'), saYaml('payments', 'ci'), '', mapYaml('m1', 'payments', 'ci')].join('---\n') + '---\n');
  await writeFile(join(dir, 'nested', 'list.yml'), `apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ServiceAccount, metadata: {namespace: payments, name: deployer}}\n- {apiVersion: apps/v1, kind: Deployment, metadata: {name: x}}\n`);
  await writeFile(join(dir, 'nested', 'deeper', 'ns.json'), JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'audit-ns', labels: { [`${DOMAIN}/mode`]: 'audit' } } }));
  await writeFile(join(dir, 'nested', 'README.md'), '# not an object file');
  await writeFile(join(dir, '..data', 'dup.yaml'), nsYaml('payments'));
  await writeFile(join(dir, '.hidden.yaml'), 'this: [is: broken');
  const { index, source } = await aSource(t, [dir], false);
  await source.start();
  t.equal(source.synced(), true);
  t.strictSame(index.namespace('payments'), { name: 'payments', mode: 'enforce', policyTags: [] });
  t.strictSame(index.namespace('audit-ns'), { name: 'audit-ns', mode: 'audit', policyTags: [] });
  t.strictSame([...index.serviceAccounts()], [{ namespace: 'payments', name: 'ci' }, { namespace: 'payments', name: 'deployer' }]);
  t.equal(index.lookup('payments', 'ci').kind, 'mapped');
  t.strictSame(index.counts(), { namespaces: 2, serviceAccounts: 2, mappings: 1, invalid: 0, conflicts: 0 });
});

t.test('a single file path is read whatever its extension', async (t) => {
  const dir = await aTmpDir(t);
  const file = join(dir, 'objects.txt');
  await writeFile(file, nsYaml('a', 'audit'));
  const { index, source } = await aSource(t, [file], false);
  await source.start();
  t.strictSame(index.namespace('a'), { name: 'a', mode: 'audit', policyTags: [] });
});

t.test('start rejects with an error naming the broken file', async (t) => {
  const dir = await aTmpDir(t);
  const cases: Array<[string, string, RegExp]> = [
    ['bad.yaml', 'a: [unclosed', /bad\.yaml: not valid YAML/],
    ['multi.yaml', `${nsYaml('a')}---\nkey: "unterminated\n`, /multi\.yaml \(document 2\): not valid YAML/],
    ['scalar.yaml', 'just words', /scalar\.yaml: expected a Kubernetes object/],
    ['noname.yaml', 'apiVersion: v1\nkind: Namespace\nmetadata: {}\n', /noname\.yaml: Namespace has no metadata\.name/],
    ['nons.yaml', 'apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: x}\n', /nons\.yaml: ServiceAccount x has no metadata\.namespace/],
    ['badlist.yaml', 'apiVersion: v1\nkind: List\nitems: 3\n', /badlist\.yaml: a List needs an items array/],
    ['broken.json', '{"apiVersion": "v1", ', /broken\.json: not valid YAML/],
  ];
  for (const [name, text, re] of cases) {
    const sub = join(dir, name.replace('.', '-'));
    await mkdir(sub);
    await writeFile(join(sub, name), text);
    const { source } = await aSource(t, [sub], false);
    await t.rejects(source.start(), { code: 'ERR_TZW_OBJECTS', message: re }, name);
    t.equal(source.synced(), false, `${name}: not synced`);
  }
  const { source } = await aSource(t, [join(dir, 'missing')], false);
  await t.rejects(source.start(), { code: 'ERR_TZW_OBJECTS', message: /missing: cannot be read \(ENOENT\)/ });
});

t.test('invalid and conflicting mappings, duplicates and foreign apiVersions are logged as warnings', async (t) => {
  const dir = await aTmpDir(t);
  await writeFile(join(dir, 'a.yaml'), [
    mapYaml('one', 'p', 'shared'),
    mapYaml('two', 'p', 'shared'),
    mapYaml('bad', 'p', 'solo', '  tokenExpirationSeconds: 5\n'),
    'apiVersion: tekton-zscaler.io/v1beta1\nkind: IdentityMapping\nmetadata: {name: old}\nspec: {}\n',
    nsYaml('p', 'enforce'),
  ].join('---\n'));
  await writeFile(join(dir, 'b.yaml'), nsYaml('p', 'audit'));
  const { index, logger, source } = await aSource(t, [dir], false);
  await source.start();
  t.strictSame(index.lookup('p', 'shared'), { kind: 'conflict', mappings: ['one', 'two'] });
  t.strictSame(index.lookup('p', 'solo'), { kind: 'invalid', mapping: 'bad', problems: ['spec.tokenExpirationSeconds must be >= 600 (got 5)'] });
  t.equal(index.namespace('p')?.mode, 'audit', 'the last definition wins');
  t.strictSame(logger.at('warn'), [
    `${join(dir, 'a.yaml')} (document 4): IdentityMapping old ignored: apiVersion is "tekton-zscaler.io/v1beta1", expected tekton-zscaler.io/v1alpha1`,
    `p (Namespace) is defined in ${join(dir, 'a.yaml')} (document 5) and again in ${join(dir, 'b.yaml')}; the last one wins`,
    'IdentityMapping bad is invalid: spec.tokenExpirationSeconds must be >= 600 (got 5)',
    'ServiceAccount p/shared is claimed by more than one IdentityMapping (one, two); runs using it are denied until only one claims it',
  ]);
  t.strictSame(logger.lines.find((l) => l.msg.startsWith('IdentityMapping bad'))?.fields, {
    problem: 'invalid-mapping', identityMapping: 'bad', serviceAccounts: ['p/solo'], problems: ['spec.tokenExpirationSeconds must be >= 600 (got 5)'],
  });
});

t.test('reload applies only the difference, and a broken file keeps the last good state', async (t) => {
  const dir = await aTmpDir(t);
  await writeFile(join(dir, 'ns.yaml'), nsYaml('p', 'enforce'));
  await writeFile(join(dir, 'sa.yaml'), [saYaml('p', 'a'), saYaml('p', 'b')].join('---\n'));
  await writeFile(join(dir, 'm.yaml'), mapYaml('m', 'p', 'a'));
  const { index, logger, source } = await aSource(t, [dir], false);
  await source.start();

  const same = await source.reload();
  t.strictSame({ ok: same.ok, upserted: same.upserted, deleted: same.deleted }, { ok: true, upserted: 0, deleted: 0 });

  await writeFile(join(dir, 'sa.yaml'), saYaml('p', 'b'));
  await writeFile(join(dir, 'm.yaml'), mapYaml('m', 'p', 'b'));
  const changed = await source.reload();
  t.strictSame(changed, { ok: true, files: 3, upserted: 1, deleted: 1, warnings: [], problems: [] });
  t.strictSame([...index.serviceAccounts()], [{ namespace: 'p', name: 'b' }]);
  t.equal(index.lookup('p', 'a').kind, 'unmapped');
  t.equal(index.lookup('p', 'b').kind, 'mapped');

  await writeFile(join(dir, 'm.yaml'), 'spec: [oops');
  await unlink(join(dir, 'ns.yaml'));
  const broken = await source.reload();
  t.equal(broken.ok, false);
  t.match(broken.error, /m\.yaml: not valid YAML/);
  t.equal(index.lookup('p', 'b').kind, 'mapped', 'mapping kept');
  t.equal(index.namespace('p')?.mode, 'enforce', 'namespace kept although its file is gone: nothing is half-applied');
  t.match(logger.at('error').at(-1), /objects not reloaded; keeping the last good state: .*m\.yaml: not valid YAML/);
  t.equal(source.synced(), true);

  await writeFile(join(dir, 'm.yaml'), mapYaml('m', 'p', 'b'));
  const fixed = await source.reload();
  t.strictSame({ ok: fixed.ok, upserted: fixed.upserted, deleted: fixed.deleted }, { ok: true, upserted: 0, deleted: 1 });
  t.equal(index.namespace('p'), undefined);
});

t.test('watching: edits, new files, deletions and a ConfigMap-style symlink swap trigger reloads', async (t) => {
  const dir = await aTmpDir(t);
  await writeFile(join(dir, 'm.yaml'), mapYaml('m', 'p', 'a'));
  const { index, source, nextChange } = await aSource(t, [dir]);
  await source.start();
  t.equal(index.lookup('p', 'a').kind, 'mapped');

  let change = nextChange((r) => r.upserted > 0);
  await writeFile(join(dir, 'm.yaml'), mapYaml('m', 'p', 'a', '  policyTags: [x]\n'));
  await change;
  t.strictSame(index.lookup('p', 'a').kind === 'mapped' && index.lookup('p', 'a'), {
    kind: 'mapped',
    mapping: {
      name: 'm', serviceAccounts: [{ namespace: 'p', name: 'a' }], provider: 'aws-iam', tokenExpirationSeconds: 600, policyTags: ['x'],
      subject: ARN, audience: 'sts.amazonaws.com', env: [['AWS_ROLE_ARN', ARN]],
    },
  });

  change = nextChange((r) => r.upserted > 0);
  await mkdir(join(dir, 'sub'));
  await writeFile(join(dir, 'sub', 'n.yaml'), mapYaml('n', 'p', 'a'));
  await change;
  t.strictSame(index.lookup('p', 'a'), { kind: 'conflict', mappings: ['m', 'n'] });

  change = nextChange((r) => r.deleted > 0);
  await unlink(join(dir, 'sub', 'n.yaml'));
  await change;
  t.equal(index.lookup('p', 'a').kind, 'mapped');

  change = nextChange((r) => !r.ok);
  await writeFile(join(dir, 'm.yaml'), '{{{');
  const bad = await change;
  t.match(bad.error, /m\.yaml/);
  t.equal(index.lookup('p', 'a').kind, 'mapped', 'the broken edit is not applied');

  // kubelet's atomic writer: files are symlinks into `..data`, which is swapped to a new folder.
  const cm = await aTmpDir(t);
  await mkdir(join(cm, '..v1'));
  await writeFile(join(cm, '..v1', 'objects.yaml'), nsYaml('cm', 'audit'));
  await symlink('..v1', join(cm, '..data'));
  await symlink(join('..data', 'objects.yaml'), join(cm, 'objects.yaml'));
  const second = await aSource(t, [cm]);
  await second.source.start();
  t.equal(second.index.namespace('cm')?.mode, 'audit');
  change = second.nextChange((r) => r.upserted > 0);
  await mkdir(join(cm, '..v2'));
  await writeFile(join(cm, '..v2', 'objects.yaml'), nsYaml('cm', 'enforce'));
  await symlink('..v2', join(cm, '..data_tmp'));
  await rename(join(cm, '..data_tmp'), join(cm, '..data'));
  await change;
  t.equal(second.index.namespace('cm')?.mode, 'enforce');
});

t.test('reloads requested while one runs are folded into it', async (t) => {
  const dir = await aTmpDir(t);
  await writeFile(join(dir, 'ns.yaml'), nsYaml('p', 'audit'));
  const { index, source, reports } = await aSource(t, [dir], false);
  await source.start();
  await writeFile(join(dir, 'ns.yaml'), nsYaml('p', 'enforce'));
  const [a, b, c] = await Promise.all([source.reload(), source.reload(), source.reload()]);
  t.equal(a, b);
  t.equal(b, c);
  t.strictSame(reports, [a], 'onChange once');
  t.strictSame({ ok: a.ok, upserted: a.upserted }, { ok: true, upserted: 0 }, 'the second read found nothing new');
  t.equal(index.namespace('p')?.mode, 'enforce');
});
