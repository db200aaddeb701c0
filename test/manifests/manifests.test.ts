/**
 * The kustomize base and overlays, rendered with the real `kubectl kustomize` and checked offline:
 * every document against its schema (kubernetes-models for built-in kinds, the committed CRD for
 * IdentityMappings, a strict schema for the cert-manager subset we use), then the cross-object
 * wiring the server depends on (ports, paths, probes, deadlines, config keys, Secrets), least
 * privilege and the restricted Pod Security Standard.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parse, parseAllDocuments } from 'yaml';
import { crd, crdApiVersion, toProblems } from './validate.js';
import { toServiceDnsNames } from '../../certs/lib.js';
import { DEFAULT_LEASE_NAME as leaseName } from '../../webhook/config/schema.js';
import { cluster, command, configKeys, deadlineMs, envNameFor, loadConfig, packageVersion, paths, ports, toListenOptions } from './server-contract.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MANIFESTS = join(ROOT, 'manifests');

// Rendered objects are untyped YAML; the assertions below say what shape they expect.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> }; [key: string]: any };

// ---------------------------------------------------------------------------------------------
// gather: render with kubectl, parse YAML

async function render(dir: string): Promise<Obj[]> {
  const { stdout } = await promisify(execFile)('kubectl', ['kustomize', dir], { maxBuffer: 32 * 1024 * 1024, env: { ...process.env, KUBECONFIG: '/dev/null' } });
  return toObjects(stdout, dir);
}

function toObjects(text: string, where: string): Obj[] {
  return parseAllDocuments(text).flatMap((doc, i) => {
    if (doc.errors.length > 0) throw new Error(`${where} document ${i + 1}: ${doc.errors[0]?.message}`);
    const value = doc.toJS() as Obj | null;
    return value === null ? [] : [value];
  });
}

const TARGETS = ['manifests', 'manifests/overlays/cert-manager', 'manifests/overlays/ha'] as const;
type Target = (typeof TARGETS)[number];
const rendered = new Map<Target, Obj[]>();
for (const target of TARGETS) rendered.set(target, await render(join(ROOT, target)));

function objects(target: Target): Obj[] {
  return rendered.get(target) ?? [];
}

function one(target: Target, kind: string, name?: string): Obj {
  const found = objects(target).filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found.length !== 1) throw new Error(`${target}: expected one ${kind}${name ? ` ${name}` : ''}, found ${found.length}`);
  return found[0]!;
}

// ---------------------------------------------------------------------------------------------
// decide: schema validation of one object, returning problems (empty = valid)

// ---------------------------------------------------------------------------------------------
// schema validity

const EXPECTED_KINDS: Record<Target, string[]> = {
  manifests: [
    'ClusterRole', 'ClusterRole', 'ClusterRoleBinding', 'ClusterRoleBinding', 'ConfigMap', 'CustomResourceDefinition', 'Deployment', 'MutatingWebhookConfiguration',
    'Namespace', 'NetworkPolicy', 'PodDisruptionBudget', 'Role', 'RoleBinding', 'Service', 'ServiceAccount', 'ValidatingWebhookConfiguration',
  ],
  'manifests/overlays/cert-manager': [],
  'manifests/overlays/ha': [],
};
EXPECTED_KINDS['manifests/overlays/cert-manager'] = [...EXPECTED_KINDS.manifests, 'Certificate', 'Certificate', 'Issuer', 'Issuer'].sort();
// HA: the webhook runs as a StatefulSet (a spool volume per replica) instead of the Deployment.
EXPECTED_KINDS['manifests/overlays/ha'] = EXPECTED_KINDS['manifests/overlays/cert-manager'].map((k) => (k === 'Deployment' ? 'StatefulSet' : k)).sort();

for (const target of TARGETS) {
  t.test(`${target}: renders the expected objects and every one is schema-valid`, async (t) => {
    t.strictSame(objects(target).map((o) => o.kind).sort(), EXPECTED_KINDS[target]);
    const problems = (await Promise.all(objects(target).map(toProblems))).flat();
    t.strictSame(problems, []);
  });
}

t.test('the validators reject broken documents (so a pass above means something)', async (t) => {
  const deployment = one('manifests', 'Deployment');
  const certificate = one('manifests/overlays/cert-manager', 'Certificate', 'tekton-zscaler-webhook');
  const cases: Array<[string, Obj, RegExp]> = [
    ['Deployment replicas as a string', { ...deployment, spec: { ...deployment.spec, replicas: 'two' } }, /replicas must be integer/],
    ['webhook without sideEffects', withoutSideEffects(one('manifests', 'ValidatingWebhookConfiguration')), /sideEffects/],
    ['Certificate with a misspelt field', { ...certificate, spec: { ...certificate.spec, dnsName: ['x'] } }, /additional properties/],
    ['Issuer of two types', { ...one('manifests/overlays/cert-manager', 'Issuer', 'tekton-zscaler-ca'), spec: { ca: { secretName: 'a' }, selfSigned: {} } }, /more than 1 properties/],
    ['unknown apiVersion', { apiVersion: 'example.com/v1', kind: 'Thing', metadata: { name: 'x' } }, /no kubernetes-models schema/],
    ['IdentityMapping with an unknown provider', aMapping({ provider: 'gcp' }), /must be equal to one of the allowed values/],
    ['IdentityMapping with a token TTL below 600', aMapping({ tokenExpirationSeconds: 599 }), /must be >= 600/],
    ['IdentityMapping without serviceAccounts', aMapping({ serviceAccounts: undefined }), /must have required property 'serviceAccounts'/],
    ['IdentityMapping with a misspelt field', aMapping({ policyTag: ['ci'] }), /\.spec\.policyTag is not in the CRD schema/],
  ];
  for (const [name, object, expected] of cases) {
    const problems = await toProblems(object);
    t.match(problems.join('\n'), expected, name);
  }
});

function withoutSideEffects(config: Obj): Obj {
  const copy = structuredClone(config);
  delete copy.webhooks[0].sideEffects;
  return copy;
}

function aMapping(spec: Record<string, unknown>): Obj {
  const base = { serviceAccounts: [{ namespace: 'payments', name: 'ci-builder' }], provider: 'aws-iam', aws: { roleArn: 'arn:aws:iam::123456789012:role/payments-ci' } };
  return { apiVersion: crdApiVersion, kind: 'IdentityMapping', metadata: { name: 'm' }, spec: JSON.parse(JSON.stringify({ ...base, ...spec })) };
}

t.test('manifests/examples: every document is valid against its schema (IdentityMappings against the committed CRD)', async (t) => {
  const dir = join(MANIFESTS, 'examples');
  const files = readdirSync(dir).filter((f) => /\.ya?ml$/.test(f));
  t.ok(files.length > 0, 'examples exist');
  const examples = files.flatMap((f) => toObjects(readFileSync(join(dir, f), 'utf8'), f));
  t.ok(examples.some((o) => o.kind === 'IdentityMapping'), 'the examples include IdentityMappings');
  t.strictSame((await Promise.all(examples.map(toProblems))).flat(), []);
});

// ---------------------------------------------------------------------------------------------
// wiring between objects and the server contract

/** The webhook's workload: the Deployment, or the StatefulSet of overlays/ha. */
function workload(target: Target): Obj {
  const found = objects(target).filter((o) => (o.kind === 'Deployment' || o.kind === 'StatefulSet') && o.metadata.name === cluster.service);
  if (found.length !== 1) throw new Error(`${target}: expected one Deployment or StatefulSet, found ${found.length}`);
  return found[0]!;
}

