/**
 * The text `tzw decisions verify --bundle` prints for a namespace bundle. Pure.
 */
import type { NamespaceVerifyResult, WriterCoverage } from '../store/evidence/namespace-bundle.js';
import { EXIT } from './io.js';

function writerLines(w: WriterCoverage, namespace: string): string[] {
  const out: string[] = [];
  if (w.status === 'pre-namespace') {
    out.push(`writer ${w.writer}: before the first namespace checkpoint: nothing of namespace ${namespace} on this writer is proven complete`);
  } else {
    out.push(`complete for namespace ${namespace} from ${w.from} to ${w.to} (checkpoint size ${w.size}, writer ${w.writer})`);
    out.push(`  ${w.inRange} record(s) in the range; ${w.records} record(s) of ${namespace} in the bundle up to that checkpoint (signed ${w.checkpointTime})`);
    if (w.fromIsBound) {
      out.push(`  records before ${w.from} (this writer's first namespace checkpoint) predate the namespace chains and are not covered`);
    }
  }
  if (w.uncovered > 0) {
    const after = w.status === 'complete' ? `after checkpoint size ${w.size}` : 'on this writer';
    out.push(`  ${w.uncovered} record(s) ${after}: not yet covered by a signed checkpoint (${w.uncoveredInRange} in the range)`);
  }
  return out;
}

/** The verify report for a namespace bundle and its exit code (0 proven complete, 3 otherwise). */
export function toNamespaceVerifyReport(result: NamespaceVerifyResult, source: string): { text: string; exit: number } {
  if (!result.ok) {
    const p = result.firstBad;
    const where = [p.writer && `writer ${p.writer}`, p.nsSeq > 0 && `nsSeq ${p.nsSeq}`, p.id && `record ${p.id}`].filter(Boolean).join(', ');
    return { text: `VERIFICATION FAILED: ${source} (namespace ${JSON.stringify(result.namespace)})\n${where ? `${where}: ` : ''}${p.problem}\n`, exit: EXIT.TAMPERED };
  }
  const lines: string[] = [];
  const complete = result.writers.filter((w) => w.status === 'complete');
  if (complete.length === 0) {
    lines.push(
      `NOT PROVEN: ${source} is from before the first namespace checkpoint: no checkpoint in it commits to namespace heads, so completeness of namespace ${result.namespace} cannot be shown. Namespace commitments start with the first checkpoint a version with namespace chains writes; export again after it.`,
    );
  }
  for (const w of result.writers) lines.push(...writerLines(w, result.namespace));
  if (result.writers.length > 0) {
    lines.push(
      `writers in this bundle: ${result.writers.map((w) => w.writer).join(', ')} (a writer left out of a bundle entirely cannot be detected offline: compare with the writers of GET /api/v1/checkpoints)`,
    );
  }
  for (const w of result.warnings) lines.push(`warning: ${w}`);
  return { text: lines.join('\n') + '\n', exit: complete.length > 0 ? EXIT.OK : EXIT.TAMPERED };
}
