/**
 * GET /api/v1/stats: the aggregate the console's Overview draws, computed in the store (SQL GROUP
 * BY in each adapter over per-hour/per-day rollups the writer keeps, plus the partial edge hours
 * from the records), never by shipping records. This file holds the response shape, the parser of
 * its query, and the one SQL builder (both dialects) for the stats and the rollups; pure.
 */
import { ACCOUNT_PROBLEM_CODES } from '../core/taskrun/account-checks.js';
import type { Verdict } from '../core/verdict.js';
import type { DecisionFilter } from './port.js';
import { EQUALITY_FILTER_COLUMNS, parseDecisionFilter, toDrivingFilter, toSqliteColumn, toSqlParam, type FilterParams } from './query.js';

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
  /** Rollups (ROLLUPS below): verdict counts per hour and namespace, per day and namespace, per hour, and unmapped accounts per hour. */
  hourly: string;
  daily: string;
  cluster: string;
  unmapped: string;
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
const HOUR = 13;
const DAY = 10;

/**
 * The rollup tables the writer keeps in the same transaction as the records (exact, durable): for
 * each, the period (`substr(time, 1, period)`: an hour `YYYY-MM-DDTHH` or a day `YYYY-MM-DD`) and
 * the record columns it counts by. Every one carries the writer, so a writer only ever updates its
 * own rows (no contention between PostgreSQL replicas). `unmapped` counts the unmapped
 * ServiceAccounts of denied and warned records (the Overview's to-do list), one per account a
 * record names. Stats read whole periods here and count only the partial edge hours from records.
 */
export const ROLLUPS = {
  hourly: { period: HOUR, dims: ['namespace', 'kind', 'verdict', 'writer'] },
  daily: { period: DAY, dims: ['namespace', 'kind', 'verdict', 'writer'] },
  cluster: { period: HOUR, dims: ['kind', 'verdict', 'writer'] },
  unmapped: { period: HOUR, dims: ['sa', 'kind', 'verdict', 'writer'] },
} as const;
export type RollupName = keyof typeof ROLLUPS;

/** CREATE TABLE statements of the rollups (text columns compare bytewise: COLLATE "C" on PostgreSQL). */
export function toRollupDdl(dialect: StatsDialect, t: StatsTables): string {
  const text = dialect === 'sqlite' ? 'TEXT' : 'text COLLATE "C"';
  const int = dialect === 'sqlite' ? 'INTEGER' : 'bigint';
  return (Object.keys(ROLLUPS) as RollupName[])
    .map((name) => {
      const cols = ['period', ...ROLLUPS[name].dims];
      return `CREATE TABLE ${t[name]} (${cols.map((c) => `${c} ${text} NOT NULL`).join(', ')}, n ${int} NOT NULL, PRIMARY KEY (${cols.join(', ')}))${dialect === 'sqlite' ? ' WITHOUT ROWID' : ''};`;
    })
    .join('\n');
}

/** Builds one statement's parameter list: `p(v)` appends v and returns its placeholder. */
function paramsFor(dialect: StatsDialect): { params: unknown[]; p(v: unknown): string } {
  const params: unknown[] = [];
  return {
    params,
    p(v: unknown) {
      params.push(v);
      return dialect === 'sqlite' ? '?' : `$${params.length}`;
    },
  };
}

/**
 * Rows (time, kind, verdict, writer, sa) of every unmapped ServiceAccount of the denied and warned
 * records in `from` matching `where` (SQL text over alias d). v2 rows carry the accounts
 * as the writer derived them, a JSON array in the `unmapped` column; v1 rows are read from the
 * record's reasons: a reason's `serviceAccount` when it names one; for records written before
 * reasons carried it, the record's only ServiceAccount, else the `ServiceAccount ns/name has no
 * IdentityMapping` message the rules have always written. `where` is built once per use (params).
 */
