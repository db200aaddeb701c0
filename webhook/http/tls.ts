/**
 * TLS for the listeners: load certificates from files, reload them when they change (Kubernetes
 * swaps Secret volumes by renaming a `..data` symlink, so the parent folder is watched, not the
 * file), report expiry, and — on the admission listener — require the API server's client
 * certificate (issue 13; Gatekeeper's --client-ca-name/--client-cn-name, cert-manager's
 * --client-subject-names).
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Server as TlsServer, TLSSocket, PeerCertificate, SecureContextOptions } from 'node:tls';
import { watch, type FSWatcher } from 'chokidar';

/** Every TLS listener refuses TLS 1.0 and 1.1 (ClientHello with a lower max version: handshake failure). */
export const MIN_TLS_VERSION = 'TLSv1.2' as const;
/**
 * A TCP connection that has not finished its TLS handshake after this long is closed (Node's
 * default is 120 s: a cheap way to hold sockets open).
 */
export const HANDSHAKE_TIMEOUT_MS = 10_000;

export interface TlsFiles {
  certFile: string;
  keyFile: string;
  /** PEM bundle of the CA(s) that sign allowed client certificates; absent = no client certificate asked. */
  clientCAFile?: string;
}

export interface TlsMaterial {
  cert: string;
  key: string;
  /** notAfter as epoch seconds. */
  notAfter: number;
  /** Client CA bundle (PEM) when TlsFiles.clientCAFile is set. */
  ca?: string;
}

/** Reads and checks a certificate/key pair (and client CA). Throws Error with code ERR_TLS_LOAD naming the file. */
export function loadTlsFiles(certFile: string, keyFile: string, clientCAFile?: string): TlsMaterial {
  let cert: string;
  let key: string;
  try {
    cert = readFileSync(certFile, 'utf8');
    key = readFileSync(keyFile, 'utf8');
  } catch (err) {
    throw Object.assign(new Error(`cannot read TLS files ${certFile} / ${keyFile}: ${(err as Error).message}`), { code: 'ERR_TLS_LOAD' });
  }
  const material: TlsMaterial = { cert, key, notAfter: certificateNotAfter(cert, certFile) };
  if (clientCAFile !== undefined) {
    let ca: string;
    try {
      ca = readFileSync(clientCAFile, 'utf8');
    } catch (err) {
      throw Object.assign(new Error(`cannot read client CA file ${clientCAFile}: ${(err as Error).message}`), { code: 'ERR_TLS_LOAD' });
    }
    // At least one parseable certificate, or every client would be refused without a word.
    certificateNotAfter(ca, `client CA file ${clientCAFile}`);
    material.ca = ca;
  }
  return material;
}

export function certificateNotAfter(certPem: string, what = 'certificate'): number {
  try {
    return Math.floor(new Date(new X509Certificate(certPem).validTo).getTime() / 1000);
  } catch (err) {
    throw Object.assign(new Error(`${what} is not a PEM certificate: ${(err as Error).message}`), { code: 'ERR_TLS_LOAD' });
  }
}

/** What a server's secure context is built from (cert, key, client CA, protocol floor). */
export function toSecureContextOptions(m: TlsMaterial): SecureContextOptions {
  return { cert: m.cert, key: m.key, ...(m.ca !== undefined ? { ca: m.ca } : {}), minVersion: MIN_TLS_VERSION };
}

/**
 * Calls `onReload` with fresh material whenever one of the files (or its folder's symlinks) changes.
 * A half-written or mismatched set is reported through `onError` and the old material stays.
 */
