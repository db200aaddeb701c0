/**
 * The auditor's HTTP API, on its own listener:
 *   GET /api/v1/decisions        filters → {items, nextCursor}; ?format=jsonl|csv streams every match
 *   GET /api/v1/decisions/:id    one record, 404 when absent
 *   GET /api/v1/checkpoints      signed checkpoints (paged: limit, cursor; writer, latest) and retention anchors
 *   GET /api/v1/jwks             public keys that verify them (public: no token needed)
 *   GET /api/v1/export           the evidence bundle for a filter (the format of `tzw decisions export`)
 *   GET /api/v1/stats            filters + bucket=hour|day → aggregates counted by the store (Overview)
 *   GET /, /overview, /decisions/:id, /console/*   the auditor console (console.ts; pages without data)
 * Every other route needs a bearer token (auth.ts) unless auth mode is none. Errors are
 * `{code, message}` JSON. Filters are parsed by the one parser the CLI uses too (store/query.ts).
 */
import { Readable } from 'node:stream';
import rateLimit from '@fastify/rate-limit';
import Fastify, { LogController, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { SecureContextOptions } from 'node:tls';
import type { Logger } from 'pino';
import { DEFAULT_DOMAIN } from '../core/keys.js';
import type { ChainedRecord } from '../core/record.js';
import type { VerifiableStore } from '../store/port.js';
import { parseDecisionFilter, type FilterParams } from '../store/query.js';
import { parseCheckpointQuery, toCheckpointPage } from '../store/checkpoint-page.js';
import { createExportStream, EXPORT_FORMATS, type ExportFormat } from '../cli/output.js';
import type { KubeReviews } from '../kube/reviews.js';
import { authorize, AuthError, callerOf, createBearerAuth, createNoAuth, registerAuth, type AuditAuth } from './auth.js';
import { createKubernetesAuth } from './auth-kubernetes.js';
import { loadBundleLines } from '../store/evidence/bundle.js';
import { toNamespaceBundleLines } from '../store/evidence/namespace-bundle.js';
import { toNamespaceEvidenceSource, toNamespaceRange } from '../store/namespace-source.js';
import type { Jwks } from '../store/evidence/signing.js';
import { consoleRoutes } from './console.js';
import { parseStatsQuery } from '../store/stats.js';
import type { Metrics } from './metrics.js';
import { HANDSHAKE_TIMEOUT_MS, MIN_TLS_VERSION } from './tls.js';

/**
 * Limits of the audit listener (issue 13): it shares the event loop with admissions, so a slow or
 * abusive client must neither hold sockets forever nor queue unbounded work.
 */
export const AUDIT_LIMITS = {
  /** A TCP connection must finish its TLS handshake within this. */
  handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS,
  /** Whole request headers must arrive within this (slowloris); checked every checkIntervalMs. */
  headersTimeoutMs: 10_000,
  /** Whole request (GETs: headers only) must arrive within this. */
  requestTimeoutMs: 30_000,
  checkIntervalMs: 1_000,
  /** A socket with no traffic either way for this long is closed (also a stalled export reader). */
  idleTimeoutMs: 60_000,
  keepAliveTimeoutMs: 5_000,
  maxHeaderBytes: 16 * 1024,
  /** Every route is a GET: a body is never needed. */
  bodyLimitBytes: 16 * 1024,
  maxConnections: 256,
  /** Requests being answered at once (exports stream for a while); beyond it: 503 + Retry-After. */
  maxInFlight: 32,
  /**
   * Store reads (pages, exports) running at once; the others wait their turn (within maxInFlight).
   * Each read is synchronous SQLite work plus serialisation on the shared event loop: two lanes
   * leave room for admissions between their chunks.
   */
  readLanes: 2,
  /** Failed authentications (401) per client address and window before the address gets 429. */
  authFailures: 10,
  authFailureWindowMs: 60_000,
};
export type AuditLimits = typeof AUDIT_LIMITS;

/** A namespace as part of a download's file name: DNS-label characters only ('' → cluster). */
function toFileNamePart(namespace: string): string {
  return namespace === '' ? 'cluster' : namespace.replace(/[^A-Za-z0-9.-]/g, '_').slice(0, 63);
}

export const AUDIT_PATHS = {
  decisions: '/api/v1/decisions',
  decision: '/api/v1/decisions/:id',
  checkpoints: '/api/v1/checkpoints',
  jwks: '/api/v1/jwks',
  export: '/api/v1/export',
  stats: '/api/v1/stats',
} as const;

export interface AuditAuthConfig {
  mode: 'none' | 'oidc' | 'kubernetes';
  /** kubernetes: TokenReview spec.audiences (empty: the API server's). */
  audiences?: string[];
  issuer?: string;
  jwksUri?: string;
  audience?: string;
  group?: string;
  groupsClaim: string;
}

export interface AuditDeps {
  store: VerifiableStore;
  /** Public keys of the checkpoint/anchor signer(s), current first. */
  jwks: () => Jwks;
  auth: AuditAuthConfig;
  /** kubernetes mode: the TokenReview/SubjectAccessReview client (kube/reviews.ts). */
  kubeReviews?: KubeReviews;
  /** Label domain; the RBAC API group of the audit resources is `audit.<domain>`. */
  domain?: string;
  /** Epoch ms for the auth caches (tests move it); default Date.now. */
  now?: () => number;
  logger: Logger;
  metrics?: Pick<Metrics, 'auditAuthLockouts'>;
  /** Overrides of AUDIT_LIMITS (tests). */
  limits?: Partial<AuditLimits>;
  /** Serving certificate; absent in inject() tests. */
  https?: SecureContextOptions;
}

/** Query parameters of GET /decisions that are not filters. */
const NON_FILTER_PARAMS = ['format'] as const;

class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    /** Every problem found, for 400s (the message joins them too). */
    readonly problems?: string[],
  ) {
    super(message);
  }
}

