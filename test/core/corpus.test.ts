/**
 * The real-data corpus (test/fixtures/corpus/, or $TZW_CORPUS_DIR) through the decision core:
 * (a) every Tekton example TaskRun/PipelineRun gets the verdict a mapping set implies, with the
 *     expectation read independently from each document's fields;
 * (b) every reconstructed Tekton pod and every Istio injection input (pod templates wrapped as
 *     Tekton pods) gets a patch that applies cleanly, keeps every original field, keeps names and
 *     mountPaths unique, and is idempotent — or, for hostNetwork pods, a denial.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import t from 'tap';
import { parseAllDocuments } from 'yaml';
import { decideAdmission } from '../../webhook/core/admit.js';
import { createMemoryFacts } from '../../webhook/core/facts-memory.js';
import { PROVIDERS, type Facts, type ResolvedMapping } from '../../webhook/core/mapping.js';
import type { Decision } from '../../webhook/core/verdict.js';
import type { KubeObject } from '../../webhook/core/wire.js';
import { CORPUS_DIR } from '../corpus.js';
import { aMapping, aNamespace, aRequest, defaultOptions } from '../builders.js';
import { addOnlyViolations, allContainers, applyOps, duplicateNames, envNames, firstLoss, tunnelPlacementProblems } from './patch-check.js';

const corpusDir = CORPUS_DIR;
if (!existsSync(join(corpusDir, 'tekton-examples'))) {
  throw new Error(`corpus not found at ${corpusDir}: the repository ships it under test/fixtures/corpus/; TZW_CORPUS_DIR must point at a copy of that folder`);
}

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- raw YAML documents

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)])).sort();
}

function yamlDocs(file: string): Obj[] {
  return parseAllDocuments(readFileSync(file, 'utf8')).flatMap((doc) => {
    if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0]?.message}`);
    const js: unknown = doc.toJS();
    return js && typeof js === 'object' ? [js as Obj] : [];
  });
}

// ------------------------------------------------------------------------------------------ (a)

interface Run { file: string; doc: Obj }
const examplesDir = join(corpusDir, 'tekton-examples');
const runs: Run[] = walk(examplesDir)
  .filter((f) => /\.ya?ml$/.test(f))
  .flatMap((file) => yamlDocs(file).map((doc) => ({ file: relative(examplesDir, file), doc })))
  .filter(({ doc }) => (doc.kind === 'TaskRun' || doc.kind === 'PipelineRun') && /^tekton\.dev\/v1(beta1)?$/.test(String(doc.apiVersion)));

const EXAMPLES_NS = 'tekton-examples';

/** The ServiceAccounts Tekton would use, read straight from the document (docs/pipelineruns.md). */
function expectedAccounts(doc: Obj, defaultSa: string): string[] {
  const spec: Obj = doc.spec ?? {};
  const out: string[] = [];
  const v1 = doc.apiVersion === 'tekton.dev/v1';
  if (doc.kind === 'TaskRun') out.push(spec.serviceAccountName || defaultSa);
  else {
    out.push((v1 ? spec.taskRunTemplate?.serviceAccountName : spec.serviceAccountName) || defaultSa);
    for (const entry of spec.taskRunSpecs ?? []) {
      const sa = v1 ? entry.serviceAccountName : entry.taskServiceAccountName;
      if (sa) out.push(sa);
    }
  }
  return [...new Set(out)];
}

function namespaceOf(doc: Obj): string {
  return doc.metadata?.namespace ?? EXAMPLES_NS;
}

const onlyDefaultMapped = (mode: 'enforce' | 'audit'): Facts => {
  const namespaces = [...new Set(runs.map((r) => namespaceOf(r.doc)))];
  return createMemoryFacts({
    namespaces: namespaces.map((name) => aNamespace({ name, mode })),
    mappings: namespaces.map((ns) => aMapping({ name: `${ns}-default`, serviceAccounts: [{ namespace: ns, name: 'default' }] })),
  });
};

const countBy = <T>(items: T[], f: (x: T) => boolean): number => items.filter(f).length;
const v1Runs = countBy(runs, (r) => r.doc.apiVersion === 'tekton.dev/v1');
const allDefault = (r: Run, defaultSa: string): boolean => expectedAccounts(r.doc, defaultSa).every((sa) => sa === 'default');

