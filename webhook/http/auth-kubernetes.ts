/**
 * `auditApi.auth.mode: kubernetes`: Kubernetes decides who may read which decisions, the
 * convention of controller-runtime's metrics filter and kube-rbac-proxy (DESIGN "Auditors in a
 * cluster"). An auditor signs in with any token the API server accepts (`kubectl create token`)
 * and RBAC on the virtual resources `decisions` and `checkpoints` in group `audit.<domain>` decides:
 *
 *   authenticate  Bearer token → TokenReview (spec.audiences from config) → 401 when not authenticated
 *   authorize     SubjectAccessReview {user, groups, uid, extra, resourceAttributes {group, resource,
 *                 verb, namespace}} → 403 naming the missing permission
 *
 * Answers are cached per SHA-256 of the token (the token itself is never kept, logged or echoed):
 * authenticated 60 s, not authenticated 30 s; allowed 300 s, denied 30 s; each cache bounded. So a
 * revoked RoleBinding stops working within 300 s and a newly granted one works within 30 s, and a
 * token that expires is accepted for at most 60 s more (as the API server's own webhook token cache
 * does). The API server unreachable → 503 with Retry-After; our own reviews refused (the webhook's
 * ServiceAccount lacks system:auth-delegator) → 500 telling the admin what to bind.
 */
import { createHash } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { KubeReviewError, type AccessReviewStatus, type KubeReviews, type ResourceAttributes, type UserInfo } from '../kube/reviews.js';
import { createTtlCache } from './auth-cache.js';
import { AuthError, deny, setCaller, toBearerToken, type Access, type AuditAuth } from './auth.js';

export const AUTHENTICATED_TTL_MS = 60_000;
export const UNAUTHENTICATED_TTL_MS = 30_000;
export const ALLOWED_TTL_MS = 300_000;
export const DENIED_TTL_MS = 30_000;
/** Per cache; the least recently used answer goes first (a flood of tokens cannot grow memory). */
export const MAX_CACHE_ENTRIES = 10_000;
/** Seconds an auditor's client should wait when the API server could not be asked. */
export const RETRY_AFTER_SECONDS = 5;

export const UNREACHABLE_MESSAGE = 'cannot reach the Kubernetes API to check your token; retry';
const MISCONFIGURED_MESSAGE =
  'the webhook may not ask the Kubernetes API about tokens: its ServiceAccount must be bound to the ClusterRole system:auth-delegator (manifests/base/rbac.yaml); an admin must fix this, see the server log';

export interface KubernetesAuthOptions {
  reviews: KubeReviews;
  /** TokenReview spec.audiences; empty = the API server's own audiences. */
  audiences: readonly string[];
  /** RBAC API group of the virtual resources: `audit.<domain>`. */
  group: string;
  logger: Logger;
  /** Epoch ms; injected so tests can expire cache entries. */
  now?: () => number;
  maxCacheEntries?: number;
}

type Authentication = { ok: true; user: UserInfo } | { ok: false; message: string };

interface Identity {
  user: UserInfo;
  tokenHash: string;
}

/** `decisions.audit.tekton-zscaler.io`, as kubectl names a resource in a group. */
function qualified(a: ResourceAttributes): string {
  return `${a.resource}.${a.group}`;
}

/**
 * The 403 message for a denied SubjectAccessReview (pure): which permission is missing, how to
 * check it with kubectl, and — for a cluster-wide list of decisions — that a namespaced auditor
 * must name a namespace.
 */
export function toForbiddenMessage(username: string, a: ResourceAttributes, reason?: string): string {
  const what = `${a.verb} ${qualified(a)}`;
  const why = reason ? ` (${reason})` : '';
  if (a.namespace !== '') {
    return (
      `user "${username}" may not ${what} in namespace "${a.namespace}"${why}. ` +
      `Check with: kubectl auth can-i ${what} -n ${a.namespace}. ` +
      `An admin can grant it with a RoleBinding in "${a.namespace}" to a Role allowing ${a.verb} on ${a.resource} in API group ${a.group} (manifests/examples/auditor-rbac.yaml).`
    );
  }
  const grant = `An admin can grant it cluster-wide by binding the ClusterRole tekton-zscaler-auditor to you.`;
  if (a.resource === 'decisions' && a.verb === 'list') {
    return (
      `user "${username}" may not ${what} across all namespaces${why}. ` +
      `If you may read only some namespaces, add namespace=<namespace> to the query (tzw: --namespace; check with: kubectl auth can-i ${what} -n <namespace>). ${grant}`
    );
  }
  return `user "${username}" may not ${what} cluster-wide${why}. Check with: kubectl auth can-i ${what}. ${grant}`;
}

