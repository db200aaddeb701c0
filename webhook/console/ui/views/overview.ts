/**
 * Overview for the current filter: verdicts over time (uPlot), denials by namespace, the top
 * unmapped ServiceAccounts (the admin's to-do list) and per writer the records, the last signed
 * checkpoint and its verification. One GET /api/v1/stats call, aggregated by the store.
 */
import uPlot from 'uplot';
import { api, type Checkpoint, type DecisionStats } from '../api.js';
import { h, replaceChildren } from '../dom.js';
import { BUCKETS, VERDICTS, toApiParams, withQuery } from '../url.js';
import { verifyCheckpoint } from '../verify.js';
import { exportButton, filterForm, problemBox, rethrowUnauthenticated, shortTime, toProblemText, type ViewContext } from './common.js';

/** One colour per verdict, distinguishable for the common colour-vision deficiencies (Okabe–Ito). */
const COLOURS: Record<string, string> = {
  allowed: '#009E73',
  patched: '#0072B2',
  denied: '#D55E00',
  warned: '#E69F00',
  errored: '#CC79A7',
  rejected: '#000000',
};

const BUCKET_SECONDS = { hour: 3600, day: 86400 } as const;
/** Above this many buckets the gaps are not filled with zeros (the line just joins the points). */
const MAX_FILLED_BUCKETS = 5000;

function section(title: string, ...children: Array<Node | null>): HTMLElement {
  const id = `sec-${title.toLowerCase().replace(/[^a-z]+/g, '-')}`;
  return h('section', { 'aria-labelledby': id, class: 'card' }, h('h2', { id }, title), ...children);
}

function link(ctx: ViewContext, url: string, text: string): HTMLAnchorElement {
  return h('a', { href: url, onclick: (ev: Event) => { ev.preventDefault(); ctx.navigate(url); } }, text);
}

/** Aligned series for uPlot: x = bucket start (epoch s), one y array per verdict, gaps filled with 0. */
export function toChartData(stats: DecisionStats, bucket: keyof typeof BUCKET_SECONDS): { xs: number[]; series: Array<{ verdict: string; ys: number[] }> } {
  const step = BUCKET_SECONDS[bucket];
  const byStart = new Map(stats.buckets.map((b) => [Math.floor(Date.parse(b.start) / 1000), b.counts]));
  let xs = [...byStart.keys()].sort((a, b) => a - b);
  const first = xs[0];
  const last = xs[xs.length - 1];
  if (first !== undefined && last !== undefined && (last - first) / step < MAX_FILLED_BUCKETS) {
    xs = [];
    for (let x = first; x <= last; x += step) xs.push(x);
  }
  const present = VERDICTS.filter((v) => stats.buckets.some((b) => (b.counts[v] ?? 0) > 0));
  return { xs, series: present.map((v) => ({ verdict: v, ys: xs.map((x) => byStart.get(x)?.[v] ?? 0) })) };
}

function chart(stats: DecisionStats, bucket: keyof typeof BUCKET_SECONDS): HTMLElement {
  const data = toChartData(stats, bucket);
  const box = h('div', { class: 'chart', role: 'img', 'aria-label': `Verdict counts per ${bucket}` });
  const table = h(
    'table',
    { class: 'chart-data' },
    h('caption', {}, `Decisions per ${bucket} and verdict`),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, bucket === 'hour' ? 'Hour' : 'Day'), ...data.series.map((s) => h('th', { scope: 'col' }, s.verdict)))),
    h('tbody', {}, ...stats.buckets.map((b) => h('tr', {}, h('th', { scope: 'row' }, shortTime(b.start)), ...data.series.map((s) => h('td', {}, String(b.counts[s.verdict as keyof typeof b.counts] ?? 0)))))),
  );
  const wrap = h('div', {}, box, h('details', {}, h('summary', {}, 'Chart data as a table'), h('div', { class: 'table-wrap' }, table)));
  if (data.xs.length === 0) {
    box.append(h('p', { class: 'muted' }, 'No decisions match these filters.'));
    return wrap;
  }
  // uPlot measures its container, so build it once the section is in the document.
  requestAnimationFrame(() => {
    const width = () => Math.max(280, box.clientWidth);
    const plot = new uPlot(
      {
        width: width(),
        height: 260,
        scales: { x: { time: true } },
        // Buckets are UTC hours/days: label them in UTC whatever the browser's zone.
        tzDate: (ts: number) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
        axes: [{}, { label: 'decisions' }],
        series: [{ label: 'time' }, ...data.series.map((s) => ({ label: s.verdict, stroke: COLOURS[s.verdict] ?? '#555', width: 2, points: { show: true, size: 5 } }))],
      },
      [data.xs, ...data.series.map((s) => s.ys)],
      box,
    );
    const ro = new ResizeObserver(() => plot.setSize({ width: width(), height: 260 }));
    ro.observe(box);
    (box as unknown as { uplot: uPlot }).uplot = plot;
  });
  return wrap;
}

function total(counts: Partial<Record<string, number>>): number {
  return Object.values(counts).reduce<number>((a, n) => a + (n ?? 0), 0);
}

