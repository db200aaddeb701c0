/**
 * Builds the injection as RFC 6902 `add` operations against the raw pod (DESIGN.md "Mutate"):
 * append to arrays that exist (`/-`), add a whole array or map only where it is absent, so every
 * field we do not own — unknown ones included — survives untouched. Pure; reads the pod view only.
 */
import { TOKEN_VOLUME_NAME, TUNNEL_CONTAINER_NAME, type DecideOptions } from '../options.js';
import type { AddOperation } from '../verdict.js';
import type { EnvVar, InjectionFragments } from './fragments.js';
import { escapePointer } from './json-pointer.js';
import type { ContainerView, PodView } from './pod-view.js';

/** Tekton names steps `step-*` and its sidecars `sidecar-*` (pkg/pod/entrypoint.go), native ones included. */
export function isInjectionTarget(c: ContainerView): boolean {
  return c.name.startsWith('step-') || c.name.startsWith('sidecar-');
}

/** True when the pod carries our status annotation or already has a tunnel container. */
export function isAlreadyInjected(pod: PodView, statusKey: string, statusValue: string): boolean {
  if (pod.annotations?.[statusKey] === statusValue) return true;
  return pod.containers.some((c) => c.name === TUNNEL_CONTAINER_NAME);
}

const trimSlashes = (p: string): string => (p.length > 1 ? p.replace(/\/+$/, '') : p);

/** `path` equals `dir` up to trailing slashes; cheap on the common no-match case (no allocation). */
function samePath(path: string, dir: string): boolean {
  if (!path.startsWith(dir)) return false;
  for (let i = dir.length; i < path.length; i++) if (path[i] !== '/') return false;
  return true;
}

/**
 * Why injecting would collide, one sentence per problem (empty when it would not): our volume name
 * already used, a container already referring to it, or a target container already mounting
 * something at the token path (Kubernetes rejects duplicate mountPaths in one container).
 */
export function findInjectionConflicts(pod: PodView, opts: DecideOptions): string[] {
  const problems: string[] = [];
  if (pod.volumes?.some((v) => v.name === TOKEN_VOLUME_NAME)) problems.push(`the pod already has a volume named "${TOKEN_VOLUME_NAME}"`);
  const tokenPath = trimSlashes(opts.tokenMountPath);
  for (const c of pod.containers) {
    if (!c.volumeMounts) continue;
    const target = isInjectionTarget(c);
    for (const m of c.volumeMounts) {
      if (m.name === TOKEN_VOLUME_NAME) {
        problems.push(`container "${c.name}" already mounts a volume named "${TOKEN_VOLUME_NAME}"`);
      } else if (target && typeof m.mountPath === 'string' && samePath(m.mountPath, tokenPath)) {
        problems.push(`container "${c.name}" already mounts volume "${String(m.name)}" at ${opts.tokenMountPath}`);
      }
    }
  }
  return problems;
}

/** A target container with `envFrom` that got injected env: those names now win over envFrom's. */
export interface EnvFromOverride {
  container: string;
  /** The injected variable names, in patch order. */
  variables: string[];
  /** `configMap NAME` / `secret NAME` for each envFrom entry (`?` when it names neither). */
  sources: string[];
}

export interface InjectionPatch {
  ops: AddOperation[];
  /**
   * JSON.stringify(ops), joined from the fragments' texts (no walk of the shared pieces per
   * request), and then also the RFC 8785 form of `ops`: every object's keys are in code-unit order.
   * Absent when the fragments carry no text (InjectionFragments.json).
   */
  json?: string;
  /** Names of the containers that got the mount and env. */
  targets: string[];
  /** `container: VAR` for env vars left alone because the container already sets them. */
  keptEnv: string[];
  /** Target containers with `envFrom` whose same-named variables the injected env now overrides. */
  envFromOverrides: EnvFromOverride[];
}

function refName(ref: unknown): string {
  const name = typeof ref === 'object' && ref !== null ? (ref as { name?: unknown }).name : undefined;
  return typeof name === 'string' && name ? `"${name}"` : '(unnamed)';
}

/** Names what an envFrom entry reads, for a message; never its contents (we cannot and must not read them). */
function describeEnvFrom(entry: Readonly<Record<string, unknown>>): string {
  const prefix = typeof entry.prefix === 'string' && entry.prefix ? ` with prefix "${entry.prefix}"` : '';
  if (entry.configMapRef !== undefined && entry.configMapRef !== null) return `ConfigMap ${refName(entry.configMapRef)}${prefix}`;
  if (entry.secretRef !== undefined && entry.secretRef !== null) return `Secret ${refName(entry.secretRef)}${prefix}`;
  return `an envFrom source${prefix}`;
}