function podSpec(target: Target): Obj {
  return workload(target).spec.template.spec;
}

function container(target: Target): Obj {
  const containers = podSpec(target).containers as Obj[];
  if (containers.length !== 1) throw new Error(`expected one container, found ${containers.length}`);
  return containers[0]!;
}

/** A probe or Service targetPort may name a container port; resolve it to the number. */
function toContainerPort(target: Target, port: number | string): number {
  if (typeof port === 'number') return port;
  const found = (container(target).ports as Array<{ name: string; containerPort: number }>).find((p) => p.name === port);
  if (found === undefined) throw new Error(`no container port named ${port}`);
  return found.containerPort;
}

const EXPECTED_NAMESPACE_SELECTOR = {
  matchExpressions: [
    { key: 'tekton-zscaler.io/mode', operator: 'In', values: ['enforce', 'audit'] },
    { key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: [cluster.namespace, 'kube-system'] },
  ],
};

function expectedWebhook(kind: 'validate' | 'mutate'): Record<string, unknown> {
  const common = {
    admissionReviewVersions: ['v1'],
    clientConfig: { service: { name: cluster.service, namespace: cluster.namespace, path: paths[kind], port: cluster.servicePort } },
    matchPolicy: 'Equivalent',
    sideEffects: 'NoneOnDryRun',
    failurePolicy: 'Fail',
    timeoutSeconds: 10,
    namespaceSelector: EXPECTED_NAMESPACE_SELECTOR,
  };
  return kind === 'validate'
    ? {
      name: 'validate.tekton-zscaler.io',
      ...common,
      rules: [{ apiGroups: ['tekton.dev'], apiVersions: ['v1', 'v1beta1'], operations: ['CREATE'], resources: ['taskruns', 'pipelineruns'], scope: 'Namespaced' }],
    }
    : {
      name: 'mutate.tekton-zscaler.io',
      ...common,
      rules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['pods'], scope: 'Namespaced' }],
      reinvocationPolicy: 'IfNeeded',
      objectSelector: { matchExpressions: [{ key: 'tekton.dev/taskRun', operator: 'Exists' }] },
    };
}

