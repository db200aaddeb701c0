/**
 * A checked, read-only view of the raw Pod in a mutate request: just the fields the pod rule reads
 * and the patch is built against, by reference (no copy of the pod is ever made). Reading it also
 * checks their types, so the patch can never point into something that is not there.
 */
import { isObject, typeName, type JsonObject } from '../taskrun/object-fields.js';

export type ContainerList = 'containers' | 'initContainers';

export interface ContainerView {
  list: ContainerList;
  index: number;
  /** '' when the container has no name (the API server rejects that after admission). */
  name: string;
  /** The raw `env` array, or undefined when absent or null. */
  env: JsonObject[] | undefined;
  /** The raw `volumeMounts` array, or undefined when absent or null. */
  volumeMounts: JsonObject[] | undefined;
  /** The raw `envFrom` array, or undefined when absent or null (never read for values: we cannot see inside). */
  envFrom: JsonObject[] | undefined;
}

export interface PodView {
  metadata: JsonObject;
  /** The raw annotations map, or undefined when absent or null. */
  annotations: JsonObject | undefined;
  /** Which container lists exist as arrays (so the patch knows whether to append or create). */
  lists: Record<ContainerList, boolean>;
  /** Every container of `containers`, then of `initContainers`, in order. */
  containers: ContainerView[];
  /** The raw `spec.volumes` array, or undefined when absent or null. */
  volumes: JsonObject[] | undefined;
  hostNetwork: boolean;
  /** `spec.serviceAccountName`, else `spec.serviceAccount`, else `default` (as the API server does). */
  serviceAccount: string;
}

export type PodParse = { ok: true; pod: PodView } | { ok: false; message: string };

class FieldError extends Error {}

function fail(field: string, got: unknown, expected: string): never {
  throw new FieldError(`${field} must be ${expected}, got ${typeName(got)}`);
}

/** The array at `v`, checking each element is an object; undefined for absent/null. */
function objectArray(v: unknown, field: string): JsonObject[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) fail(field, v, 'an array');
  for (let i = 0; i < v.length; i++) if (!isObject(v[i])) fail(`${field}[${i}]`, v[i], 'an object');
  return v as JsonObject[];
}

function optionalString(v: unknown, field: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') fail(field, v, 'a string');
  return v;
}

function checkNames(items: readonly JsonObject[] | undefined, field: string, key: string): void {
  if (items) for (let i = 0; i < items.length; i++) optionalString(items[i]?.[key], `${field}[${i}].${key}`);
}

/**
 * Reads and checks the pod. Never throws; a field of the wrong type yields `ok: false` with a
 * message naming it (e.g. `spec.containers[1].env[0].name must be a string, got number`).
 */
export function parsePod(object: JsonObject): PodParse {
  try {
    const metadata = object.metadata;
    if (!isObject(metadata)) fail('metadata', metadata, 'an object');
    const annotations = metadata.annotations;
    if (annotations !== undefined && annotations !== null && !isObject(annotations)) fail('metadata.annotations', annotations, 'an object');
    const spec = object.spec;
    if (!isObject(spec)) fail('spec', spec, 'an object');

    const containers: ContainerView[] = [];
    const lists: Record<ContainerList, boolean> = { containers: false, initContainers: false };
    for (const list of ['containers', 'initContainers'] as const) {
      const items = objectArray(spec[list], `spec.${list}`);
      if (!items) continue;
      lists[list] = true;
      for (let index = 0; index < items.length; index++) {
        const c = items[index] as JsonObject;
        const at = `spec.${list}[${index}]`;
        const env = objectArray(c.env, `${at}.env`);
        const volumeMounts = objectArray(c.volumeMounts, `${at}.volumeMounts`);
        const envFrom = objectArray(c.envFrom, `${at}.envFrom`);
        checkNames(env, `${at}.env`, 'name');
        checkNames(volumeMounts, `${at}.volumeMounts`, 'name');
        checkNames(volumeMounts, `${at}.volumeMounts`, 'mountPath');
        containers.push({ list, index, name: optionalString(c.name, `${at}.name`) ?? '', env, volumeMounts, envFrom });
      }
    }
    const volumes = objectArray(spec.volumes, 'spec.volumes');
    checkNames(volumes, 'spec.volumes', 'name');
    const hostNetwork = spec.hostNetwork;
    if (hostNetwork !== undefined && hostNetwork !== null && typeof hostNetwork !== 'boolean') fail('spec.hostNetwork', hostNetwork, 'a boolean');
    const serviceAccount =
      optionalString(spec.serviceAccountName, 'spec.serviceAccountName') || optionalString(spec.serviceAccount, 'spec.serviceAccount') || 'default';
    return {
      ok: true,
      pod: {
        metadata,
        annotations: isObject(annotations) ? annotations : undefined,
        lists,
        containers,
        volumes,
        hostNetwork: hostNetwork === true,
        serviceAccount,
      },
    };
  } catch (err) {
    if (err instanceof FieldError) return { ok: false, message: err.message };
    throw err;
  }
}
