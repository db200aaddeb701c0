/**
 * The live fact index behind both object sources (files, Kubernetes informers): Namespaces,
 * ServiceAccounts and IdentityMappings go in one object at a time; `Facts` lookups come out in O(1).
 *
 * Each update costs O(size of that object), never a rebuild, so 100,000 mappings stay cheap. Only
 * what the decision core needs is kept (the model is the EKS pod-identity webhook's SetTransform,
 * which cut its informer memory from "hundreds of megabytes" to a few): a ServiceAccount is just its
 * name, a namespace its mode and tags, a mapping its resolved form.
 */
import { keysFor } from './keys.js';
import type { Facts, MappingLookup, NamespaceFacts, NamespaceMode, ResolvedMapping, ServiceAccountRef } from './mapping.js';
import { POLICY_TAG_PATTERN, parseIdentityMapping } from './mapping-schema.js';

/** Something an admin has to fix. `message` is one human-readable line naming the objects. */
export type MappingProblem =
  | { kind: 'invalid-mapping'; mapping: string; serviceAccounts: ServiceAccountRef[]; problems: string[]; message: string }
  | { kind: 'conflict'; serviceAccount: ServiceAccountRef; mappings: string[]; message: string }
  | { kind: 'invalid-namespace'; namespace: string; problems: string[]; message: string };

export interface IndexCounts {
  namespaces: number;
  serviceAccounts: number;
  /** All IdentityMappings, valid or not. */
  mappings: number;
  invalid: number;
  /** ServiceAccounts claimed by more than one mapping. */
  conflicts: number;
}

export interface FactsIndex extends Facts {
  /** Adds or replaces a Namespace (reads `metadata.name`, the mode label, the policy-tags annotation). */
  upsertNamespace(obj: unknown): void;
  deleteNamespace(name: string): void;
  /**
   * Adds or replaces an IdentityMapping (validated with `parseIdentityMapping`) and returns the
   * problems that now involve it (empty when it is valid and unopposed), for the caller to log.
   * An object without metadata.name can't be tracked; it is ignored and reported as invalid.
   */
  upsertMapping(obj: unknown): MappingProblem[];
  deleteMapping(name: string): void;
  /** Adds a ServiceAccount (reads `metadata.namespace` and `metadata.name` only). */
  upsertServiceAccount(obj: unknown): void;
  deleteServiceAccount(namespace: string, name: string): void;
  /** Invalid mappings, conflicts and bad namespace labels, sorted; O(number of problems). */
  problems(): MappingProblem[];
  serviceAccounts(): IterableIterator<ServiceAccountRef>;
  namespaces(): IterableIterator<NamespaceFacts>;
  counts(): IndexCounts;
}

type MappingEntry =
  | { valid: true; mapping: ResolvedMapping; lookup: MappingLookup }
  | { valid: false; claims: ServiceAccountRef[]; problems: string[]; lookup: MappingLookup };

const UNMAPPED: MappingLookup = Object.freeze({ kind: 'unmapped' });
const POLICY_TAG_RE = new RegExp(POLICY_TAG_PATTERN);
// '/' can't occur in a namespace or ServiceAccount name, so the key is unambiguous.
const keyOf = (namespace: string, name: string): string => `${namespace}/${name}`;
const refOf = (key: string): ServiceAccountRef => {
  const i = key.indexOf('/');
  return { namespace: key.slice(0, i), name: key.slice(i + 1) };
};

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const metadataOf = (obj: unknown): Record<string, unknown> => (isRecord(obj) && isRecord(obj.metadata) ? obj.metadata : {});
const stringMap = (v: unknown): Record<string, unknown> => (isRecord(v) ? v : {});

/**
 * Namespace facts from its labels and annotations, plus what is wrong with them. An unknown mode
 * value is treated as "not enrolled" (fail open only where the admin clearly didn't opt in) and
 * reported, as are malformed tags (dropped).
 */
