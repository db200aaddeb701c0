/**
 * AdmissionReview `admission.k8s.io/v1` wire types, the envelope parser and the one renderer of the
 * response. Nothing else in the code base builds an AdmissionReview: a response always echoes the
 * request's apiVersion, kind and uid, and a patch is always base64 JSON Patch with `patchType`.
 * https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#response
 */
import type { Decision } from './verdict.js';
import { isAllowed } from './verdict.js';

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';
export const ADMISSION_KIND = 'AdmissionReview';
export const OPERATIONS = ['CREATE', 'UPDATE', 'DELETE', 'CONNECT'] as const;
export type Operation = (typeof OPERATIONS)[number];

export interface GroupVersionKind {
  group: string;
  version: string;
  kind: string;
}

export interface UserInfo {
  username?: string;
  uid?: string;
  groups?: string[];
}

export type KubeObject = Record<string, unknown>;

export interface AdmissionRequest {
  uid: string;
  kind: GroupVersionKind;
  resource?: { group: string; version: string; resource: string };
  subResource?: string;
  name?: string;
  namespace?: string;
  operation: Operation;
  userInfo: UserInfo;
  /** null only for DELETE. */
  object: KubeObject | null;
  oldObject?: KubeObject | null;
  dryRun: boolean;
}

export interface AdmissionReviewRequest {
  apiVersion: typeof ADMISSION_API_VERSION;
  kind: typeof ADMISSION_KIND;
  request: AdmissionRequest;
}

export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  status?: { code: number; reason?: string; message?: string };
  patch?: string;
  patchType?: 'JSONPatch';
  warnings?: string[];
  auditAnnotations?: Record<string, string>;
}

export interface AdmissionReviewResponse {
  apiVersion: typeof ADMISSION_API_VERSION;
  kind: typeof ADMISSION_KIND;
  response: AdmissionResponse;
}

export type ParseResult =
  | { ok: true; review: AdmissionReviewRequest }
  | { ok: false; message: string; uid?: string };

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'string');
}

/**
 * Checks the envelope of an already JSON-decoded body. Never throws. On failure returns a message
 * naming the first offending field (and the uid when it was readable, so the caller can record it).
 * The object itself is kept as-is (by reference): rules read it, patches are built against it.
 */
export function parseAdmissionReview(body: unknown): ParseResult {
  if (!isRecord(body)) return { ok: false, message: 'body must be a JSON object (an AdmissionReview)' };
  if (body.apiVersion !== ADMISSION_API_VERSION) {
    return { ok: false, message: `apiVersion must be "${ADMISSION_API_VERSION}", got ${JSON.stringify(body.apiVersion) ?? 'nothing'}` };
  }
  if (body.kind !== ADMISSION_KIND) {
    return { ok: false, message: `kind must be "${ADMISSION_KIND}", got ${JSON.stringify(body.kind) ?? 'nothing'}` };
  }
  const r = body.request;
  if (!isRecord(r)) return { ok: false, message: 'request is missing or not an object' };
  if (typeof r.uid !== 'string' || r.uid.length === 0) return { ok: false, message: 'request.uid is missing or not a non-empty string' };
  const uid = r.uid;
  const fail = (message: string): ParseResult => ({ ok: false, message, uid });
  const k = r.kind;
  if (!isRecord(k) || typeof k.group !== 'string' || typeof k.version !== 'string' || typeof k.kind !== 'string') {
    return fail('request.kind must be an object with string group, version and kind');
  }
  if (typeof r.operation !== 'string' || !(OPERATIONS as readonly string[]).includes(r.operation)) {
    return fail(`request.operation must be one of ${OPERATIONS.join(', ')}`);
  }
  const operation = r.operation as Operation;
  if (r.namespace !== undefined && typeof r.namespace !== 'string') return fail('request.namespace must be a string');
  if (r.name !== undefined && typeof r.name !== 'string') return fail('request.name must be a string');
  if (r.subResource !== undefined && typeof r.subResource !== 'string') return fail('request.subResource must be a string');
  if (r.dryRun !== undefined && typeof r.dryRun !== 'boolean') return fail('request.dryRun must be a boolean');
  let userInfo: UserInfo = {};
  if (r.userInfo !== undefined) {
    const u = r.userInfo;
    if (!isRecord(u)) return fail('request.userInfo must be an object');
    if (u.username !== undefined && typeof u.username !== 'string') return fail('request.userInfo.username must be a string');
    if (u.uid !== undefined && typeof u.uid !== 'string') return fail('request.userInfo.uid must be a string');
    if (u.groups !== undefined && !isStringArray(u.groups)) return fail('request.userInfo.groups must be an array of strings');
    userInfo = u as UserInfo;
  }
  let object: KubeObject | null;
  if (isRecord(r.object)) object = r.object;
  else if ((r.object === null || r.object === undefined) && operation === 'DELETE') object = null;
  else return fail(r.object === undefined || r.object === null ? 'request.object is missing' : 'request.object must be an object');
  if (r.oldObject !== undefined && r.oldObject !== null && !isRecord(r.oldObject)) return fail('request.oldObject must be an object');
  if (object !== null && object.metadata !== undefined && !isRecord(object.metadata)) return fail('request.object.metadata must be an object');
  const resource = isRecord(r.resource) ? (r.resource as AdmissionRequest['resource']) : undefined;
  const request: AdmissionRequest = {
    uid,
    kind: { group: k.group, version: k.version, kind: k.kind },
    operation,
    userInfo,
    object,
    dryRun: r.dryRun === true,
  };
  if (resource) request.resource = resource;
  if (typeof r.subResource === 'string') request.subResource = r.subResource;
  if (typeof r.name === 'string') request.name = r.name;
  if (typeof r.namespace === 'string') request.namespace = r.namespace;
  if (isRecord(r.oldObject)) request.oldObject = r.oldObject;
  return { ok: true, review: { apiVersion: ADMISSION_API_VERSION, kind: ADMISSION_KIND, request } };
}

/**
 * The one renderer: decision → AdmissionReview response. Fills uid, allowed, status for denials and
 * errors, the base64 JSON Patch with patchType, warnings, and auditAnnotations linking the
 * Kubernetes audit log to our decision record (`<domain>/decision-id`, `<domain>/verdict`; the API
 * server prefixes them with the webhook configuration name).
 */
/** `patchJson`: JSON.stringify(decision.patch) when the caller already has it (else computed here). */
export function renderReview(uid: string, decision: Decision, decisionId: string, patchJson?: string): AdmissionReviewResponse {
  const allowed = isAllowed(decision.verdict);
  const response: AdmissionResponse = {
    uid,
    allowed,
    auditAnnotations: { 'decision-id': decisionId, verdict: decision.verdict },
  };
  if (!allowed) {
    response.status = { code: decision.status.code, reason: decision.status.reason, message: decision.message };
  }
  if (allowed && decision.patch.length > 0) {
    response.patch = Buffer.from(patchJson ?? JSON.stringify(decision.patch)).toString('base64');
    response.patchType = 'JSONPatch';
  }
  if (decision.warnings.length > 0) response.warnings = decision.warnings;
  return { apiVersion: ADMISSION_API_VERSION, kind: ADMISSION_KIND, response };
}
