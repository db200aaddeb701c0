/**
 * manifests/monitoring: the PrometheusRule passes `promtool check rules` and its unit tests
 * (`promtool test rules`: every alert firing and not firing), every alert links a README Runbook
 * section that exists, the component renders (ServiceMonitor selecting the webhook Service's
 * metrics port, the dashboard ConfigMap labelled for Grafana's sidecar), and every metric an alert
 * or a dashboard panel uses is on a running server's /metrics.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { loadConfig } from '../../webhook/config/load.js';
import { startServer } from '../../webhook/server.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MONITORING = join(ROOT, 'manifests/monitoring');
const exec = promisify(execFile);
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;

const DESIGN_ALERTS = ['TzwWebhookDown', 'TzwAdmissionLatencyHigh', 'TzwDecisionsErrored', 'TzwStoreBacklogGrowing', 'TzwCertificateExpiringSoon', 'TzwIdentityMappingProblems'];
const rule = parse(readFileSync(join(MONITORING, 'prometheusrule.yaml'), 'utf8')) as Obj;
const alerts = (rule.spec.groups as Obj[]).flatMap((g) => g.rules as Obj[]).filter((r) => r.alert);
const dashboard = JSON.parse(readFileSync(join(MONITORING, 'dashboard.json'), 'utf8')) as Obj;
const panelExprs = (dashboard.panels as Obj[]).flatMap((p) => (p.targets as Obj[]).map((x) => ({ where: `panel "${p.title}"`, expr: x.expr as string })));
const alertExprs = alerts.map((a) => ({ where: `alert ${a.alert}`, expr: a.expr as string }));

/** Metric names in a PromQL expression: every selector here is `name{...}` (the test below insists). */
function toMetricNames(expr: string): string[] {
  return [...expr.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\{/g)].map((m) => m[1]!);
}

t.test('promtool check rules and promtool test rules pass, and the unit tests cover every alert firing and not firing', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tzw-promtool-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'rules.yaml'), stringify(rule.spec));
  copyFileSync(join(MONITORING, 'tests/alerts.test.yaml'), join(dir, 'alerts.test.yaml'));
  const check = await exec('promtool', ['check', 'rules', join(dir, 'rules.yaml')]);
  t.match(check.stdout, /SUCCESS: 6 rules found/);
  const test = await exec('promtool', ['test', 'rules', join(dir, 'alerts.test.yaml')]).catch((err: { stdout: string; stderr: string }) => err);
  t.match(test.stdout, /SUCCESS/, test.stderr || test.stdout);

  const tests = (parse(readFileSync(join(MONITORING, 'tests/alerts.test.yaml'), 'utf8')) as Obj).tests as Obj[];
  const cases = tests.flatMap((x) => (x.alert_rule_test ?? []) as Obj[]);
  for (const name of DESIGN_ALERTS) {
    const mine = cases.filter((c) => c.alertname === name);
    t.ok(mine.some((c) => (c.exp_alerts ?? []).length > 0), `${name} has a firing case`);
    t.ok(mine.some((c) => (c.exp_alerts ?? []).length === 0), `${name} has a not-firing case`);
  }
  // A broken rule must fail the unit tests (so a pass above means something).
  const broken = structuredClone(rule.spec);
  broken.groups[0].rules.find((r: Obj) => r.alert === 'TzwStoreBacklogGrowing').expr = 'tzw_store_backlog_records > 1e9';
  writeFileSync(join(dir, 'rules.yaml'), stringify(broken));
  const failed = await exec('promtool', ['test', 'rules', join(dir, 'alerts.test.yaml')]).then(() => 'passed', (err: { stdout: string; stderr: string }) => err.stdout + err.stderr);
  t.match(failed, /FAILED[\s\S]*TzwStoreBacklogGrowing/);
});

t.test('the six alerts DESIGN names, each with summary, description and a runbook_url to a README Runbook section that says what to do', async (t) => {
  t.strictSame(alerts.map((a) => a.alert), DESIGN_ALERTS);
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const runbook = readme.slice(readme.indexOf('\n## Runbook\n'), readme.indexOf('\n## ', readme.indexOf('\n## Runbook\n') + 5));
  t.ok(runbook.length > 100, 'README has a Runbook section');
  for (const a of alerts) {
    t.ok(a.annotations.summary && a.annotations.description, `${a.alert}: summary and description`);
    t.match(a.labels.severity, /^(critical|warning)$/);
    const anchor = /README\.md#([a-z0-9-]+)$/.exec(a.annotations.runbook_url)?.[1];
    t.equal(anchor, a.alert.toLowerCase(), `${a.alert}: runbook_url points at its own section`);
    const start = runbook.indexOf(`\n### ${a.alert}\n`);
    t.ok(start >= 0, `Runbook has "### ${a.alert}"`);
    const body = runbook.slice(start + 5 + a.alert.length, runbook.indexOf('\n### ', start + 5));
    t.ok(body.trim().length > 150, `${a.alert}: the section says what to do`);
  }
});

