/**
 * The auditor console in a real browser (Chromium through playwright-core), found by accessible
 * names as a person or a screen reader would: sign-in, filters in the URL and in the controls, a
 * record's detail, the Overview chart, Export verified with the CLI, 403/400 messages, CSP, no
 * request to another origin, and the 390 px layout. Writes the README's screenshots to docs/.
 */
import t from 'tap';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BrowserContext, Page, Request } from 'playwright-core';
import { run } from '../../webhook/cli/run.js';
import type { CliIo } from '../../webhook/cli/io.js';
import { parseAllDocuments } from 'yaml';
import { createKubeReviews } from '../../webhook/kube/reviews.js';
import { startFakeApiServer } from '../kube/fake-api-server.js';
import { AUDIENCE, GROUP, ISSUER, REVIEWS, ROOT, launchChromium, startConsoleServer, startIssuer } from './support.js';

const DOCS = join(ROOT, 'docs');
// A real browser plus a real fake API server going down (its client waits out a timeout): more than
// tap's 120 s default on a loaded machine.
t.setTimeout(360_000);

function cliIo(cwd: string): CliIo & { out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, stdout: (s) => out.push(s), stderr: (s) => err.push(s), env: {}, cwd, hostname: 'test', readFile: (p) => readFileSync(p, 'utf8'), onSignal: () => undefined };
}

const issuer = await startIssuer(t);
const server = await startConsoleServer(t, { mode: 'oidc', issuer: ISSUER, jwksUri: issuer.jwksUri, audience: AUDIENCE, group: GROUP, groupsClaim: 'groups' });
const browser = await launchChromium(t);
const origin = new URL(server.url).origin;

/** Every request the page makes, every console error, every page error (CSP violations land there). */
interface Watched {
  context: BrowserContext;
  page: Page;
  requests: Request[];
  problems: string[];
}

