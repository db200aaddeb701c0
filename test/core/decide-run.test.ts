import t from 'tap';
import { createMemoryFacts } from '../../webhook/core/facts-memory.js';
import type { Facts, NamespaceMode, ResolvedMapping } from '../../webhook/core/mapping.js';
import { reason } from '../../webhook/core/reasons.js';
import { decideRun } from '../../webhook/core/taskrun/decide-run.js';
import { allowed, denied, rejected, warned } from '../../webhook/core/verdict.js';
import type { KubeObject, Operation } from '../../webhook/core/wire.js';
import { aMapping, aNamespace, aPipelineRun, aRequest, aTaskRun, defaultOptions, NS } from '../builders.js';

const opts = defaultOptions();

/** Facts where every named ServiceAccount of NS is mapped by its own mapping `m-<sa>`. */
function factsMapping(sas: string[], mode: NamespaceMode | 'not-enrolled' = 'enforce', nsTags: string[] = []): Facts {
  return createMemoryFacts({
    namespaces: [aNamespace({ mode: mode === 'not-enrolled' ? undefined : mode, policyTags: nsTags })],
    mappings: sas.map((sa) => aMapping({ name: `m-${sa}`, serviceAccounts: [{ namespace: NS, name: sa }], policyTags: [`tag-${sa}`] })),
  });
}

t.test('reads the ServiceAccount fields of each kind and version (DESIGN "Validate")', async (t) => {
  const cases: Array<[string, KubeObject, string[], string?]> = [
    ['TaskRun v1 spec.serviceAccountName', aTaskRun({ serviceAccountName: 'ci-builder' }), ['ci-builder']],
    ['TaskRun v1beta1 spec.serviceAccountName', aTaskRun({ version: 'v1beta1', serviceAccountName: 'ci-builder' }), ['ci-builder']],
    ['TaskRun without SA → Tekton default', aTaskRun(), ['default']],
    ['TaskRun SA "" → Tekton default', aTaskRun({ serviceAccountName: '' }), ['default']],
    ['TaskRun SA null → Tekton default', aTaskRun({ serviceAccountName: null }), ['default']],
    ['TaskRun without SA, configured default "pipeline"', aTaskRun(), ['pipeline'], 'pipeline'],
    ['TaskRun without SA, configured default "" → default', aTaskRun(), ['default'], ''],
    ['TaskRun without spec → Tekton default', { apiVersion: 'tekton.dev/v1', kind: 'TaskRun', metadata: { name: 'x', namespace: NS } }, ['default']],
    ['PipelineRun v1 taskRunTemplate only', aPipelineRun({ serviceAccountName: 'runner' }), ['runner']],
    ['PipelineRun v1 nothing set → default', aPipelineRun(), ['default']],
    ['PipelineRun v1 taskRunTemplate without SA → default', aPipelineRun({ spec: { taskRunTemplate: { podTemplate: {} } } }), ['default']],
    [
      'PipelineRun v1 template + taskRunSpecs, in order, unique',
      aPipelineRun({ serviceAccountName: 'runner', taskRunSpecs: [{ pipelineTaskName: 'build', serviceAccountName: 'builder' }, { pipelineTaskName: 'test', serviceAccountName: 'runner' }, { pipelineTaskName: 'deploy', serviceAccountName: 'deployer' }] }),
      ['runner', 'builder', 'deployer'],
    ],
    [
      'PipelineRun v1 taskRunSpecs with empty/absent SA add nothing',
      aPipelineRun({ serviceAccountName: 'runner', taskRunSpecs: [{ pipelineTaskName: 'a', serviceAccountName: '' }, { pipelineTaskName: 'b' }, { pipelineTaskName: 'c', serviceAccountName: null }] }),
      ['runner'],
    ],
    ['PipelineRun v1 taskRunSpecs only → default + overrides', aPipelineRun({ taskRunSpecs: [{ serviceAccountName: 'builder' }] }), ['default', 'builder']],
    [
      'PipelineRun v1 ignores the v1beta1 field names',
      aPipelineRun({ spec: { serviceAccountName: 'old', taskRunSpecs: [{ pipelineTaskName: 'a', taskServiceAccountName: 'old2' }] } }),
      ['default'],
    ],
    ['PipelineRun v1beta1 spec.serviceAccountName', aPipelineRun({ version: 'v1beta1', serviceAccountName: 'runner' }), ['runner']],
    [
      'PipelineRun v1beta1 spec.serviceAccountName + taskServiceAccountName',
      aPipelineRun({ version: 'v1beta1', serviceAccountName: 'runner', taskRunSpecs: [{ pipelineTaskName: 'build', serviceAccountName: 'builder' }] }),
      ['runner', 'builder'],
    ],
    [
      'PipelineRun v1beta1 ignores the v1 field names',
      aPipelineRun({ version: 'v1beta1', spec: { taskRunTemplate: { serviceAccountName: 'new' }, taskRunSpecs: [{ pipelineTaskName: 'a', serviceAccountName: 'new2' }] } }),
      ['default'],
    ],
    ['PipelineRun v1beta1 SA "" with configured default', aPipelineRun({ version: 'v1beta1', serviceAccountName: '' }), ['pipeline'], 'pipeline'],
  ];
  for (const [name, object, sas, defaultSa] of cases) {
    const o = defaultSa === undefined ? opts : defaultOptions({ defaultServiceAccount: defaultSa });
    const d = decideRun(aRequest(object), factsMapping(sas), o);
    t.equal(d.verdict, 'allowed', name);
    t.strictSame(d.serviceAccounts, sas.map((sa) => `${NS}/${sa}`), name);
    t.strictSame(d.reasons.map((r) => r.code), ['TASKRUN_SA_MAPPED'], name);
  }
});

