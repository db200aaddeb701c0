/**
 * Which ServiceAccounts a TaskRun or PipelineRun will run as, read from the raw object.
 *
 * Fields (tektoncd/pipeline docs/pipelineruns.md "Specifying ServiceAccount credentials",
 * pkg/apis/pipeline/{v1,v1beta1}/{taskrun,pipelinerun}_types.go):
 * - TaskRun (v1, v1beta1): `spec.serviceAccountName`.
 * - PipelineRun v1: `spec.taskRunTemplate.serviceAccountName` and `spec.taskRunSpecs[].serviceAccountName`.
 * - PipelineRun v1beta1: `spec.serviceAccountName` and `spec.taskRunSpecs[].taskServiceAccountName`.
 * An absent, null or empty run-wide field means Tekton's configured default. An empty
 * `taskRunSpecs[]` entry means "the run-wide one" (GetTaskRunSpec), which is already listed.
 * Null is read as absent: the API server drops nulls of non-nullable CRD fields.
 */
import { isObject, nonEmptyString, typeName, type JsonObject } from './object-fields.js';
import type { AccountUse } from './account-checks.js';

export type RunKind = 'TaskRun' | 'PipelineRun';
export type RunVersion = 'v1' | 'v1beta1';

export type RunAccounts =
  | { ok: true; accounts: AccountUse[] }
  /** `field` is the JSON path of the offending field, e.g. `spec.taskRunSpecs[1].serviceAccountName`. */
  | { ok: false; field: string; message: string };

class FieldError extends Error {
  constructor(readonly field: string, readonly got: unknown, readonly expected: string) {
    super(`${field} must be ${expected}, got ${typeName(got)}`);
  }
}

function optionalObject(v: unknown, field: string): JsonObject | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) throw new FieldError(field, v, 'an object');
  return v;
}

function optionalString(v: unknown, field: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new FieldError(field, v, 'a string');
  return v.length > 0 ? v : undefined;
}

/**
 * Lists the ServiceAccounts in order (run-wide first, then each `taskRunSpecs[]` override), each
 * once, with where it is named. `defaultServiceAccount` is Tekton's config-defaults
 * `default-service-account`; when that is empty too, Kubernetes uses `default`.
 * Never throws: a field of the wrong type yields `ok: false` naming the field.
 */
export function parseRunAccounts(kind: RunKind, version: RunVersion, object: JsonObject, defaultServiceAccount: string): RunAccounts {
  const byName = new Map<string, AccountUse>();
  const use = (name: string, source?: string): void => {
    const found = byName.get(name) ?? { name, sources: [] };
    byName.set(name, found);
    if (source !== undefined) found.sources.push(source);
  };
  const fallback = defaultServiceAccount || 'default';
  const noun = kind === 'TaskRun' ? 'the TaskRun' : 'the PipelineRun';
  try {
    const spec = optionalObject(object.spec, 'spec') ?? {};
    let runWideField: string;
    let runWide: string | undefined;
    if (kind === 'PipelineRun' && version === 'v1') {
      runWideField = 'spec.taskRunTemplate.serviceAccountName';
      const template = optionalObject(spec.taskRunTemplate, 'spec.taskRunTemplate');
      runWide = optionalString(template?.serviceAccountName, runWideField);
    } else {
      runWideField = 'spec.serviceAccountName';
      runWide = optionalString(spec.serviceAccountName, runWideField);
    }
    // A TaskRun has one ServiceAccount: saying where it came from adds nothing.
    if (runWide !== undefined) use(runWide, kind === 'TaskRun' ? undefined : `run-wide, ${runWideField}`);
    else use(fallback, `Tekton's default: ${noun} names none`);

    if (kind === 'PipelineRun') {
      const saKey = version === 'v1' ? 'serviceAccountName' : 'taskServiceAccountName';
      const specs = spec.taskRunSpecs;
      if (specs !== undefined && specs !== null) {
        if (!Array.isArray(specs)) throw new FieldError('spec.taskRunSpecs', specs, 'an array');
        specs.forEach((entry: unknown, i) => {
          const field = `spec.taskRunSpecs[${i}]`;
          if (!isObject(entry)) throw new FieldError(field, entry, 'an object');
          const sa = optionalString(entry[saKey], `${field}.${saKey}`);
          if (sa === undefined) return;
          const task = nonEmptyString(entry.pipelineTaskName);
          use(sa, task !== undefined ? `pipeline task "${task}"` : `${field}.${saKey}`);
        });
      }
    }
  } catch (err) {
    if (err instanceof FieldError) return { ok: false, field: err.field, message: err.message };
    throw err;
  }
  return { ok: true, accounts: [...byName.values()] };
}