/** Hex SHA-256 of the token: the only form in which a token is kept (as a cache key). */
function toTokenHash(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export function createKubernetesAuth(opts: KubernetesAuthOptions): AuditAuth {
  const { reviews, logger, group } = opts;
  const audiences = [...opts.audiences];
  const now = opts.now ?? Date.now;
  const maxEntries = opts.maxCacheEntries ?? MAX_CACHE_ENTRIES;
  const authentications = createTtlCache<Authentication>({ maxEntries, now });
  const decisions = createTtlCache<AccessReviewStatus>({ maxEntries, now });
  const identities = new WeakMap<FastifyRequest, Identity>();

  /** Maps a review failure to the auditor's answer; the detail (never a token) goes to the log. */
  const failure = (err: unknown, what: string): AuthError => {
    if (err instanceof KubeReviewError && err.code === 'ERR_KUBE_UNREACHABLE') {
      logger.error({ err: { code: err.code, message: err.message } }, `cannot ${what}: the Kubernetes API did not answer`);
      return new AuthError(503, 'ERR_AUTH_UNAVAILABLE', UNREACHABLE_MESSAGE, { 'retry-after': String(RETRY_AFTER_SECONDS) });
    }
    const code = err instanceof KubeReviewError ? err.code : 'ERR_INTERNAL';
    logger.error({ err: { code, message: (err as Error).message } }, `cannot ${what}: the webhook's own review request was refused or misanswered`);
    return new AuthError(500, 'ERR_AUTH_MISCONFIGURED', MISCONFIGURED_MESSAGE);
  };

  const authenticateToken = async (token: string): Promise<Authentication> => {
    const status = await reviews.reviewToken(token, audiences);
    if (!status.authenticated || !status.user) {
      return { ok: false, message: `invalid bearer token: the Kubernetes API did not accept it${status.error ? ` (${status.error})` : ''}` };
    }
    // With spec.audiences, the API server lists the ones the token is valid for; none in common
    // means the token was made for another audience (client-go's webhook authenticator checks the same).
    if (audiences.length > 0 && !(status.audiences ?? []).some((a) => audiences.includes(a))) {
      return {
        ok: false,
        message: `invalid bearer token: it is not meant for this API (audience ${audiences.map((a) => `"${a}"`).join(' or ')}); create it with: kubectl create token <serviceaccount> --audience ${audiences[0]}`,
      };
    }
    return { ok: true, user: status.user };
  };

  return {
    async authenticate(req: FastifyRequest, reply: FastifyReply) {
      const header = req.headers.authorization;
      const token = toBearerToken(header);
      if (token === undefined) {
        return deny(
          reply,
          401,
          'invalid_token',
          header === undefined ? 'missing bearer token: send "Authorization: Bearer <token>" (e.g. from kubectl create token)' : 'the Authorization header is not "Bearer <token>"',
        );
      }
      const tokenHash = toTokenHash(token);
      let result: Authentication;
      try {
        ({ value: result } = await authentications.getOrLoad(tokenHash, () => authenticateToken(token), (r) => (r.ok ? AUTHENTICATED_TTL_MS : UNAUTHENTICATED_TTL_MS)));
      } catch (err) {
        const e = failure(err, 'review a token');
        return reply.code(e.statusCode).headers(e.headers).header('cache-control', 'no-store').send(e.toBody());
      }
      if (!result.ok) return deny(reply, 401, 'invalid_token', result.message);
      identities.set(req, { user: result.user, tokenHash });
      setCaller(req, { sub: result.user.username });
      return undefined;
    },

    async authorize(req: FastifyRequest, access: Access) {
      const identity = identities.get(req);
      // authenticate runs as the scope's onRequest hook; no identity here is a wiring bug: fail closed.
      if (!identity) throw new AuthError(500, 'ERR_INTERNAL', 'internal error: request was not authenticated before authorization');
      const attributes: ResourceAttributes = { group, resource: access.resource, verb: access.verb, namespace: access.namespace };
      const key = [identity.tokenHash, attributes.verb, attributes.resource, attributes.namespace].join('\0');
      let status: AccessReviewStatus;
      try {
        ({ value: status } = await decisions.getOrLoad(key, () => reviews.reviewAccess(identity.user, attributes), (s) => (s.allowed ? ALLOWED_TTL_MS : DENIED_TTL_MS)));
      } catch (err) {
        throw failure(err, 'review access');
      }
      if (!status.allowed) {
        throw new AuthError(403, 'ERR_FORBIDDEN', toForbiddenMessage(identity.user.username, attributes, status.reason), {}, attributes);
      }
    },
  };
}