export function watchTlsFiles(files: TlsFiles, onReload: (m: TlsMaterial) => void, onError: (err: Error) => void): { close: () => Promise<void> } {
  const paths = [files.certFile, files.keyFile, ...(files.clientCAFile !== undefined ? [files.clientCAFile] : [])];
  const dirs = [...new Set(paths.map((p) => dirname(p)))];
  let timer: NodeJS.Timeout | undefined;
  const watcher: FSWatcher = watch(dirs, { ignoreInitial: true, followSymlinks: false, depth: 1 });
  const schedule = (): void => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      try {
        onReload(loadTlsFiles(files.certFile, files.keyFile, files.clientCAFile));
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

// ---------------------------------------------------------------------------------------------
// API server client certificates

export type ClientRejection = 'no_certificate' | 'untrusted' | 'name_not_allowed';

export type ClientVerdict = { ok: true; name: string } | { ok: false; reason: ClientRejection; detail: string };

/** Node's subjectaltname: `DNS:a, DNS:b, IP Address:1.2.3.4`; values with a comma or quote are JSON strings. */
export function parseDnsAltNames(subjectaltname: string | undefined): string[] {
  if (!subjectaltname) return [];
  const out: string[] = [];
  const re = /(?:^|, )([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)/g;
  for (let m = re.exec(subjectaltname); m; m = re.exec(subjectaltname)) {
    if (m[1] !== 'DNS') continue;
    const raw = m[2]!;
    try {
      out.push(raw.startsWith('"') ? (JSON.parse(raw) as string) : raw);
    } catch {
      // An unparseable quoted value matches nothing: it is not an allowed name.
    }
  }
  return out;
}

/**
 * Decides whether a TLS client may talk to the admission listener: its certificate chains to the
 * client CA (`authorized`, checked by OpenSSL) and its subject CN or one of its DNS SANs is exactly
 * one of `allowed` (no wildcards, case-sensitive, as Gatekeeper compares the CN). Pure.
 */
export function decideClientCertificate(authorized: boolean, authorizationError: string | undefined, peer: Partial<PeerCertificate> | undefined, allowed: readonly string[]): ClientVerdict {
  const hasCert = peer !== undefined && peer.raw !== undefined && Object.keys(peer).length > 0;
  if (!hasCert) return { ok: false, reason: 'no_certificate', detail: 'the client sent no certificate' };
  if (!authorized) return { ok: false, reason: 'untrusted', detail: `the client certificate does not verify against the client CA (${authorizationError ?? 'unknown error'})` };
  const cn = peer.subject?.CN;
  const commonNames = Array.isArray(cn) ? cn : typeof cn === 'string' ? [cn] : [];
  const names = [...commonNames, ...parseDnsAltNames(peer.subjectaltname)];
  const hit = names.find((n) => allowed.includes(n));
  if (hit !== undefined) return { ok: true, name: hit };
  return { ok: false, reason: 'name_not_allowed', detail: `the client certificate names ${JSON.stringify(names)}, none of which is allowed (${allowed.join(', ')})` };
}

export interface ClientGateOptions {
  allowed: readonly string[];
  onReject: (reason: ClientRejection, detail: string, remoteAddress: string | undefined) => void;
}

/**
 * Puts a gate in front of an HTTPS server created with `requestCert: true, rejectUnauthorized:
 * false`: every 'secureConnection' is checked by decideClientCertificate before the HTTP layer sees
 * it; a refused socket is destroyed before a single HTTP byte is read (so no request, no record).
 *
 * Why not rejectUnauthorized: true? Node accepts any certificate during the OpenSSL handshake and
 * destroys an unauthorized socket afterwards *without an event* (and a missing certificate too), so
 * such refusals could not be counted or logged; the name check needs this hook anyway. With TLS 1.3
 * the client's handshake completes before the server has judged its certificate in either case.
 */
export function installClientCertificateGate(server: TlsServer, opts: ClientGateOptions): void {
  const inner = server.listeners('secureConnection') as Array<(socket: TLSSocket) => void>;
  server.removeAllListeners('secureConnection');
  server.on('secureConnection', (socket: TLSSocket) => {
    const verdict = decideClientCertificate(socket.authorized, socket.authorizationError?.toString(), socket.getPeerCertificate(), opts.allowed);
    if (!verdict.ok) {
      opts.onReject(verdict.reason, verdict.detail, socket.remoteAddress);
      socket.destroy();
      return;
    }
    for (const listener of inner) listener.call(server, socket);
  });
}

/**
 * A log call that runs at most once per `intervalMs` per key; the next one that runs carries how many
 * were suppressed in between. For events a client can trigger at will (refused handshakes).
 */
export function createRateLimitedLog<K extends string, F>(intervalMs: number, log: (key: K, fields: F, suppressed: number) => void, now: () => number = Date.now): (key: K, fields: F) => void {
  const last = new Map<K, { at: number; suppressed: number }>();
  return (key, fields) => {
    const t = now();
    const seen = last.get(key);
    if (seen && t - seen.at < intervalMs) {
      seen.suppressed += 1;
      return;
    }
    log(key, fields, seen?.suppressed ?? 0);
    last.set(key, { at: t, suppressed: 0 });
  };
}
