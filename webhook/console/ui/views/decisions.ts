/** Decisions: the filter form, Export, the table of records (keyset paging with Next). */
import { api, type ChainedRecord } from '../api.js';
import { h, replaceChildren } from '../dom.js';
import { toApiParams, toSelection, withQuery } from '../url.js';
import { exportButton, filterForm, problemBox, shortTime, verdictBadge, type ViewContext } from './common.js';

const HEADERS = ['Time', 'Verdict', 'Namespace', 'Name', 'Service accounts', 'Reasons'] as const;

function recordUrl(ctx: ViewContext, r: ChainedRecord): string {
  return withQuery(`/decisions/${encodeURIComponent(r.id)}`, toSelection(ctx.search));
}

function row(ctx: ViewContext, r: ChainedRecord): HTMLTableRowElement {
  const url = recordUrl(ctx, r);
  const tr = h(
    'tr',
    { class: 'clickable', 'data-id': r.id },
    h('td', { class: 'nowrap' }, h('a', { href: url, title: r.time }, shortTime(r.time))),
    h('td', {}, verdictBadge(r.verdict)),
    h('td', {}, r.namespace || '—'),
    h('td', { class: 'break' }, r.name || '—', h('span', { class: 'muted' }, ` ${r.kind.kind}`)),
    h('td', { class: 'break' }, r.serviceAccounts.join(', ') || '—'),
    h('td', { class: 'break' }, r.reasons.map((x) => x.code).join(', ') || '—'),
  );
  tr.addEventListener('click', (ev) => {
    if ((ev.target as Element).closest('a')) return; // the link navigates by itself
    ctx.navigate(url);
  });
  tr.querySelector('a')?.addEventListener('click', (ev) => {
    if ((ev as MouseEvent).ctrlKey || (ev as MouseEvent).metaKey) return; // new tab: let the browser do it
    ev.preventDefault();
    ctx.navigate(url);
  });
  return tr;
}

export async function renderDecisions(main: HTMLElement, ctx: ViewContext): Promise<void> {
  const results = h('div', { class: 'results', 'aria-live': 'polite' }, h('p', { class: 'muted' }, 'Loading decisions…'));
  replaceChildren(
    main,
    h('h1', {}, 'Decisions'),
    filterForm(ctx, '/'),
    h('div', { class: 'toolbar' }, exportButton(ctx)),
    results,
  );
  let page;
  try {
    page = await api.decisions(toApiParams(ctx.search, ['cursor', 'limit']));
  } catch (err) {
    replaceChildren(results, problemBox(err, ctx.reload));
    return;
  }
  {
    const paged = ctx.search.has('cursor');
    const table = h(
      'table',
      { class: 'decisions' },
      h('caption', {}, page.items.length === 0 ? 'No decisions match these filters' : `${page.items.length} decisions${paged ? ' (continued)' : ''}, oldest first`),
      h('thead', {}, h('tr', {}, ...HEADERS.map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, ...page.items.map((r) => row(ctx, r))),
    );
    const next = page.nextCursor;
    const nav = h(
      'nav',
      { class: 'pager', 'aria-label': 'Pages' },
      paged ? h('a', { href: withQuery('/', toSelection(ctx.search)), class: 'button secondary', onclick: (ev: Event) => { ev.preventDefault(); ctx.navigate(withQuery('/', toSelection(ctx.search))); } }, 'First page') : null,
      next
        ? h('button', {
            type: 'button',
            onclick: () => {
              const q = toApiParams(ctx.search, ['limit']);
              q.set('cursor', next);
              ctx.navigate(withQuery('/', q));
            },
          }, 'Next')
        : null,
    );
    replaceChildren(results, h('div', { class: 'table-wrap' }, table), nav);
  }
}
