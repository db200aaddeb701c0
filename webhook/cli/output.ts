/**
 * Renderers for decision records, shared by the `tzw decisions` commands and the audit API's
 * export, so a CSV from `tzw decisions list -o csv` and one from `GET /api/v1/decisions?format=csv`
 * have the same columns in the same order. Pure apart from the stream helpers at the end.
 */
import { pipeline, Readable } from 'node:stream';
import { stringify, type Options as CsvOptions, type Stringifier } from 'csv-stringify';
import { stringify as stringifySync } from 'csv-stringify/sync';
import type { ChainedRecord } from '../core/record.js';

/** Output formats of `tzw decisions list`. */
export const LIST_FORMATS = ['table', 'json', 'jsonl', 'csv'] as const;
export type ListFormat = (typeof LIST_FORMATS)[number];

/** Export formats of the audit API (`?format=`). */
export const EXPORT_FORMATS = ['jsonl', 'csv'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

/**
 * The one CSV column list (API export and CLI). Stable: columns are only ever appended, so
 * spreadsheets and scripts built on an older export keep working.
 */
export const CSV_COLUMNS = [
  'id', 'time', 'endpoint', 'verdict', 'namespace', 'name', 'kind', 'operation', 'user', 'serviceAccounts',
  'mapping', 'provider', 'subject', 'policyTags', 'reasons', 'requestUid', 'dryRun', 'replica', 'durationMs', 'hash',
] as const;
export type CsvColumn = (typeof CSV_COLUMNS)[number];

/** Lists inside one CSV cell are joined with this; reasons are `CODE: message` joined with REASON_SEPARATOR. */
export const LIST_SEPARATOR = ',';
export const REASON_SEPARATOR = '; ';

const CSV_OPTIONS: CsvOptions = {
  header: true,
  columns: CSV_COLUMNS.map((key) => ({ key })),
  // Usernames and reason messages come from requests; a cell starting with = + - @ would run as
  // a formula when an auditor opens the file in a spreadsheet (OWASP "CSV injection").
  escape_formulas: true,
};

/** One record as a flat CSV row (`kind` is the Kind name, lists are joined, `mapping` is its name). */
export function toCsvRow(r: ChainedRecord): Record<CsvColumn, string> {
  return {
    id: r.id,
    time: r.time,
    endpoint: r.endpoint,
    verdict: r.verdict,
    namespace: r.namespace,
    name: r.name,
    kind: r.kind.kind,
    operation: r.operation,
    user: r.user.username,
    serviceAccounts: r.serviceAccounts.join(LIST_SEPARATOR),
    mapping: r.mapping?.name ?? '',
    provider: r.mapping?.provider ?? '',
    subject: r.mapping?.subject ?? '',
    policyTags: r.policyTags.join(LIST_SEPARATOR),
    reasons: r.reasons.map((x) => `${x.code}: ${x.message}`).join(REASON_SEPARATOR),
    requestUid: r.requestUid,
    dryRun: String(r.dryRun),
    replica: r.replica,
    durationMs: String(r.durationMs),
    hash: r.hash,
  };
}

/** CSV text (header + one line per record) for a page of records. */
export function toCsv(records: readonly ChainedRecord[]): string {
  return stringifySync(records.map(toCsvRow), CSV_OPTIONS);
}

/** One JSON line (with the trailing newline) per record. */
export function toJsonLines(records: readonly ChainedRecord[]): string {
  let out = '';
  for (const r of records) out += JSON.stringify(r) + '\n';
  return out;
}

/** A page as the API returns it: `{items, nextCursor}`, pretty-printed. */
export function toJsonPage(page: { items: readonly ChainedRecord[]; nextCursor: string | null }): string {
  return JSON.stringify({ items: page.items, nextCursor: page.nextCursor }, null, 2) + '\n';
}

/** Column headers of the table output (kubectl style). */
export const TABLE_COLUMNS = ['ID', 'TIME', 'VERDICT', 'ENDPOINT', 'NAMESPACE', 'NAME', 'KIND', 'SERVICE ACCOUNTS', 'REASONS'] as const;

/** kubectl prints this for an empty cell. */
const NONE = '<none>';
const COLUMN_GAP = '   ';

// Control characters (and the Unicode line/paragraph separators) in a record's strings must not
// reach a terminal raw: a name or username from a malicious request could otherwise move the
// cursor, recolour, or fake extra rows. They are shown escaped, like JSON does.
// eslint-disable-next-line no-control-regex
const UNSAFE_FOR_TERMINAL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

function cell(s: string): string {
  if (s === '') return NONE;
  return s.replace(UNSAFE_FOR_TERMINAL, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
}

function toTableRow(r: ChainedRecord): string[] {
  return [
    r.id,
    r.time,
    r.verdict,
    r.endpoint,
    r.namespace,
    r.name,
    r.kind.kind,
    r.serviceAccounts.join(LIST_SEPARATOR),
    r.reasons.map((x) => x.code).join(LIST_SEPARATOR),
  ].map(cell);
}

/**
 * kubectl-style table: upper-case headers, columns left-aligned and separated by three spaces,
 * `<none>` for empty cells, no trailing spaces. Reasons show their codes (use -o json for messages).
 */
export function toTable(records: readonly ChainedRecord[]): string {
  const rows: string[][] = [[...TABLE_COLUMNS], ...records.map(toTableRow)];
  const widths = TABLE_COLUMNS.map((_, i) => Math.max(...rows.map((row) => (row[i] ?? '').length)));
  return rows.map((row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join(COLUMN_GAP)).join('\n') + '\n';
}

/** Records pulled in bigger chunks than one per write: one syscall per record is slow for millions. */
const JSONL_CHUNK_BYTES = 64 * 1024;

async function* toJsonlChunks(records: AsyncIterable<ChainedRecord>): AsyncGenerator<string> {
  let buf = '';
  for await (const r of records) {
    buf += JSON.stringify(r) + '\n';
    if (buf.length >= JSONL_CHUNK_BYTES) {
      yield buf;
      buf = '';
    }
  }
  if (buf) yield buf;
}

async function* toCsvRows(records: AsyncIterable<ChainedRecord>): AsyncGenerator<Record<CsvColumn, string>> {
  for await (const r of records) yield toCsvRow(r);
}

/**
 * A byte stream of `records` in `format`, pulled on demand (memory stays flat however many records
 * match). An error from the source destroys the returned stream with that error; destroying the
 * returned stream (a client that went away) ends the iteration of `records` (its `return()`).
 */
export function createExportStream(records: AsyncIterable<ChainedRecord>, format: ExportFormat): Readable {
  if (format === 'jsonl') return Readable.from(toJsonlChunks(records), { objectMode: false });
  const csv: Stringifier = stringify(CSV_OPTIONS);
  // pipeline, not pipe: it tears the source down when the consumer is destroyed, and forwards errors.
  return pipeline(Readable.from(toCsvRows(records)), csv, () => undefined);
}
