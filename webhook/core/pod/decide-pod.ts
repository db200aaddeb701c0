/**
 * The mutate rule for Tekton TaskRun pods (DESIGN.md "Admission behaviour", Mutate): a mapped pod
 * gets the projected OIDC token, SDK env vars, the tunnel sidecar and annotations as `add`-only
 * JSON Patch; anything else is admitted unchanged or denied. Pure.
 */
import { STATUS_INJECTED, TEKTON } from '../keys.js';
import type { Facts } from '../mapping.js';
import type { DecideOptions } from '../options.js';
import { reason, type Reason } from '../reasons.js';
import { allowed, denied, errored, patched, rejected, warned, type Decision, type DecisionContext, type TektonLinks } from '../verdict.js';
import type { AdmissionRequest } from '../wire.js';
import {
  checkAccounts, describeProblems, toMappingContext, toNamespaceStanding, toProblemReasons, unknownNamespaceNote,
} from '../taskrun/account-checks.js';
import { isObject, labelValue, nonEmptyString, objectName, type JsonObject } from '../taskrun/object-fields.js';
import { toInjectionFragments } from './fragments.js';
import { findInjectionConflicts, isAlreadyInjected, toInjectionPatch, type EnvFromOverride } from './injection-patch.js';
import { parsePod } from './pod-view.js';

function podLinks(object: JsonObject | null | undefined): TektonLinks {
  const links: TektonLinks = {};
  const taskRun = labelValue(object, TEKTON.taskRunLabel);
  const pipelineRun = labelValue(object, TEKTON.pipelineRunLabel);
  const task = labelValue(object, TEKTON.taskLabel);
  const pipelineTask = labelValue(object, TEKTON.pipelineTaskLabel);
  if (taskRun) links.taskRun = taskRun;
  if (pipelineRun) links.pipelineRun = pipelineRun;
  if (task) links.task = task;
  if (pipelineTask) links.pipelineTask = pipelineTask;
  return links;
}

/**
 * Decides a mutate request for a Pod. `decisionId` goes into the pod's `<domain>/decision-id`.
 *
 * In order:
 * 1. not core/v1 Pod → `allowed` KIND_NOT_CHECKED; not CREATE → `allowed` OPERATION_NOT_CHECKED;
 * 2. no `tekton.dev/taskRun` label → `allowed` POD_NOT_TEKTON;
 * 3. a read field of the wrong type, or no namespace → `rejected` OBJECT_MALFORMED naming it;
 * 4. namespace known without a mode → `allowed` NAMESPACE_NOT_ENROLLED (unknown → enforce);
 * 5. ServiceAccount unmapped / conflicting / invalid (POD_SA_UNMAPPED, MAPPING_*) and/or
 *    `hostNetwork: true` (POD_HOSTNETWORK_DENIED) → `denied` 422 in enforce, `warned` in audit, no patch.
 *    This runs before the idempotence check on purpose: the status annotation can be copied from a
 *    TaskRun's annotations, so it must not let an unmapped pod through in enforce;
 * 6. already injected (status annotation or a `zscaler-tunnel` container) → `allowed`
 *    POD_ALREADY_INJECTED with zero operations;
 * 7. our volume name or token mount path already in use → `denied` / `warned` POD_INJECTION_CONFLICT;
 * 8. otherwise `patched` POD_INJECTED, plus POD_ENV_OVERRIDES_ENVFROM when a container that gets
 *    injected env also has `envFrom` (the message names it and the variables that now win).
 *
 * Never throws on input; never mutates `req`; cost is linear in the pod's containers, env and
 * mounts, with the per-mapping pieces cached (see fragments.ts).
 */
