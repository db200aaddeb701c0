/**
 * The validate rule for Tekton TaskRuns and PipelineRuns (DESIGN.md "Admission behaviour"): every
 * ServiceAccount a run will use must be claimed by exactly one valid IdentityMapping. Pure.
 */
import { TEKTON } from '../keys.js';
import type { Facts } from '../mapping.js';
import type { DecideOptions } from '../options.js';
import { reason, type ReasonCode } from '../reasons.js';
import { allowed, denied, rejected, warned, type Decision, type DecisionContext, type TektonLinks } from '../verdict.js';
import type { AdmissionRequest } from '../wire.js';
import {
  checkAccounts, describeProblems, toMappingContext, toNamespaceStanding, toProblemReasons, unknownNamespaceNote,
} from './account-checks.js';
import { isObject, labelValue, nonEmptyString, objectName, type JsonObject } from './object-fields.js';
import { parseRunAccounts, type RunKind, type RunVersion } from './run-accounts.js';

const RUN_VERSIONS: readonly string[] = ['v1', 'v1beta1'] satisfies RunVersion[];

function isRunKind(kind: string): kind is RunKind {
  return kind === 'TaskRun' || kind === 'PipelineRun';
}

/** Links for the decision record: the run itself and, for a PipelineRun's child TaskRun, its parents. */
function runLinks(kind: RunKind, object: JsonObject | null | undefined): TektonLinks {
  const name = objectName(object);
  if (kind === 'PipelineRun') return name ? { pipelineRun: name } : {};
  const links: TektonLinks = {};
  if (name) links.taskRun = name;
  const spec = object?.spec;
  const taskRef = isObject(spec) && isObject(spec.taskRef) ? nonEmptyString(spec.taskRef.name) : undefined;
  const task = labelValue(object, TEKTON.taskLabel) ?? taskRef;
  const pipelineRun = labelValue(object, TEKTON.pipelineRunLabel);
  const pipelineTask = labelValue(object, TEKTON.pipelineTaskLabel);
  if (task) links.task = task;
  if (pipelineRun) links.pipelineRun = pipelineRun;
  if (pipelineTask) links.pipelineTask = pipelineTask;
  return links;
}

/**
 * Decides a validate request for a TaskRun or PipelineRun.
 *
 * - Not `tekton.dev` v1/v1beta1 TaskRun/PipelineRun → `allowed` KIND_NOT_CHECKED.
 * - UPDATE, DELETE, CONNECT → `allowed` OPERATION_NOT_CHECKED (the ServiceAccount is immutable after
 *   creation, and a cancel must never be blocked by a later mapping change).
 * - A ServiceAccount field or its parents of the wrong type, or no namespace → `rejected`
 *   OBJECT_MALFORMED naming the field.
 * - Namespace known without a mode → `allowed` NAMESPACE_NOT_ENROLLED; unknown to the cache → enforce.
 * - Any ServiceAccount unmapped, conflicting or invalid → `denied` 422/Invalid in enforce, `warned`
 *   in audit, with one reason per problem (TASKRUN_SA_UNMAPPED / PIPELINERUN_SA_UNMAPPED,
 *   MAPPING_CONFLICT, MAPPING_INVALID) and a message naming the namespace, accounts and fix.
 * - All mapped → `allowed` TASKRUN_SA_MAPPED with the mapping (when there is one) and policy tags.
 *
 * Every decision carries `serviceAccounts` (`namespace/name`) and `tekton` links where readable.
 * Never throws on input; never mutates `req`.
 */
export function decideRun(req: AdmissionRequest, facts: Facts, opts: DecideOptions): Decision {
  const { group, version, kind } = req.kind;
  if (group !== TEKTON.group || !isRunKind(kind)) {
    return allowed([reason('KIND_NOT_CHECKED', `${group || 'core'}/${version} ${kind} is not a Tekton TaskRun or PipelineRun; nothing to check.`)]);
  }
  if (!RUN_VERSIONS.includes(version)) {
    return allowed([reason('KIND_NOT_CHECKED', `${kind} version ${group}/${version} is not checked: only v1 and v1beta1 are.`)]);
  }
  const runVersion = version as RunVersion;
  const object = req.object ?? req.oldObject ?? null;
  const tekton = runLinks(kind, object);
  const md = isObject(object?.metadata) ? object.metadata : undefined;
  const namespace = req.namespace || nonEmptyString(md?.namespace) || '';

  if (req.operation !== 'CREATE') {
    // Best effort only: fill the record's ServiceAccounts, but never refuse a non-CREATE.
    const parsed = object ? parseRunAccounts(kind, runVersion, object, opts.defaultServiceAccount) : undefined;
    const serviceAccounts = parsed?.ok && namespace ? parsed.accounts.map((a) => `${namespace}/${a.name}`) : [];
    return allowed([reason('OPERATION_NOT_CHECKED', `${req.operation} of a ${kind} is not checked: the ServiceAccount is immutable after creation.`)], { serviceAccounts, tekton });
  }

  const name = objectName(object);
  const label = `${kind} "${name}"`;
  if (!req.object) return rejected([reason('OBJECT_MALFORMED', `${kind} CREATE without request.object.`)], `${label}: request.object is missing.`, { tekton });
  if (!namespace) {
    const msg = `${label} has no namespace (request.namespace and metadata.namespace are empty).`;
    return rejected([reason('OBJECT_MALFORMED', msg)], msg, { tekton });
  }
  const parsed = parseRunAccounts(kind, runVersion, req.object, opts.defaultServiceAccount);
  if (!parsed.ok) {
    const msg = `${label} in namespace "${namespace}" is malformed: ${parsed.message}.`;
    return rejected([reason('OBJECT_MALFORMED', msg)], msg, { tekton });
  }
  const accounts = parsed.accounts;
  const ctx: DecisionContext = { serviceAccounts: accounts.map((a) => `${namespace}/${a.name}`), tekton };

  const standing = toNamespaceStanding(facts, namespace);
  if (!standing.enrolled) {
    return allowed([reason('NAMESPACE_NOT_ENROLLED', `Namespace "${namespace}" has no ${opts.keys.mode} label; ${label} is not checked.`)], ctx);
  }
  ctx.mode = standing.mode;
  const note = unknownNamespaceNote(standing);

  const check = checkAccounts(facts, namespace, accounts);
  if (check.problems.length > 0) {
    const unmappedCode: ReasonCode = kind === 'TaskRun' ? 'TASKRUN_SA_UNMAPPED' : 'PIPELINERUN_SA_UNMAPPED';
    const reasons = toProblemReasons(namespace, check.problems, unmappedCode);
    const body = describeProblems(namespace, check.problems);
    if (standing.mode === 'audit') {
      return warned(reasons, `${label} in namespace "${namespace}" is admitted only because the namespace is in audit mode (enforce would deny it): ${body}`, ctx);
    }
    return denied(reasons, `${label} in namespace "${namespace}" is denied:${note} ${body}`, ctx);
  }

  const summary = check.mapped.map(({ account, mapping }) => `"${account.name}" → IdentityMapping "${mapping.name}" (${mapping.provider})`).join(', ');
  const message = `${label} in namespace "${namespace}": every ServiceAccount is mapped: ${summary}.${note}`;
  return allowed([reason('TASKRUN_SA_MAPPED', message)], { ...ctx, ...toMappingContext(check.mapped, standing.policyTags) });
}
