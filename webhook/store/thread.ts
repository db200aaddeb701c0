/**
 * Starting a store writer thread (node:worker_threads) from source or from dist/.
 *
 * Built (dist/*.js) the worker module is plain JavaScript and starts as is. From source (`npm start`
 * runs tsx, the tests run under tap's TypeScript loader) this module's own URL ends in `.ts`, and on
 * Node 20 a worker does not inherit the parent's module hooks: the worker then starts from a small
 * bootstrap that registers tsx's loader in the worker and imports the `.ts` module.
 */
import { Worker, type ResourceLimits } from 'node:worker_threads';
import type { CommitObserver } from './port.js';

/**
 * V8 limits of a writer thread unless the caller gives its own. A writer holds one batch of
 * records at a time, so its young generation can stay small: V8's default lets a busy thread's
 * grow to tens of MB that are not given back. Measured on this box (SQLite writer, 20,000 appends,
 * 50 in flight, loaded machine, two runs each): RSS after 184-187 MB at V8's default, 170-171 MB
 * at 16 MB, 174-177 MB at 8 MB; CPU per record 502-513 / 456-511 / 539-561 µs (8 MB scavenges
 * too often: the writer's GC share doubled in a bench profile).
 */
export const WRITER_RESOURCE_LIMITS: ResourceLimits = { maxYoungGenerationSizeMb: 16 };

export interface WriterThreadOptions {
  /** V8 heap limits of the thread; default WRITER_RESOURCE_LIMITS. */
  resourceLimits?: ResourceLimits;
}

/**
 * Starts the worker module `name` (a sibling of `base`, given without extension, e.g.
 * './sqlite/writer') with `workerData`. Throws what `new Worker` throws.
 */
export function createWriterThread(base: string, name: string, workerData: unknown, opts: WriterThreadOptions = {}): Worker {
  const resourceLimits = opts.resourceLimits ?? WRITER_RESOURCE_LIMITS;
  const fromSource = base.endsWith('.ts');
  const target = new URL(`${name}${fromSource ? '.ts' : '.js'}`, base);
  if (!fromSource) return new Worker(target, { workerData, resourceLimits });
  const loader = import.meta.resolve('tsx/esm/api');
  const bootstrap = `import(${JSON.stringify(loader)}).then((m) => { m.register(); return import(${JSON.stringify(target.href)}); })`;
  return new Worker(bootstrap, { eval: true, workerData, resourceLimits });
}

/**
 * Resolves with the first message for which `isReady` is true; rejects when the thread fails
 * ('error') or ends ('exit', which comes without an 'error' when a thread stops on its own) before
 * that. Removes its listeners either way, so the caller attaches its steady-state ones after.
 */
export function whenWriterReady<M>(worker: Worker, isReady: (m: M) => boolean): Promise<M> {
  return new Promise<M>((resolve, reject) => {
    const off = () => {
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
    };
    const onMessage = (m: M) => {
      if (!isReady(m)) return;
      off();
      resolve(m);
    };
    const onError = (err: Error) => {
      off();
      reject(err);
    };
    const onExit = (code: number) => {
      off();
      reject(new Error(`the thread exited (code ${code}) before it was ready`));
    };
    worker.on('message', onMessage);
    worker.on('error', onError);
    worker.on('exit', onExit);
  });
}

/**
 * Tells `observer` (if any) about one commit the writer thread reported (`ms`, `records`). A
 * throwing observer is logged once and then left out: counting a commit must never disturb the
 * settlement of the appends it holds.
 */
export function toCommitNotifier(observer: CommitObserver | undefined, log: { error(obj: object, msg: string): void }): (ms: number, records: number) => void {
  if (!observer) return () => undefined;
  let broken = false;
  return (ms, records) => {
    if (broken) return;
    try {
      observer({ seconds: ms / 1000, records });
    } catch (err) {
      broken = true;
      log.error({ err: { message: (err as Error).message } }, 'the store commit observer threw; commits are no longer observed');
    }
  };
}