export function decidePod(req: AdmissionRequest, facts: Facts, opts: DecideOptions, decisionId: string): Decision {
  const { group, version, kind } = req.kind;
  if (group !== '' || version !== 'v1' || kind !== 'Pod') {
    return allowed([reason('KIND_NOT_CHECKED', `${group || 'core'}/${version} ${kind} is not a Pod; nothing to inject.`)]);
  }
  const object = req.object ?? req.oldObject ?? null;
  const tekton = podLinks(object);
  if (req.operation !== 'CREATE') {
    return allowed([reason('OPERATION_NOT_CHECKED', `${req.operation} of a Pod is not mutated: only CREATE is.`)], { tekton });
  }
  if (!req.object) return rejected([reason('OBJECT_MALFORMED', 'Pod CREATE without request.object.')], 'request.object is missing.');

  const name = objectName(req.object) || req.name || '';
  const md = req.object.metadata;
  const labels = isObject(md) ? md.labels : undefined;
  if (labels !== undefined && labels !== null && !isObject(labels)) {
    const msg = `Pod "${name}" is malformed: metadata.labels must be an object.`;
    return rejected([reason('OBJECT_MALFORMED', msg)], msg);
  }
  const taskRunLabel = isObject(labels) ? labels[TEKTON.taskRunLabel] : undefined;
  if (taskRunLabel === undefined || taskRunLabel === null) {
    return allowed([reason('POD_NOT_TEKTON', `Pod "${name}" has no ${TEKTON.taskRunLabel} label; nothing to inject.`)]);
  }
  const parsed = parsePod(req.object);
  const namespace = req.namespace || (isObject(md) ? nonEmptyString(md.namespace) : undefined) || '';
  const podLabel = tekton.taskRun ? `Pod "${name}" of TaskRun "${tekton.taskRun}"` : `Pod "${name}"`;
  if (typeof taskRunLabel !== 'string' || !parsed.ok || !namespace) {
    const problem = typeof taskRunLabel !== 'string' ? `metadata.labels["${TEKTON.taskRunLabel}"] must be a string`
      : !parsed.ok ? parsed.message
      : 'it has no namespace (request.namespace and metadata.namespace are empty)';
    const msg = `${podLabel} is malformed: ${problem}.`;
    return rejected([reason('OBJECT_MALFORMED', msg)], msg, { tekton });
  }
  const pod = parsed.pod;
  const sa = pod.serviceAccount;
  const ctx: DecisionContext = { serviceAccounts: [`${namespace}/${sa}`], tekton };
  const where = `${podLabel} in namespace "${namespace}"`;

  const standing = toNamespaceStanding(facts, namespace);
  if (!standing.enrolled) {
    return allowed([reason('NAMESPACE_NOT_ENROLLED', `Namespace "${namespace}" has no ${opts.keys.mode} label; ${podLabel} is not injected.`)], ctx);
  }
  ctx.mode = standing.mode;
  const note = unknownNamespaceNote(standing);

  const check = checkAccounts(facts, namespace, [{ name: sa, sources: [] }]);
  const reasons: Reason[] = toProblemReasons(namespace, check.problems, 'POD_SA_UNMAPPED');
  const texts: string[] = check.problems.length > 0 ? [describeProblems(namespace, check.problems)] : [];
  if (pod.hostNetwork) {
    const text = `The pod sets spec.hostNetwork: true, so it shares the node's network and the tunnel sidecar cannot isolate it. Fix: remove hostNetwork from the TaskRun's podTemplate.`;
    reasons.push(reason('POD_HOSTNETWORK_DENIED', `${podLabel} sets spec.hostNetwork: true.`));
    texts.push(text);
  }
  if (reasons.length > 0) return refuse(standing.mode, reasons, where, note, texts.join(' '), ctx);

  const [first] = check.mapped;
  // Unreachable (one account with no problem is mapped); answered, not thrown, to stay total.
  if (first === undefined) return errored([reason('INTERNAL_ERROR', 'decidePod: no mapping and no problem for the ServiceAccount')], 'internal error', ctx);
  const mapping = first.mapping;
  const mappingCtx = toMappingContext(check.mapped, standing.policyTags);
  const mapped: DecisionContext = { ...ctx, ...mappingCtx };

  if (isAlreadyInjected(pod, opts.keys.status, STATUS_INJECTED)) {
    return allowed([reason('POD_ALREADY_INJECTED', `${where} already carries the injection; nothing to add.`)], mapped);
  }
  const conflicts = findInjectionConflicts(pod, opts);
  if (conflicts.length > 0) {
    const text = `Injection would collide: ${conflicts.join('; ')}. Fix: rename that volume or mount in the Task (the names "${opts.keys.domain}" uses are reserved).`;
    return refuse(standing.mode, [reason('POD_INJECTION_CONFLICT', `${podLabel}: ${conflicts.join('; ')}.`)], where, note, text, mapped);
  }

  const fragments = toInjectionFragments(mapping, opts);
  const k = opts.keys;
  const annotations: Array<readonly [string, string]> = [
    [k.policyTags, mappingCtx.policyTags.join(',')],
    [k.provider, mapping.provider],
    [k.identityMapping, mapping.name],
    [k.decisionId, decisionId],
    [k.status, STATUS_INJECTED],
  ];
  const sidecarList = opts.sidecar.mode === 'native' ? 'initContainers' : 'containers';
  const patch = toInjectionPatch(pod, fragments, annotations, sidecarList);
  const kept = patch.keptEnv.length > 0 ? ` Env already set and left unchanged: ${patch.keptEnv.join(', ')}.` : '';
  const message =
    `${where} gets IdentityMapping "${mapping.name}" (${mapping.provider}): token volume, mount and env in ` +
    `${patch.targets.length} container(s)${patch.targets.length > 0 ? ` (${patch.targets.join(', ')})` : ''}, ` +
    `tunnel sidecar (${opts.sidecar.mode === 'native' ? 'native, first init container' : 'classic, last container'}).${kept}${note}`;
  const injected = [reason('POD_INJECTED', message)];
  if (patch.envFromOverrides.length > 0) injected.push(reason('POD_ENV_OVERRIDES_ENVFROM', describeEnvFromOverrides(podLabel, patch.envFromOverrides)));
  return patched(patch.ops, injected, mapped, patch.json);
}

/**
 * Kubernetes gives `env` precedence over `envFrom` for the same name
 * (https://kubernetes.io/docs/tasks/inject-data-application/define-environment-variable-container/),
 * and the webhook cannot read the ConfigMaps/Secrets behind `envFrom`, so it says which of the
 * variables it added now win, per container.
 */
function describeEnvFromOverrides(podLabel: string, overrides: readonly EnvFromOverride[]): string {
  const parts = overrides.map((o) =>
    `container "${o.container}" (envFrom: ${o.sources.join(', ')}) now gets ${o.variables.join(', ')} from the injection`);
  return `${podLabel}: ${parts.join('; ')}. These take precedence over any variable of the same name from envFrom (Kubernetes lets env win over envFrom).`;
}

function refuse(mode: 'enforce' | 'audit', reasons: Reason[], where: string, note: string, text: string, ctx: DecisionContext): Decision {
  if (mode === 'audit') {
    return warned(reasons, `${where} is admitted unchanged only because the namespace is in audit mode (enforce would deny it): ${text}`, ctx);
  }
  return denied(reasons, `${where} is denied:${note} ${text}`, ctx);
}
