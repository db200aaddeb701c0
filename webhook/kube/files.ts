/**
 * The files object source: Namespaces, ServiceAccounts and IdentityMappings read from YAML/JSON
 * files or folders (standalone mode, `npm start`, `tzw simulate`, `tzw mappings check`), kept in a
 * `FactsIndex` and reloaded when the files change.
 *
 * A reload reads everything first and only then applies the difference to the index, so a broken
 * file never leaves a half-applied state: the last good state stays and the error is logged.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import { parseAllDocuments } from 'yaml';
import type { FactsIndex, MappingProblem } from '../core/mapping-index.js';
import { API_VERSION as MAPPING_API_VERSION, KIND as MAPPING_KIND } from '../core/mapping-schema.js';
import { logProblems, type SourceLogger } from './source.js';

export const FILE_EXTENSIONS = ['.yaml', '.yml', '.json'] as const;
/** Editors and `kubectl cp` write a file in several steps; one reload after the burst is enough. */
export const DEFAULT_DEBOUNCE_MS = 100;

export interface FileSourceOptions {
  /** Files (read whatever their extension) and folders (searched recursively for .yaml/.yml/.json). */
  paths: string[];
  index: FactsIndex;
  logger: SourceLogger;
  /** Called after every reload except the initial load, with its report. */
  onChange?: (report: ReloadReport) => void;
  /** Set false for one-shot readers (CLI); default true. */
  watch?: boolean;
  debounceMs?: number;
}

export interface ReloadReport {
  /** false: a file could not be read or parsed, `error` says which; the previous state is kept. */
  ok: boolean;
  error?: string;
  files: number;
  /** Objects added or changed, and objects removed, in the index. */
  upserted: number;
  deleted: number;
  /** Things ignored or overridden: duplicates, IdentityMappings of another apiVersion. */
  warnings: string[];
  /** The index's problems after the reload (invalid mappings, conflicts, bad namespace labels). */
  problems: MappingProblem[];
}

export interface FileSource {
  /** Initial load, then watching. Rejects (`code: 'ERR_TZW_OBJECTS'`) naming the file when one is unreadable or unparseable. */
  start(): Promise<void>;
  synced(): boolean;
  /** Reads everything again and applies the difference. Never rejects. */
  reload(): Promise<ReloadReport>;
  close(): Promise<void>;
}

/** A loaded object: the fields the index reads, serialised for change detection, and where it came from. */
interface Entry {
  obj: Record<string, unknown>;
  json: string;
  origin: string;
}

interface State {
  namespaces: Map<string, Entry>;
  serviceAccounts: Map<string, Entry>;
  mappings: Map<string, Entry>;
  files: number;
  warnings: string[];
}

const emptyState = (): State => ({ namespaces: new Map(), serviceAccounts: new Map(), mappings: new Map(), files: 0, warnings: [] });