t.test('a field of the wrong type is rejected naming the field', async (t) => {
  const cases: Array<[string, KubeObject, string]> = [
    ['spec is a string', { ...aTaskRun({ labels: { 'tekton.dev/task': 'build' } }), spec: 'x' }, 'spec must be an object, got string'],
    ['TaskRun SA is a number', aTaskRun({ serviceAccountName: 7 }), 'spec.serviceAccountName must be a string, got number'],
    ['TaskRun v1beta1 SA is an array', aTaskRun({ version: 'v1beta1', serviceAccountName: ['a'] }), 'spec.serviceAccountName must be a string, got array'],
    ['taskRunTemplate is an array', aPipelineRun({ spec: { taskRunTemplate: [] } }), 'spec.taskRunTemplate must be an object, got array'],
    ['taskRunTemplate SA is an object', aPipelineRun({ serviceAccountName: { name: 'x' } }), 'spec.taskRunTemplate.serviceAccountName must be a string, got object'],
    ['taskRunSpecs is an object', aPipelineRun({ spec: { taskRunSpecs: { a: 1 } } }), 'spec.taskRunSpecs must be an array, got object'],
    ['taskRunSpecs[1] is a string', aPipelineRun({ spec: { taskRunSpecs: [{ pipelineTaskName: 'a' }, 'b'] } }), 'spec.taskRunSpecs[1] must be an object, got string'],
    ['v1 taskRunSpecs SA is a boolean', aPipelineRun({ taskRunSpecs: [{ serviceAccountName: true }] }), 'spec.taskRunSpecs[0].serviceAccountName must be a string, got boolean'],
    ['v1beta1 run-wide SA is a number', aPipelineRun({ version: 'v1beta1', serviceAccountName: 1 }), 'spec.serviceAccountName must be a string, got number'],
    ['v1beta1 taskServiceAccountName is a number', aPipelineRun({ version: 'v1beta1', taskRunSpecs: [{ serviceAccountName: 3 }] }), 'spec.taskRunSpecs[0].taskServiceAccountName must be a string, got number'],
  ];
  for (const [name, object, problem] of cases) {
    const d = decideRun(aRequest(object), factsMapping(['default']), opts);
    const kind = String(object.kind);
    const objName = kind === 'TaskRun' ? 'build-run' : 'ci-run';
    const msg = `${kind} "${objName}" in namespace "${NS}" is malformed: ${problem}.`;
    t.strictSame(d, rejected([reason('OBJECT_MALFORMED', msg)], msg, { tekton: kind === 'TaskRun' ? { taskRun: objName, task: 'build' } : { pipelineRun: objName } }), name);
    t.equal(d.status.code, 400, name);
  }
});