for (const target of TARGETS) {
  t.test(`${target}: webhook configurations are exactly the designed ones`, async (t) => {
    const validating = one(target, 'ValidatingWebhookConfiguration').webhooks;
    const mutating = one(target, 'MutatingWebhookConfiguration').webhooks;
    t.strictSame(validating, [expectedWebhook('validate')]);
    t.strictSame(mutating, [expectedWebhook('mutate')]);
    for (const webhook of [...validating, ...mutating]) {
      t.ok(webhook.timeoutSeconds * 1000 > deadlineMs, `${webhook.name}: timeoutSeconds ${webhook.timeoutSeconds} s is above the server deadline ${deadlineMs} ms`);
      // The API server requires a fully qualified name of at least three segments.
      t.ok(webhook.name.split('.').length >= 3, `${webhook.name} is fully qualified`);
    }
  });

  t.test(`${target}: Service, webhooks, container ports and probes agree with the server's listeners`, async (t) => {
    const service = one(target, 'Service', cluster.service);
    t.equal(service.metadata.namespace, cluster.namespace);
    const servicePorts = Object.fromEntries((service.spec.ports as Array<{ port: number; targetPort: number | string }>).map((p) => [p.port, toContainerPort(target, p.targetPort)]));
    t.strictSame(servicePorts, { [cluster.servicePort]: ports.admission, [ports.audit]: ports.audit, [ports.metrics]: ports.metrics });
    t.strictSame(
      (container(target).ports as Array<{ containerPort: number }>).map((p) => p.containerPort).sort(),
      [ports.admission, ports.audit, ports.metrics].sort(),
    );
    const probe = (p: Obj) => ({ path: p.httpGet.path, scheme: p.httpGet.scheme, port: toContainerPort(target, p.httpGet.port) });
    t.strictSame(
      { liveness: probe(container(target).livenessProbe), readiness: probe(container(target).readinessProbe), startup: probe(container(target).startupProbe) },
      {
        // The metrics listener serves the probes: kubelet has no API server client certificate.
        liveness: { path: paths.healthz, scheme: 'HTTP', port: ports.metrics },
        readiness: { path: paths.readyz, scheme: 'HTTP', port: ports.metrics },
        startup: { path: paths.healthz, scheme: 'HTTP', port: ports.metrics },
      },
    );
  });

  t.test(`${target}: selectors of the Deployment (StatefulSet), Service, PDB, NetworkPolicy and anti-affinity all select the webhook pods`, async (t) => {
    const deployment = workload(target);
    const podLabels = deployment.spec.template.metadata.labels as Record<string, string>;
    const selects = (selector: Record<string, string>) => Object.entries(selector).every(([k, v]) => podLabels[k] === v);
    t.ok(selects(deployment.spec.selector.matchLabels), `${deployment.kind} selector`);
    t.ok(selects(one(target, 'Service').spec.selector), 'Service selector');
    t.ok(selects(one(target, 'PodDisruptionBudget').spec.selector.matchLabels), 'PDB selector');
    t.ok(selects(one(target, 'NetworkPolicy').spec.podSelector.matchLabels), 'NetworkPolicy podSelector');
    const antiAffinity = deployment.spec.template.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution as Obj[];
    t.ok(antiAffinity.length > 0 && antiAffinity.every((term) => selects(term.podAffinityTerm.labelSelector.matchLabels)), 'pod anti-affinity');
    t.ok(deployment.spec.replicas >= 2, 'at least two replicas');
    t.ok(one(target, 'PodDisruptionBudget').spec.minAvailable < deployment.spec.replicas, 'the PDB still lets a node drain');
  });

  t.test(`${target}: the ConfigMap is a config the server loads, mounted where the command reads it`, async (t) => {
    const c = container(target);
    t.strictSame(c.args, command.args);
    t.equal(c.image, `ghcr.io/tekton-zscaler/tekton-zscaler-webhook:${packageVersion}`, 'image tag = package.json version');
    const volumes = podSpec(target).volumes as Obj[];
    const configMount = (c.volumeMounts as Obj[]).find((m) => m.mountPath === command.configFile);
    t.ok(configMount, `something is mounted at ${command.configFile}`);
    const configVolume = volumes.find((v) => v.name === configMount?.name);
    const configMap = one(target, 'ConfigMap', configVolume?.configMap?.name);
    const text = configMap.data[configMount?.subPath] as string;

    // Values from Secrets and the downward API: stand-ins of the right shape.
    const env = Object.fromEntries(((c.env ?? []) as Array<{ name: string; value?: string; valueFrom?: Obj }>).filter((e) => e.name.startsWith('TZW_'))
      .map((e) => [e.name, e.value ?? (e.valueFrom?.fieldRef?.fieldPath === 'metadata.namespace' ? cluster.namespace : 'postgres://from-secret.example:5432/tzw')]));
    const result = loadConfig({ configFile: command.configFile, env, hostname: 'tzw-0', readFile: (path) => (path === command.configFile ? text : '') });
    t.strictSame(result.ok ? [] : result.errors, [], 'the server accepts the config');
    if (!result.ok) return;
    const config = result.config;

    const keys = toLeafKeys(parse(text) as Record<string, unknown>);
    t.strictSame(keys.filter((k) => !configKeys.includes(k)), [], 'every key is a server config key');
    t.strictSame(
      { admission: toListenOptions(config.admission.listen).port, audit: toListenOptions(config.auditApi.listen).port, metrics: toListenOptions(config.metrics.listen).port },
      { admission: ports.admission, audit: ports.audit, metrics: ports.metrics },
    );
    t.ok(config.admission.deadlineMs <= deadlineMs, `the configured deadline ${config.admission.deadlineMs} ms stays within the contract`);
    t.equal(config.source.kind, 'kubernetes');

    const mountOf = (file: string) => (c.volumeMounts as Obj[]).find((m) => file.startsWith(`${m.mountPath}/`));
    const secretOf = (file: string) => volumes.find((v) => v.name === mountOf(file)?.name)?.secret?.secretName;
    t.strictSame(
      { cert: secretOf(config.admission.tls!.certFile), key: secretOf(config.admission.tls!.keyFile), signing: secretOf(config.signing.keyFile!) },
      { cert: cluster.tlsSecret, key: cluster.tlsSecret, signing: cluster.signingSecret },
    );
    t.strictSame(
      (c.volumeMounts as Obj[]).filter((m) => m.mountPath.startsWith('/etc/tzw/tls') || m.mountPath.startsWith('/etc/tzw/signing')).map((m) => m.subPath),
      [undefined, undefined],
      'Secrets are not subPath mounts, so rotated certificates reach the running pod',
    );
    // The root filesystem is read-only: every place the server writes must be on an emptyDir (or,
    // in overlays/ha, the StatefulSet's claim). Relative paths would land in the image's WORKDIR,
    // which is not writable.
    const written = [
      ...(config.store.url.startsWith('sqlite:') ? [config.store.url.slice('sqlite:'.length)] : []),
      config.store.spool.path,
      `${config.stateDir}/x`,
    ];
    const claims = ((workload(target).spec.volumeClaimTemplates ?? []) as Obj[]).map((c) => c.metadata.name as string);
    t.strictSame(
      written.filter((file) => volumes.find((v) => v.name === mountOf(file)?.name)?.emptyDir === undefined && !claims.includes(mountOf(file)?.name)),
      [],
      `writable: ${written.join(', ')}`,
    );
  });
}

