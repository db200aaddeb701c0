/**
 * The one entry point of the decision core: endpoint + request + facts → Decision. Pure: no I/O,
 * no clock, no randomness (the decision id is passed in). The HTTP layer gathers the facts,
 * records and renders around it.
 */
import type { Facts } from './mapping.js';
import type { DecideOptions } from './options.js';
import { decidePod } from './pod/decide-pod.js';
import { reason } from './reasons.js';
import type { Endpoint } from './record.js';
import { TEKTON } from './keys.js';
import { decideRun } from './taskrun/decide-run.js';
import { allowed, type Decision } from './verdict.js';
import type { AdmissionRequest } from './wire.js';

const RUN_KINDS: readonly string[] = ['TaskRun', 'PipelineRun'];

/**
 * Dispatches by endpoint and kind:
 * - `validate`: `tekton.dev` TaskRun/PipelineRun → decideRun; anything else → `allowed` KIND_NOT_CHECKED.
 * - `mutate`: core/v1 Pod → decidePod; anything else → `allowed` KIND_NOT_CHECKED.
 * Kinds are allowed rather than refused because the webhook configurations' rules decide what is
 * sent; a stray kind is a configuration mistake that must not block unrelated objects.
 * Never throws on input (a thrown error here is a bug; the HTTP layer answers it as `errored`).
 */
export function decideAdmission(endpoint: Endpoint, req: AdmissionRequest, facts: Facts, opts: DecideOptions, decisionId: string): Decision {
  const { group, version, kind } = req.kind;
  if (endpoint === 'validate' && group === TEKTON.group && RUN_KINDS.includes(kind)) return decideRun(req, facts, opts);
  if (endpoint === 'mutate' && group === '' && version === 'v1' && kind === 'Pod') return decidePod(req, facts, opts, decisionId);
  const expected = endpoint === 'validate' ? 'Tekton TaskRuns and PipelineRuns' : 'Pods';
  return allowed([reason('KIND_NOT_CHECKED', `/${endpoint} checks only ${expected}; ${group || 'core'}/${version} ${kind} is let through unchanged.`)]);
}
