/**
 * loadStats (GET /api/v1/stats) on both adapters, SQLite and PostgreSQL, with the same records
 * and the same expected aggregates: verdicts per hour/day bucket, per namespace, the unmapped
 * ServiceAccounts (only the ones a reason names, not the mapped ones beside them), records per
 * writer with the last checkpoint; and every filter narrowing all four.
 */
import t, { type Test } from 'tap';
import type { DecisionRecord } from '../../webhook/core/record.js';
import type { VerifiableStore } from '../../webhook/store/port.js';
import type { DecisionStats } from '../../webhook/store/stats.js';
import { aRecord } from './builders.js';
import { onSqliteAndPostgres } from './pg-support.js';
import { createTestSigner } from './setup.js';

const { signer } = await createTestSigner(t, 'tzw-stats-key-');

const T = (h: number, m = 0) => `2026-01-0${1 + Math.floor(h / 24)}T${String(h % 24).padStart(2, '0')}:${String(m).padStart(2, '0')}:00.000000Z`;
const unmapped = (code: 'TASKRUN_SA_UNMAPPED' | 'PIPELINERUN_SA_UNMAPPED' | 'POD_SA_UNMAPPED', sa: string, structured: boolean) =>
  structured ? { code, message: `ServiceAccount ${sa} has no IdentityMapping.`, serviceAccount: sa } : { code, message: `ServiceAccount ${sa} has no IdentityMapping.` };

/** n → record; times across two days, two namespaces, every unmapped form the rules write. */
const RECORDS: DecisionRecord[] = [
  aRecord({ n: 1, time: T(0, 5), verdict: 'patched' }),
  aRecord({ n: 2, time: T(0, 40), verdict: 'allowed', kind: { group: 'tekton.dev', version: 'v1', kind: 'TaskRun' } }),
  // A TaskRun: one SA, unmapped (message only, as records before structured reasons).
  aRecord({ n: 3, time: T(1, 10), verdict: 'denied', kind: { group: 'tekton.dev', version: 'v1', kind: 'TaskRun' }, serviceAccounts: ['payments/default'], reasons: [unmapped('TASKRUN_SA_UNMAPPED', 'payments/default', false)] }),
  aRecord({ n: 4, time: T(1, 50), verdict: 'denied', serviceAccounts: ['payments/default'], reasons: [unmapped('POD_SA_UNMAPPED', 'payments/default', true)] }),
  // A PipelineRun with a mapped and an unmapped SA: only the unmapped one counts.
  aRecord({
    n: 5, time: T(25, 0), namespace: 'data-science', verdict: 'warned', kind: { group: 'tekton.dev', version: 'v1', kind: 'PipelineRun' },
    serviceAccounts: ['data-science/notebook-runner', 'data-science/default'], reasons: [unmapped('PIPELINERUN_SA_UNMAPPED', 'data-science/default', false)],
  }),
  aRecord({
    n: 6, time: T(25, 30), namespace: 'data-science', verdict: 'warned', kind: { group: 'tekton.dev', version: 'v1', kind: 'PipelineRun' },
    serviceAccounts: ['data-science/notebook-runner', 'data-science/default'], reasons: [unmapped('PIPELINERUN_SA_UNMAPPED', 'data-science/default', true)],
  }),
  aRecord({ n: 7, time: T(26, 0), namespace: 'data-science', verdict: 'patched', serviceAccounts: ['data-science/notebook-runner'] }),
  aRecord({ n: 8, time: T(26, 1), namespace: '', verdict: 'rejected', serviceAccounts: [], reasons: [{ code: 'REVIEW_MALFORMED', message: 'body is not JSON' }] }),
];

type Open = (tt: Test) => Promise<VerifiableStore & { checkpointNow(): Promise<unknown> }>;

async function fill(store: VerifiableStore & { checkpointNow(): Promise<unknown> }): Promise<void> {
  for (const r of RECORDS.slice(0, 6)) await store.append(r);
  await store.checkpointNow(); // the last checkpoint: size 6
  for (const r of RECORDS.slice(6)) await store.append(r);
}

function contract(name: string, open: Open, skip: string | false = false): void {
  t.test(name, { skip }, async (t) => {
    const store = await open(t);
    await fill(store);
    const stats = (f: Parameters<VerifiableStore['loadStats']>[0] = {}, b: 'hour' | 'day' = 'day') => store.loadStats(f, b);

    const all = await stats();
    t.strictSame(all, {
      buckets: [
        { start: '2026-01-01T00:00:00Z', counts: { allowed: 1, denied: 2, patched: 1 } },
        { start: '2026-01-02T00:00:00Z', counts: { patched: 1, rejected: 1, warned: 2 } },
      ],
      namespaces: [
        { namespace: '', counts: { rejected: 1 } },
        { namespace: 'data-science', counts: { patched: 1, warned: 2 } },
        { namespace: 'payments', counts: { allowed: 1, denied: 2, patched: 1 } },
      ],
      unmapped: [
        { serviceAccount: 'payments/default', denied: 2, warned: 0 },
        { serviceAccount: 'data-science/default', denied: 0, warned: 2 },
      ],
      writers: [{ writer: 'tzw-0', records: 8, checkpoint: { size: 6, time: (await store.checkpoints()).at(-1)!.time } }],
    } satisfies DecisionStats);

    t.strictSame((await stats({}, 'hour')).buckets, [
      { start: '2026-01-01T00:00:00Z', counts: { allowed: 1, patched: 1 } },
      { start: '2026-01-01T01:00:00Z', counts: { denied: 2 } },
      { start: '2026-01-02T01:00:00Z', counts: { warned: 2 } },
      { start: '2026-01-02T02:00:00Z', counts: { patched: 1, rejected: 1 } },
    ]);

    const ds = await stats({ namespace: 'data-science' });
    t.strictSame(ds.namespaces, [{ namespace: 'data-science', counts: { patched: 1, warned: 2 } }]);
    t.strictSame(ds.unmapped, [{ serviceAccount: 'data-science/default', denied: 0, warned: 2 }]);
    t.strictSame(ds.writers.map((w) => w.records), [3]);

    t.strictSame((await stats({ verdict: 'denied' })).buckets, [{ start: '2026-01-01T00:00:00Z', counts: { denied: 2 } }]);
    t.strictSame((await stats({ kind: 'PipelineRun' })).namespaces, [{ namespace: 'data-science', counts: { warned: 2 } }]);
    t.strictSame((await stats({ serviceAccount: 'data-science/notebook-runner' })).namespaces, [{ namespace: 'data-science', counts: { patched: 1, warned: 2 } }]);
    t.strictSame((await stats({ serviceAccount: 'default' })).unmapped.map((u) => u.serviceAccount), ['payments/default', 'data-science/default'], 'bare name matches any namespace');
    t.strictSame((await stats({ since: T(1, 10), until: T(25, 30) })).namespaces, [
      { namespace: 'data-science', counts: { warned: 1 } },
      { namespace: 'payments', counts: { denied: 2 } },
    ], 'since inclusive, until exclusive');
    t.strictSame((await stats({ taskRun: 'build-3' })).writers.map((w) => w.records), [1]);
    t.strictSame((await stats({ pipelineRun: 'release' })).writers.map((w) => w.records), [8]);
    t.strictSame(await stats({ namespace: 'nobody' }), { buckets: [], namespaces: [], unmapped: [], writers: [] });
  });
}

onSqliteAndPostgres(contract, { signer, checkpointRecords: 1_000 });
