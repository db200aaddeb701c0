import t from 'tap';
import { createMemoryFacts } from '../../webhook/core/facts-memory.js';
import type { Facts, NamespaceMode, Provider, ResolvedMapping } from '../../webhook/core/mapping.js';
import { decidePod } from '../../webhook/core/pod/decide-pod.js';
import { escapePointer } from '../../webhook/core/pod/json-pointer.js';
import { reason } from '../../webhook/core/reasons.js';
import { allowed, type AddOperation, type Decision } from '../../webhook/core/verdict.js';
import type { KubeObject, Operation } from '../../webhook/core/wire.js';
import { aContainer, aMapping, aNamespace, aPod, aRequest, defaultOptions, NS } from '../builders.js';
import { canonicalJson } from '../../webhook/store/evidence/canonical.js';
import { addOnlyViolations, applyOps, container, duplicateNames, envNames, firstLoss, tunnelPlacementProblems } from './patch-check.js';

const ID = '0192f0a0-0000-7000-8000-00000000abcd';
const TOKEN_DIR = '/var/run/secrets/tekton-zscaler.io/serviceaccount';
const TOKEN = `${TOKEN_DIR}/token`;
const native = defaultOptions({ mode: 'native' });
const classic = defaultOptions({ mode: 'classic' });

function factsWith(mapping: ResolvedMapping | undefined, mode: NamespaceMode | 'not-enrolled' = 'enforce', nsTags: string[] = []): Facts {
  return createMemoryFacts({
    namespaces: [aNamespace({ mode: mode === 'not-enrolled' ? undefined : mode, policyTags: nsTags })],
    mappings: mapping ? [mapping] : [],
  });
}
const mapped = factsWith(aMapping());
const unmapped = factsWith(undefined);
const ourAnnotation = (path: string): boolean => path.startsWith('/metadata/annotations/tekton-zscaler.io~1');

type Asserts = Pick<typeof t, 'equal' | 'strictSame'>;

/**
 * Decides, applies the patch (validated), and checks the invariants every injection must keep.
 * `overwrites` lists our own annotation keys the pod already had (the only values that may change).
 */
function inject(t: Asserts, pod: KubeObject, facts: Facts = mapped, opts = native, overwrites: string[] = []): { d: Decision; out: KubeObject } {
  const d = decidePod(aRequest(pod), facts, opts, ID);
  t.equal(d.verdict, 'patched', 'patched');
  t.strictSame(addOnlyViolations(pod, d.patch, ourAnnotation), [], 'add-only against the raw object');
  const out = applyOps(pod, d.patch);
  const kept = structuredClone(pod);
  for (const key of overwrites) delete (kept.metadata as { annotations: Record<string, string> }).annotations[key];
  t.equal(firstLoss(kept, out), undefined, 'every original field survives');
  t.strictSame(duplicateNames(out as never), [], 'no duplicate names or mountPaths');
  t.strictSame(tunnelPlacementProblems(pod as never, out as never, opts.sidecar.mode), [], `tunnel placed for ${opts.sidecar.mode} mode`);
  const again = decidePod(aRequest(out), facts, opts, 'second-id');
  t.equal(again.verdict, 'allowed', 'idempotent: allowed the second time');
  t.strictSame(again.patch, [], 'idempotent: zero operations');
  t.strictSame(again.reasons.map((r) => r.code), ['POD_ALREADY_INJECTED']);
  return { d, out };
}

t.test('escapePointer escapes ~ before / (RFC 6901)', async (t) => {
  const cases: Array<[string, string]> = [
    ['plain', 'plain'], ['', ''], ['a/b', 'a~1b'], ['a~b', 'a~0b'], ['~1', '~01'], ['/~', '~1~0'],
    ['tekton-zscaler.io/status', 'tekton-zscaler.io~1status'], ['a//b~~', 'a~1~1b~0~0'],
  ];
  for (const [input, want] of cases) t.equal(escapePointer(input), want, JSON.stringify(input));
});

