/**
 * The Kubernetes object source: three client-node informers (Namespaces, ServiceAccounts,
 * IdentityMappings) feeding a `FactsIndex`. Admission never waits on the API server: lookups read
 * the index, which the watches keep current.
 *
 * Two things client-node does not do for us:
 * - Restart. Its ListWatch stops for good on any error except 410 Gone (reference/stack-probe.md
 *   §5); we restart it after `restartDelayMs`, resuming from the last resourceVersion.
 * - Transform. ListWatch caches every object it sees. Like the EKS pod-identity webhook's
 *   SetTransform (aws/amazon-eks-pod-identity-webhook PR #301, which fixed OOMs on clusters with
 *   many ServiceAccounts), objects are cut down to the fields we read before the cache sees them,
 *   and an IdentityMapping's spec is dropped from the cache once the index has resolved it.
 */
import {
  HttpMethod,
  KubeConfig,
  ListWatch,
  RequestContext,
  Watch,
  type KubernetesListObject,
  type KubernetesObject,
  type ListWatchOptions,
} from '@kubernetes/client-node';
import { fetch } from 'undici';
import { keysFor } from '../core/keys.js';
import type { FactsIndex } from '../core/mapping-index.js';
import { GROUP, PLURAL, VERSION } from '../core/mapping-schema.js';
import { logProblems, type SourceLogger } from './source.js';
import type { ObservedMapping } from './status-writer.js';

export const DEFAULT_RESTART_DELAY_MS = 5000;
/** Same page size as client-go's reflector: bounded memory per request on big clusters. */
export const DEFAULT_PAGE_SIZE = 500;
/** One list page that takes longer than this fails (and is retried) instead of hanging the sync. */
export const LIST_PAGE_TIMEOUT_MS = 60_000;

export type ResourceName = 'namespaces' | 'serviceaccounts' | 'identitymappings';

export interface KubeSourceOptions {
  kubeConfig: KubeConfig;
  index: FactsIndex;
  logger: SourceLogger;
  /** Label/annotation domain, to keep only our keys from namespaces. */
  domain: string;
  /** Wait before restarting an informer that failed; default 5 s. */
  restartDelayMs?: number;
  /** Passed to every ListWatch (tests use `{delayFn: async () => {}}` to skip reconnect backoff). */
  listWatchOptions?: ListWatchOptions;
  pageSize?: number;
  /**
   * Told about every IdentityMapping after the index took it (with generation, uid and status),
   * and about deletions: the status writer (kube/status-writer.ts).
   */
  mappingObserver?: { observe(obj: ObservedMapping): void; forget(name: string): void };
  /**
   * When set, `start()` rejects (`code: 'ERR_TZW_SOURCE_TIMEOUT'`, naming the last error) if the first
   * sync takes longer; the informers keep retrying until `stop()`. For one-shot readers (CLI).
   */
  initialSyncTimeoutMs?: number;
}

export interface KubeSourceError {
  resource: ResourceName;
  message: string;
  /** HTTP status when the API server answered. */
  status?: number;
  time: string;
}

export interface KubeSource {
  /** Starts the informers; resolves once all three have listed (see `initialSyncTimeoutMs`). */
  start(): Promise<void>;
  /** true once every resource has been listed once; stays true across later watch errors. */
  synced(): boolean;
  /** The most recent list/watch error, if any (also while retrying). */
  lastError(): KubeSourceError | undefined;
  stop(): void;
  /** `stop()` as a promise, for callers that treat every source alike. */
  close(): Promise<void>;
}

export class KubeSourceTimeoutError extends Error {
  readonly code = 'ERR_TZW_SOURCE_TIMEOUT';
}

/**
 * The client config: in a pod (KUBERNETES_SERVICE_HOST set) the mounted ServiceAccount token,
 * else the usual kubeconfig (KUBECONFIG or ~/.kube/config).
 */
export function loadKubeConfig(env: Record<string, string | undefined>): KubeConfig {
  const kc = new KubeConfig();
  if (env.KUBERNETES_SERVICE_HOST) kc.loadFromCluster();
  else kc.loadFromDefault();
  return kc;
}

/** What we keep of an object: enough for ListWatch's cache (name, namespace, resourceVersion) and the index. */
type Slim = KubernetesObject & { spec?: unknown; status?: unknown };

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function slimMetadata(obj: KubernetesObject): { name?: string; namespace?: string; resourceVersion?: string } {
  const m = obj.metadata ?? {};
  return { name: m.name, namespace: m.namespace, resourceVersion: m.resourceVersion };
}

/** A Watch whose events reach ListWatch already cut down; also tells us when a watch begins. */
class SlimWatch extends Watch {
  constructor(
    config: KubeConfig,
    private readonly slim: (obj: KubernetesObject) => Slim,
    /** Returns false when the source was stopped meanwhile: then no watch is opened. */
    private readonly onWatch: () => boolean,
  ) {
    super(config);
  }