export function parseNamespace(obj: unknown, domain: string): { facts: NamespaceFacts; problems: string[] } | undefined {
  const meta = metadataOf(obj);
  if (typeof meta.name !== 'string' || meta.name === '') return undefined;
  const keys = keysFor(domain);
  const problems: string[] = [];
  const rawMode = stringMap(meta.labels)[keys.mode];
  let mode: NamespaceMode | undefined;
  if (rawMode === 'enforce' || rawMode === 'audit') mode = rawMode;
  else if (rawMode !== undefined) {
    problems.push(`label ${keys.mode} is ${JSON.stringify(rawMode)}; it must be enforce or audit, so the namespace is treated as not enrolled`);
  }
  const rawTags = stringMap(meta.annotations)[keys.policyTags];
  const tags = new Set<string>();
  if (typeof rawTags === 'string') {
    for (const tag of rawTags.split(',').map((s) => s.trim())) {
      if (tag === '') continue;
      if (POLICY_TAG_RE.test(tag)) tags.add(tag);
      else problems.push(`annotation ${keys.policyTags} has the malformed tag ${JSON.stringify(tag)}, which is ignored`);
    }
  } else if (rawTags !== undefined) {
    problems.push(`annotation ${keys.policyTags} must be a string`);
  }
  const facts: NamespaceFacts = mode === undefined ? { name: meta.name, policyTags: [...tags].sort() } : { name: meta.name, mode, policyTags: [...tags].sort() };
  return { facts, problems };
}

const invalidMessage = (mapping: string, problems: string[]): string => `IdentityMapping ${mapping || '(unnamed)'} is invalid: ${problems.join('; ')}`;
const conflictMessage = (key: string, mappings: string[]): string =>
  `ServiceAccount ${key} is claimed by more than one IdentityMapping (${mappings.join(', ')}); runs using it are denied until only one claims it`;

