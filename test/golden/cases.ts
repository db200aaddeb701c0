/**
 * The golden patch cases: each reconstructed Tekton pod of `test/fixtures/corpus/tekton-pods/` under the
 * providers worth showing, in native and classic sidecar mode. One folder per case:
 * `test/golden/<case>/review.json` (the AdmissionReview as the API server sends it) and
 * `expected-patch.json` (the decoded JSON Patch). Read by test/core/golden.test.ts; written only
 * by `npx tsx scripts/regen-golden.ts`.
 */
import { createMemoryFacts } from '../../webhook/core/facts-memory.js';
import type { Facts, Provider } from '../../webhook/core/mapping.js';
import type { DecideOptions, SidecarMode } from '../../webhook/core/options.js';
import type { AdmissionRequest, KubeObject } from '../../webhook/core/wire.js';
import { aMapping, aNamespace, defaultOptions } from '../builders.js';

export interface GoldenCase {
  /** Folder name: `<pod file without .yaml>--<provider>--<mode>`. */
  name: string;
  podFile: string;
  provider: Provider;
  mode: SidecarMode;
}

/** Every decision id in the goldens (the pod's decision-id annotation). */
export const GOLDEN_DECISION_ID = '01936f6e-7b1a-7c3d-9e4f-5a6b7c8d9e0f';
/** Namespace annotation tags in every golden namespace, to show the union with the mapping's. */
export const GOLDEN_NAMESPACE_TAGS = ['tekton', 'ci'];

const PLAN: Array<[string, Provider[]]> = [
  ['01-standalone-taskrun-script-step.yaml', ['aws-iam', 'azure-ad', 'okta']],
  ['02-pipelinerun-child-with-sidecar-and-workspace.yaml', ['azure-ad']],
  ['03-native-sidecar-mode.yaml', ['okta']],
  ['04-ready-immediately-vault-annotations-no-automount.yaml', ['aws-iam']],
  ['05-older-tekton-v0.47-v1beta1-pipelinerun-child.yaml', ['aws-iam']],
];

export const GOLDEN_CASES: GoldenCase[] = PLAN.flatMap(([podFile, providers]) =>
  providers.flatMap((provider) =>
    (['native', 'classic'] as const).map((mode) => ({ name: `${podFile.replace(/\.yaml$/, '')}--${provider}--${mode}`, podFile, provider, mode })),
  ),
);

/** The AdmissionReview the API server would send for `pod` (kept as-is inside `request.object`). */
export function toGoldenReview(c: GoldenCase, pod: KubeObject): Record<string, unknown> {
  const md = pod.metadata as Record<string, unknown>;
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: `golden-${c.name}`,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      requestResource: { group: '', version: 'v1', resource: 'pods' },
      name: md.name,
      namespace: md.namespace,
      operation: 'CREATE',
      userInfo: {
        username: 'system:serviceaccount:tekton-pipelines:tekton-pipelines-controller',
        uid: '3f1c2b4a-0d9e-4f7a-8b6c-5e4d3c2b1a09',
        groups: ['system:serviceaccounts', 'system:serviceaccounts:tekton-pipelines', 'system:authenticated'],
      },
      object: pod,
      oldObject: null,
      dryRun: false,
      options: { apiVersion: 'meta.k8s.io/v1', kind: 'CreateOptions' },
    },
  };
}

/** Facts for a case: the pod's namespace enforced, its ServiceAccount mapped to `provider`. */
export function goldenFacts(c: GoldenCase, req: AdmissionRequest): Facts {
  const namespace = req.namespace ?? '';
  const spec = (req.object?.spec ?? {}) as Record<string, unknown>;
  const sa = typeof spec.serviceAccountName === 'string' && spec.serviceAccountName ? spec.serviceAccountName : 'default';
  return createMemoryFacts({
    namespaces: [aNamespace({ name: namespace, mode: 'enforce', policyTags: GOLDEN_NAMESPACE_TAGS })],
    mappings: [aMapping({ name: `${namespace}-${sa}`, provider: c.provider, serviceAccounts: [{ namespace, name: sa }] })],
  });
}

const optionsByMode: Record<SidecarMode, DecideOptions> = { native: defaultOptions({ mode: 'native' }), classic: defaultOptions({ mode: 'classic' }) };

export function goldenOptions(c: GoldenCase): DecideOptions {
  return optionsByMode[c.mode];
}