  override watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: any, watchObj?: any) => void, // eslint-disable-line @typescript-eslint/no-explicit-any
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    // ListWatch does not look at its stopped flag between a list and the watch that follows, so a
    // stop() during a list would otherwise leave a watch open.
    if (!this.onWatch()) return Promise.resolve(new AbortController());
    // ERROR events carry a Status (e.g. 410 Gone) that ListWatch must see whole.
    return super.watch(path, queryParams, (phase, obj) => callback(phase, phase !== 'ERROR' && isRecord(obj) ? this.slim(obj) : obj), done);
  }
}

interface Page {
  items: KubernetesObject[];
  metadata?: { resourceVersion?: string; continue?: string };
}

/**
 * GETs one list page as plain JSON, authenticated exactly as client-node's own Watch does. The
 * generated typed clients turn every item into model classes first, which made a 100,000-object
 * sync several times slower and its memory peak far higher, only for us to throw it all away.
 */
async function fetchListPage(kubeConfig: KubeConfig, path: string, limit: number, cont: string | undefined, stop: AbortSignal): Promise<Page> {
  const cluster = kubeConfig.getCurrentCluster();
  if (!cluster) throw new Error('the kubeconfig has no current cluster');
  const url = new URL(cluster.server + path);
  url.searchParams.set('limit', String(limit));
  if (cont) url.searchParams.set('continue', cont);
  const ctx = new RequestContext(url.toString(), HttpMethod.GET);
  await kubeConfig.applySecurityAuthentication(ctx);
  const res = await fetch(url, { headers: ctx.getHeaders(), dispatcher: ctx.getDispatcher(), signal: AbortSignal.any([stop, AbortSignal.timeout(LIST_PAGE_TIMEOUT_MS)]) });
  const body = await res.text();
  if (res.status !== 200) throw Object.assign(new Error(`HTTP ${res.status}`), { statusCode: res.status, body });
  const page = JSON.parse(body) as Page;
  if (!Array.isArray(page?.items)) throw new Error(`list of ${path} has no items array`);
  return page;
}

interface Resource {
  name: ResourceName;
  path: string;
  slim(obj: KubernetesObject): Slim;
  upsert(obj: Slim): void;
  remove(obj: Slim): void;
}

/** A short, secret-free description of a client-node error, plus the HTTP status if there was one. */
function describeError(err: unknown): { message: string; status?: number } {
  const e = err as { code?: unknown; statusCode?: unknown; body?: unknown; message?: unknown; cause?: { code?: unknown; message?: unknown } };
  const status = typeof e?.statusCode === 'number' ? e.statusCode : typeof e?.code === 'number' ? e.code : undefined;
  if (status !== undefined) {
    // Use the Status message only: whole response bodies are long and not for logs.
    let detail = '';
    const body = typeof e.body === 'string' ? safeJson(e.body) : e.body;
    if (isRecord(body) && typeof body.message === 'string') detail = `: ${body.message}`;
    return { message: `HTTP ${status}${detail}`, status };
  }
  const cause = e?.cause ? ` (${String(e.cause.code ?? e.cause.message)})` : '';
  return { message: `${String(e?.message ?? err)}${cause}` };
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return undefined; // not JSON: the status code alone is the message
  }
}

/** What an admin should do about an error, when we can tell. */
function hintFor(resource: ResourceName, status: number | undefined): string | undefined {
  if (status === 404 && resource === 'identitymappings') {
    return 'the IdentityMapping CRD is not installed: kubectl apply -f manifests/crd/identitymapping.yaml';
  }
  if (status === 403) return `the webhook's ServiceAccount needs list and watch on ${resource} (see manifests/base/rbac.yaml)`;
  if (status === 401) return 'the API server rejected the credentials; check the kubeconfig or the mounted ServiceAccount token';
  return undefined;
}

