/**
 * The fake API server's authentication and authorization: TokenReview, SubjectAccessReview and
 * SelfSubjectAccessReview (what `kubectl auth can-i` sends), answered from issued tokens and a small
 * RBAC model — Roles, ClusterRoles, RoleBindings and ClusterRoleBindings, evaluated as the RBAC
 * authorizer does (k8s.io/kubernetes plugin/pkg/auth/authorizer/rbac):
 * - a cluster-wide request (namespace '') is allowed only through ClusterRoleBindings;
 * - a namespaced request also through RoleBindings in that namespace, to a Role there or a ClusterRole;
 * - rules match by apiGroups, resources and verbs, each with `*`; subjects by User name, Group, or
 *   ServiceAccount (`system:serviceaccount:NS:NAME`).
 * Shapes follow authentication.k8s.io/v1 and authorization.k8s.io/v1: 201 Created with the object
 * and its status; 400 for a TokenReview without a token; 422 (Invalid) for a SubjectAccessReview
 * without a user/group or without exactly one of resourceAttributes/nonResourceAttributes; 403 when
 * the caller itself may not create the review (no system:auth-delegator binding).
 * The built-in ClusterRole system:auth-delegator exists from the start, as in a real cluster; the
 * manifests' RBAC objects can be applied as they are.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** The audience of tokens the API server issues by default (kubectl create token without --audience). */
export const API_SERVER_AUDIENCE = 'https://kubernetes.default.svc.cluster.local';

export interface FakeUser {
  username: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

export interface Attributes {
  group: string;
  resource: string;
  verb: string;
  namespace: string;
}

export interface ReviewLog {
  kind: 'TokenReview' | 'SubjectAccessReview' | 'SelfSubjectAccessReview';
  /** Who sent it (the authenticated caller of the review request). */
  caller: string;
  /** The spec as received; a TokenReview's token is replaced by `token: '<issued to USER>'`. */
  spec: Obj;
}

export interface FakeAuthz {
  /**
   * Issues a token for `user`, like `kubectl create token`: valid for `audiences` (default the API
   * server's). ServiceAccount users get the groups the API server adds to them.
   */
  issueToken(user: FakeUser, opts?: { audiences?: string[] }): string;
  /** The token stops authenticating (expired or its ServiceAccount deleted). */
  revokeToken(token: string): void;
  /** Creates or replaces RBAC objects (Role, ClusterRole, RoleBinding, ClusterRoleBinding); others are ignored. */
  apply(...objects: Obj[]): void;
  /** Deletes one RBAC object. */
  delete(kind: string, name: string, namespace?: string): void;
  /** The RBAC decision for `user` (what `kubectl auth can-i --as` answers). */
  canI(user: FakeUser, attributes: Attributes): boolean;
  /** The next `times` review requests get HTTP `status` (500, 429, 403 ...) instead of an answer. */
  failNext(status: number, times?: number): void;
  reviews: ReviewLog[];
  /** Handles a request when it is one of the review endpoints (returns true), else returns false. */
  serve(req: IncomingMessage, res: ServerResponse, url: URL): boolean;
}

const AUTH_DELEGATOR: Obj = {
  apiVersion: 'rbac.authorization.k8s.io/v1',
  kind: 'ClusterRole',
  metadata: { name: 'system:auth-delegator' },
  rules: [
    { apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] },
    { apiGroups: ['authorization.k8s.io'], resources: ['subjectaccessreviews'], verbs: ['create'] },
  ],
};

const RBAC_KINDS = ['Role', 'ClusterRole', 'RoleBinding', 'ClusterRoleBinding'];

const status = (code: number, reason: string, message: string): Obj => ({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code });

const matches = (list: unknown, value: string): boolean => Array.isArray(list) && (list.includes('*') || list.includes(value));

function ruleAllows(rule: Obj, a: Attributes): boolean {
  if (Array.isArray(rule.resourceNames) && rule.resourceNames.length > 0) return false; // we never ask about one named object
  return matches(rule.apiGroups, a.group) && matches(rule.resources, a.resource) && matches(rule.verbs, a.verb);
}

function subjectMatches(subject: Obj, user: FakeUser, bindingNamespace: string | undefined): boolean {
  switch (subject.kind) {
    case 'User':
      return subject.name === user.username;
    case 'Group':
      return (user.groups ?? []).includes(subject.name);
    case 'ServiceAccount':
      return user.username === `system:serviceaccount:${subject.namespace ?? bindingNamespace}:${subject.name}`;
    default:
      return false;
  }
}

