/**
 * The IdentityMapping status writer against the loopback fake API server, wired as the server wires
 * it: informers → fact index → status writer, gated by a Lease, Events through the recorder.
 */
import t, { type Test } from 'tap';
import { createFactsIndex, type FactsIndex } from '../../webhook/core/mapping-index.js';
import { createKubeApi } from '../../webhook/kube/api.js';
import { createEventRecorder, toDenialEvent, type EventRecorder } from '../../webhook/kube/events.js';
import { createKubeSource, type KubeSource } from '../../webhook/kube/informers.js';
import { createLeaseElector, type LeaseElector } from '../../webhook/kube/lease.js';
import { createStatusWriter, type StatusWriter } from '../../webhook/kube/status-writer.js';
import type { DecisionRecord } from '../../webhook/core/record.js';
import { startFakeApiServer, type FakeApiServer } from './fake-api-server.js';
import { createLogRecorder } from './log-recorder.js';

const DOMAIN = 'tekton-zscaler.io';
const ARN = 'arn:aws:iam::123456789012:role/r';
const LEASE = { namespace: 'tekton-zscaler', name: 'tekton-zscaler-webhook-status' };
const aMapping = (name: string, sas: Array<[string, string]>, extra: Record<string, unknown> = {}) => ({
  metadata: { name },
  spec: { serviceAccounts: sas.map(([namespace, n]) => ({ namespace, name: n })), provider: 'aws-iam', aws: { roleArn: ARN }, ...extra },
});

async function until(pred: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface Replica {
  name: string;
  index: FactsIndex;
  source: KubeSource;
  elector: LeaseElector;
  writer: StatusWriter;
  events: EventRecorder;
  writes: { ok: number; error: number };
  stop(): Promise<void>;
}

async function aReplica(t: Test, api: FakeApiServer, name: string, opts: { start?: boolean; durationSeconds?: number } = {}): Promise<Replica> {
  const kubeApi = createKubeApi(api.kubeConfig());
  const logger = createLogRecorder();
  const index = createFactsIndex(DOMAIN);
  const events = createEventRecorder({ api: kubeApi, instance: name, logger, perSecond: 100, burst: 100 });
  const elector = createLeaseElector({ api: kubeApi, ...LEASE, identity: name, durationSeconds: opts.durationSeconds ?? 3, logger });
  const writes = { ok: 0, error: 0 };
  const writer = createStatusWriter({ api: kubeApi, index, elector, events, logger, debounceMs: 10, onWrite: (r) => void writes[r]++ });
  const source = createKubeSource({
    kubeConfig: api.kubeConfig(), index, logger, domain: DOMAIN, restartDelayMs: 20,
    listWatchOptions: { delayFn: async () => {} }, mappingObserver: writer,
  });
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await writer.stop();
    await elector.stop();
    source.stop();
    await events.idle();
    await events.stop();
  };
  t.teardown(stop);
  await source.start();
  writer.start();
  if (opts.start !== false) elector.start();
  return { name, index, source, elector, writer, events, writes, stop };
}

const ready = (api: FakeApiServer, name: string) => {
  const s = api.get('identitymappings', name)?.status;
  const c = s?.conditions?.find((x: { type: string }) => x.type === 'Ready');
  return c ? { status: c.status, reason: c.reason, message: c.message, observedGeneration: s.observedGeneration, serviceAccounts: s.serviceAccounts } : undefined;
};
const warnings = (api: FakeApiServer) => api.list('events').map((e) => `${e.involvedObject.name}:${e.reason}`).sort();
const statusPatches = (api: FakeApiServer) => api.requests.filter((r) => r.method === 'PATCH' && r.subresource === 'status');

