/**
 * The console's one API client: every request to the audit API goes through `request`, which adds
 * the bearer token (sessionStorage only: never a URL, a cookie or localStorage) and turns an error
 * answer into an ApiError carrying the server's message.
 */
import type { ChainedRecord } from '../../core/record.js';
import type { Anchor, Checkpoint, DecisionPage } from '../../store/port.js';
import type { DecisionStats } from '../../store/stats.js';
import { withQuery } from './url.js';

export type { ChainedRecord, Checkpoint, DecisionPage, DecisionStats };

const TOKEN_KEY = 'tzw.bearerToken';

/** Shown for a 503 whose body has no message of its own (kubernetes auth cannot reach the API server). */
export const UNAVAILABLE_MESSAGE = 'cannot reach the Kubernetes API to check your token; retry';

export class ApiError extends Error {
  constructor(
    /** HTTP status; 0 when the request never got an answer. */
    readonly status: number,
    readonly code: string,
    message: string,
    readonly retryAfter?: string,
  ) {
    super(message);
  }
}

/** The bearer token of this browser tab. */
export const session = {
  token(): string | null {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  signIn(token: string): void {
    sessionStorage.setItem(TOKEN_KEY, token);
  },
  signOut(): void {
    sessionStorage.removeItem(TOKEN_KEY);
  },
};

function fallbackMessage(status: number): string {
  switch (status) {
    case 400:
      return 'the audit API rejected the query';
    case 401:
      return 'the audit API needs a bearer token';
    case 403:
      return 'your token is not allowed to read this';
    case 404:
      return 'not found';
    case 503:
      return UNAVAILABLE_MESSAGE;
    default:
      return `the audit API answered HTTP ${status}`;
  }
}

async function request(path: string, params?: URLSearchParams): Promise<Response> {
  const headers: Record<string, string> = { accept: 'application/json' };
  const token = session.token();
  if (token) headers.authorization = `Bearer ${token}`;
  let res: Response;
  try {
    res = await fetch(params ? withQuery(path, params) : path, { headers, credentials: 'omit', cache: 'no-store', redirect: 'error' });
  } catch (err) {
    throw new ApiError(0, 'ERR_NETWORK', `cannot reach the audit API (${(err as Error).message}); retry`);
  }
  if (res.ok) return res;
  let body: { code?: unknown; message?: unknown } | null;
  try {
    body = (await res.json()) as { code?: unknown; message?: unknown } | null;
  } catch {
    body = null; // not JSON (a proxy's error page): fall back to a message for the status
  }
  const message = typeof body?.message === 'string' && body.message ? body.message : fallbackMessage(res.status);
  const code = typeof body?.code === 'string' ? body.code : `HTTP_${res.status}`;
  throw new ApiError(res.status, code, message, res.headers.get('retry-after') ?? undefined);
}

async function json<T>(path: string, params?: URLSearchParams): Promise<T> {
  return (await (await request(path, params)).json()) as T;
}

/** The file name a download gets: the server's Content-Disposition name, else `fallback`. */
function fileNameOf(res: Response, fallback: string): string {
  const m = /filename="([^"]+)"/.exec(res.headers.get('content-disposition') ?? '');
  return m?.[1] ?? fallback;
}

/** One page of GET /api/v1/checkpoints (anchors come with the first page). */
interface CheckpointPage {
  items: Checkpoint[];
  anchors: Anchor[];
  nextCursor: string | null;
}

export const api = {
  decisions: (params: URLSearchParams) => json<DecisionPage>('/api/v1/decisions', params),
  decision: (id: string) => json<ChainedRecord>(`/api/v1/decisions/${encodeURIComponent(id)}`),
  stats: (params: URLSearchParams) => json<DecisionStats>('/api/v1/stats', params),
  /** The newest signed checkpoint of each writer (one short page, however many checkpoints there are). */
  latestCheckpoints: (writer?: string) => json<CheckpointPage>('/api/v1/checkpoints', new URLSearchParams({ latest: 'true', ...(writer !== undefined ? { writer } : {}) })),
  /** The first signed checkpoint of `writer` whose size is at least `seq` (the one that covers that record), if any. */
  coveringCheckpoint: async (writer: string, seq: number) =>
    (await json<CheckpointPage>('/api/v1/checkpoints', new URLSearchParams({ writer, minSize: String(seq), limit: '1' }))).items[0],
  jwks: () => json<{ keys: Array<Record<string, unknown>> }>('/api/v1/jwks'),
  /** The evidence bundle for a selection, as a Blob (the token cannot ride on a plain link). */
  async exportBundle(params: URLSearchParams): Promise<{ blob: Blob; fileName: string }> {
    const res = await request('/api/v1/export', params);
    return { blob: await res.blob(), fileName: fileNameOf(res, 'decisions-bundle.jsonl') };
  },
};