function namespacesTable(ctx: ViewContext, stats: DecisionStats): HTMLElement {
  const rows = [...stats.namespaces]
    .filter((n) => n.namespace !== '')
    .sort((a, b) => (b.counts.denied ?? 0) - (a.counts.denied ?? 0) || (b.counts.warned ?? 0) - (a.counts.warned ?? 0) || a.namespace.localeCompare(b.namespace));
  if (rows.length === 0) return h('p', { class: 'muted' }, 'No namespaced decisions match these filters.');
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      {},
      h('caption', {}, 'Denied and warned decisions per namespace, most denied first'),
      h('thead', {}, h('tr', {}, ...['Namespace', 'Denied', 'Warned', 'All decisions'].map((t) => h('th', { scope: 'col' }, t)))),
      h(
        'tbody',
        {},
        ...rows.map((n) =>
          h(
            'tr',
            {},
            h('th', { scope: 'row' }, link(ctx, withQuery('/', new URLSearchParams({ namespace: n.namespace, verdict: 'denied' })), n.namespace)),
            h('td', {}, String(n.counts.denied ?? 0)),
            h('td', {}, String(n.counts.warned ?? 0)),
            h('td', {}, String(total(n.counts))),
          ),
        ),
      ),
    ),
  );
}

function unmappedTable(ctx: ViewContext, stats: DecisionStats): HTMLElement {
  if (stats.unmapped.length === 0) return h('p', { class: 'muted' }, 'No decision found an unmapped ServiceAccount.');
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      {},
      h('caption', {}, 'ServiceAccounts without an IdentityMapping, most denied first: create a mapping for each'),
      h('thead', {}, h('tr', {}, ...['Service account', 'Denied', 'Warned'].map((t) => h('th', { scope: 'col' }, t)))),
      h(
        'tbody',
        {},
        ...stats.unmapped.map((u) =>
          h('tr', {}, h('th', { scope: 'row' }, link(ctx, withQuery('/', new URLSearchParams({ serviceAccount: u.serviceAccount })), u.serviceAccount)), h('td', {}, String(u.denied)), h('td', {}, String(u.warned))),
        ),
      ),
    ),
  );
}

async function writersTable(stats: DecisionStats): Promise<HTMLElement> {
  // The signatures need GET /api/v1/checkpoints, which a namespaced auditor may not be allowed.
  let checks = new Map<string, string>();
  let note: HTMLElement | null = null;
  try {
    const [{ items }, jwks] = await Promise.all([api.latestCheckpoints(), api.jwks()]);
    const last = new Map<string, Checkpoint>();
    for (const c of items) last.set(c.writer, c);
    for (const [writer, c] of last) {
      const r = await verifyCheckpoint(c, jwks);
      checks.set(writer, r.ok ? `signature valid (key ${r.kid || 'without kid'})` : `INVALID: ${r.problem}`);
    }
  } catch (err) {
    rethrowUnauthenticated(err);
    checks = new Map();
    note = h('p', { class: 'problem-inline', role: 'alert' }, `Signatures not checked: ${toProblemText(err)}`);
  }
  if (stats.writers.length === 0) return h('div', {}, h('p', { class: 'muted' }, 'No writer has records that match these filters.'), note);
  return h(
    'div',
    {},
    h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        {},
        h('caption', {}, 'Each writer (replica) keeps its own hash chain and signs checkpoints of it'),
        h('thead', {}, h('tr', {}, ...['Writer', 'Records', 'Last signed checkpoint', 'Verification'].map((t) => h('th', { scope: 'col' }, t)))),
        h(
          'tbody',
          {},
          ...stats.writers.map((w) =>
            h(
              'tr',
              {},
              h('th', { scope: 'row' }, w.writer),
              h('td', {}, String(w.records)),
              h('td', {}, w.checkpoint ? `size ${w.checkpoint.size}, ${shortTime(w.checkpoint.time)}` : 'none yet'),
              h('td', { class: 'break' }, w.checkpoint ? (checks.get(w.writer) ?? 'not checked') : 'nothing signed yet'),
            ),
          ),
        ),
      ),
    ),
    note,
    h('p', { class: 'muted' }, 'The whole chain (every record, every checkpoint) verifies offline: Export with no filters, then tzw decisions verify --bundle FILE --jwks JWKS.'),
  );
}

export async function renderOverview(main: HTMLElement, ctx: ViewContext): Promise<void> {
  const current = ctx.search.get('bucket');
  const bucket = (BUCKETS as readonly string[]).includes(current ?? '') ? (current as keyof typeof BUCKET_SECONDS) : 'day';
  const bucketSelect = h('select', { id: 'filter-bucket', name: 'bucket' }, ...BUCKETS.map((b) => h('option', { value: b, selected: b === bucket }, b === 'hour' ? 'Hour' : 'Day')));
  const results = h('div', { class: 'results', 'aria-live': 'polite' }, h('p', { class: 'muted' }, 'Loading the overview…'));
  replaceChildren(
    main,
    h('h1', {}, 'Overview'),
    filterForm(ctx, '/overview', [{ key: 'bucket', control: bucketSelect, label: 'Bucket' }]),
    h('div', { class: 'toolbar' }, exportButton(ctx)),
    results,
  );
  let stats: DecisionStats;
  try {
    stats = await api.stats(toApiParams(ctx.search, ['bucket']));
  } catch (err) {
    replaceChildren(results, problemBox(err, ctx.reload));
    return;
  }
  const writers = h('div', {}, h('p', { class: 'muted' }, 'Checking signatures…'));
  replaceChildren(
    results,
    h(
      'div',
      { class: 'grid' },
      section('Verdicts over time', chart(stats, bucket)),
      section('Denials by namespace', namespacesTable(ctx, stats)),
      section('Top unmapped ServiceAccounts', unmappedTable(ctx, stats)),
      section('Writers and checkpoints', writers),
    ),
  );
  writers.replaceWith(await writersTable(stats));
}