t.test('enforce: an unmapped TaskRun SA is denied 422 Invalid with a message naming namespace, SA and fix', async (t) => {
  const d = decideRun(aRequest(aTaskRun({ serviceAccountName: 'ci-builder' })), factsMapping([]), opts);
  const message =
    'TaskRun "build-run" in namespace "payments" is denied: ServiceAccount "ci-builder" has no IdentityMapping.' +
    ' Fix: a cluster admin applies an IdentityMapping that claims it (kubectl apply -f -):' +
    ' {apiVersion: tekton-zscaler.io/v1alpha1, kind: IdentityMapping, metadata: {name: payments-ci-builder},' +
    ' spec: {serviceAccounts: [{namespace: payments, name: ci-builder}], provider: aws-iam, aws: {roleArn: "<role ARN>"}, policyTags: [<tag>]}}' +
    ' (for azure-ad use azure: {clientId, tenantId}; for okta use okta: {issuer, clientId}); or use a ServiceAccount that is already mapped.';
  t.strictSame(d, denied([reason('TASKRUN_SA_UNMAPPED', 'ServiceAccount payments/ci-builder has no IdentityMapping.', 'payments/ci-builder')], message, {
    serviceAccounts: ['payments/ci-builder'], mode: 'enforce', tekton: { taskRun: 'build-run', task: 'build' },
  }));
  t.strictSame(d.status, { code: 422, reason: 'Invalid' });
});

t.test('audit: the same problems are admitted as warned, with the same explanation', async (t) => {
  for (const object of [aTaskRun({ serviceAccountName: 'ci-builder' }), aPipelineRun({ serviceAccountName: 'ci-builder' })]) {
    const enforce = decideRun(aRequest(object), factsMapping([], 'enforce'), opts);
    const audit = decideRun(aRequest(object), factsMapping([], 'audit'), opts);
    const body = enforce.message.slice(enforce.message.indexOf(' is denied: ') + ' is denied: '.length);
    const kind = String(object.kind);
    const expected = warned(enforce.reasons, `${kind} "${objectName(object)}" in namespace "payments" is admitted only because the namespace is in audit mode (enforce would deny it): ${body}`, {
      serviceAccounts: enforce.serviceAccounts, mode: 'audit', tekton: enforce.tekton,
    });
    t.strictSame(audit, expected, kind);
    t.strictSame(audit.warnings, [audit.message], `${kind}: the message is the AdmissionResponse warning`);
  }
});

function objectName(o: KubeObject): string {
  return String((o.metadata as Record<string, unknown>).name);
}

t.test('PipelineRuns: every SA must be mapped; reasons and message name each unmapped one and where it is used', async (t) => {
  const run = aPipelineRun({
    serviceAccountName: 'runner',
    taskRunSpecs: [{ pipelineTaskName: 'build', serviceAccountName: 'builder' }, { pipelineTaskName: 'deploy', serviceAccountName: 'deployer' }],
  });
  const d = decideRun(aRequest(run), factsMapping(['builder']), opts);
  t.equal(d.verdict, 'denied');
  t.strictSame(d.reasons, [
    reason('PIPELINERUN_SA_UNMAPPED', 'ServiceAccount payments/runner has no IdentityMapping.', 'payments/runner'),
    reason('PIPELINERUN_SA_UNMAPPED', 'ServiceAccount payments/deployer has no IdentityMapping.', 'payments/deployer'),
  ]);
  t.strictSame(d.serviceAccounts, ['payments/runner', 'payments/builder', 'payments/deployer']);
  t.match(d.message, 'ServiceAccounts "runner" (run-wide, spec.taskRunTemplate.serviceAccountName), "deployer" (pipeline task "deploy") have no IdentityMapping.');
  t.match(d.message, 'serviceAccounts: [{namespace: payments, name: runner}, {namespace: payments, name: deployer}]');
  t.notMatch(d.message, /name: builder/, 'the mapped SA is not in the fix');
  t.strictSame(d.tekton, { pipelineRun: 'ci-run' });

  const beta = decideRun(aRequest(aPipelineRun({ version: 'v1beta1', taskRunSpecs: [{ pipelineTaskName: 'x', serviceAccountName: 'builder' }] })), factsMapping(['builder']), opts);
  t.match(beta.message, `"default" (Tekton's default: the PipelineRun names none) has no IdentityMapping`);
});

