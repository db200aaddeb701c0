/** `tzw simulate` and `tzw mappings check` on real files, through run(argv, io). */
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { run } from '../../webhook/cli/run.js';

const repo = new URL('../../', import.meta.url).pathname;
const examples = join(repo, 'manifests/examples');

function cli(env: Record<string, string> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const io = { stdout: (s: string) => out.push(s), stderr: (s: string) => err.push(s), env, cwd: repo, hostname: 'h', readFile: (p: string) => readFileSync(p, 'utf8'), onSignal: () => {} };
  return { io, out: () => out.join(''), err: () => err.join('') };
}

t.test('simulate: a mapped pod is patched; -o yaml prints the patched pod', async (t) => {
  const c = cli();
  const code = await run(['simulate', '-f', join(examples, 'reviews/pod-mapped.json'), '--objects', examples, '-o', 'yaml'], c.io);
  t.equal(code, 0);
  const pod = parse(c.out().replace(/^---\n/, ''));
  t.equal(pod.metadata.annotations['tekton-zscaler.io/status'], 'injected');
  t.equal(pod.metadata.annotations['tekton-zscaler.io/decision-id'], 'simulated');
  t.strictSame(pod.spec.initContainers.map((c: { name: string }) => c.name), ['zscaler-tunnel', 'prepare'], 'native: the tunnel is the first init container');
  t.strictSame(pod.spec.containers[0].env.map((e: { name: string }) => e.name), ['AWS_REGION', 'AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE', 'TZW_OIDC_TOKEN_FILE']);
});

t.test('simulate: bare objects, text and json output, exit 1 when any is refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tzw-sim-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'runs.yaml'), `
apiVersion: tekton.dev/v1
kind: TaskRun
metadata: {name: ok-run, namespace: payments}
spec: {serviceAccountName: ci-builder, taskRef: {name: build}}
---
apiVersion: tekton.dev/v1beta1
kind: PipelineRun
metadata: {name: bad-run, namespace: payments}
spec: {serviceAccountName: ci-builder, pipelineRef: {name: p}, taskRunSpecs: [{pipelineTaskName: deploy, taskServiceAccountName: deployer}, {pipelineTaskName: x, taskServiceAccountName: nobody}]}
`);
  const text = cli();
  t.equal(await run(['simulate', '-f', join(dir, 'runs.yaml'), '--objects', examples], text.io), 1);
  t.match(text.out(), /TaskRun payments\/ok-run \(tekton.dev\/v1\) → \/validate\n  verdict:   allowed/);
  t.match(text.out(), /PipelineRun payments\/bad-run \(tekton.dev\/v1beta1\) → \/validate\n  verdict:   denied \(422 Invalid\)/);
  t.match(text.out(), /nobody/);
  const json = cli();
  t.equal(await run(['simulate', '-f', join(dir, 'runs.yaml'), '--objects', examples, '-o', 'json'], json.io), 1);
  const results = JSON.parse(json.out());
  t.strictSame(results.map((r: { decision: { verdict: string } }) => r.decision.verdict), ['allowed', 'denied']);
  t.strictSame(results[1].decision.serviceAccounts, ['payments/ci-builder', 'payments/deployer', 'payments/nobody']);
});

t.test('simulate: usage errors exit 2 with a message', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['simulate'], /-f OBJECT.yaml is required/],
    [['simulate', '-f', '/no/such.yaml'], /cannot read \/no\/such.yaml: ENOENT/],
    [['simulate', '-f', join(examples, 'namespaces.yaml'), '-o', 'xml'], /-o must be text, json or yaml/],
    [['simulate', '--frobnicate'], /Unknown option '--frobnicate'/],
  ];
  for (const [argv, re] of cases) {
    const c = cli();
    t.equal(await run(argv, c.io), 2, argv.join(' '));
    t.match(c.err(), re);
  }
});

t.test('mappings check: the example set has one ServiceAccount that would be denied', async (t) => {
  const c = cli();
  t.equal(await run(['mappings', 'check', '--objects', examples, '-o', 'json'], c.io), 1);
  const report = JSON.parse(c.out());
  t.strictSame(report.counts, { namespaces: 3, serviceAccounts: 5, mappings: 3, invalid: 0, conflicts: 0 });
  t.strictSame(report.findings, [{ kind: 'would-be-denied', message: 'ServiceAccount payments/default (enforce namespace): runs using it would be denied: no IdentityMapping claims it' }]);
});

t.test('mappings check: conflicts and invalid mappings are reported; a clean set exits 0', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tzw-check-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'objs'));
  cpSync(examples, join(dir, 'objs'), { recursive: true, filter: (p) => !p.includes('reviews') });
  writeFileSync(join(dir, 'objs', 'extra.yaml'), `
apiVersion: tekton-zscaler.io/v1alpha1
kind: IdentityMapping
metadata: {name: payments-ci-copy}
spec: {serviceAccounts: [{namespace: payments, name: ci-builder}], provider: okta, okta: {issuer: "https://example.okta.com", clientId: abc}}
---
apiVersion: tekton-zscaler.io/v1alpha1
kind: IdentityMapping
metadata: {name: broken}
spec: {serviceAccounts: [{namespace: payments, name: default}], provider: aws-iam, tokenExpirationSeconds: 5}
`);
  const c = cli();
  t.equal(await run(['mappings', 'check', '--objects', join(dir, 'objs')], c.io), 1);
  t.match(c.out(), /CONFLICT\s+ServiceAccount payments\/ci-builder is claimed by more than one IdentityMapping \(payments-ci, payments-ci-copy\)/);
  t.match(c.out(), /INVALID-MAPPING\s+IdentityMapping broken is invalid: .*spec.aws is required when provider is aws-iam/);
  t.match(c.out(), /tokenExpirationSeconds must be >= 600/);
  const docs = parseAllDocuments(readFileSync(join(examples, 'identitymappings.yaml'), 'utf8')).length;
  t.equal(docs, 3);
  writeFileSync(join(dir, 'objs', 'extra.yaml'), `
apiVersion: tekton-zscaler.io/v1alpha1
kind: IdentityMapping
metadata: {name: payments-default}
spec: {serviceAccounts: [{namespace: payments, name: default}], provider: aws-iam, aws: {roleArn: "arn:aws:iam::123456789012:role/payments-default"}}
`);
  const clean = cli();
  t.equal(await run(['mappings', 'check', '--objects', join(dir, 'objs')], clean.io), 0);
  t.match(clean.out(), /No problems found/);
});
