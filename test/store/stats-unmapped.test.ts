/**
 * `unmapped` in the stats (GET /api/v1/stats) from decisions the core made, not hand-built records:
 * PipelineRuns with several ServiceAccounts where one is mapped and another is not (or is claimed
 * by two mappings, or by an invalid one), and a pod whose ServiceAccount is unmapped. Each problem
 * reason carries `serviceAccount`, the stores count exactly those accounts (never the mapped ones
 * beside them) — on SQLite and on PostgreSQL.
 */
import t, { type Test } from 'tap';
import { decideAdmission } from '../../webhook/core/admit.js';
import { createMemoryFacts } from '../../webhook/core/facts-memory.js';
import { toRecord } from '../../webhook/core/record.js';
import type { AdmissionRequest } from '../../webhook/core/wire.js';
import type { VerifiableStore } from '../../webhook/store/port.js';
import { aMapping, aNamespace, aPipelineRun, aPod, aRequest, aTaskRun, defaultOptions } from '../builders.js';
import { idOf, timeAt } from './builders.js';
import { onSqliteAndPostgres } from './pg-support.js';
import { createTestSigner } from './setup.js';

const { signer } = await createTestSigner(t, 'tzw-stats-sa-');

const facts = createMemoryFacts({
  namespaces: [aNamespace({ name: 'payments', mode: 'enforce' }), aNamespace({ name: 'data-science', mode: 'audit' })],
  mappings: [
    aMapping({ name: 'runner-map', serviceAccounts: [{ namespace: 'payments', name: 'runner' }, { namespace: 'data-science', name: 'runner' }] }),
    aMapping({ name: 'a-map', serviceAccounts: [{ namespace: 'payments', name: 'shared' }] }),
    aMapping({ name: 'b-map', serviceAccounts: [{ namespace: 'payments', name: 'shared' }] }),
  ],
  invalid: [{ mapping: 'broken-map', problems: ['spec.aws is missing'], serviceAccounts: [{ namespace: 'payments', name: 'broken' }] }],
});
const opts = defaultOptions();

let n = 0;
function recordOf(endpoint: 'validate' | 'mutate', req: AdmissionRequest) {
  const decision = decideAdmission(endpoint, req, facts, opts, idOf(++n));
  return toRecord({ id: idOf(n), time: timeAt(n * 1000), endpoint, replica: 'tzw-0', durationMs: 1, objectDigest: null }, decision, req);
}

const run = (ns: string, name: string, taskSa: string) =>
  aRequest(aPipelineRun({ name, namespace: ns, serviceAccountName: 'runner', taskRunSpecs: [{ pipelineTaskName: 'build', serviceAccountName: taskSa }] }), { namespace: ns });

t.test('the core names the ServiceAccount on each problem reason of a multi-SA PipelineRun', async (t) => {
  const r = recordOf('validate', run('payments', 'mixed', 'deployer'));
  t.equal(r.verdict, 'denied');
  t.strictSame(r.serviceAccounts, ['payments/runner', 'payments/deployer']);
  t.strictSame(r.reasons.map((x) => [x.code, x.serviceAccount]), [['PIPELINERUN_SA_UNMAPPED', 'payments/deployer']], 'the unmapped one only');
  const conflict = recordOf('validate', run('payments', 'conflict', 'shared'));
  t.strictSame(conflict.reasons.map((x) => [x.code, x.serviceAccount]), [['MAPPING_CONFLICT', 'payments/shared']]);
  const ok = recordOf('validate', run('payments', 'fine', 'runner'));
  t.strictSame(ok.reasons.map((x) => [x.code, x.serviceAccount]), [['TASKRUN_SA_MAPPED', undefined]], 'no serviceAccount on other reasons');
});

type Open = (tt: Test) => Promise<VerifiableStore>;

function contract(name: string, open: Open, skip: string | false = false): void {
  t.test(`${name}: stats count the unmapped ServiceAccount of a PipelineRun whose other ServiceAccount is mapped`, { skip }, async (t) => {
    const store = await open(t);
    const records = [
      // enforce: denied; the run-wide SA "runner" is mapped, the task's is not.
      recordOf('validate', run('payments', 'a', 'deployer')),
      recordOf('validate', run('payments', 'b', 'deployer')),
      // enforce: conflicting and invalid mappings (messages "is claimed by …": only the field names them).
      recordOf('validate', run('payments', 'c', 'shared')),
      recordOf('validate', run('payments', 'd', 'broken')),
      // audit: warned.
      recordOf('validate', run('data-science', 'e', 'trainer')),
      // All mapped: allowed, counts nowhere.
      recordOf('validate', run('payments', 'f', 'runner')),
      // A TaskRun and a pod, one unmapped SA each.
      recordOf('validate', aRequest(aTaskRun({ name: 'g', namespace: 'payments', serviceAccountName: 'deployer' }), { namespace: 'payments' })),
      recordOf('mutate', aRequest(aPod({ namespace: 'data-science', serviceAccountName: 'trainer' }), { namespace: 'data-science' })),
    ];
    for (const r of records) await store.append(r);
    t.strictSame(records.map((r) => r.verdict), ['denied', 'denied', 'denied', 'denied', 'warned', 'allowed', 'denied', 'warned']);
    const stats = await store.loadStats({}, 'day');
    t.strictSame(stats.unmapped, [
      { serviceAccount: 'payments/deployer', denied: 3, warned: 0 },
      { serviceAccount: 'payments/broken', denied: 1, warned: 0 },
      { serviceAccount: 'payments/shared', denied: 1, warned: 0 },
      { serviceAccount: 'data-science/trainer', denied: 0, warned: 2 },
    ]);
    t.notOk(stats.unmapped.some((u) => u.serviceAccount.endsWith('/runner')), 'the mapped ServiceAccount beside them is never counted');
    t.strictSame((await store.loadStats({ kind: 'PipelineRun', namespace: 'payments' }, 'day')).unmapped, [
      { serviceAccount: 'payments/deployer', denied: 2, warned: 0 },
      { serviceAccount: 'payments/broken', denied: 1, warned: 0 },
      { serviceAccount: 'payments/shared', denied: 1, warned: 0 },
    ]);
  });
}

onSqliteAndPostgres(contract, { signer, checkpointRecords: 1_000 });
