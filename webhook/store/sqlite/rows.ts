/**
 * How the SQLite store's `decisions` rows are read back for chain verification: the row shape, the
 * stored body, the ServiceAccount index keys and the check that a row's index columns match its
 * record. Shared by the store (sequential streamChain) and the verify worker threads.
 */
import type { ChainedRecord, DecisionRecord } from '../../core/record.js';
import type { PreparedItem } from './writer.js';
import { SA_INDEX_PROBLEM, toBodyText, toColumnsProblem, toUnmappedAccounts, type DecisionRow } from '../rows.js';
import { toCanonicalTime } from '../query.js';
import { toDigestBytes } from '../evidence/object-digest.js';

/**
 * A record's account index rows as `key<TAB>time` lines (sa_keys). The record columns a row carries
 * for the stats (namespace, kind, verdict, writer) must equal the record's (alias d, itself checked
 * against the body): a row whose copy differs gets a suffix, so it matches no expected line.
 */
export const SA_KEYS_SQL = `(SELECT group_concat(s.key || char(9) || s.time || CASE WHEN s.namespace = d.namespace AND s.kind = d.kind AND s.verdict = d.verdict AND s.writer = d.writer THEN '' ELSE char(9) || 'columns differ' END, char(10)) FROM decision_sas s WHERE s.decision_id = d.id)`;

/** The columns streamChain and the verify workers read per row, in RawDecisionRow order. */
export const CHAIN_COLUMNS = `d.writer, d.seq, d.id, d.time, d.namespace, d.kind, d.verdict, d.service_accounts, d.task_run, d.pipeline_run, d.prev_hash, d.hash, d.record,
        ${SA_KEYS_SQL} AS sa_keys, d.body, d.ns_seq, d.object_digest`;

export type RawDecisionRow = [string, number, string, string, string, string, string, string, string | null, string | null, string, string, string, string | null, Uint8Array | null, number | null, Uint8Array | null];

/** object_digest as hex (the objectDigest filter's column). */
export type SqliteDecisionRow = DecisionRow & { ns_seq: number | null; object_digest: string | null };


export function toDecisionRow(r: RawDecisionRow): SqliteDecisionRow {
  const [writer, seq, id, time, namespace, kind, verdict, service_accounts, task_run, pipeline_run, prev_hash, hash, record, sa_keys, body, ns_seq, digest] = r;
  const object_digest = digest === null ? null : Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength).toString('hex');
  return { writer, seq, id, time, namespace, kind, verdict, service_accounts, task_run, pipeline_run, prev_hash, hash, record: toBodyText(record, body), sa_keys, ns_seq, object_digest };
}

/** Index keys of a record's ServiceAccounts: "ns/name" and "name" for each, deduplicated. */
export function saKeysOf(serviceAccounts: string[]): string[] {
  const only = serviceAccounts.length === 1 ? serviceAccounts[0] : undefined;
  if (only !== undefined) {
    // The common case (one ServiceAccount), without the Set.
    const slash = only.indexOf('/');
    if (slash < 0) return [only];
    const name = only.slice(slash + 1);
    return name < only ? [name, only] : [only, name];
  }
  const keys = new Set<string>();
  for (const sa of serviceAccounts) {
    keys.add(sa);
    const slash = sa.indexOf('/');
    if (slash >= 0) keys.add(sa.slice(slash + 1));
  }
  return [...keys].sort();
}

/** The object_digest column's value (hex) for a record's objectDigest: toDigestBytes, as hex. */
function digestHexOf(digest: unknown): string | null {
  return toDigestBytes(digest) === null ? null : (digest as string);
}

export function columnProblem(row: SqliteDecisionRow, r: ChainedRecord): string | undefined {
  // Records written by this store carry canonical times already: skip re-parsing those.
  const time = row.time === r.time ? r.time : typeof r.time === 'string' ? toCanonicalTime(r.time) : undefined;
  if (
    row.id !== r.id ||
    row.writer !== r.replica ||
    row.seq !== r.seq ||
    row.prev_hash !== r.prevHash ||
    row.time !== time ||
    row.namespace !== r.namespace ||
    row.kind !== r.kind?.kind ||
    row.verdict !== r.verdict ||
    row.service_accounts !== JSON.stringify(r.serviceAccounts) ||
    row.task_run !== (r.tekton?.taskRun ?? null) ||
    row.pipeline_run !== (r.tekton?.pipelineRun ?? null) ||
    row.ns_seq !== ((r as { nsSeq?: number }).nsSeq ?? null) ||
    row.object_digest !== digestHexOf(r.objectDigest)
  ) {
    const cols: Array<[string, unknown, unknown]> = [
      ['id', row.id, r.id],
      ['writer', row.writer, r.replica],
      ['seq', row.seq, r.seq],
      ['prev_hash', row.prev_hash, r.prevHash],
      ['time', row.time, time],
      ['namespace', row.namespace, r.namespace],
      ['kind', row.kind, r.kind?.kind],
      ['verdict', row.verdict, r.verdict],
      ['service_accounts', row.service_accounts, JSON.stringify(r.serviceAccounts)],
      ['task_run', row.task_run, r.tekton?.taskRun ?? null],
      ['pipeline_run', row.pipeline_run, r.tekton?.pipelineRun ?? null],
      ['ns_seq', row.ns_seq, (r as { nsSeq?: number }).nsSeq ?? null],
      ['object_digest', row.object_digest, digestHexOf(r.objectDigest)],
    ];
    return toColumnsProblem(cols.filter(([, col, want]) => col !== want).map(([name]) => name));
  }
  const want = Array.isArray(r.serviceAccounts) ? saKeysOf(r.serviceAccounts).map((k) => `${k}\t${row.time}`) : [];
  // group_concat follows the (decision_id, key) index, i.e. key order: usually equal as is.
  if (row.sa_keys === (want.length ? want.join('\n') : null)) return undefined;
  const have = row.sa_keys === null ? [] : row.sa_keys.split('\n').sort();
  if (have.length !== want.length || have.some((h, n) => h !== want[n])) return SA_INDEX_PROBLEM;
  return undefined;
}

/** The column values of a record item, as a PreparedItem carries them. */
export function toColumns(r: DecisionRecord | Omit<DecisionRecord, 'patch'>): Pick<PreparedItem, 'id' | 'namespace' | 'kind' | 'verdict' | 'serviceAccounts' | 'taskRun' | 'pipelineRun' | 'unmapped' | 'objectDigest'> {
  return {
    id: r.id, namespace: r.namespace, kind: r.kind.kind, verdict: r.verdict, serviceAccounts: JSON.stringify(r.serviceAccounts),
    taskRun: r.tekton?.taskRun ?? null, pipelineRun: r.tekton?.pipelineRun ?? null, unmapped: toUnmappedAccounts(r), objectDigest: r.objectDigest,
  };
}
