/**
 * Who may read the audit API. Every mode is an `AuditAuth`: `authenticate` (the protected scope's
 * onRequest hook: answers 401/503 itself) and `authorize(req, access)` (called by each route once it
 * knows what is read: the namespace filter of a list, the namespace of a fetched record; throws an
 * AuthError 403/503). `registerAuth` wires both into a fastify scope and fails closed: a route that
 * answers 2xx without having called `authorize` gets a 500 instead (so a new route cannot forget it).
 * Modes: none (loopback only), oidc (below), kubernetes (auth-kubernetes.ts: TokenReview +
 * SubjectAccessReview).
 *
 * OIDC: an access/ID token (JWT) checked with jose against the issuer's JWKS, issuer and audience,
 * plus a required group; any authenticated member of the group may read everything.
 *
 * Tokens must carry `exp` (a token that never expires is refused); clocks may differ by
 * CLOCK_TOLERANCE_SECONDS. Outcomes: no/invalid/expired/wrong-issuer/wrong-audience token → 401 with
 * `WWW-Authenticate: Bearer error="invalid_token"`; a valid token without the group → 403
 * (`error="insufficient_scope"`); the issuer's JWKS unreachable or broken → 503 (the caller did
 * nothing wrong, so a 401 would mislead). The token itself is never echoed or logged.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { createRemoteJWKSet, jwtVerify, type JWTPayload } from 'jose';

export interface OidcAuthOptions {
  issuer: string;
  jwksUri: string;
  audience: string;
  /** Group the caller must belong to. */
  group: string;
  /** Claim holding the caller's groups: an array of strings or a space-separated string. */
  groupsClaim: string;
}

/** Who called, as recorded in the request log. `sub` is undefined when auth is off. */
export interface Caller {
  sub: string | undefined;
}

/** An onRequest hook; when it answers (401/403/503) it resolves to the reply, as fastify asks of async hooks. */
export type AuthHook = (req: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply | undefined>;

/** The virtual RBAC resources of group `audit.<domain>` (DESIGN "Auditors in a cluster"). */
export type AuditResource = 'decisions' | 'checkpoints';

/** What a request reads: `namespace` '' means all namespaces (a cluster-wide list). */
export interface Access {
  verb: 'get' | 'list';
  resource: AuditResource;
  namespace: string;
}

export interface AuditAuth {
  authenticate: AuthHook;
  /** Resolves when the authenticated caller may do `access`; else throws an AuthError (403, 503, 500). */
  authorize(req: FastifyRequest, access: Access): Promise<void>;
}

/**
 * An auth answer thrown from `authorize` (or built by `authenticate`): the status, a stable code,
 * a message for the auditor (never a token), extra headers (Retry-After, WWW-Authenticate) and, for
 * a 403 in kubernetes mode, the missing permission as data (the console shows it).
 */
export class AuthError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
    readonly missing?: { group: string; resource: string; verb: string; namespace: string },
  ) {
    super(message);
    if (statusCode === 403 && !headers['www-authenticate']) {
      this.headers = { ...headers, 'www-authenticate': `Bearer error="insufficient_scope", error_description="${toAuthParam(message)}"` };
    }
  }

  toBody(): { code: string; message: string; missing?: AuthError['missing'] } {
    return { code: this.code, message: this.message, ...(this.missing ? { missing: this.missing } : {}) };
  }
}

// A signature made by the wrong key, a malformed or expired token, a claim mismatch: the token is at
// fault. Anything else from jose (JWKS timeout, bad JWKS document, HTTP error) is the issuer's.
const TOKEN_FAULTS: Record<string, string> = {
  ERR_JWT_EXPIRED: 'the token has expired',
  ERR_JWT_CLAIM_VALIDATION_FAILED: '',
  ERR_JWT_INVALID: '',
  ERR_JWS_INVALID: 'the token is not a well-formed JWT',
  ERR_JWS_SIGNATURE_VERIFICATION_FAILED: 'the token signature does not verify',
  ERR_JWKS_NO_MATCHING_KEY: "the token was not signed by one of the issuer's keys",
  ERR_JWKS_MULTIPLE_MATCHING_KEYS: 'the token does not name its key (kid) and several keys match',
  ERR_JOSE_ALG_NOT_ALLOWED: 'the token signature algorithm is not allowed',
  ERR_JOSE_NOT_SUPPORTED: 'the token uses an unsupported algorithm or key type',
};

