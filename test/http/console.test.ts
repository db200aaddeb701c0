/**
 * The console plugin and GET /api/v1/export through inject(), on a real SQLite store: the pages and
 * assets are public and carry the CSP, assets revalidate by ETag, the export is the CLI's bundle
 * (byte for byte apart from the creation time) and needs a token like every data route.
 */
import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { buildAuditApp } from '../../webhook/http/audit.js';
import { CONTENT_SECURITY_POLICY } from '../../webhook/http/console.js';
import { writeBundle } from '../../webhook/store/evidence/bundle.js';
import { createSqliteStore } from '../../webhook/store/sqlite/store.js';
import { loadOrCreateSigningKey, toJwks } from '../../webhook/store/evidence/signing.js';
import { aRecord } from '../store/builders.js';

async function setup(t: Test, auth: 'none' | 'oidc' = 'none') {
  const dir = t.testdir({});
  const key = await loadOrCreateSigningKey(join(dir, 'signing.pem'), { create: true });
  const store = await createSqliteStore({ path: join(dir, 'decisions.db'), replica: 'tzw-0', signer: key, checkpointEvery: { records: 3, seconds: 3600 } });
  t.teardown(() => store.close());
  for (let n = 1; n <= 7; n++) await store.append(aRecord({ n, namespace: n % 2 ? 'payments' : 'data-science', verdict: n === 3 ? 'denied' : 'patched' }));
  await store.checkpointNow();
  const jwks = toJwks(key.publicJwk);
  const app = await buildAuditApp({
    store,
    jwks: () => jwks,
    auth: auth === 'none' ? { mode: 'none', groupsClaim: 'groups' } : { mode: 'oidc', issuer: 'https://issuer.test', jwksUri: 'http://127.0.0.1:9/jwks', audience: 'a', group: 'g', groupsClaim: 'groups' },
    logger: pino({ level: 'silent' }),
  });
  t.teardown(() => app.close());
  return { app, store, jwks, dir };
}