t.test('conflicting and invalid mappings are named with the mappings and their problems', async (t) => {
  const facts = createMemoryFacts({
    namespaces: [aNamespace()],
    mappings: [
      aMapping({ name: 'a-map', serviceAccounts: [{ namespace: NS, name: 'shared' }] }),
      aMapping({ name: 'b-map', serviceAccounts: [{ namespace: NS, name: 'shared' }] }),
      aMapping({ name: 'ok-map', serviceAccounts: [{ namespace: NS, name: 'fine' }] }),
    ],
    invalid: [{ mapping: 'broken-map', problems: ['tokenExpirationSeconds 60 is below 600', 'spec.aws is missing'], serviceAccounts: [{ namespace: NS, name: 'broken' }] }],
  });
  const run = aPipelineRun({
    serviceAccountName: 'fine',
    taskRunSpecs: [{ pipelineTaskName: 'a', serviceAccountName: 'shared' }, { pipelineTaskName: 'b', serviceAccountName: 'broken' }, { pipelineTaskName: 'c', serviceAccountName: 'nobody' }],
  });
  const d = decideRun(aRequest(run), facts, opts);
  t.equal(d.verdict, 'denied');
  t.strictSame(d.reasons, [
    reason('MAPPING_CONFLICT', 'ServiceAccount payments/shared is claimed by more than one IdentityMapping: a-map, b-map.', 'payments/shared'),
    reason('MAPPING_INVALID', 'ServiceAccount payments/broken is claimed by IdentityMapping broken-map, which is invalid: tokenExpirationSeconds 60 is below 600; spec.aws is missing.', 'payments/broken'),
    reason('PIPELINERUN_SA_UNMAPPED', 'ServiceAccount payments/nobody has no IdentityMapping.', 'payments/nobody'),
  ]);
  t.match(d.message, 'ServiceAccount "shared" (pipeline task "a") is claimed by more than one IdentityMapping ("a-map", "b-map"); exactly one may claim it. Fix: a cluster admin removes it from all but one of them (kubectl edit identitymapping a-map).');
  t.match(d.message, 'ServiceAccount "broken" (pipeline task "b") is claimed by IdentityMapping "broken-map", which is invalid: tokenExpirationSeconds 60 is below 600; spec.aws is missing. Fix: a cluster admin corrects it (kubectl edit identitymapping broken-map).');
  t.match(d.message, '"nobody" (pipeline task "c") has no IdentityMapping');
  t.equal(d.mapping, undefined);
  t.strictSame(d.policyTags, []);

  const tr = decideRun(aRequest(aTaskRun({ serviceAccountName: 'shared' })), facts, opts);
  t.strictSame(tr.reasons.map((r) => r.code), ['MAPPING_CONFLICT']);
  const audit = decideRun(aRequest(aTaskRun({ serviceAccountName: 'broken' })), createMemoryFacts({ namespaces: [aNamespace({ mode: 'audit' })], mappings: [], invalid: [{ mapping: 'broken-map', problems: ['x'], serviceAccounts: [{ namespace: NS, name: 'broken' }] }] }), opts);
  t.equal(audit.verdict, 'warned');
  t.strictSame(audit.reasons.map((r) => r.code), ['MAPPING_INVALID']);
});