/** Clock skew tolerated between the issuer and this server. */
export const CLOCK_TOLERANCE_SECONDS = 30;

const callers = new WeakMap<FastifyRequest, Caller>();

/** The authenticated caller of a request, once the auth hook has run. */
export function callerOf(req: FastifyRequest): Caller | undefined {
  return callers.get(req);
}

/** Records who called (for the request log); used by every mode's authenticate. */
export function setCaller(req: FastifyRequest, caller: Caller): void {
  callers.set(req, caller);
}

/** The token of an `Authorization: Bearer <token>` header (scheme case-insensitive), else undefined. */
export function toBearerToken(header: string | undefined): string | undefined {
  if (typeof header !== 'string') return undefined;
  const m = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(header);
  return m?.[1];
}

/**
 * The caller's groups from a claim value: an array of strings, or a space-separated string (as
 * some issuers emit `scope`-style claims). Undefined when the claim has another shape.
 */
export function parseGroups(value: unknown): string[] | undefined {
  if (typeof value === 'string') return value.split(' ').filter((g) => g !== '');
  if (Array.isArray(value) && value.every((g) => typeof g === 'string')) return value as string[];
  return undefined;
}

/**
 * Reads a claim by exact name first (namespaced claims such as `https://example.com/groups` contain
 * dots), then as a dotted path into nested objects (Keycloak's `realm_access.roles`).
 */
export function claimAt(payload: JWTPayload, name: string): unknown {
  if (Object.hasOwn(payload, name)) return payload[name];
  let v: unknown = payload;
  for (const part of name.split('.')) {
    if (typeof v !== 'object' || v === null || Array.isArray(v) || !Object.hasOwn(v, part)) return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  return v;
}

/** RFC 6750 §3: error_description allows only %x20-21 / %x23-5B / %x5D-7E (no quote, no backslash). */
function toAuthParam(s: string): string {
  return s.replace(/[^\x20\x21\x23-\x5b\x5d-\x7e]/g, "'");
}

/** Answers 401/403 with a WWW-Authenticate challenge (RFC 6750) and `{code, message}`. */
export function deny(reply: FastifyReply, status: 401 | 403, error: 'invalid_token' | 'insufficient_scope', message: string): FastifyReply {
  return reply
    .code(status)
    .header('www-authenticate', `Bearer error="${error}", error_description="${toAuthParam(message)}"`)
    .header('cache-control', 'no-store')
    .send({ code: status === 401 ? 'ERR_UNAUTHENTICATED' : 'ERR_FORBIDDEN', message });
}

function errCode(err: unknown): string {
  return typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'string' ? (err as { code: string }).code : '';
}

/**
 * Validates options and builds the onRequest hook. The JWKS is fetched lazily and cached by jose
 * (refetched when a token names an unknown kid, at most every 30 s), so key rotation at the issuer
 * needs no restart. Throws ERR_AUTH_CONFIG when an option is missing or the JWKS URL is not http(s).
 */
export function createBearerAuth(opts: OidcAuthOptions, logger: Logger): AuditAuth {
  const missing = (['issuer', 'jwksUri', 'audience', 'group', 'groupsClaim'] as const).filter((k) => !opts[k]);
  if (missing.length) throw Object.assign(new Error(`audit API auth mode "oidc" needs ${missing.join(', ')}`), { code: 'ERR_AUTH_CONFIG' });
  let url: URL;
  try {
    url = new URL(opts.jwksUri);
  } catch {
    throw Object.assign(new Error(`audit API auth jwksUri "${opts.jwksUri}" is not a URL`), { code: 'ERR_AUTH_CONFIG' });
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw Object.assign(new Error(`audit API auth jwksUri must be an http(s) URL, got "${url.protocol}"`), { code: 'ERR_AUTH_CONFIG' });
  }
  if (url.protocol === 'http:' && !['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)) {
    logger.warn({ jwksUri: opts.jwksUri }, 'audit API auth fetches the issuer JWKS over plain http: anyone on the path could swap the keys; use https');
  }
  const keys = createRemoteJWKSet(url);
  const { issuer, audience, group, groupsClaim } = opts;

  const authenticate: AuthHook = async (req, reply) => {
    const header = req.headers.authorization;
    const token = toBearerToken(header);
    if (token === undefined) {
      return deny(reply, 401, 'invalid_token', header === undefined ? 'missing bearer token: send "Authorization: Bearer <JWT>"' : 'the Authorization header is not "Bearer <JWT>"');
    }
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, keys, { issuer, audience, requiredClaims: ['exp'], clockTolerance: CLOCK_TOLERANCE_SECONDS }));
    } catch (err) {
      const code = errCode(err);
      const known = TOKEN_FAULTS[code];
      if (known === undefined) {
        logger.error({ err: { code, message: (err as Error).message }, jwksUri: opts.jwksUri }, 'cannot verify audit API tokens: the issuer JWKS is unavailable');
        return reply.code(503).header('retry-after', '30').send({ code: 'ERR_AUTH_UNAVAILABLE', message: "cannot verify the token now: the issuer's key set (JWKS) could not be loaded" });
      }
      return deny(reply, 401, 'invalid_token', `invalid bearer token: ${known || (err as Error).message}`);
    }
    const sub = typeof payload.sub === 'string' ? payload.sub : undefined;
    callers.set(req, { sub });
    const groups = parseGroups(claimAt(payload, groupsClaim));
    if (!groups?.includes(group)) {
      const why = groups === undefined ? `the token has no "${groupsClaim}" claim listing groups` : `the token's "${groupsClaim}" claim does not include "${group}"`;
      return deny(reply, 403, 'insufficient_scope', `access to decision records requires group "${group}": ${why}`);
    }
    return undefined;
  };
  // Members of the group may read every namespace: the group check above is the whole policy.
  return { authenticate, authorize: async () => undefined };
}

