/** Pieces every view shares: the filter form, the Export button, problem messages, time text. */
import { ApiError, api } from '../api.js';
import { h, replaceChildren } from '../dom.js';
import { FILTER_FIELDS, KINDS, VERDICTS, toFilterUrl, toSelection } from '../url.js';

export interface ViewContext {
  /** Goes to a console URL (pushState) and renders it. */
  navigate(url: string): void;
  /** Renders the current URL again (Retry). */
  reload(): void;
  /** The page's current query parameters. */
  search: URLSearchParams;
}

/** A 401 is the router's (back to sign-in); anything else is shown where it happened. */
export function rethrowUnauthenticated(err: unknown): void {
  if (err instanceof ApiError && err.status === 401) throw err;
}

/** The message a failed call shows: the server's words, with what to do for the common cases. */
export function toProblemText(err: unknown): string {
  if (!(err instanceof ApiError)) return `unexpected error in the console: ${(err as Error)?.message ?? String(err)}`;
  switch (err.status) {
    case 400:
      return `The query was rejected: ${err.message}`;
    case 403:
      return `Not allowed: ${err.message}`;
    case 503:
      return `${err.message}${err.retryAfter ? ` (retry after ${err.retryAfter} s)` : ''}`;
    default:
      return err.message;
  }
}

/** An alert box for a failed call, with a Retry button for transient failures (503, network). */
export function problemBox(err: unknown, retry?: () => void): HTMLElement {
  rethrowUnauthenticated(err);
  const transient = err instanceof ApiError && (err.status === 503 || err.status === 0);
  return h(
    'div',
    { class: 'problem', role: 'alert' },
    h('p', {}, toProblemText(err)),
    transient && retry ? h('button', { type: 'button', onclick: () => retry() }, 'Retry') : null,
  );
}

function select(name: string, id: string, values: readonly string[], current: string | null): HTMLSelectElement {
  const options = [h('option', { value: '' }, 'Any'), ...values.map((v) => h('option', { value: v, selected: v === current }, v))];
  // A value from a shared link that is not in the list stays selectable (and is sent, so the API can say what is wrong).
  if (current && !values.includes(current)) options.push(h('option', { value: current, selected: true }, current));
  return h('select', { name, id }, ...options);
}

/**
 * The filter form: every DESIGN filter, prefilled from the URL. Submitting it navigates to the same
 * view with the new filters (paging restarts); `extra` adds view controls such as Overview's Bucket.
 */
export function filterForm(ctx: ViewContext, path: string, extra: { key: string; control: HTMLElement; label: string }[] = []): HTMLFormElement {
  const s = ctx.search;
  const fields = FILTER_FIELDS.map((f) => {
    const id = `filter-${f.key}`;
    const current = s.get(f.key);
    const control =
      f.key === 'verdict'
        ? select(f.key, id, VERDICTS, current)
        : f.key === 'kind'
          ? select(f.key, id, KINDS, current)
          : h('input', { type: 'text', name: f.key, id, value: current ?? '', placeholder: f.placeholder, autocomplete: 'off', spellcheck: 'false' });
    return h('div', { class: 'field' }, h('label', { for: id }, f.label), control);
  });
  const extras = extra.map((e) => h('div', { class: 'field' }, h('label', { for: e.control.id }, e.label), e.control));
  const form = h(
    'form',
    { class: 'filters', role: 'search', 'aria-label': 'Filters' },
    ...fields,
    ...extras,
    h('div', { class: 'field actions' }, h('button', { type: 'submit' }, 'Apply'), h('a', { href: path, class: 'button secondary' }, 'Clear')),
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    const values: Record<string, string> = {};
    for (const [k, v] of data) values[k] = String(v);
    const keep: Record<string, string> = {};
    // Selection parameters without a control here (taskRun, pipelineRun from a shared link) stay.
    for (const [k, v] of toSelection(s)) if (!(k in values)) keep[k] = v;
    for (const e of extra) keep[e.key] = values[e.key] ?? '';
    ctx.navigate(toFilterUrl(path, values, keep));
  });
  form.querySelector('a.button')?.addEventListener('click', (ev) => {
    ev.preventDefault();
    ctx.navigate(path);
  });
  return form;
}

/** The Export button: downloads the bundle for the page's selection from GET /api/v1/export. */
export function exportButton(ctx: ViewContext): HTMLElement {
  const status = h('span', { class: 'export-status', role: 'status' });
  const button = h('button', { type: 'button' }, 'Export');
  button.addEventListener('click', async () => {
    button.disabled = true;
    replaceChildren(status, 'Preparing the bundle…');
    try {
      const { blob, fileName } = await api.exportBundle(toSelection(ctx.search));
      const url = URL.createObjectURL(blob);
      const a = h('a', { href: url, download: fileName, class: 'sr-only' });
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      const selection = toSelection(ctx.search);
      const complete = selection.size === 0;
      // One namespace (with an optional time range) exports a namespace bundle (the server decides
      // the same way: store/namespace-source.ts toNamespaceRange).
      const keys = [...selection.keys()];
      const oneNamespace = selection.getAll('namespace').length === 1 && keys.every((k) => k === 'namespace' || k === 'since' || k === 'until');
      replaceChildren(
        status,
        `Downloaded ${fileName} (${formatBytes(blob.size)}). `,
        complete
          ? 'Verify it offline: tzw decisions verify --bundle FILE --jwks JWKS'
          : oneNamespace
            ? `A namespace bundle: tzw decisions verify --bundle FILE --jwks JWKS proves offline that no decision of namespace ${selection.get('namespace') ?? ''} in the range is missing.`
            : 'A filtered export is evidence of the selected records, not a verifiable chain.',
      );
    } catch (err) {
      rethrowUnauthenticated(err);
      replaceChildren(status, h('span', { class: 'problem-inline', role: 'alert' }, `Export failed: ${toProblemText(err)}`));
    } finally {
      button.disabled = false;
    }
  });
  return h('div', { class: 'export' }, button, status);
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** `2026-11-25T10:00:00.123456Z` → `2026-11-25 10:00:00Z` (records are UTC; the full time is in the title). */
export function shortTime(t: string): string {
  return t.length >= 19 ? `${t.slice(0, 10)} ${t.slice(11, 19)}Z` : t;
}

export function verdictBadge(verdict: string): HTMLElement {
  return h('span', { class: `verdict verdict-${verdict}` }, verdict);
}
