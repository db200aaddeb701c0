/**
 * A small JSON client for the few writes the webhook makes to the API server (Lease, IdentityMapping
 * status, Events), authenticated exactly as the informers' list requests (client-node's
 * RequestContext: bearer token, client certificate, CA). The generated typed clients make a merge
 * patch awkward (content type set by middleware) and convert every body into model classes.
 */
import { HttpMethod, RequestContext, type KubeConfig } from '@kubernetes/client-node';
import { fetch } from 'undici';

export const REQUEST_TIMEOUT_MS = 10_000;

export type KubeMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface KubeResponse {
  status: number;
  body: unknown;
}

export interface KubeApi {
  /** One request; resolves with any HTTP status (callers decide), rejects only when no answer came. */
  request(method: KubeMethod, path: string, body?: unknown, contentType?: string): Promise<KubeResponse>;
}

/** Error thrown by callers for an unexpected status: `code` ERR_TZW_KUBE_HTTP, the Status message only. */
export class KubeHttpError extends Error {
  readonly code = 'ERR_TZW_KUBE_HTTP';
  constructor(readonly status: number, what: string, body: unknown) {
    const message = typeof body === 'object' && body !== null && typeof (body as { message?: unknown }).message === 'string' ? `: ${(body as { message: string }).message}` : '';
    super(`${what}: HTTP ${status}${message}`);
  }
}

export function createKubeApi(kubeConfig: KubeConfig): KubeApi {
  return {
    async request(method, path, body, contentType = 'application/json') {
      const cluster = kubeConfig.getCurrentCluster();
      if (!cluster) throw new Error('the kubeconfig has no current cluster');
      const url = new URL(cluster.server + path);
      const ctx = new RequestContext(url.toString(), HttpMethod[method]);
      await kubeConfig.applySecurityAuthentication(ctx);
      const headers: Record<string, string> = { ...ctx.getHeaders(), accept: 'application/json' };
      if (body !== undefined) headers['content-type'] = contentType;
      const res = await fetch(url, {
        method, headers, dispatcher: ctx.getDispatcher(),
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = text === '' ? undefined : JSON.parse(text);
      } catch {
        // not JSON (a proxy's error page): keep the text for the error message
      }
      return { status: res.status, body: parsed };
    },
  };
}