function toLeafKeys(value: Record<string, unknown>, prefix = ''): string[] {
  return Object.entries(value).flatMap(([key, v]) =>
    typeof v === 'object' && v !== null && !Array.isArray(v) ? toLeafKeys(v as Record<string, unknown>, `${prefix}${key}.`) : [`${prefix}${key}`],
  );
}

t.test('base: webhooks carry no caBundle (certs/generate.ts or cert-manager supply it) and one namespace holds everything', async (t) => {
  for (const kind of ['ValidatingWebhookConfiguration', 'MutatingWebhookConfiguration']) {
    t.strictSame(one('manifests', kind).webhooks.map((w: Obj) => w.clientConfig.caBundle), [undefined]);
  }
  const namespaced = objects('manifests').filter((o) => o.metadata.namespace !== undefined);
  t.strictSame([...new Set(namespaced.map((o) => o.metadata.namespace))], [cluster.namespace]);
  t.equal(one('manifests', 'Namespace').metadata.name, cluster.namespace);
});

// ---------------------------------------------------------------------------------------------
// least privilege and Pod Security

for (const target of TARGETS) {
  t.test(`${target}: RBAC reads exactly namespaces, serviceaccounts and identitymappings, writes only mapping status and Events, and Leases only in its namespace`, async (t) => {
    type Rule = { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] };
    const toGrants = (rules: Rule[]) => rules.flatMap((rule) =>
      rule.apiGroups.flatMap((group) => rule.resources.map((resource) => ({ group, resource, verbs: [...rule.verbs].sort(), ...(rule.resourceNames ? { names: rule.resourceNames } : {}) }))));
    const role = one(target, 'ClusterRole', 'tekton-zscaler-webhook');
    const crdObject = one(target, 'CustomResourceDefinition');
    t.strictSame(toGrants(role.rules as Rule[]), [
      { group: '', resource: 'namespaces', verbs: ['get', 'list', 'watch'] },
      { group: '', resource: 'serviceaccounts', verbs: ['get', 'list', 'watch'] },
      { group: crdObject.spec.group, resource: crdObject.spec.names.plural, verbs: ['get', 'list', 'watch'] },
      { group: crdObject.spec.group, resource: `${crdObject.spec.names.plural}/status`, verbs: ['patch'] },
      { group: '', resource: 'events', verbs: ['create'] },
    ]);
    const deployment = workload(target);
    const subjects = [{ kind: 'ServiceAccount', name: deployment.spec.template.spec.serviceAccountName, namespace: deployment.metadata.namespace }];
    const binding = one(target, 'ClusterRoleBinding', 'tekton-zscaler-webhook');
    t.strictSame(
      { roleRef: binding.roleRef, subjects: binding.subjects },
      { roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role.metadata.name }, subjects },
    );
    const nsRole = one(target, 'Role');
    t.equal(nsRole.metadata.namespace, deployment.metadata.namespace, 'the Lease Role is in the webhook namespace');
    t.strictSame(toGrants(nsRole.rules as Rule[]), [
      { group: 'coordination.k8s.io', resource: 'leases', verbs: ['create'] },
      { group: 'coordination.k8s.io', resource: 'leases', verbs: ['get', 'update'], names: [leaseName] },
    ]);
    const roleBinding = one(target, 'RoleBinding');
    t.strictSame(
      { ns: roleBinding.metadata.namespace, roleRef: roleBinding.roleRef, subjects: roleBinding.subjects },
      { ns: deployment.metadata.namespace, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: nsRole.metadata.name }, subjects },
    );
    const leaseNsEnv = (container(target).env as Obj[]).find((e) => e.name === envNameFor(['mappingStatus', 'leaseNamespace']));
    t.strictSame(leaseNsEnv?.valueFrom, { fieldRef: { fieldPath: 'metadata.namespace' } }, 'the Lease namespace is the pod\'s own');
    // Kubernetes sign-in for auditors: the webhook may create TokenReviews and SubjectAccessReviews
    // (the built-in system:auth-delegator), and nothing more.
    const delegator = one(target, 'ClusterRoleBinding', 'tekton-zscaler-webhook-auth-delegator');
    t.strictSame(
      { roleRef: delegator.roleRef, subjects: delegator.subjects },
      { roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:auth-delegator' }, subjects },
    );
    // The auditor ClusterRole grants read on the audit API's virtual resources only, and is bound to no one.
    const auditor = one(target, 'ClusterRole', 'tekton-zscaler-auditor');
    t.strictSame(toGrants(auditor.rules as Rule[]), [
      { group: `audit.${crdObject.spec.group}`, resource: 'decisions', verbs: ['get', 'list'] },
      { group: `audit.${crdObject.spec.group}`, resource: 'checkpoints', verbs: ['get', 'list'] },
    ]);
    t.strictSame(objects(target).filter((o) => o.roleRef?.name === 'tekton-zscaler-auditor'), [], 'no auditor is bound by the install');
    t.equal(one(target, 'ServiceAccount', deployment.spec.template.spec.serviceAccountName).metadata.namespace, deployment.metadata.namespace);
  });

  t.test(`${target}: the pod meets the restricted Pod Security Standard, as the namespace enforces`, async (t) => {
    const spec = podSpec(target);
    const c = container(target);
    t.strictSame(
      {
        pod: { runAsNonRoot: spec.securityContext.runAsNonRoot, runAsUser: spec.securityContext.runAsUser, seccomp: spec.securityContext.seccompProfile },
        container: {
          runAsNonRoot: c.securityContext.runAsNonRoot,
          runAsUser: c.securityContext.runAsUser,
          readOnlyRootFilesystem: c.securityContext.readOnlyRootFilesystem,
          allowPrivilegeEscalation: c.securityContext.allowPrivilegeEscalation,
          privileged: c.securityContext.privileged,
          capabilities: c.securityContext.capabilities,
          seccomp: c.securityContext.seccompProfile,
        },
        host: { network: spec.hostNetwork, pid: spec.hostPID, ipc: spec.hostIPC },
      },
      {
        pod: { runAsNonRoot: true, runAsUser: 65532, seccomp: { type: 'RuntimeDefault' } },
        container: {
          runAsNonRoot: true, runAsUser: 65532, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, privileged: false,
          capabilities: { drop: ['ALL'] }, seccomp: { type: 'RuntimeDefault' },
        },
        host: { network: undefined, pid: undefined, ipc: undefined },
      },
    );
    // Restricted allows only these volume types.
    const allowed = new Set(['configMap', 'secret', 'emptyDir', 'projected', 'downwardAPI', 'persistentVolumeClaim', 'csi', 'ephemeral']);
    t.strictSame((spec.volumes as Obj[]).flatMap((v) => Object.keys(v).filter((k) => k !== 'name' && !allowed.has(k))), []);
    t.strictSame((spec.containers as Obj[]).flatMap((x) => (x.ports as Obj[]).filter((p) => p.hostPort !== undefined)), [], 'no hostPort');
    t.ok(c.resources.requests.cpu && c.resources.requests.memory && c.resources.limits.memory, 'requests and a memory limit');
    t.equal(one(target, 'Namespace').metadata.labels?.['pod-security.kubernetes.io/enforce'], 'restricted');
    t.ok((c.volumeMounts as Obj[]).some((m) => m.mountPath === '/tmp' && (spec.volumes as Obj[]).find((v) => v.name === m.name)?.emptyDir), '/tmp is writable');
  });

  t.test(`${target}: NetworkPolicy opens admission to all, audit and metrics only to labelled namespaces`, async (t) => {
    const policy = one(target, 'NetworkPolicy');
    t.strictSame(policy.spec.policyTypes, ['Ingress']);
    t.strictSame(
      (policy.spec.ingress as Obj[]).map((rule) => ({ ports: (rule.ports as Obj[]).map((p) => p.port), from: rule.from })),
      [
        { ports: [ports.admission], from: undefined },
        { ports: [ports.audit], from: [{ namespaceSelector: { matchLabels: { 'tekton-zscaler.io/audit-client': 'true' } } }] },
        { ports: [ports.metrics], from: [{ namespaceSelector: { matchLabels: { 'tekton-zscaler.io/metrics-scraper': 'true' } } }] },
      ],
    );
  });
}

