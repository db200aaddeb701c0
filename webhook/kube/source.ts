/** What both object sources (files, Kubernetes informers) share: the logger shape and problem logging. */
import type { MappingProblem } from '../core/mapping-index.js';

/** The part of a pino logger the sources use (`logger.warn({fields}, 'message')`). */
export interface SourceLogger {
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
  error(obj: Record<string, unknown>, msg: string): void;
}

/** Structured fields for one problem, so log queries can filter by mapping or ServiceAccount. */
export function toProblemFields(p: MappingProblem): Record<string, unknown> {
  switch (p.kind) {
    case 'invalid-mapping':
      return { problem: p.kind, identityMapping: p.mapping, serviceAccounts: p.serviceAccounts.map((s) => `${s.namespace}/${s.name}`), problems: p.problems };
    case 'conflict':
      return { problem: p.kind, serviceAccount: `${p.serviceAccount.namespace}/${p.serviceAccount.name}`, identityMappings: p.mappings };
    case 'invalid-namespace':
      return { problem: p.kind, namespace: p.namespace, problems: p.problems };
  }
}

/** One warn line per problem, the message naming the objects and what is wrong. */
export function logProblems(logger: SourceLogger, problems: readonly MappingProblem[]): void {
  for (const p of problems) logger.warn(toProblemFields(p), p.message);
}
