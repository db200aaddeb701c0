/**
 * The console's state lives in the page URL, so every view is shareable:
 *   /                  Decisions   (?namespace=payments&verdict=denied&cursor=…)
 *   /overview          Overview    (?<same filters>&bucket=hour|day)
 *   /decisions/<id>    one record  (?<filters> kept for the way back)
 * Pure: URLSearchParams in, URLSearchParams out.
 */
import { VERDICTS } from '../../core/verdict.js';

export { VERDICTS };

/** The filter controls, in page order, with their accessible names (DESIGN "Auditor console"). */
export const FILTER_FIELDS = [
  { key: 'namespace', label: 'Namespace', placeholder: 'e.g. payments' },
  { key: 'serviceAccount', label: 'Service account', placeholder: 'namespace/name' },
  { key: 'verdict', label: 'Verdict', placeholder: '' },
  { key: 'kind', label: 'Kind', placeholder: '' },
  { key: 'since', label: 'Since', placeholder: '2026-11-25T00:00:00Z' },
  { key: 'until', label: 'Until', placeholder: '2026-11-26T00:00:00Z' },
] as const;

export const KINDS = ['TaskRun', 'PipelineRun', 'Pod'] as const;
export const BUCKETS = ['hour', 'day'] as const;

/** Query parameters that shape a view rather than select records. */
const VIEW_ONLY = ['bucket', 'cursor', 'limit'];

export type Route = { view: 'decisions' } | { view: 'overview' } | { view: 'record'; id: string } | { view: 'unknown' };

export function toRoute(pathname: string): Route {
  if (pathname === '/' || pathname === '') return { view: 'decisions' };
  if (pathname === '/overview') return { view: 'overview' };
  const m = /^\/decisions\/([^/]+)$/.exec(pathname);
  if (m?.[1]) {
    try {
      return { view: 'record', id: decodeURIComponent(m[1]) };
    } catch {
      return { view: 'unknown' };
    }
  }
  return { view: 'unknown' };
}

/** The record-selecting parameters of a page URL (what Export and the back link carry). */
export function toSelection(search: URLSearchParams): URLSearchParams {
  const out = new URLSearchParams();
  for (const [k, v] of search) if (!VIEW_ONLY.includes(k)) out.append(k, v);
  return out;
}

/**
 * Parameters for one API call: the page's selection plus the listed view parameters it takes.
 * Unknown parameters are passed on on purpose: the API answers 400 naming them, and the console
 * shows that message instead of silently ignoring a typo in a shared link.
 */
export function toApiParams(search: URLSearchParams, keep: readonly string[] = []): URLSearchParams {
  const out = toSelection(search);
  for (const k of keep) for (const v of search.getAll(k)) out.append(k, v);
  return out;
}

/** `path` + `?query` (no `?` when empty). */
export function withQuery(path: string, params: URLSearchParams): string {
  const q = params.toString();
  return q ? `${path}?${q}` : path;
}

/** The URL of a filter form's values: empty fields are left out; view parameters are kept as given. */
export function toFilterUrl(path: string, values: Record<string, string>, keep: Record<string, string> = {}): string {
  const out = new URLSearchParams();
  for (const f of FILTER_FIELDS) {
    const v = (values[f.key] ?? '').trim();
    if (v) out.set(f.key, v);
  }
  for (const [k, v] of Object.entries(keep)) if (v) out.set(k, v);
  return withQuery(path, out);
}