// ---------------------------------------------------------------------------------------------
// overlays

for (const target of ['manifests/overlays/cert-manager', 'manifests/overlays/ha'] as const) {
  t.test(`${target}: cert-manager issues the serving Secret for the Service names and injects its CA into both webhooks`, async (t) => {
    const certificates = objects(target).filter((o) => o.kind === 'Certificate');
    const issuers = objects(target).filter((o) => o.kind === 'Issuer');
    const serving = certificates.find((c) => c.spec.secretName === cluster.tlsSecret);
    t.ok(serving, `a Certificate writes Secret ${cluster.tlsSecret}`);
    if (serving === undefined) return;
    t.strictSame(serving.spec.dnsNames, toServiceDnsNames(cluster.service, cluster.namespace), 'same SANs as certs/generate.ts');
    t.strictSame(serving.spec.privateKey, { algorithm: 'ECDSA', size: 256, rotationPolicy: 'Always' });
    const caIssuer = issuers.find((i) => i.metadata.name === serving.spec.issuerRef.name);
    const caCertificate = certificates.find((c) => c.spec.secretName === caIssuer?.spec.ca?.secretName);
    const rootIssuer = issuers.find((i) => i.metadata.name === caCertificate?.spec.issuerRef.name);
    t.strictSame(
      { caIssuer: caIssuer?.spec, caIsCA: caCertificate?.spec.isCA, root: rootIssuer?.spec },
      { caIssuer: { ca: { secretName: caCertificate?.spec.secretName } }, caIsCA: true, root: { selfSigned: {} } },
      'self-signed Issuer → CA Certificate → CA Issuer → serving Certificate',
    );
    t.ok(certificates.every((c) => c.metadata.namespace === cluster.namespace) && issuers.every((i) => i.metadata.namespace === cluster.namespace));
    for (const kind of ['ValidatingWebhookConfiguration', 'MutatingWebhookConfiguration']) {
      t.equal(one(target, kind).metadata.annotations?.['cert-manager.io/inject-ca-from'], `${serving.metadata.namespace}/${serving.metadata.name}`, kind);
    }
    const tlsVolume = (podSpec(target).volumes as Obj[]).find((v) => v.secret?.secretName === cluster.tlsSecret);
    t.ok(tlsVolume, 'the Deployment mounts the Secret cert-manager writes');
  });
}

