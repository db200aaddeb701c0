/**
 * Renders manifests/monitoring/dashboard.json to docs/dashboard.png without Grafana (none runs
 * here): a real `tzw serve` on loopback takes a stream of example AdmissionReviews, a real
 * Prometheus (Debian's /usr/bin/prometheus) scrapes it every second as job tekton-zscaler-webhook,
 * then every panel's own PromQL is evaluated by that Prometheus and drawn with uPlot at the panel's
 * gridPos in headless Chromium. The picture shows the dashboard's queries on live data; the
 * styling is ours, not Grafana's.
 *
 *   npx tsx scripts/render-dashboard.ts [--seconds 120] [--out docs/dashboard.png]
 *
 * Starts and stops its own processes; leaves nothing running.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';
import { loadConfig } from '../webhook/config/load.js';
import { startServer } from '../webhook/server.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const { values } = parseArgs({ options: { seconds: { type: 'string', default: '120' }, out: { type: 'string', default: 'docs/dashboard.png' } } });
const SECONDS = Number(values.seconds);
const OUT = join(ROOT, values.out!);
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;

const freePort = (): Promise<number> => new Promise((resolve) => {
  const s = createServer().listen(0, '127.0.0.1', () => {
    const port = (s.address() as { port: number }).port;
    s.close(() => resolve(port));
  });
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function post(url: string, ca: string, body: string): Promise<void> {
  return new Promise((resolve) => {
    const req = httpsRequest(url, { method: 'POST', ca, headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', () => resolve());
    });
    req.on('error', () => resolve());
    req.end(body);
  });
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tzw-dashboard-'));
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
  let prometheus: ChildProcess | undefined;
  try {
    const ca = readFileSync(join(dir, 'ca.crt'), 'utf8');
    const promPort = await freePort();
    const metrics = new URL(server.urls.metrics);
    writeFileSync(join(dir, 'prometheus.yml'), [
      'global: {scrape_interval: 1s, evaluation_interval: 1s}',
      'scrape_configs:',
      '  - job_name: tekton-zscaler-webhook',
      `    static_configs: [{targets: ["${metrics.host}"], labels: {pod: tzw-0}}]`,
    ].join('\n'));
    prometheus = spawn('/usr/bin/prometheus', [
      `--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'tsdb')}`,
      `--web.listen-address=127.0.0.1:${promPort}`, '--log.level=error',
    ], { stdio: ['ignore', 'ignore', 'inherit'] });
    const prom = `http://127.0.0.1:${promPort}`;
    for (let i = 0; i < 100; i++) {
      if (await fetch(`${prom}/-/ready`).then((r) => r.ok, () => false)) break;
      await sleep(200);
    }

    // Traffic: mostly allowed and patched, a steady trickle of denials and audit warnings, a burst
    // of denials in the middle (what a newly enrolled namespace looks like).
    const review = (name: string) => readFileSync(join(examples, 'reviews', name), 'utf8');
    const mix: Array<[string, string, number]> = [
      ['validate', review('taskrun-mapped.json'), 6], ['mutate', review('pod-mapped.json'), 6],
      ['validate', review('taskrun-unmapped.json'), 1], ['validate', review('pipelinerun-audit.json'), 2],
    ];
    const end = Date.now() + SECONDS * 1000;
    const start = Date.now();
    while (Date.now() < end) {
      const burst = Date.now() - start > (SECONDS * 1000) / 2 && Date.now() - start < (SECONDS * 1000 * 2) / 3;
      const round = mix.flatMap(([endpoint, body, n]) => Array.from({ length: endpoint === 'validate' && burst && body.includes('"default"') ? n * 6 : n }, () => post(`${server.urls.admission}/${endpoint}`, ca, body)));
      await Promise.all(round);
      await sleep(250);
    }
    await sleep(3000);

    const dashboard = JSON.parse(readFileSync(join(ROOT, 'manifests/monitoring/dashboard.json'), 'utf8')) as Obj;
    const endSec = Math.floor(Date.now() / 1000);
    const startSec = endSec - SECONDS;
    const toExpr = (e: string) => e.replaceAll('$job', 'tekton-zscaler-webhook').replaceAll('$__rate_interval', '15s');
    const panels = [];
    for (const p of dashboard.panels as Obj[]) {
      const series: Array<{ label: string; points: Array<[number, number]> }> = [];
      for (const target of p.targets as Obj[]) {
        const q = new URLSearchParams(p.type === 'stat'
          ? { query: toExpr(target.expr), time: String(endSec) }
          : { query: toExpr(target.expr), start: String(startSec), end: String(endSec), step: '2' });
        const res = (await (await fetch(`${prom}/api/v1/${p.type === 'stat' ? 'query' : 'query_range'}?${q}`)).json()) as Obj;
        if (res.status !== 'success') throw new Error(`panel ${p.title}: ${res.error}`);
        for (const r of res.data.result as Obj[]) {
          const label = String(target.legendFormat ?? '').replace(/\{\{(\w+)\}\}/g, (_m: string, k: string) => r.metric[k] ?? '') || p.title;
          const points = (r.values ?? [r.value]).map(([t, v]: [number, string]) => [t, Number(v)] as [number, number]);
          series.push({ label, points });
        }
      }
      panels.push({ title: p.title, type: p.type, unit: p.fieldConfig?.defaults?.unit ?? '', grid: p.gridPos, series });
    }

    const html = `<!doctype html><html><head><meta charset="utf-8"><style>
      body{margin:0;background:#111217;color:#ccccdc;font:13px system-ui,sans-serif}
      h1{font-size:16px;font-weight:500;margin:10px 14px}
      #grid{position:relative;margin:0 8px}
      .panel{position:absolute;background:#181b1f;border:1px solid #2c3235;border-radius:3px;box-sizing:border-box;padding:6px 8px;overflow:hidden}
      .panel h2{font-size:13px;font-weight:500;margin:0 0 4px}
      .stat{font-size:34px;font-weight:600;text-align:center;margin-top:12px}
      .uplot .u-legend{font-size:11px}.u-legend th,.u-legend td{color:#ccccdc}
      .note{position:absolute;right:14px;top:12px;font-size:11px;color:#8e8e8e}
    </style></head><body><h1>tekton-zscaler-webhook</h1><div class="note">dashboard.json queries on a live server + Prometheus, last ${SECONDS}s; drawn with uPlot (not Grafana)</div><div id="grid"></div></body></html>`;
    // A fresh profile directory (launchPersistentContext is how playwright takes --user-data-dir).
    const browser = await chromium.launchPersistentContext(join(dir, 'chromium'), {
      executablePath: '/usr/bin/chromium', headless: true, viewport: { width: 1600, height: 1000 },
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    try {
      const page = await browser.newPage();
      await page.setContent(html);
      await page.addStyleTag({ path: join(ROOT, 'node_modules/uplot/dist/uPlot.min.css') });
      await page.addScriptTag({ path: join(ROOT, 'node_modules/uplot/dist/uPlot.iife.min.js') });
      const height = (await page.evaluate(`(function (panels) {
        const colW = (1600 - 16) / 24;
        const rowH = 34;
        const fmt = (v, unit) => {
          if (!Number.isFinite(v)) return '—';
          if (unit === 'percentunit') return \`\${(v * 100).toFixed(1)}%\`;
          if (unit === 's' && Math.abs(v) >= 86400) return \`\${(v / 86400).toFixed(1)} days\`;
          if (unit === 's') return v < 1 ? \`\${(v * 1000).toFixed(2)} ms\` : \`\${v.toFixed(2)} s\`;
          if (unit === 'reqps') return \`\${v.toFixed(2)} req/s\`;
          return Number.isInteger(v) ? String(v) : v.toFixed(2);
        };
        const colors = ['#73bf69', '#f2cc0c', '#5794f2', '#ff9830', '#f2495c', '#b877d9', '#8ab8ff', '#fade2a'];
        let bottom = 0;
        for (const p of panels) {
          const el = document.createElement('div');
          el.className = 'panel';
          Object.assign(el.style, { left: \`\${p.grid.x * colW}px\`, top: \`\${p.grid.y * rowH}px\`, width: \`\${p.grid.w * colW - 6}px\`, height: \`\${p.grid.h * rowH - 6}px\` });
          bottom = Math.max(bottom, (p.grid.y + p.grid.h) * rowH);
          const h = document.createElement('h2');
          h.textContent = p.title;
          el.appendChild(h);
          document.getElementById('grid').appendChild(el);
          if (p.type === 'stat') {
            const v = p.series[0]?.points[0]?.[1];
            const s = document.createElement('div');
            s.className = 'stat';
            s.textContent = v === undefined ? 'No data' : fmt(v, p.unit);
            el.appendChild(s);
            continue;
          }
          const times = [...new Set(p.series.flatMap((s) => s.points.map(([t]) => t)))].sort((a, b) => a - b);
          const data = [times, ...p.series.map((s) => { const m = new Map(s.points); return times.map((t) => (m.has(t) ? m.get(t) : null)); })];
          const U = window.uPlot;
          new U({
            width: p.grid.w * colW - 24, height: p.grid.h * rowH - 70,
            axes: [{ stroke: '#8e8e8e', grid: { stroke: '#2c3235' } }, { stroke: '#8e8e8e', grid: { stroke: '#2c3235' }, size: 95, values: (_u, vals) => vals.map((v) => fmt(v, p.unit)) }],
            series: [{}, ...p.series.map((s, i) => ({ label: s.label, stroke: colors[i % colors.length], width: 1.5, fill: \`\${colors[i % colors.length]}22\`, value: (_u, v) => (v === null ? '—' : fmt(v, p.unit)) }))],
            legend: { show: true },
          }, data, el);
        }
        return bottom + 60;
      })(${JSON.stringify(panels)})`)) as number;
      await page.setViewportSize({ width: 1600, height });
      mkdirSync(dirname(OUT), { recursive: true });
      await page.screenshot({ path: OUT, fullPage: true });
    } finally {
      await browser.close();
    }
    process.stdout.write(`wrote ${OUT.slice(ROOT.length)} (${panels.length} panels, ${SECONDS}s of traffic)\n`);
  } finally {
    prometheus?.kill('SIGTERM');
    await server.close();
    await sleep(500);
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
