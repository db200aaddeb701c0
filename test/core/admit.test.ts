import t from 'tap';
import { decideAdmission } from '../../webhook/core/admit.js';
import { createMemoryFacts } from '../../webhook/core/facts-memory.js';
import { decidePod } from '../../webhook/core/pod/decide-pod.js';
import { reason } from '../../webhook/core/reasons.js';
import type { Endpoint } from '../../webhook/core/record.js';
import { decideRun } from '../../webhook/core/taskrun/decide-run.js';
import { allowed } from '../../webhook/core/verdict.js';
import type { KubeObject } from '../../webhook/core/wire.js';
import { aMapping, aNamespace, aPipelineRun, aPod, aRequest, aTaskRun, defaultOptions } from '../builders.js';

const facts = createMemoryFacts({ namespaces: [aNamespace()], mappings: [aMapping()] });
const opts = defaultOptions();
const ID = 'decision-1';

t.test('validate decides TaskRuns and PipelineRuns; mutate decides Pods', async (t) => {
  const cases: Array<[Endpoint, KubeObject, 'run' | 'pod']> = [
    ['validate', aTaskRun({ serviceAccountName: 'ci-builder' }), 'run'],
    ['validate', aTaskRun({ version: 'v1beta1' }), 'run'],
    ['validate', aPipelineRun({ serviceAccountName: 'ci-builder' }), 'run'],
    ['validate', aPipelineRun({ version: 'v1beta1', serviceAccountName: 'nobody' }), 'run'],
    ['mutate', aPod(), 'pod'],
    ['mutate', aPod({ serviceAccountName: 'nobody' }), 'pod'],
  ];
  for (const [endpoint, object, rule] of cases) {
    const req = aRequest(object);
    const want = rule === 'run' ? decideRun(req, facts, opts) : decidePod(req, facts, opts, ID);
    t.strictSame(decideAdmission(endpoint, req, facts, opts, ID), want, `${endpoint} ${String(object.kind)}`);
    t.not(want.reasons[0]?.code, 'KIND_NOT_CHECKED');
  }
});

t.test('any other kind on either endpoint is allowed as KIND_NOT_CHECKED', async (t) => {
  const cases: Array<[Endpoint, { group: string; version: string; kind: string }, string]> = [
    ['validate', { group: '', version: 'v1', kind: 'Pod' }, '/validate checks only Tekton TaskRuns and PipelineRuns; core/v1 Pod is let through unchanged.'],
    ['validate', { group: 'tekton.dev', version: 'v1', kind: 'Pipeline' }, '/validate checks only Tekton TaskRuns and PipelineRuns; tekton.dev/v1 Pipeline is let through unchanged.'],
    ['mutate', { group: 'tekton.dev', version: 'v1', kind: 'TaskRun' }, '/mutate checks only Pods; tekton.dev/v1 TaskRun is let through unchanged.'],
    ['mutate', { group: 'apps', version: 'v1', kind: 'Deployment' }, '/mutate checks only Pods; apps/v1 Deployment is let through unchanged.'],
    ['mutate', { group: '', version: 'v2', kind: 'Pod' }, '/mutate checks only Pods; core/v2 Pod is let through unchanged.'],
  ];
  for (const [endpoint, kind, message] of cases) {
    t.strictSame(decideAdmission(endpoint, aRequest(aPod(), { kind }), facts, opts, ID), allowed([reason('KIND_NOT_CHECKED', message)]), `${endpoint} ${kind.kind}`);
  }
});

t.test('the decision id only reaches the pod annotation', async (t) => {
  const a = decideAdmission('mutate', aRequest(aPod()), facts, opts, 'id-a');
  const b = decideAdmission('mutate', aRequest(aPod()), facts, opts, 'id-b');
  const idOp = (ops: typeof a.patch) => ops.find((op) => op.path.endsWith('decision-id'));
  t.equal(idOp(a.patch)?.value, 'id-a');
  t.equal(idOp(b.patch)?.value, 'id-b');
  t.strictSame(a.patch.filter((op) => op !== idOp(a.patch)), b.patch.filter((op) => op !== idOp(b.patch)));
});
