/**
 * A loopback Kubernetes API server that speaks list + watch for the three resources the webhook
 * reads, over HTTPS with a bearer token, faithful to the shapes in reference/stack-probe.md §5:
 * - list: `{apiVersion, kind: XList, metadata: {resourceVersion, continue?}, items}` with `limit`
 *   and `continue` paging over a consistent snapshot; core items carry no apiVersion/kind, custom
 *   resources do (as the real server does);
 * - watch: `?watch=true&resourceVersion=N`, one JSON event per line, replaying history newer than N;
 *   a compacted N gets a 200 with an in-stream ERROR Status 410 (what a real watch cache does);
 * - faults on demand: an HTTP status for the next list or watch (410, 500, ...), closing watches;
 * - the writes the webhook makes, with the API server's rules: IdentityMapping `/status` merge
 *   PATCH (only status changes, validated against the CRD's status schema; generation counts spec
 *   changes only), coordination.k8s.io/v1 Leases (GET, POST, PUT with a required, matching
 *   resourceVersion: 409 on a stale one; MicroTime timestamps), core/v1 Events (POST with
 *   generateName, namespace rules of event validation).
 * - TokenReview, SubjectAccessReview and SelfSubjectAccessReview over a small RBAC model
 *   (fake-authz.ts, `authz`); the bearer token TOKEN is the webhook's own ServiceAccount.
 * Used only by test/kube/.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { KubeConfig } from '@kubernetes/client-node';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import { createCertificateAuthority, createServingCertificate } from '../../certs/lib.js';
import { createFakeAuthz, type FakeAuthz } from './fake-authz.js';
import { IDENTITY_MAPPING_STATUS_SCHEMA } from '../../webhook/core/mapping-schema.js';

export const TOKEN = 'fake-api-token';
/** Who TOKEN belongs to: the webhook's ServiceAccount, as in manifests/base/rbac.yaml. */
export const WEBHOOK_USER = 'system:serviceaccount:tekton-zscaler:tekton-zscaler-webhook';

export type FakeResource = 'namespaces' | 'serviceaccounts' | 'identitymappings' | 'leases' | 'events';
type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const RESOURCES: Record<FakeResource, { apiVersion: string; kind: string; namespaced: boolean; custom: boolean }> = {
  namespaces: { apiVersion: 'v1', kind: 'Namespace', namespaced: false, custom: false },
  serviceaccounts: { apiVersion: 'v1', kind: 'ServiceAccount', namespaced: true, custom: false },
  identitymappings: { apiVersion: 'tekton-zscaler.io/v1alpha1', kind: 'IdentityMapping', namespaced: false, custom: true },
  leases: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', namespaced: true, custom: false },
  events: { apiVersion: 'v1', kind: 'Event', namespaced: true, custom: false },
};

