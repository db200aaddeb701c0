/**
 * Test builders: the smallest valid objects, with the one or two fields a test cares about passed
 * in. Every call returns fresh objects, so tests may change them freely.
 */
import { keysFor } from '../webhook/core/keys.js';
import {
  DEFAULT_AUDIENCE, DEFAULT_AZURE_AUTHORITY_HOST, DEFAULT_TOKEN_TTL_SECONDS,
  type NamespaceFacts, type Provider, type ResolvedMapping, type ServiceAccountRef,
} from '../webhook/core/mapping.js';
import { DEFAULT_SERVICE_ACCOUNT, DEFAULT_TOKEN_MOUNT_PATH, type DecideOptions, type SidecarMode } from '../webhook/core/options.js';
import type { AdmissionRequest, KubeObject, Operation } from '../webhook/core/wire.js';

export const NS = 'payments';

// ---------------------------------------------------------------- runs

export interface RunOptions {
  version?: 'v1' | 'v1beta1';
  name?: string;
  /** Used instead of `name` when set (and `name` is then left out). */
  generateName?: string;
  namespace?: string;
  labels?: Record<string, string>;
}

function runMetadata(o: RunOptions, fallbackName: string): Record<string, unknown> {
  const md: Record<string, unknown> = o.generateName ? { generateName: o.generateName } : { name: o.name ?? fallbackName };
  md.namespace = o.namespace ?? NS;
  if (o.labels) md.labels = { ...o.labels };
  return md;
}

/** A TaskRun with a taskRef; `serviceAccountName` is written as given (any JSON value) unless undefined. */
export function aTaskRun(o: RunOptions & { serviceAccountName?: unknown; spec?: Record<string, unknown> } = {}): KubeObject {
  const spec: Record<string, unknown> = { taskRef: { name: 'build' }, ...o.spec };
  if (o.serviceAccountName !== undefined) spec.serviceAccountName = o.serviceAccountName;
  return { apiVersion: `tekton.dev/${o.version ?? 'v1'}`, kind: 'TaskRun', metadata: runMetadata(o, 'build-run'), spec };
}

export interface TaskRunSpecEntry {
  pipelineTaskName?: string;
  /** Written to `serviceAccountName` (v1) or `taskServiceAccountName` (v1beta1), as given. */
  serviceAccountName?: unknown;
}

/**
 * A PipelineRun with a pipelineRef. `serviceAccountName` is the run-wide SA, written where the
 * version keeps it (v1 `spec.taskRunTemplate.serviceAccountName`, v1beta1 `spec.serviceAccountName`).
 */
export function aPipelineRun(o: RunOptions & { serviceAccountName?: unknown; taskRunSpecs?: TaskRunSpecEntry[]; spec?: Record<string, unknown> } = {}): KubeObject {
  const version = o.version ?? 'v1';
  const spec: Record<string, unknown> = { pipelineRef: { name: 'ci' }, ...o.spec };
  if (o.serviceAccountName !== undefined) {
    if (version === 'v1') spec.taskRunTemplate = { serviceAccountName: o.serviceAccountName };
    else spec.serviceAccountName = o.serviceAccountName;
  }
  if (o.taskRunSpecs) {
    const key = version === 'v1' ? 'serviceAccountName' : 'taskServiceAccountName';
    spec.taskRunSpecs = o.taskRunSpecs.map((e) => {
      const entry: Record<string, unknown> = { pipelineTaskName: e.pipelineTaskName ?? 'build' };
      if (e.serviceAccountName !== undefined) entry[key] = e.serviceAccountName;
      return entry;
    });
  }
  return { apiVersion: `tekton.dev/${version}`, kind: 'PipelineRun', metadata: runMetadata(o, 'ci-run'), spec };
}

// ---------------------------------------------------------------- pods

export interface PodOptions {
  name?: string;
  namespace?: string;
  /** The tekton.dev/taskRun label; `null` leaves it out. */
  taskRun?: string | null;
  labels?: Record<string, string>;
  /** `null` leaves metadata.annotations out entirely. */
  annotations?: Record<string, string> | null;
  serviceAccountName?: string;
  containers?: Record<string, unknown>[];
  /** `null` leaves spec.initContainers out. */
  initContainers?: Record<string, unknown>[] | null;
  /** `null` leaves spec.volumes out. */
  volumes?: Record<string, unknown>[] | null;
  /** Extra spec fields, merged last. */
  spec?: Record<string, unknown>;
}

/** A container with a name and (optionally) the raw fields given. */
export function aContainer(name: string, fields: Record<string, unknown> = {}): Record<string, unknown> {
  return { name, image: 'alpine:3.20', ...fields };
}

