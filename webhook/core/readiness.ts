/**
 * Audit → enforce, with evidence: from recorded `warned` decisions (audit-mode namespaces admit
 * what enforce would deny), per namespace, the runs that would have been denied and the
 * ServiceAccounts behind them. Pure: records in, report out (`tzw namespaces readiness`).
 */
import type { DecisionRecord } from './record.js';
import { toProblemAccount } from './taskrun/account-checks.js';

export interface WouldBeDenied {
  kind: string;
  name: string;
  time: string;
  decisionId: string;
  /** Reason codes (e.g. TASKRUN_SA_UNMAPPED, POD_HOSTNETWORK_DENIED). */
  reasons: string[];
  /** The `namespace/name` ServiceAccounts the reasons name. */
  serviceAccounts: string[];
}

export interface NamespaceReadiness {
  namespace: string;
  /** Newest first. A TaskRun's pod is left out when the TaskRun itself is listed. */
  runs: WouldBeDenied[];
  /** ServiceAccount → how many listed runs it is behind, most first; with the reason codes seen. */
  serviceAccounts: Array<{ serviceAccount: string; runs: number; reasons: string[] }>;
}

const RUN_KINDS = new Set(['TaskRun', 'PipelineRun']);

type ReadinessRecord = Pick<DecisionRecord, 'id' | 'time' | 'namespace' | 'name' | 'kind' | 'mode' | 'verdict' | 'reasons' | 'tekton'>;

/** Groups warned audit-mode records by namespace; other records are ignored. Sorted by namespace. */
export function toNamespaceReadiness(records: Iterable<ReadinessRecord>): NamespaceReadiness[] {
  const byNamespace = new Map<string, ReadinessRecord[]>();
  for (const r of records) {
    if (r.verdict !== 'warned' || r.mode !== 'audit' || r.namespace === '') continue;
    byNamespace.set(r.namespace, [...(byNamespace.get(r.namespace) ?? []), r]);
  }
  return [...byNamespace.keys()].sort().map((namespace) => {
    const recs = byNamespace.get(namespace)!;
    const taskRuns = new Set(recs.filter((r) => r.kind.kind === 'TaskRun').map((r) => r.name));
    const runs = recs
      .filter((r) => RUN_KINDS.has(r.kind.kind) || !(r.tekton.taskRun !== undefined && taskRuns.has(r.tekton.taskRun)))
      .map((r): WouldBeDenied => ({
        kind: r.kind.kind, name: r.name, time: r.time, decisionId: r.id,
        reasons: [...new Set(r.reasons.map((x) => x.code))],
        serviceAccounts: [...new Set(r.reasons.map(toProblemAccount).filter((x): x is string => x !== undefined))].sort(),
      }))
      .sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0));
    const accounts = new Map<string, { runs: number; reasons: Set<string> }>();
    for (const run of runs) {
      for (const sa of run.serviceAccounts) {
        const a = accounts.get(sa) ?? { runs: 0, reasons: new Set<string>() };
        a.runs++;
        for (const code of run.reasons) a.reasons.add(code);
        accounts.set(sa, a);
      }
    }
    const serviceAccounts = [...accounts].map(([serviceAccount, a]) => ({ serviceAccount, runs: a.runs, reasons: [...a.reasons].sort() }))
      .sort((a, b) => b.runs - a.runs || (a.serviceAccount < b.serviceAccount ? -1 : 1));
    return { namespace, runs, serviceAccounts };
  });
}
