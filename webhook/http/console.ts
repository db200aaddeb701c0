/**
 * Serves the auditor console (webhook/console/) on the audit listener: the HTML shell at the view
 * paths (/, /overview, /decisions/:id) and the bundled assets under /console/. The pages hold no
 * data (the script fetches it from the audit API with the user's token), so they need no token.
 * Every response carries a strict Content-Security-Policy: only this origin, no inline script or
 * style, no framing.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { CONSOLE_ASSET_PREFIX, loadConsoleAssets, type ConsoleAsset, type ConsoleAssetName } from '../console/assets.js';

export const CONSOLE_PATHS = ['/', '/overview', '/decisions/:id'] as const;

export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': CONTENT_SECURITY_POLICY,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

const ASSETS: ConsoleAssetName[] = ['app.js', 'app.css', 'favicon.svg'];

function send(req: FastifyRequest, reply: FastifyReply, asset: ConsoleAsset, cacheControl: string): FastifyReply {
  reply.headers(SECURITY_HEADERS).header('content-type', asset.contentType).header('etag', asset.etag).header('cache-control', cacheControl);
  if (req.headers['if-none-match'] === asset.etag) return reply.code(304).send();
  return reply.send(asset.body);
}

/**
 * The console plugin. Starts loading the assets at registration (bundling takes about a second
 * from source), so the first page view rarely waits. A bundle that fails to build answers 500
 * with a plain message and is retried on the next request.
 */
export async function consoleRoutes(app: FastifyInstance): Promise<void> {
  loadConsoleAssets().catch((err: Error) => app.log.error({ err: { message: err.message } }, 'auditor console assets failed to load'));
  const serve = (name: ConsoleAssetName) => async (req: FastifyRequest, reply: FastifyReply) => {
    let assets;
    try {
      assets = await loadConsoleAssets();
    } catch (err) {
      req.log.error({ err: { message: (err as Error).message } }, 'auditor console assets failed to load');
      return reply.code(500).headers(SECURITY_HEADERS).type('text/plain; charset=utf-8').send('The auditor console is unavailable: its assets failed to load; see the server log. The audit API still works.\n');
    }
    // Revalidated with the ETag on every load: a new server version never mixes with a cached script.
    return send(req, reply, assets[name], 'no-cache');
  };
  for (const path of CONSOLE_PATHS) app.get(path, serve('index.html'));
  for (const name of ASSETS) app.get(`${CONSOLE_ASSET_PREFIX}${name}`, serve(name));
}