export class ObjectsError extends Error {
  readonly code = 'ERR_TZW_OBJECTS';
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Every file under the given paths, sorted so that "the last definition wins" is deterministic. */
async function gatherFiles(paths: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true });
    for (const e of entries) {
      // Dot entries are editor droppings and, in a mounted ConfigMap, the `..data` and
      // `..<timestamp>` folders that the visible symlinks already point into.
      if (e.name.startsWith('.')) continue;
      const p = join(dir, e.name);
      const s = e.isSymbolicLink() ? await stat(p) : e;
      if (s.isDirectory()) await walk(p);
      else if (s.isFile() && (FILE_EXTENSIONS as readonly string[]).includes(extname(e.name).toLowerCase())) out.push(p);
    }
  };
  for (const path of paths) {
    let s;
    try {
      s = await stat(path);
    } catch (err) {
      throw new ObjectsError(`${path}: cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
    if (s.isDirectory()) {
      const before = out.length;
      try {
        await walk(path);
      } catch (err) {
        throw new ObjectsError(`${path}: cannot be listed (${(err as Error).message})`);
      }
      out.splice(before, out.length - before, ...out.slice(before).sort());
    } else out.push(path);
  }
  return [...new Set(out)];
}

type Kind = 'namespaces' | 'serviceAccounts' | 'mappings';

/** Which table an object belongs in and under which key; undefined = not ours. Throws on a nameless object. */
function classify(obj: Record<string, unknown>, where: string, warnings: string[]): { kind: Kind; key: string; slim: Record<string, unknown> } | undefined {
  const meta = isRecord(obj.metadata) ? obj.metadata : {};
  const name = typeof meta.name === 'string' && meta.name !== '' ? meta.name : undefined;
  const { apiVersion, kind } = obj;
  const need = (label: string): string => {
    if (name === undefined) throw new ObjectsError(`${where}: ${label} has no metadata.name`);
    return name;
  };
  if (apiVersion === 'v1' && kind === 'Namespace') {
    const n = need('Namespace');
    return { kind: 'namespaces', key: n, slim: { metadata: { name: n, labels: meta.labels, annotations: meta.annotations } } };
  }
  if (apiVersion === 'v1' && kind === 'ServiceAccount') {
    const n = need('ServiceAccount');
    if (typeof meta.namespace !== 'string' || meta.namespace === '') throw new ObjectsError(`${where}: ServiceAccount ${n} has no metadata.namespace`);
    return { kind: 'serviceAccounts', key: `${meta.namespace}/${n}`, slim: { metadata: { namespace: meta.namespace, name: n } } };
  }
  if (kind === MAPPING_KIND) {
    if (apiVersion !== MAPPING_API_VERSION) {
      warnings.push(`${where}: IdentityMapping ${name ?? '(unnamed)'} ignored: apiVersion is ${JSON.stringify(apiVersion)}, expected ${MAPPING_API_VERSION}`);
      return undefined;
    }
    const n = need('IdentityMapping');
    return { kind: 'mappings', key: n, slim: { metadata: { name: n }, spec: obj.spec } };
  }
  return undefined;
}

/** Reads and parses every file; throws `ObjectsError` naming the first broken file. */
async function gatherState(paths: readonly string[]): Promise<State> {
  const state = emptyState();
  const files = await gatherFiles(paths);
  state.files = files.length;
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new ObjectsError(`${file}: cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
    const docs = parseAllDocuments(text, { prettyErrors: true });
    // A file that isn't YAML at all still parses as one document (a string): the shape check catches it.
    const list = Array.isArray(docs) ? docs : [docs];
    list.forEach((doc, i) => {
      const where = list.length > 1 ? `${file} (document ${i + 1})` : file;
      const [err] = doc.errors;
      if (err !== undefined) throw new ObjectsError(`${where}: not valid YAML: ${err.message}`);
      let value: unknown;
      try {
        value = doc.toJS();
      } catch (e) {
        throw new ObjectsError(`${where}: ${(e as Error).message}`);
      }
      if (value === null || value === undefined) return;
      if (!isRecord(value)) throw new ObjectsError(`${where}: expected a Kubernetes object (a mapping with apiVersion and kind)`);
      const objects = value.kind === 'List' || (typeof value.kind === 'string' && value.kind.endsWith('List') && Array.isArray(value.items)) ? value.items : [value];
      if (!Array.isArray(objects)) throw new ObjectsError(`${where}: a List needs an items array`);
      objects.forEach((item: unknown, j) => {
        const at = objects.length > 1 || value !== item ? `${where} item ${j + 1}` : where;
        if (!isRecord(item)) throw new ObjectsError(`${at}: expected a Kubernetes object`);
        const c = classify(item, at, state.warnings);
        if (c === undefined) return;
        const table = state[c.kind];
        const prev = table.get(c.key);
        if (prev !== undefined) state.warnings.push(`${c.key} (${c.kind === 'mappings' ? 'IdentityMapping' : c.kind === 'namespaces' ? 'Namespace' : 'ServiceAccount'}) is defined in ${prev.origin} and again in ${at}; the last one wins`);
        table.set(c.key, { obj: c.slim, json: JSON.stringify(c.slim), origin: at });
      });
    });
  }
  return state;
}

/** Creates the source; nothing is read until `start()`. */
export function createFileSource(options: FileSourceOptions): FileSource {
  const { paths, index, logger, onChange } = options;
  const debounceMs = options.debounceMs ?? DEFAULT_DEBOUNCE_MS;
  let state = emptyState();
  let isSynced = false;
  let closed = false;
  let watcher: FSWatcher | undefined;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<ReloadReport> | undefined;
  let again = false;

  /** Applies the difference between the current and the next state; returns [upserted, deleted]. */
  const apply = (next: State): [number, number] => {
    let upserted = 0;
    let deleted = 0;
    const tables: Array<[Kind, (e: Entry) => void, (key: string) => void]> = [
      ['namespaces', (e) => index.upsertNamespace(e.obj), (k) => index.deleteNamespace(k)],
      ['serviceAccounts', (e) => index.upsertServiceAccount(e.obj), (k) => {
        const i = k.indexOf('/');
        index.deleteServiceAccount(k.slice(0, i), k.slice(i + 1));
      }],
      ['mappings', (e) => index.upsertMapping(e.obj), (k) => index.deleteMapping(k)],
    ];
    for (const [kind, upsert, remove] of tables) {
      for (const key of state[kind].keys()) {
        if (!next[kind].has(key)) {
          remove(key);
          deleted++;
        }
      }
      for (const [key, entry] of next[kind]) {
        if (state[kind].get(key)?.json !== entry.json) {
          upsert(entry);
          upserted++;
        }
      }
    }
    state = next;
    return [upserted, deleted];
  };

  const report = (upserted: number, deleted: number): ReloadReport => {
    const problems = index.problems();
    for (const w of state.warnings) logger.warn({ source: 'files' }, w);
    logProblems(logger, problems);
    logger.info({ source: 'files', files: state.files, upserted, deleted, ...index.counts() }, 'objects loaded');
    return { ok: true, files: state.files, upserted, deleted, warnings: state.warnings, problems };
  };

  const reloadOnce = async (): Promise<ReloadReport> => {
    let next: State;
    try {
      next = await gatherState(paths);
    } catch (err) {
      const error = (err as Error).message;
      logger.error({ source: 'files', err: { code: (err as ObjectsError).code, message: error } }, `objects not reloaded; keeping the last good state: ${error}`);
      return { ok: false, error, files: state.files, upserted: 0, deleted: 0, warnings: [], problems: index.problems() };
    }
    const [upserted, deleted] = apply(next);
    return report(upserted, deleted);
  };

  const reload = async (): Promise<ReloadReport> => {
    // One reload at a time; calls that arrive meanwhile make the running one read once more, and
    // all callers get that final report.
    if (running !== undefined) {
      again = true;
      return running;
    }
    running = (async () => {
      let r: ReloadReport;
      do {
        again = false;
        r = await reloadOnce();
      } while (again && !closed);
      return r;
    })();
    try {
      const r = await running;
      onChange?.(r);
      return r;
    } finally {
      running = undefined;
    }
  };

  const schedule = (): void => {
    if (closed) return;
    clearTimeout(timer);
    timer = setTimeout(() => void reload(), debounceMs);
  };

  return {
    async start() {
      if (options.watch !== false) {
        // Watch first, then read: a change during the initial read then triggers a reload
        // instead of being lost. Every event counts (a ConfigMap update only swaps `..data`).
        watcher = watch(paths, { ignoreInitial: true, followSymlinks: true });
        watcher.on('all', schedule);
        watcher.on('error', (err) => logger.error({ source: 'files', err: { message: (err as Error).message } }, 'file watcher error'));
        await new Promise<void>((resolve) => watcher!.once('ready', resolve));
      }
      let first: State;
      try {
        first = await gatherState(paths);
      } catch (err) {
        await watcher?.close();
        throw err;
      }
      const [upserted, deleted] = apply(first);
      report(upserted, deleted);
      isSynced = true;
    },
    synced: () => isSynced,
    reload,
    async close() {
      closed = true;
      clearTimeout(timer);
      await watcher?.close();
      await running;
    },
  };
}
