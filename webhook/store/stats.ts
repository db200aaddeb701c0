/**
 * GET /api/v1/stats: the aggregate the console's Overview draws, computed in the store (SQL GROUP
 * BY in each adapter), never by shipping records. This file holds the response shape and the
 * parser of its query; pure.
 */
import { ACCOUNT_PROBLEM_CODES } from '../core/taskrun/account-checks.js';
import type { Verdict } from '../core/verdict.js';
import type { DecisionFilter } from './port.js';
import { EQUALITY_FILTER_COLUMNS, parseDecisionFilter, type FilterParams } from './query.js';

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

/**
 * Reason codes that name a ServiceAccount without a usable IdentityMapping (none, or claimed by two,
 * or by an invalid one: the Overview's to-do list). The core's list, the one the writers' `unmapped`
 * column uses too (rows.ts), so v1 rows (read from their JSON here) and v2 rows count alike.
 */
export const UNMAPPED_CODES = ACCOUNT_PROBLEM_CODES;

export type StatsDialect = 'sqlite' | 'postgres';

export interface StatsTables {
  decisions: string;
  sas: string;
  checkpoints: string;
}

export interface SqlQuery {
  sql: string;
  params: unknown[];
}

/** The four GROUP BY queries of one stats call; each adapter runs them on its own connection. */
export interface StatsSql {
  buckets: SqlQuery;
  namespaces: SqlQuery;
  unmapped: SqlQuery;
  writers: SqlQuery;
}

/** Characters of the canonical time that name the bucket: `YYYY-MM-DDTHH` or `YYYY-MM-DD`. */
const BUCKET_PREFIX: Record<StatsBucket, number> = { hour: 13, day: 10 };

/**
 * Builds the stats queries for a dialect: every aggregate is a GROUP BY over the filtered records in
 * the database, served by the same (column, time, id) indexes as the decision list. `toText` maps a
 * filter value to its stored index text (PostgreSQL escapes values it cannot store). Pure.
 *
 * Unmapped ServiceAccounts come from the reasons: a reason's `serviceAccount` when it names one;
 * for records written before reasons carried it, the record's only ServiceAccount, else the
 * `ServiceAccount ns/name has no IdentityMapping` message the rules have always written.
 */
