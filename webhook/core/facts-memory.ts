/**
 * A tiny in-memory `Facts` for the core's tests (golden cases, decide-pod, admit). Everything that
 * runs for real — the server and `tzw simulate` — uses the facts index (core/mapping-index.ts, fed
 * from Kubernetes objects or files, with validation of the IdentityMapping specs); this one takes
 * already-resolved mappings and only works out who claims which ServiceAccount.
 */
import type { Facts, MappingLookup, NamespaceFacts, ResolvedMapping, ServiceAccountRef } from './mapping.js';

export interface MemoryFactsInit {
  namespaces: NamespaceFacts[];
  /** Valid mappings. Kept by reference: the decision core caches patch fragments per object. */
  mappings: ResolvedMapping[];
  /** Extra conflicts to report as-is (e.g. found by the caller's own validation). */
  conflicts?: Array<{ serviceAccount: ServiceAccountRef; mappings: string[] }>;
  /** Invalid mappings and the ServiceAccounts they claim. */
  invalid?: Array<{ mapping: string; problems: string[]; serviceAccounts: ServiceAccountRef[] }>;
}

type Claim = { kind: 'valid'; mapping: ResolvedMapping } | { kind: 'invalid'; mapping: string; problems: string[] };

const claimName = (c: Claim): string => (c.kind === 'valid' ? c.mapping.name : c.mapping);
const keyOf = (namespace: string, name: string): string => `${namespace}/${name}`;

/**
 * Builds the lookup once. Rules, in order: an explicit conflict wins; two or more distinct mappings
 * (valid or invalid) claiming one ServiceAccount is a conflict; a single invalid claim is `invalid`;
 * a single valid claim is `mapped`; no claim is `unmapped`. A later namespace entry with the same
 * name replaces an earlier one.
 */
export function createMemoryFacts(init: MemoryFactsInit): Facts {
  const namespaces = new Map<string, NamespaceFacts>();
  for (const ns of init.namespaces) namespaces.set(ns.name, ns);

  const claims = new Map<string, Claim[]>();
  const addClaim = (sa: ServiceAccountRef, claim: Claim): void => {
    const key = keyOf(sa.namespace, sa.name);
    const list = claims.get(key) ?? [];
    // One mapping listing the same ServiceAccount twice is still one claim.
    if (!list.some((c) => claimName(c) === claimName(claim))) list.push(claim);
    claims.set(key, list);
  };
  for (const mapping of init.mappings) for (const sa of mapping.serviceAccounts) addClaim(sa, { kind: 'valid', mapping });
  for (const bad of init.invalid ?? []) for (const sa of bad.serviceAccounts) addClaim(sa, { kind: 'invalid', mapping: bad.mapping, problems: bad.problems });

  const lookups = new Map<string, MappingLookup>();
  for (const [key, list] of claims) {
    const [only] = list;
    if (list.length > 1 || only === undefined) lookups.set(key, { kind: 'conflict', mappings: list.map(claimName).sort() });
    else if (only.kind === 'invalid') lookups.set(key, { kind: 'invalid', mapping: only.mapping, problems: only.problems });
    else lookups.set(key, { kind: 'mapped', mapping: only.mapping });
  }
  for (const c of init.conflicts ?? []) {
    lookups.set(keyOf(c.serviceAccount.namespace, c.serviceAccount.name), { kind: 'conflict', mappings: [...c.mappings].sort() });
  }

  const UNMAPPED: MappingLookup = { kind: 'unmapped' };
  return {
    namespace: (name) => namespaces.get(name),
    lookup: (namespace, serviceAccount) => lookups.get(keyOf(namespace, serviceAccount)) ?? UNMAPPED,
  };
}
