/**
 * The console's assets (one HTML shell, one script, one stylesheet, an icon), held in memory.
 * Source: the prebuilt copy `npm run build` writes next to the compiled server (dist/console/, what
 * the container image ships), else an esbuild bundle of ui/ made on first use, so `npm start` and
 * `npm test` need no build step. Everything is bundled (uPlot, jose): no request leaves the origin.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

export interface ConsoleAsset {
  body: Buffer;
  contentType: string;
  /** Strong validator: sha256 of the body. */
  etag: string;
}

export interface ConsoleAssets {
  'index.html': ConsoleAsset;
  'app.js': ConsoleAsset;
  'app.css': ConsoleAsset;
  'favicon.svg': ConsoleAsset;
}

export type ConsoleAssetName = keyof ConsoleAssets;

/** Where the console's assets are served from (the HTML shell is served at the view paths). */
export const CONSOLE_ASSET_PREFIX = '/console/';

const HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>tekton-zscaler-webhook · audit</title>
<link rel="icon" href="${CONSOLE_ASSET_PREFIX}favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="${CONSOLE_ASSET_PREFIX}app.css">
<script type="module" src="${CONSOLE_ASSET_PREFIX}app.js"></script>
</head>
<body>
<div id="app"><noscript>The auditor console needs JavaScript. The audit API (/api/v1/decisions) and the tzw CLI work without it.</noscript></div>
</body>
</html>
`;

const FAVICON = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#0b5cad"/><path d="M4 8.5l2.5 2.5L12 5" stroke="#fff" stroke-width="2" fill="none"/></svg>`;

const TYPES: Record<ConsoleAssetName, string> = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'app.css': 'text/css; charset=utf-8',
  'favicon.svg': 'image/svg+xml',
};

const NAMES = Object.keys(TYPES) as ConsoleAssetName[];

function toAsset(name: ConsoleAssetName, body: Buffer): ConsoleAsset {
  return { body, contentType: TYPES[name], etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"` };
}

const SOURCE_ENTRY = fileURLToPath(new URL('./ui/main.ts', import.meta.url));
/** dist/webhook/console/assets.js → dist/console/ (from source this resolves to a folder that does not exist). */
const PREBUILT_DIR = fileURLToPath(new URL('../../console/', import.meta.url));

/**
 * Bundles ui/ with esbuild in memory. Throws the esbuild error (with file:line) when the source
 * does not build; code ERR_CONSOLE_BUILD.
 */
export async function buildConsoleAssets(opts: { minify?: boolean } = {}): Promise<ConsoleAssets> {
  const esbuild = await import('esbuild');
  let result;
  try {
    result = await esbuild.build({
      entryPoints: { app: SOURCE_ENTRY },
      bundle: true,
      write: false,
      outdir: '/console',
      format: 'esm',
      platform: 'browser',
      target: ['chrome111', 'firefox115', 'safari16'],
      minify: opts.minify ?? true,
      legalComments: 'eof',
      logLevel: 'silent',
    });
  } catch (err) {
    throw Object.assign(new Error(`the auditor console does not build: ${(err as Error).message}`), { code: 'ERR_CONSOLE_BUILD' });
  }
  const pick = (suffix: string): Buffer => {
    const f = result.outputFiles.find((o) => o.path.endsWith(suffix));
    if (!f) throw Object.assign(new Error(`esbuild produced no ${suffix}`), { code: 'ERR_CONSOLE_BUILD' });
    return Buffer.from(f.contents);
  };
  return {
    'index.html': toAsset('index.html', Buffer.from(HTML)),
    'app.js': toAsset('app.js', pick('/app.js')),
    'app.css': toAsset('app.css', pick('/app.css')),
    'favicon.svg': toAsset('favicon.svg', Buffer.from(FAVICON)),
  };
}

/** Writes the assets to `dir` (npm run build → dist/console/, shipped in the image). */
export async function writeConsoleAssets(dir: string): Promise<void> {
  const assets = await buildConsoleAssets();
  await mkdir(dir, { recursive: true });
  for (const name of NAMES) await writeFile(join(dir, name), assets[name].body);
}

async function readPrebuilt(dir: string): Promise<ConsoleAssets> {
  const entries = await Promise.all(NAMES.map(async (n) => [n, toAsset(n, await readFile(join(dir, n)))] as const));
  return Object.fromEntries(entries) as unknown as ConsoleAssets;
}

let cached: Promise<ConsoleAssets> | undefined;

/**
 * The assets, loaded once per process: the prebuilt copy when there is one, else a fresh bundle.
 * A failed load is not cached, so the next request tries again.
 */
export function loadConsoleAssets(): Promise<ConsoleAssets> {
  if (!cached) {
    cached = existsSync(join(PREBUILT_DIR, 'app.js')) ? readPrebuilt(PREBUILT_DIR) : buildConsoleAssets();
    cached.catch(() => {
      cached = undefined;
    });
  }
  return cached;
}