t.test('pages and assets: public, strict CSP, right types, ETag revalidation', async (t) => {
  const { app } = await setup(t, 'oidc');
  for (const url of ['/', '/overview', '/decisions/01944000-0000-7000-8000-000000000001', '/?namespace=payments&verdict=denied']) {
    const res = await app.inject({ url });
    t.equal(res.statusCode, 200, url);
    t.equal(res.headers['content-type'], 'text/html; charset=utf-8', url);
    t.equal(res.headers['content-security-policy'], CONTENT_SECURITY_POLICY, url);
    t.match(res.body, '<script type="module" src="/console/app.js"></script>');
    t.notMatch(res.body, /<script>|<style|\sstyle=|\son[a-z]+=|https?:\/\//, 'no inline script or style, no absolute URL');
  }
  t.match(CONTENT_SECURITY_POLICY, /^default-src 'self'; /);
  const js = await app.inject({ url: '/console/app.js' });
  t.equal(js.statusCode, 200);
  t.equal(js.headers['content-type'], 'text/javascript; charset=utf-8');
  t.equal(js.headers['content-security-policy'], CONTENT_SECURITY_POLICY);
  t.notMatch(js.body, /https?:\/\/(?!www\.w3\.org)[a-z0-9.-]+\.[a-z]{2,}\/[^\s"'`]*\.(js|css)\b/i, 'the bundle loads nothing from elsewhere');
  t.ok(js.body.includes('u-legend'), 'uPlot is bundled, not fetched');
  const css = await app.inject({ url: '/console/app.css' });
  t.equal(css.headers['content-type'], 'text/css; charset=utf-8');
  t.match(css.body, '.uplot', "uPlot's stylesheet is bundled");
  const again = await app.inject({ url: '/console/app.js', headers: { 'if-none-match': js.headers.etag as string } });
  t.equal(again.statusCode, 304);
  t.equal(again.body, '');
  t.equal((await app.inject({ url: '/console/nope.js' })).statusCode, 404);
  t.equal((await app.inject({ url: '/api/v1/decisions' })).statusCode, 401, 'the data still needs a token');
  t.equal((await app.inject({ url: '/api/v1/export' })).statusCode, 401, 'so does the export');
});

t.test('GET /api/v1/export: the bundle of `tzw decisions export`, complete when unfiltered', async (t) => {
  const { app, store, jwks, dir } = await setup(t);
  const res = await app.inject({ url: '/api/v1/export' });
  t.equal(res.statusCode, 200);
  t.equal(res.headers['content-type'], 'application/x-ndjson; charset=utf-8');
  t.match(res.headers['content-disposition'], /^attachment; filename="tzw-decisions-\d{8}T\d{6}Z\.jsonl"$/);
  t.equal(res.headers['cache-control'], 'no-store');
  const file = join(dir, 'cli.jsonl');
  await writeBundle(store, undefined, file, jwks);
  const withoutCreated = (s: string) => s.replace(/"created":"[^"]+"/, '"created":"…"');
  t.equal(withoutCreated(res.body), withoutCreated(readFileSync(file, 'utf8')), 'same bytes as the CLI export');
  const lines = res.body.trimEnd().split('\n').map((l) => JSON.parse(l) as { type: string; complete?: boolean });
  t.equal(lines[0]!.complete, true);
  t.equal(lines.filter((l) => l.type === 'record').length, 7);
  const checkpoints = (await store.checkpoints()).length;
  t.ok(checkpoints >= 1, 'the store signed checkpoints');
  t.equal(lines.filter((l) => l.type === 'checkpoint').length, checkpoints, 'every checkpoint is in the bundle');

  const filtered = await app.inject({ url: '/api/v1/export?namespace=payments&verdict=denied' });
  const part = filtered.body.trimEnd().split('\n').map((l) => JSON.parse(l) as { type: string; complete?: boolean; filter?: unknown; record?: { namespace: string; verdict: string } });
  t.strictSame([part[0]!.complete, part[0]!.filter], [false, { namespace: 'payments', verdict: 'denied' }], 'marked incomplete, with its filter');
  t.strictSame(part.filter((l) => l.type === 'record').map((l) => [l.record!.namespace, l.record!.verdict]), [['payments', 'denied']]);
  const cliPart = join(dir, 'cli-part.jsonl');
  await writeBundle(store, { namespace: 'payments', verdict: 'denied' }, cliPart, jwks);
  t.equal(withoutCreated(filtered.body), withoutCreated(readFileSync(cliPart, 'utf8')), 'same bytes as the CLI filtered export');
});

t.test('GET /api/v1/export: bad filters are 400 with every problem named', async (t) => {
  const { app } = await setup(t);
  const cases: Array<[string, RegExp]> = [
    ['?limit=5', /limit does not apply to an export/],
    ['?cursor=abc', /cursor does not apply to an export/],
    ['?since=yesterday', /since "yesterday" is not an RFC 3339 date-time/],
    ['?verdict=maybe&nope=1', /unknown filter "nope".*verdict "maybe" is not one of/],
    ['?namespace=a&namespace=b', /namespace is given 2 times/],
  ];
  for (const [q, message] of cases) {
    const res = await app.inject({ url: `/api/v1/export${q}` });
    t.equal(res.statusCode, 400, q);
    t.equal(res.json().code, 'ERR_BAD_FILTER', q);
    t.match(res.json().message, message, q);
  }
});

t.test('a store that fails at once answers a clean 500, not a cut bundle', async (t) => {
  const { app, store } = await setup(t);
  await store.close();
  const res = await app.inject({ url: '/api/v1/export' });
  t.equal(res.statusCode, 500);
  t.equal(res.json().code, 'ERR_INTERNAL');
});

t.test('GET /api/v1/stats: the aggregates the store counted for a filter; bad input is 400', async (t) => {
  const { app, store } = await setup(t);
  const res = await app.inject({ url: '/api/v1/stats?namespace=payments&bucket=hour' });
  t.equal(res.statusCode, 200);
  t.equal(res.headers['cache-control'], 'no-store');
  t.strictSame(res.json(), await store.loadStats({ namespace: 'payments' }, 'hour'), 'what the store counted');
  t.strictSame(res.json().namespaces, [{ namespace: 'payments', counts: { denied: 1, patched: 3 } }]);
  t.strictSame((await app.inject({ url: '/api/v1/stats' })).json().buckets, [{ start: '2026-01-01T00:00:00Z', counts: { denied: 1, patched: 6 } }], 'bucket defaults to day');
  const cases: Array<[string, RegExp]> = [
    ['?bucket=week', /bucket "week" is not one of hour, day/],
    ['?bucket=hour&bucket=day', /bucket is given 2 times/],
    ['?limit=5', /limit does not apply to stats/],
    ['?cursor=x', /cursor does not apply to stats/],
    ['?until=tomorrow', /until "tomorrow" is not an RFC 3339 date-time/],
    ['?format=csv', /unknown filter "format"/],
  ];
  for (const [q, message] of cases) {
    const r = await app.inject({ url: `/api/v1/stats${q}` });
    t.equal(r.statusCode, 400, q);
    t.match(r.json(), { code: 'ERR_BAD_FILTER', message }, q);
  }
  const oidc = await setup(t, 'oidc');
  t.equal((await oidc.app.inject({ url: '/api/v1/stats' })).statusCode, 401, 'needs a token like every data route');
});
