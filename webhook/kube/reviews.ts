/**
 * TokenReview and SubjectAccessReview against the API server: how the audit API's
 * `auth.mode: kubernetes` asks Kubernetes who a bearer token belongs to and what RBAC lets them
 * read, the way controller-runtime's metrics filter and kube-rbac-proxy do (delegated authn/authz,
 * https://kubernetes.io/docs/reference/access-authn-authz/webhook/).
 *
 * The token travels only in the POST body of the TokenReview, never in a URL, a log line or an
 * error message. The API server is reached like the object source (in-cluster, else KUBECONFIG),
 * authenticated exactly as the informers' list requests (client-node's RequestContext).
 *
 * Errors (KubeReviewError, by `code`):
 *   ERR_KUBE_UNREACHABLE       no answer (connection refused, TLS, DNS, timeout) or a 5xx/429:
 *                              the caller may retry
 *   ERR_KUBE_REVIEW_FORBIDDEN  401/403 to our own request: the webhook's ServiceAccount is not bound
 *                              to system:auth-delegator (an admin must fix it; retrying will not help)
 *   ERR_KUBE_REVIEW_FAILED     any other status, or a body that is not a review
 */
import { HttpMethod, RequestContext, type KubeConfig } from '@kubernetes/client-node';
import { fetch } from 'undici';

/** One review that takes longer than this fails as unreachable (the auditor gets a 503, not a hang). */
export const REVIEW_TIMEOUT_MS = 5000;

export const TOKEN_REVIEW_PATH = '/apis/authentication.k8s.io/v1/tokenreviews';
export const ACCESS_REVIEW_PATH = '/apis/authorization.k8s.io/v1/subjectaccessreviews';

