/**
 * What the benchmark sends and what the server under test knows: the AdmissionReviews for /mutate
 * and /validate, the Namespaces, ServiceAccounts and IdentityMappings, and the decision records
 * used to fill the 1M-record store. Deterministic: the same arguments give the same objects.
 */
import { toDecideOptions } from '../webhook/config/options.js';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { CORPUS_DIR } from '../test/corpus.js';
import type { DecisionRecord } from '../webhook/core/record.js';
import { decideAdmission } from '../webhook/core/admit.js';
import { createFactsIndex } from '../webhook/core/mapping-index.js';
import type { AddOperation } from '../webhook/core/verdict.js';
import { parseAdmissionReview } from '../webhook/core/wire.js';
import { defaultConfig } from '../webhook/config/schema.js';
import { formatMicros } from '../webhook/core/record.js';
import type { FactsIndex } from '../webhook/core/mapping-index.js';

export const CORPUS_PODS = join(CORPUS_DIR, 'tekton-pods');
/** The namespace and ServiceAccounts of the corpus pod 02 and the PipelineRun it came from. */
export const BENCH_NAMESPACE = 'ci';
export const POD_SERVICE_ACCOUNT = 'test-runner';
export const RUN_SERVICE_ACCOUNT = 'ci-runner';
/** Generated ServiceAccounts per generated namespace (100,000 mappings → 1,000 namespaces). */
const SAS_PER_NAMESPACE = 100;

type Json = Record<string, unknown>;


/** Corpus pod 02 (a PipelineRun child pod with a sidecar and a workspace), as the API server sends it on CREATE. */
export function loadBenchPod(dir = CORPUS_PODS): Json {
  const file = readdirSync(dir).find((f) => f.startsWith('02-') && f.endsWith('.yaml'));
  if (!file) throw new Error(`no 02-*.yaml pod in ${dir}`);
  const pod = parseYaml(readFileSync(join(dir, file), 'utf8')) as Json;
  if (pod?.kind !== 'Pod') throw new Error(`${file} is not a Pod`);
  return pod;
}

/**
 * The PipelineRun that created pod 02 (its header comment describes it): v1, a run-wide
 * ServiceAccount in taskRunTemplate and a per-task one in taskRunSpecs, both of which must be mapped.
 */
export function benchPipelineRun(): Json {
  return {
    apiVersion: 'tekton.dev/v1',
    kind: 'PipelineRun',
    metadata: {
      name: 'build-and-test-run-4mz8p',
      generateName: 'build-and-test-run-',
      namespace: BENCH_NAMESPACE,
      uid: '5b0e6f7a-3c1d-4e8b-9a2f-6d4c8b1e2f30',
      creationTimestamp: null,
      labels: {
        'tekton.dev/pipeline': 'build-and-test',
        'triggers.tekton.dev/eventlistener': 'github-listener',
        'triggers.tekton.dev/trigger': 'github-push',
        'triggers.tekton.dev/triggers-eventid': '0c6f5d7e-1a2b-4c3d-9e8f-7a6b5c4d3e2f',
      },
      annotations: { 'triggers.tekton.dev/source': 'github', 'tekton.dev/git-revision': '3f2c1a9e7b6d5c4f3e2d1c0b9a8f7e6d5c4b3a29' },
    },
    spec: {
      pipelineRef: { name: 'build-and-test' },
      params: [
        { name: 'repo-url', value: 'https://github.com/example/payments-service.git' },
        { name: 'revision', value: '3f2c1a9e7b6d5c4f3e2d1c0b9a8f7e6d5c4b3a29' },
        { name: 'go-version', value: '1.23' },
        { name: 'packages', value: ['./cmd/...', './internal/...', './pkg/...'] },
      ],
      taskRunTemplate: {
        serviceAccountName: RUN_SERVICE_ACCOUNT,
        podTemplate: { securityContext: { fsGroup: 65532 }, nodeSelector: { 'kubernetes.io/arch': 'amd64' } },
      },
      taskRunSpecs: [
        { pipelineTaskName: 'unit-test', serviceAccountName: POD_SERVICE_ACCOUNT, computeResources: { requests: { cpu: '500m', memory: '1Gi' } } },
      ],
      timeouts: { pipeline: '1h0m0s', tasks: '50m0s', finally: '10m0s' },
      workspaces: [
        {
          name: 'shared-data',
          volumeClaimTemplate: {
            metadata: { creationTimestamp: null },
            spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
            status: {},
          },
        },
        { name: 'git-credentials', secret: { secretName: 'github-deploy-key' } },
      ],
    },
  };
}

