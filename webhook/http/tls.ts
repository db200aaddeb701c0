/**
 * Serving certificates: load from files, reload when they change (Kubernetes swaps Secret volumes by
 * renaming a `..data` symlink, so the parent folder is watched, not the file), and report expiry.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { watch, type FSWatcher } from 'chokidar';

export interface TlsMaterial {
  cert: string;
  key: string;
  /** notAfter as epoch seconds. */
  notAfter: number;
}

/** Reads and checks a certificate/key pair. Throws Error with code ERR_TLS_LOAD naming the file. */
export function loadTlsFiles(certFile: string, keyFile: string): TlsMaterial {
  let cert: string;
  let key: string;
  try {
    cert = readFileSync(certFile, 'utf8');
    key = readFileSync(keyFile, 'utf8');
  } catch (err) {
    throw Object.assign(new Error(`cannot read TLS files ${certFile} / ${keyFile}: ${(err as Error).message}`), { code: 'ERR_TLS_LOAD' });
  }
  return { cert, key, notAfter: certificateNotAfter(cert, certFile) };
}

export function certificateNotAfter(certPem: string, what = 'certificate'): number {
  try {
    return Math.floor(new Date(new X509Certificate(certPem).validTo).getTime() / 1000);
  } catch (err) {
    throw Object.assign(new Error(`${what} is not a PEM certificate: ${(err as Error).message}`), { code: 'ERR_TLS_LOAD' });
  }
}

/**
 * Calls `onReload` with fresh material whenever either file (or its folder's symlinks) changes.
 * A half-written or mismatched pair is reported through `onError` and the old certificate stays.
 */
export function watchTlsFiles(certFile: string, keyFile: string, onReload: (m: TlsMaterial) => void, onError: (err: Error) => void): { close: () => Promise<void> } {
  const dirs = [...new Set([dirname(certFile), dirname(keyFile)])];
  let timer: NodeJS.Timeout | undefined;
  const watcher: FSWatcher = watch(dirs, { ignoreInitial: true, followSymlinks: false, depth: 1 });
  const schedule = (): void => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      try {
        onReload(loadTlsFiles(certFile, keyFile));
      } catch (err) {
        onError(err as Error);
      }
    }, 100);
    timer.unref();
  };
  watcher.on('all', schedule);
  watcher.on('error', (err) => onError(err as Error));
  return {
    close: async () => {
      clearTimeout(timer);
      await watcher.close();
    },
  };
}