function toQueryParams(query: unknown): FilterParams {
  return typeof query === 'object' && query !== null ? (query as FilterParams) : {};
}

/** `format` of GET /decisions: undefined for a JSON page, or an export format; errors are listed. */
function parseFormat(value: string | string[] | undefined, errors: string[]): ExportFormat | 'json' | undefined {
  if (value === undefined) return 'json';
  if (Array.isArray(value)) {
    errors.push(`format is given ${value.length} times; give it once`);
    return undefined;
  }
  if (value === 'json' || (EXPORT_FORMATS as readonly string[]).includes(value)) return value as ExportFormat | 'json';
  errors.push(`format "${value}" is not one of json, ${EXPORT_FORMATS.join(', ')}`);
  return undefined;
}

/**
 * Starts the iteration before the response is committed, so a store that fails at once (closed,
 * unreadable) still gets a clean 500 JSON answer; later failures can only cut the stream short.
 */
async function primed(source: AsyncIterable<ChainedRecord>): Promise<AsyncIterable<ChainedRecord>> {
  const it = source[Symbol.asyncIterator]();
  const first = await it.next();
  return {
    [Symbol.asyncIterator]() {
      let pendingFirst: IteratorResult<ChainedRecord> | undefined = first;
      return {
        next: () => {
          if (pendingFirst) {
            const r = pendingFirst;
            pendingFirst = undefined;
            return Promise.resolve(r);
          }
          return it.next();
        },
        return: async (value?: unknown) => {
          await it.return?.(value);
          return { done: true as const, value: undefined };
        },
      };
    },
  };
}

const EXPORT_CONTENT_TYPES: Record<ExportFormat, string> = {
  jsonl: 'application/x-ndjson; charset=utf-8',
  csv: 'text/csv; charset=utf-8',
};

/** The RBAC API group of the audit API's virtual resources (decisions, checkpoints). */
export function toAuditGroup(domain: string = DEFAULT_DOMAIN): string {
  return `audit.${domain}`;
}

function createAuditAuth(deps: AuditDeps): AuditAuth {
  const { auth, logger } = deps;
  if (auth.mode === 'none') return createNoAuth();
  if (auth.mode === 'kubernetes') {
    if (!deps.kubeReviews) throw Object.assign(new Error('audit API auth mode "kubernetes" needs a Kubernetes API client'), { code: 'ERR_AUTH_CONFIG' });
    return createKubernetesAuth({ reviews: deps.kubeReviews, audiences: auth.audiences ?? [], group: toAuditGroup(deps.domain), logger, ...(deps.now ? { now: deps.now } : {}) });
  }
  return createBearerAuth(
    { issuer: auth.issuer ?? '', jwksUri: auth.jwksUri ?? '', audience: auth.audience ?? '', group: auth.group ?? '', groupsClaim: auth.groupsClaim },
    logger,
  );
}