/** `status.user` of a TokenReview (authentication.k8s.io/v1 UserInfo). */
export interface UserInfo {
  username: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

export interface TokenReviewStatus {
  authenticated: boolean;
  user?: UserInfo;
  /** The audiences (of those asked for) the token is valid for. */
  audiences?: string[];
  error?: string;
}

/** `spec.resourceAttributes` of a SubjectAccessReview; `namespace` '' means all namespaces. */
export interface ResourceAttributes {
  group: string;
  resource: string;
  verb: string;
  namespace: string;
}

export interface AccessReviewStatus {
  allowed: boolean;
  denied?: boolean;
  reason?: string;
  evaluationError?: string;
}

export interface KubeReviews {
  reviewToken(token: string, audiences: readonly string[]): Promise<TokenReviewStatus>;
  reviewAccess(user: UserInfo, attributes: ResourceAttributes): Promise<AccessReviewStatus>;
}

export type KubeReviewErrorCode = 'ERR_KUBE_UNREACHABLE' | 'ERR_KUBE_REVIEW_FORBIDDEN' | 'ERR_KUBE_REVIEW_FAILED';

export class KubeReviewError extends Error {
  constructor(
    readonly code: KubeReviewErrorCode,
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

/** The TokenReview we POST (pure). Audiences are sent only when configured, as client-go does. */
export function toTokenReview(token: string, audiences: readonly string[]): object {
  return {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenReview',
    spec: { token, ...(audiences.length > 0 ? { audiences: [...audiences] } : {}) },
  };
}

/** The SubjectAccessReview we POST for `user` (pure): user, groups, uid and extra as the TokenReview gave them. */
export function toSubjectAccessReview(user: UserInfo, attributes: ResourceAttributes): object {
  return {
    apiVersion: 'authorization.k8s.io/v1',
    kind: 'SubjectAccessReview',
    spec: {
      user: user.username,
      ...(user.uid ? { uid: user.uid } : {}),
      ...(user.groups ? { groups: [...user.groups] } : {}),
      ...(user.extra ? { extra: user.extra } : {}),
      resourceAttributes: { ...attributes },
    },
  };
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every((s) => typeof s === 'string');

/** `status` of a TokenReview response, or a string saying what is wrong with it (pure). */
export function parseTokenReviewStatus(body: unknown): TokenReviewStatus | string {
  if (!isRecord(body) || body.kind !== 'TokenReview') return 'the answer is not a TokenReview';
  const s = body.status;
  if (!isRecord(s)) return 'the TokenReview has no status';
  const authenticated = s.authenticated === true;
  const out: TokenReviewStatus = { authenticated };
  if (typeof s.error === 'string' && s.error !== '') out.error = s.error;
  if (isStringArray(s.audiences)) out.audiences = s.audiences;
  if (!authenticated) return out;
  const u = s.user;
  if (!isRecord(u) || typeof u.username !== 'string' || u.username === '') return 'the TokenReview says authenticated but names no user';
  const user: UserInfo = { username: u.username };
  if (typeof u.uid === 'string' && u.uid !== '') user.uid = u.uid;
  if (isStringArray(u.groups)) user.groups = u.groups;
  if (isRecord(u.extra)) {
    const extra: Record<string, string[]> = {};
    for (const [k, v] of Object.entries(u.extra)) if (isStringArray(v)) extra[k] = v;
    user.extra = extra;
  }
  out.user = user;
  return out;
}

/** `status` of a SubjectAccessReview response, or a string saying what is wrong with it (pure). */
export function parseAccessReviewStatus(body: unknown): AccessReviewStatus | string {
  if (!isRecord(body) || body.kind !== 'SubjectAccessReview') return 'the answer is not a SubjectAccessReview';
  const s = body.status;
  if (!isRecord(s) || typeof s.allowed !== 'boolean') return 'the SubjectAccessReview has no status.allowed';
  return {
    allowed: s.allowed,
    ...(s.denied === true ? { denied: true } : {}),
    ...(typeof s.reason === 'string' && s.reason !== '' ? { reason: s.reason } : {}),
    ...(typeof s.evaluationError === 'string' && s.evaluationError !== '' ? { evaluationError: s.evaluationError } : {}),
  };
}

function statusMessage(body: unknown): string {
  return isRecord(body) && typeof body.message === 'string' ? `: ${body.message}` : '';
}

/** A short, token-free description of why no answer came (the cause's code: ECONNREFUSED, ...). */
function describeNetworkError(err: unknown): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return `no answer within ${REVIEW_TIMEOUT_MS} ms`;
  return String(e?.cause?.code ?? e?.cause?.message ?? e?.message ?? err);
}

/**
 * Creates the client; nothing is sent until the first review. `timeoutMs` bounds each request.
 * Throws nothing itself; each review rejects with a KubeReviewError as described above.
 */
export function createKubeReviews(kubeConfig: KubeConfig, opts: { timeoutMs?: number } = {}): KubeReviews {
  const timeoutMs = opts.timeoutMs ?? REVIEW_TIMEOUT_MS;
  const post = async (path: string, what: string, body: object): Promise<unknown> => {
    const cluster = kubeConfig.getCurrentCluster();
    if (!cluster) throw new KubeReviewError('ERR_KUBE_UNREACHABLE', 'the kubeconfig has no current cluster');
    const url = new URL(cluster.server + path);
    let res;
    let text: string;
    try {
      const ctx = new RequestContext(url.toString(), HttpMethod.POST);
      await kubeConfig.applySecurityAuthentication(ctx);
      res = await fetch(url, {
        method: 'POST',
        headers: { ...ctx.getHeaders(), accept: 'application/json', 'content-type': 'application/json' },
        dispatcher: ctx.getDispatcher(),
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
      });
      text = await res.text();
    } catch (err) {
      throw new KubeReviewError('ERR_KUBE_UNREACHABLE', `${what} to ${cluster.server}: ${describeNetworkError(err)}`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined; // a proxy's HTML error page: the status code alone is the message
    }
    if (res.status === 201 || res.status === 200) return parsed;
    const detail = `${what}: HTTP ${res.status}${statusMessage(parsed)}`;
    if (res.status === 401 || res.status === 403) throw new KubeReviewError('ERR_KUBE_REVIEW_FORBIDDEN', detail, res.status);
    if (res.status === 429 || res.status >= 500) throw new KubeReviewError('ERR_KUBE_UNREACHABLE', detail, res.status);
    throw new KubeReviewError('ERR_KUBE_REVIEW_FAILED', detail, res.status);
  };
  return {
    async reviewToken(token, audiences) {
      const status = parseTokenReviewStatus(await post(TOKEN_REVIEW_PATH, 'TokenReview', toTokenReview(token, audiences)));
      if (typeof status === 'string') throw new KubeReviewError('ERR_KUBE_REVIEW_FAILED', `TokenReview: ${status}`);
      return status;
    },
    async reviewAccess(user, attributes) {
      const status = parseAccessReviewStatus(await post(ACCESS_REVIEW_PATH, 'SubjectAccessReview', toSubjectAccessReview(user, attributes)));
      if (typeof status === 'string') throw new KubeReviewError('ERR_KUBE_REVIEW_FAILED', `SubjectAccessReview: ${status}`);
      return status;
    },
  };
}
