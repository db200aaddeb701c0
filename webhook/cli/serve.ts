/** `tzw serve [--config FILE]`: load config (defaults ← file ← TZW_* env), start, drain on SIGTERM. */
import { loadConfig } from '../config/load.js';
import { EXIT, type CliIo } from './io.js';
import type { Command } from './command.js';

export const serveCommand: Command = {
  options: { config: { type: 'string', short: 'c' } },
  async run({ values }, io: CliIo): Promise<number> {
    const loaded = loadConfig({ configFile: values.config as string | undefined, env: io.env, readFile: io.readFile, hostname: io.hostname });
    if (!loaded.ok) {
      io.stderr(`tzw serve: invalid configuration:\n  - ${loaded.errors.join('\n  - ')}\n`);
      return EXIT.PROBLEMS;
    }
    const { startServer } = await import('../server.js');
    let server;
    try {
      server = await startServer(loaded.config, { env: io.env });
    } catch (err) {
      io.stderr(`tzw serve: ${(err as Error).message}\n`);
      return EXIT.PROBLEMS;
    }
    const s = server;
    io.stderr(`tzw serve: admission ${s.urls.admission}, audit API ${s.urls.audit}, metrics ${s.urls.metrics}\n`);
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
