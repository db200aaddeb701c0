/**
 * Independent checks of an injection patch, shared by the pod, golden and corpus tests. They do not
 * use the code under test: fast-json-patch applies, and the invariants are read from the result.
 */
import jsonpatch from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';
import type { AddOperation } from '../../webhook/core/verdict.js';

type Json = unknown;
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Applies `ops` to a deep copy of `doc` with fast-json-patch's validation on; throws on any bad op. */
export function applyOps<T>(doc: T, ops: readonly AddOperation[]): T {
  return jsonpatch.applyPatch(structuredClone(doc), structuredClone(ops) as Operation[], true, true).newDocument;
}

export function unescapeToken(token: string): string {
  return token.replaceAll('~1', '/').replaceAll('~0', '~');
}

/** Where native mode puts the tunnel: the front of an existing `initContainers` (DESIGN "Mutate" 3, issue 14). */
export const TUNNEL_FIRST_PATH = '/spec/initContainers/0';
const TUNNEL_NAME = 'zscaler-tunnel';
const isTunnel = (v: unknown): boolean => isObj(v) && v.name === TUNNEL_NAME;

/**
 * Violations of "add only, against the raw object, never replacing what exists": an op that is not
 * `add`, a parent that does not exist in the original, an array element addressed by index instead
 * of `-`, or an existing member overwritten (allowed only where `mayOverwrite(path)` says so).
 * One index insert is allowed: the tunnel container at `/spec/initContainers/0`, and then only as
 * the last op touching `/spec/initContainers` (every later op would address a shifted index).
 */
export function addOnlyViolations(original: Json, ops: readonly AddOperation[], mayOverwrite: (path: string) => boolean = () => false): string[] {
  const out: string[] = [];
  let shifted = false;
  for (const op of ops) {
    if (op.op !== 'add') { out.push(`${op.path}: op ${String(op.op)}`); continue; }
    if (shifted && op.path.startsWith('/spec/initContainers/')) out.push(`${op.path}: comes after the insert at ${TUNNEL_FIRST_PATH}, which shifted every index`);
    const tokens = op.path.split('/').slice(1).map(unescapeToken);
    const last = tokens.pop();
    let parent: Json = original;
    for (const t of tokens) parent = Array.isArray(parent) ? parent[Number(t)] : isObj(parent) ? parent[t] : undefined;
    if (last === undefined) out.push(`${op.path}: replaces the whole document`);
    else if (Array.isArray(parent)) {
      if (op.path === TUNNEL_FIRST_PATH && isTunnel(op.value) && !shifted) shifted = true;
      else if (last !== '-') out.push(`${op.path}: inserts by index into an existing array`);
    } else if (isObj(parent)) { if (last in parent && parent[last] !== null && !mayOverwrite(op.path)) out.push(`${op.path}: overwrites an existing member`); }
    else out.push(`${op.path}: parent does not exist in the original`);
  }
  return out;
}

/**
 * The first path where `original` is not preserved inside `result`, or undefined. Arrays may only
 * grow at the end, except `/spec/initContainers`, which may also gain the tunnel at its front.
 */
export function firstLoss(original: Json, result: Json, path = ''): string | undefined {
  if (Array.isArray(original)) {
    if (!Array.isArray(result) || result.length < original.length) return path || '/';
    const front = path === '/spec/initContainers' && isTunnel(result[0]) && !isTunnel(original[0]) ? 1 : 0;
    if (result.length < original.length + front) return path || '/';
    for (let i = 0; i < original.length; i++) {
      const lost = firstLoss(original[i], result[i + front], `${path}/${i}`);
      if (lost !== undefined) return lost;
    }
    return undefined;
  }
  if (isObj(original)) {
    if (!isObj(result)) return path || '/';
    for (const [k, v] of Object.entries(original)) {
      // A null member may be replaced by the array/map it stood for.
      if (v === null && k in result) continue;
      if (!(k in result)) return `${path}/${k}`;
      const lost = firstLoss(v, result[k], `${path}/${k}`);
      if (lost !== undefined) return lost;
    }
    return undefined;
  }
  return Object.is(original, result) ? undefined : path || '/';
}

type Container = { name?: string; volumeMounts?: Array<{ mountPath?: string; name?: string }>; env?: Array<{ name?: string }> };
type PodLike = { spec?: { volumes?: Array<{ name?: string }>; containers?: Container[]; initContainers?: Container[] } };

function dupes(values: readonly unknown[]): unknown[] {
  const seen = new Set<unknown>();
  return [...new Set(values.filter((v) => (seen.has(v) ? true : (seen.add(v), false))))];
}

export function allContainers(pod: PodLike): Container[] {
  return [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])];
}

/** Duplicate volume names, container names, and mountPaths / env names within one container. */
export function duplicateNames(pod: PodLike): string[] {
  const out: string[] = [];
  for (const v of dupes((pod.spec?.volumes ?? []).map((v) => v.name))) out.push(`volume ${String(v)}`);
  for (const v of dupes(allContainers(pod).map((c) => c.name))) out.push(`container ${String(v)}`);
  for (const c of allContainers(pod)) {
    for (const p of dupes((c.volumeMounts ?? []).map((m) => m.mountPath))) out.push(`${String(c.name)}: mountPath ${String(p)}`);
    for (const e of dupes((c.env ?? []).map((x) => x.name))) out.push(`${String(c.name)}: env ${String(e)}`);
  }
  return out;
}

export function envNames(c: Container | undefined): string[] {
  return (c?.env ?? []).map((e) => String(e.name));
}

export function container(pod: PodLike, name: string): Container | undefined {
  return allContainers(pod).find((c) => c.name === name);
}

const names = (list: Container[] | undefined): string[] => (list ?? []).map((c) => String(c.name));

/**
 * Where the tunnel landed, against DESIGN "Mutate" 3 (issue 14): native → first in
 * `initContainers`, the pod's own init containers after it in their original order; classic → last
 * in `containers`, `initContainers` unchanged. Empty when it is where it belongs.
 */
export function tunnelPlacementProblems(original: PodLike, result: PodLike, mode: 'native' | 'classic'): string[] {
  const [list, other] = mode === 'native' ? (['initContainers', 'containers'] as const) : (['containers', 'initContainers'] as const);
  const want = mode === 'native' ? [TUNNEL_NAME, ...names(original.spec?.[list])] : [...names(original.spec?.[list]), TUNNEL_NAME];
  const out: string[] = [];
  const got = names(result.spec?.[list]);
  if (JSON.stringify(got) !== JSON.stringify(want)) out.push(`${mode}: ${list} is [${got.join(', ')}], expected [${want.join(', ')}]`);
  const otherGot = names(result.spec?.[other]);
  if (JSON.stringify(otherGot) !== JSON.stringify(names(original.spec?.[other]))) out.push(`${mode}: ${other} changed to [${otherGot.join(', ')}]`);
  return out;
}