/** `auth.mode: none` (loopback only, enforced by the config loader): everyone is anonymous and may read all. */
export function createNoAuth(): AuditAuth {
  return {
    authenticate: async (req) => {
      callers.set(req, { sub: undefined });
      return undefined;
    },
    authorize: async () => undefined,
  };
}

/**
 * The per-scope authorization check routes call: `auth.authorize`, remembered so `registerAuth`'s
 * guard can tell a route that asked from one that forgot.
 */
const authorized = new WeakSet<FastifyRequest>();
const scopes = new WeakMap<FastifyRequest, AuditAuth>();

/**
 * Checks that the caller of `req` may do `access` (throws AuthError otherwise). Every route in a
 * scope wired by `registerAuth` must call it before answering 2xx.
 */
export async function authorize(req: FastifyRequest, access: Access): Promise<void> {
  const auth = scopes.get(req);
  if (!auth) throw new AuthError(500, 'ERR_INTERNAL', 'internal error: route is not in an authenticated scope');
  await auth.authorize(req, access);
  authorized.add(req);
}

/**
 * Wires `auth` into a fastify scope (a plugin body): authenticate on every request, and a guard
 * that turns a 2xx answer from a route that never called `authorize` into a 500 (fail closed).
 * Other plugins (rate limits on failed sign-ins) register beside it in the same scope.
 */
export function registerAuth(scope: FastifyInstance, auth: AuditAuth, logger: Logger): void {
  scope.addHook('onRequest', async (req, reply) => {
    scopes.set(req, auth);
    return auth.authenticate(req, reply);
  });
  scope.addHook('onSend', async (req, reply, payload) => {
    if (reply.statusCode >= 300 || authorized.has(req)) return payload;
    logger.error({ route: req.routeOptions.url }, 'audit API route answered without an authorization check; refused (call authorize() in the route)');
    if (payload && typeof (payload as { destroy?: unknown }).destroy === 'function') (payload as { destroy(): void }).destroy();
    reply.code(500).header('content-type', 'application/json; charset=utf-8').removeHeader('content-disposition');
    return JSON.stringify({ code: 'ERR_INTERNAL', message: 'internal error: this route did not check authorization; see the server log' });
  });
}