t.test('all mapped: allowed with the mapping (when there is one) and the union of tags, sorted and unique', async (t) => {
  const single = aMapping({ name: 'payments-ci', policyTags: ['zeta', 'ci', 'shared'] });
  const facts = createMemoryFacts({ namespaces: [aNamespace({ policyTags: ['shared', 'alpha'] })], mappings: [single] });
  const d = decideRun(aRequest(aTaskRun({ serviceAccountName: 'ci-builder' })), facts, opts);
  t.strictSame(d, allowed([reason('TASKRUN_SA_MAPPED', 'TaskRun "build-run" in namespace "payments": every ServiceAccount is mapped: "ci-builder" → IdentityMapping "payments-ci" (aws-iam).')], {
    serviceAccounts: ['payments/ci-builder'],
    mode: 'enforce',
    mapping: { name: 'payments-ci', provider: 'aws-iam', subject: 'arn:aws:iam::123456789012:role/payments-ci' },
    policyTags: ['alpha', 'ci', 'shared', 'zeta'],
    tekton: { taskRun: 'build-run', task: 'build' },
  }));

  const two = decideRun(aRequest(aPipelineRun({ serviceAccountName: 'a', taskRunSpecs: [{ serviceAccountName: 'b' }] })), factsMapping(['a', 'b'], 'audit', ['ns']), opts);
  t.equal(two.verdict, 'allowed', 'audit mode with everything mapped is plain allowed');
  t.equal(two.mapping, undefined, 'two mappings: no single mapping to name');
  t.strictSame(two.policyTags, ['ns', 'tag-a', 'tag-b']);
  t.equal(two.mode, 'audit');

  const shared = aMapping({ name: 'both', serviceAccounts: [{ namespace: NS, name: 'a' }, { namespace: NS, name: 'b' }], provider: 'okta' });
  const same = decideRun(aRequest(aPipelineRun({ serviceAccountName: 'a', taskRunSpecs: [{ serviceAccountName: 'b' }] })), createMemoryFacts({ namespaces: [aNamespace()], mappings: [shared] }), opts);
  t.strictSame(same.mapping, { name: 'both', provider: 'okta', subject: shared.subject }, 'one mapping for every SA is named');
});