t.test('Ready/Conflict/Invalid transitions: status content, observedGeneration, messages naming the other mapping or the field, one Event per transition', async (t) => {
  const api = await startFakeApiServer();
  t.teardown(() => api.close());
  const a = await aReplica(t, api, 'tzw-0');
  await until(() => a.elector.isLeader(), 'tzw-0 holds the Lease');

  api.upsert('identitymappings', aMapping('payments-ci', [['payments', 'ci'], ['payments', 'deploy']]));
  await until(() => ready(api, 'payments-ci') !== undefined, 'first status');
  t.strictSame(ready(api, 'payments-ci'), { status: 'True', reason: 'Valid', message: 'maps 2 ServiceAccounts', observedGeneration: 1, serviceAccounts: 2 });
  const first = statusPatches(api)[0]!;
  t.equal(first.contentType, 'application/merge-patch+json');
  t.strictSame(Object.keys(first.body!), ['status'], 'the patch carries status only');
  t.match(first.body!.status.conditions[0].lastTransitionTime, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);

  // A second mapping claims payments/ci: both sides turn Conflict, each naming the other.
  api.upsert('identitymappings', aMapping('payments-ci-copy', [['payments', 'ci']]));
  await until(() => ready(api, 'payments-ci')?.reason === 'Conflict' && ready(api, 'payments-ci-copy')?.reason === 'Conflict', 'both Conflict');
  t.strictSame(ready(api, 'payments-ci'), {
    status: 'False', reason: 'Conflict', observedGeneration: 1, serviceAccounts: 2,
    message: 'ServiceAccount payments/ci is also claimed by IdentityMapping payments-ci-copy; runs using it are denied until only one mapping claims it',
  });
  t.match(ready(api, 'payments-ci-copy')?.message, /claimed by IdentityMapping payments-ci;/);
  await a.writer.settled();
  await a.events.idle();
  t.strictSame(warnings(api), ['payments-ci-copy:Conflict', 'payments-ci:Conflict']);
  const event = api.list('events').find((e) => e.involvedObject.name === 'payments-ci')!;
  t.strictSame(
    { ns: event.metadata.namespace, type: event.type, involved: { ...event.involvedObject, uid: typeof event.involvedObject.uid, resourceVersion: undefined } },
    { ns: 'default', type: 'Warning', involved: { apiVersion: 'tekton-zscaler.io/v1alpha1', kind: 'IdentityMapping', name: 'payments-ci', uid: 'string', resourceVersion: undefined } },
  );

  // The copy is fixed (spec change: generation 2): both are Valid again, no new Event.
  api.upsert('identitymappings', aMapping('payments-ci-copy', [['payments', 'other']]));
  await until(() => ready(api, 'payments-ci')?.reason === 'Valid' && ready(api, 'payments-ci-copy')?.observedGeneration === 2, 'both Valid');
  t.strictSame(ready(api, 'payments-ci-copy'), { status: 'True', reason: 'Valid', message: 'maps 1 ServiceAccount', observedGeneration: 2, serviceAccounts: 1 });

  // Invalid: the message names the field.
  api.upsert('identitymappings', aMapping('payments-ci', [['payments', 'ci']], { tokenExpirationSeconds: 5 }));
  await until(() => ready(api, 'payments-ci')?.reason === 'Invalid', 'Invalid');
  t.strictSame(ready(api, 'payments-ci'), { status: 'False', reason: 'Invalid', message: 'spec.tokenExpirationSeconds must be >= 600 (got 5)', observedGeneration: 2, serviceAccounts: 1 });
  await a.writer.settled();
  await a.events.idle();
  t.strictSame(warnings(api), ['payments-ci-copy:Conflict', 'payments-ci:Conflict', 'payments-ci:Invalid']);

  // A metadata-only change (no new generation, same verdict) writes nothing and warns nothing.
  const patches = statusPatches(api).length;
  api.upsert('identitymappings', { ...aMapping('payments-ci', [['payments', 'ci']], { tokenExpirationSeconds: 5 }), metadata: { name: 'payments-ci', labels: { team: 'payments' } } });
  await until(() => a.index.mapping('payments-ci') !== undefined, 'seen');
  await new Promise((r) => setTimeout(r, 100));
  await a.writer.settled();
  t.equal(statusPatches(api).length, patches, 'no status write when nothing changed');
  await a.events.idle();
  t.equal(api.list('events').length, 3);
  t.equal(a.writes.error, 0);
});

t.test('only the Lease holder writes; when it stops, another replica takes over and does not repeat Events', async (t) => {
  const api = await startFakeApiServer();
  t.teardown(() => api.close());
  const a = await aReplica(t, api, 'tzw-0');
  await until(() => a.elector.isLeader(), 'tzw-0 holds the Lease');
  const b = await aReplica(t, api, 'tzw-1');
  api.upsert('identitymappings', aMapping('one', [['payments', 'ci']]));
  api.upsert('identitymappings', aMapping('two', [['payments', 'ci']]));
  await until(() => ready(api, 'one')?.reason === 'Conflict' && ready(api, 'two')?.reason === 'Conflict', 'Conflict written');
  await b.elector.tryAcquireOrRenew();
  t.equal(b.elector.isLeader(), false, 'tzw-1 does not take a held Lease');
  t.equal(api.get('leases', LEASE.name, LEASE.namespace)?.spec.holderIdentity, 'tzw-0');
  t.ok(a.writes.ok >= 2);
  t.equal(b.writes.ok + b.writes.error, 0, 'tzw-1 wrote nothing');
  await a.writer.settled();
  await a.events.idle();
  t.strictSame(warnings(api), ['one:Conflict', 'two:Conflict']);

  await a.stop();
  t.equal(api.get('leases', LEASE.name, LEASE.namespace)?.spec.holderIdentity, undefined, 'released on stop');
  await until(() => b.elector.isLeader(), 'tzw-1 takes over', 3000);
  const lease = api.get('leases', LEASE.name, LEASE.namespace)!;
  t.equal(lease.spec.holderIdentity, 'tzw-1');
  t.equal(lease.spec.leaseTransitions, 1);

  // tzw-1 found the statuses already right: no write, no repeated Event.
  await b.writer.settled();
  t.equal(b.writes.ok, 0);
  api.upsert('identitymappings', aMapping('two', [['payments', 'other']]));
  await until(() => ready(api, 'one')?.reason === 'Valid' && ready(api, 'two')?.reason === 'Valid', 'tzw-1 writes');
  await b.writer.settled();
  t.equal(b.writes.ok, 2, 'the new holder writes');
  await b.events.idle();
  t.strictSame(warnings(api), ['one:Conflict', 'two:Conflict'], 'Events once per transition across the handover');
});