t.test('a mapped pod gets exactly the DESIGN injection (native)', async (t) => {
  const pod = aPod();
  const d = decidePod(aRequest(pod), factsWith(aMapping(), 'enforce', ['payments']), native, ID);
  const mount = { name: 'tekton-zscaler-token', mountPath: TOKEN_DIR, readOnly: true };
  const expected: AddOperation[] = [
    { op: 'add', path: '/spec/volumes/-', value: { name: 'tekton-zscaler-token', projected: { sources: [{ serviceAccountToken: { audience: 'sts.amazonaws.com', expirationSeconds: 600, path: 'token' } }] } } },
    { op: 'add', path: '/spec/containers/0/volumeMounts/-', value: mount },
    { op: 'add', path: '/spec/containers/0/env', value: [
      { name: 'AWS_ROLE_ARN', value: 'arn:aws:iam::123456789012:role/payments-ci' },
      { name: 'AWS_WEB_IDENTITY_TOKEN_FILE', value: TOKEN },
      { name: 'TZW_OIDC_TOKEN_FILE', value: TOKEN },
    ] },
    { op: 'add', path: '/spec/initContainers/0', value: {
      name: 'zscaler-tunnel',
      image: 'ghcr.io/example/zscaler-tunnel:1.4.2',
      args: ['--listen=127.0.0.1:15001'],
      env: [{ name: 'TZW_OIDC_TOKEN_FILE', value: TOKEN }],
      resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '128Mi' } },
      securityContext: { runAsNonRoot: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
      volumeMounts: [mount],
      restartPolicy: 'Always',
      startupProbe: { httpGet: { path: '/ready', port: 15021 }, periodSeconds: 1, failureThreshold: 30 },
    } },
    { op: 'add', path: '/metadata/annotations/tekton-zscaler.io~1policy-tags', value: 'ci,payments,payments-artifacts' },
    { op: 'add', path: '/metadata/annotations/tekton-zscaler.io~1provider', value: 'aws-iam' },
    { op: 'add', path: '/metadata/annotations/tekton-zscaler.io~1identity-mapping', value: 'payments-ci' },
    { op: 'add', path: '/metadata/annotations/tekton-zscaler.io~1decision-id', value: ID },
    { op: 'add', path: '/metadata/annotations/tekton-zscaler.io~1status', value: 'injected' },
  ];
  t.strictSame(d.patch, expected);
  t.equal(d.verdict, 'patched');
  t.strictSame(d.reasons, [reason('POD_INJECTED', 'Pod "build-run-pod" of TaskRun "build-run" in namespace "payments" gets IdentityMapping "payments-ci" (aws-iam): token volume, mount and env in 1 container(s) (step-build), tunnel sidecar (native, first init container).')]);
  t.strictSame(
    { serviceAccounts: d.serviceAccounts, mode: d.mode, mapping: d.mapping, policyTags: d.policyTags, tekton: d.tekton },
    { serviceAccounts: ['payments/ci-builder'], mode: 'enforce', mapping: { name: 'payments-ci', provider: 'aws-iam', subject: 'arn:aws:iam::123456789012:role/payments-ci' }, policyTags: ['ci', 'payments', 'payments-artifacts'], tekton: { taskRun: 'build-run' } },
  );
  inject(t, pod);
});

t.test('each provider gets its SDK env vars, token-file vars and audience', async (t) => {
  const cases: Array<[Provider, string[], string]> = [
    ['aws-iam', ['AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE', 'TZW_OIDC_TOKEN_FILE'], 'sts.amazonaws.com'],
    ['azure-ad', ['AZURE_CLIENT_ID', 'AZURE_TENANT_ID', 'AZURE_AUTHORITY_HOST', 'AZURE_FEDERATED_TOKEN_FILE', 'TZW_OIDC_TOKEN_FILE'], 'api://AzureADTokenExchange'],
    ['okta', ['OKTA_CLIENT_ID', 'OKTA_ISSUER', 'TZW_OIDC_TOKEN_FILE'], '0oa1b2c3d4e5f6g7h8i9'],
  ];
  for (const [provider, env, audience] of cases) {
    for (const opts of [native, classic]) {
      const m = aMapping({ provider, tokenExpirationSeconds: 3600 });
      const { d, out } = inject(t, aPod(), factsWith(m), opts);
      const step = container(out as never, 'step-build');
      t.strictSame(envNames(step), env, `${provider}/${opts.sidecar.mode}: step env`);
      for (const e of step?.env ?? []) {
        const v = (e as { value?: string }).value;
        if (e.name?.endsWith('_TOKEN_FILE')) t.equal(v, TOKEN, `${provider}: ${String(e.name)} points at the token`);
        else t.equal(v, m.env.find(([n]) => n === e.name)?.[1], `${provider}: ${String(e.name)} from the mapping`);
      }
      t.strictSame(envNames(container(out as never, 'zscaler-tunnel')), ['TZW_OIDC_TOKEN_FILE'], 'sidecar env is the token file only');
      const volume = (out.spec as { volumes: Array<Record<string, unknown>> }).volumes.at(-1);
      t.strictSame(volume, { name: 'tekton-zscaler-token', projected: { sources: [{ serviceAccountToken: { audience, expirationSeconds: 3600, path: 'token' } }] } });
      t.equal(d.mapping?.provider, provider);
      t.equal((out.metadata as { annotations: Record<string, string> }).annotations['tekton-zscaler.io/provider'], provider);
    }
  }
});