/**
 * The operations, in a fixed order: volume; per target container (containers, then initContainers)
 * its mount and missing env vars; the tunnel container; the annotations. Patch values share the
 * frozen fragments; arrays and maps created here are fresh per call.
 *
 * The tunnel goes at the end of `containers` (classic) or at the FRONT of `initContainers`
 * (native): native sidecars and init containers start in list order, each after the previous
 * native sidecar's startupProbe passed, so whatever Tekton puts there (its `prepare` step, the
 * Task's own sidecars as `sidecar-*` native sidecars) must start after the tunnel
 * (https://kubernetes.io/docs/concepts/workloads/pods/sidecar-containers/). Inserting at index 0
 * shifts every initContainer by one, so that operation comes after every operation addressing an
 * initContainer by its original index (RFC 6902 applies operations in order).
 */
export function toInjectionPatch(
  pod: PodView,
  fragments: InjectionFragments,
  annotations: ReadonlyArray<readonly [string, string]>,
  sidecarList: 'containers' | 'initContainers',
): InjectionPatch {
  const ops: AddOperation[] = [];
  const targets: string[] = [];
  const keptEnv: string[] = [];
  const envFromOverrides: EnvFromOverride[] = [];
  const texts = fragments.json;
  // The patch's JSON, op by op: `"op"`, `"path"`, `"value"` is code-unit order, and each value's
  // text is its fragment's (or JSON.stringify of a value made here, keys sorted).
  let json = '';
  const add = (path: string, value: unknown, valueJson: string | undefined): void => {
    ops.push({ op: 'add', path, value });
    if (texts) json += `${json ? ',' : '['}{"op":"add","path":${JSON.stringify(path)},"value":${valueJson ?? JSON.stringify(value)}}`;
  };

  if (pod.volumes) add('/spec/volumes/-', fragments.volume, texts?.volume);
  else add('/spec/volumes', [fragments.volume], texts && `[${texts.volume}]`);

  for (const c of pod.containers) {
    if (!isInjectionTarget(c)) continue;
    targets.push(c.name);
    const at = `/spec/${c.list}/${c.index}`;
    if (c.volumeMounts) add(`${at}/volumeMounts/-`, fragments.mount, texts?.mount);
    else add(`${at}/volumeMounts`, [fragments.mount], texts && `[${texts.mount}]`);
    let added: readonly EnvVar[];
    if (!c.env) {
      add(`${at}/env`, [...fragments.env], texts && `[${texts.env.join(',')}]`);
      added = fragments.env;
    } else {
      const present = new Set<unknown>();
      for (const e of c.env) present.add(e.name);
      const missing: EnvVar[] = [];
      fragments.env.forEach((e, i) => {
        if (present.has(e.name)) keptEnv.push(`${c.name}: ${e.name}`);
        else {
          add(`${at}/env/-`, e, texts?.env[i]);
          missing.push(e);
        }
      });
      added = missing;
    }
    // Kubernetes lets `env` win over `envFrom` for the same name: say which of ours now do.
    if (c.envFrom && c.envFrom.length > 0 && added.length > 0) {
      envFromOverrides.push({ container: c.name, variables: added.map((e) => e.name), sources: c.envFrom.map(describeEnvFrom) });
    }
  }

  if (!pod.lists[sidecarList]) add(`/spec/${sidecarList}`, [fragments.sidecar], texts && `[${texts.sidecar}]`);
  else add(sidecarList === 'initContainers' ? '/spec/initContainers/0' : '/spec/containers/-', fragments.sidecar, texts?.sidecar);

  if (pod.annotations) {
    // `add` on an existing member replaces it: a value copied from the TaskRun can never pose as ours.
    for (const [key, value] of annotations) add(`/metadata/annotations/${escapePointer(key)}`, value, undefined);
  } else {
    // Keys in code-unit order, like the fragments: the patch's JSON is then its RFC 8785 form.
    // (Annotation keys hold a '/', so none is integer-like.)
    add('/metadata/annotations', Object.fromEntries([...annotations].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))), undefined);
  }
  return { ops, ...(texts ? { json: `${json}]` } : {}), targets, keptEnv, envFromOverrides };
}