/**
 * Rate limits failed authentication in a scope: an address whose requests were answered 401
 * `limits.authFailures` times within the window is answered 429 for the rest of the window, before
 * any token is checked. Only failures are counted: `count` (@fastify/rate-limit's limiter) is fed
 * from onSend, and only for a 401 — whichever auth mode produced it. Register it before the auth hook.
 */
function registerFailedAuthLimit(
  scope: FastifyInstance,
  opts: { count: (req: FastifyRequest) => Promise<{ isAllowed: true } | { isAllowed: false; isExceeded: boolean; ttl: number }>; limits: AuditLimits; logger: Logger; onRefused: () => void },
): void {
  const MAX_TRACKED = 10_000;
  const lockedUntil = new Map<string, number>();
  const refused = new WeakSet<FastifyRequest>();
  scope.addHook('onRequest', async (req, reply) => {
    const until = lockedUntil.get(req.ip);
    if (until === undefined) return undefined;
    const left = until - Date.now();
    if (left <= 0) {
      lockedUntil.delete(req.ip);
      return undefined;
    }
    refused.add(req);
    opts.onRefused();
    return reply.code(429).header('retry-after', String(Math.ceil(left / 1000))).header('cache-control', 'no-store')
      .send({ code: 'ERR_TOO_MANY_AUTH_FAILURES', message: `too many failed authentications from this address; retry in ${Math.ceil(left / 1000)} s` });
  });
  // onSend runs before the answer leaves, so the next request from that address already sees the lock.
  scope.addHook('onSend', async (req, reply, payload) => {
    if (reply.statusCode !== 401 || refused.has(req)) return payload;
    const limit = await opts.count(req);
    if (limit.isAllowed || !limit.isExceeded) return payload;
    const now = Date.now();
    if (lockedUntil.size >= MAX_TRACKED) for (const [k, v] of lockedUntil) if (v <= now) lockedUntil.delete(k);
    if (lockedUntil.size < MAX_TRACKED) {
      lockedUntil.set(req.ip, now + limit.ttl);
      opts.logger.warn({ audit: { remoteAddress: req.ip, failures: opts.limits.authFailures, windowSeconds: opts.limits.authFailureWindowMs / 1000 } }, 'audit API: too many failed authentications; address refused for the rest of the window');
    }
    return payload;
  });
}

/**
 * Builds the audit API (never listens: the server does, tests use inject()). Throws ERR_AUTH_CONFIG
 * when auth mode is oidc and an option is missing. The loopback-only rule for mode none is the
 * config loader's: the listen address is not known here.
 */