function gvkOf(object: Json): { group: string; version: string; kind: string } {
  const apiVersion = String(object.apiVersion);
  const [group, version] = apiVersion.includes('/') ? (apiVersion.split('/') as [string, string]) : ['', apiVersion];
  return { group, version, kind: String(object.kind) };
}

/** A CREATE AdmissionReview the way kube-apiserver sends it (resource, requestKind, options, userInfo). */
export function toReview(object: Json, username: string): Json {
  const gvk = gvkOf(object);
  const md = object.metadata as Json;
  const resource = `${gvk.kind.toLowerCase()}s`;
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: '705ab4f5-6393-11e8-b7cc-42010a800002',
      kind: gvk,
      resource: { group: gvk.group, version: gvk.version, resource },
      requestKind: gvk,
      requestResource: { group: gvk.group, version: gvk.version, resource },
      name: md.name,
      namespace: md.namespace,
      operation: 'CREATE',
      userInfo: {
        username,
        uid: '1f4e2c77-0d7b-4c4a-9b8e-3c2a1d0e9f8a',
        groups: ['system:serviceaccounts', `system:serviceaccounts:${username.split(':')[2] ?? 'default'}`, 'system:authenticated'],
      },
      object,
      oldObject: null,
      dryRun: false,
      options: { apiVersion: 'meta.k8s.io/v1', kind: 'CreateOptions' },
    },
  };
}

export function mutateReviewBody(): string {
  return JSON.stringify(toReview(loadBenchPod(), 'system:serviceaccount:tekton-pipelines:tekton-pipelines-controller'));
}

export function validateReviewBody(): string {
  return JSON.stringify(toReview(benchPipelineRun(), 'system:serviceaccount:ci:tekton-triggers-sa'));
}

const PROVIDERS = ['aws-iam', 'azure-ad', 'okta'] as const;

function hex(n: number, width: number): string {
  return (n >>> 0).toString(16).padStart(width, '0').slice(-width);
}

/** IdentityMapping number `i` claiming one ServiceAccount; provider blocks rotate over the three providers. */
export function benchMapping(i: number, namespace: string, serviceAccount: string): Json {
  const provider = PROVIDERS[i % PROVIDERS.length]!;
  const spec: Json = {
    serviceAccounts: [{ namespace, name: serviceAccount }],
    provider,
    tokenExpirationSeconds: 600 + (i % 10) * 60,
    policyTags: ['ci', `team-${i % 50}`],
  };
  if (provider === 'aws-iam') spec.aws = { roleArn: `arn:aws:iam::${String(100000000000 + (i % 900000000000))}:role/ci-${i}` };
  else if (provider === 'azure-ad') spec.azure = { clientId: `${hex(i, 8)}-0000-4000-8000-${hex(i * 7919, 12)}`, tenantId: '72f988bf-86f1-41af-91ab-2d7cd011db47' };
  else spec.okta = { issuer: 'https://example.okta.com/oauth2/default', clientId: `0oa${hex(i, 8)}bench` };
  return { apiVersion: 'tekton-zscaler.io/v1alpha1', kind: 'IdentityMapping', metadata: { name: `bench-${i}` }, spec };
}

/**
 * Loads `mappings` IdentityMappings and as many ServiceAccounts (one each), in enforce namespaces.
 * Mappings 0 and 1 are the benchmark's own (ci/test-runner, ci/ci-runner), so every size serves the
 * same requests. Returns the number of problems the index reported (must be 0).
 */
export function loadBenchFacts(index: FactsIndex, mappings: number): number {
  if (!Number.isInteger(mappings) || mappings < 2) throw new Error(`mappings must be an integer >= 2, got ${mappings}`);
  const enrol = (name: string) =>
    index.upsertNamespace({ metadata: { name, labels: { 'tekton-zscaler.io/mode': 'enforce' }, annotations: { 'tekton-zscaler.io/policy-tags': 'build,egress-restricted' } } });
  enrol(BENCH_NAMESPACE);
  let problems = 0;
  for (let i = 0; i < mappings; i++) {
    let namespace = BENCH_NAMESPACE;
    let sa: string;
    if (i === 0) sa = POD_SERVICE_ACCOUNT;
    else if (i === 1) sa = RUN_SERVICE_ACCOUNT;
    else {
      const g = i - 2;
      namespace = `team-${String(Math.floor(g / SAS_PER_NAMESPACE)).padStart(4, '0')}`;
      sa = `builder-${g % SAS_PER_NAMESPACE}`;
      if (g % SAS_PER_NAMESPACE === 0) enrol(namespace);
    }
    index.upsertServiceAccount({ metadata: { namespace, name: sa } });
    problems += index.upsertMapping(benchMapping(i, namespace, sa)).length;
  }
  return problems;
}

