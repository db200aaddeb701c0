/**
 * Starting a store writer thread (node:worker_threads) from source or from dist/.
 *
 * Built (dist/*.js) the worker module is plain JavaScript and starts as is. From source (`npm start`
 * runs tsx, the tests run under tap's TypeScript loader) this module's own URL ends in `.ts`, and on
 * Node 20 a worker does not inherit the parent's module hooks: the worker then starts from a small
 * bootstrap that registers tsx's loader in the worker and imports the `.ts` module.
 */
import { Worker } from 'node:worker_threads';

/**
 * Starts the worker module `name` (a sibling of `base`, given without extension, e.g.
 * './sqlite/writer') with `workerData`. Throws what `new Worker` throws.
 */
export function createWriterThread(base: string, name: string, workerData: unknown): Worker {
  const fromSource = base.endsWith('.ts');
  const target = new URL(`${name}${fromSource ? '.ts' : '.js'}`, base);
  if (!fromSource) return new Worker(target, { workerData });
  const loader = import.meta.resolve('tsx/esm/api');
  const bootstrap = `import(${JSON.stringify(loader)}).then((m) => { m.register(); return import(${JSON.stringify(target.href)}); })`;
  return new Worker(bootstrap, { eval: true, workerData });
}