t.test('native vs classic: where the tunnel goes and which probe it gets', async (t) => {
  const n = inject(t, aPod(), mapped, native).out;
  const nSpec = n.spec as { initContainers: Array<Record<string, unknown>>; containers: Array<Record<string, unknown>> };
  t.strictSame(nSpec.initContainers.map((c) => c.name), ['zscaler-tunnel', 'prepare'], 'native: first in initContainers');
  t.strictSame(nSpec.containers.map((c) => c.name), ['step-build']);
  const nt = nSpec.initContainers[0]!;
  t.equal(nt.restartPolicy, 'Always');
  t.strictSame(nt.startupProbe, native.sidecar.probe);
  t.equal(nt.readinessProbe, undefined);

  const c = inject(t, aPod(), mapped, classic).out;
  const cSpec = c.spec as typeof nSpec;
  t.strictSame(cSpec.containers.map((x) => x.name), ['step-build', 'zscaler-tunnel'], 'classic: appended to containers');
  t.strictSame(cSpec.initContainers.map((x) => x.name), ['prepare']);
  const ct = cSpec.containers[1]!;
  t.equal(ct.restartPolicy, undefined);
  t.equal(ct.startupProbe, undefined);
  t.strictSame(ct.readinessProbe, classic.sidecar.probe);

  // Empty config pieces are left out rather than emitted as invalid empty values.
  const bare = defaultOptions({ mode: 'native' });
  bare.sidecar = { ...bare.sidecar, args: [], resources: {}, securityContext: {}, probe: {} };
  const tunnel = decidePod(aRequest(aPod()), mapped, bare, ID).patch.find((op) => op.path === '/spec/initContainers/0')?.value;
  t.strictSame(tunnel, {
    name: 'zscaler-tunnel', image: bare.sidecar.image, env: [{ name: 'TZW_OIDC_TOKEN_FILE', value: TOKEN }],
    volumeMounts: [{ name: 'tekton-zscaler-token', mountPath: TOKEN_DIR, readOnly: true }], restartPolicy: 'Always',
  });
});

t.test('native: the tunnel insert at initContainers/0 comes after every op addressing an initContainer (the checker catches the other order)', async (t) => {
  const pod = aPod({ initContainers: [aContainer('prepare'), aContainer('sidecar-proxy', { restartPolicy: 'Always' })] });
  const d = decidePod(aRequest(pod), mapped, native, ID);
  const at = d.patch.findIndex((op) => op.path === '/spec/initContainers/0');
  t.ok(at > d.patch.findLastIndex((op) => op.path.startsWith('/spec/initContainers/1/')), 'insert after the sidecar-proxy ops');
  t.strictSame(addOnlyViolations(pod, d.patch), []);
  // The same operations with the insert moved first: indices shift and the mount lands on `prepare`.
  const misordered = [d.patch[at]!, ...d.patch.filter((_, i) => i !== at)];
  t.ok(addOnlyViolations(pod, misordered).some((v) => v.includes('shifted every index')), 'the checker names the misordered op');
  const wrong = applyOps(pod, misordered);
  t.notOk((container(wrong as never, 'sidecar-proxy')?.volumeMounts ?? []).some((m) => m.name === 'tekton-zscaler-token'), 'misordered, sidecar-proxy would miss its mount');
  const right = inject(t, pod).out;
  t.strictSame((right.spec as { initContainers: Array<{ name: string }> }).initContainers.map((c) => c.name), ['zscaler-tunnel', 'prepare', 'sidecar-proxy']);
  t.ok((container(right as never, 'sidecar-proxy')?.volumeMounts ?? []).some((m) => m.name === 'tekton-zscaler-token'));
});

t.test('targets: every step-* and sidecar-* container, in containers and initContainers; nothing else', async (t) => {
  const pod = aPod({
    containers: [aContainer('step-a'), aContainer('step-b', { env: [{ name: 'X', value: '1' }] }), aContainer('sidecar-db'), aContainer('istio-proxy'), aContainer('steps-not-a-step')],
    initContainers: [aContainer('prepare'), aContainer('place-scripts'), aContainer('sidecar-redis', { restartPolicy: 'Always' })],
  });
  for (const opts of [native, classic]) {
    const { d, out } = inject(t, pod, mapped, opts);
    const mountsToken = (name: string): boolean => (container(out as never, name)?.volumeMounts ?? []).some((m) => m.mountPath === TOKEN_DIR);
    for (const name of ['step-a', 'step-b', 'sidecar-db', 'sidecar-redis', 'zscaler-tunnel']) t.ok(mountsToken(name), `${opts.sidecar.mode}: ${name} mounts the token`);
    for (const name of ['istio-proxy', 'steps-not-a-step', 'prepare', 'place-scripts']) {
      t.strictSame(container(out as never, name), container(pod as never, name), `${opts.sidecar.mode}: ${name} untouched`);
    }
    t.strictSame(envNames(container(out as never, 'step-b')), ['X', 'AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE', 'TZW_OIDC_TOKEN_FILE'], 'appended after existing env');
    t.match(d.message, '4 container(s) (step-a, step-b, sidecar-db, sidecar-redis)');
  }
});

