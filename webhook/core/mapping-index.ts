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
  /**
   * One mapping as the index holds it: its well-formed claims and, when invalid, what is wrong.
   * undefined when no mapping of that name is known.
   */
  mapping(name: string): { name: string; claims: readonly ServiceAccountRef[]; problems?: readonly string[] } | undefined;
  /** Names of the mappings that claim this ServiceAccount (sorted; empty when none). */
  claimants(namespace: string, name: string): string[];
  mappingNames(): IterableIterator<string>;
  serviceAccounts(): IterableIterator<ServiceAccountRef>;
  namespaces(): IterableIterator<NamespaceFacts>;
  counts(): IndexCounts;
}

/** An IdentityMapping that failed validation; its well-formed claims still count (for conflicts and lookups). */
class InvalidMapping {
  constructor(
    readonly name: string,
    readonly claims: ServiceAccountRef[],
    readonly problems: string[],
  ) {}
}

/** Valid mappings are stored as the ResolvedMapping itself: no wrapper per mapping. */
type MappingEntry = ResolvedMapping | InvalidMapping;

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
  // namespace → ServiceAccount name → the claiming mapping's name (the common case, a bare string)
  // or the names of all claimants. Two levels so no "ns/name" key string is built per claim.
  const claims = new Map<string, Map<string, string | Set<string>>>();
  // "ns/name" of every ServiceAccount with more than one claimant (rare, so a flat key is fine).
  const conflicts = new Set<string>();
  const invalid = new Set<string>();
  // Memory at 100,000 mappings: most mappings share a handful of tag sets and namespaces, so each
  // distinct tag list is kept once (frozen, reference-counted) and namespace names are interned.
  // The namespace pool only grows with distinct names ever seen, which admins create.
  const tagPool = new Map<string, { tags: string[]; refs: number }>();
  const namespacePool = new Map<string, string>();
  const internNamespace = (ns: string): string => {
    const found = namespacePool.get(ns);
    if (found !== undefined) return found;
    namespacePool.set(ns, ns);
    return ns;
  };
  const acquireTags = (tags: string[]): string[] => {
    const key = tags.join(',');
    let pooled = tagPool.get(key);
    if (pooled === undefined) tagPool.set(key, (pooled = { tags: Object.freeze(tags) as string[], refs: 0 }));
    pooled.refs++;
    return pooled.tags;
  };
  const releaseTags = (tags: string[]): void => {
    const key = tags.join(',');
    const pooled = tagPool.get(key);
    if (pooled !== undefined && --pooled.refs === 0) tagPool.delete(key);
  };

  const claimsOfEntry = (e: MappingEntry): ServiceAccountRef[] => (e instanceof InvalidMapping ? e.claims : e.serviceAccounts);

  const addClaim = (sa: ServiceAccountRef, name: string): boolean => {
    let inNamespace = claims.get(sa.namespace);
    if (inNamespace === undefined) claims.set(sa.namespace, (inNamespace = new Map()));
    const cur = inNamespace.get(sa.name);
    if (cur === undefined) inNamespace.set(sa.name, name);
    else if (typeof cur === 'string') {
      if (cur === name) return false;
      inNamespace.set(sa.name, new Set([cur, name]));
      conflicts.add(keyOf(sa.namespace, sa.name));
    } else cur.add(name);
    return typeof inNamespace.get(sa.name) !== 'string';
  };
  const removeClaim = (sa: ServiceAccountRef, name: string): void => {
    const inNamespace = claims.get(sa.namespace);
    const cur = inNamespace?.get(sa.name);
    if (inNamespace === undefined || cur === undefined) return;
    if (typeof cur === 'string') {
      if (cur !== name) return;
      inNamespace.delete(sa.name);
      if (inNamespace.size === 0) claims.delete(sa.namespace);
      return;
    }
    cur.delete(name);
    if (cur.size === 1) {
      inNamespace.set(sa.name, cur.values().next().value as string);
      conflicts.delete(keyOf(sa.namespace, sa.name));
    }
  };

  const conflictProblem = (key: string): MappingProblem => {
    const sa = refOf(key);
    const names = [...(claims.get(sa.namespace)?.get(sa.name) as Set<string>)].sort();
    return { kind: 'conflict', serviceAccount: sa, mappings: names, message: conflictMessage(key, names) };
  };
  const invalidProblem = (e: InvalidMapping): MappingProblem => ({
    kind: 'invalid-mapping',
    mapping: e.name,
    serviceAccounts: e.claims,
    problems: e.problems,
    message: invalidMessage(e.name, e.problems),
  });

  const removeMapping = (name: string): void => {
    const old = mappings.get(name);
    if (old === undefined) return;
    for (const sa of claimsOfEntry(old)) removeClaim(sa, name);
    if (!(old instanceof InvalidMapping)) releaseTags(old.policyTags);
    invalid.delete(name);
    mappings.delete(name);
  };

  const index: FactsIndex = {
    namespace: (name) => namespaces.get(name),

    lookup(namespace, serviceAccount) {
      const claim = claims.get(namespace)?.get(serviceAccount);
      if (claim === undefined) return UNMAPPED;
      if (typeof claim !== 'string') return { kind: 'conflict', mappings: [...claim].sort() };
      const e = mappings.get(claim);
      if (e === undefined) return UNMAPPED;
      // A two-field object per lookup is cheaper than keeping one per mapping.
      return e instanceof InvalidMapping ? { kind: 'invalid', mapping: e.name, problems: e.problems } : { kind: 'mapped', mapping: e };
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
      if (!parsed.ok && parsed.name === '') {
        return [invalidProblem(new InvalidMapping('', parsed.claims, parsed.problems))];
      }
      const entry: MappingEntry = parsed.ok ? parsed.mapping : new InvalidMapping(parsed.name, parsed.claims, parsed.problems);
      const name = entry.name;
      removeMapping(name);
      for (const sa of claimsOfEntry(entry)) sa.namespace = internNamespace(sa.namespace);
      if (!(entry instanceof InvalidMapping)) entry.policyTags = acquireTags(entry.policyTags);
      mappings.set(name, entry);
      const out: MappingProblem[] = [];
      if (entry instanceof InvalidMapping) {
        invalid.add(name);
        out.push(invalidProblem(entry));
      }
      for (const sa of claimsOfEntry(entry)) {
        if (addClaim(sa, name)) out.push(conflictProblem(keyOf(sa.namespace, sa.name)));
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
      if (names === undefined) serviceAccounts.set(internNamespace(meta.namespace), (names = new Set()));
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
        if (e instanceof InvalidMapping) out.push(invalidProblem(e));
      }
      for (const key of conflicts) out.push(conflictProblem(key));
      const sortKey = (p: MappingProblem): string =>
        p.kind === 'invalid-mapping' ? `1 ${p.mapping}` : p.kind === 'conflict' ? `2 ${keyOf(p.serviceAccount.namespace, p.serviceAccount.name)}` : `0 ${p.namespace}`;
      return out.sort((a, b) => (sortKey(a) < sortKey(b) ? -1 : sortKey(a) > sortKey(b) ? 1 : 0));
    },

    mapping(name) {
      const e = mappings.get(name);
      if (e === undefined) return undefined;
      return e instanceof InvalidMapping ? { name, claims: e.claims, problems: e.problems } : { name, claims: e.serviceAccounts };
    },

    claimants(namespace, name) {
      const cur = claims.get(namespace)?.get(name);
      return cur === undefined ? [] : typeof cur === 'string' ? [cur] : [...cur].sort();
    },

    mappingNames: () => mappings.keys(),

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