for (const [defaultSa, mode] of [['default', 'enforce'], ['default', 'audit'], ['pipeline', 'enforce']] as const) {
  const ok = countBy(runs, (r) => allDefault(r, defaultSa));
  const title = `${runs.length} TaskRun/PipelineRun documents (${v1Runs} v1, ${runs.length - v1Runs} v1beta1), only "default" mapped, ` +
    `Tekton default "${defaultSa}", ${mode}: ${ok} allowed, ${runs.length - ok} ${mode === 'enforce' ? 'denied' : 'warned'}`;
  t.test(title, async (t) => {
    const facts = onlyDefaultMapped(mode);
    const opts = defaultOptions({ defaultServiceAccount: defaultSa });
    let allowedN = 0;
    for (const { file, doc } of runs) {
      const ns = namespaceOf(doc);
      const d = decideAdmission('validate', aRequest(doc, { namespace: ns }), facts, opts, 'corpus');
      const accounts = expectedAccounts(doc, defaultSa);
      const unmapped = accounts.filter((sa) => sa !== 'default');
      const name = `${file} ${doc.kind} ${doc.metadata?.name ?? doc.metadata?.generateName}`;
      t.strictSame(d.serviceAccounts, accounts.map((sa) => `${ns}/${sa}`), `${name}: ServiceAccounts`);
      if (unmapped.length === 0) {
        allowedN++;
        t.strictSame([d.verdict, d.reasons.map((r) => r.code)], ['allowed', ['TASKRUN_SA_MAPPED']], `${name}: allowed`);
        continue;
      }
      const code = doc.kind === 'TaskRun' ? 'TASKRUN_SA_UNMAPPED' : 'PIPELINERUN_SA_UNMAPPED';
      t.strictSame(
        [d.verdict, d.reasons],
        [mode === 'enforce' ? 'denied' : 'warned', unmapped.map((sa) => ({ code, message: `ServiceAccount ${ns}/${sa} has no IdentityMapping.`, serviceAccount: `${ns}/${sa}` }))],
        `${name}: ${mode === 'enforce' ? 'denied' : 'warned'} naming ${unmapped.join(', ')}`,
      );
      for (const sa of unmapped) t.ok(d.message.includes(`"${sa}"`) && d.message.includes(`name: ${sa}}`), `${name}: the message names ${sa} and its fix`);
      if (mode === 'enforce') t.strictSame(d.status, { code: 422, reason: 'Invalid' }, `${name}: 422 Invalid`);
    }
    t.equal(allowedN, ok);
  });
}

t.test('the example corpus exercises every ServiceAccount field', async (t) => {
  const uses = (f: (r: Run) => boolean): number => countBy(runs, f);
  t.ok(uses((r) => r.doc.kind === 'TaskRun' && !!r.doc.spec?.serviceAccountName) > 0, 'TaskRun spec.serviceAccountName');
  t.ok(uses((r) => r.doc.kind === 'PipelineRun' && r.doc.apiVersion === 'tekton.dev/v1' && !!r.doc.spec?.taskRunTemplate?.serviceAccountName) > 0, 'v1 taskRunTemplate');
  t.ok(uses((r) => r.doc.kind === 'PipelineRun' && r.doc.apiVersion === 'tekton.dev/v1beta1' && !!r.doc.spec?.serviceAccountName) > 0, 'v1beta1 spec.serviceAccountName');
  t.ok(uses((r) => !expectedAccounts(r.doc, 'default').every((sa) => sa === 'default')) > 0, 'some runs use other ServiceAccounts');
});

// ------------------------------------------------------------------------------------------ (b)

interface CorpusPod { source: string; pod: Obj }
const POD_NS = 'corpus';
const TEMPLATE_KINDS = new Set(['Deployment', 'DaemonSet', 'StatefulSet', 'ReplicaSet', 'ReplicationController', 'Job', 'DeploymentConfig']);

/** The pod template of a workload, or the pod itself; undefined for kinds without one (Service). */
function podTemplateOf(doc: Obj): Obj | undefined {
  if (doc.kind === 'Pod') return { metadata: doc.metadata, spec: doc.spec };
  if (doc.kind === 'CronJob') return doc.spec?.jobTemplate?.spec?.template;
  if (TEMPLATE_KINDS.has(doc.kind)) return doc.spec?.template;
  return undefined;
}

/** Wraps a template as a TaskRun pod: the taskRun label, and containers renamed like Tekton's steps/sidecars. */
function asTektonPod(template: Obj, name: string): Obj {
  const tpl = structuredClone(template);
  const prefixed = (n: unknown): boolean => typeof n === 'string' && (n.startsWith('step-') || n.startsWith('sidecar-'));
  for (const c of tpl.spec?.containers ?? []) if (!prefixed(c.name)) c.name = `step-${c.name}`;
  // Native sidecars (restartPolicy: Always init containers) are what Tekton's native mode calls sidecar-*.
  for (const c of tpl.spec?.initContainers ?? []) if (c.restartPolicy === 'Always' && !prefixed(c.name)) c.name = `sidecar-${c.name}`;
  const labels = { ...tpl.metadata?.labels, 'tekton.dev/taskRun': `${name}-tr` };
  return { apiVersion: 'v1', kind: 'Pod', metadata: { ...tpl.metadata, name, namespace: POD_NS, labels }, spec: tpl.spec };
}

const tektonPods: CorpusPod[] = walk(join(corpusDir, 'tekton-pods'))
  .filter((f) => f.endsWith('.yaml'))
  .map((f) => ({ source: `tekton-pods/${basename(f)}`, pod: yamlDocs(f)[0] ?? {} }));

