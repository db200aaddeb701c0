/**
 * openStoreForRead(url): a decision store opened for reading only, for the `tzw decisions` commands
 * (list, get, export, verify). Unlike the server's openStore it needs no config or signing key, and it
 * never creates anything: a missing database is an error, not a new empty store.
 */
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { VerifiableStore } from './port.js';
import { createSqliteStore } from './sqlite/store.js';
import { redactUrl } from './open.js';

/** Writer id of a read-only handle; it never appends, so it never starts a chain. */
const READER_ID = 'tzw-reader';


function storeError(code: string, message: string, cause?: unknown): Error & { code: string } {
  return Object.assign(new Error(message, cause === undefined ? undefined : { cause }), { code });
}

/**
 * Opens the store at `url` read-only: `sqlite:PATH` (relative to `opts.cwd`, default the process
 * directory) or `postgres://…` / `postgresql://…`.
 * Errors (by `code`): ERR_STORE_NOT_FOUND ("no decision store at PATH"), ERR_STORE_URL (unknown
 * scheme or empty path), and the
 * adapter's own ERR_STORE_OPEN (not a database, schema too new, ...).
 */
export async function openStoreForRead(url: string, opts: { cwd?: string } = {}): Promise<VerifiableStore> {
  if (url.startsWith('sqlite:')) {
    const given = url.slice('sqlite:'.length);
    if (given === '') throw storeError('ERR_STORE_URL', 'store URL "sqlite:" has no path; use sqlite:PATH, e.g. sqlite:.tzw/decisions.db');
    const path = resolve(opts.cwd ?? '.', given);
    let isFile: boolean;
    try {
      isFile = statSync(path).isFile();
    } catch (err) {
      throw storeError('ERR_STORE_NOT_FOUND', `no decision store at ${path}`, err);
    }
    if (!isFile) throw storeError('ERR_STORE_NOT_FOUND', `no decision store at ${path} (it is not a file)`);
    return createSqliteStore({ path, replica: READER_ID, readonly: true });
  }
  if (/^postgres(ql)?:\/\//.test(url)) {
    // A literal specifier, so the typecheck follows the adapter when it moves (a computed one hid
    // the move to postgres/store.ts and every --store postgres:// command failed at run time).
    const { openPostgresStoreForRead } = await import('./postgres/store.js');
    return openPostgresStoreForRead(url);
  }
  throw storeError('ERR_STORE_URL', `store URL "${redactUrl(url)}" must be sqlite:PATH or postgres://…`);
}
