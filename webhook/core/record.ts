/**
 * The decision record: one per admission request, the auditor's evidence. Pure: the caller passes
 * the id (UUIDv7), the time and the digest; the store adds the hash-chain fields.
 */
import type { NamespaceMode, Provider } from './mapping.js';
import type { Reason } from './reasons.js';
import type { AddOperation, Decision, TektonLinks, Verdict } from './verdict.js';
import type { AdmissionRequest, GroupVersionKind } from './wire.js';

export type Endpoint = 'validate' | 'mutate';

export interface DecisionRecord {
  id: string;
  /** RFC 3339 UTC with microseconds, e.g. 2026-11-25T22:45:14.123456Z */
  time: string;
  requestUid: string;
  endpoint: Endpoint;
  operation: string;
  kind: GroupVersionKind;
  namespace: string;
  /** metadata.name, else metadata.generateName, else request.name. */
  name: string;
  user: { username: string; groups: string[] };
  serviceAccounts: string[];
  mode: NamespaceMode | null;
  verdict: Verdict;
  reasons: Reason[];
  mapping: { name: string; provider: Provider; subject: string } | null;
  policyTags: string[];
  /** The JSON Patch we returned. It never carries secret values: only names, ARNs, paths, tags. */
  patch: AddOperation[];
  /**
   * sha256 lowercase hex of the RFC 8785 canonical JSON of request.object (DESIGN "Decision
   * records"), reproducible from any copy of the object: `tzw decisions digest -f FILE`. Null when
   * request.object was absent/null (DELETE) and for input rejected before the envelope could be
   * read. The admission route computes it from the request.object it parsed (one parse per request).
   * Records written before record format v2 hold the sha256 of the whole request body instead.
   */
  objectDigest: string | null;
  tekton: TektonLinks;
  dryRun: boolean;
  /** Writer id (pod name / hostname); each writer keeps its own hash chain. */
  replica: string;
  durationMs: number;
  /**
   * Set on an `errored` record written because admission.deadlineMs answered while the record
   * with this id was already being committed: that record was not the answer, this one is.
   */
  supersedes?: string;
}

/** A record as stored: with its place in the writer's hash chain. */
export interface ChainedRecord extends DecisionRecord {
  seq: number;
  prevHash: string;
  hash: string;
  /** v2 (RECORD-V2.md): place in the namespace chain of this writer, 1, 2, ... */
  nsSeq?: number;
  /** v2: hash of the previous record of the same (replica, namespace); 64 zeros for the first. */
  nsPrevHash?: string;
}

export interface RecordMeta {
  id: string;
  time: string;
  endpoint: Endpoint;
  replica: string;
  durationMs: number;
  objectDigest: string | null;
}

function objectName(req: AdmissionRequest | undefined): string {
  const md = (req?.object?.metadata ?? req?.oldObject?.metadata) as Record<string, unknown> | undefined;
  if (typeof md?.name === 'string' && md.name) return md.name;
  if (typeof md?.generateName === 'string' && md.generateName) return md.generateName;
  return req?.name ?? '';
}

/**
 * Builds the record for a decision. `req` is undefined for input rejected before the envelope
 * could be read; then `requestUid` is what could be salvaged (or '').
 */
export function toRecord(meta: RecordMeta, decision: Decision, req: AdmissionRequest | undefined, requestUid = req?.uid ?? ''): DecisionRecord {
  return {
    id: meta.id,
    time: meta.time,
    requestUid,
    endpoint: meta.endpoint,
    operation: req?.operation ?? '',
    kind: req?.kind ?? { group: '', version: '', kind: '' },
    namespace: req?.namespace ?? '',
    name: objectName(req),
    user: { username: req?.userInfo.username ?? '', groups: req?.userInfo.groups ?? [] },
    serviceAccounts: decision.serviceAccounts,
    mode: decision.mode ?? null,
    verdict: decision.verdict,
    reasons: decision.reasons,
    mapping: decision.mapping ?? null,
    policyTags: decision.policyTags,
    patch: decision.patch,
    objectDigest: meta.objectDigest,
    tekton: decision.tekton,
    dryRun: req?.dryRun ?? false,
    replica: meta.replica,
    durationMs: meta.durationMs,
  };
}

/** The second last formatted and its "YYYY-MM-DDTHH:MM:SS" (a memo: every request in a second shares it). */
let memoSecond = -1n;
let memoPrefix = '';

/** Formats epoch microseconds as RFC 3339 UTC with exactly six fractional digits. */
export function formatMicros(epochMicros: bigint): string {
  const micros = Number(epochMicros % 1000000n);
  if (epochMicros < 0n) return new Date(Number(epochMicros / 1000n)).toISOString().slice(0, 19) + '.' + String(micros).padStart(6, '0') + 'Z';
  const second = epochMicros / 1000000n;
  if (second !== memoSecond) {
    memoPrefix = new Date(Number(second) * 1000).toISOString().slice(0, 19);
    memoSecond = second;
  }
  return memoPrefix + '.' + String(micros).padStart(6, '0') + 'Z';
}