function toUnmappedRowsSql(dialect: StatsDialect, from: string, where: () => string): string {
  const codes = UNMAPPED_CODES.map((c) => `'${c}'`).join(', ');
  // Never an index on this (SQLite `+`): the caller's filter drives.
  const verdicts = `${dialect === 'sqlite' ? '+' : ''}d.verdict IN ('denied', 'warned')`;
  if (dialect === 'sqlite') {
    return `SELECT d.time AS time, d.kind AS kind, d.verdict AS verdict, d.writer AS writer, COALESCE(json_extract(r.value, '$.serviceAccount'),
             CASE WHEN json_array_length(d.record, '$.serviceAccounts') = 1 THEN json_extract(d.record, '$.serviceAccounts[0]')
                  WHEN json_extract(r.value, '$.message') LIKE 'ServiceAccount % has no IdentityMapping%'
                  THEN substr(json_extract(r.value, '$.message'), 16, instr(json_extract(r.value, '$.message'), ' has no IdentityMapping') - 16) END) AS sa
           FROM ${from}, json_each(d.record, '$.reasons') r WHERE ${where()} AND ${verdicts} AND d.body IS NULL AND json_extract(r.value, '$.code') IN (${codes})
           UNION ALL
           SELECT d.time AS time, d.kind AS kind, d.verdict AS verdict, d.writer AS writer, u.value AS sa FROM ${from}, json_each(d.unmapped) u WHERE ${where()} AND ${verdicts} AND d.unmapped IS NOT NULL AND d.body IS NOT NULL`;
  }
  return `SELECT d.time AS time, d.kind AS kind, d.verdict AS verdict, d.writer AS writer, COALESCE(r.value ->> 'serviceAccount',
             CASE WHEN jsonb_array_length(j.rec -> 'serviceAccounts') = 1 THEN j.rec -> 'serviceAccounts' ->> 0
                  WHEN r.value ->> 'message' LIKE 'ServiceAccount % has no IdentityMapping%'
                  THEN substr(r.value ->> 'message', 16, strpos(r.value ->> 'message', ' has no IdentityMapping') - 16) END) AS sa
           FROM ${from} CROSS JOIN LATERAL (SELECT CASE WHEN d.body IS NULL THEN d.record::jsonb END AS rec) j CROSS JOIN LATERAL jsonb_array_elements(j.rec -> 'reasons') AS r(value)
           WHERE ${where()} AND ${verdicts} AND d.body IS NULL AND r.value ->> 'code' IN (${codes})
           UNION ALL
           SELECT d.time AS time, d.kind AS kind, d.verdict AS verdict, d.writer AS writer, u.value AS sa FROM ${from} CROSS JOIN LATERAL jsonb_array_elements_text(d.unmapped::jsonb) AS u(value)
           WHERE ${where()} AND ${verdicts} AND d.body IS NOT NULL`;
}

/**
 * Statements that add (sign 1) or subtract (sign -1) the records of `from` (alias d) matching
 * `where` to/from every rollup: the writer runs them for each committed batch, prune before it
 * deletes, a migration once over every record (backfill), PostgreSQL's triggers over the rows a
 * statement inserted or deleted. `where` has no positional parameters (SQLite: named ones, bound
 * by the caller). Subtracting also deletes the rows that fell to zero in the periods it touched.
 */
export function toRollupDeltaSql(dialect: StatsDialect, t: StatsTables, from: string, where: string, sign: 1 | -1): string[] {
  const out: string[] = [];
  const n = sign === 1 ? 'count(*)' : '-count(*)';
  for (const name of Object.keys(ROLLUPS) as RollupName[]) {
    const { period, dims } = ROLLUPS[name];
    const cols = ['period', ...dims];
    const groupBy = cols.map((_, i) => i + 1).join(', ');
    const source =
      name === 'unmapped'
        ? `SELECT substr(u.time, 1, ${period}), u.sa, u.kind, u.verdict, u.writer, ${n} FROM (${toUnmappedRowsSql(dialect, from, () => where)}) u WHERE u.sa IS NOT NULL GROUP BY ${groupBy}`
        : `SELECT substr(d.time, 1, ${period}), ${dims.map((c) => `d.${c}`).join(', ')}, ${n} FROM ${from} WHERE ${where} GROUP BY ${groupBy}`;
    // ORDER BY the key: concurrent transactions lock rollup rows in one order (no deadlock).
    out.push(`INSERT INTO ${t[name]} AS r (${cols.join(', ')}, n) ${source} ORDER BY ${groupBy} ON CONFLICT (${cols.join(', ')}) DO UPDATE SET n = r.n + excluded.n`);
    if (sign === -1) {
      out.push(
        `DELETE FROM ${t[name]} WHERE n = 0 AND period >= (SELECT substr(min(d.time), 1, ${period}) FROM ${from} WHERE ${where}) AND period <= (SELECT substr(max(d.time), 1, ${period}) FROM ${from} WHERE ${where})`,
      );
    }
  }
  return out;
}

/**
 * One upsert per rollup (positional parameters: the key columns in ROLLUPS order, then n): what the
 * writer runs per distinct key of a committed batch. The same counts as toRollupDeltaSql (tested).
 */
