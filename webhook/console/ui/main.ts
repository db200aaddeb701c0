/**
 * The auditor console: a small single-page app over the audit API (DESIGN "Auditor console").
 * Routing by path (/, /overview, /decisions/<id>), state in the query string, one API client.
 * A 401 from any call sends the tab back to sign-in with the server's reason.
 */
import './style.css';
import { ApiError, session } from './api.js';
import { h, replaceChildren } from './dom.js';
import { toRoute, toSelection, withQuery } from './url.js';
import type { ViewContext } from './views/common.js';
import { renderDecisions } from './views/decisions.js';
import { renderOverview } from './views/overview.js';
import { renderRecord } from './views/record.js';
import { renderSignIn } from './views/sign-in.js';

const TITLES = { decisions: 'Decisions', overview: 'Overview', record: 'Decision', unknown: 'Not found' } as const;

let generation = 0;

function shell(): { nav: HTMLElement; main: HTMLElement; account: HTMLElement } {
  const existing = document.getElementById('main');
  if (existing) return { nav: document.getElementById('views')!, main: existing, account: document.getElementById('account')! };
  const nav = h('nav', { id: 'views', 'aria-label': 'Views' });
  const account = h('div', { id: 'account' });
  const main = h('main', { id: 'main', tabindex: '-1' });
  const app = document.getElementById('app')!;
  replaceChildren(
    app,
    h('a', { href: '#main', class: 'skip' }, 'Skip to content'),
    h('header', { class: 'top' }, h('span', { class: 'brand' }, 'tekton-zscaler-webhook', h('span', { class: 'muted' }, ' · audit')), nav, account),
    main,
  );
  return { nav, main, account };
}

function navigate(url: string): void {
  history.pushState(null, '', url);
  void render();
}

function renderNav(nav: HTMLElement, view: string): void {
  // The selection travels between the views, so an Overview of a namespace leads to its decisions.
  const selection = toSelection(new URLSearchParams(location.search));
  const item = (label: string, path: string, active: boolean): HTMLElement =>
    h('a', { href: withQuery(path, selection), 'aria-current': active ? 'page' : null, onclick: (ev: Event) => { ev.preventDefault(); navigate(withQuery(path, selection)); } }, label);
  replaceChildren(nav, item('Decisions', '/', view === 'decisions' || view === 'record'), item('Overview', '/overview', view === 'overview'));
}

function renderAccount(account: HTMLElement): void {
  replaceChildren(
    account,
    session.token()
      ? h('button', { type: 'button', class: 'secondary', onclick: () => { session.signOut(); void render(); } }, 'Sign out')
      : null,
  );
}

async function render(): Promise<void> {
  const mine = ++generation;
  const { nav, main: outer, account } = shell();
  // Each render draws into its own container: a slower, superseded render writes into a detached one.
  const main = h('div', { class: 'view' });
  replaceChildren(outer, main);
  const route = toRoute(location.pathname);
  document.title = `${TITLES[route.view]} · tekton-zscaler-webhook`;
  renderNav(nav, route.view);
  renderAccount(account);
  const ctx: ViewContext = { navigate, reload: () => void render(), search: new URLSearchParams(location.search) };
  try {
    if (route.view === 'decisions') await renderDecisions(main, ctx);
    else if (route.view === 'overview') await renderOverview(main, ctx);
    else if (route.view === 'record') await renderRecord(main, ctx, route.id);
    else replaceChildren(main, h('h1', {}, 'Not found'), h('p', {}, 'No such page. ', h('a', { href: '/' }, 'Go to the decisions')));
  } catch (err) {
    if (mine !== generation) return;
    if (err instanceof ApiError && err.status === 401) {
      // A token that no longer works is dropped, and the reason (expired, wrong issuer…) is shown.
      const hadToken = session.token() !== null;
      session.signOut();
      renderAccount(account);
      renderSignIn(main, hadToken ? `Signed out: ${err.message}` : undefined, () => void render());
      return;
    }
    replaceChildren(main, h('div', { class: 'problem', role: 'alert' }, h('p', {}, `The console failed: ${(err as Error).message}`)));
  }
}

window.addEventListener('popstate', () => void render());
void render();
