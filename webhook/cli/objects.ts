/** Shared by the offline commands: config (optional), then the objects loaded once into a fresh index. */
import { resolve } from 'node:path';
import { pino } from 'pino';
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { createFactsIndex, type FactsIndex } from '../core/mapping-index.js';
import { createFileSource } from '../kube/files.js';
import { UsageError, type CliIo } from './io.js';

export function loadCliConfig(configFile: string | undefined, io: CliIo): Config {
  // Relative to the command's working directory, like every other path the CLI takes.
  const loaded = loadConfig({ configFile: configFile === undefined ? undefined : resolve(io.cwd, configFile), env: io.env, readFile: io.readFile, hostname: io.hostname });
  if (!loaded.ok) throw new UsageError(`invalid configuration:\n  - ${loaded.errors.join('\n  - ')}`);
  return loaded.config;
}

/** Silent logger: the commands print their own findings. */
export const quietLogger = pino({ level: 'silent' });

/**
 * Loads Namespaces, ServiceAccounts and IdentityMappings once (no watching) from `--objects` paths,
 * else from the config's `source`: files paths, or a one-shot list from the cluster.
 */
/** A one-shot read of the cluster gives up after this long instead of retrying forever. */
const CLUSTER_SYNC_TIMEOUT_MS = 30_000;

export async function gatherObjects(objects: string[] | undefined, config: Config, env: Record<string, string | undefined> = {}): Promise<{ index: FactsIndex; from: string }> {
  const index = createFactsIndex(config.domain);
  if ((objects && objects.length > 0) || config.source.kind === 'files') {
    const paths = objects && objects.length > 0 ? objects : config.source.paths;
    const source = createFileSource({ paths, index, logger: quietLogger, watch: false });
    await source.start();
    await source.close();
    return { index, from: paths.join(', ') };
  }
  const { createKubeSource, loadKubeConfig } = await import('../kube/informers.js');
  const kubeConfig = loadKubeConfig(env);
  const source = createKubeSource({ kubeConfig, index, logger: quietLogger, domain: config.domain, initialSyncTimeoutMs: CLUSTER_SYNC_TIMEOUT_MS });
  try {
    await source.start();
  } finally {
    source.stop();
  }
  return { index, from: `cluster ${kubeConfig.getCurrentCluster()?.server ?? ''}` };
}