t.test('Lease: a silent holder loses it after leaseDurationSeconds on the candidate\'s clock; concurrent candidates get one winner; a holder that cannot renew steps down', async (t) => {
  const api = await startFakeApiServer();
  t.teardown(() => api.close());
  const kubeApi = createKubeApi(api.kubeConfig());
  const logger = createLogRecorder();
  let clock = 0;
  const mk = (identity: string) => createLeaseElector({ api: kubeApi, ...LEASE, identity, durationSeconds: 10, logger, monotonicMs: () => clock });
  const a = mk('tzw-0');
  const b = mk('tzw-1');
  const c = mk('tzw-2');
  const results = await Promise.all([a.tryAcquireOrRenew(), b.tryAcquireOrRenew(), c.tryAcquireOrRenew()]);
  t.equal(results.filter(Boolean).length, 1, 'exactly one of three concurrent candidates wins');
  const [holder, other] = results[0] ? [a, b] : results[1] ? [b, a] : [c, a];
  t.equal(await other.tryAcquireOrRenew(), false);
  clock += 9_000;
  t.equal(await other.tryAcquireOrRenew(), false, 'not yet expired');
  clock += 2_000;
  t.equal(await other.tryAcquireOrRenew(), true, 'expired: taken over');
  t.match(api.get('leases', LEASE.name, LEASE.namespace)?.spec, { leaseTransitions: 1, leaseDurationSeconds: 10, renewTime: /\.\d{6}Z$/ });
  // The old holder's renewal now conflicts; past its renew deadline it steps down.
  t.equal(holder.isLeader(), true);
  clock += 7_000;
  t.equal(await holder.tryAcquireOrRenew(), false);
  t.equal(holder.isLeader(), false, 'stepped down: another replica holds the Lease');
});

t.test('events.onDenial: Warning Events in the run namespace, rate-limited, never blocking; a full queue drops and counts', async (t) => {
  const api = await startFakeApiServer();
  t.teardown(() => api.close());
  const logger = createLogRecorder();
  const counted = { emitted: 0, dropped: 0 };
  const events = createEventRecorder({
    api: createKubeApi(api.kubeConfig()), instance: 'tzw-0', logger, perSecond: 0.001, burst: 2, maxQueue: 3,
    counters: { emitted: () => void counted.emitted++, dropped: () => void counted.dropped++ },
  });
  t.teardown(() => events.stop());
  const denial = (i: number): DecisionRecord => ({
    id: `0190-${i}`, kind: { group: 'tekton.dev', version: 'v1', kind: 'TaskRun' }, namespace: 'payments', name: `build-${i}-`,
    reasons: [{ code: 'TASKRUN_SA_UNMAPPED', message: 'ServiceAccount payments/ci is not mapped: create an IdentityMapping' }],
  }) as unknown as DecisionRecord;
  const accepted = [1, 2, 3, 4, 5, 6].map((i) => events.recordLimited(toDenialEvent(denial(i))));
  await until(() => api.list('events').length === 2, 'the burst is written');
  await new Promise((r) => setTimeout(r, 100));
  t.equal(api.list('events').length, 2, 'then the rate limit holds the rest');
  t.equal(counted.dropped, accepted.filter((x) => !x).length);
  t.ok(counted.dropped >= 1, 'a full queue drops');
  const e = api.list('events').sort((x, y) => x.metadata.creationTimestamp < y.metadata.creationTimestamp ? -1 : 1)[0]!;
  t.match(e, {
    metadata: { namespace: 'payments', name: /^build-\d\.[a-z0-9]{5}$/ },
    involvedObject: { apiVersion: 'tekton.dev/v1', kind: 'TaskRun', name: /^build-\d-$/, namespace: 'payments' },
    type: 'Warning', reason: 'AdmissionDenied', source: { component: 'tekton-zscaler-webhook', host: 'tzw-0' }, count: 1,
    message: /^TaskRun build-\d- denied by tekton-zscaler-webhook \(decision 0190-\d\): ServiceAccount payments\/ci is not mapped/,
  });
});
