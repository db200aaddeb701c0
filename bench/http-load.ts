/**
 * HTTP load with autocannon (HTTPS, keep-alive, fixed connection count) and one-off probes.
 * Latencies are taken from autocannon's per-response events at full precision: its own histogram
 * keeps whole milliseconds, too coarse for a 5 ms p99 budget.
 *
 * With `expect`, every answer is checked (its verdict, so an `errored` answer never counts as
 * throughput) and the decision id of each expected answer is kept, so the caller can check that
 * the store holds a record for each one. Only expected answers count in rps, latencies and `ok`.
 */
import { Agent, request } from 'node:https';
// autocannon ships no types; the part used here is typed below.
// @ts-expect-error no declaration file for 'autocannon'
import autocannonUntyped from 'autocannon';
import { percentile } from './stats.js';

interface AutocannonResult {
  duration: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  totalCompletedRequests: number;
}
interface AutocannonInstance {
  on(event: 'response', fn: (client: unknown, statusCode: number, resBytes: number, responseTimeMs: number) => void): void;
}
type Autocannon = (opts: Record<string, unknown>, cb: (err: Error | null, result: AutocannonResult) => void) => AutocannonInstance;
const autocannon = autocannonUntyped as Autocannon;

export interface LoadResult {
  rps: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  /** 2xx responses that were what `expect` wanted (all 2xx without `expect`). */
  ok: number;
  /** 2xx responses `expect` refused (e.g. verdict errored instead of patched): any is a failed run. */
  unexpected: number;
  /** Decision ids of the expected answers (empty without `expect`). */
  ids: string[];
  /** Non-2xx responses, socket errors and timeouts: any is a failed run. */
  failed: number;
  seconds: number;
}

export interface LoadOptions {
  port: number;
  path: string;
  body: string;
  connections: number;
  seconds: number;
  /** Offered load in requests/s over all connections (autocannon overallRate); unset = as fast as possible. */
  rate?: number;
  /** Checks one 2xx answer body: the decision id when it is the expected answer, else undefined. */
  expect?: (body: string) => string | undefined;
}

const DECISION_ID_KEY = '"auditAnnotations":{"decision-id":"';
const UUID_LENGTH = 36;

/**
 * An `expect` for the webhook's AdmissionReview answers: allowed, with this verdict in the audit
 * annotations. A substring check of the one renderer's output (webhook/http/admission.ts
 * toReviewJson: `"allowed":true,"auditAnnotations":{"decision-id":"<id>","verdict":"<v>"}`), not
 * a JSON.parse: the client shares the cores with the server, and parsing every 10 kB answer would
 * cost the server measurable CPU. bench/run.ts checks it against fully parsed probe answers first.
 */
export function expectVerdict(verdict: string): (body: string) => string | undefined {
  const tail = `","verdict":"${verdict}"}`;
  return (body) => {
    const at = body.indexOf(`"allowed":true,${DECISION_ID_KEY}`);
    if (at < 0) return undefined;
    const idAt = at + '"allowed":true,'.length + DECISION_ID_KEY.length;
    if (!body.startsWith(tail, idAt + UUID_LENGTH)) return undefined;
    return body.slice(idAt, idAt + UUID_LENGTH);
  };
}

/** Latency percentiles of the first `n` latencies (sorted here) with the counts of one run. */
function toLoadResult(latencies: Float64Array, n: number, seconds: number, counts: Pick<LoadResult, 'unexpected' | 'ids' | 'failed'>): LoadResult {
  const sorted = latencies.subarray(0, n).sort();
  return {
    rps: n / seconds,
    p50Ms: percentile(sorted, 0.5),
    p90Ms: percentile(sorted, 0.9),
    p99Ms: percentile(sorted, 0.99),
    maxMs: n > 0 ? sorted[n - 1]! : NaN,
    ok: n,
    ...counts,
    seconds,
  };
}