t.test('absent arrays and maps are added whole; present ones are appended to', async (t) => {
  const bare = aPod({ annotations: null, volumes: null, initContainers: null, containers: [{ name: 'step-only', image: 'alpine' }] });
  const paths = decidePod(aRequest(bare), mapped, native, ID).patch.map((op) => op.path);
  t.strictSame(paths, ['/spec/volumes', '/spec/containers/0/volumeMounts', '/spec/containers/0/env', '/spec/initContainers', '/metadata/annotations']);
  const { out } = inject(t, bare);
  t.strictSame((out.metadata as { annotations: object }).annotations, {
    'tekton-zscaler.io/policy-tags': 'ci,payments-artifacts', 'tekton-zscaler.io/provider': 'aws-iam', 'tekton-zscaler.io/identity-mapping': 'payments-ci',
    'tekton-zscaler.io/decision-id': ID, 'tekton-zscaler.io/status': 'injected',
  });
  const classicPaths = decidePod(aRequest(aPod({ spec: { containers: undefined } })), mapped, classic, ID).patch.map((op) => op.path);
  t.ok(classicPaths.includes('/spec/containers'), 'classic with no containers array adds one');

  const nulls = aPod({ annotations: null, containers: [aContainer('step-x', { env: null, volumeMounts: null })], spec: { volumes: null } });
  (nulls.metadata as Record<string, unknown>).annotations = null;
  t.strictSame(decidePod(aRequest(nulls), mapped, native, ID).patch.map((op) => op.path), ['/spec/volumes', '/spec/containers/0/volumeMounts', '/spec/containers/0/env', '/spec/initContainers/0', '/metadata/annotations'], 'null counts as absent');
  inject(t, nulls);
});

