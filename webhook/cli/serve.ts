/**
 * `tzw serve [--config FILE] [--seed-reviews DIR]`: load config (defaults ← file ← TZW_* env), start,
 * drain on SIGTERM. `--seed-reviews` (what `npm start` passes) records the example AdmissionReviews
 * once when the store is empty, so a first look at the console has decisions in it.
 */
import { resolve } from 'node:path';
import { loadConfig } from '../config/load.js';
import { EXIT, type CliIo } from './io.js';
import type { Command } from './command.js';

export const serveCommand: Command = {
  options: { config: { type: 'string', short: 'c' }, 'seed-reviews': { type: 'string' } },
  async run({ values }, io: CliIo): Promise<number> {
    const loaded = loadConfig({ configFile: values.config as string | undefined, env: io.env, readFile: io.readFile, hostname: io.hostname });
    if (!loaded.ok) {
      io.stderr(`tzw serve: invalid configuration:\n  - ${loaded.errors.join('\n  - ')}\n`);
      return EXIT.PROBLEMS;
    }
    const { startServer } = await import('../server.js');
    let server;
    try {
      const seed = values['seed-reviews'] as string | undefined;
      server = await startServer(loaded.config, { env: io.env, ...(seed ? { seedReviews: resolve(io.cwd, seed) } : {}) });
    } catch (err) {
      io.stderr(`tzw serve: ${(err as Error).message}\n`);
      return EXIT.PROBLEMS;
    }
    const s = server;
    io.stderr(`tzw serve: admission ${s.urls.admission}, audit API and console ${s.urls.audit}/, metrics ${s.urls.metrics}\n`);
    await new Promise<void>((resolve) => {
      let stopping = false;
      const stop = (): void => {
        if (stopping) return;
        stopping = true;
        s.logger.info('shutting down: draining in-flight requests');
        void s.close().then(resolve, resolve);
      };
      io.onSignal('SIGTERM', stop);
      io.onSignal('SIGINT', stop);
    });
    return EXIT.OK;
  },
};
