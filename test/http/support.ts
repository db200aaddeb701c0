/** Builds the admission app on fake-free parts: the real facts index, and a store given by the test. */
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { buildApp } from '../../webhook/app.js';
import { createFactsIndex, type FactsIndex } from '../../webhook/core/mapping-index.js';
import { createMetrics, type Metrics } from '../../webhook/http/metrics.js';
import type { ChainedRecord, DecisionRecord } from '../../webhook/core/record.js';
import type { DecisionStore } from '../../webhook/store/port.js';
import { defaultOptions } from '../builders.js';

/** A store port double that keeps records in an array; `fail` makes append reject like a dead disk. */
export function createArrayStore(): Pick<DecisionStore, 'append'> & { records: DecisionRecord[]; fail: boolean } {
  const s = {
    records: [] as DecisionRecord[],
    fail: false,
    async append(r: DecisionRecord): Promise<ChainedRecord> {
      if (s.fail) throw Object.assign(new Error('disk I/O error'), { code: 'ERR_STORE_UNAVAILABLE' });
      s.records.push(r);
      return { ...r, seq: s.records.length, prevHash: '', hash: '' };
    },
  };
  return s;
}

export function loadExampleFacts(index: FactsIndex): void {
  index.upsertNamespace({ metadata: { name: 'payments', labels: { 'tekton-zscaler.io/mode': 'enforce' }, annotations: { 'tekton-zscaler.io/policy-tags': 'pci' } } });
  index.upsertNamespace({ metadata: { name: 'data-science', labels: { 'tekton-zscaler.io/mode': 'audit' } } });
  index.upsertNamespace({ metadata: { name: 'sandbox' } });
  index.upsertServiceAccount({ metadata: { namespace: 'payments', name: 'ci-builder' } });
  index.upsertMapping({
    apiVersion: 'tekton-zscaler.io/v1alpha1', kind: 'IdentityMapping', metadata: { name: 'payments-ci' },
    spec: { serviceAccounts: [{ namespace: 'payments', name: 'ci-builder' }], provider: 'aws-iam', aws: { roleArn: 'arn:aws:iam::123456789012:role/payments-ci' }, policyTags: ['ci'] },
  });
}

export interface TestApp {
  app: ReturnType<typeof buildApp>;
  store: ReturnType<typeof createArrayStore>;
  metrics: Metrics;
  logs: string[];
  index: FactsIndex;
  state: { synced: boolean; throwInCore: boolean };
}

export function createTestApp(o: { store?: Pick<DecisionStore, 'append'>; bodyLimit?: number; deadlineMs?: number } = {}): TestApp {
  const logs: string[] = [];
  const logger = pino({ level: 'info' }, new Writable({ write(chunk, _e, cb) { logs.push(String(chunk)); cb(); } }));
  const index = createFactsIndex('tekton-zscaler.io');
  loadExampleFacts(index);
  const store = createArrayStore();
  const metrics = createMetrics();
  const state = { synced: true, throwInCore: false };
  let n = 0;
  let micros = 1_764_110_714_000_000n;
  const facts = {
    namespace: (name: string) => {
      if (state.throwInCore) throw new Error('boom');
      return index.namespace(name);
    },
    lookup: (ns: string, sa: string) => index.lookup(ns, sa),
  };
  const app = buildApp({
    facts, sourceSynced: () => state.synced, store: o.store ?? store, options: defaultOptions(), logger, metrics,
    newId: () => `0193a000-0000-7000-8000-${String(++n).padStart(12, '0')}`,
    nowMicros: () => (micros += 250n), replica: 'test-0', deadlineMs: o.deadlineMs ?? 2000,
    readiness: () => (state.synced ? [] : ['object source not synced']), bodyLimit: o.bodyLimit ?? 7 * 1024 * 1024,
  });
  return { app, store, metrics, logs, index, state };
}

export function review(object: Record<string, unknown> | null, request: Record<string, unknown> = {}): Record<string, unknown> {
  const apiVersion = typeof object?.apiVersion === 'string' ? object.apiVersion : 'v1';
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  const md = (object?.metadata ?? {}) as Record<string, unknown>;
  return {
    apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview',
    request: {
      uid: 'a1b2c3', kind: { group, version, kind: object?.kind ?? 'Pod' }, operation: 'CREATE',
      namespace: md.namespace ?? 'payments', userInfo: { username: 'alice', groups: ['devs'] }, object, ...request,
    },
  };
}
