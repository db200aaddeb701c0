/**
 * Setup shared by the store test files: a throwaway signing key, and the StoreHarness each adapter
 * hands the contract suite (only how a store is opened, broken and removed differs).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { VerifiableStore } from '../../webhook/store/port.js';
import { loadOrCreateSigningKey, toJwks, type Jwks, type Signer } from '../../webhook/store/evidence/signing.js';
import type { StoreHarness } from './contract.js';

/** A signing key in a temporary directory that is removed when `t` ends, and its public JWKS. */
export async function createTestSigner(t: { teardown(fn: () => void): void }, prefix: string): Promise<{ signer: Signer; jwks: Jwks }> {
  const keyDir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(keyDir, { recursive: true, force: true }));
  const signer = await loadOrCreateSigningKey(join(keyDir, 'key.pem'), { create: true });
  return { signer, jwks: toJwks(signer.publicJwk) };
}

export interface HarnessParts {
  /** The adapter writes record format v2. */
  v2?: boolean;
  /** Opens the store on the same data and writer each time. */
  open(): Promise<VerifiableStore>;
  jwks: Jwks;
  breakWrites(): Promise<() => Promise<void>>;
  /** Removes the data once the store is closed. */
  remove(): Promise<void> | void;
}

/** A StoreHarness over `open`: reopen closes the store and opens it again, cleanup closes it and removes the data. */
export async function createHarness(parts: HarnessParts): Promise<StoreHarness> {
  const h: StoreHarness = {
    ...(parts.v2 ? { v2: true } : {}),
    store: await parts.open(),
    jwks: parts.jwks,
    async reopen() {
      await h.store.close();
      h.store = await parts.open();
      return h.store;
    },
    breakWrites: () => parts.breakWrites(),
    async cleanup() {
      await h.store.close();
      await parts.remove();
    },
  };
  return h;
}

/** Another connection holding the SQLite file's write lock: writes to it fail (SQLITE_BUSY) until the returned function is awaited. */
export async function holdSqliteWriteLock(path: string): Promise<() => Promise<void>> {
  const other = new Database(path);
  other.exec('BEGIN EXCLUSIVE');
  return async () => {
    other.exec('COMMIT');
    other.close();
  };
}