/** Creates the source; nothing talks to the API server until `start()`. */
export function createKubeSource(options: KubeSourceOptions): KubeSource {
  const { kubeConfig, index, logger } = options;
  const restartDelayMs = options.restartDelayMs ?? DEFAULT_RESTART_DELAY_MS;
  const pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE;
  const keys = keysFor(options.domain);

  const pick = (m: Record<string, string> | undefined, key: string): Record<string, string> | undefined =>
    m?.[key] === undefined ? undefined : { [key]: m[key] };

  const resources: Resource[] = [
    {
      name: 'namespaces',
      path: '/api/v1/namespaces',
      slim: (obj) => ({
        metadata: { ...slimMetadata(obj), labels: pick(obj.metadata?.labels, keys.mode), annotations: pick(obj.metadata?.annotations, keys.policyTags) },
      }),
      upsert: (obj) => index.upsertNamespace(obj),
      remove: (obj) => index.deleteNamespace(obj.metadata?.name ?? ''),
    },
    {
      name: 'serviceaccounts',
      path: '/api/v1/serviceaccounts',
      slim: (obj) => ({ metadata: slimMetadata(obj) }),
      upsert: (obj) => index.upsertServiceAccount(obj),
      remove: (obj) => index.deleteServiceAccount(obj.metadata?.namespace ?? '', obj.metadata?.name ?? ''),
    },
    {
      name: 'identitymappings',
      path: `/apis/${GROUP}/${VERSION}/${PLURAL}`,
      // generation, uid and status only when someone writes status (they are what it compares).
      slim: (obj) => (options.mappingObserver
        ? { metadata: { ...slimMetadata(obj), generation: obj.metadata?.generation, uid: obj.metadata?.uid }, spec: (obj as Slim).spec, status: (obj as Slim).status }
        : { metadata: slimMetadata(obj), spec: (obj as Slim).spec }),
      upsert: (obj) => {
        logProblems(logger, index.upsertMapping(obj));
        options.mappingObserver?.observe(obj as ObservedMapping);
        // The index holds the resolved mapping; the cached copy only needs its name and version.
        delete obj.spec;
        delete obj.status;
      },
      remove: (obj) => {
        index.deleteMapping(obj.metadata?.name ?? '');
        options.mappingObserver?.forget(obj.metadata?.name ?? '');
      },
    },
  ];

  let stopped = false;
  // Aborts in-flight list requests on stop(); renewed by start().
  let listAbort = new AbortController();
  let error: KubeSourceError | undefined;
  const synced = new Set<ResourceName>();
  const timers = new Map<ResourceName, NodeJS.Timeout>();
  const informers: Array<{ lw: ListWatch<Slim>; onError: (err: unknown) => void }> = [];
  let resolveStart: (() => void) | undefined;

  const markSynced = (name: ResourceName): void => {
    if (synced.has(name)) return;
    synced.add(name);
    if (synced.size === resources.length) {
      logger.info({ source: 'kubernetes', ...index.counts() }, 'objects synced');
      resolveStart?.();
    }
  };

  for (const r of resources) {
    let listed = false;
    const listFn = async (): Promise<KubernetesListObject<Slim>> => {
      const items: Slim[] = [];
      let cont: string | undefined;
      let resourceVersion: string | undefined;
      do {
        const page = await fetchListPage(kubeConfig, r.path, pageSize, cont, listAbort.signal);
        for (const item of page.items) if (isRecord(item)) items.push(r.slim(item));
        resourceVersion = page.metadata?.resourceVersion;
        cont = page.metadata?.continue;
      } while (cont);
      listed = true;
      return { apiVersion: 'v1', kind: 'List', metadata: { resourceVersion }, items };
    };
    // ListWatch applies a list's items before it opens the watch, so the first watch after a
    // successful list means the index holds the full snapshot.
    const watch = new SlimWatch(kubeConfig, r.slim, () => {
      if (stopped) return false;
      if (listed) markSynced(r.name);
      return true;
    });
    const lw = new ListWatch<Slim>(r.path, watch, listFn, false, undefined, undefined, options.listWatchOptions);
    lw.on('add', (obj) => r.upsert(obj));
    lw.on('update', (obj) => r.upsert(obj));
    lw.on('delete', (obj) => r.remove(obj));
    const onError = (err: unknown): void => {
      // After stop(), errors are our own aborts.
      if (stopped) return;
      const { message, status } = describeError(err);
      error = { resource: r.name, message, ...(status === undefined ? {} : { status }), time: new Date().toISOString() };
      const hint = hintFor(r.name, status);
      logger.error(
        { source: 'kubernetes', resource: r.name, err: { message, status }, restartInMs: restartDelayMs },
        `list/watch of ${r.name} failed: ${message}${hint ? `; ${hint}` : ''}; retrying`,
      );
      if (timers.has(r.name)) return;
      timers.set(
        r.name,
        setTimeout(() => {
          timers.delete(r.name);
          if (!stopped) lw.start().catch(onError);
        }, restartDelayMs),
      );
    };
    lw.on('error', onError);
    informers.push({ lw, onError });
  }

  const stop = (): void => {
    stopped = true;
    listAbort.abort();
    for (const t of timers.values()) clearTimeout(t);
    timers.clear();
    for (const { lw } of informers) void lw.stop();
  };

  return {
    start() {
      stopped = false;
      if (listAbort.signal.aborted) listAbort = new AbortController();
      const all = new Promise<void>((resolve) => {
        resolveStart = resolve;
        if (synced.size === resources.length) resolve();
      });
      for (const { lw, onError } of informers) lw.start().catch(onError);
      const timeoutMs = options.initialSyncTimeoutMs;
      if (timeoutMs === undefined) return all;
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          const missing = resources.map((r) => r.name).filter((n) => !synced.has(n));
          const last = error ? `; last error (${error.resource}): ${error.message}` : '';
          reject(new KubeSourceTimeoutError(`${missing.join(', ')} not listed within ${timeoutMs} ms${last}`));
        }, timeoutMs);
      });
      return Promise.race([all, timeout]).finally(() => clearTimeout(timer));
    },
    synced: () => synced.size === resources.length,
    lastError: () => error,
    stop,
    close: async () => stop(),
  };
}
