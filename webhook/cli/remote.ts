/**
 * The CLI's client of a running webhook's audit API (`tzw decisions … --server https://HOST:PORT`),
 * so an auditor needs no database credentials. It fetches what `--store` reads from the database —
 * a page of records, one record, the bundle, the public keys — and the commands render it with the
 * same code, so the output is the same bytes either way.
 *
 * The bearer token (from --token-file or TZW_TOKEN) goes only into the Authorization header: never
 * into a URL, an error message or the output. HTTPS only; `--cacert FILE` adds the CA that signed
 * the server's certificate (a self-signed dev server, or a cluster CA behind port-forward).
 *
 * Errors are RemoteError, by `code`: ERR_REMOTE_UNAUTHENTICATED (401), ERR_REMOTE_FORBIDDEN (403),
 * ERR_REMOTE_UNAVAILABLE (503; `retryAfter`), ERR_REMOTE_BAD_REQUEST (400), ERR_REMOTE_HTTP (other),
 * ERR_REMOTE_TLS (certificate not trusted, wrong host, expired), ERR_REMOTE_UNREACHABLE (no answer),
 * ERR_REMOTE_BAD_RESPONSE (not the API's JSON).
 */
import { Readable } from 'node:stream';
import { Agent, fetch, type Response } from 'undici';
import type { ChainedRecord } from '../core/record.js';
import type { DecisionFilter, DecisionPage } from '../store/port.js';
import { FILTER_KEYS } from '../store/query.js';
import { parseJwks, type Jwks } from '../store/evidence/signing.js';

/** No answer (headers) within this long is an error; a long export body may take longer. */
export const REMOTE_TIMEOUT_MS = 30_000;

export type RemoteErrorCode =
  | 'ERR_REMOTE_UNAUTHENTICATED'
  | 'ERR_REMOTE_FORBIDDEN'
  | 'ERR_REMOTE_UNAVAILABLE'
  | 'ERR_REMOTE_BAD_REQUEST'
  | 'ERR_REMOTE_HTTP'
  | 'ERR_REMOTE_TLS'
  | 'ERR_REMOTE_UNREACHABLE'
  | 'ERR_REMOTE_BAD_RESPONSE';

export class RemoteError extends Error {
  constructor(
    readonly code: RemoteErrorCode,
    message: string,
    readonly status?: number,
    readonly retryAfter?: string,
  ) {
    super(message);
  }
}

export interface AuditClient {
  /** The server as given (for messages): origin and path, never a token. */
  server: string;
  fetchPage(filter: DecisionFilter): Promise<DecisionPage>;
  /** The record, or undefined when the server answers 404. */
  fetchRecord(id: string): Promise<ChainedRecord | undefined>;
  fetchJwks(): Promise<Jwks>;
  /** The evidence bundle for `filter` as a byte stream (GET /api/v1/export). */
  fetchBundle(filter: Omit<DecisionFilter, 'limit' | 'cursor'>): Promise<Readable>;
  close(): Promise<void>;
}

export interface ClientOptions {
  server: string;
  token?: string;
  /** PEM CA certificate(s) to trust besides the system's. */
  caPem?: string;
  /**
   * The name to expect in the server's certificate when it differs from the host connected to
   * (kubectl's --tls-server-name): through port-forward the URL says localhost while the
   * certificate names the Service.
   */
  servername?: string;
}

/** The query string of a filter (pure): the API's parameter names, values as the parser normalised them. */
export function toFilterQuery(filter: Partial<DecisionFilter>, extra: Record<string, string> = {}): string {
  const params = new URLSearchParams();
  for (const key of FILTER_KEYS) {
    const v = filter[key];
    if (v !== undefined) params.set(key, String(v));
  }
  for (const [k, v] of Object.entries(extra)) params.set(k, v);
  const s = params.toString();
  return s ? `?${s}` : '';
}

/** Parses --server: an https:// URL, optionally with a path prefix (a reverse proxy). Throws a message. */
export function parseServerUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`--server "${text}" is not a URL; give https://HOST:PORT`);
  }
  if (url.protocol !== 'https:') throw new Error(`--server must be an https:// URL (the audit API serves TLS only), got "${url.protocol}"`);
  if (url.username || url.password) throw new Error('--server must not carry credentials; pass the token with --token-file or TZW_TOKEN');
  if (url.search || url.hash) throw new Error('--server must not carry a query or fragment; give filters as flags');
  return url;
}

// Node's TLS error codes (https://nodejs.org/api/tls.html, OpenSSL X509_V_ERR_*), and what to do.
const TLS_HINTS: Record<string, string> = {
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'its certificate is not signed by a CA you trust; pass --cacert FILE with the CA that signed it',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'its certificate is not signed by a CA you trust; pass --cacert FILE with the CA that signed it',
  SELF_SIGNED_CERT_IN_CHAIN: 'its certificate chain ends in a CA you do not trust; pass --cacert FILE with that CA',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'its certificate is self-signed; pass --cacert FILE with that certificate (or the CA that signed it)',
  ERR_TLS_CERT_ALTNAME_INVALID: 'its certificate is not for this host name; pass --tls-server-name with a name it lists (through port-forward: tekton-zscaler-webhook.tekton-zscaler.svc)',
  CERT_HAS_EXPIRED: 'its certificate has expired',
  CERT_NOT_YET_VALID: 'its certificate is not valid yet (check the clocks)',
  EPROTO: 'the TLS handshake failed (is it an https:// listener?)',
  ERR_SSL_WRONG_VERSION_NUMBER: 'it does not speak TLS on that port (is it the audit API port?)',
};