/** ServiceAccount users get these groups from the API server (and every authenticated user the last). */
function withDefaultGroups(user: FakeUser): FakeUser {
  const m = /^system:serviceaccount:([^:]+):[^:]+$/.exec(user.username);
  const groups = new Set(user.groups ?? []);
  if (m) {
    groups.add('system:serviceaccounts');
    groups.add(`system:serviceaccounts:${m[1]}`);
  }
  groups.add('system:authenticated');
  return { ...user, groups: [...groups] };
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    return undefined;
  }
}

export function createFakeAuthz(opts: { callerToken: string; caller: FakeUser }): FakeAuthz {
  const tokens = new Map<string, { user: FakeUser; audiences: string[] }>();
  tokens.set(opts.callerToken, { user: withDefaultGroups(opts.caller), audiences: [API_SERVER_AUDIENCE] });
  const objects = new Map<string, Obj>();
  const keyOf = (kind: string, name: string, namespace?: string): string => `${kind}/${namespace ?? ''}/${name}`;
  objects.set(keyOf('ClusterRole', AUTH_DELEGATOR.metadata.name), AUTH_DELEGATOR);
  const failures: number[] = [];
  const reviews: ReviewLog[] = [];

  const decide = (user: FakeUser, a: Attributes): { allowed: boolean; reason?: string } => {
    const rulesOf = (ref: Obj, namespace: string | undefined): Obj[] => {
      const role = ref.kind === 'ClusterRole' ? objects.get(keyOf('ClusterRole', ref.name)) : objects.get(keyOf('Role', ref.name, namespace));
      return (role?.rules as Obj[] | undefined) ?? [];
    };
    for (const b of objects.values()) {
      const isCluster = b.kind === 'ClusterRoleBinding';
      if (!isCluster && b.kind !== 'RoleBinding') continue;
      const ns = b.metadata.namespace as string | undefined;
      if (!isCluster && (a.namespace === '' || ns !== a.namespace)) continue;
      const subject = ((b.subjects as Obj[] | undefined) ?? []).find((s) => subjectMatches(s, user, ns));
      if (!subject) continue;
      if (rulesOf(b.roleRef, ns).some((r) => ruleAllows(r, a))) {
        const where = isCluster ? `ClusterRoleBinding "${b.metadata.name}"` : `RoleBinding "${b.metadata.name}/${ns}"`;
        return { allowed: true, reason: `RBAC: allowed by ${where} of ${b.roleRef.kind} "${b.roleRef.name}" to ${subject.kind} "${subject.name}"` };
      }
    }
    return { allowed: false };
  };

  const send = (res: ServerResponse, code: number, body: Obj): void => {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };

  const callerOf = (req: IncomingMessage): FakeUser | undefined => {
    const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
    const t = m ? tokens.get(m[1]!) : undefined;
    return t && t.audiences.includes(API_SERVER_AUDIENCE) ? t.user : undefined;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse, kind: ReviewLog['kind']): Promise<void> => {
    const caller = callerOf(req);
    if (!caller) return send(res, 401, status(401, 'Unauthorized', 'Unauthorized'));
    // This fake speaks JSON only; a real server answers an unsupported body type with 415.
    const contentType = String(req.headers['content-type'] ?? '').split(';')[0]!.trim();
    if (contentType !== 'application/json') {
      req.resume();
      return send(res, 415, status(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json`));
    }
    const body = (await readJson(req)) as Obj | undefined;
    const failure = failures.shift();
    if (failure !== undefined) return send(res, failure, status(failure, failure === 429 ? 'TooManyRequests' : failure >= 500 ? 'InternalError' : 'Forbidden', `injected failure ${failure}`));
    if (req.method !== 'POST') return send(res, 405, status(405, 'MethodNotAllowed', `${req.method} is not supported`));
    const group = kind === 'TokenReview' ? 'authentication.k8s.io' : 'authorization.k8s.io';
    const resource = `${kind.toLowerCase()}s`;
    if (kind !== 'SelfSubjectAccessReview' && !decide(caller, { group, resource, verb: 'create', namespace: '' }).allowed) {
      return send(res, 403, status(403, 'Forbidden', `${resource}.${group} is forbidden: User "${caller.username}" cannot create resource "${resource}" in API group "${group}" at the cluster scope`));
    }
    if (!body || body.kind !== kind || typeof body.spec !== 'object' || body.spec === null) {
      return send(res, 400, status(400, 'BadRequest', `the body is not a ${kind}`));
    }
    const spec = body.spec as Obj;
    if (kind === 'TokenReview') {
      if (typeof spec.token !== 'string' || spec.token === '') return send(res, 400, status(400, 'BadRequest', 'token is required for TokenReview in authentication'));
      const found = tokens.get(spec.token);
      const asked: string[] = Array.isArray(spec.audiences) && spec.audiences.length > 0 ? spec.audiences : [API_SERVER_AUDIENCE];
      reviews.push({ kind, caller: caller.username, spec: { ...spec, token: found ? `<issued to ${found.user.username}>` : '<unknown>' } });
      const valid = found ? asked.filter((a) => found.audiences.includes(a)) : [];
      const out: Obj = found && valid.length > 0
        ? { authenticated: true, user: found.user, audiences: valid }
        : { user: {}, error: found ? '[invalid bearer token, token audiences is invalid for the target audiences]' : '[invalid bearer token, token lookup failed]' };
      return send(res, 201, { kind, apiVersion: 'authentication.k8s.io/v1', metadata: { creationTimestamp: null }, spec, status: out });
    }
    const ra = spec.resourceAttributes as Obj | undefined;
    const hasNonResource = spec.nonResourceAttributes !== undefined;
    const user: FakeUser | undefined =
      kind === 'SelfSubjectAccessReview' ? caller : spec.user || (Array.isArray(spec.groups) && spec.groups.length) ? { username: spec.user ?? '', uid: spec.uid, groups: spec.groups, extra: spec.extra } : undefined;
    const problems: string[] = [];
    if (!user) problems.push('spec.user: Invalid value: "": at least one of user or group must be specified');
    if ((ra === undefined) === !hasNonResource) problems.push('spec.resourceAttributes: Invalid value: exactly one of nonResourceAttributes or resourceAttributes must be specified');
    if (problems.length > 0) return send(res, 422, status(422, 'Invalid', `${kind}.authorization.k8s.io "" is invalid: ${problems.join(', ')}`));
    reviews.push({ kind, caller: caller.username, spec });
    const answer = ra
      ? decide(user!, { group: ra.group ?? '', resource: ra.resource ?? '', verb: ra.verb ?? '', namespace: ra.namespace ?? '' })
      : { allowed: false };
    return send(res, 201, { kind, apiVersion: 'authorization.k8s.io/v1', metadata: { creationTimestamp: null }, spec, status: answer });
  };

  const ROUTES: Record<string, ReviewLog['kind']> = {
    '/apis/authentication.k8s.io/v1/tokenreviews': 'TokenReview',
    '/apis/authorization.k8s.io/v1/subjectaccessreviews': 'SubjectAccessReview',
    '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews': 'SelfSubjectAccessReview',
  };

  return {
    issueToken(user, o = {}) {
      const token = `eyJ${randomBytes(24).toString('base64url')}.${randomBytes(32).toString('base64url')}.${randomBytes(16).toString('base64url')}`;
      tokens.set(token, { user: withDefaultGroups(user), audiences: o.audiences ?? [API_SERVER_AUDIENCE] });
      return token;
    },
    revokeToken(token) {
      tokens.delete(token);
    },
    apply(...list) {
      for (const o of list) {
        if (!RBAC_KINDS.includes(o?.kind)) continue;
        const namespaced = o.kind === 'Role' || o.kind === 'RoleBinding';
        if (namespaced && !o.metadata?.namespace) throw new Error(`${o.kind} ${o.metadata?.name} needs metadata.namespace`);
        objects.set(keyOf(o.kind, o.metadata.name, namespaced ? o.metadata.namespace : undefined), o);
      }
    },
    delete(kind, name, namespace) {
      objects.delete(keyOf(kind, name, namespace));
    },
    canI: (user, a) => decide(withDefaultGroups(user), a).allowed,
    failNext(code, times = 1) {
      for (let i = 0; i < times; i++) failures.push(code);
    },
    reviews,
    serve(req, res, url) {
      const kind = ROUTES[url.pathname];
      if (!kind) return false;
      void handle(req, res, kind);
      return true;
    },
  };
}