export function toRollupUpsertSql(dialect: StatsDialect, t: StatsTables): Record<RollupName, string> {
  const out = {} as Record<RollupName, string>;
  for (const name of Object.keys(ROLLUPS) as RollupName[]) {
    const cols = ['period', ...ROLLUPS[name].dims, 'n'];
    const values = cols.map((_, i) => (dialect === 'sqlite' ? '?' : `$${i + 1}`)).join(', ');
    out[name] = `INSERT INTO ${t[name]} AS r (${cols.join(', ')}) VALUES (${values}) ON CONFLICT (${cols.slice(0, -1).join(', ')}) DO UPDATE SET n = r.n + excluded.n`;
  }
  return out;
}

/** The columns of one record the rollups count it by; `unmapped`: its unmapped ServiceAccounts (the `unmapped` column's array). */
export interface RollupRecord {
  time: string;
  namespace: string;
  kind: string;
  verdict: string;
  writer: string;
  unmapped: readonly string[] | null;
}

/** Adds one record to `acc`: per rollup row it counts in, the key values (ROLLUPS order) → count. Pure but for acc. */
export function addToRollups(acc: Map<string, { name: RollupName; key: string[]; n: number }>, r: RollupRecord): void {
  const hour = r.time.slice(0, HOUR);
  const add = (name: RollupName, key: string[]) => {
    const id = `${name}\u0000${key.join('\u0000')}`;
    const row = acc.get(id);
    if (row) row.n++;
    else acc.set(id, { name, key, n: 1 });
  };
  add('hourly', [hour, r.namespace, r.kind, r.verdict, r.writer]);
  add('daily', [r.time.slice(0, DAY), r.namespace, r.kind, r.verdict, r.writer]);
  add('cluster', [hour, r.kind, r.verdict, r.writer]);
  if (r.unmapped && (r.verdict === 'denied' || r.verdict === 'warned')) for (const sa of r.unmapped) add('unmapped', [hour, sa, r.kind, r.verdict, r.writer]);
}

/** [from, to) on hour or day keys or times; undefined = unbounded. */
interface Range {
  from?: string;
  to?: string;
}

/**
 * How a stats query over [since, until) splits: whole hours (read from the rollups), the whole days
 * among them (the daily rollup, for the per-namespace counts), the hours of `hours` outside `days`,
 * and the partial edge hours counted from the records themselves. Pure.
 */
export interface StatsPlan {
  raw: Range[];
  hours: Range | undefined;
  days: Range | undefined;
  edgeHours: Range[];
}

/** The hour key after `hour` (`YYYY-MM-DDTHH`); past year 9999 a key after every real one. */
function nextKey(key: string, ms: number): string {
  const len = key.length;
  const d = new Date(Date.parse(len === HOUR ? `${key}:00:00Z` : `${key}T00:00:00Z`) + ms);
  if (Number.isNaN(d.getTime()) || d.getUTCFullYear() > 9999) return len === HOUR ? '9999-12-31T24' : '9999-12-32';
  return d.toISOString().slice(0, len);
}

const hourStart = (hour: string): string => `${hour}:00:00.000000Z`;

/** Splits [since, until) (canonical times) into rollup periods and raw edges (see StatsPlan). Pure. */
export function toStatsPlan(since: string | undefined, until: string | undefined): StatsPlan {
  // The first whole hour at or after since; the hour holding until (whole hours end there).
  const h0 = since === undefined ? undefined : since.endsWith(':00:00.000000Z') ? since.slice(0, HOUR) : nextKey(since.slice(0, HOUR), 3_600_000);
  const h1 = until === undefined ? undefined : until.slice(0, HOUR);
  if (h0 !== undefined && h1 !== undefined && h0 >= h1) return { raw: [{ from: since, to: until }], hours: undefined, days: undefined, edgeHours: [] };
  const raw: Range[] = [];
  if (since !== undefined && h0 !== undefined && since < hourStart(h0)) raw.push({ from: since, to: hourStart(h0) });
  if (until !== undefined && h1 !== undefined && hourStart(h1) < until) raw.push({ from: hourStart(h1), to: until });
  const hours: Range = { from: h0, to: h1 };
  const d0 = h0 === undefined ? undefined : h0.endsWith('T00') ? h0.slice(0, DAY) : nextKey(h0.slice(0, DAY), 86_400_000);
  const d1 = h1 === undefined ? undefined : h1.slice(0, DAY);
  if (d0 !== undefined && d1 !== undefined && d0 >= d1) return { raw, hours, days: undefined, edgeHours: [hours] };
  const edgeHours: Range[] = [];
  if (h0 !== undefined && d0 !== undefined && `${d0}T00` > h0) edgeHours.push({ from: h0, to: `${d0}T00` });
  if (h1 !== undefined && d1 !== undefined && `${d1}T00` < h1) edgeHours.push({ from: `${d1}T00`, to: h1 });
  return { raw, hours, days: { from: d0, to: d1 }, edgeHours };
}

