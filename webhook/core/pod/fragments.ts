/**
 * The pieces a mapped pod receives — token volume, mount, env vars and tunnel container — built
 * once per (ResolvedMapping object, DecideOptions object) and reused by every request. Mapping
 * objects are rebuilt on every mapping change (never per request), so a WeakMap keyed on them is
 * both the cache and its invalidation.
 *
 * Everything returned is deeply frozen: patch values are shared by reference between requests,
 * and a consumer that applies a patch in place (fast-json-patch does) must not be able to change
 * them behind our back; it gets a TypeError instead.
 */
import type { Provider, ResolvedMapping } from '../mapping.js';
import { TOKEN_FILE, TOKEN_VOLUME_NAME, TUNNEL_CONTAINER_NAME, type DecideOptions } from '../options.js';

export interface EnvVar {
  readonly name: string;
  readonly value: string;
}

export type Frozen<T> = T extends object ? { readonly [K in keyof T]: Frozen<T[K]> } : T;
type Json = Record<string, unknown>;

export interface InjectionFragments {
  /** The projected `tekton-zscaler-token` volume (audience and TTL from the mapping). */
  readonly volume: Frozen<Json>;
  /** The read-only mount of that volume at `opts.tokenMountPath`. */
  readonly mount: Frozen<Json>;
  /** Env vars for step/sidecar containers, in order: mapping.env, the provider's token-file var, TZW_OIDC_TOKEN_FILE. */
  readonly env: ReadonlyArray<EnvVar>;
  /** The `zscaler-tunnel` container for `opts.sidecar.mode`. */
  readonly sidecar: Frozen<Json>;
  /**
   * JSON.stringify of each piece, written once here so a patch's text is joined from them instead
   * of serialising the shared pieces again per request (injection-patch.ts). Absent when a piece's
   * keys could not be put in code-unit order (an integer-like key from the config: JavaScript
   * lists those first), so that JSON.stringify would not be the RFC 8785 form.
   */
  readonly json?: FragmentJson;
}

export interface FragmentJson {
  readonly volume: string;
  readonly mount: string;
  /** One text per `env` entry, in order. */
  readonly env: readonly string[];
  readonly sidecar: string;
}

/** The env var each provider's SDK reads the projected token from (besides our own). */
export const PROVIDER_TOKEN_FILE_ENV: Readonly<Record<Provider, string | undefined>> = {
  'aws-iam': 'AWS_WEB_IDENTITY_TOKEN_FILE',
  'azure-ad': 'AZURE_FEDERATED_TOKEN_FILE',
  // Okta SDKs have no standard variable for a federated token file; TZW_OIDC_TOKEN_FILE serves them.
  okta: undefined,
};
export const OIDC_TOKEN_FILE_ENV = 'TZW_OIDC_TOKEN_FILE';

/**
 * A copy of `value` with every object's keys in code-unit order (arrays keep theirs). Patch values
 * are built from these, so JSON.stringify of a patch is already its RFC 8785 form: the response's
 * serialisation of the patch doubles as the decision record's (admission.ts, AppendOptions.patchJson).
 */
function toKeyOrder<T>(value: T): T {
  if (Array.isArray(value)) return value.map(toKeyOrder) as T;
  if (typeof value !== 'object' || value === null) return value;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(value).sort()) out[k] = toKeyOrder((value as Record<string, unknown>)[k]);
  return out as T;
}

/** True when every object in `value` lists its keys in code-unit order (what toKeyOrder aims for; integer-like keys defeat it). */
function isKeyOrdered(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return true;
  if (Array.isArray(value)) return value.every(isKeyOrdered);
  let prev: string | undefined;
  for (const k of Object.keys(value)) {
    if (prev !== undefined && prev >= k) return false;
    prev = k;
    if (!isKeyOrdered((value as Record<string, unknown>)[k])) return false;
  }
  return true;
}

function deepFreeze<T>(value: T): Frozen<T> {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value as Frozen<T>;
}

/** `dir/token`, tolerating a trailing slash on the configured mount path. */
export function tokenFilePath(tokenMountPath: string): string {
  return `${tokenMountPath.replace(/\/+$/, '')}/${TOKEN_FILE}`;
}

const isEmpty = (v: Record<string, unknown> | readonly unknown[]): boolean => Object.keys(v).length === 0;

