/**
 * Stable reason codes. Every verdict carries one or more of these; they are part of the public
 * contract (README "Reason codes", decision records, metrics labels). Never rename one.
 */
export const REASONS = {
  // validate: TaskRun / PipelineRun
  TASKRUN_SA_MAPPED: 'A ServiceAccount of the run has an IdentityMapping.',
  TASKRUN_SA_UNMAPPED: 'A ServiceAccount of the run has no IdentityMapping.',
  PIPELINERUN_SA_UNMAPPED: 'A ServiceAccount a PipelineRun would use has no IdentityMapping.',
  OPERATION_NOT_CHECKED: 'Only CREATE is checked: the ServiceAccount is immutable after creation.',
  KIND_NOT_CHECKED: 'The object is not a Tekton TaskRun, PipelineRun or pod; nothing to decide.',
  NAMESPACE_NOT_ENROLLED: 'The namespace has no tekton-zscaler.io/mode label; nothing to decide.',
  // mapping problems (apply to validate and mutate)
  MAPPING_CONFLICT: 'Two or more IdentityMappings claim the same ServiceAccount.',
  MAPPING_INVALID: 'The IdentityMapping that claims the ServiceAccount is invalid.',
  // mutate: pods
  POD_INJECTED: 'The pod was patched with the token volume, env, tunnel sidecar and annotations.',
  POD_ENV_OVERRIDES_ENVFROM: 'A patched container also has envFrom; the injected env takes precedence over same-named variables from it.',
  POD_ALREADY_INJECTED: 'The pod already carries the injection; nothing to add.',
  POD_NOT_TEKTON: 'The pod has no tekton.dev/taskRun label; nothing to inject.',
  POD_SA_UNMAPPED: "The pod's ServiceAccount has no IdentityMapping.",
  POD_HOSTNETWORK_DENIED: 'hostNetwork pods share the node network; a tunnel sidecar cannot isolate them.',
  POD_INJECTION_CONFLICT: 'The pod already has the token volume name or a mount at the token path; injecting would collide.',
  // errors and bad input
  REVIEW_MALFORMED: 'The AdmissionReview could not be read.',
  REVIEW_TOO_LARGE: 'The AdmissionReview is larger than the body limit.',
  OBJECT_MALFORMED: 'The object in the AdmissionReview has fields of the wrong type.',
  SOURCE_NOT_SYNCED: 'Namespaces, ServiceAccounts and IdentityMappings are not loaded yet.',
  STORE_UNAVAILABLE: 'The decision store could not record the decision, so the request fails closed.',
  STORE_DEADLINE: 'The decision store did not commit within admission.deadlineMs, so the request fails closed.',
  INTERNAL_ERROR: 'An unexpected error; the request fails closed.',
} as const;

export type ReasonCode = keyof typeof REASONS;

export interface Reason {
  code: ReasonCode;
  message: string;
  /**
   * The ServiceAccount (`namespace/name`) the reason is about, on the reasons of an unmapped,
   * conflicting or invalidly mapped account (TASKRUN_SA_UNMAPPED, PIPELINERUN_SA_UNMAPPED,
   * POD_SA_UNMAPPED, MAPPING_CONFLICT, MAPPING_INVALID): one reason per account, so a run with several
   * ServiceAccounts says which one. Absent on every other reason.
   */
  serviceAccount?: string;
}

/** Builds a reason; `message` defaults to the code's generic description; `serviceAccount` as on Reason. */
export function reason(code: ReasonCode, message: string = REASONS[code], serviceAccount?: string): Reason {
  return serviceAccount === undefined ? { code, message } : { code, message, serviceAccount };
}