const ajv = new Ajv({ allErrors: true, strict: false });
(addFormats as unknown as (a: Ajv) => void)(ajv);
const validateMappingStatus = ajv.compile(IDENTITY_MAPPING_STATUS_SCHEMA);
/** metav1.MicroTime: RFC 3339 with exactly six fractional digits. */
const MICRO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(Z|[+-]\d{2}:\d{2})$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** RFC 7386 JSON merge patch. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return patch;
  const out: Obj = typeof target === 'object' && target !== null && !Array.isArray(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

interface Event {
  rv: number;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: Obj;
}

interface Watcher {
  res: ServerResponse;
  namespace?: string;
}

interface Store {
  objects: Map<string, Obj>;
  history: Event[];
  /** Watches from a resourceVersion below this get 410 Gone. */
  compactedRv: number;
  watchers: Set<Watcher>;
  /** A number answers with that HTTP status; 'hold' parks the request until `release()`. */
  failures: { list: Array<number | 'hold'>; watch: Array<number | 'hold'>; write: number[] };
}

export interface RequestLog {
  method: string;
  /** e.g. `status` for /identitymappings/NAME/status. */
  subresource?: string;
  name?: string;
  body?: Obj;
  contentType?: string;
  resource: FakeResource | undefined;
  watch: boolean;
  query: Record<string, string>;
}

export interface FakeApiServer {
  url: string;
  /** A KubeConfig trusting the server's CA, with the bearer token it expects. */
  kubeConfig(): KubeConfig;
  /**
   * Creates or replaces an object (assigns resourceVersion, uid) and notifies watchers. `silent`
   * models an event a client missed (only a relist reveals it): no history, no notification.
   */
  upsert(resource: FakeResource, obj: Obj, opts?: { silent?: boolean }): Obj;
  remove(resource: FakeResource, name: string, namespace?: string, opts?: { silent?: boolean }): void;
  /** Forgets the event history: watches from an older resourceVersion get 410 Gone. */
  compact(resource: FakeResource): void;
  /** The next `times` list (or watch) requests for `resource` are answered with HTTP `status`. */
  failNext(resource: FakeResource, verb: 'list' | 'watch', status: number, times?: number): void;
  /** The next list (or watch) request for `resource` waits until `release()` answers it normally. */
  hold(resource: FakeResource, verb: 'list' | 'watch'): void;
  /** Answers every held request (after the client may have given up on it). */
  release(): void;
  /** Ends open watches: 'close' just ends the stream; 'gone' first sends an in-stream ERROR 410. */
  endWatches(resource: FakeResource, how: 'close' | 'gone'): void;
  openWatches(resource: FakeResource): number;
  /** The stored object (as a GET would return it), or undefined. */
  get(resource: FakeResource, name: string, namespace?: string): Obj | undefined;
  /** Every stored object of a resource. */
  list(resource: FakeResource): Obj[];
  /** The next `times` writes (POST, PUT, PATCH) to `resource` are answered with HTTP `status`. */
  failNextWrite(resource: FakeResource, status: number, times?: number): void;
  /** Tokens, RBAC objects and the reviews received (fake-authz.ts). */
  authz: FakeAuthz;
  /** The server's CA certificate (PEM), for clients given a CA file. */
  caPem: string;
  requests: RequestLog[];
  close(): Promise<void>;
}

const keyOf = (o: Obj): string => `${o.metadata?.namespace ?? ''}/${o.metadata?.name}`;
const status = (code: number, reason: string, message: string): Obj => ({
  kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code,
});

export async function startFakeApiServer(): Promise<FakeApiServer> {
  const ca = await createCertificateAuthority({ commonName: 'fake-api-ca' });
  const serving = await createServingCertificate(ca, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  let rv = 100;
  let uid = 0;
  const stores = Object.fromEntries(
    Object.keys(RESOURCES).map((r) => [r, { objects: new Map(), history: [], compactedRv: 0, watchers: new Set(), failures: { list: [], watch: [], write: [] } } satisfies Store]),
  ) as unknown as Record<FakeResource, Store>;
  const snapshots = new Map<string, { rv: number; items: Obj[] }>();
  const requests: RequestLog[] = [];
  const authz = createFakeAuthz({ callerToken: TOKEN, caller: { username: WEBHOOK_USER, uid: 'uid-webhook-sa' } });

  /** The object as the API returns it; core list items have no apiVersion/kind. */
  const shaped = (resource: FakeResource, o: Obj, inList: boolean): Obj => {
    if (inList && !RESOURCES[resource].custom) {
      const { apiVersion: _a, kind: _k, ...rest } = o;
      return rest;
    }
    return o;
  };

  const route = (pathname: string): { resource: FakeResource; namespace?: string; name?: string; subresource?: string } | undefined => {
    if (pathname === '/api/v1/namespaces') return { resource: 'namespaces' };
    if (pathname === '/api/v1/serviceaccounts') return { resource: 'serviceaccounts' };
    if (pathname === '/api/v1/events') return { resource: 'events' };
    let m = /^\/api\/v1\/namespaces\/([^/]+)\/(serviceaccounts|events)(?:\/([^/]+))?$/.exec(pathname);
    if (m) return { resource: m[2] as FakeResource, namespace: m[1]!, ...(m[3] ? { name: m[3] } : {}) };
    m = /^\/apis\/coordination\.k8s\.io\/v1\/namespaces\/([^/]+)\/leases(?:\/([^/]+))?$/.exec(pathname);
    if (m) return { resource: 'leases', namespace: m[1]!, ...(m[2] ? { name: m[2] } : {}) };
    m = /^\/apis\/tekton-zscaler\.io\/v1alpha1\/identitymappings(?:\/([^/]+))?(?:\/(status))?$/.exec(pathname);
    if (m) return { resource: 'identitymappings', ...(m[1] ? { name: decodeURIComponent(m[1]) } : {}), ...(m[2] ? { subresource: m[2] } : {}) };
    return undefined;
  };

  const send = (res: ServerResponse, code: number, body: Obj): void => {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };

  const writeEvent = (w: Watcher, type: string, object: Obj): void => {
    if (w.namespace !== undefined && object.metadata?.namespace !== w.namespace) return;
    w.res.write(`${JSON.stringify({ type, object })}\n`);
  };

  const held: Array<() => void> = [];
  const serve = (req: IncomingMessage, res: ServerResponse, replay = false, rawBody = ''): void => {
    const url = new URL(req.url ?? '/', 'https://localhost');
    const query = Object.fromEntries(url.searchParams);
    const r = route(url.pathname);
    const isWatch = query.watch === 'true' || query.watch === '1';
    const method = req.method ?? 'GET';
    let body: Obj | undefined;
    if (rawBody !== '') {
      try {
        body = JSON.parse(rawBody) as Obj;
      } catch {
        return send(res, 400, status(400, 'BadRequest', 'the body is not JSON'));
      }
    }
    if (!replay) {
      requests.push({
        method, resource: r?.resource, watch: isWatch, query,
        ...(r?.name ? { name: r.name } : {}), ...(r?.subresource ? { subresource: r.subresource } : {}),
        ...(body ? { body } : {}), ...(req.headers['content-type'] ? { contentType: req.headers['content-type'] } : {}),
      });
    }
    if (req.headers.authorization !== `Bearer ${TOKEN}`) return send(res, 401, status(401, 'Unauthorized', 'Unauthorized'));
    if (r === undefined) return send(res, 404, status(404, 'NotFound', 'the server could not find the requested resource'));
    const store = stores[r.resource];
    const info = RESOURCES[r.resource];
    if (method !== 'GET' || r.name !== undefined) return write(r, method, body, req.headers['content-type'] ?? '', res);
    const inScope = (o: Obj): boolean => r.namespace === undefined || o.metadata?.namespace === r.namespace;

    const failure = replay ? undefined : (isWatch ? store.failures.watch : store.failures.list).shift();
    if (failure === 'hold') {
      held.push(() => serve(req, res, true));
      return;
    }
    if (failure !== undefined) {
      const reason = failure === 410 ? 'Expired' : failure >= 500 ? 'InternalError' : 'BadRequest';
      return send(res, failure, status(failure, reason, `injected failure ${failure}`));
    }

    if (!isWatch) {
      const limit = Number(query.limit ?? 0);
      let snap: { rv: number; items: Obj[] };
      let offset = 0;
      if (query.continue) {
        const [id, off] = Buffer.from(query.continue, 'base64url').toString().split(':');
        const found = snapshots.get(id ?? '');
        if (!found) return send(res, 410, status(410, 'Expired', 'The provided continue parameter is too old'));
        snap = found;
        offset = Number(off);
      } else {
        snap = { rv, items: [...store.objects.values()].filter(inScope).sort((a, b) => (keyOf(a) < keyOf(b) ? -1 : 1)) };
      }
      const end = limit > 0 ? Math.min(offset + limit, snap.items.length) : snap.items.length;
      const metadata: Obj = { resourceVersion: String(snap.rv) };
      if (end < snap.items.length) {
        const id = String(snapshots.size + 1);
        snapshots.set(id, snap);
        metadata.continue = Buffer.from(`${id}:${end}`).toString('base64url');
      }
      return send(res, 200, {
        apiVersion: info.apiVersion, kind: `${info.kind}List`, metadata,
        items: snap.items.slice(offset, end).map((o) => shaped(r.resource, o, true)),
      });
    }

    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    const w: Watcher = { res, ...(r.namespace === undefined ? {} : { namespace: r.namespace }) };
    const from = query.resourceVersion ?? '';
    if (from === '' || from === '0') {
      // "Any" resourceVersion: start with synthetic ADDED events for the current state.
      for (const o of store.objects.values()) writeEvent(w, 'ADDED', o);
    } else if (Number(from) < store.compactedRv) {
      writeEvent(w, 'ERROR', status(410, 'Expired', `too old resource version: ${from} (${store.compactedRv})`));
      res.end();
      return;
    } else {
      for (const e of store.history) if (e.rv > Number(from)) writeEvent(w, e.type, e.object);
    }
    store.watchers.add(w);
    req.on('close', () => store.watchers.delete(w));
  };
  const notFound = (resource: FakeResource, name: string): Obj => status(404, 'NotFound', `${resource} "${name}" not found`);

  /** GET one object, and every write: the API server's rules for the few writes the webhook makes. */
  const write = (r: { resource: FakeResource; namespace?: string; name?: string; subresource?: string }, method: string, body: Obj | undefined, contentType: string, res: ServerResponse): void => {
    const store = stores[r.resource];
    const info = RESOURCES[r.resource];
    const key = `${info.namespaced ? r.namespace ?? '' : ''}/${r.name ?? ''}`;
    if (method === 'GET') {
      const found = store.objects.get(key);
      return found ? send(res, 200, found) : send(res, 404, notFound(r.resource, r.name ?? ''));
    }
    const failure = store.failures.write.shift();
    if (failure !== undefined) return send(res, failure, status(failure, failure >= 500 ? 'InternalError' : 'BadRequest', `injected failure ${failure}`));
    if (body === undefined) return send(res, 400, status(400, 'BadRequest', 'a body is required'));

    if (r.resource === 'identitymappings' && r.subresource === 'status' && method === 'PATCH') {
      if (!contentType.startsWith('application/merge-patch+json')) {
        return send(res, 415, status(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml`));
      }
      const prev = store.objects.get(key);
      if (!prev) return send(res, 404, notFound('identitymappings', r.name ?? ''));
      // The /status endpoint keeps everything but status as it was.
      const patched = mergePatch(prev, body) as Obj;
      if (patched.status !== undefined && !validateMappingStatus(patched.status)) {
        const causes = (validateMappingStatus.errors ?? []).map((e) => `status${e.instancePath.replace(/\//g, '.')}: ${e.message}`);
        return send(res, 422, status(422, 'Invalid', `IdentityMapping.tekton-zscaler.io "${r.name}" is invalid: ${causes.join(', ')}`));
      }
      rv++;
      const stored = { ...prev, status: patched.status, metadata: { ...prev.metadata, resourceVersion: String(rv) } };
      store.objects.set(key, stored);
      emit('identitymappings', 'MODIFIED', stored);
      return send(res, 200, stored);
    }

    if (r.resource === 'leases' && (method === 'POST' || method === 'PUT')) {
      const name = method === 'POST' ? body.metadata?.name : r.name;
      if (method === 'PUT' && body.metadata?.name !== r.name) return send(res, 400, status(400, 'BadRequest', 'the name of the object does not match the name on the URL'));
      if (body.metadata?.namespace !== undefined && body.metadata.namespace !== r.namespace) return send(res, 400, status(400, 'BadRequest', 'the namespace of the provided object does not match the namespace sent on the request'));
      for (const f of ['acquireTime', 'renewTime'] as const) {
        const v = body.spec?.[f];
        if (v !== undefined && (typeof v !== 'string' || !MICRO_TIME.test(v))) return send(res, 400, status(400, 'BadRequest', `spec.${f}: parsing time ${JSON.stringify(v)} as MicroTime`));
      }
      const k = `${r.namespace}/${name}`;
      const prev = store.objects.get(k);
      if (method === 'POST' && prev) return send(res, 409, status(409, 'AlreadyExists', `leases.coordination.k8s.io "${name}" already exists`));
      if (method === 'PUT') {
        if (!prev) return send(res, 404, notFound('leases', name));
        if (!body.metadata?.resourceVersion) return send(res, 422, status(422, 'Invalid', 'metadata.resourceVersion: Invalid value: 0x0: must be specified for an update'));
        if (body.metadata.resourceVersion !== prev.metadata.resourceVersion) {
          return send(res, 409, status(409, 'Conflict', `Operation cannot be fulfilled on leases.coordination.k8s.io "${name}": the object has been modified; please apply your changes to the latest version and try again`));
        }
      }
      rv++;
      const stored = {
        apiVersion: info.apiVersion, kind: info.kind, spec: body.spec ?? {},
        metadata: { name, namespace: r.namespace, uid: prev?.metadata.uid ?? `uid-${++uid}`, resourceVersion: String(rv), creationTimestamp: prev?.metadata.creationTimestamp ?? '2026-01-01T00:00:00Z' },
      };
      store.objects.set(k, stored);
      return send(res, method === 'POST' ? 201 : 200, stored);
    }

    if (r.resource === 'events' && method === 'POST' && r.name === undefined) {
      if (body.metadata?.namespace !== undefined && body.metadata.namespace !== r.namespace) return send(res, 400, status(400, 'BadRequest', 'the namespace of the provided object does not match the namespace sent on the request'));
      const involvedNs = body.involvedObject?.namespace ?? '';
      if (involvedNs === '' ? r.namespace !== 'default' : involvedNs !== r.namespace) {
        return send(res, 422, status(422, 'Invalid', `Event "${body.metadata?.name ?? body.metadata?.generateName}" is invalid: involvedObject.namespace: Invalid value: "${involvedNs}": does not match event.namespace`));
      }
      const name = body.metadata?.name ?? (body.metadata?.generateName ? `${body.metadata.generateName}${randomBytes(4).toString('hex').slice(0, 5)}` : undefined);
      if (typeof name !== 'string' || !DNS_SUBDOMAIN.test(name) || name.length > 253) {
        return send(res, 422, status(422, 'Invalid', `Event "${String(name)}" is invalid: metadata.name: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'`));
      }
      if (!body.involvedObject?.kind || !body.reason || !body.type) return send(res, 422, status(422, 'Invalid', 'Event is invalid: involvedObject.kind, reason and type are required'));
      rv++;
      const stored = { ...body, apiVersion: 'v1', kind: 'Event', metadata: { ...body.metadata, name, namespace: r.namespace, uid: `uid-${++uid}`, resourceVersion: String(rv) } };
      store.objects.set(`${r.namespace}/${name}`, stored);
      return send(res, 201, stored);
    }
    return send(res, 405, status(405, 'MethodNotAllowed', `${method} is not served for ${r.resource}${r.subresource ? `/${r.subresource}` : ''}`));
  };

  const server: Server = createServer({ cert: serving.certPem, key: serving.keyPem }, (req, res) => {
    if (authz.serve(req, res, new URL(req.url ?? '/', 'https://localhost'))) return;
    if (req.method === 'GET') return serve(req, res);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => serve(req, res, false, Buffer.concat(chunks).toString('utf8')));
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;

  /**
   * Forgets the history up to and including the current resourceVersion: a watch from an older one
   * gets 410; one from the current resourceVersion (what a list returns now) replays nothing and
   * stays open, as on a real API server after a compaction.
   */
  const compact = (resource: FakeResource): void => {
    stores[resource].history = [];
    stores[resource].compactedRv = rv;
  };

  const emit = (resource: FakeResource, type: Event['type'], object: Obj, silent = false): void => {
    const store = stores[resource];
    // A silent change is one no watcher sees: its history is compacted away.
    if (silent) return compact(resource);
    store.history.push({ rv, type, object });
    for (const w of store.watchers) writeEvent(w, type, object);
  };

  return {
    url,
    kubeConfig() {
      const kc = new KubeConfig();
      kc.loadFromOptions({
        clusters: [{ name: 'fake', server: url, caData: Buffer.from(ca.certPem).toString('base64') }],
        users: [{ name: 'u', token: TOKEN }],
        contexts: [{ name: 'fake', cluster: 'fake', user: 'u' }],
        currentContext: 'fake',
      });
      return kc;
    },
    upsert(resource, obj, opts) {
      const store = stores[resource];
      const info = RESOURCES[resource];
      if (info.namespaced && !obj.metadata?.namespace) throw new Error(`${resource} need metadata.namespace`);
      const key = keyOf(obj);
      const prev = store.objects.get(key);
      rv++;
      // Custom resources count spec changes in metadata.generation; with the status subresource,
      // writes to the main resource keep the status as it was.
      const custom = info.custom
        ? {
          generation: prev === undefined ? 1 : JSON.stringify(prev.spec) === JSON.stringify(obj.spec) ? prev.metadata.generation : prev.metadata.generation + 1,
        }
        : {};
      const rest: Obj = info.custom ? (({ status: _status, ...x }: Obj) => x)(obj) : obj;
      const stored: Obj = {
        apiVersion: info.apiVersion, kind: info.kind, ...rest,
        ...(info.custom && prev?.status !== undefined ? { status: prev.status } : {}),
        metadata: {
          ...obj.metadata,
          ...custom,
          uid: prev?.metadata.uid ?? `uid-${++uid}`,
          resourceVersion: String(rv),
          creationTimestamp: prev?.metadata.creationTimestamp ?? '2026-01-01T00:00:00Z',
          managedFields: [{ manager: 'kubectl', operation: 'Apply', apiVersion: info.apiVersion, fieldsType: 'FieldsV1', fieldsV1: { 'f:metadata': {} } }],
        },
      };
      store.objects.set(key, stored);
      emit(resource, prev ? 'MODIFIED' : 'ADDED', stored, opts?.silent);
      return stored;
    },
    remove(resource, name, namespace, opts) {
      const store = stores[resource];
      const key = `${namespace ?? ''}/${name}`;
      const prev = store.objects.get(key);
      if (!prev) throw new Error(`no ${resource} ${key}`);
      store.objects.delete(key);
      rv++;
      emit(resource, 'DELETED', { ...prev, metadata: { ...prev.metadata, resourceVersion: String(rv) } }, opts?.silent);
    },
    compact,
    failNext(resource, verb, code, times = 1) {
      for (let i = 0; i < times; i++) stores[resource].failures[verb].push(code);
    },
    hold(resource, verb) {
      stores[resource].failures[verb].push('hold');
    },
    release() {
      for (const answer of held.splice(0)) answer();
    },
    endWatches(resource, how) {
      const store = stores[resource];
      for (const w of store.watchers) {
        if (how === 'gone') writeEvent(w, 'ERROR', status(410, 'Expired', 'too old resource version'));
        w.res.end();
      }
      store.watchers.clear();
    },
    openWatches: (resource) => stores[resource].watchers.size,
    get: (resource, name, namespace) => stores[resource].objects.get(`${RESOURCES[resource].namespaced ? namespace ?? '' : ''}/${name}`),
    list: (resource) => [...stores[resource].objects.values()],
    failNextWrite(resource, code, times = 1) {
      for (let i = 0; i < times; i++) stores[resource].failures.write.push(code);
    },
    authz,
    caPem: ca.certPem,
    requests,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