t.test('namespaces: not enrolled is allowed; unknown to the cache is enforced and said so', async (t) => {
  const run = aTaskRun({ serviceAccountName: 'nobody' });
  const notEnrolled = decideRun(aRequest(run), factsMapping([], 'not-enrolled'), opts);
  t.strictSame(notEnrolled, allowed([reason('NAMESPACE_NOT_ENROLLED', 'Namespace "payments" has no tekton-zscaler.io/mode label; TaskRun "build-run" is not checked.')], {
    serviceAccounts: ['payments/nobody'], tekton: { taskRun: 'build-run', task: 'build' },
  }));

  const unknown = decideRun(aRequest(run, { namespace: 'elsewhere' }), factsMapping([]), opts);
  t.equal(unknown.verdict, 'denied');
  t.equal(unknown.mode, 'enforce');
  t.match(unknown.message, /^TaskRun "build-run" in namespace "elsewhere" is denied: Namespace "elsewhere" is not in tekton-zscaler-webhook's cache, so it is treated as enforce \(fail closed\)\. ServiceAccount "nobody" has no IdentityMapping/);

  const mappedUnknown = decideRun(aRequest(run, { namespace: 'elsewhere' }), createMemoryFacts({ namespaces: [], mappings: [aMapping({ serviceAccounts: [{ namespace: 'elsewhere', name: 'nobody' }] })] }), opts);
  t.equal(mappedUnknown.verdict, 'allowed');
  t.match(mappedUnknown.message, /treated as enforce/);
});

t.test('only CREATE is checked: UPDATE, DELETE and CONNECT are allowed even when unmapped', async (t) => {
  const run = aTaskRun({ serviceAccountName: 'nobody' });
  for (const operation of ['UPDATE', 'DELETE', 'CONNECT'] as Operation[]) {
    const req = aRequest(operation === 'DELETE' ? null : run, { operation, kind: { group: 'tekton.dev', version: 'v1', kind: 'TaskRun' } });
    if (operation === 'DELETE') req.oldObject = run;
    const d = decideRun(req, factsMapping([]), opts);
    t.strictSame(d, allowed([reason('OPERATION_NOT_CHECKED', `${operation} of a TaskRun is not checked: the ServiceAccount is immutable after creation.`)], {
      serviceAccounts: ['payments/nobody'], tekton: { taskRun: 'build-run', task: 'build' },
    }), operation);
  }
  const malformed = decideRun(aRequest(aTaskRun({ serviceAccountName: 5 }), { operation: 'UPDATE' }), factsMapping([]), opts);
  t.equal(malformed.verdict, 'allowed', 'a malformed UPDATE is still not refused');
  t.strictSame(malformed.serviceAccounts, []);
});

t.test('other kinds and versions are not checked', async (t) => {
  const cases: Array<[string, { group: string; version: string; kind: string }, string]> = [
    ['a Task', { group: 'tekton.dev', version: 'v1', kind: 'Task' }, 'tekton.dev/v1 Task is not a Tekton TaskRun or PipelineRun; nothing to check.'],
    ['a core Pod', { group: '', version: 'v1', kind: 'Pod' }, 'core/v1 Pod is not a Tekton TaskRun or PipelineRun; nothing to check.'],
    ['a TaskRun-named CRD of another group', { group: 'example.com', version: 'v1', kind: 'TaskRun' }, 'example.com/v1 TaskRun is not a Tekton TaskRun or PipelineRun; nothing to check.'],
    ['TaskRun v1alpha1', { group: 'tekton.dev', version: 'v1alpha1', kind: 'TaskRun' }, 'TaskRun version tekton.dev/v1alpha1 is not checked: only v1 and v1beta1 are.'],
  ];
  for (const [name, kind, message] of cases) {
    t.strictSame(decideRun(aRequest(aTaskRun(), { kind }), factsMapping([]), opts), allowed([reason('KIND_NOT_CHECKED', message)]), name);
  }
});

t.test('tekton links: name or generateName, and a child TaskRun\'s PipelineRun labels', async (t) => {
  const facts = factsMapping(['default']);
  const cases: Array<[string, KubeObject, object]> = [
    ['TaskRun by name', aTaskRun({ name: 'tr-1' }), { taskRun: 'tr-1', task: 'build' }],
    ['TaskRun by generateName', aTaskRun({ generateName: 'tr-' }), { taskRun: 'tr-', task: 'build' }],
    ['TaskRun with taskSpec', aTaskRun({ spec: { taskRef: undefined, taskSpec: { steps: [] } } }), { taskRun: 'build-run' }],
    [
      'child TaskRun',
      aTaskRun({ name: 'ci-run-build', labels: { 'tekton.dev/pipelineRun': 'ci-run', 'tekton.dev/pipelineTask': 'build', 'tekton.dev/task': 'golang-build' } }),
      { taskRun: 'ci-run-build', task: 'golang-build', pipelineRun: 'ci-run', pipelineTask: 'build' },
    ],
    ['PipelineRun by generateName', aPipelineRun({ generateName: 'ci-' }), { pipelineRun: 'ci-' }],
  ];
  for (const [name, object, links] of cases) t.strictSame(decideRun(aRequest(object), facts, opts).tekton, links, name);
});

t.test('namespace: from the request, else from metadata; none at all is rejected', async (t) => {
  const run = aTaskRun({ serviceAccountName: 'ci-builder' });
  const req = aRequest(run);
  delete req.namespace;
  t.equal(decideRun(req, factsMapping(['ci-builder']), opts).verdict, 'allowed');
  delete (run.metadata as Record<string, unknown>).namespace;
  const d = decideRun(req, factsMapping(['ci-builder']), opts);
  const msg = 'TaskRun "build-run" has no namespace (request.namespace and metadata.namespace are empty).';
  t.strictSame(d, rejected([reason('OBJECT_MALFORMED', msg)], msg, { tekton: { taskRun: 'build-run', task: 'build' } }));
});

t.test('dry run does not change the decision, and the request is never mutated', async (t) => {
  const facts = factsMapping(['runner']);
  for (const object of [aTaskRun({ serviceAccountName: 'x' }), aPipelineRun({ serviceAccountName: 'runner', taskRunSpecs: [{ serviceAccountName: 'y' }] }), aTaskRun({ serviceAccountName: 'runner' })]) {
    const wet = aRequest(object);
    const before = structuredClone(wet);
    const dry = aRequest(structuredClone(object), { dryRun: true });
    t.strictSame(decideRun(dry, facts, opts), decideRun(wet, facts, opts));
    t.strictSame(wet, before, 'request untouched');
  }
});

t.test('the mapping object is what the facts return (no copies), so downstream caches key on it', async (t) => {
  const m: ResolvedMapping = aMapping();
  const facts = createMemoryFacts({ namespaces: [aNamespace()], mappings: [m] });
  const lookup = facts.lookup(NS, 'ci-builder');
  t.equal(lookup.kind === 'mapped' ? lookup.mapping : undefined, m);
});
