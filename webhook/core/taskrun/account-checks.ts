/**
 * ServiceAccount checks shared by the run validator and the pod mutator: the namespace's
 * enrolment, the mapping lookup of each ServiceAccount, and the user-facing text that names every
 * problem together with its fix. Pure.
 */
import type { Facts, NamespaceMode, ResolvedMapping } from '../mapping.js';
import { reason, type Reason, type ReasonCode } from '../reasons.js';
import type { Decision } from '../verdict.js';

/** The IdentityMapping CRD's apiVersion (the CRD group is fixed, unlike the annotation domain). */
export const IDENTITY_MAPPING_API_VERSION = 'tekton-zscaler.io/v1alpha1';

/** A ServiceAccount an object uses, with where it is named (for messages only). */
export interface AccountUse {
  name: string;
  /** e.g. `pipeline task "build"`, `Tekton's default: the TaskRun names none`; may be empty. */
  sources: string[];
}

/**
 * How the namespace is enrolled. `known: false` means our cache has no such namespace: the API
 * server only calls us for enrolled namespaces (namespaceSelector), so this is treated as
 * `enforce` (fail closed) and said so in messages.
 */
export type NamespaceStanding =
  | { enrolled: false; name: string }
  | { enrolled: true; name: string; mode: NamespaceMode; policyTags: string[]; known: boolean };

export function toNamespaceStanding(facts: Facts, namespace: string): NamespaceStanding {
  const ns = facts.namespace(namespace);
  if (ns === undefined) return { enrolled: true, name: namespace, mode: 'enforce', policyTags: [], known: false };
  if (ns.mode === undefined) return { enrolled: false, name: namespace };
  return { enrolled: true, name: namespace, mode: ns.mode, policyTags: ns.policyTags, known: true };
}

/** The sentence added to messages when the namespace is missing from the cache. */
export function unknownNamespaceNote(standing: NamespaceStanding): string {
  return standing.enrolled && !standing.known
    ? ` Namespace "${standing.name}" is not in tekton-zscaler-webhook's cache, so it is treated as enforce (fail closed).`
    : '';
}

export type AccountProblem =
  | { kind: 'unmapped'; account: AccountUse }
  | { kind: 'conflict'; account: AccountUse; mappings: string[] }
  | { kind: 'invalid'; account: AccountUse; mapping: string; problems: string[] };

export interface AccountCheck {
  mapped: Array<{ account: AccountUse; mapping: ResolvedMapping }>;
  problems: AccountProblem[];
}

/** Looks every account up (O(1) each); keeps the accounts' order. */
export function checkAccounts(facts: Facts, namespace: string, accounts: readonly AccountUse[]): AccountCheck {
  const check: AccountCheck = { mapped: [], problems: [] };
  for (const account of accounts) {
    const found = facts.lookup(namespace, account.name);
    switch (found.kind) {
      case 'mapped':
        check.mapped.push({ account, mapping: found.mapping });
        break;
      case 'conflict':
        check.problems.push({ kind: 'conflict', account, mappings: found.mappings });
        break;
      case 'invalid':
        check.problems.push({ kind: 'invalid', account, mapping: found.mapping, problems: found.problems });
        break;
      default:
        check.problems.push({ kind: 'unmapped', account });
    }
  }
  return check;
}

/** Sorted, de-duplicated union of tag lists; empty tags are dropped. */
export function unionTags(...lists: ReadonlyArray<readonly string[]>): string[] {
  const all = new Set<string>();
  for (const list of lists) for (const tag of list) if (tag.length > 0) all.add(tag);
  return [...all].sort();
}

/**
 * The mapping fields of an allowed decision: `mapping` when every account resolves to one and the
 * same IdentityMapping (always true for a single account), and the tags of all mappings used plus
 * the namespace's.
 */
export function toMappingContext(mapped: AccountCheck['mapped'], namespaceTags: readonly string[]): Pick<Decision, 'policyTags'> & Partial<Pick<Decision, 'mapping'>> {
  const mappings = [...new Set(mapped.map((m) => m.mapping))];
  const policyTags = unionTags(namespaceTags, ...mappings.map((m) => m.policyTags));
  const [only] = mappings;
  if (mappings.length !== 1 || only === undefined) return { policyTags };
  return { policyTags, mapping: { name: only.name, provider: only.provider, subject: only.subject } };
}

