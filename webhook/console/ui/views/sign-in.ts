/** Sign-in: a bearer token, kept in this tab's sessionStorage only. */
import { session } from '../api.js';
import { h, replaceChildren } from '../dom.js';

/**
 * Shows the sign-in form. `reason` is why (the API's 401 message, e.g. an expired token), or
 * undefined on a first visit. Resolves nothing: submitting calls `done` to render the page again.
 */
export function renderSignIn(main: HTMLElement, reason: string | undefined, done: () => void): void {
  const input = h('input', { type: 'password', id: 'token', name: 'token', autocomplete: 'off', required: true, spellcheck: 'false' });
  const form = h(
    'form',
    { class: 'sign-in', 'aria-labelledby': 'sign-in-title' },
    h('h1', { id: 'sign-in-title' }, 'Sign in'),
    reason ? h('p', { class: 'problem', role: 'alert' }, reason) : null,
    h(
      'p',
      {},
      'The audit API needs a bearer token. In a cluster with Kubernetes sign-in: ',
      h('code', {}, 'kubectl create token NAME -n NAMESPACE'),
      '. The token stays in this browser tab (sessionStorage) and is sent only to this server.',
    ),
    h('div', { class: 'field' }, h('label', { for: 'token' }, 'Bearer token'), input),
    h('button', { type: 'submit' }, 'Sign in'),
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const token = input.value.trim().replace(/^Bearer\s+/i, '');
    if (!token) return;
    session.signIn(token);
    done();
  });
  replaceChildren(main, form);
  input.focus();
}
