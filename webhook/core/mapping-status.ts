/**
 * What an IdentityMapping's `status` should say, decided from the fact index (pure): the Ready
 * condition (reason Valid | Conflict | Invalid, a message naming the other mapping or the bad
 * field), the generation it describes and how many ServiceAccounts it claims. The status writer
 * (kube/status-writer.ts) compares this with what the API server holds and patches the difference.
 */
import type { FactsIndex } from './mapping-index.js';

export type MappingReason = 'Valid' | 'Conflict' | 'Invalid';

export interface MappingCondition {
  type: 'Ready';
  status: 'True' | 'False';
  reason: MappingReason;
  message: string;
  observedGeneration?: number;
  lastTransitionTime?: string;
}

/** The status subresource as we write it (the CRD's status schema says the same). */
export interface MappingStatus {
  observedGeneration?: number;
  serviceAccounts: number;
  conditions: MappingCondition[];
}

/** The Ready verdict for one mapping without times or generations; undefined when it is unknown. */
export function decideMappingReady(index: Pick<FactsIndex, 'mapping' | 'claimants'>, name: string): { reason: MappingReason; message: string; serviceAccounts: number } | undefined {
  const m = index.mapping(name);
  if (m === undefined) return undefined;
  const serviceAccounts = m.claims.length;
  if (m.problems !== undefined) return { reason: 'Invalid', message: m.problems.join('; '), serviceAccounts };
  const shared: string[] = [];
  for (const sa of m.claims) {
    const others = index.claimants(sa.namespace, sa.name).filter((n) => n !== name);
    if (others.length > 0) shared.push(`ServiceAccount ${sa.namespace}/${sa.name} is also claimed by IdentityMapping ${others.join(', ')}`);
  }
  if (shared.length > 0) return { reason: 'Conflict', message: `${shared.join('; ')}; runs using it are denied until only one mapping claims it`, serviceAccounts };
  return { reason: 'Valid', message: `maps ${serviceAccounts} ServiceAccount${serviceAccounts === 1 ? '' : 's'}`, serviceAccounts };
}

/**
 * The status to write, given the verdict, the object's generation, the status it has now and the
 * time. lastTransitionTime changes only when the condition's True/False flips (API conventions).
 */
export function toMappingStatus(
  ready: { reason: MappingReason; message: string; serviceAccounts: number },
  generation: number | undefined,
  current: MappingStatus | undefined,
  now: string,
): MappingStatus {
  const status: MappingCondition['status'] = ready.reason === 'Valid' ? 'True' : 'False';
  const prev = current?.conditions?.find((c) => c.type === 'Ready');
  const condition: MappingCondition = {
    type: 'Ready', status, reason: ready.reason, message: ready.message,
    ...(generation === undefined ? {} : { observedGeneration: generation }),
    lastTransitionTime: prev?.status === status && prev.lastTransitionTime ? prev.lastTransitionTime : now,
  };
  return { ...(generation === undefined ? {} : { observedGeneration: generation }), serviceAccounts: ready.serviceAccounts, conditions: [condition] };
}

/** True when `current` already says what `next` says (times aside): no write needed. */
export function isSameMappingStatus(current: MappingStatus | undefined, next: MappingStatus): boolean {
  if (current === undefined) return false;
  const a = current.conditions?.find((c) => c.type === 'Ready');
  const b = next.conditions[0]!;
  return current.observedGeneration === next.observedGeneration && current.serviceAccounts === next.serviceAccounts
    && a !== undefined && a.status === b.status && a.reason === b.reason && a.message === b.message && a.observedGeneration === b.observedGeneration;
}