/** One reason per problem, each naming `namespace/name` in its message and in `serviceAccount`. */
export function toProblemReasons(namespace: string, problems: readonly AccountProblem[], unmappedCode: ReasonCode): Reason[] {
  return problems.map((p): Reason => {
    const sa = `${namespace}/${p.account.name}`;
    switch (p.kind) {
      case 'unmapped':
        return reason(unmappedCode, `ServiceAccount ${sa} has no IdentityMapping.`, sa);
      case 'conflict':
        return reason('MAPPING_CONFLICT', `ServiceAccount ${sa} is claimed by more than one IdentityMapping: ${p.mappings.join(', ')}.`, sa);
      case 'invalid':
        return reason('MAPPING_INVALID', `ServiceAccount ${sa} is claimed by IdentityMapping ${p.mapping}, which is invalid: ${p.problems.join('; ')}.`, sa);
    }
  });
}

const PROBLEM_ACCOUNT = /^ServiceAccount (\S+) (?:has no IdentityMapping|is claimed by)/;
/**
 * The codes of the reasons `toProblemReasons` builds: a ServiceAccount with no usable mapping (none,
 * claimed twice, claimed by an invalid one). Exactly these carry `serviceAccount`; the stats'
 * `unmapped` list counts them (store/stats.ts, store/rows.ts).
 */
export const ACCOUNT_PROBLEM_CODES = ['TASKRUN_SA_UNMAPPED', 'PIPELINERUN_SA_UNMAPPED', 'POD_SA_UNMAPPED', 'MAPPING_CONFLICT', 'MAPPING_INVALID'] as const satisfies readonly ReasonCode[];
const PROBLEM_CODES: ReadonlySet<string> = new Set(ACCOUNT_PROBLEM_CODES);

/**
 * The `namespace/name` a reason from `toProblemReasons` is about, or undefined for any other
 * reason: its `serviceAccount`, else (records written before reasons carried it) read back from the
 * message built above.
 */
export function toProblemAccount(r: Reason): string | undefined {
  if (!PROBLEM_CODES.has(r.code)) return undefined;
  return typeof r.serviceAccount === 'string' ? r.serviceAccount : PROBLEM_ACCOUNT.exec(r.message)?.[1];
}

const quoteList = (names: readonly string[]): string => names.map((n) => `"${n}"`).join(', ');

function describeAccount(a: AccountUse): string {
  return a.sources.length > 0 ? `"${a.name}" (${a.sources.join('; ')})` : `"${a.name}"`;
}

/**
 * What is wrong and how to fix it, for the denial message (and, unchanged, the audit warning):
 * names each ServiceAccount and gives the admin the IdentityMapping to apply or the mapping to edit.
 */
export function describeProblems(namespace: string, problems: readonly AccountProblem[]): string {
  const parts: string[] = [];
  const unmapped = problems.filter((p) => p.kind === 'unmapped').map((p) => p.account);
  const [first] = unmapped;
  if (first !== undefined) {
    const one = unmapped.length === 1;
    const claims = unmapped.map((a) => `{namespace: ${namespace}, name: ${a.name}}`).join(', ');
    parts.push(
      `${one ? 'ServiceAccount' : 'ServiceAccounts'} ${unmapped.map(describeAccount).join(', ')} ${one ? 'has' : 'have'} no IdentityMapping.` +
        ` Fix: a cluster admin applies an IdentityMapping that claims ${one ? 'it' : 'them'} (kubectl apply -f -):` +
        ` {apiVersion: ${IDENTITY_MAPPING_API_VERSION}, kind: IdentityMapping, metadata: {name: ${namespace}-${first.name}},` +
        ` spec: {serviceAccounts: [${claims}], provider: aws-iam, aws: {roleArn: "<role ARN>"}, policyTags: [<tag>]}}` +
        ` (for azure-ad use azure: {clientId, tenantId}; for okta use okta: {issuer, clientId});` +
        ` or use a ServiceAccount that is already mapped.`,
    );
  }
  for (const p of problems) {
    if (p.kind === 'conflict') {
      parts.push(
        `ServiceAccount ${describeAccount(p.account)} is claimed by more than one IdentityMapping (${quoteList(p.mappings)}); exactly one may claim it.` +
          ` Fix: a cluster admin removes it from all but one of them (kubectl edit identitymapping ${p.mappings[0] ?? ''}).`,
      );
    } else if (p.kind === 'invalid') {
      parts.push(
        `ServiceAccount ${describeAccount(p.account)} is claimed by IdentityMapping "${p.mapping}", which is invalid: ${p.problems.join('; ')}.` +
          ` Fix: a cluster admin corrects it (kubectl edit identitymapping ${p.mapping}).`,
      );
    }
  }
  return parts.join(' ');
}