t.test('overlays/ha: three replicas on PostgreSQL from Secret tzw-store, PDB 2, spread over zones', async (t) => {
  const target = 'manifests/overlays/ha';
  const statefulSet = workload(target);
  t.equal(statefulSet.spec.replicas, 3);
  t.equal(one(target, 'PodDisruptionBudget').spec.minAvailable, 2);
  t.strictSame(
    (container(target).env as Obj[]).filter((e) => e.name === cluster.storeEnv),
    [{ name: cluster.storeEnv, valueFrom: { secretKeyRef: { name: cluster.storeSecret.name, key: cluster.storeSecret.key } } }],
  );
  t.equal(cluster.storeEnv, envNameFor(['store', 'url']));
  t.strictSame(statefulSet.spec.template.spec.topologySpreadConstraints.map((c: Obj) => [c.topologyKey, c.whenUnsatisfiable]), [['topology.kubernetes.io/zone', 'ScheduleAnyway']]);
  // Base and the cert-manager overlay keep the embedded store and the issue's two replicas.
  t.equal(one('manifests', 'Deployment').spec.replicas, 2);
  t.equal(one('manifests', 'PodDisruptionBudget').spec.minAvailable, 1);
  t.strictSame((container('manifests').env as Obj[]).filter((e) => e.name === cluster.storeEnv), []);
});