interface OptionFragments {
  mount: Frozen<Json>;
  sidecar: Frozen<Json>;
  byMapping: WeakMap<ResolvedMapping, InjectionFragments>;
}

const cache = new WeakMap<DecideOptions, OptionFragments>();

function buildOptionFragments(opts: DecideOptions): OptionFragments {
  const mount = deepFreeze(toKeyOrder({ name: TOKEN_VOLUME_NAME, mountPath: opts.tokenMountPath, readOnly: true }));
  const s = opts.sidecar;
  // Copies (never freezes) the caller's config objects; empty ones are left out, so an unset
  // probe never becomes an invalid `startupProbe: {}`.
  const sidecar: Json = { name: TUNNEL_CONTAINER_NAME, image: s.image };
  if (s.args.length > 0) sidecar.args = [...s.args];
  sidecar.env = [{ name: OIDC_TOKEN_FILE_ENV, value: tokenFilePath(opts.tokenMountPath) }];
  if (!isEmpty(s.resources)) sidecar.resources = structuredClone(s.resources);
  if (!isEmpty(s.securityContext)) sidecar.securityContext = structuredClone(s.securityContext);
  sidecar.volumeMounts = [mount];
  if (s.mode === 'native') {
    // A native sidecar: Kubernetes starts it (and waits for its startupProbe) before the steps,
    // and stops it after them. https://kubernetes.io/docs/concepts/workloads/pods/sidecar-containers/
    sidecar.restartPolicy = 'Always';
    if (!isEmpty(s.probe)) sidecar.startupProbe = structuredClone(s.probe);
  } else if (!isEmpty(s.probe)) {
    // Classic: Tekton's SidecarsReady waits for every non-step container to be Ready before step 0
    // (tektoncd/pipeline pkg/pod/status.go), so readiness gates the steps.
    sidecar.readinessProbe = structuredClone(s.probe);
  }
  return { mount, sidecar: deepFreeze(toKeyOrder(sidecar)), byMapping: new WeakMap() };
}

function buildMappingFragments(mapping: ResolvedMapping, opts: DecideOptions, base: OptionFragments): InjectionFragments {
  const tokenFile = tokenFilePath(opts.tokenMountPath);
  const env: EnvVar[] = mapping.env.map(([name, value]) => ({ name, value }));
  const providerVar = PROVIDER_TOKEN_FILE_ENV[mapping.provider];
  if (providerVar !== undefined) env.push({ name: providerVar, value: tokenFile });
  env.push({ name: OIDC_TOKEN_FILE_ENV, value: tokenFile });
  const volume = {
    name: TOKEN_VOLUME_NAME,
    projected: {
      sources: [{ serviceAccountToken: { audience: mapping.audience, expirationSeconds: mapping.tokenExpirationSeconds, path: TOKEN_FILE } }],
    },
  };
  const fragments = { volume: toKeyOrder(volume), mount: base.mount, env: dedupeByName(env), sidecar: base.sidecar };
  const json: FragmentJson | undefined = [fragments.volume, fragments.mount, fragments.env, fragments.sidecar].every(isKeyOrdered)
    ? { volume: JSON.stringify(fragments.volume), mount: JSON.stringify(fragments.mount), env: fragments.env.map((e) => JSON.stringify(e)), sidecar: JSON.stringify(fragments.sidecar) }
    : undefined;
  return deepFreeze({ ...fragments, ...(json ? { json } : {}) });
}

/** First occurrence wins, so a mapping can never list a variable twice in one container. */
function dedupeByName(env: EnvVar[]): EnvVar[] {
  const seen = new Set<string>();
  return env.filter((e) => (seen.has(e.name) ? false : (seen.add(e.name), true)));
}

/**
 * The fragments for `mapping` under `opts`, from the cache when both objects were seen before.
 * Pure in effect (same inputs → equal, frozen outputs); never mutates its arguments.
 */
export function toInjectionFragments(mapping: ResolvedMapping, opts: DecideOptions): InjectionFragments {
  let base = cache.get(opts);
  if (!base) {
    base = buildOptionFragments(opts);
    cache.set(opts, base);
  }
  let fragments = base.byMapping.get(mapping);
  if (!fragments) {
    fragments = buildMappingFragments(mapping, opts, base);
    base.byMapping.set(mapping, fragments);
  }
  return fragments;
}