/** Creates an empty index; `domain` sets the namespace label and annotation keys. */
export function createFactsIndex(domain: string): FactsIndex {
  const namespaces = new Map<string, NamespaceFacts>();
  const namespaceProblems = new Map<string, string[]>();
  // namespace → ServiceAccount names; a Set of names per namespace is far smaller than one entry per SA.
  const serviceAccounts = new Map<string, Set<string>>();
  let serviceAccountCount = 0;
  const mappings = new Map<string, MappingEntry>();
  // SA key → the mapping name (the common case, kept as a bare string) or the names of all claimants.
  const claims = new Map<string, string | Set<string>>();
  const conflicts = new Set<string>();
  const invalid = new Set<string>();

  const claimsOfEntry = (e: MappingEntry): ServiceAccountRef[] => (e.valid ? e.mapping.serviceAccounts : e.claims);

  const addClaim = (key: string, name: string): void => {
    const cur = claims.get(key);
    if (cur === undefined) claims.set(key, name);
    else if (typeof cur === 'string') {
      if (cur !== name) {
        claims.set(key, new Set([cur, name]));
        conflicts.add(key);
      }
    } else cur.add(name);
  };
  const removeClaim = (key: string, name: string): void => {
    const cur = claims.get(key);
    if (cur === undefined) return;
    if (typeof cur === 'string') {
      if (cur === name) claims.delete(key);
      return;
    }
    cur.delete(name);
    if (cur.size === 1) {
      claims.set(key, cur.values().next().value as string);
      conflicts.delete(key);
    }
  };

  const conflictProblem = (key: string): MappingProblem => {
    const names = [...(claims.get(key) as Set<string>)].sort();
    return { kind: 'conflict', serviceAccount: refOf(key), mappings: names, message: conflictMessage(key, names) };
  };
  const invalidProblem = (name: string, e: Extract<MappingEntry, { valid: false }>): MappingProblem => ({
    kind: 'invalid-mapping',
    mapping: name,
    serviceAccounts: e.claims,
    problems: e.problems,
    message: invalidMessage(name, e.problems),
  });

  const removeMapping = (name: string): void => {
    const old = mappings.get(name);
    if (old === undefined) return;
    for (const sa of claimsOfEntry(old)) removeClaim(keyOf(sa.namespace, sa.name), name);
    invalid.delete(name);
    mappings.delete(name);
  };

  const index: FactsIndex = {
    namespace: (name) => namespaces.get(name),

    lookup(namespace, serviceAccount) {
      const key = keyOf(namespace, serviceAccount);
      const claim = claims.get(key);
      if (claim === undefined) return UNMAPPED;
      if (typeof claim !== 'string') return { kind: 'conflict', mappings: [...claim].sort() };
      // The lookup value is built once per mapping change, so a hit allocates nothing.
      return mappings.get(claim)?.lookup ?? UNMAPPED;
    },

    upsertNamespace(obj) {
      const parsed = parseNamespace(obj, domain);
      if (parsed === undefined) return;
      namespaces.set(parsed.facts.name, parsed.facts);
      if (parsed.problems.length > 0) namespaceProblems.set(parsed.facts.name, parsed.problems);
      else namespaceProblems.delete(parsed.facts.name);
    },

    deleteNamespace(name) {
      namespaces.delete(name);
      namespaceProblems.delete(name);
    },

    upsertMapping(obj) {
      const parsed = parseIdentityMapping(obj);
      const name = parsed.ok ? parsed.mapping.name : parsed.name;
      if (!parsed.ok && name === '') {
        return [{ kind: 'invalid-mapping', mapping: '', serviceAccounts: parsed.claims, problems: parsed.problems, message: invalidMessage('', parsed.problems) }];
      }
      removeMapping(name);
      const entry: MappingEntry = parsed.ok
        ? { valid: true, mapping: parsed.mapping, lookup: { kind: 'mapped', mapping: parsed.mapping } }
        : { valid: false, claims: parsed.claims, problems: parsed.problems, lookup: { kind: 'invalid', mapping: name, problems: parsed.problems } };
      mappings.set(name, entry);
      if (!entry.valid) invalid.add(name);
      const out: MappingProblem[] = entry.valid ? [] : [invalidProblem(name, entry)];
      for (const sa of claimsOfEntry(entry)) {
        const key = keyOf(sa.namespace, sa.name);
        addClaim(key, name);
        if (conflicts.has(key)) out.push(conflictProblem(key));
      }
      return out;
    },

    deleteMapping(name) {
      removeMapping(name);
    },

    upsertServiceAccount(obj) {
      const meta = metadataOf(obj);
      if (typeof meta.namespace !== 'string' || typeof meta.name !== 'string') return;
      let names = serviceAccounts.get(meta.namespace);
      if (names === undefined) serviceAccounts.set(meta.namespace, (names = new Set()));
      if (!names.has(meta.name)) {
        names.add(meta.name);
        serviceAccountCount++;
      }
    },

    deleteServiceAccount(namespace, name) {
      const names = serviceAccounts.get(namespace);
      if (names?.delete(name)) {
        serviceAccountCount--;
        if (names.size === 0) serviceAccounts.delete(namespace);
      }
    },

    problems() {
      const out: MappingProblem[] = [];
      for (const [name, probs] of namespaceProblems) {
        out.push({ kind: 'invalid-namespace', namespace: name, problems: probs, message: `Namespace ${name}: ${probs.join('; ')}` });
      }
      for (const name of invalid) {
        const e = mappings.get(name);
        if (e !== undefined && !e.valid) out.push(invalidProblem(name, e));
      }
      for (const key of conflicts) out.push(conflictProblem(key));
      const sortKey = (p: MappingProblem): string =>
        p.kind === 'invalid-mapping' ? `1 ${p.mapping}` : p.kind === 'conflict' ? `2 ${keyOf(p.serviceAccount.namespace, p.serviceAccount.name)}` : `0 ${p.namespace}`;
      return out.sort((a, b) => (sortKey(a) < sortKey(b) ? -1 : sortKey(a) > sortKey(b) ? 1 : 0));
    },

    *serviceAccounts() {
      for (const [namespace, names] of serviceAccounts) for (const name of names) yield { namespace, name };
    },

    namespaces: () => namespaces.values(),

    counts: () => ({
      namespaces: namespaces.size,
      serviceAccounts: serviceAccountCount,
      mappings: mappings.size,
      invalid: invalid.size,
      conflicts: conflicts.size,
    }),
  };
  return index;
}