function causeCode(err: unknown): string {
  let e = err as { code?: unknown; cause?: unknown } | undefined;
  for (let i = 0; e && i < 5; i++) {
    if (typeof e.code === 'string' && e.code !== 'UND_ERR_SOCKET') return e.code;
    e = e.cause as typeof e;
  }
  return '';
}

/** Builds the client. Nothing is sent until a method is called. */
export function createAuditClient(opts: ClientOptions): AuditClient {
  const base = parseServerUrl(opts.server);
  const server = base.toString().replace(/\/$/, '');
  const dispatcher = new Agent({
    connect: { ...(opts.caPem ? { ca: opts.caPem } : {}), ...(opts.servername ? { servername: opts.servername } : {}) },
    headersTimeout: REMOTE_TIMEOUT_MS,
  });
  const headers: Record<string, string> = { accept: 'application/json' };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;

  const request = async (path: string, what: string, allow404 = false): Promise<Response | undefined> => {
    const url = new URL(base.pathname.replace(/\/$/, '') + path, base);
    let res: Response;
    try {
      res = await fetch(url, { headers, dispatcher });
    } catch (err) {
      const code = causeCode(err);
      const hint = TLS_HINTS[code];
      if (hint) throw new RemoteError('ERR_REMOTE_TLS', `cannot connect to ${server} over TLS: ${hint} (${code})`);
      const cause = (err as { cause?: { message?: unknown } }).cause?.message;
      throw new RemoteError('ERR_REMOTE_UNREACHABLE', `cannot reach ${server}: ${code || (typeof cause === 'string' ? cause : (err as Error).message)}`);
    }
    if (res.ok) return res;
    if (res.status === 404 && allow404) {
      await res.body?.cancel();
      return undefined;
    }
    const text = await res.text();
    let message = '';
    try {
      const body = JSON.parse(text) as { message?: unknown };
      if (typeof body.message === 'string') message = body.message;
    } catch {
      message = ''; // not the API's JSON (a proxy's page): the status says enough
    }
    // The API speaks of query parameters; on the command line they are flags.
    const said = message.replace(/add namespace=<namespace> to the query \(tzw: --namespace; /, 'add --namespace <namespace> (');
    switch (res.status) {
      case 401:
        throw new RemoteError(
          'ERR_REMOTE_UNAUTHENTICATED',
          `${server} did not accept ${opts.token ? 'the token' : 'a request without a token'}${said ? `: ${said}` : ''}. ${opts.token ? 'Get a fresh one' : 'Pass one with --token-file FILE or TZW_TOKEN'} (in a cluster: kubectl create token <serviceaccount>).`,
          401,
        );
      case 403:
        throw new RemoteError('ERR_REMOTE_FORBIDDEN', `${server} refused to ${what}: ${said || 'forbidden'}`, 403);
      case 503: {
        const retryAfter = res.headers.get('retry-after') ?? undefined;
        throw new RemoteError('ERR_REMOTE_UNAVAILABLE', `${server} cannot answer now: ${said || 'service unavailable'}${retryAfter ? ` (retry after ${retryAfter} s)` : ''}`, 503, retryAfter);
      }
      case 400:
        throw new RemoteError('ERR_REMOTE_BAD_REQUEST', `${server} rejected the request: ${said || 'bad request'}`, 400);
      default:
        throw new RemoteError('ERR_REMOTE_HTTP', `${server} answered HTTP ${res.status} to ${what}${said ? `: ${said}` : ''}`, res.status);
    }
  };

  const json = async (res: Response, what: string): Promise<unknown> => {
    try {
      return await res.json();
    } catch {
      throw new RemoteError('ERR_REMOTE_BAD_RESPONSE', `${server} answered ${what} with something that is not JSON: is it the audit API?`);
    }
  };

  return {
    server,
    async fetchPage(filter) {
      const res = (await request(`/api/v1/decisions${toFilterQuery(filter)}`, 'list decisions'))!;
      const page = (await json(res, 'the decision list')) as DecisionPage;
      if (!Array.isArray(page?.items) || !(page.nextCursor === null || typeof page.nextCursor === 'string')) {
        throw new RemoteError('ERR_REMOTE_BAD_RESPONSE', `${server} answered the decision list without {items, nextCursor}`);
      }
      return { items: page.items, nextCursor: page.nextCursor };
    },
    async fetchRecord(id) {
      const res = await request(`/api/v1/decisions/${encodeURIComponent(id)}`, 'get the decision', true);
      return res ? ((await json(res, 'the decision')) as ChainedRecord) : undefined;
    },
    async fetchJwks() {
      const res = (await request('/api/v1/jwks', 'give its public keys'))!;
      const jwks = parseJwks(await json(res, 'the JWKS'));
      if (typeof jwks === 'string') throw new RemoteError('ERR_REMOTE_BAD_RESPONSE', `${server}/api/v1/jwks: ${jwks}`);
      return jwks;
    },
    async fetchBundle(filter) {
      const res = (await request(`/api/v1/export${toFilterQuery(filter)}`, 'export decisions'))!;
      if (!res.body) throw new RemoteError('ERR_REMOTE_BAD_RESPONSE', `${server} answered the export without a body`);
      return Readable.fromWeb(res.body as unknown as import('node:stream/web').ReadableStream);
    },
    close: () => dispatcher.close(),
  };
}