/** True when the rollups can answer the filter: no namespace (raw, indexed), account, run or digest filter. */
export function isRollupFilter(filter: StatsFilter): boolean {
  return filter.namespace === undefined && filter.serviceAccount === undefined && filter.taskRun === undefined && filter.pipelineRun === undefined && filter.objectDigest === undefined;
}

/**
 * The record columns each account index row (`decision_sas`) carries besides (key, time,
 * decision_id): what the stats group and filter by, so account stats never read the records.
 */
export const SAS_COLUMNS = ['namespace', 'kind', 'verdict', 'writer'] as const;

/** True when the account index rows alone answer the filter: an account, plus namespace, verdict, kind, since/until at most. */
export function isSasFilter(filter: StatsFilter): boolean {
  return filter.serviceAccount !== undefined && filter.taskRun === undefined && filter.pipelineRun === undefined && filter.objectDigest === undefined;
}

/**
 * Builds the stats queries for a dialect. Filters the rollups can answer (none, verdict, kind,
 * since/until) read whole hours and days from them and count only the partial edge hours from the
 * records; any other filter (a namespace: its covering index; an account: its index rows alone,
 * which carry the columns counted; a run or digest: their indexes) counts the matching records. Both give the same numbers (test/store/stats.test.ts
 * compares them). `toText` maps a filter value to its stored index text (PostgreSQL escapes values
 * it cannot store). Pure.
 */