const istioDir = join(corpusDir, 'istio-inject-inputs/pkg/kube/inject/testdata/inject');
const istioFiles = readdirSync(istioDir).filter((f) => f.endsWith('.yaml') && !f.endsWith('.iop.yaml')).sort();
let istioSkipped = 0;
const istioPods: CorpusPod[] = istioFiles.flatMap((file) => {
  const docs = yamlDocs(join(istioDir, file)).flatMap((d) => (d.kind === 'List' ? (d.items as Obj[]) : [d]));
  return docs.flatMap((doc, i) => {
    const template = podTemplateOf(doc);
    if (!template?.spec) { istioSkipped++; return []; }
    const name = `${file.replace(/\.yaml$/, '').replaceAll('_', '-').toLowerCase()}-${i}`.slice(0, 63);
    return [{ source: `istio/${file}#${i} (${doc.kind})`, pod: asTektonPod(template, name) }];
  });
});

const pods = [...tektonPods, ...istioPods];
const saOf = (pod: Obj): string => pod.spec?.serviceAccountName || pod.spec?.serviceAccount || 'default';
const nsOf = (pod: Obj): string => pod.metadata?.namespace ?? POD_NS;
const hostNetwork = countBy(pods, (p) => p.pod.spec?.hostNetwork === true);

/** Every ServiceAccount in the corpus mapped, providers rotated so each is exercised. */
const podMappings: ResolvedMapping[] = [...new Set(pods.map((p) => `${nsOf(p.pod)}/${saOf(p.pod)}`))].map((key, i) => {
  const [namespace = '', name = ''] = key.split('/');
  return aMapping({ name: `m-${namespace}-${name}`, provider: PROVIDERS[i % PROVIDERS.length], serviceAccounts: [{ namespace, name }] });
});
const podFacts = createMemoryFacts({
  namespaces: [...new Set(pods.map((p) => nsOf(p.pod)))].map((name) => aNamespace({ name, mode: 'enforce', policyTags: ['corpus'] })),
  mappings: podMappings,
});

for (const mode of ['native', 'classic'] as const) {
  const title = `${pods.length} pods (${tektonPods.length} reconstructed Tekton pods, ${istioPods.length} Istio templates from ${istioFiles.length} files, ` +
    `${istioSkipped} non-pod documents skipped), ${mode}: ${pods.length - hostNetwork} patched, ${hostNetwork} hostNetwork denied`;
  t.test(title, async (t) => {
    const opts = defaultOptions({ mode });
    let patchedN = 0;
    for (const { source, pod } of pods) {
      const before = structuredClone(pod);
      const d: Decision = decideAdmission('mutate', aRequest(pod), podFacts, opts, 'corpus-decision');
      t.strictSame(pod, before, `${source}: the request object is not mutated`);
      if (pod.spec?.hostNetwork === true) {
        t.strictSame([d.verdict, d.reasons.map((r) => r.code), d.patch], ['denied', ['POD_HOSTNETWORK_DENIED'], []], `${source}: hostNetwork denied`);
        continue;
      }
      if (d.verdict !== 'patched') {
        t.fail(`${source}: expected patched, got ${d.verdict}: ${d.message}`);
        continue;
      }
      patchedN++;
      const problems: string[] = [...addOnlyViolations(pod, d.patch)];
      let out: Obj | undefined;
      try {
        out = applyOps(pod, d.patch);
      } catch (err) {
        problems.push(`patch does not apply: ${(err as Error).message}`);
      }
      if (out) {
        const lost = firstLoss(pod, out);
        if (lost !== undefined) problems.push(`original field lost or changed at ${lost}`);
        problems.push(...duplicateNames(out));
        problems.push(...tunnelPlacementProblems(pod, out, mode));
        const tunnels = allContainers(out).filter((c) => c.name === 'zscaler-tunnel');
        if (tunnels.length !== 1) problems.push(`${tunnels.length} tunnel containers`);
        for (const c of allContainers(out)) {
          if (!/^(step|sidecar)-/.test(String(c.name))) continue;
          if (!(c.volumeMounts ?? []).some((m) => m.name === 'tekton-zscaler-token' && m.mountPath === opts.tokenMountPath)) problems.push(`${String(c.name)}: no token mount`);
          if (!envNames(c).includes('TZW_OIDC_TOKEN_FILE')) problems.push(`${String(c.name)}: no TZW_OIDC_TOKEN_FILE`);
        }
        const again = decideAdmission('mutate', aRequest(out), podFacts, opts, 'corpus-again');
        if (again.verdict !== 'allowed' || again.patch.length > 0) problems.push(`not idempotent: ${again.verdict} with ${again.patch.length} ops`);
      }
      t.strictSame(problems, [], `${source}: ${d.patch.length} ops apply cleanly, keep every field, unique names, idempotent`);
    }
    t.equal(patchedN, pods.length - hostNetwork);
  });
}