async function openPage(viewport = { width: 1280, height: 800 }): Promise<Watched> {
  const context = await browser.newContext({ viewport, ignoreHTTPSErrors: true, acceptDownloads: true });
  const page = await context.newPage();
  const requests: Request[] = [];
  const problems: string[] = [];
  page.on('request', (r) => requests.push(r));
  page.on('console', (m) => {
    // A 401/403/400 answer is logged by Chromium as a failed resource load; those are the tests' own.
    if (m.type() === 'error' && !/status of (400|401|403)/.test(m.text())) problems.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(e.message));
  t.teardown(() => context.close());
  return { context, page, requests, problems };
}

async function signIn(page: Page, token: string): Promise<void> {
  await page.getByLabel('Bearer token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

/** Body cells of the decisions table, one array per row, in the order of DESIGN's headers. */
async function tableRows(page: Page): Promise<string[][]> {
  const table = page.getByRole('table').first();
  await table.waitFor();
  return table.locator('tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => (td.textContent ?? '').trim())));
}

const good = await issuer.mint();

t.test('sign-in: a wrong token and an expired one come back with the reason; the right one opens Decisions', async (t) => {
  const w = await openPage();
  const { page } = w;
  const res = await page.goto(`${server.url}/`);
  t.equal(res?.status(), 200);
  const csp = res?.headers()['content-security-policy'] ?? '';
  t.match(csp, /(^|; )default-src 'self'(;|$)/, 'CSP default-src self');
  t.match(csp, /script-src 'self'(;|$)/, 'no inline script allowed');
  t.notMatch(csp, /unsafe-inline|unsafe-eval|https?:/, 'no inline, no eval, no other origin');

  await page.getByLabel('Bearer token').waitFor();
  t.equal(await page.getByRole('button', { name: 'Sign in' }).count(), 1);

  await signIn(page, 'not-a-jwt');
  await t.resolves(page.getByRole('alert').filter({ hasText: 'not a well-formed JWT' }).waitFor(), 'wrong token: the reason is shown');
  t.equal(Number(await page.evaluate('sessionStorage.length')), 0, 'a refused token is dropped');

  await signIn(page, await issuer.mint({ expiresIn: -3600 }));
  await t.resolves(page.getByRole('alert').filter({ hasText: 'expired' }).waitFor(), 'expired token: says why');

  await signIn(page, good);
  const headers = await page.getByRole('columnheader').allTextContents();
  t.strictSame(headers, ['Time', 'Verdict', 'Namespace', 'Name', 'Service accounts', 'Reasons']);
  t.equal((await tableRows(page)).length, REVIEWS, 'every recorded decision is listed');

  // The token lives in sessionStorage only: not in a URL, a cookie or localStorage.
  t.equal(Number(await page.evaluate('localStorage.length')), 0, 'localStorage empty');
  t.strictSame(await w.context.cookies(), [], 'no cookie');
  t.equal(String(await page.evaluate("Object.values(sessionStorage).join('')")), good, 'sessionStorage holds the token');
  t.strictSame(w.requests.filter((r) => r.url().includes(good)).map((r) => r.url()), [], 'no URL carries the token');
  t.strictSame(w.requests.filter((r) => new URL(r.url()).origin !== origin).map((r) => r.url()), [], 'no request to another origin');
  t.strictSame(w.problems, [], 'no console errors, no CSP violations');

  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('Bearer token').waitFor();
  t.equal(Number(await page.evaluate('sessionStorage.length')), 0, 'signed out: token gone');
});

/** A page already signed in (the token put in sessionStorage before any script runs). */
async function signedInPage(viewport?: { width: number; height: number }, token = good): Promise<Watched> {
  const w = await openPage(viewport);
  await w.context.addInitScript(`sessionStorage.setItem('tzw.bearerToken', ${JSON.stringify(token)})`);
  return w;
}

t.test('filters: from the URL (shareable) and from the controls, into the URL; a bad time shows the 400 message', async (t) => {
  const w = await signedInPage();
  const { page } = w;
  await page.goto(`${server.url}/?namespace=payments&verdict=denied`);
  const denied = await tableRows(page);
  t.ok(denied.length > 0, 'the URL filter selects decisions');
  t.ok(denied.every((r) => r[1] === 'denied' && r[2] === 'payments'), 'only denied decisions in payments');
  t.equal(await page.getByLabel('Namespace').inputValue(), 'payments', 'the controls show the URL filter');
  t.equal(await page.getByLabel('Verdict').inputValue(), 'denied');

  await page.getByLabel('Namespace').fill('');
  await page.getByLabel('Verdict').selectOption('warned');
  await page.getByLabel('Kind').selectOption('PipelineRun');
  await page.getByRole('button', { name: 'Apply' }).click();
  await page.waitForURL((u) => u.searchParams.get('verdict') === 'warned');
  t.strictSame(Object.fromEntries(new URL(page.url()).searchParams), { verdict: 'warned', kind: 'PipelineRun' }, 'the URL carries the filters');
  await page.getByRole('caption').filter({ hasText: 'decisions' }).waitFor();
  const warned = await tableRows(page);
  t.ok(warned.length > 0 && warned.every((r) => r[1] === 'warned' && r[3]!.endsWith('PipelineRun')), 'only warned PipelineRuns');

  await page.getByLabel('Service account').fill('data-science/default');
  await page.getByLabel('Since').fill('2026-11-25T00:00:00Z');
  await page.getByLabel('Until').fill('2026-11-25T12:00:00Z');
  await page.getByRole('button', { name: 'Apply' }).click();
  await page.waitForURL((u) => u.searchParams.has('since'));
  const windowed = await tableRows(page);
  t.ok(windowed.length > 0 && windowed.every((r) => r[0]! >= '2026-11-25 00:00:00Z' && r[0]! < '2026-11-25 12:00:00Z' && r[4]!.includes('data-science/default')), 'time window and ServiceAccount applied');

  await page.getByLabel('Since').fill('yesterday');
  await page.getByRole('button', { name: 'Apply' }).click();
  await t.resolves(page.getByRole('alert').filter({ hasText: 'since "yesterday" is not an RFC 3339 date-time' }).waitFor(), 'the 400 message is shown');

  // Keyset paging: Next follows nextCursor and puts it in the URL.
  await page.goto(`${server.url}/?limit=25`);
  const first = await tableRows(page);
  t.equal(first.length, 25);
  await page.getByRole('button', { name: 'Next' }).click();
  await page.waitForURL((u) => u.searchParams.has('cursor'));
  await page.getByRole('caption').filter({ hasText: 'continued' }).waitFor();
  const second = await tableRows(page);
  t.equal(second.length, 25);
  t.ok(second[0]![0]! >= first[24]![0]!, 'the next page continues after the first');
  t.strictSame(w.problems, []);
});

t.test('a row opens the record: every field, fix-it messages, patch ops, chain position, the checkpoint', async (t) => {
  const { page, problems } = await signedInPage();
  await page.goto(`${server.url}/?namespace=payments&verdict=denied`);
  await tableRows(page);
  await page.getByRole('row').nth(1).click();
  await page.waitForURL(/\/decisions\//);
  const id = decodeURIComponent(new URL(page.url()).pathname.split('/').pop()!);
  const stored = await server.store.get(id);
  t.ok(stored, 'the URL names a stored record');
  await page.getByRole('heading', { name: 'Chain position' }).waitFor();
  const text = (await page.locator('main').textContent()) ?? '';
  for (const k of ['requestUid', 'endpoint', 'operation', 'namespace', 'serviceAccounts', 'mode', 'objectDigest', 'user', 'tekton', 'dryRun', 'replica', 'durationMs']) t.match(text, k, `field ${k}`);
  t.match(text, stored!.reasons[0]!.message, 'the fix-it message');
  t.match(text, stored!.hash, 'hash');
  t.match(text, stored!.prevHash, 'prevHash');
  await page.getByRole('heading', { name: "Writer's last checkpoint" }).waitFor();
  await t.resolves(page.getByText(/signature.*valid \(key /).or(page.getByText(/^valid \(key /)).first().waitFor(), 'checkpoint signature verified in the browser');
  t.match((await page.locator('main').textContent()) ?? '', /covered: seq \d+ ≤ size/);

  // A patched pod's record lists its JSON Patch operations.
  await page.goto(`${server.url}/?verdict=patched&limit=1`);
  await tableRows(page);
  await page.getByRole('row').nth(1).getByRole('link').click();
  await page.getByRole('heading', { name: 'Patch' }).waitFor();
  const patchRows = await page.getByRole('table').filter({ hasText: 'JSON Patch operations' }).locator('tbody tr').count();
  t.ok(patchRows >= 4, `${patchRows} patch ops shown`);
  await t.resolves(page.getByRole('cell', { name: /"name": "zscaler-tunnel"/ }).first().waitFor(), 'the op that adds the tunnel sidecar');
  await page.getByRole('link', { name: '← Back to decisions' }).click();
  await page.waitForURL((u) => u.pathname === '/' && u.searchParams.get('verdict') === 'patched');
  t.strictSame(problems, []);
});

t.test('Export: the unfiltered bundle verifies with the CLI; a filtered one is marked incomplete', async (t) => {
  const { page, problems } = await signedInPage();
  const jwksFile = join(server.dir, 'jwks.json');
  writeFileSync(jwksFile, JSON.stringify(server.jwks));
  await page.goto(`${server.url}/`);
  await tableRows(page);
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export' }).click()]);
  const bundle = join(server.dir, 'all.jsonl');
  await download.saveAs(bundle);
  t.match(download.suggestedFilename(), /^tzw-decisions-\d{8}T\d{6}Z\.jsonl$/);
  const io = cliIo(server.dir);
  const code = await run(['decisions', 'verify', '--bundle', bundle, '--jwks', jwksFile], io);
  t.equal(code, 0, io.out.join('') + io.err.join(''));
  t.match(io.out.join(''), new RegExp(`records verified: +${REVIEWS}\\b`));

  await page.goto(`${server.url}/?namespace=payments&verdict=denied`);
  await tableRows(page);
  const [filtered] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export' }).click()]);
  const part = join(server.dir, 'denied.jsonl');
  await filtered.saveAs(part);
  const header = JSON.parse(readFileSync(part, 'utf8').split('\n')[0]!) as { complete: boolean; filter: unknown };
  t.equal(header.complete, false);
  t.strictSame(header.filter, { namespace: 'payments', verdict: 'denied' });
  const io2 = cliIo(server.dir);
  t.equal(await run(['decisions', 'verify', '--bundle', part, '--jwks', jwksFile], io2), 3, 'a filtered bundle is not a chain');
  t.match(io2.out.join(''), /filtered export/);
  await t.resolves(page.getByRole('status').filter({ hasText: 'not a verifiable chain' }).waitFor());
  t.strictSame(problems, []);
});

t.test('Overview: a uPlot chart with data, denials by namespace, the unmapped ServiceAccounts, writers', async (t) => {
  const { page, problems } = await signedInPage();
  await page.goto(`${server.url}/overview?bucket=hour`);
  await page.getByRole('heading', { name: 'Verdicts over time' }).waitFor();
  const canvas = page.locator('.chart canvas');
  await canvas.waitFor();
  // Pixels actually drawn: uPlot paints axes and one line per verdict onto the canvas.
  const painted = Number(
    await page.evaluate(`(() => { const c = document.querySelector('.chart canvas'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; })()`),
  );
  t.ok(painted > 2000, `the chart canvas is drawn (${painted} painted pixels)`);
  t.equal(await page.locator('.u-legend .u-series').count() > 3, true, 'a legend entry per verdict');
  // The same numbers as a table (for screen readers): one row per hour with decisions, 60 in all.
  const hours = await page.getByRole('table', { name: 'Decisions per hour and verdict', includeHidden: true }).locator('tbody tr').evaluateAll((trs) =>
    trs.map((tr) => [...tr.querySelectorAll('td')].reduce((a, td) => a + Number(td.textContent), 0)),
  );
  t.equal(hours.reduce((a, b) => a + b, 0), REVIEWS, 'every decision is in a bucket');
  t.ok(hours.length >= 40, `${hours.length} hourly buckets over two days`);

  // Every 4th review is the unmapped TaskRun in "payments" (denied) except the three moved to
  // "sandbox"; every 4th is the audit-mode PipelineRun (warned), whose mapped notebook-runner is
  // not on the to-do list.
  const ns = page.getByRole('table', { name: /per namespace/ });
  t.strictSame(await ns.getByRole('row', { name: /^payments/ }).getByRole('cell').allTextContents(), ['12', '0', '39']);
  t.strictSame(await ns.getByRole('row', { name: /^data-science/ }).getByRole('cell').allTextContents(), ['0', '15', '15']);
  const todo = page.getByRole('table', { name: /without an IdentityMapping/ });
  t.strictSame(await todo.locator('tbody tr').evaluateAll((trs) => trs.map((tr) => (tr.textContent ?? '').trim())), ['payments/default120', 'data-science/default015']);
  const writers = page.getByRole('table', { name: /writer/ });
  await writers.getByText(/signature valid/).waitFor();
  t.strictSame(await writers.locator('tbody tr th, tbody tr td').allTextContents().then((c) => c.slice(0, 2)), ['tzw-0', String(REVIEWS)]);
  mkdirSync(DOCS, { recursive: true });
  await page.screenshot({ path: join(DOCS, 'console-overview.png'), fullPage: true });

  // The unmapped ServiceAccount links to its decisions.
  await todo.getByRole('link', { name: 'payments/default' }).click();
  await page.waitForURL((u) => u.pathname === '/' && u.searchParams.get('serviceAccount') === 'payments/default');
  const rows = await tableRows(page);
  t.equal(rows.length, 12);
  t.strictSame(problems, []);
});

t.test('403: a token without the auditor group sees the missing permission', async (t) => {
  const { page } = await signedInPage(undefined, await issuer.mint({ groups: ['developers'] }));
  await page.goto(`${server.url}/`);
  await t.resolves(page.getByRole('alert').filter({ hasText: `requires group "${GROUP}"` }).waitFor());
  t.match((await page.getByRole('alert').textContent()) ?? '', /^Not allowed: /);
});

t.test('kubernetes sign-in: a namespaced auditor is told to add namespace=, then sees only theirs; API server down → 503 message', async (t) => {
  const api = await startFakeApiServer();
  t.teardown(() => api.close());
  const rbac = ['manifests/base/audit-rbac.yaml', 'manifests/examples/auditor-rbac.yaml'].flatMap((f) =>
    parseAllDocuments(readFileSync(join(ROOT, f), 'utf8')).map((d) => d.toJS() as Record<string, unknown>).filter((o) => o !== null),
  );
  api.authz.apply(...(rbac as Parameters<typeof api.authz.apply>));
  // alice@example.com may list decisions in "payments" only (the example namespaced Role).
  const alice = api.authz.issueToken({ username: 'alice@example.com', uid: 'uid-alice' });
  const kube = await startConsoleServer(t, { mode: 'kubernetes', audiences: [], groupsClaim: 'groups' }, { kubeReviews: createKubeReviews(api.kubeConfig()) });

  const { page } = await openPage();
  await page.goto(`${kube.url}/`);
  await signIn(page, 'not-a-token-the-api-server-issued');
  await t.resolves(page.getByRole('alert').filter({ hasText: 'Signed out' }).waitFor(), 'an unknown token is refused by TokenReview: back to sign-in');
  await signIn(page, alice);
  const denied = page.getByRole('alert').filter({ hasText: 'Not allowed' });
  await denied.waitFor();
  t.match((await denied.textContent()) ?? '', /add namespace=<namespace>/, 'the 403 names the missing permission and what to do');
  t.match((await denied.textContent()) ?? '', /list decisions/);

  await page.goto(`${kube.url}/?namespace=payments`);
  const rows = await tableRows(page);
  t.ok(rows.length > 0 && rows.every((r) => r[2] === 'payments'), 'with namespace=payments: her namespace');
  await page.goto(`${kube.url}/overview?namespace=payments`);
  await page.getByRole('heading', { name: 'Top unmapped ServiceAccounts' }).waitFor();
  await t.resolves(page.getByRole('alert').filter({ hasText: /Signatures not checked: Not allowed/ }).waitFor(), 'checkpoints are cluster-wide: not hers, and the Overview says so');
  t.strictSame(await page.getByRole('table', { name: /without an IdentityMapping/ }).locator('tbody th').allTextContents(), ['payments/default']);

  await api.close();
  await page.goto(`${kube.url}/?namespace=data-science`);
  await t.resolves(page.getByRole('alert').filter({ hasText: 'cannot reach the Kubernetes API to check your token; retry' }).waitFor(), '503 shown as DESIGN words it');
  t.equal(await page.getByRole('button', { name: 'Retry' }).count(), 1, 'with a Retry button');
});

t.test('390 px wide: no sideways page scroll, filters and table usable; screenshots for the README', async (t) => {
  const wide = await signedInPage();
  await wide.page.goto(`${server.url}/`);
  await tableRows(wide.page);
  mkdirSync(DOCS, { recursive: true });
  await wide.page.screenshot({ path: join(DOCS, 'console.png') });

  const { page, problems } = await signedInPage({ width: 390, height: 844 });
  await page.goto(`${server.url}/?namespace=payments`);
  const rows = await tableRows(page);
  t.ok(rows.length > 0);
  const overflow = Number(await page.evaluate('document.documentElement.scrollWidth - window.innerWidth'));
  t.ok(overflow <= 0, `page does not scroll sideways (overflow ${overflow}px)`);
  for (const label of ['Namespace', 'Service account', 'Verdict', 'Kind', 'Since', 'Until']) {
    const box = await page.getByLabel(label).boundingBox();
    t.ok(box && box.x >= 0 && box.x + box.width <= 390, `${label} fits on screen`);
  }
  await page.getByLabel('Verdict').selectOption('patched');
  await page.getByRole('button', { name: 'Apply' }).click();
  await page.waitForURL((u) => u.searchParams.get('verdict') === 'patched');
  await page.getByRole('row').nth(1).getByRole('link').click();
  await page.getByRole('heading', { name: 'Chain position' }).waitFor();
  const overflow2 = Number(await page.evaluate('document.documentElement.scrollWidth - window.innerWidth'));
  t.ok(overflow2 <= 0, `record page does not scroll sideways (overflow ${overflow2}px)`);
  t.strictSame(problems, []);
});