export function toStatsSql(dialect: StatsDialect, t: StatsTables, filter: StatsFilter, bucket: StatsBucket, toText: (v: string) => string = (v) => v): StatsSql {
  const plan: StatsPlan = isRollupFilter(filter) ? toStatsPlan(filter.since, filter.until) : { raw: [{ from: filter.since, to: filter.until }], hours: undefined, days: undefined, edgeHours: [] };
  // An account filter (with namespace, verdict, kind, since/until at most) is counted from the
  // account index rows alone: they carry the record's time, namespace, kind, verdict and writer
  // (SAS_COLUMNS), one row per (account key, record). Aliased `d`, the same column names.
  const bySas = isSasFilter(filter);
  /** The record filter (on alias `a`) within one raw range, as SQL conditions. */
  const rawWhere = (p: (v: unknown) => string, range: Range, a = 'd'): string[] => {
    const where: string[] = [];
    if (filter.serviceAccount !== undefined) {
      where.push(bySas ? `${a}.key = ${p(toText(filter.serviceAccount))}` : `d.id IN (SELECT s.decision_id FROM ${t.sas} s WHERE s.key = ${p(toText(filter.serviceAccount))})`);
    }
    const driving = toDrivingFilter(filter);
    for (const [key, dcol, type] of EQUALITY_FILTER_COLUMNS) {
      const v = filter[key];
      if (v === undefined) continue;
      const col = `${a}.${dcol.slice(2)}`;
      const ref = dialect === 'sqlite' ? toSqliteColumn(col, key, driving) : col;
      where.push(`${ref} = ${toSqlParam(dialect, type, p(type === 'text' ? toText(String(v)) : v))}`);
    }
    if (range.from !== undefined) where.push(`${a}.time >= ${p(range.from)}`);
    if (range.to !== undefined) where.push(`${a}.time < ${p(range.to)}`);
    return where;
  };
  /** The rollup filter (alias r) within a period range. */
  const rollupWhere = (p: (v: unknown) => string, range: Range): string[] => {
    const where: string[] = [];
    if (filter.kind !== undefined) where.push(`r.kind = ${p(toText(filter.kind))}`);
    if (filter.verdict !== undefined) where.push(`r.verdict = ${p(filter.verdict)}`);
    if (range.from !== undefined) where.push(`r.period >= ${p(range.from)}`);
    if (range.to !== undefined) where.push(`r.period < ${p(range.to)}`);
    return where;
  };
  const whereSql = (conds: string[]): string => (conds.length ? ` WHERE ${conds.join(' AND ')}` : '');
  const D = bySas ? `${t.sas} d` : `${t.decisions} d`;

  /** UNION ALL of rollup rows and raw groups, each selecting `cols` (rollup columns / raw expressions) and n. */
  const union = (p: (v: unknown) => string, rollup: Array<{ table: string; range: Range }>, rawCols: string[], rollupCols: string[]): string => {
    const parts: string[] = [];
    for (const { table, range } of rollup) parts.push(`SELECT ${rollupCols.map((c, i) => `${c} AS c${i}`).join(', ')}, r.n AS n FROM ${table} r${whereSql(rollupWhere(p, range))}`);
    for (const range of plan.raw) {
      const groupBy = rawCols.map((_, i) => i + 1).join(', ');
      parts.push(`SELECT ${rawCols.map((c, i) => `${c} AS c${i}`).join(', ')}, count(*) AS n FROM ${D}${whereSql(rawWhere(p, range))} GROUP BY ${groupBy}`);
    }
    return parts.length ? parts.join('\n UNION ALL ') : `SELECT ${rawCols.map((_, i) => `NULL AS c${i}`).join(', ')}, 0 AS n FROM ${t.checkpoints} WHERE 1 = 0`;
  };
  const hourRollups = (table: string) => (plan.hours ? [{ table, range: plan.hours }] : []);

  const len = BUCKET_PREFIX[bucket];
  const buckets = paramsFor(dialect);
  const bucketsSql = `SELECT substr(x.c0, 1, ${len}) AS start, x.c1 AS verdict, sum(x.n) AS n FROM (${union(buckets.p, hourRollups(t.cluster), [`substr(d.time, 1, ${HOUR})`, 'd.verdict'], ['r.period', 'r.verdict'])}) x GROUP BY 1, 2 HAVING sum(x.n) > 0 ORDER BY 1, 2`;

  const namespaces = paramsFor(dialect);
  const nsRollups = [...(plan.days ? [{ table: t.daily, range: plan.days }] : []), ...plan.edgeHours.map((range) => ({ table: t.hourly, range }))];
  const namespacesSql = `SELECT x.c0 AS namespace, x.c1 AS verdict, sum(x.n) AS n FROM (${union(namespaces.p, nsRollups, ['d.namespace', 'd.verdict'], ['r.namespace', 'r.verdict'])}) x GROUP BY 1, 2 HAVING sum(x.n) > 0 ORDER BY 1, 2`;

  const writers = paramsFor(dialect);
  const writersSql = `SELECT w.writer AS writer, w.n AS n, c.size AS size, c.time AS time FROM (SELECT x.c0 AS writer, sum(x.n) AS n FROM (${union(writers.p, hourRollups(t.cluster), ['d.writer'], ['r.writer'])}) x GROUP BY 1 HAVING sum(x.n) > 0) w
        LEFT JOIN ${t.checkpoints} c ON c.writer = w.writer AND c.size = (SELECT max(size) FROM ${t.checkpoints} m WHERE m.writer = w.writer) ORDER BY 1`;

  const unmapped = paramsFor(dialect);
  const uparts: string[] = [];
  for (const { table, range } of hourRollups(t.unmapped)) uparts.push(`SELECT r.sa AS sa, r.verdict AS verdict, r.n AS n FROM ${table} r${whereSql(rollupWhere(unmapped.p, range))}`);
  for (const range of plan.raw) {
    // By account: its denied and warned index rows (few) lead to their records, read for the accounts.
    const rows = bySas
      ? toUnmappedRowsSql(dialect, `${t.sas} s JOIN ${t.decisions} d ON d.id = s.decision_id`, () => [...rawWhere(unmapped.p, range, 's'), `s.verdict IN ('denied', 'warned')`].join(' AND '))
      : toUnmappedRowsSql(dialect, D, () => rawWhere(unmapped.p, range).join(' AND ') || '1 = 1');
    uparts.push(`SELECT u.sa AS sa, u.verdict AS verdict, count(*) AS n FROM (${rows}) u WHERE u.sa IS NOT NULL GROUP BY 1, 2`);
  }
  const unmappedSql = uparts.length
    ? `SELECT x.sa AS sa, sum(CASE WHEN x.verdict = 'denied' THEN x.n ELSE 0 END) AS denied, sum(CASE WHEN x.verdict = 'warned' THEN x.n ELSE 0 END) AS warned
         FROM (${uparts.join('\n UNION ALL ')}) x GROUP BY 1 ORDER BY denied DESC, warned DESC, sa LIMIT ${UNMAPPED_LIMIT}`
    : `SELECT NULL AS sa, 0 AS denied, 0 AS warned FROM ${t.checkpoints} WHERE 1 = 0`;

  return {
    buckets: { sql: bucketsSql, params: buckets.params },
    namespaces: { sql: namespacesSql, params: namespaces.params },
    unmapped: { sql: unmappedSql, params: unmapped.params },
    writers: { sql: writersSql, params: writers.params },
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