/** Deterministic xorshift32 in [0, 1): the filled store is the same on every machine. */
export function createRandom(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x1_0000_0000;
  };
}

export const FILL_NAMESPACES = 200;
/** The filled records span this many days ending at FILL_END_MICROS. */
export const FILL_DAYS = 30;
export const FILL_END_MICROS = 1_767_225_600_000_000n; // 2026-01-01T00:00:00Z

/**
 * Decision record number `i` of `total` for the store fill: times rise evenly over FILL_DAYS,
 * a mix of verdicts, kinds and namespaces like a busy cluster's; patched pods carry `podPatch`
 * (the real patch for corpus pod 02, see benchPodPatch), so records have production's size.
 */
export function fillRecord(i: number, total: number, replica: string, rnd: () => number, podPatch: AddOperation[]): DecisionRecord {
  const spanMicros = BigInt(FILL_DAYS) * 86_400_000_000n;
  const micros = FILL_END_MICROS - spanMicros + (spanMicros * BigInt(i)) / BigInt(total);
  const ns = `team-${String(Math.floor(rnd() * FILL_NAMESPACES)).padStart(4, '0')}`;
  const sa = `builder-${Math.floor(rnd() * 20)}`;
  const run = `build-${hex(Math.floor(rnd() * 0xffffffff), 8)}`;
  const kindPick = rnd();
  const isPod = kindPick < 0.6;
  const kind = isPod ? { group: '', version: 'v1', kind: 'Pod' } : kindPick < 0.85 ? { group: 'tekton.dev', version: 'v1', kind: 'TaskRun' } : { group: 'tekton.dev', version: 'v1', kind: 'PipelineRun' };
  const denied = rnd() < 0.03;
  const verdict = denied ? 'denied' : isPod ? 'patched' : 'allowed';
  const mapping = denied ? null : { name: `${ns}-${sa}`, provider: 'aws-iam' as const, subject: `arn:aws:iam::123456789012:role/${ns}-${sa}` };
  const patch = verdict === 'patched' ? podPatch : [];
  return {
    id: `0190${hex(i >>> 16, 4)}-${hex(i, 4)}-7${hex(Math.floor(rnd() * 0xfff), 3)}-8${hex(Math.floor(rnd() * 0xfff), 3)}-${hex(Math.floor(rnd() * 0xffffffff), 8)}${hex(i, 4)}`,
    time: formatMicros(micros),
    requestUid: `${hex(Math.floor(rnd() * 0xffffffff), 8)}-6393-11e8-b7cc-${hex(i, 12)}`,
    endpoint: isPod ? 'mutate' : 'validate',
    operation: 'CREATE',
    kind,
    namespace: ns,
    name: isPod ? `${run}-pod` : run,
    user: { username: 'system:serviceaccount:tekton-pipelines:tekton-pipelines-controller', groups: ['system:serviceaccounts', 'system:authenticated'] },
    serviceAccounts: [`${ns}/${sa}`],
    mode: 'enforce',
    verdict,
    reasons: denied ? [{ code: isPod ? 'POD_SA_UNMAPPED' : 'TASKRUN_SA_UNMAPPED', message: `ServiceAccount ${ns}/${sa} has no IdentityMapping` }] : [],
    mapping,
    policyTags: denied ? [] : ['ci', 'egress-restricted'],
    patch,
    objectDigest: hex(Math.floor(rnd() * 0xffffffff), 8).repeat(8),
    tekton: isPod ? { taskRun: `${run}-build`, pipelineRun: run, task: 'build', pipelineTask: 'build' } : kind.kind === 'TaskRun' ? { taskRun: run } : { pipelineRun: run },
    dryRun: false,
    replica,
    durationMs: Math.round(rnd() * 3000) / 1000,
  } as DecisionRecord;
}

/** The JSON Patch the decision core returns for corpus pod 02 under the default config. */
export function benchPodPatch(): AddOperation[] {
  const config = defaultConfig('bench-0');
  const index = createFactsIndex(config.domain);
  loadBenchFacts(index, 2);
  const parsed = parseAdmissionReview(JSON.parse(mutateReviewBody()));
  if (!parsed.ok) throw new Error(`the bench pod review is invalid: ${parsed.message}`);
  const decision = decideAdmission('mutate', parsed.review.request, index, toDecideOptions(config), '01900000-0000-7000-8000-000000000000');
  if (decision.verdict !== 'patched') throw new Error(`the bench pod was not patched: ${decision.verdict}`);
  return decision.patch;
}