t.test('env already set by a container is never overridden; envFrom is never touched', async (t) => {
  const envFrom = [{ configMapRef: { name: 'aws' } }, { secretRef: { name: 'creds' }, prefix: 'X_' }];
  const pod = aPod({ containers: [aContainer('step-a', { env: [{ name: 'AWS_ROLE_ARN', value: 'arn:aws:iam::1:role/own' }, { name: 'TZW_OIDC_TOKEN_FILE', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }], envFrom })] });
  const { d, out } = inject(t, pod);
  const step = container(out as never, 'step-a') as Record<string, unknown>;
  t.strictSame(step.env, [
    { name: 'AWS_ROLE_ARN', value: 'arn:aws:iam::1:role/own' },
    { name: 'TZW_OIDC_TOKEN_FILE', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
    { name: 'AWS_WEB_IDENTITY_TOKEN_FILE', value: TOKEN },
  ]);
  t.strictSame(step.envFrom, envFrom);
  t.notOk(d.patch.some((op) => op.path.includes('envFrom')));
  t.match(d.message, 'Env already set and left unchanged: step-a: AWS_ROLE_ARN, step-a: TZW_OIDC_TOKEN_FILE.');
  t.strictSame(d.reasons.map((r) => r.code), ['POD_INJECTED', 'POD_ENV_OVERRIDES_ENVFROM']);
  t.match(d.reasons[1]?.message, 'now gets AWS_WEB_IDENTITY_TOKEN_FILE from the injection.', 'names only the variable actually added');
});

t.test('envFrom on a container that gets injected env: an extra reason names it and the winning variables; the patch is unchanged', async (t) => {
  const envFrom = [{ configMapRef: { name: 'aws-config' } }, { secretRef: { name: 'creds' }, prefix: 'CI_' }];
  const containers = (withEnvFrom: boolean): Array<Record<string, unknown>> => [
    aContainer('step-a', withEnvFrom ? { envFrom } : {}),
    aContainer('step-b'),
    // Sets every variable we would add: nothing of ours wins here, so it is not named.
    aContainer('step-c', { env: ['AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE', 'TZW_OIDC_TOKEN_FILE'].map((name) => ({ name, value: 'own' })), ...(withEnvFrom ? { envFrom } : {}) }),
    // Not a target: its envFrom is none of our business.
    aContainer('istio-proxy', withEnvFrom ? { envFrom } : {}),
  ];
  const initContainers = (withEnvFrom: boolean): Array<Record<string, unknown>> => [
    aContainer('prepare'),
    aContainer('sidecar-db', { restartPolicy: 'Always', env: [{ name: 'AWS_ROLE_ARN', value: 'own' }], ...(withEnvFrom ? { envFrom: [{ configMapRef: {} }] } : {}) }),
  ];
  for (const opts of [native, classic]) {
    const plain = aPod({ containers: containers(false), initContainers: initContainers(false) });
    const withEnvFrom = aPod({ containers: containers(true), initContainers: initContainers(true) });
    const before = decidePod(aRequest(plain), mapped, opts, ID);
    const { d } = inject(t, withEnvFrom, mapped, opts);
    t.strictSame(d.patch, before.patch, `${opts.sidecar.mode}: exactly the same operations as without envFrom`);
    t.strictSame(d.reasons, [
      before.reasons[0],
      reason('POD_ENV_OVERRIDES_ENVFROM',
        'Pod "build-run-pod" of TaskRun "build-run": ' +
        'container "step-a" (envFrom: ConfigMap "aws-config", Secret "creds" with prefix "CI_") now gets AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE, TZW_OIDC_TOKEN_FILE from the injection; ' +
        'container "sidecar-db" (envFrom: ConfigMap (unnamed)) now gets AWS_WEB_IDENTITY_TOKEN_FILE, TZW_OIDC_TOKEN_FILE from the injection. ' +
        'These take precedence over any variable of the same name from envFrom (Kubernetes lets env win over envFrom).'),
    ], `${opts.sidecar.mode}: POD_INJECTED unchanged, then one reason naming step-a and sidecar-db and their variables`);
    t.equal(d.message, `${before.message} ${d.reasons[1]?.message}`, 'the decision message carries it');
    t.equal(d.verdict, 'patched');
  }
  // An empty envFrom list provides nothing, so nothing is said.
  const empty = decidePod(aRequest(aPod({ containers: [aContainer('step-a', { envFrom: [] })] })), mapped, native, ID);
  t.strictSame(empty.reasons.map((r) => r.code), ['POD_INJECTED']);
  // envFrom of the wrong type is malformed like env (the API server would reject it too).
  const bad = decidePod(aRequest(aPod({ containers: [aContainer('step-a', { envFrom: { configMapRef: { name: 'x' } } })] })), mapped, native, ID);
  t.strictSame([bad.verdict, bad.reasons[0]?.message], ['rejected', 'Pod "build-run-pod" of TaskRun "build-run" is malformed: spec.containers[0].envFrom must be an array, got object.']);
});

t.test('never touches tekton.dev/ready, tekton-internal-* volumes, commands or kube-api-access mounts', async (t) => {
  const pod = aPod({
    annotations: { 'tekton.dev/ready': 'READY' },
    containers: [aContainer('step-a', {
      command: ['/tekton/bin/entrypoint'], args: ['-wait_file', '/tekton/downward/ready', '--', 'make'],
      volumeMounts: [{ name: 'tekton-internal-bin', mountPath: '/tekton/bin', readOnly: true }, { name: 'kube-api-access-x1', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount', readOnly: true }],
    })],
    volumes: [{ name: 'tekton-internal-bin', emptyDir: {} }, { name: 'kube-api-access-x1', projected: { sources: [{ serviceAccountToken: { path: 'token', expirationSeconds: 3607 } }] } }],
  });
  const { d, out } = inject(t, pod);
  for (const op of d.patch) {
    t.notMatch(op.path, /tekton\.dev~1ready|\/command|\/args/, `${op.path} leaves Tekton's fields alone`);
  }
  t.strictSame((out.spec as { volumes: unknown[] }).volumes.slice(0, 2), (pod.spec as { volumes: unknown[] }).volumes);
  t.equal((out.metadata as { annotations: Record<string, string> }).annotations['tekton.dev/ready'], 'READY');
});

t.test('annotations copied from the TaskRun cannot pose as ours: policy tags are overwritten', async (t) => {
  const pod = aPod({ annotations: { 'tekton-zscaler.io/policy-tags': 'admin,everything', 'tekton-zscaler.io/identity-mapping': 'other' } });
  const { out } = inject(t, pod, mapped, native, ['tekton-zscaler.io/policy-tags', 'tekton-zscaler.io/identity-mapping']);
  const ann = (out.metadata as { annotations: Record<string, string> }).annotations;
  t.equal(ann['tekton-zscaler.io/policy-tags'], 'ci,payments-artifacts');
  t.equal(ann['tekton-zscaler.io/identity-mapping'], 'payments-ci');
});

t.test('a custom domain with ~ and / is JSON-Pointer escaped and applies', async (t) => {
  const opts = defaultOptions({ domain: 'zs~corp.example.com', tokenMountPath: '/run/zs/' });
  const d = decidePod(aRequest(aPod()), mapped, opts, ID);
  t.ok(d.patch.some((op) => op.path === '/metadata/annotations/zs~0corp.example.com~1status'));
  const out = applyOps(aPod(), d.patch);
  t.equal((out.metadata as { annotations: Record<string, string> }).annotations['zs~corp.example.com/status'], 'injected');
  t.strictSame(envNames(container(out as never, 'step-build')).length, 3);
  t.equal((container(out as never, 'step-build')?.env?.at(-1) as { value: string }).value, '/run/zs/token', 'a trailing slash on the mount path is tolerated');
  const again = decidePod(aRequest(out), mapped, opts, ID);
  t.strictSame([again.verdict, again.patch], ['allowed', []]);
});

t.test('ServiceAccount: serviceAccountName, else serviceAccount, else default', async (t) => {
  const cases: Array<[string, Record<string, unknown>, string]> = [
    ['serviceAccountName', { serviceAccountName: 'a', serviceAccount: 'b' }, 'a'],
    ['serviceAccount alias', { serviceAccountName: '', serviceAccount: 'b' }, 'b'],
    ['neither', { serviceAccountName: undefined }, 'default'],
    ['both empty', { serviceAccountName: '', serviceAccount: '' }, 'default'],
  ];
  for (const [name, spec, sa] of cases) {
    const d = decidePod(aRequest(aPod({ spec })), unmapped, native, ID);
    t.strictSame(d.serviceAccounts, [`${NS}/${sa}`], name);
    t.strictSame(d.reasons, [reason('POD_SA_UNMAPPED', `ServiceAccount ${NS}/${sa} has no IdentityMapping.`, `${NS}/${sa}`)], name);
  }
});

t.test('problems: enforce denies, audit warns and leaves the pod unchanged', async (t) => {
  const conflictFacts = (mode: NamespaceMode): Facts => createMemoryFacts({
    namespaces: [aNamespace({ mode })],
    mappings: [aMapping({ name: 'one' }), aMapping({ name: 'two' })],
  });
  const invalidFacts = (mode: NamespaceMode): Facts => createMemoryFacts({
    namespaces: [aNamespace({ mode })], mappings: [], invalid: [{ mapping: 'bad', problems: ['unknown provider "gcp"'], serviceAccounts: [{ namespace: NS, name: 'ci-builder' }] }],
  });
  const cases: Array<[string, KubeObject, (m: NamespaceMode) => Facts, string[]]> = [
    ['unmapped', aPod(), (m) => factsWith(undefined, m), ['POD_SA_UNMAPPED']],
    ['conflict', aPod(), conflictFacts, ['MAPPING_CONFLICT']],
    ['invalid', aPod(), invalidFacts, ['MAPPING_INVALID']],
    ['hostNetwork', aPod({ spec: { hostNetwork: true } }), (m) => factsWith(aMapping(), m), ['POD_HOSTNETWORK_DENIED']],
    ['hostNetwork and unmapped', aPod({ spec: { hostNetwork: true } }), (m) => factsWith(undefined, m), ['POD_SA_UNMAPPED', 'POD_HOSTNETWORK_DENIED']],
    ['token volume name taken', aPod({ volumes: [{ name: 'tekton-zscaler-token', emptyDir: {} }] }), (m) => factsWith(aMapping(), m), ['POD_INJECTION_CONFLICT']],
    [
      'a step already mounts at the token path',
      aPod({ containers: [aContainer('step-a', { volumeMounts: [{ name: 'mine', mountPath: `${TOKEN_DIR}/` }] })] }),
      (m) => factsWith(aMapping(), m), ['POD_INJECTION_CONFLICT'],
    ],
    [
      'a container refers to the token volume name',
      aPod({ initContainers: [aContainer('prepare', { volumeMounts: [{ name: 'tekton-zscaler-token', mountPath: '/x' }] })] }),
      (m) => factsWith(aMapping(), m), ['POD_INJECTION_CONFLICT'],
    ],
  ];
  for (const [name, pod, facts, codes] of cases) {
    const enforce = decidePod(aRequest(pod), facts('enforce'), native, ID);
    t.equal(enforce.verdict, 'denied', `${name}: enforce denies`);
    t.strictSame(enforce.status, { code: 422, reason: 'Invalid' }, name);
    t.strictSame(enforce.reasons.map((r) => r.code), codes, name);
    t.strictSame(enforce.patch, [], name);
    t.match(enforce.message, /^Pod "build-run-pod" of TaskRun "build-run" in namespace "payments" is denied: /, name);
    const audit = decidePod(aRequest(pod), facts('audit'), native, ID);
    t.equal(audit.verdict, 'warned', `${name}: audit warns`);
    t.strictSame(audit.reasons, enforce.reasons, name);
    t.strictSame(audit.patch, [], `${name}: audit leaves the pod unchanged`);
    t.strictSame(audit.warnings, [audit.message], name);
    t.equal(audit.message.split(': ').slice(1).join(': '), enforce.message.split(': ').slice(1).join(': '), `${name}: same explanation`);
  }
  const host = decidePod(aRequest(aPod({ spec: { hostNetwork: true } })), mapped, native, ID);
  t.match(host.message, 'spec.hostNetwork: true');
  t.match(host.message, 'cannot isolate');
  const clash = decidePod(aRequest(cases[6]![1]), mapped, native, ID);
  t.match(clash.message, `container "step-a" already mounts volume "mine" at ${TOKEN_DIR}`);
  const unm = decidePod(aRequest(aPod()), unmapped, native, ID);
  t.match(unm.message, 'serviceAccounts: [{namespace: payments, name: ci-builder}]');
});

t.test('a mount at the token path in a container we do not touch is no conflict', async (t) => {
  inject(t, aPod({ initContainers: [aContainer('prepare', { volumeMounts: [{ name: 'other', mountPath: TOKEN_DIR }] })], volumes: [{ name: 'other', emptyDir: {} }] }));
});

t.test('already injected: zero operations, but never a way around enforce', async (t) => {
  const cases: Array<[string, KubeObject]> = [
    ['status annotation', aPod({ annotations: { 'tekton-zscaler.io/status': 'injected' } })],
    ['tunnel in containers', aPod({ containers: [aContainer('step-a'), aContainer('zscaler-tunnel')] })],
    ['tunnel in initContainers', aPod({ initContainers: [aContainer('zscaler-tunnel', { restartPolicy: 'Always' })] })],
  ];
  for (const [name, pod] of cases) {
    const d = decidePod(aRequest(pod), mapped, native, ID);
    t.strictSame(d, allowed([reason('POD_ALREADY_INJECTED', 'Pod "build-run-pod" of TaskRun "build-run" in namespace "payments" already carries the injection; nothing to add.')], {
      serviceAccounts: ['payments/ci-builder'], mode: 'enforce', tekton: { taskRun: 'build-run' },
      mapping: { name: 'payments-ci', provider: 'aws-iam', subject: 'arn:aws:iam::123456789012:role/payments-ci' }, policyTags: ['ci', 'payments-artifacts'],
    }), name);
    t.equal(decidePod(aRequest(pod), unmapped, native, ID).verdict, 'denied', `${name}: a copied marker does not admit an unmapped pod`);
  }
  const other = decidePod(aRequest(aPod({ annotations: { 'tekton-zscaler.io/status': 'pending' } })), mapped, native, ID);
  t.equal(other.verdict, 'patched', 'only the value "injected" counts');
});

t.test('not a Tekton pod, not enrolled, other kinds and operations: allowed unchanged', async (t) => {
  const host = { spec: { hostNetwork: true } };
  t.strictSame(decidePod(aRequest(aPod({ taskRun: null, ...host })), unmapped, native, ID), allowed([reason('POD_NOT_TEKTON', 'Pod "build-run-pod" has no tekton.dev/taskRun label; nothing to inject.')]));
  const noLabels = aPod();
  delete (noLabels.metadata as Record<string, unknown>).labels;
  t.equal(decidePod(aRequest(noLabels), unmapped, native, ID).reasons[0]?.code, 'POD_NOT_TEKTON');
  t.strictSame(decidePod(aRequest(aPod(host)), factsWith(undefined, 'not-enrolled'), native, ID), allowed(
    [reason('NAMESPACE_NOT_ENROLLED', 'Namespace "payments" has no tekton-zscaler.io/mode label; Pod "build-run-pod" of TaskRun "build-run" is not injected.')],
    { serviceAccounts: ['payments/ci-builder'], tekton: { taskRun: 'build-run' } },
  ));
  for (const operation of ['UPDATE', 'DELETE', 'CONNECT'] as Operation[]) {
    const d = decidePod(aRequest(aPod(), { operation }), unmapped, native, ID);
    t.strictSame(d, allowed([reason('OPERATION_NOT_CHECKED', `${operation} of a Pod is not mutated: only CREATE is.`)], { tekton: { taskRun: 'build-run' } }), operation);
  }
  t.strictSame(
    decidePod(aRequest(aPod(), { kind: { group: 'apps', version: 'v1', kind: 'Deployment' } }), unmapped, native, ID),
    allowed([reason('KIND_NOT_CHECKED', 'apps/v1 Deployment is not a Pod; nothing to inject.')]),
  );
});

t.test('unknown namespace is enforced and said so', async (t) => {
  const d = decidePod(aRequest(aPod({ namespace: 'ghost' })), unmapped, native, ID);
  t.equal(d.verdict, 'denied');
  t.match(d.message, 'Namespace "ghost" is not in tekton-zscaler-webhook\'s cache, so it is treated as enforce (fail closed).');
});

t.test('fields of the wrong type are rejected naming the field', async (t) => {
  const cases: Array<[string, KubeObject, string]> = [
    ['labels array', { ...aPod(), metadata: { name: 'p', labels: ['x'] } }, 'Pod "p" is malformed: metadata.labels must be an object.'],
    ['label value number', { ...aPod(), metadata: { name: 'p', namespace: NS, labels: { 'tekton.dev/taskRun': 1 } } }, 'Pod "p" is malformed: metadata.labels["tekton.dev/taskRun"] must be a string.'],
    ['annotations string', aPod({ annotations: null, spec: {} }), ''],
    ['no spec', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: NS, labels: { 'tekton.dev/taskRun': 'tr' } } }, 'Pod "p" of TaskRun "tr" is malformed: spec must be an object, got undefined.'],
    ['containers object', aPod({ spec: { containers: { a: 1 } } }), 'spec.containers must be an array, got object'],
    ['initContainers[0] string', aPod({ initContainers: ['prepare' as never] }), 'spec.initContainers[0] must be an object, got string'],
    ['container name number', aPod({ containers: [{ name: 3 }] }), 'spec.containers[0].name must be a string, got number'],
    ['env object', aPod({ containers: [aContainer('step-a', { env: {} })] }), 'spec.containers[0].env must be an array, got object'],
    ['env name number', aPod({ containers: [aContainer('step-a', { env: [{ name: 1 }] })] }), 'spec.containers[0].env[0].name must be a string, got number'],
    ['mountPath bool', aPod({ containers: [aContainer('step-a', { volumeMounts: [{ name: 'v', mountPath: true }] })] }), 'spec.containers[0].volumeMounts[0].mountPath must be a string, got boolean'],
    ['volumes[1] null', aPod({ volumes: [{ name: 'a' }, null as never] }), 'spec.volumes[1] must be an object, got null'],
    ['volume name array', aPod({ volumes: [{ name: [] }] }), 'spec.volumes[0].name must be a string, got array'],
    ['hostNetwork string', aPod({ spec: { hostNetwork: 'yes' } }), 'spec.hostNetwork must be a boolean, got string'],
    ['serviceAccountName number', aPod({ spec: { serviceAccountName: 5 } }), 'spec.serviceAccountName must be a string, got number'],
  ];
  (cases[2]![1].metadata as Record<string, unknown>).annotations = 'a=b';
  cases[2]![2] = 'metadata.annotations must be an object, got string';
  for (const [name, pod, message] of cases) {
    const d = decidePod(aRequest(pod), mapped, native, ID);
    t.equal(d.verdict, 'rejected', name);
    t.strictSame(d.reasons.map((r) => r.code), ['OBJECT_MALFORMED'], name);
    t.match(d.message, message, name);
    t.equal(d.status.code, 400, name);
  }
  const noNs = aPod();
  delete (noNs.metadata as Record<string, unknown>).namespace;
  const req = aRequest(noNs);
  delete req.namespace;
  t.match(decidePod(req, mapped, native, ID).message, 'it has no namespace');
});

t.test('patch values come from a per-mapping cache and are frozen', async (t) => {
  const m = aMapping();
  const facts = factsWith(m);
  const a = decidePod(aRequest(aPod()), facts, native, 'a').patch;
  const b = decidePod(aRequest(aPod({ name: 'other' })), facts, native, 'b').patch;
  t.equal(a[0]?.value, b[0]?.value, 'the same volume object is reused for the same mapping and options');
  t.not(a, b);
  t.throws(() => { (a[0]!.value as { name: string }).name = 'x'; }, TypeError, 'fragments are frozen');
  t.throws(() => { ((a[3]!.value as { env: unknown[] }).env).push({}); }, TypeError, 'nested fragments are frozen');

  const changed = aMapping({ tokenExpirationSeconds: 7200 });
  const c = decidePod(aRequest(aPod()), factsWith(changed), native, 'c').patch;
  t.not(c[0]?.value, a[0]?.value, 'a new mapping object gets new fragments');
  t.equal((c[0]?.value as { projected: { sources: Array<{ serviceAccountToken: { expirationSeconds: number } }> } }).projected.sources[0]?.serviceAccountToken.expirationSeconds, 7200);
  const other = decidePod(aRequest(aPod()), facts, defaultOptions(), 'd').patch;
  t.not(other[3]?.value, a[3]?.value, 'other options get their own sidecar');
  t.strictSame(other[3]?.value, a[3]?.value);
  t.notOk(Object.isFrozen(native.sidecar.probe), "the caller's options are copied, never frozen");
});

t.test('the patch text comes with the patch: JSON.stringify of it and RFC 8785, for every shape of pod and both modes', async (t) => {
  const pods: Array<[string, KubeObject]> = [
    ['plain', aPod()],
    ['no volumes, no mounts, no initContainers, no annotations', aPod({ annotations: null, volumes: null, initContainers: null, containers: [aContainer('step-build')] })],
    ['env partly set', aPod({ containers: [aContainer('step-build', { env: [{ name: 'AWS_ROLE_ARN', value: 'mine' }] }), aContainer('sidecar-db')] })],
  ];
  for (const opts of [native, classic]) {
    for (const [name, pod] of pods) {
      const d = decidePod(aRequest(pod), mapped, opts, ID);
      t.equal(d.verdict, 'patched', name);
      t.equal(d.patchJson, JSON.stringify(d.patch), `${name} (${opts.sidecar.mode}): same text as JSON.stringify`);
      t.equal(d.patchJson, canonicalJson(d.patch), `${name} (${opts.sidecar.mode}): and its RFC 8785 form`);
    }
  }
  // A config piece with an integer-like key cannot be put in code-unit order (JavaScript lists
  // such keys first): then no text is offered, and the caller serialises (and checks) as before.
  const odd = defaultOptions({ mode: 'classic' });
  odd.sidecar = { ...odd.sidecar, resources: { limits: { '9': '1', '10': '1' } } };
  const d = decidePod(aRequest(aPod()), mapped, odd, ID);
  t.equal(d.verdict, 'patched');
  t.equal(d.patchJson, undefined, 'no text when a fragment is not in code-unit key order');
  t.not(JSON.stringify(d.patch), canonicalJson(d.patch), 'that patch is indeed not RFC 8785 as JSON.stringify writes it');
});

t.test('dry run does not change the decision, and the request is never mutated', async (t) => {
  for (const pod of [aPod(), aPod({ spec: { hostNetwork: true } }), aPod({ annotations: null, volumes: null })]) {
    const req = aRequest(pod);
    const before = structuredClone(req);
    const wet = decidePod(req, mapped, native, ID);
    t.strictSame(req, before, 'request untouched');
    t.strictSame(decidePod(aRequest(structuredClone(pod), { dryRun: true }), mapped, native, ID), wet);
  }
});
