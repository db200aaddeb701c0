/**
 * Builds the admission app on fake-free parts: the real facts index and a real SQLite decision store
 * (WAL, synchronous=FULL, signed checkpoints) in a temporary directory, with readiness wired as
 * webhook/server.ts wires it. `breakStore()` makes the store unwritable the way a real outage does:
 * another connection holds the SQLite write lock (test/store/setup.ts holdSqliteWriteLock).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { buildApp } from '../../webhook/app.js';
import { createFactsIndex, type FactsIndex } from '../../webhook/core/mapping-index.js';
import { createMetrics, type Metrics } from '../../webhook/http/metrics.js';
import type { ChainedRecord } from '../../webhook/core/record.js';
import type { DecisionStore } from '../../webhook/store/port.js';
import { createSqliteStore, type SqliteStore } from '../../webhook/store/sqlite/store.js';
import { defaultOptions } from '../builders.js';
import { createTestSigner, holdSqliteWriteLock } from '../store/setup.js';
import type { Jwks } from '../../webhook/store/evidence/signing.js';

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
  store: SqliteStore;
  /** Public key of the store's checkpoints. */
  jwks: Jwks;
  /** Every record the store holds, in chain order. */
  records(): Promise<ChainedRecord[]>;
  /** Holds the store's write lock from another connection until the returned function is awaited. */
  breakStore(): Promise<() => Promise<void>>;
  metrics: Metrics;
  logs: string[];
  index: FactsIndex;
  state: { synced: boolean; throwInCore: boolean };
}

interface Teardown {
  teardown(fn: () => void | Promise<void>): void;
}

export interface TestAppOptions {
  bodyLimit?: number;
  /** admission.deadlineMs (default 2000). */
  deadlineMs?: number;
  /** The store's busy timeout (default 50 ms: a held lock fails the write at once). */
  busyTimeoutMs?: number;
  /** Where admissions append instead of the SQLite store (a port double for what no real adapter does on demand). */
  appendTo?: Pick<DecisionStore, 'append'>;
  /** The store's directory (e.g. a size-limited tmpfs); the caller owns it. Default: a new temporary directory, removed at teardown. */
  storeDir?: string;
}

export async function createTestApp(t: Teardown, o: TestAppOptions = {}): Promise<TestApp> {
  const logs: string[] = [];
  const logger = pino({ level: 'info' }, new Writable({ write(chunk, _e, cb) { logs.push(String(chunk)); cb(); } }));
  const index = createFactsIndex('tekton-zscaler.io');
  loadExampleFacts(index);
  const { signer, jwks } = await createTestSigner(t, 'tzw-http-key-');
  const dir = o.storeDir ?? mkdtempSync(join(tmpdir(), 'tzw-http-store-'));
  const path = join(dir, 'decisions.db');
  // A short busy timeout and probe interval: a held lock fails the write in 50 ms, recovery is seen in 20 ms.
  const store = await createSqliteStore({ path, replica: 'test-0', signer, logger, busyTimeoutMs: o.busyTimeoutMs ?? 50, recoveryProbeMs: 20 });
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
    facts, sourceSynced: () => state.synced, store: o.appendTo ?? store, options: defaultOptions(), logger, metrics,
    newId: () => `0193a000-0000-7000-8000-${String(++n).padStart(12, '0')}`,
    nowMicros: () => (micros += 250n), replica: 'test-0', deadlineMs: o.deadlineMs ?? 2000,
    // As webhook/server.ts: the source and the store (the certificate is not part of these tests).
    readiness: () => [...(state.synced ? [] : ['object source not synced']), ...(store.writable() ? [] : [store.unwritableReason() ?? 'decision store not writable'])],
    bodyLimit: o.bodyLimit ?? 7 * 1024 * 1024,
  });
  t.teardown(async () => {
    await app.close();
    await store.close();
    if (!o.storeDir) rmSync(dir, { recursive: true, force: true });
  });
  const records = async (): Promise<ChainedRecord[]> => {
    const out: ChainedRecord[] = [];
    for await (const e of store.streamChain()) out.push(e.record);
    return out;
  };
  return { app, store, jwks, records, breakStore: () => holdSqliteWriteLock(path), metrics, logs, index, state };
}

/** GET `path` over real HTTP from the app listening on loopback (listens on first use). */
export async function getOverHttp(app: TestApp['app'], path: string): Promise<{ status: number; json: Record<string, unknown> }> {
  if (!app.server.listening) await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  if (typeof address !== 'object' || address === null) throw new Error('the app has no TCP address');
  const res = await fetch(`http://127.0.0.1:${address.port}${path}`);
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
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