t.test('every selector in alerts and panels names its metric and selects the job; the dashboard has the panels DESIGN lists', async (t) => {
  for (const { where, expr } of [...alertExprs, ...panelExprs]) {
    const selectors = [...expr.matchAll(/\{([^}]*)\}/g)].map((m) => m[1]!);
    t.ok(selectors.length > 0 && selectors.every((s) => /job(=|=~)"/.test(s)), `${where}: every selector selects the job`);
    t.equal(toMetricNames(expr).length, selectors.length, `${where}: every selector is name{...}`);
  }
  const titles = (dashboard.panels as Obj[]).map((p) => p.title as string);
  for (const wanted of ['Decisions by verdict', 'Decisions by namespace', 'Denial ratio', 'Admission latency p50 / p99', 'Store write p99', 'Store backlog', 'Certificate expires in', 'IdentityMapping problems']) {
    t.ok(titles.includes(wanted), `panel "${wanted}"`);
  }
  t.strictSame([...new Set((dashboard.panels as Obj[]).map((p) => p.id))].length, titles.length, 'panel ids are unique');
});

t.test('the component renders: ServiceMonitor selects the webhook Service and its metrics port; the dashboard ConfigMap is labelled for Grafana', async (t) => {
  const { stdout } = await exec('kubectl', ['kustomize', join(ROOT, 'manifests/overlays/monitoring')], { maxBuffer: 32 * 1024 * 1024, env: { ...process.env, KUBECONFIG: '/dev/null' } });
  const objects = parseAllDocuments(stdout).map((d) => d.toJS() as Obj);
  const byKind = (kind: string) => objects.filter((o) => o.kind === kind);
  const [monitor] = byKind('ServiceMonitor');
  const service = byKind('Service')[0]!;
  t.ok(monitor, 'a ServiceMonitor');
  t.ok(Object.entries(monitor!.spec.selector.matchLabels as Record<string, string>).every(([k, v]) => service.metadata.labels[k] === v), 'it selects the Service');
  t.equal(service.metadata.labels[monitor!.spec.jobLabel], 'tekton-zscaler-webhook', 'job label value = the job the alerts select');
  t.ok((service.spec.ports as Obj[]).some((p) => p.name === monitor!.spec.endpoints[0].port), 'the endpoint port is a Service port');
  const dash = byKind('ConfigMap').find((c) => c.metadata.labels?.grafana_dashboard === '1');
  t.ok(dash, 'a ConfigMap labelled grafana_dashboard: "1"');
  t.strictSame(JSON.parse(dash!.data['tekton-zscaler-webhook.json']), dashboard, 'it carries dashboard.json');
  t.strictSame(byKind('PrometheusRule')[0]?.spec, rule.spec);
  t.equal(byKind('PrometheusRule')[0]?.metadata.namespace, 'tekton-zscaler');
});

function get(url: string, ca?: string, body?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = (url.startsWith('https') ? httpsRequest : httpRequest)(url, { method: body ? 'POST' : 'GET', ...(ca ? { ca } : {}), headers: body ? { 'content-type': 'application/json' } : {} }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve(text));
    });
    req.on('error', reject);
    req.end(body);
  });
}

t.test('every metric an alert or a panel uses is on a running server\'s /metrics', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tzw-metrics-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const examples = join(ROOT, 'manifests/examples');
  const loaded = loadConfig({
    env: {
      TZW_STATE_DIR: dir, TZW_STORE_URL: `sqlite:${join(dir, 'decisions.db')}`, TZW_SOURCE_PATHS: examples,
      TZW_ADMISSION_LISTEN: '127.0.0.1:0', TZW_AUDIT_API_LISTEN: '127.0.0.1:0', TZW_METRICS_LISTEN: '127.0.0.1:0', TZW_LOG_LEVEL: 'silent',
    },
    readFile: (p) => readFileSync(p, 'utf8'), hostname: 'tzw-0',
  });
  if (!loaded.ok) throw new Error(loaded.errors.join('; '));
  const server = await startServer(loaded.config);
  t.teardown(() => server.close());
  // One admission, so the per-verdict counter has a sample (as it has in any cluster that runs Tekton).
  await get(`${server.urls.admission}/validate`, readFileSync(join(dir, 'ca.crt'), 'utf8'), readFileSync(join(examples, 'reviews/taskrun-unmapped.json'), 'utf8'));
  const exposition = await get(`${server.urls.metrics}/metrics`);
  const exposed = new Set(exposition.split('\n').filter((l) => l !== '' && !l.startsWith('#')).map((l) => /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(l)![0]));
  // `up` is the series Prometheus itself records for every scrape, not something a target exposes.
  const SCRAPE_SERIES = new Set(['up']);
  const used = new Map<string, string[]>();
  for (const { where, expr } of [...alertExprs, ...panelExprs]) for (const name of toMetricNames(expr)) used.set(name, [...(used.get(name) ?? []), where]);
  t.ok(used.size >= 8, `${used.size} metrics used`);
  const missing = [...used].filter(([name]) => !SCRAPE_SERIES.has(name) && !exposed.has(name)).map(([name, where]) => `${name} (${where.join(', ')})`);
  t.strictSame(missing, []);
});