/** Runs autocannon against https://127.0.0.1:port/path for `seconds` and summarises it. */
export function runLoad(o: LoadOptions): Promise<LoadResult> {
  // Sized for ~20k responses/s; grows if needed.
  let latencies = new Float64Array(Math.max(1024, o.seconds * 20_000));
  let n = 0;
  let unexpected = 0;
  const ids: string[] = [];
  /** Latency of the 2xx answer whose body verifyBody is about to see (NaN: not a 2xx). */
  let pendingMs = NaN;
  const record = (ms: number): void => {
    if (n === latencies.length) {
      const grown = new Float64Array(latencies.length * 2);
      grown.set(latencies);
      latencies = grown;
    }
    latencies[n++] = ms;
  };
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: `https://127.0.0.1:${o.port}${o.path}`,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: o.body,
        connections: o.connections,
        pipelining: 1,
        duration: o.seconds,
        timeout: 10,
        ...(o.rate ? { overallRate: o.rate } : {}),
        // autocannon calls verifyBody right after it emits 'response' for the same answer, in one
        // synchronous step (lib/httpClient.js kOnMessageComplete), so pendingMs is this answer's.
        ...(o.expect
          ? {
              verifyBody: (body: string) => {
                if (!Number.isNaN(pendingMs)) {
                  const id = o.expect!(body);
                  if (id === undefined) unexpected++;
                  else {
                    record(pendingMs);
                    ids.push(id);
                  }
                }
                pendingMs = NaN;
                return true;
              },
            }
          : {}),
      },
      (err, result) => {
        if (err) return reject(err);
        resolve(toLoadResult(latencies, n, result.duration, { unexpected, ids, failed: result.non2xx + result.errors + result.timeouts }));
      },
    );
    instance.on('response', (_client, statusCode, _bytes, ms) => {
      if (statusCode < 200 || statusCode >= 300) return;
      if (o.expect) pendingMs = ms;
      else record(ms);
    });
  });
}

/** One POST over HTTPS, trusting only `caPem`; resolves with the status, the parsed JSON body and the raw text. */
export function postJson(port: number, path: string, body: string, caPem: string): Promise<{ status: number; json: unknown; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path, method: 'POST', ca: caPem, servername: 'localhost', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          try {
            const text = Buffer.concat(chunks).toString('utf8');
            resolve({ status: res.statusCode ?? 0, json: JSON.parse(text), text });
          } catch (err) {
            reject(new Error(`POST ${path}: the response is not JSON: ${(err as Error).message}`));
          }
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Open-loop load at a fixed rate: request i is due at start + i / rate (evenly spaced, as
 * independent callers such as an API server's arrive), sent on a free keep-alive connection of a
 * pool of `connections` (queued in the agent when all are busy), and its latency is taken from the
 * time it was DUE, not from when it left: a server that stalls is charged for every request that
 * waited behind the stall (no coordinated omission).
 *
 * autocannon's `overallRate` is not this: each connection may send rate/connections requests per
 * second and then waits for the next whole second (lib/httpClient.js, a 1 s setInterval resets the
 * count), so at the top of every second all connections fire back to back — a burst at full
 * concurrency, whose latency is the saturated latency (≈ connections × service time) however low
 * the average rate is. The bench reports both; this is the one its fixed-rate targets use.
 */
export function runPacedLoad(o: LoadOptions & { rate: number; ca: string; warmupSeconds?: number }): Promise<LoadResult> {
  // The first `warmup` requests run on the same connections but are not measured: they open the
  // keep-alive connections and warm this client's own HTTPS path, which would otherwise be charged
  // to the server under test (a cold client showed a 59 ms p99 against the bare baseline where a
  // warm one showed 4.8 ms).
  const warmup = Math.round(o.rate * (o.warmupSeconds ?? 2));
  const measured = Math.max(1, Math.round(o.rate * o.seconds));
  const total = warmup + measured;
  const interval = 1000 / o.rate;
  const agent = new Agent({ keepAlive: true, maxSockets: o.connections, ca: o.ca, servername: 'localhost' });
  const latencies = new Float64Array(measured);
  const ids: string[] = [];
  let n = 0;
  let unexpected = 0;
  let failed = 0;
  let settled = 0;
  let sent = 0;
  const body = Buffer.from(o.body);
  return new Promise((resolve) => {
    const start = performance.now() + 5;
    const measuredFrom = start + warmup * interval;
    const finish = (): void => {
      agent.destroy();
      resolve(toLoadResult(latencies, n, (performance.now() - measuredFrom) / 1000, { unexpected, ids, failed }));
    };
    const done = (): void => {
      if (++settled === total) finish();
    };
    const send = (due: number, counted: boolean): void => {
      const req = request(
        { host: '127.0.0.1', port: o.port, path: o.path, method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': body.length }, timeout: 10_000 },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const ms = performance.now() - due;
            const status = res.statusCode ?? 0;
            // Warm-up answers are checked too, but neither timed nor counted.
            if (status < 200 || status >= 300) failed++;
            else if (o.expect) {
              const id = o.expect(Buffer.concat(chunks).toString('utf8'));
              if (id === undefined) unexpected++;
              else if (counted) {
                latencies[n++] = ms;
                ids.push(id);
              }
            } else if (counted) latencies[n++] = ms;
            done();
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', () => {
        failed++;
        done();
      });
      req.end(body);
    };
    const tick = (): void => {
      const now = performance.now();
      while (sent < total && start + sent * interval <= now) {
        send(start + sent * interval, sent >= warmup);
        sent++;
      }
      if (sent < total) setTimeout(tick, Math.max(0, start + sent * interval - performance.now()));
    };
    setTimeout(tick, 5);
  });
}
