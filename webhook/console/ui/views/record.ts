/**
 * One record: every field, the fix-it messages (reasons), the patch ops, the chain position
 * (seq/prevHash/hash) and the writer's last signed checkpoint.
 */
import { api, type ChainedRecord, type Checkpoint } from '../api.js';
import { h, replaceChildren, type Child } from '../dom.js';
import { toSelection, withQuery } from '../url.js';
import { verifyCheckpoint } from '../verify.js';
import { problemBox, verdictBadge, type ViewContext } from './common.js';

/** Fields with a section of their own below the summary. */
const OWN_SECTIONS = new Set(['reasons', 'patch', 'seq', 'prevHash', 'hash']);

function valueText(v: unknown): Child {
  if (v === null || v === undefined) return h('span', { class: 'muted' }, 'none');
  if (typeof v === 'string') return v === '' ? h('span', { class: 'muted' }, '(empty)') : v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v.length ? v.join(', ') : h('span', { class: 'muted' }, '(none)');
  return h('code', { class: 'break' }, JSON.stringify(v));
}

function dl(entries: Array<[string, Child]>): HTMLDListElement {
  return h('dl', { class: 'fields' }, ...entries.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

function section(title: string, ...children: Child[]): HTMLElement {
  const id = `sec-${title.toLowerCase().replace(/[^a-z]+/g, '-')}`;
  return h('section', { 'aria-labelledby': id }, h('h2', { id }, title), ...children);
}

async function checkpointSection(r: ChainedRecord): Promise<HTMLElement> {
  let items: Checkpoint[];
  let covering: Checkpoint | undefined;
  let jwks;
  try {
    // Two short pages, however many checkpoints the writer signed: its newest, and the first at or after this record.
    [{ items }, covering, jwks] = await Promise.all([api.latestCheckpoints(r.replica), api.coveringCheckpoint(r.replica, r.seq), api.jwks()]);
  } catch (err) {
    return section("Writer's last checkpoint", problemBox(err));
  }
  const last = items.find((c) => c.writer === r.replica);
  if (!last) return section("Writer's last checkpoint", h('p', {}, `Writer ${r.replica} has no signed checkpoint yet: this record is hash-chained but not yet covered by a signature.`));
  const check = await verifyCheckpoint(last, jwks);
  return section(
    "Writer's last checkpoint",
    dl([
      ['writer', last.writer],
      ['size', String(last.size)],
      ['time', last.time],
      ['headHash', h('code', { class: 'break' }, last.headHash)],
      ['signature', check.ok ? h('span', { class: 'ok' }, `valid (key ${check.kid || 'without kid'})`) : h('span', { class: 'bad' }, check.problem)],
      [
        'this record',
        covering
          ? `covered: seq ${r.seq} ≤ size ${covering.size} of the checkpoint signed ${covering.time}`
          : `not yet covered by a signed checkpoint (seq ${r.seq} > size ${last.size})`,
      ],
    ]),
  );
}

export async function renderRecord(main: HTMLElement, ctx: ViewContext, id: string): Promise<void> {
  const back = withQuery('/', toSelection(ctx.search));
  const backLink = h('a', { href: back, class: 'back', onclick: (ev: Event) => { ev.preventDefault(); ctx.navigate(back); } }, '← Back to decisions');
  replaceChildren(main, backLink, h('h1', {}, 'Decision'), h('p', { class: 'muted' }, 'Loading…'));
  let r: ChainedRecord;
  try {
    r = await api.decision(id);
  } catch (err) {
    replaceChildren(main, backLink, h('h1', {}, 'Decision'), problemBox(err, ctx.reload));
    return;
  }
  const summary = Object.entries(r)
    .filter(([k]) => !OWN_SECTIONS.has(k))
    .map(([k, v]): [string, Child] => [k, k === 'verdict' ? verdictBadge(String(v)) : valueText(v)]);
  const reasons = r.reasons.length
    ? h('ul', { class: 'reasons' }, ...r.reasons.map((x) => h('li', {}, h('code', {}, x.code), h('p', {}, x.message))))
    : h('p', { class: 'muted' }, 'No reasons recorded.');
  const patch = r.patch.length
    ? h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          {},
          h('caption', {}, `${r.patch.length} JSON Patch operations returned to the API server`),
          h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Op'), h('th', { scope: 'col' }, 'Path'), h('th', { scope: 'col' }, 'Value'))),
          h('tbody', {}, ...r.patch.map((op) => h('tr', {}, h('td', {}, op.op), h('td', { class: 'break' }, h('code', {}, op.path)), h('td', {}, h('pre', {}, JSON.stringify(op.value, null, 2)))))),
        ),
      )
    : h('p', { class: 'muted' }, 'No patch: this decision changed nothing in the object.');
  replaceChildren(
    main,
    backLink,
    h('h1', {}, 'Decision ', h('code', { class: 'break' }, r.id)),
    section('Record', dl(summary)),
    section('Reasons and what to do', reasons),
    section('Patch', patch),
    section('Chain position', dl([['writer', r.replica], ['seq', String(r.seq)], ['prevHash', h('code', { class: 'break' }, r.prevHash)], ['hash', h('code', { class: 'break' }, r.hash)]])),
    h('div', { id: 'checkpoint' }, h('p', { class: 'muted' }, 'Loading the writer’s checkpoint…')),
  );
  const cp = await checkpointSection(r);
  main.querySelector('#checkpoint')?.replaceWith(cp);
}