t.test('overlays/ha: a StatefulSet, the spool on a claim per replica, the writer id = the pod name', async (t) => {
  const target = 'manifests/overlays/ha';
  const sts = workload(target);
  t.equal(sts.kind, 'StatefulSet');
  t.equal(sts.spec.serviceName, one(target, 'Service').metadata.name, 'governed by the webhook Service');
  t.equal(sts.spec.podManagementPolicy, 'Parallel', 'a stuck pod 0 does not hold back the others');
  t.strictSame(sts.spec.updateStrategy, { type: 'RollingUpdate' });
  t.equal(sts.spec.strategy, undefined, 'no Deployment strategy left behind');
  // Kept from the base: anti-affinity across nodes (the PDB is checked above).
  t.equal(sts.spec.template.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm.topologyKey, 'kubernetes.io/hostname');

  const replicaEnv = (container(target).env as Obj[]).filter((e) => e.name === envNameFor(['replica']));
  t.strictSame(replicaEnv, [{ name: 'TZW_REPLICA', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }], 'TZW_REPLICA from the pod name (downward API)');

  const claims = sts.spec.volumeClaimTemplates as Obj[];
  t.strictSame(claims.map((c) => ({ name: c.metadata.name, accessModes: c.spec.accessModes })), [{ name: 'store', accessModes: ['ReadWriteOnce'] }]);
  t.strictSame((podSpec(target).volumes as Obj[]).filter((v) => v.name === 'store'), [], 'the claim replaces the emptyDir (no volume of the same name)');
  t.strictSame(podSpec('manifests').volumes.find((v: Obj) => v.name === 'store').emptyDir, { sizeLimit: '1Gi' }, 'the base keeps its emptyDir');

  // Where the server puts the spool (config as rendered, the pod name as TZW_REPLICA) is on the claim.
  const c = container(target);
  const configMount = (c.volumeMounts as Obj[]).find((m) => m.mountPath === command.configFile)!;
  const configMap = one(target, 'ConfigMap', (podSpec(target).volumes as Obj[]).find((v) => v.name === configMount.name)!.configMap.name);
  const loaded = loadConfig({
    configFile: command.configFile,
    env: { TZW_REPLICA: 'tekton-zscaler-webhook-1', TZW_STORE_URL: 'postgres://from-secret.example:5432/tzw', TZW_MAPPING_STATUS_LEASE_NAMESPACE: cluster.namespace },
    hostname: 'ignored', readFile: (p) => (p === command.configFile ? configMap.data[configMount.subPath] : ''),
  });
  if (!loaded.ok) throw new Error(loaded.errors.join('; '));
  t.equal(loaded.config.replica, 'tekton-zscaler-webhook-1', 'the writer id is the pod name');
  const storeMount = (c.volumeMounts as Obj[]).find((m) => m.name === 'store')!;
  t.ok(loaded.config.store.spool.path.startsWith(`${storeMount.mountPath}/`), `the spool ${loaded.config.store.spool.path} is on the claim (${storeMount.mountPath})`);
  const toBytes = (q: string) => {
    const m = /^(\d+)(Ki|Mi|Gi|Ti)?$/.exec(q);
    if (!m) throw new Error(`unexpected quantity ${q}`);
    return Number(m[1]) * 1024 ** ['', 'Ki', 'Mi', 'Gi', 'Ti'].indexOf(m[2] ?? '');
  };
  const requested = toBytes(claims[0]!.spec.resources.requests.storage);
  t.ok(requested >= loaded.config.store.spool.maxBytes * 1.5, `the claim (${claims[0]!.spec.resources.requests.storage}) leaves room above store.spool.maxBytes (${loaded.config.store.spool.maxBytes}) for the WAL and the reserve file`);
});
