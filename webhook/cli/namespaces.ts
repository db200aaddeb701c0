/**
 * `tzw namespaces readiness [--since 7d] (--store URL | --server URL)`: before switching an audit
 * namespace to enforce, the runs that would have been denied and the ServiceAccounts to map, from
 * the recorded `warned` decisions. Exit 0 only when there are none.
 *
 * Records come from the one decision query behind the audit API and `tzw decisions list`
 * (`store.query` with `verdict=warned&since=…`), read locally (--store) or through the audit API
 * (--server: the audit API client of `tzw decisions … --server`, GET /api/v1/decisions with the
 * same filter), page by page.
 */
import type { ChainedRecord } from '../core/record.js';
import { toNamespaceReadiness, type NamespaceReadiness } from '../core/readiness.js';
import { openStoreForRead } from '../store/open-url.js';
import { redactUrl } from '../store/open.js';
import { MAX_LIMIT, toCanonicalTime } from '../store/query.js';
import type { Command } from './command.js';
import { SERVER_OPTIONS, withClient } from './decisions.js';
import { EXIT, UsageError, type CliIo } from './io.js';
import { describeInterrupt, runWithProgress, type OnProgress } from './progress.js';

export const DEFAULT_SINCE = '7d';
const UNITS: Record<string, number> = { m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** `7d`, `36h`, `90m`, `2w` before `now`, or an RFC 3339 time, as a canonical record time. */
export function parseSince(text: string, now: Date): string {
  const rel = /^(\d{1,5})([mhdw])$/.exec(text);
  if (rel) return toCanonicalTime(new Date(now.getTime() - Number(rel[1]) * UNITS[rel[2]!]!).toISOString())!;
  const abs = toCanonicalTime(text);
  if (abs === undefined) throw new UsageError(`--since "${text}" is neither a duration (7d, 36h, 90m, 2w) nor an RFC 3339 time`);
  return abs;
}

interface Page {
  items: ChainedRecord[];
  nextCursor: string | null;
}

async function* pages(next: (cursor: string | undefined) => Promise<Page>): AsyncIterable<ChainedRecord> {
  let cursor: string | undefined;
  do {
    const page = await next(cursor);
    yield* page.items;
    cursor = page.nextCursor ?? undefined;
  } while (cursor !== undefined);
}

/** Every record of `it`, each one reported to `onProgress` (the progress line; Ctrl-C stops here). */
async function collect(it: AsyncIterable<ChainedRecord>, onProgress: OnProgress): Promise<ChainedRecord[]> {
  const out: ChainedRecord[] = [];
  await onProgress({ phase: 'warned records', done: 0, unit: 'records' });
  for await (const r of it) {
    out.push(r);
    const waiting = onProgress({ phase: 'warned records', done: out.length, unit: 'records' });
    if (waiting) await waiting;
  }
  return out;
}

/** Human-readable report: a summary table, then the runs per namespace. */
export function toReadinessText(report: NamespaceReadiness[], since: string, source: string): string {
  if (report.length === 0) return `No audit-mode namespace recorded a run that enforce would deny since ${since} (${source}). Ready to enforce.\n`;
  const lines = [`Runs that enforce would have denied since ${since} (${source}):`, ''];
  const w = Math.max('NAMESPACE'.length, ...report.map((n) => n.namespace.length));
  lines.push(`${'NAMESPACE'.padEnd(w)}  RUNS  SERVICEACCOUNTS TO MAP OR FIX`);
  for (const n of report) lines.push(`${n.namespace.padEnd(w)}  ${String(n.runs.length).padEnd(4)}  ${n.serviceAccounts.map((s) => `${s.serviceAccount} (${s.runs})`).join(', ') || '—'}`);
  for (const n of report) {
    lines.push('', `${n.namespace}:`);
    for (const r of n.runs) lines.push(`  ${r.time}  ${r.kind} ${r.name}  ${r.reasons.join(',')}  ${r.serviceAccounts.join(', ')}  decision ${r.decisionId}`);
  }
  lines.push('', 'Create an IdentityMapping for each ServiceAccount (or fix the one that claims it) before labelling the namespace tekton-zscaler.io/mode=enforce.');
  return lines.join('\n') + '\n';
}

export const namespacesReadinessCommand: Command = {
  options: {
    since: { type: 'string', default: DEFAULT_SINCE },
    store: { type: 'string' },
    ...SERVER_OPTIONS,
    output: { type: 'string', short: 'o', default: 'text' },
    quiet: { type: 'boolean', short: 'q' },
  },
  async run({ values, positionals }, io) {
    if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
    const output = values.output as string;
    if (output !== 'text' && output !== 'json') throw new UsageError(`-o must be text or json, got "${output}"`);
    const hasStore = typeof values.store === 'string';
    const hasServer = typeof values.server === 'string';
    if (hasStore === hasServer) throw new UsageError('give exactly one of --store URL or --server https://HOST:PORT');
    const since = parseSince(values.since as string, new Date());
    let source = hasStore ? `store ${redactUrl(values.store as string)}` : `server ${String(values.server)}`;
    const outcome = await runWithProgress(io, { title: 'readiness', quiet: values.quiet === true }, async (onProgress) => {
      if (hasStore) {
        const store = await openStoreForRead(values.store as string, { cwd: io.cwd });
        try {
          return await collect(pages((cursor) => store.query({ verdict: 'warned', since, limit: MAX_LIMIT, ...(cursor ? { cursor } : {}) })), onProgress);
        } finally {
          await store.close();
        }
      }
      return withClient(values, io, async (client) => {
        source = `server ${client.server}`;
        return collect(pages((cursor) => client.fetchPage({ verdict: 'warned', since, limit: MAX_LIMIT, ...(cursor ? { cursor } : {}) })), onProgress);
      });
    });
    if (!outcome.ok) {
      io.stderr(describeInterrupt(outcome, 'readiness', `No report for ${source}.`));
      return EXIT.INTERRUPTED;
    }
    const records = outcome.value;
    const report = toNamespaceReadiness(records);
    io.stdout(output === 'json' ? JSON.stringify({ since, source, namespaces: report }, null, 2) + '\n' : toReadinessText(report, since, source));
    return report.length === 0 ? EXIT.OK : EXIT.PROBLEMS;
  },
};