/** A Tekton-like pod: `prepare` init container, one step, a tekton-internal volume, the taskRun label. */
export function aPod(o: PodOptions = {}): KubeObject {
  const labels: Record<string, string> = { 'app.kubernetes.io/managed-by': 'tekton-pipelines', ...o.labels };
  if (o.taskRun !== null) labels['tekton.dev/taskRun'] = o.taskRun ?? 'build-run';
  const metadata: Record<string, unknown> = { name: o.name ?? 'build-run-pod', namespace: o.namespace ?? NS, labels };
  if (o.annotations !== null) metadata.annotations = { 'pipeline.tekton.dev/release': 'abc123', ...o.annotations };
  const spec: Record<string, unknown> = {
    serviceAccountName: o.serviceAccountName ?? 'ci-builder',
    restartPolicy: 'Never',
    containers: o.containers ?? [
      aContainer('step-build', {
        command: ['/tekton/bin/entrypoint'],
        volumeMounts: [{ name: 'tekton-internal-bin', mountPath: '/tekton/bin', readOnly: true }],
      }),
    ],
  };
  if (o.initContainers !== null) {
    spec.initContainers = o.initContainers ?? [aContainer('prepare', { volumeMounts: [{ name: 'tekton-internal-bin', mountPath: '/tekton/bin' }] })];
  }
  if (o.volumes !== null) spec.volumes = o.volumes ?? [{ name: 'tekton-internal-bin', emptyDir: {} }];
  Object.assign(spec, o.spec);
  return { apiVersion: 'v1', kind: 'Pod', metadata, spec };
}

// ---------------------------------------------------------------- facts

export interface MappingOptions {
  name?: string;
  provider?: Provider;
  serviceAccounts?: ServiceAccountRef[];
  policyTags?: string[];
  audience?: string;
  tokenExpirationSeconds?: number;
}

/** A ResolvedMapping with the provider's SDK env (DESIGN.md "Mutate", item 2) and defaults applied. */
export function aMapping(o: MappingOptions = {}): ResolvedMapping {
  const provider = o.provider ?? 'aws-iam';
  const serviceAccounts = o.serviceAccounts ?? [{ namespace: NS, name: 'ci-builder' }];
  let subject: string;
  let audience: string;
  let env: Array<readonly [string, string]>;
  switch (provider) {
    case 'aws-iam':
      subject = 'arn:aws:iam::123456789012:role/payments-ci';
      audience = DEFAULT_AUDIENCE['aws-iam'];
      env = [['AWS_ROLE_ARN', subject]];
      break;
    case 'azure-ad':
      subject = '00000000-1111-2222-3333-444444444444';
      audience = DEFAULT_AUDIENCE['azure-ad'];
      env = [['AZURE_CLIENT_ID', subject], ['AZURE_TENANT_ID', '55555555-6666-7777-8888-999999999999'], ['AZURE_AUTHORITY_HOST', DEFAULT_AZURE_AUTHORITY_HOST]];
      break;
    case 'okta':
      subject = '0oa1b2c3d4e5f6g7h8i9';
      audience = subject;
      env = [['OKTA_CLIENT_ID', subject], ['OKTA_ISSUER', 'https://example.okta.com/oauth2/default']];
      break;
  }
  return {
    name: o.name ?? 'payments-ci',
    serviceAccounts,
    provider,
    subject,
    audience: o.audience ?? audience,
    tokenExpirationSeconds: o.tokenExpirationSeconds ?? DEFAULT_TOKEN_TTL_SECONDS,
    policyTags: o.policyTags ?? ['ci', 'payments-artifacts'],
    env,
  };
}

export function aNamespace(o: Partial<NamespaceFacts> = {}): NamespaceFacts {
  return { name: o.name ?? NS, ...('mode' in o ? (o.mode ? { mode: o.mode } : {}) : { mode: 'enforce' as const }), policyTags: o.policyTags ?? [] };
}

// ---------------------------------------------------------------- requests and options

export interface RequestOptions {
  operation?: Operation;
  namespace?: string;
  uid?: string;
  dryRun?: boolean;
  /** Overrides the kind derived from the object's apiVersion/kind. */
  kind?: { group: string; version: string; kind: string };
}

/** An AdmissionRequest for `object` (kept by reference), kind derived from its apiVersion/kind. */
export function aRequest(object: KubeObject | null, o: RequestOptions = {}): AdmissionRequest {
  const apiVersion = typeof object?.apiVersion === 'string' ? object.apiVersion : 'v1';
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/', 2) as [string, string] : ['', apiVersion];
  const md = object?.metadata as Record<string, unknown> | undefined;
  const namespace = o.namespace ?? (typeof md?.namespace === 'string' ? md.namespace : NS);
  return {
    uid: o.uid ?? '7c9e6679-7425-40de-944b-e07fc1f90ae7',
    kind: o.kind ?? { group, version, kind: typeof object?.kind === 'string' ? object.kind : 'Pod' },
    namespace,
    operation: o.operation ?? 'CREATE',
    userInfo: { username: 'system:serviceaccount:tekton-pipelines:tekton-pipelines-controller', groups: ['system:serviceaccounts'] },
    object,
    dryRun: o.dryRun ?? false,
  };
}

/** Options as `tzw serve` would derive them from an embedded-default config. */
export function defaultOptions(o: { mode?: SidecarMode; tokenMountPath?: string; defaultServiceAccount?: string; domain?: string } = {}): DecideOptions {
  return {
    keys: keysFor(o.domain),
    defaultServiceAccount: o.defaultServiceAccount ?? DEFAULT_SERVICE_ACCOUNT,
    tokenMountPath: o.tokenMountPath ?? DEFAULT_TOKEN_MOUNT_PATH,
    sidecar: {
      image: 'ghcr.io/example/zscaler-tunnel:1.4.2',
      mode: o.mode ?? 'native',
      args: ['--listen=127.0.0.1:15001'],
      resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '128Mi' } },
      securityContext: { runAsNonRoot: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
      probe: { httpGet: { path: '/ready', port: 15021 }, periodSeconds: 1, failureThreshold: 30 },
    },
  };
}