export async function buildAuditApp(deps: AuditDeps): Promise<FastifyInstance> {
  const { store, logger } = deps;
  const L: AuditLimits = { ...AUDIT_LIMITS, ...deps.limits };
  // node:http options; the https server takes them as well (fastify passes `https` through).
  const httpLimits = { headersTimeout: L.headersTimeoutMs, connectionsCheckingInterval: L.checkIntervalMs, maxHeaderSize: L.maxHeaderBytes };
  const app = Fastify({
    ...(deps.https
      ? { https: { ...deps.https, minVersion: MIN_TLS_VERSION, handshakeTimeout: L.handshakeTimeoutMs, ...httpLimits } }
      : { http: httpLimits }),
    requestTimeout: L.requestTimeoutMs,
    connectionTimeout: L.idleTimeoutMs,
    keepAliveTimeout: L.keepAliveTimeoutMs,
    bodyLimit: L.bodyLimitBytes,
    loggerInstance: logger,
    // Our own onResponse line replaces fastify's request logging (it adds the caller).
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
  }) as unknown as FastifyInstance;
  app.server.maxConnections = L.maxConnections;

  // Requests in flight, across the listener; an export holds its slot until its stream ends.
  let inFlight = 0;
  app.addHook('onRequest', async (_req, reply) => {
    if (inFlight >= L.maxInFlight) {
      return reply.code(503).header('retry-after', '5').send({ code: 'ERR_BUSY', message: `the audit API is answering ${L.maxInFlight} requests already; retry shortly` });
    }
    inFlight += 1;
    reply.raw.once('close', () => (inFlight -= 1));
    return undefined;
  });

  // Store reads take a lane (after auth, so an unauthenticated client never holds one).
  let lanesFree = L.readLanes;
  const waiting: Array<() => void> = [];
  const takeLane = (reply: FastifyReply): Promise<void> => new Promise<void>((resolve) => {
    const grant = (): void => {
      // Its client left while it waited: no lane to hold (a 'close' already fired would never free it).
      if (reply.raw.socket === null || reply.raw.socket.destroyed) {
        waiting.shift()?.();
        resolve();
        return;
      }
      lanesFree -= 1;
      reply.raw.once('close', () => {
        lanesFree += 1;
        waiting.shift()?.();
      });
      resolve();
    };
    if (lanesFree > 0) grant();
    else waiting.push(grant);
  });

  // Failed authentication is rate limited per client address with @fastify/rate-limit's counter,
  // fed only 401s: an auditor with a valid token is never slowed, a token guesser is cut off.
  await app.register(rateLimit, { global: false });
  const countAuthFailure = app.createRateLimit({ max: L.authFailures, timeWindow: L.authFailureWindowMs, keyGenerator: (req) => req.ip });
  const auth = createAuditAuth(deps);

  app.setErrorHandler((err: FastifyError | HttpError | AuthError, req, reply) => {
    if (err instanceof AuthError) return reply.code(err.statusCode).headers(err.headers).send(err.toBody());
    if (err instanceof HttpError) return reply.code(err.statusCode).send({ code: err.code, message: err.message, ...(err.problems ? { problems: err.problems } : {}) });
    const status = typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    if (status < 500) return reply.code(status).send({ code: err.code ?? 'ERR_BAD_REQUEST', message: err.message });
    req.log.error({ err: { code: (err as { code?: string }).code, message: err.message, stack: err.stack } }, 'audit API request failed');
    return reply.code(500).send({ code: 'ERR_INTERNAL', message: 'internal error while reading the decision store; see the server log' });
  });
  app.setNotFoundHandler((req, reply) => reply.code(404).send({ code: 'ERR_NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}` }));

  // Access to audit evidence is itself worth recording: one line per request, with the caller.
  app.addHook('onResponse', async (req: FastifyRequest, reply: FastifyReply) => {
    logger.info(
      { audit: { sub: callerOf(req)?.sub ?? null, method: req.method, path: req.url.split('?')[0], status: reply.statusCode, ms: Math.round(reply.elapsedTime) } },
      'audit API request',
    );
  });

  await app.register(consoleRoutes);

  app.get(AUDIT_PATHS.jwks, async (_req, reply) => {
    reply.header('cache-control', 'public, max-age=300');
    return deps.jwks();
  });

  await app.register(async (scope) => {
    registerFailedAuthLimit(scope, { count: countAuthFailure, limits: L, logger, onRefused: () => deps.metrics?.auditAuthLockouts.inc() });
    registerAuth(scope, auth, logger);
    scope.addHook('preHandler', async (_req, reply) => takeLane(reply));
    scope.addHook('onSend', async (_req, reply, payload) => {
      reply.header('cache-control', 'no-store');
      return payload;
    });

    scope.get(AUDIT_PATHS.decisions, async (req, reply) => {
      const params = { ...toQueryParams(req.query) };
      const errors: string[] = [];
      const format = parseFormat(params.format, errors);
      const parsed = parseDecisionFilter(params, { ignore: NON_FILTER_PARAMS });
      if (!parsed.ok) errors.push(...parsed.errors);
      if (format !== 'json' && format !== undefined) {
        for (const k of ['limit', 'cursor'] as const) {
          if (params[k] !== undefined) errors.push(`${k} does not apply to format=${format}: an export streams every matching record`);
        }
      }
      if (errors.length || !parsed.ok || format === undefined) {
        throw new HttpError(400, 'ERR_BAD_FILTER', `invalid query: ${errors.join('; ')}`, errors);
      }
      await authorize(req, { verb: 'list', resource: 'decisions', namespace: parsed.filter.namespace ?? '' });
      if (format === 'json') return store.query(parsed.filter);
      const { limit: _limit, cursor: _cursor, ...scan } = parsed.filter;
      const records = await primed(store.stream(scan));
      const body = createExportStream(records, format);
      body.on('error', (err) => req.log.error({ err: { message: err.message } }, 'decision export stream failed; the response was cut short'));
      return reply
        .header('content-type', EXPORT_CONTENT_TYPES[format])
        .header('content-disposition', `attachment; filename="decisions.${format}"`)
        .send(body);
    });

    scope.get<{ Params: { id: string } }>(AUDIT_PATHS.decision, async (req) => {
      // An id longer than fastify's maxParamLength (100) never gets here: 414 FST_ERR_MAX_PARAM_LENGTH.
      const { id } = req.params;
      const record = await store.get(id);
      // Authorized against the record's own namespace, so it can only be checked after the read. A
      // missing id is a 404 for any authenticated caller: ids are UUIDv7 with 74 random bits, so
      // telling "absent" from "not yours" (403) reveals nothing guessable.
      if (!record) throw new HttpError(404, 'ERR_NOT_FOUND', `no decision with id ${JSON.stringify(id)}`);
      await authorize(req, { verb: 'get', resource: 'decisions', namespace: record.namespace });
      return record;
    });

    // The bundle for a filter, exactly as `tzw decisions export` writes it: complete (verifiable as
    // a chain) when unfiltered; a namespace bundle (provably complete for that namespace, nothing of
    // any other) when the filter is one namespace with an optional since/until; else marked
    // incomplete. One renderer each (loadBundleLines, toNamespaceBundleLines).
    scope.get(AUDIT_PATHS.export, async (req, reply) => {
      const params = toQueryParams(req.query);
      const errors: string[] = [];
      for (const k of ['limit', 'cursor'] as const) {
        if (params[k] !== undefined) errors.push(`${k} does not apply to an export: it holds every matching record`);
      }
      const parsed = parseDecisionFilter(params);
      if (!parsed.ok) errors.push(...parsed.errors);
      if (errors.length || !parsed.ok) throw new HttpError(400, 'ERR_BAD_FILTER', `invalid query: ${errors.join('; ')}`, errors);
      await authorize(req, { verb: 'list', resource: 'decisions', namespace: parsed.filter.namespace ?? '' });
      const { limit: _limit, cursor: _cursor, ...filter } = parsed.filter;
      // One namespace (and a time range): the namespace bundle its auditor can prove complete.
      const range = toNamespaceRange(filter);
      const lines = range ? toNamespaceBundleLines(toNamespaceEvidenceSource(store), range, deps.jwks(), new Date().toISOString()) : loadBundleLines(store, filter, deps.jwks());
      // The header line needs the checkpoints: a store that fails at once still gets a clean 500.
      const first = await lines.next();
      const body = Readable.from(
        (async function* () {
          if (!first.done) yield first.value + '\n';
          for await (const line of lines) yield line + '\n';
        })(),
      );
      body.on('error', (err) => req.log.error({ err: { message: err.message } }, 'bundle export stream failed; the response was cut short'));
      const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
      return reply
        .header('content-type', 'application/x-ndjson; charset=utf-8')
        .header('content-disposition', `attachment; filename="${range ? `tzw-namespace-${toFileNamePart(range.namespace)}` : 'tzw-decisions'}-${stamp}.jsonl"`)
        .send(body);
    });

    // The Overview's numbers: GROUP BY in the store (loadStats), never records shipped to the browser.
    scope.get(AUDIT_PATHS.stats, async (req) => {
      const parsed = parseStatsQuery(toQueryParams(req.query));
      if (!parsed.ok) throw new HttpError(400, 'ERR_BAD_FILTER', `invalid query: ${parsed.errors.join('; ')}`, parsed.errors);
      await authorize(req, { verb: 'list', resource: 'decisions', namespace: parsed.filter.namespace ?? '' });
      return store.loadStats(parsed.filter, parsed.bucket);
    });

    scope.get(AUDIT_PATHS.checkpoints, async (req) => {
      const parsed = parseCheckpointQuery(toQueryParams(req.query));
      if (!parsed.ok) throw new HttpError(400, 'ERR_BAD_FILTER', `invalid query: ${parsed.errors.join('; ')}`, parsed.errors);
      await authorize(req, { verb: 'list', resource: 'checkpoints', namespace: '' });
      const { request } = parsed;
      // Retention anchors are few (one per writer and prune): they come with the first page.
      const [page, anchors] = await Promise.all([
        store.checkpointPage ? store.checkpointPage(request) : store.checkpoints().then((all) => toCheckpointPage(all, request)),
        request.after ? Promise.resolve([]) : store.anchors(),
      ]);
      return { items: page.items, anchors: request.writer === undefined ? anchors : anchors.filter((a) => a.writer === request.writer), nextCursor: page.nextCursor };
    });
  });

  return app;
}
