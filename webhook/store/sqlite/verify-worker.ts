/**
 * A verify worker thread (started by verify.ts through ../thread.ts): opens the SQLite file
 * read-only and verifies the chain ranges it is sent, one at a time (verify-range.ts).
 *
 * Protocol: in `{t: 'range', id, range}`, `{t: 'close'}`; out `{t: 'ready'}`, `{t: 'rows', n}` (progress,
 * per chunk), `{t: 'done', id, outcome}` or `{t: 'failed', id, message}`.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { openRangeReader, type ChainRange, type RangeOutcome } from './verify-range.js';

export type VerifyWorkerRequest = { t: 'range'; id: number; range: ChainRange } | { t: 'close' };
export type VerifyWorkerReply =
  | { t: 'ready' }
  | { t: 'rows'; n: number }
  | { t: 'done'; id: number; outcome: RangeOutcome }
  | { t: 'failed'; id: number; message: string };

const port = parentPort;
if (port) {
  const { path } = workerData as { path: string };
  const post = (m: VerifyWorkerReply) => port.postMessage(m);
  let reader: ReturnType<typeof openRangeReader> | undefined;
  let openError: string | undefined;
  try {
    reader = openRangeReader(path);
  } catch (err) {
    openError = (err as Error).message;
  }
  port.on('message', (m: VerifyWorkerRequest) => {
    if (m.t === 'close') {
      reader?.close();
      port.close();
      return;
    }
    if (!reader) {
      post({ t: 'failed', id: m.id, message: `cannot open ${path}: ${openError ?? 'unknown error'}` });
      return;
    }
    try {
      post({ t: 'done', id: m.id, outcome: reader.verify(m.range, (n) => post({ t: 'rows', n })) });
    } catch (err) {
      post({ t: 'failed', id: m.id, message: (err as Error).message });
    }
  });
  post({ t: 'ready' });
}
