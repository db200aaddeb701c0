/**
 * The admission routes: gather (in-memory facts) → decide (pure core) → record (store, durable before
 * the response) → render (the one renderer). Thin: no policy lives here.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { decideAdmission } from '../core/admit.js';
import type { Facts } from '../core/mapping.js';
import type { DecideOptions } from '../core/options.js';
import { reason, type ReasonCode } from '../core/reasons.js';
import { formatMicros, toRecord, type DecisionRecord, type Endpoint } from '../core/record.js';
import { errored, rejected, type Decision } from '../core/verdict.js';
import { parseAdmissionReview, renderReview, type AdmissionRequest, type AdmissionReviewResponse } from '../core/wire.js';
import { PATHS } from '../config/schema.js';
import type { AppendOptions, AppendSignal, DecisionStore } from '../store/port.js';
import { isCanonicalOrder } from '../store/evidence/canonical.js';
import { toDigestOfReview } from '../store/evidence/object-digest.js';
import type { Metrics } from './metrics.js';

export interface AdmissionDeps {
  facts: Facts;
  /** False until namespaces, ServiceAccounts and IdentityMappings are loaded. */
  sourceSynced: () => boolean;
  store: Pick<DecisionStore, 'append'>;
  options: DecideOptions;
  logger: Logger;
  metrics: Metrics;
  /** UUIDv7 source (injected so tests are deterministic). */
  newId: () => string;
  /** Epoch microseconds. */
  nowMicros: () => bigint;
  replica: string;
  deadlineMs: number;
  /**
   * Told about every recorded decision after it is durable (events.onDenial). Must only enqueue:
   * it runs on the request path.
   */
  onDecision?: (rec: DecisionRecord) => void;
}

/** Where the admission routes' JSON parser leaves the raw body (until the handler has digested it). */
const RAW_BODY = Symbol('tzw raw body');
type RawBodyRequest = FastifyRequest & { [RAW_BODY]?: Buffer | undefined };

function rawBodyOf(request: FastifyRequest): Buffer | undefined {
  return (request as RawBodyRequest)[RAW_BODY];
}

class DeadlineError extends Error {
  code = 'ERR_STORE_DEADLINE';
}

/** One append's cancellation: a flag and the store's listener (what an AbortController gives, without its EventTarget). */
class DeadlineSignal implements AppendSignal {
  aborted = false;
  private listeners: Array<() => void> | undefined;
  addEventListener(_type: 'abort', listener: () => void): void {
    (this.listeners ??= []).push(listener);
  }
  abort(): void {
    this.aborted = true;
    for (const listener of this.listeners ?? []) listener();
  }
}

/**
 * Appends within `ms`. When the deadline passes first, the append is cancelled if the writer has
 * not taken it into a transaction yet (the store then rejects with ERR_STORE_CANCELLED: nothing
 * was stored); otherwise this rejects with ERR_STORE_DEADLINE while the commit may still land.
 * One timer per append; no AbortController and no Promise.race (~7 µs less per request).
 */
