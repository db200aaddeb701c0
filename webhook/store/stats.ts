/**
 * GET /api/v1/stats: the aggregate the console's Overview draws, computed in the store (SQL GROUP
 * BY in each adapter), never by shipping records. This file holds the response shape and the
 * parser of its query; pure.
 */
import type { Verdict } from '../core/verdict.js';
import type { DecisionFilter } from './port.js';
import { parseDecisionFilter, type FilterParams } from './query.js';

export const STATS_BUCKETS = ['hour', 'day'] as const;
export type StatsBucket = (typeof STATS_BUCKETS)[number];
export const DEFAULT_STATS_BUCKET: StatsBucket = 'day';

/** Most ServiceAccounts listed in `unmapped` (the ones with the most denials first). */
export const UNMAPPED_LIMIT = 50;

export type VerdictCounts = Partial<Record<Verdict, number>>;

export interface DecisionStats {
  /** Verdict counts per time bucket (UTC hour or day start, RFC 3339), oldest first; empty buckets left out. */
  buckets: Array<{ start: string; counts: VerdictCounts }>;
  /** Verdict counts per namespace, by namespace name. */
  namespaces: Array<{ namespace: string; counts: VerdictCounts }>;
  /** ServiceAccounts a decision found unmapped (`ns/name`), most denied first. */
  unmapped: Array<{ serviceAccount: string; denied: number; warned: number }>;
  /** Records per writer within the filter, and the writer's last signed checkpoint. */
  writers: Array<{ writer: string; records: number; checkpoint: { size: number; time: string } | null }>;
}

export type StatsFilter = Omit<DecisionFilter, 'limit' | 'cursor'>;

export type StatsQuery = { ok: true; filter: StatsFilter; bucket: StatsBucket } | { ok: false; errors: string[] };

/** Parses `?<decision filters>&bucket=hour|day`; limit and cursor do not apply to an aggregate. */
export function parseStatsQuery(params: FilterParams): StatsQuery {
  const errors: string[] = [];
  let bucket: StatsBucket = DEFAULT_STATS_BUCKET;
  const b = params.bucket;
  if (Array.isArray(b)) errors.push(`bucket is given ${b.length} times; give it once`);
  else if (b !== undefined) {
    if ((STATS_BUCKETS as readonly string[]).includes(b)) bucket = b as StatsBucket;
    else errors.push(`bucket "${b}" is not one of ${STATS_BUCKETS.join(', ')}`);
  }
  for (const k of ['limit', 'cursor']) if (params[k] !== undefined) errors.push(`${k} does not apply to stats: they aggregate every matching record`);
  const parsed = parseDecisionFilter(params, { ignore: ['bucket'] });
  if (!parsed.ok) errors.push(...parsed.errors);
  if (errors.length || !parsed.ok) return { ok: false, errors };
  const { limit: _limit, cursor: _cursor, ...filter } = parsed.filter;
  return { ok: true, filter, bucket };
}
