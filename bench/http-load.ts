/**
 * HTTP load with autocannon (HTTPS, keep-alive, fixed connection count) and one-off probes.
 * Latencies are taken from autocannon's per-response events at full precision: its own histogram
 * keeps whole milliseconds, too coarse for a 5 ms p99 budget.
 */
import { request } from 'node:https';
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
  /** 2xx responses. */
  ok: number;
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
}

/** Runs autocannon against https://127.0.0.1:port/path for `seconds` and summarises it. */
export function runLoad(o: LoadOptions): Promise<LoadResult> {
  // Sized for ~20k responses/s; grows if needed.
  let latencies = new Float64Array(Math.max(1024, o.seconds * 20_000));
  let n = 0;
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
      },
      (err, result) => {
        if (err) return reject(err);
        const sorted = latencies.subarray(0, n).sort();
        resolve({
          rps: n / result.duration,
          p50Ms: percentile(sorted, 0.5),
          p90Ms: percentile(sorted, 0.9),
          p99Ms: percentile(sorted, 0.99),
          maxMs: n > 0 ? sorted[n - 1]! : NaN,
          ok: n,
          failed: result.non2xx + result.errors + result.timeouts,
          seconds: result.duration,
        });
      },
    );
    instance.on('response', (_client, statusCode, _bytes, ms) => {
      if (statusCode < 200 || statusCode >= 300) return;
      if (n === latencies.length) {
        const grown = new Float64Array(latencies.length * 2);
        grown.set(latencies);
        latencies = grown;
      }
      latencies[n++] = ms;
    });
  });
}

/** One POST over HTTPS, trusting only `caPem`; resolves with the status and the parsed JSON body. */
export function postJson(port: number, path: string, body: string, caPem: string): Promise<{ status: number; json: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path, method: 'POST', ca: caPem, servername: 'localhost', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString('utf8')) });
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