function appendWithin(store: Pick<DecisionStore, 'append'>, rec: DecisionRecord, opts: AppendOptions, ms: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const signal = new DeadlineSignal();
    const timer = setTimeout(() => {
      // A cancelled append rejects synchronously inside abort(), which queues its rejection first:
      // the deadline's own rejection, queued after it, then changes nothing.
      signal.abort();
      queueMicrotask(() => reject(new DeadlineError(`the decision store did not commit within ${ms} ms`)));
    }, ms);
    // The caller's options object is this append's own: the signal is set on it, not spread into a copy.
    opts.signal = signal;
    store.append(rec, opts).then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

/**
 * The rendered review as JSON text, built by hand so the base64 patch (kilobytes, and never in
 * need of escaping) is not rescanned by JSON.stringify; every other value goes through
 * JSON.stringify. Same bytes as JSON.stringify(review) (key order as renderReview builds it).
 */
export function toReviewJson(review: AdmissionReviewResponse): string {
  const r = review.response;
  let out = `{"apiVersion":${JSON.stringify(review.apiVersion)},"kind":${JSON.stringify(review.kind)},"response":{"uid":${JSON.stringify(r.uid)},"allowed":${r.allowed}`;
  if (r.auditAnnotations) out += `,"auditAnnotations":${JSON.stringify(r.auditAnnotations)}`;
  if (r.status) out += `,"status":${JSON.stringify(r.status)}`;
  if (r.patch !== undefined) out += `,"patch":"${r.patch}","patchType":${JSON.stringify(r.patchType)}`;
  if (r.warnings) out += `,"warnings":${JSON.stringify(r.warnings)}`;
  return out + '}}';
}

/** Registers POST /validate and POST /mutate. */
export async function admissionRoutes(app: FastifyInstance, deps: AdmissionDeps): Promise<void> {
  const { logger, metrics } = deps;
  // Label lookups once, not per request; one performance.now() pair instead of startTimer().
  const admissionSeconds = { validate: metrics.admissionSeconds.labels({ endpoint: 'validate' }), mutate: metrics.admissionSeconds.labels({ endpoint: 'mutate' }) };
  const storeWrite = metrics.storeWriteSeconds;
  // Decision lines carry ids, names and reason codes only, never a secret, so they skip the
  // process logger's wildcard redaction (`*.token` etc. cost ~13 µs per line); the explicit
  // authorization header path stays.
  const decisionLog = logger.child({}, { redact: { paths: ['req.headers.authorization'], censor: '[redacted]' } });

  /** Logs one line, writes the record (unless dry run), then counts it. Throws only ERR_STORE_*. */
  async function record(rec: DecisionRecord, decision: Decision, extra: Pick<AppendOptions, 'patchJson'> = {}): Promise<void> {
    const warn = decision.verdict === 'errored' || decision.verdict === 'rejected';
    // Build the log line only when the level is on (at info it always is in production).
    if (decisionLog.isLevelEnabled(warn ? 'warn' : 'info')) {
      const line = {
        decision: {
          id: rec.id, endpoint: rec.endpoint, verdict: rec.verdict, requestUid: rec.requestUid,
          kind: rec.kind.kind, namespace: rec.namespace, name: rec.name, user: rec.user.username,
          serviceAccounts: rec.serviceAccounts, mode: rec.mode, reasons: rec.reasons.map((r) => r.code),
          mapping: rec.mapping?.name, policyTags: rec.policyTags, ops: rec.patch.length, dryRun: rec.dryRun,
          durationMs: rec.durationMs,
        },
      };
      if (warn) decisionLog.warn(line, decision.message);
      else decisionLog.info(line, 'admission decision');
    }
    if (!rec.dryRun) {
      const t0 = performance.now();
      await appendWithin(deps.store, rec, extra, deps.deadlineMs);
      storeWrite.observe((performance.now() - t0) / 1000);
    }
    // Counted once the verdict stands: a failed write turns it into `errored`, counted by the caller.
    metrics.decisions.inc({ endpoint: rec.endpoint, verdict: rec.verdict, namespace: rec.namespace });
  }

  function meta(id: string, endpoint: Endpoint, started: bigint, objectDigest: string | null = null) {
    return {
      id, endpoint, replica: deps.replica, objectDigest,
      time: formatMicros(started), durationMs: Number(deps.nowMicros() - started) / 1000,
    };
  }

  async function handle(endpoint: Endpoint, request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
    const t0 = performance.now();
    const started = deps.nowMicros();
    const parsed = parseAdmissionReview(request.body);
    const id = deps.newId();
    if (!parsed.ok) {
      await recordRejection(endpoint, started, id, parsed.message, parsed.uid);
      admissionSeconds[endpoint].observe((performance.now() - t0) / 1000);
      return reply.code(400).send({ code: 'REVIEW_MALFORMED', message: `invalid AdmissionReview: ${parsed.message}`, decisionId: id });
    }
    const req: AdmissionRequest = parsed.review.request;
    // objectDigest (RFC 8785 of request.object) from the raw body, natively; the emitter on the
    // parsed object when the addon declines. Here rather than on the writer thread, which would
    // need the body sent and parsed again there.
    const objectDigest = toDigestOfReview(rawBodyOf(request), req.object);
    let decision: Decision;
    if (!deps.sourceSynced()) {
      decision = errored([reason('SOURCE_NOT_SYNCED')], 'tekton-zscaler-webhook is starting: namespaces, ServiceAccounts and IdentityMappings are not loaded yet; retry shortly');
    } else {
      try {
        decision = decideAdmission(endpoint, req, deps.facts, deps.options, id);
      } catch (err) {
        // A bug, not a denial: fail closed, keep the uid so the API server can match the response.
        logger.error({ err, requestUid: req.uid }, 'decision core threw');
        decision = errored([reason('INTERNAL_ERROR', `internal error in tekton-zscaler-webhook (decision ${id})`)], `internal error in tekton-zscaler-webhook; decision ${id}`);
      }
    }
    const rec = toRecord(meta(id, endpoint, started, objectDigest), decision, req);
    // Let go of the parsed review (request.object is most of it) before awaiting the commit: what
    // follows needs only these fields (toRecord of the deadline path reads the name from `name`).
    // Otherwise every request in flight holds its pod through the scavenges that run meanwhile,
    // which then copy and promote it. (parseAdmissionReview built `req` for this request alone, so
    // it is changed in place rather than copied.)
    req.object = null;
    if (req.oldObject != null) req.oldObject = null;
    req.name = rec.name;
    request.body = undefined;
    (request as RawBodyRequest)[RAW_BODY] = undefined;
    // The patch serialised once, for the response and (its keys being in canonical order, as the
    // core builds them) as the record's canonical patch for the store's hash: no second walk.
    // The core usually hands it over already joined from its fragments' texts (Decision.patchJson).
    const patchJson = decision.patch.length > 0 ? (decision.patchJson ?? JSON.stringify(decision.patch)) : undefined;
    const extra: Pick<AppendOptions, 'patchJson'> = {};
    if (patchJson !== undefined && (decision.patchJson !== undefined || isCanonicalOrder(decision.patch))) extra.patchJson = patchJson;
    let answerId = id;
    try {
      await record(rec, decision, extra);
      deps.onDecision?.(rec);
    } catch (err) {
      const code = (err as { code?: string }).code ?? 'ERR_STORE_UNAVAILABLE';
      const keep = { serviceAccounts: decision.serviceAccounts, tekton: decision.tekton, ...(decision.mode ? { mode: decision.mode } : {}) };
      if (code === 'ERR_STORE_CANCELLED' || code === 'ERR_STORE_DEADLINE') {
        // The deadline answers `errored`; the record on file must say the same (RECORD-V2.md,
        // "Deadline"). Cancelled: nothing was stored, so the errored record takes the same id.
        // Too late to cancel: the record may still commit, so a new errored record follows it in
        // the chain and names it in `supersedes`. Either is written when the writer catches up.
        const cancelled = code === 'ERR_STORE_CANCELLED';
        answerId = cancelled ? id : deps.newId();
        decision = errored([reason('STORE_DEADLINE', cancelled
          ? `the decision store did not commit decision ${id} within ${deps.deadlineMs} ms; it was cancelled before commit`
          : `the decision store did not commit decision ${id} within ${deps.deadlineMs} ms; this record supersedes it`)],
        `tekton-zscaler-webhook could not record the decision within ${deps.deadlineMs} ms, so the request is refused; retry later`, keep);
        logger.error({ err: { code, message: (err as Error).message }, decisionId: id, answerId, requestUid: req.uid }, 'decision record not committed within the deadline; failing closed');
        const answer: DecisionRecord = { ...toRecord(meta(answerId, endpoint, started, objectDigest), decision, req), ...(cancelled ? {} : { supersedes: id }) };
        if (!answer.dryRun) {
          deps.store.append(answer).catch((e: Error) => {
            logger.error({ err: { code: (e as { code?: string }).code, message: e.message }, decisionId: answerId, supersedes: cancelled ? undefined : id }, 'errored record after the deadline not written');
          });
        }
      } else {
        logger.error({ err: { code, message: (err as Error).message }, decisionId: id, requestUid: req.uid }, 'decision record not written; failing closed');
        decision = errored([reason('STORE_UNAVAILABLE', `the decision store could not record decision ${id} (${code}): ${(err as Error).message}`)],
          `tekton-zscaler-webhook could not record the decision durably (${code}: ${(err as Error).message}), so the request is refused; retry later`, keep);
      }
      metrics.decisions.inc({ endpoint, verdict: 'errored', namespace: req.namespace ?? '' });
    }
    admissionSeconds[endpoint].observe((performance.now() - t0) / 1000);
    return reply.type('application/json; charset=utf-8').send(toReviewJson(renderReview(req.uid, decision, answerId, decision.patch.length > 0 ? patchJson : undefined)));
  }

  async function recordRejection(endpoint: Endpoint, started: bigint, id: string, message: string, uid: string | undefined, code: ReasonCode = 'REVIEW_MALFORMED'): Promise<void> {
    const decision = rejected([reason(code, message)], message);
    const rec = toRecord(meta(id, endpoint, started), decision, undefined, uid ?? '');
    try {
      await record(rec, decision);
    } catch (err) {
      // The 4xx answer stands whether or not its record was written: count it here, once.
      logger.error({ err: { code: (err as { code?: string }).code, message: (err as Error).message }, decisionId: id }, 'rejected-input record not written');
      metrics.decisions.inc({ endpoint, verdict: 'rejected', namespace: rec.namespace });
    }
  }

  // Body-level failures (bad JSON, wrong content type, too large) never reach the handler: answer
  // them here with a clear message and still record a `rejected` decision.
  app.setErrorHandler(async (err: FastifyError, request, reply) => {
    const endpoint: Endpoint | undefined = request.url.startsWith(PATHS.validate) ? 'validate' : request.url.startsWith(PATHS.mutate) ? 'mutate' : undefined;
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    const code: ReasonCode = err.code === 'FST_ERR_CTP_BODY_TOO_LARGE' ? 'REVIEW_TOO_LARGE' : status < 500 ? 'REVIEW_MALFORMED' : 'INTERNAL_ERROR';
    const message = status < 500 ? `invalid AdmissionReview: ${err.message}` : 'internal error';
    if (status >= 500) logger.error({ err }, 'unhandled error in admission route');
    let decisionId: string | undefined;
    if (endpoint) {
      decisionId = deps.newId();
      await recordRejection(endpoint, deps.nowMicros(), decisionId, message, undefined, code);
    }
    return reply.code(status).send({ code, message, ...(decisionId ? { decisionId } : {}) });
  });

  // AdmissionReviews are JSON only; fastify's default text/plain parser would let text through.
  app.removeContentTypeParser('text/plain');
  // fastify's own JSON parser (same limits, same prototype-poisoning refusal), given the bytes as
  // received and keeping them for objectDigest.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    (request as RawBodyRequest)[RAW_BODY] = body as Buffer;
    parseJson(request, (body as Buffer).toString('utf8'), done);
  });
  app.post(PATHS.validate, (request, reply) => handle('validate', request, reply));
  app.post(PATHS.mutate, (request, reply) => handle('mutate', request, reply));
}
