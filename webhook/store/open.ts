/**
 * openStore(config): the decision store named by `store.url`, with its signing key and retention.
 * `sqlite:PATH` → the embedded store; `postgres://…` → the shared store (postgres/store.ts) behind a local
 * spool. The only place that maps a URL to an adapter for the server.
 */
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Config } from '../config/schema.js';
import { loadOrCreateSigningKey, toJwks, type Jwks, type SigningKey } from './evidence/signing.js';
import { createSqliteStore } from './sqlite/store.js';
import type { CommitObserver, VerifiableStore } from './port.js';
import type { StoreLogger } from './sqlite/store.js';

export interface OpenedStore {
  store: VerifiableStore;
  signingKey: SigningKey;
  /** Public keys that verify this store's checkpoints (served at /api/v1/jwks). */
  jwks: () => Jwks;
  /** Records accepted but not yet in the shared store (0 for SQLite). */
  backlog: () => number;
  /** Records this replica's spool quarantined: refused by the shared store, kept (0 for SQLite). */
  quarantined: () => number;
  /** Safe description for logs (no credentials). */
  describe: string;
  /** Starts periodic pruning when `store.retention` is set. */
  startRetention?: () => { stop: () => void };
}

const RETENTION_INTERVAL_MS = 3_600_000;

/** `400d` / `12h` → milliseconds. */
export function parseRetention(value: string): number {
  const m = /^(\d+)([dh])$/.exec(value);
  if (!m) throw Object.assign(new Error(`store.retention must look like 400d or 12h, got "${value}"`), { code: 'ERR_STORE_CONFIG' });
  return Number(m[1]) * (m[2] === 'd' ? 86_400_000 : 3_600_000);
}

export function redactUrl(url: string): string {
  return url.replace(/\/\/([^:@/]*)(:[^@/]*)?@/, '//$1:***@');
}

function withRetention(store: VerifiableStore, retention: string | undefined, logger: StoreLogger, now: () => number): OpenedStore['startRetention'] {
  if (!retention) return undefined;
  const ageMs = parseRetention(retention);
  return () => {
    const prune = async (): Promise<void> => {
      const cutoff = new Date(now() - ageMs).toISOString();
      try {
        const r = await store.prune(cutoff);
        if (r.deleted > 0) logger.info({ deleted: r.deleted, anchors: r.anchors.length, cutoff }, 'retention: pruned decision records and wrote signed anchors');
      } catch (err) {
        logger.error({ err: { message: (err as Error).message } }, 'retention: prune failed');
      }
    };
    void prune();
    const timer = setInterval(() => void prune(), RETENTION_INTERVAL_MS);
    timer.unref();
    return { stop: () => clearInterval(timer) };
  };
}

/** Where the checkpoint signing key lives: `signing.keyFile`, else generated under `stateDir`. */
export function signingKeyPath(config: Pick<Config, 'signing' | 'stateDir'>): string {
  return config.signing.keyFile ?? join(config.stateDir, 'signing-key.pem');
}

/** `onCommit` is told about every commit of the store's writer thread (the server's commit metrics). */
export async function openStore(config: Config, logger: StoreLogger, onCommit?: CommitObserver): Promise<OpenedStore> {
  const url = config.store.url;
  const keyFile = signingKeyPath(config);
  const signingKey = await loadOrCreateSigningKey(keyFile, { create: config.signing.keyFile === undefined });
  const jwks = (): Jwks => toJwks(signingKey.publicJwk);
  if (url.startsWith('sqlite:')) {
    const path = url.slice('sqlite:'.length);
    mkdirSync(dirname(path), { recursive: true });
    const store = await createSqliteStore({ path, replica: config.replica, signer: signingKey, checkpointEvery: config.store.checkpointEvery, logger, ...(onCommit ? { onCommit } : {}) });
    return { store, signingKey, jwks, backlog: () => 0, quarantined: () => 0, describe: url, startRetention: withRetention(store, config.store.retention, logger, Date.now) };
  }
  const { openPostgresStore } = await import('./postgres/open.js');
  const opened = await openPostgresStore(config, signingKey, logger, onCommit);
  return { ...opened, signingKey, jwks, describe: redactUrl(url), startRetention: withRetention(opened.store, config.store.retention, logger, Date.now) };
}
