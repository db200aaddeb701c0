/** Annotation and label keys, all under one configurable domain (default `tekton-zscaler.io`). */
export const DEFAULT_DOMAIN = 'tekton-zscaler.io';

export interface Keys {
  domain: string;
  /** Namespace label: `enforce` | `audit`; absent = not enrolled. */
  mode: string;
  /** Namespace annotation (extra tags) and pod annotation (effective tags). */
  policyTags: string;
  provider: string;
  identityMapping: string;
  decisionId: string;
  /** Pod annotation `injected`: the idempotence marker. */
  status: string;
}

export function keysFor(domain: string = DEFAULT_DOMAIN): Keys {
  return {
    domain,
    mode: `${domain}/mode`,
    policyTags: `${domain}/policy-tags`,
    provider: `${domain}/provider`,
    identityMapping: `${domain}/identity-mapping`,
    decisionId: `${domain}/decision-id`,
    status: `${domain}/status`,
  };
}

export const STATUS_INJECTED = 'injected';

/** Tekton's own keys we read (never write). */
export const TEKTON = {
  taskRunLabel: 'tekton.dev/taskRun',
  pipelineRunLabel: 'tekton.dev/pipelineRun',
  taskLabel: 'tekton.dev/task',
  pipelineTaskLabel: 'tekton.dev/pipelineTask',
  group: 'tekton.dev',
} as const;