export function toStatsSql(dialect: StatsDialect, t: StatsTables, filter: StatsFilter, bucket: StatsBucket, toText: (v: string) => string = (v) => v): StatsSql {
  const params: unknown[] = [];
  const p = (v: unknown): string => {
    params.push(v);
    return dialect === 'sqlite' ? '?' : `$${params.length}`;
  };
  const where: string[] = [];
  if (filter.serviceAccount !== undefined) where.push(`d.id IN (SELECT s.decision_id FROM ${t.sas} s WHERE s.key = ${p(toText(filter.serviceAccount))})`);
  for (const [key, col] of EQUALITY_FILTER_COLUMNS) {
    const v = filter[key];
    if (v !== undefined) where.push(`${col} = ${p(toText(String(v)))}`);
  }
  if (filter.since !== undefined) where.push(`d.time >= ${p(filter.since)}`);
  if (filter.until !== undefined) where.push(`d.time < ${p(filter.until)}`);
  const filterParams = [...params];
  const whereSql = where.length ? ` WHERE ${where.join(' AND ')}` : '';
  // Each query repeats the filter with its own copy of the parameters (numbered alike in each).
  const again = (extra: string[] = []): SqlQuery => ({
    sql: whereSql + (extra.length ? `${where.length ? ' AND' : ' WHERE'} ${extra.join(' AND ')}` : ''),
    params: [...filterParams],
  });
  const base = again();
  const codes = UNMAPPED_CODES.map((c) => `'${c}'`).join(', ');
  const unmappedWhere = again([`d.verdict IN ('denied', 'warned')`]);
  const unmappedSql =
    dialect === 'sqlite'
      ? // v1 rows (record JSON text) as above; v2 rows (compressed body) carry the same accounts,
        // derived by the writer thread the same way, as a JSON array in the \`unmapped\` column.
        `SELECT sa, sum(verdict = 'denied') AS denied, sum(verdict = 'warned') AS warned FROM (
           SELECT d.verdict AS verdict, COALESCE(json_extract(r.value, '$.serviceAccount'),
             CASE WHEN json_array_length(d.record, '$.serviceAccounts') = 1 THEN json_extract(d.record, '$.serviceAccounts[0]')
                  WHEN json_extract(r.value, '$.message') LIKE 'ServiceAccount % has no IdentityMapping%'
                  THEN substr(json_extract(r.value, '$.message'), 16, instr(json_extract(r.value, '$.message'), ' has no IdentityMapping') - 16) END) AS sa
           FROM ${t.decisions} d, json_each(d.record, '$.reasons') r${unmappedWhere.sql} AND d.body IS NULL AND json_extract(r.value, '$.code') IN (${codes})
           UNION ALL
           SELECT d.verdict AS verdict, u.value AS sa FROM ${t.decisions} d, json_each(d.unmapped) u${unmappedWhere.sql} AND d.body IS NOT NULL
         ) WHERE sa IS NOT NULL GROUP BY sa ORDER BY denied DESC, warned DESC, sa LIMIT ${UNMAPPED_LIMIT}`
      : `SELECT sa, count(*) FILTER (WHERE verdict = 'denied') AS denied, count(*) FILTER (WHERE verdict = 'warned') AS warned FROM (
           SELECT d.verdict AS verdict, COALESCE(r.value ->> 'serviceAccount',
             CASE WHEN jsonb_array_length(j.rec -> 'serviceAccounts') = 1 THEN j.rec -> 'serviceAccounts' ->> 0
                  WHEN r.value ->> 'message' LIKE 'ServiceAccount % has no IdentityMapping%'
                  THEN substr(r.value ->> 'message', 16, strpos(r.value ->> 'message', ' has no IdentityMapping') - 16) END) AS sa
           FROM ${t.decisions} d CROSS JOIN LATERAL (SELECT CASE WHEN d.body IS NULL THEN d.record::jsonb END AS rec) j CROSS JOIN LATERAL jsonb_array_elements(j.rec -> 'reasons') AS r(value)${unmappedWhere.sql}
             AND d.body IS NULL AND r.value ->> 'code' IN (${codes})
           UNION ALL
           SELECT d.verdict AS verdict, u.value AS sa FROM ${t.decisions} d CROSS JOIN LATERAL jsonb_array_elements_text(d.unmapped::jsonb) AS u(value)${unmappedWhere.sql} AND d.body IS NOT NULL
         ) u WHERE sa IS NOT NULL GROUP BY sa ORDER BY denied DESC, warned DESC, sa LIMIT ${UNMAPPED_LIMIT}`;
  const len = BUCKET_PREFIX[bucket];
  return {
    buckets: { sql: `SELECT substr(d.time, 1, ${len}) AS start, d.verdict AS verdict, count(*) AS n FROM ${t.decisions} d${base.sql} GROUP BY 1, 2 ORDER BY 1, 2`, params: base.params },
    namespaces: { sql: `SELECT d.namespace AS namespace, d.verdict AS verdict, count(*) AS n FROM ${t.decisions} d${base.sql} GROUP BY 1, 2 ORDER BY 1, 2`, params: base.params },
    unmapped: { sql: unmappedSql, params: dialect === 'sqlite' ? [...unmappedWhere.params, ...unmappedWhere.params] : unmappedWhere.params },
    writers: {
      sql: `SELECT w.writer AS writer, w.n AS n, c.size AS size, c.time AS time FROM (SELECT d.writer AS writer, count(*) AS n FROM ${t.decisions} d${base.sql} GROUP BY 1) w
        LEFT JOIN ${t.checkpoints} c ON c.writer = w.writer AND c.size = (SELECT max(size) FROM ${t.checkpoints} m WHERE m.writer = w.writer) ORDER BY 1`,
      params: base.params,
    },
  };
}

export interface StatsRows {
  buckets: Array<{ start: string; verdict: string; n: number | string }>;
  namespaces: Array<{ namespace: string; verdict: string; n: number | string }>;
  unmapped: Array<{ sa: string; denied: number | string; warned: number | string }>;
  writers: Array<{ writer: string; n: number | string; size: number | string | null; time: string | null }>;
}

/** Rows of the four queries → the API's shape (PostgreSQL's bigint counts arrive as strings). Pure. */
export function toDecisionStats(rows: StatsRows, bucket: StatsBucket): DecisionStats {
  const suffix = bucket === 'hour' ? ':00:00Z' : 'T00:00:00Z';
  const group = <K extends string>(list: Array<{ verdict: string; n: number | string } & Record<K, string>>, key: K) => {
    const out = new Map<string, VerdictCounts>();
    for (const r of list) {
      const counts = out.get(r[key]) ?? {};
      counts[r.verdict as Verdict] = Number(r.n);
      out.set(r[key], counts);
    }
    return out;
  };
  return {
    buckets: [...group(rows.buckets, 'start')].map(([start, counts]) => ({ start: start + suffix, counts })),
    namespaces: [...group(rows.namespaces, 'namespace')].map(([namespace, counts]) => ({ namespace, counts })),
    unmapped: rows.unmapped.map((r) => ({ serviceAccount: r.sa, denied: Number(r.denied), warned: Number(r.warned) })),
    writers: rows.writers.map((r) => ({ writer: r.writer, records: Number(r.n), checkpoint: r.size === null || r.time === null ? null : { size: Number(r.size), time: r.time } })),
  };
}
